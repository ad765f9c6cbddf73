//! The wire format: every byte that crosses a connection, as length-prefixed binary frames.
//!
//! A frame is a big-endian `u32` body length followed by the body: a one-byte tag, then the tag's fields
//! (integers big-endian; strings and byte strings as a `u32` length then the bytes; lists as a `u32`
//! count then the items; options as a `0`/`1` byte then the value). [`encode`] appends one frame to a
//! buffer, so a writer can batch many frames into one system call; [`decode`] parses one body;
//! [`read_frame`] reads one frame from a stream.
//!
//! # Invariants
//! - **The network is never trusted.** Decoding returns a [`WireError`] for short, long, unknown or
//!   malformed input and never panics. No buffer is sized from a length or count before it has been
//!   checked against the bytes the frame can still hold, and lists, strings and snapshots grow only as
//!   their items or bytes actually arrive, so a hostile length prefix costs nothing. (A payload, at most
//!   [`PAYLOAD_LEN_MAX`], is read into one buffer of its full length: no copy on the hot path.)
//! - Lists with one entry per member (views, acknowledgement vectors, rosters, rank lists) are refused
//!   beyond [`MEMBERS_MAX`] entries, whatever the frame's length would allow.
//! - Every handshake frame ([`Frame::Hello`], [`Frame::Register`]) carries [`MAGIC`] and
//!   [`PROTOCOL_VERSION`] right after its tag, and they are checked before anything else is parsed:
//!   a stranger speaking another protocol, or an older `tom`, is told so instead of being misread.
//! - The reply frames [`Frame::Welcome`] and [`Frame::Refuse`] keep their layout in every version, so a
//!   refusal that names both versions is readable by the side that is refused.
//! - A body is decoded completely or not at all: bytes left over after the last field are an error, so
//!   every truncation of a valid frame is an error too (a shorter body runs out before the last field).

use std::io::{self, Read};
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder};

mod errors;
mod reader;
mod tags;
mod writer;

pub use errors::{ReadError, WireError};
use reader::Reader;
use writer::Writer;

use crate::message::{Ballot, Batch, Message, MessageRef, Multicast, Proposal, Report};
use crate::types::{Incarnation, MemberId, Payload, ProcessId, Rank, Stamp, View, ViewId};

/// The first bytes of every handshake frame's fields: "tom", then a format generation byte.
pub const MAGIC: [u8; 4] = *b"tom\x01";

/// The version of the member and registry protocol this build speaks. Both ends of a handshake must
/// speak the same one.
pub const PROTOCOL_VERSION: u16 = 4;

/// Largest frame body accepted before a handshake has succeeded (handshakes, registry traffic): small,
/// because the peer is still a stranger.
pub const HANDSHAKE_LEN_MAX: usize = 64 * 1024;

/// Largest frame body accepted between members. No frame grows with the payloads of a view change or
/// with the size of an application's state: view changes name their cut and move its payloads in
/// chunks, snapshots travel in chunks ([`SNAPSHOT_CHUNK_LEN_MAX`]); `tests/wire.rs` measures the
/// largest of each against this limit.
pub const FRAME_LEN_MAX: usize = 64 * 1024 * 1024;

/// Largest application payload of one multicast, the library's multicast limit.
pub const PAYLOAD_LEN_MAX: usize = 1024 * 1024;

/// Largest chunk of a state in one [`Frame::Snapshot`]: 4 MiB, a sixteenth of [`FRAME_LEN_MAX`].
pub const SNAPSHOT_CHUNK_LEN_MAX: usize = 4 * 1024 * 1024;

/// Bytes of the length prefix in front of every frame body.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Most members a group may have. It bounds every list a member keeps per member, and it keeps the
/// largest roster (every host name at its longest) well inside [`HANDSHAKE_LEN_MAX`].
pub const MEMBERS_MAX: u16 = 128;

/// Longest host name or address a member may advertise (the DNS limit).
pub const HOST_LEN_MAX: usize = 255;

/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 16;

/// Bytes of a handshake proof (an HMAC-SHA-256).
pub const PROOF_LEN: usize = 32;

/// A number used once: each side of an authenticated handshake draws a fresh one, so no proof is ever
/// valid twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; NONCE_LEN]);

/// A proof of knowing the group's secret, bound to one handshake (see [`crate::auth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proof(pub [u8; PROOF_LEN]);

/// Everything that travels on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// Opens every member connection: who is calling, and why.
    Hello(Hello),
    /// The answer to an accepted [`Frame::Hello`].
    Welcome,
    /// The answer to a refused [`Frame::Hello`] or [`Frame::Register`]; the connection closes after it.
    Refuse {
        /// Why, for the refused side's log and error.
        reason: String,
    },
    /// Proof of life on a member connection; carries nothing.
    Heartbeat,
    /// A member asks the helper for a rank (or, when rejoining, announces its new address).
    Register(Register),
    /// The helper's answer to a [`Frame::Register`]: the caller's rank and every member's address.
    Roster(Roster),
    /// A protocol message between members.
    Protocol(Message),
    /// A member's answer to a status query ("why isn't it delivered?"): a readable report.
    StatusReport {
        /// The report, several lines of text.
        report: String,
    },
    /// The answer to a [`Frame::Hello`] or [`Frame::Register`] that carries a nonce, from a side that
    /// holds the group's secret: its own fresh nonce and its proof of the secret for this handshake.
    Challenge {
        /// The answering side's fresh nonce.
        nonce: Nonce,
        /// The answering side's proof, over the caller's opening frame and both nonces.
        proof: Proof,
    },
    /// The caller's proof of the secret, answering a [`Frame::Challenge`].
    Proof(Proof),
    /// One chunk of the application's state at a join position, from a live member to the member that
    /// rejoined. A state travels as consecutive chunks of at most [`SNAPSHOT_CHUNK_LEN_MAX`] bytes
    /// (offsets 0, then each chunk's end, up to `total`), so no frame grows with the state; the receiver
    /// reassembles them and checks that they fit together.
    Snapshot(SnapshotChunk),
}

/// One chunk of a sponsor's snapshot ([`Frame::Snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotChunk {
    /// The view that admitted the rejoining member.
    pub view: ViewId,
    /// The join position: messages delivered before the state was taken.
    pub position: u64,
    /// Where this chunk starts in the whole state.
    pub offset: u64,
    /// The whole state's length in bytes.
    pub total: u64,
    /// The chunk's bytes (`offset + bytes.len() <= total`, checked when decoding).
    pub bytes: Vec<u8>,
}

/// Why a connection is opened; the acceptor decides what the connection may do from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A member connection of the initial mesh, at formation.
    Form,
    /// A restarted process of this rank asks to come back.
    Rejoin,
    /// A status query ("why isn't it delivered?"); the caller need not be a member.
    Status,
}

/// The handshake that opens a member connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hello {
    /// The group the caller belongs to; a connection from another group is refused.
    pub group: String,
    /// The caller's rank (`Rank(0)` for a caller that has none, e.g. a status query).
    pub rank: Rank,
    /// The caller's life of that rank, so a connection of an older life is never taken for a newer one
    /// (0 for a restarted process not yet admitted: the group decides its incarnation).
    pub incarnation: Incarnation,
    /// The caller's process (a fresh identity per life; `ProcessId(0)` for a status query): the
    /// connection speaks for this process only, and counts as a member's only for the life a view lists
    /// with this very process.
    pub process: ProcessId,
    /// What the connection is for.
    pub purpose: Purpose,
    /// The caller's fresh nonce when it holds the group's secret and will prove it; `None` otherwise.
    pub nonce: Option<Nonce>,
}

/// A registration with the helper.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Register {
    /// The group the member wants to join; the helper serves exactly one.
    pub group: String,
    /// The host name or IP address other members dial to reach this member.
    pub host: String,
    /// The port of this member's listener.
    pub port: u16,
    /// The registering process (a fresh identity per life).
    pub process: ProcessId,
    /// `Some(rank)` when a restarted process comes back as `rank`. Without `admitted`, it only looks the
    /// roster up: the group has not admitted it, so nobody records its address yet.
    pub rejoin: Option<Rank>,
    /// With `rejoin`: the group admitted this process as this life (`incarnation`) of the rank, and
    /// the registration records its address. Sent once the process installed the view admitting it.
    pub admitted: Option<Incarnation>,
    /// The caller's fresh nonce when it holds the group's secret and will prove it; `None` otherwise.
    pub nonce: Option<Nonce>,
}

/// The helper's list of members.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Roster {
    /// The rank of the member this roster is sent to.
    pub rank: Rank,
    /// The group's size N.
    pub size: u16,
    /// Every member, sorted by rank.
    pub members: Vec<RosterEntry>,
    /// The life that answers, when a member answers a rejoining process (the helper sends `None`): it
    /// tells the process that dialled a member's address which life, of which process, it reached.
    pub from: Option<MemberId>,
}

/// Where one member listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RosterEntry {
    /// The member's rank.
    pub rank: Rank,
    /// The host name or IP address it advertised.
    pub host: String,
    /// The port of its listener.
    pub port: u16,
    /// The life listening there (1 for a founder; 0 for a process still asking to rejoin).
    pub incarnation: Incarnation,
    /// The process listening there.
    pub process: ProcessId,
}

impl Frame {
    /// A short name for logs and refusals.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::Welcome => "welcome",
            Frame::Refuse { .. } => "refusal",
            Frame::Heartbeat => "heartbeat",
            Frame::Register(_) => "registration",
            Frame::Roster(_) => "roster",
            Frame::Protocol(msg) => msg.kind(),
            Frame::Snapshot(_) => "snapshot",
            Frame::StatusReport { .. } => "status report",
            Frame::Challenge { .. } => "challenge",
            Frame::Proof(_) => "proof",
        }
    }
}

/// Appends `frame` to `out` as one length-prefixed frame.
///
/// The caller keeps frames within the limits the receiver checks ([`FRAME_LEN_MAX`],
/// [`PAYLOAD_LEN_MAX`]); an oversized frame is encoded anyway and refused by the receiver.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
    Writer(out).frame(frame);
    let body_len = out.len() - start - LENGTH_PREFIX_LEN;
    BigEndian::write_u32(
        &mut out[start..start + LENGTH_PREFIX_LEN],
        u32::try_from(body_len).unwrap_or(u32::MAX),
    );
}

/// Decodes one frame body (the bytes after the length prefix).
pub fn decode(body: &[u8]) -> Result<Frame, WireError> {
    let mut source = body;
    let mut r = Reader {
        inner: &mut source,
        remaining: body.len(),
    };
    match r.frame() {
        Ok(frame) => Ok(frame),
        Err(ReadError::Wire(error)) => Err(error),
        // The reader never reads past `remaining`, and a slice holds exactly that many bytes.
        Err(_) => Err(WireError::Truncated),
    }
}

/// Reads one frame whose body is at most `len_max` bytes.
///
/// Returns [`ReadError::Eof`] if the stream ends before the frame's first byte and
/// [`ReadError::EofMidFrame`] if it ends inside it. A length prefix above `len_max` is refused before
/// anything is allocated. Fields are read straight from `reader` (there is no intermediate body
/// buffer), so pass a buffered reader when frames are many and small; a bare socket is fine for a
/// handshake, and reads no byte past the frame.
pub fn read_frame(reader: &mut impl Read, len_max: usize) -> Result<Frame, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]) {
            Ok(0) if filled == 0 => return Err(ReadError::Eof),
            Ok(0) => return Err(ReadError::EofMidFrame),
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ReadError::Io(error)),
        }
    }
    let len = BigEndian::read_u32(&prefix) as usize;
    if len > len_max {
        return Err(ReadError::Wire(WireError::TooLong {
            len: len as u64,
            max: len_max as u64,
        }));
    }
    let mut r = Reader {
        inner: reader,
        remaining: len,
    };
    r.frame()
}
