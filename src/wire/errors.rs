//! Why a frame could not be read: a malformed body ([`WireError`]) or a stream that failed or ended
//! ([`ReadError`]).

use std::fmt;
use std::io;

/// Why a frame body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The body ended before its last field.
    Truncated,
    /// A length or count is larger than allowed.
    TooLong {
        /// The length found.
        len: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A tag byte names nothing this version knows.
    UnknownTag {
        /// What kind of tag was read.
        what: &'static str,
        /// The tag byte.
        tag: u8,
    },
    /// A string is not UTF-8.
    BadUtf8,
    /// The fields are inconsistent (leftover bytes, a bad flag byte, …).
    Malformed(&'static str),
    /// A handshake does not start with [`super::MAGIC`]: the peer does not speak this protocol.
    BadMagic,
    /// The peer speaks another protocol version.
    VersionMismatch {
        /// [`super::PROTOCOL_VERSION`].
        ours: u16,
        /// The version the peer sent.
        theirs: u16,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => write!(f, "truncated frame"),
            WireError::TooLong { len, max } => {
                write!(f, "length {len} exceeds the maximum of {max}")
            }
            WireError::UnknownTag { what, tag } => write!(f, "unknown {what} tag {tag}"),
            WireError::BadUtf8 => write!(f, "string is not valid UTF-8"),
            WireError::Malformed(what) => write!(f, "malformed frame: {what}"),
            WireError::BadMagic => write!(f, "not a tom handshake (bad magic bytes)"),
            WireError::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: this side speaks version {ours}, the peer version {theirs}"
            ),
        }
    }
}

impl std::error::Error for WireError {}

/// Why [`super::read_frame`] returned no frame.
#[derive(Debug)]
pub enum ReadError {
    /// The stream ended cleanly, before the first byte of a frame.
    Eof,
    /// The stream ended in the middle of a frame.
    EofMidFrame,
    /// Reading failed (including a read timeout).
    Io(io::Error),
    /// The bytes are not a valid frame.
    Wire(WireError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Eof => write!(f, "connection closed"),
            ReadError::EofMidFrame => write!(f, "connection closed in the middle of a frame"),
            ReadError::Io(error) => write!(f, "read failed: {error}"),
            ReadError::Wire(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(error) => Some(error),
            ReadError::Wire(error) => Some(error),
            ReadError::Eof | ReadError::EofMidFrame => None,
        }
    }
}

impl From<WireError> for ReadError {
    fn from(error: WireError) -> Self {
        ReadError::Wire(error)
    }
}
