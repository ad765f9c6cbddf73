//! The crate's error type: everything a library call can fail with, as values.
//!
//! Errors are for operating conditions (a refusal, an unreachable helper, a closed port range), never for
//! bugs. The enum is `#[non_exhaustive]` because the runtime adds its own conditions; match it with a
//! wildcard arm. Every variant's `Display` names what failed and where, because it often ends up as the
//! last line a program prints before it exits.

use std::fmt;
use std::io;

use crate::wire::{ReadError, WireError};

/// What a library call failed with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    Io(io::Error),
    /// A peer sent bytes that are not a valid frame.
    Wire(WireError),
    /// The helper or a member refused us; the reason is theirs.
    Refused(String),
    /// The helper could not be reached after every retry.
    HelperUnreachable {
        /// The helper address as configured.
        addr: String,
        /// The last connection error.
        reason: String,
    },
    /// No port from `first` on (`span` ports) could be bound.
    PortsExhausted {
        /// The first port tried.
        first: u16,
        /// How many ports were tried.
        span: u16,
    },
    /// Something took longer than allowed; says what.
    Timeout(String),
    /// A setting cannot work; says which and why.
    InvalidConfig(String),
    /// A setting of [`crate::Config`] or [`crate::HelperConfig`] cannot work ([`crate::Config::validate`]).
    InvalidSetting {
        /// The setting, as its builder method is named (`"window"`, `"failure_timeout_ms"`, ...).
        field: &'static str,
        /// Why it cannot work.
        reason: String,
    },
    /// A peer answered with something the protocol does not allow at that point; says what.
    Unexpected(String),
    /// A multicast payload is larger than the wire format carries.
    PayloadTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The largest payload allowed.
        max: usize,
    },
    /// `try_multicast` found the flow-control window full (try again after some deliveries), or
    /// `Events::try_recv` found no event waiting.
    WouldBlock,
    /// A restarted member found neither the helper nor any live member to rejoin through; says what it
    /// tried and what each answered.
    GroupUnreachable {
        /// Every address tried, with its error.
        tried: String,
    },
    /// The member was shut down (or its protocol thread ended).
    ShutDown,
    /// The member left the group cleanly ([`crate::Member::leave`]): a message multicast after the
    /// leave began is not delivered.
    Left,
    /// The member was excluded from the group (or lost its quorum) and delivers nothing more.
    Excluded {
        /// The view that excluded it, or its last view when it lost its quorum.
        view: crate::types::ViewId,
    },
    /// The member's protocol thread panicked: a bug in tom, or a panic in the application's
    /// [`crate::Replicated`] callbacks (they run on that thread). The member delivers nothing more;
    /// it closed its connections, so the group sees it as crashed ([`crate::Event::Failed`]).
    Failed {
        /// The panic's message.
        reason: String,
    },
}

/// A result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "I/O error: {error}"),
            Error::Wire(error) => write!(f, "bad frame: {error}"),
            Error::Refused(reason) => write!(f, "refused: {reason}"),
            Error::HelperUnreachable { addr, reason } => {
                write!(f, "helper at {addr} unreachable: {reason}")
            }
            Error::PortsExhausted { first, span } => write!(
                f,
                "no free port among {span} ports from {first} (raise the port span or pick another first port)"
            ),
            Error::Timeout(what) => write!(f, "timed out {what}"),
            Error::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
            Error::InvalidSetting { field, reason } => write!(f, "invalid setting {field}: {reason}"),
            Error::Unexpected(what) => write!(f, "unexpected answer: {what}"),
            Error::PayloadTooLarge { len, max } => write!(f, "payload of {len} bytes is over the limit of {max} bytes"),
            Error::WouldBlock => write!(f, "the flow-control window is full"),
            Error::GroupUnreachable { tried } => write!(f, "cannot reach the group to rejoin it: {tried}"),
            Error::ShutDown => write!(f, "the member is shut down"),
            Error::Left => write!(f, "the member left the group"),
            Error::Excluded { view } => write!(f, "excluded from the group by view {view}"),
            Error::Failed { reason } => write!(f, "the member's protocol thread failed: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(error) => Some(error),
            Error::Wire(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error::Io(error)
    }
}

impl From<WireError> for Error {
    fn from(error: WireError) -> Self {
        Error::Wire(error)
    }
}

impl From<ReadError> for Error {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Io(error) => Error::Io(error),
            ReadError::Wire(error) => Error::Wire(error),
            closed @ (ReadError::Eof | ReadError::EofMidFrame) => {
                Error::Io(io::Error::new(io::ErrorKind::UnexpectedEof, closed.to_string()))
            }
        }
    }
}
