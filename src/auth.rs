//! The group secret (a "cookie") and the challenge–response that proves it at the start of every
//! connection: member to helper, member to member, and a status query.
//!
//! # The exchange
//! With a secret, the caller's opening frame (its [`Frame::Hello`] or [`Frame::Register`]) carries a
//! fresh nonce. The answering side, if it holds a secret too, replies with a [`Frame::Challenge`]: its own
//! fresh nonce and its proof. The caller checks that proof and replies with its own ([`Frame::Proof`]);
//! only then does the answering side go on as without a secret (welcome, roster or report). A proof is
//! HMAC-SHA-256 keyed by the secret over a label naming the side, the caller's whole opening frame and
//! both nonces. Hence:
//! - the secret never crosses the wire, and a side that lacks it learns nothing it can reuse;
//! - a recorded handshake cannot be replayed: the answering side's nonce is fresh every time;
//! - a proof cannot be reflected back: the caller's and the answering side's labels differ;
//! - the opening frame (group, rank, incarnation, purpose, address) cannot be altered in flight without
//!   breaking both proofs.
//!
//! Both sides refuse with a reason the other side logs: a wrong secret, a secret on one side only.
//!
//! # What it does not do
//! Nothing is encrypted, and only the handshake is authenticated: an attacker on the network path sees
//! every frame and could take over a connection after its handshake. The secret keeps strangers and
//! other groups out of a group on a shared network; it is no defence against a hostile network.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::warn;

use crate::digest::{equal_in_constant_time, hmac_sha256, sha256};
use crate::error::{Error, Result};
use crate::net;
use crate::types::ProcessId;
use crate::wire::{self, Frame, Nonce, Proof, ReadError, NONCE_LEN};

/// Longest secret file read; a secret needs no more, and a wrong path to a huge file fails clearly.
pub const SECRET_FILE_LEN_MAX: u64 = 4096;

/// The group's shared secret. Its bytes are never logged or sent.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(..)")
    }
}

impl Secret {
    /// A secret of these bytes; empty is refused (it would prove nothing).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(Error::InvalidConfig("the group secret is empty".into()));
        }
        Ok(Secret(bytes.into()))
    }

    /// Reads a secret from a file (a "cookie file"): its bytes, without trailing white space, so that a
    /// file written by `echo` and one written by `printf` hold the same secret. A file others may read
    /// is used, with a warning.
    pub fn from_file(path: &Path) -> Result<Secret> {
        let invalid = |why: String| Error::InvalidConfig(format!("cookie file {}: {why}", path.display()));
        let file = File::open(path).map_err(|error| invalid(error.to_string()))?;
        let mut bytes = Vec::new();
        file.take(SECRET_FILE_LEN_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| invalid(error.to_string()))?;
        if bytes.len() as u64 > SECRET_FILE_LEN_MAX {
            return Err(invalid(format!("longer than {SECRET_FILE_LEN_MAX} bytes")));
        }
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(invalid("empty".into()));
        }
        warn_if_shared(path);
        Ok(Secret(bytes.into()))
    }

    /// This side's proof for one handshake.
    fn prove(&self, side: Side, opening: &Frame, caller: &Nonce, answerer: &Nonce) -> Proof {
        let mut opening_bytes = Vec::new();
        wire::encode(opening, &mut opening_bytes);
        Proof(hmac_sha256(
            &self.0,
            &[side.label(), &opening_bytes, &caller.0, &answerer.0],
        ))
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            warn!(
                "cookie file {} may be read by other users (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// Which side of a handshake a proof is from; part of what is signed, so one side's proof is never
/// valid as the other's.
#[derive(Clone, Copy)]
enum Side {
    Caller,
    Answerer,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Caller => b"tom handshake v2: caller\0",
            Side::Answerer => b"tom handshake v2: answerer\0",
        }
    }
}

/// A fresh nonce: the system's random bytes, mixed with a process-wide counter and the time, so that
/// two nonces of one process never repeat even where no random device can be read.
pub fn fresh_nonce() -> Nonce {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 32];
    let from_system = File::open("/dev/urandom").and_then(|mut device| device.read_exact(&mut random));
    if from_system.is_err() {
        // No random device: std's hasher keys are drawn from the system's randomness where it has any.
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        random[..8].copy_from_slice(&hasher.finish().to_be_bytes());
    }
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let mixed = sha256(&[&random[..], &count.to_be_bytes(), &nanos.to_be_bytes()].concat());
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&mixed[..NONCE_LEN]);
    Nonce(nonce)
}

/// A fresh identity for a life this process starts (formation, a rejoin): drawn like a nonce, from the
/// system's randomness, never 0 (the identity of a caller without a life, e.g. a status query).
pub fn fresh_process_id() -> ProcessId {
    loop {
        let nonce = fresh_nonce();
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&nonce.0[..8]);
        let id = u64::from_be_bytes(bytes);
        if id != 0 {
            return ProcessId(id);
        }
    }
}

/// The nonce an opening frame carries, if any.
fn opening_nonce(opening: &Frame) -> Option<Nonce> {
    match opening {
        Frame::Hello(hello) => hello.nonce,
        Frame::Register(register) => register.nonce,
        _ => None,
    }
}

/// Opens a connection as the caller: sends `opening` (a hello or a registration), and with a secret,
/// proves it and checks the answering side's proof. The caller then reads the answering side's reply
/// (welcome, roster, …) as without a secret. `who` names the other side in errors.
pub fn open(
    stream: &TcpStream,
    mut opening: Frame,
    secret: Option<&Secret>,
    deadline: Instant,
    who: &str,
) -> Result<()> {
    let caller_nonce = secret.map(|_| fresh_nonce());
    match &mut opening {
        Frame::Hello(hello) => hello.nonce = caller_nonce,
        Frame::Register(register) => register.nonce = caller_nonce,
        other => {
            return Err(Error::Unexpected(format!(
                "a {} cannot open a connection",
                other.kind()
            )))
        }
    }
    net::write_frame(stream, &opening, left(deadline))?;
    let (Some(secret), Some(caller_nonce)) = (secret, caller_nonce) else {
        return Ok(());
    };
    let (answerer_nonce, their_proof) = match net::read_frame_before(stream, deadline, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Challenge { nonce, proof }) => (nonce, proof),
        Ok(Frame::Refuse { reason }) => return Err(Error::Refused(format!("{who}: {reason}"))),
        Ok(other) => {
            return Err(Error::Unexpected(format!(
                "{who} answered our hello with a {} instead of a challenge",
                other.kind()
            )))
        }
        Err(ReadError::Io(error)) if error.kind() == std::io::ErrorKind::TimedOut => {
            return Err(Error::Timeout(format!("waiting for {who}'s challenge")))
        }
        Err(error) => return Err(error.into()),
    };
    let expected = secret.prove(Side::Answerer, &opening, &caller_nonce, &answerer_nonce);
    if !equal_in_constant_time(&expected.0, &their_proof.0) {
        let reason = "wrong secret: your proof does not match the caller's cookie";
        let _ = net::write_frame(stream, &Frame::Refuse { reason: reason.into() }, left(deadline));
        return Err(Error::Refused(format!(
            "{who} does not know this group's secret (its cookie differs); connection closed"
        )));
    }
    let ours = secret.prove(Side::Caller, &opening, &caller_nonce, &answerer_nonce);
    net::write_frame(stream, &Frame::Proof(ours), left(deadline))?;
    Ok(())
}

/// Why the answering side ends a handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Tell the caller why, then close.
    Refuse(String),
    /// The caller cannot be told (it went silent or away, or refused us): close.
    Drop(String),
}

/// Answers the opening frame of a connection as the answering side: with a secret, challenges the
/// caller and checks its proof. `Ok` means the caller may go on (the secret matched, or neither side has
/// one).
pub fn answer(
    stream: &TcpStream,
    opening: &Frame,
    secret: Option<&Secret>,
    deadline: Instant,
) -> std::result::Result<(), Rejection> {
    let caller_nonce = opening_nonce(opening);
    let (secret, caller_nonce) = match (secret, caller_nonce) {
        (None, None) => return Ok(()),
        (Some(_), None) => {
            return Err(Rejection::Refuse(
                "this group requires a secret: start with the group's --cookie-file".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Rejection::Refuse(
                "this side has no secret, the caller has one: start both with the same --cookie-file".into(),
            ))
        }
        (Some(secret), Some(nonce)) => (secret, nonce),
    };
    let answerer_nonce = fresh_nonce();
    let challenge = Frame::Challenge {
        nonce: answerer_nonce,
        proof: secret.prove(Side::Answerer, opening, &caller_nonce, &answerer_nonce),
    };
    if let Err(error) = net::write_frame(stream, &challenge, left(deadline)) {
        return Err(Rejection::Drop(format!("could not send the challenge: {error}")));
    }
    let their_proof = match net::read_frame_before(stream, deadline, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Proof(proof)) => proof,
        Ok(Frame::Refuse { reason }) => return Err(Rejection::Drop(format!("the caller refused us: {reason}"))),
        Ok(other) => return Err(Rejection::Refuse(format!("expected a proof, got a {}", other.kind()))),
        Err(ReadError::Wire(error)) => return Err(Rejection::Refuse(error.to_string())),
        Err(error) => return Err(Rejection::Drop(format!("{error} before its proof"))),
    };
    let expected = secret.prove(Side::Caller, opening, &caller_nonce, &answerer_nonce);
    if !equal_in_constant_time(&expected.0, &their_proof.0) {
        return Err(Rejection::Refuse(
            "wrong secret: the caller's proof does not match this group's cookie".into(),
        ));
    }
    Ok(())
}

/// Time left until `deadline`, at least a millisecond (a zero write timeout means "none").
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}
