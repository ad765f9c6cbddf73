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

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder, ReadBytesExt};

use crate::message::{Ballot, Message, MessageRef, Multicast, Proposal, Report};
use crate::types::{Incarnation, MemberId, Payload, ProcessId, Rank, Stamp, View, ViewId};

/// The first bytes of every handshake frame's fields: "tom", then a format generation byte.
pub const MAGIC: [u8; 4] = *b"tom\x01";

/// The version of the member and registry protocol this build speaks. Both ends of a handshake must
/// speak the same one.
pub const PROTOCOL_VERSION: u16 = 3;

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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    Snapshot {
        /// The view that admitted the rejoining member.
        view: ViewId,
        /// The join position: messages delivered before the state was taken.
        position: u64,
        /// Where this chunk starts in the whole state.
        offset: u64,
        /// The whole state's length in bytes.
        total: u64,
        /// The chunk's bytes (`offset + chunk.len() <= total`, checked when decoding).
        chunk: Vec<u8>,
    },
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Why a frame body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A handshake does not start with [`MAGIC`]: the peer does not speak this protocol.
    BadMagic,
    /// The peer speaks another protocol version.
    VersionMismatch {
        /// [`PROTOCOL_VERSION`].
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
            Frame::Snapshot { .. } => "snapshot",
            Frame::StatusReport { .. } => "status report",
            Frame::Challenge { .. } => "challenge",
            Frame::Proof(_) => "proof",
        }
    }
}

/// Why [`read_frame`] returned no frame.
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

// Tags. Numbers are never reused: a retired tag stays retired, so an old peer never misreads a new frame.
const TAG_HELLO: u8 = 1;
const TAG_WELCOME: u8 = 2;
const TAG_REFUSE: u8 = 3;
const TAG_HEARTBEAT: u8 = 4;
const TAG_REGISTER: u8 = 5;
const TAG_ROSTER: u8 = 6;
const TAG_PROTOCOL: u8 = 7;
const TAG_SNAPSHOT: u8 = 8;
const TAG_STATUS_REPORT: u8 = 9;
const TAG_CHALLENGE: u8 = 10;
const TAG_PROOF: u8 = 11;

const MSG_DATA: u8 = 1;
const MSG_ACK: u8 = 2;
const MSG_SUSPECT: u8 = 3;
const MSG_LEAVE: u8 = 4;
const MSG_PREPARE: u8 = 5;
const MSG_PROMISE: u8 = 6;
const MSG_REJECT: u8 = 7;
const MSG_ACCEPT: u8 = 8;
const MSG_ACCEPTED: u8 = 9;
const MSG_DECIDE: u8 = 10;
const MSG_JOIN_REQUEST: u8 = 11;
const MSG_JOIN_REFUSED: u8 = 12;
const MSG_FETCH: u8 = 13;
const MSG_CARRY: u8 = 14;
const MSG_PROGRESS: u8 = 15;

const PURPOSE_FORM: u8 = 1;
const PURPOSE_REJOIN: u8 = 2;
const PURPOSE_STATUS: u8 = 3;

// The fewest bytes one item of a list can take; a count is checked against them before anything is
// allocated, so a count the remaining bytes cannot hold is refused at once.
const MULTICAST_LEN_MIN: usize = 2 + 8 + 8 + 4;
const MEMBER_ID_LEN: usize = 2 + 8 + 8;
const MESSAGE_REF_LEN: usize = 8 + 2 + 8;
const JOINING_LEN: usize = 2 + 8;
const RANK_LEN: usize = 2;
const ACK_LEN: usize = 8;
const ROSTER_ENTRY_LEN_MIN: usize = 2 + 4 + 2 + 8 + 8;

// A string's or a snapshot's buffer starts at most this long and grows as its bytes arrive.
const GROWING_READ_STEP: usize = 64 * 1024;

// A list's buffer starts at most this long and grows only as items arrive, so a count that the
// remaining length allows but the peer never sends allocates little.
const LIST_PREALLOCATE_MAX: usize = 1024;

/// Appends `frame` to `out` as one length-prefixed frame.
///
/// The caller keeps frames within the limits the receiver checks ([`FRAME_LEN_MAX`],
/// [`PAYLOAD_LEN_MAX`]); an oversized frame is encoded anyway and refused by the receiver.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
    let mut w = Writer(out);
    match frame {
        Frame::Hello(hello) => {
            w.u8(TAG_HELLO);
            w.handshake_header();
            w.str(&hello.group);
            w.rank(hello.rank);
            w.u64(hello.incarnation.0);
            w.u64(hello.process.0);
            w.u8(match hello.purpose {
                Purpose::Form => PURPOSE_FORM,
                Purpose::Rejoin => PURPOSE_REJOIN,
                Purpose::Status => PURPOSE_STATUS,
            });
            w.option(&hello.nonce, |w, nonce| w.0.extend_from_slice(&nonce.0));
        }
        Frame::Welcome => w.u8(TAG_WELCOME),
        Frame::Refuse { reason } => {
            w.u8(TAG_REFUSE);
            w.str(reason);
        }
        Frame::Heartbeat => w.u8(TAG_HEARTBEAT),
        Frame::Register(register) => {
            w.u8(TAG_REGISTER);
            w.handshake_header();
            w.str(&register.group);
            w.str(&register.host);
            w.u16(register.port);
            w.u64(register.process.0);
            w.option(&register.rejoin, |w, rank| w.rank(*rank));
            w.option(&register.admitted, |w, incarnation| w.u64(incarnation.0));
            w.option(&register.nonce, |w, nonce| w.0.extend_from_slice(&nonce.0));
        }
        Frame::Roster(roster) => {
            w.u8(TAG_ROSTER);
            w.rank(roster.rank);
            w.u16(roster.size);
            w.list(&roster.members, |w, entry| {
                w.rank(entry.rank);
                w.str(&entry.host);
                w.u16(entry.port);
                w.u64(entry.incarnation.0);
                w.u64(entry.process.0);
            });
            w.option(&roster.from, |w, life| w.member_id(life));
        }
        Frame::Protocol(msg) => {
            w.u8(TAG_PROTOCOL);
            w.message(msg);
        }
        Frame::StatusReport { report } => {
            w.u8(TAG_STATUS_REPORT);
            w.str(report);
        }
        Frame::Challenge { nonce, proof } => {
            w.u8(TAG_CHALLENGE);
            w.0.extend_from_slice(&nonce.0);
            w.0.extend_from_slice(&proof.0);
        }
        Frame::Proof(proof) => {
            w.u8(TAG_PROOF);
            w.0.extend_from_slice(&proof.0);
        }
        Frame::Snapshot {
            view,
            position,
            offset,
            total,
            chunk,
        } => {
            w.u8(TAG_SNAPSHOT);
            w.u64(view.0);
            w.u64(*position);
            w.u64(*offset);
            w.u64(*total);
            w.bytes(chunk);
        }
    }
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

/// Appends big-endian fields to a buffer. Writing to a `Vec` cannot fail, so nothing here returns an error.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u16(&mut self, value: u16) {
        let mut bytes = [0; 2];
        BigEndian::write_u16(&mut bytes, value);
        self.0.extend_from_slice(&bytes);
    }
    fn u32(&mut self, value: u32) {
        let mut bytes = [0; 4];
        BigEndian::write_u32(&mut bytes, value);
        self.0.extend_from_slice(&bytes);
    }
    fn u64(&mut self, value: u64) {
        let mut bytes = [0; 8];
        BigEndian::write_u64(&mut bytes, value);
        self.0.extend_from_slice(&bytes);
    }
    fn len(&mut self, len: usize) {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.0.extend_from_slice(bytes);
    }
    fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }
    fn rank(&mut self, rank: Rank) {
        self.u16(rank.0);
    }
    fn handshake_header(&mut self) {
        self.0.extend_from_slice(&MAGIC);
        self.u16(PROTOCOL_VERSION);
    }
    fn option<T>(&mut self, value: &Option<T>, mut item: impl FnMut(&mut Self, &T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                item(self, value);
            }
        }
    }
    fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.len(items.len());
        for value in items {
            item(self, value);
        }
    }
    fn stamp(&mut self, stamp: &Stamp) {
        self.u64(stamp.lamport);
        self.rank(stamp.origin);
    }
    fn ballot(&mut self, ballot: &Ballot) {
        self.u64(ballot.round);
        self.rank(ballot.proposer);
    }
    fn ranks(&mut self, ranks: &[Rank]) {
        self.list(ranks, |w, rank| w.rank(*rank));
    }
    fn acks(&mut self, acks: &[u64]) {
        self.list(acks, |w, ack| w.u64(*ack));
    }
    fn multicast(&mut self, msg: &Multicast) {
        self.rank(msg.origin);
        self.u64(msg.seq);
        self.u64(msg.lamport);
        self.bytes(msg.payload.as_bytes());
    }
    fn view(&mut self, view: &View) {
        self.u64(view.id.0);
        self.list(&view.members, |w, member| w.member_id(member));
    }
    fn member_id(&mut self, member: &MemberId) {
        self.rank(member.rank);
        self.u64(member.incarnation.0);
        self.u64(member.process.0);
    }
    fn message_ref(&mut self, msg: &MessageRef) {
        self.u64(msg.lamport);
        self.rank(msg.origin);
        self.u64(msg.seq);
    }
    fn proposal(&mut self, proposal: &Proposal) {
        self.view(&proposal.view);
        self.list(&proposal.carried, |w, msg| w.message_ref(msg));
        self.u64(proposal.start_position);
        self.u64(proposal.lamport);
    }
    fn report(&mut self, report: &Report) {
        self.u64(report.delivered_count);
        self.option(&report.last_delivered, |w, stamp| w.stamp(stamp));
        self.list(&report.held, |w, msg| w.message_ref(msg));
        self.ranks(&report.suspects);
        self.ranks(&report.leaving);
        self.list(&report.joining, |w, (rank, process)| {
            w.rank(*rank);
            w.u64(process.0);
        });
        self.u64(report.lamport);
    }
    fn message(&mut self, msg: &Message) {
        match msg {
            Message::Data { view, msg, acks } => {
                self.u8(MSG_DATA);
                self.u64(view.0);
                self.multicast(msg);
                self.acks(acks);
            }
            Message::Ack { view, acks } => {
                self.u8(MSG_ACK);
                self.u64(view.0);
                self.acks(acks);
            }
            Message::Suspect { view, rank } => {
                self.u8(MSG_SUSPECT);
                self.u64(view.0);
                self.rank(*rank);
            }
            Message::Leave { view } => {
                self.u8(MSG_LEAVE);
                self.u64(view.0);
            }
            Message::Prepare { view, ballot } => {
                self.u8(MSG_PREPARE);
                self.u64(view.0);
                self.ballot(ballot);
            }
            Message::Promise {
                view,
                ballot,
                accepted,
                report,
            } => {
                self.u8(MSG_PROMISE);
                self.u64(view.0);
                self.ballot(ballot);
                self.option(accepted, |w, (ballot, proposal)| {
                    w.ballot(ballot);
                    w.proposal(proposal);
                });
                self.report(report);
            }
            Message::Reject { view, ballot, promised } => {
                self.u8(MSG_REJECT);
                self.u64(view.0);
                self.ballot(ballot);
                self.ballot(promised);
            }
            Message::Accept { view, ballot, proposal } => {
                self.u8(MSG_ACCEPT);
                self.u64(view.0);
                self.ballot(ballot);
                self.proposal(proposal);
            }
            Message::Accepted { view, ballot } => {
                self.u8(MSG_ACCEPTED);
                self.u64(view.0);
                self.ballot(ballot);
            }
            Message::Decide { proposal } => {
                self.u8(MSG_DECIDE);
                self.proposal(proposal);
            }
            Message::JoinRequest { rank, process } => {
                self.u8(MSG_JOIN_REQUEST);
                self.rank(*rank);
                self.u64(process.0);
            }
            Message::JoinRefused { reason } => {
                self.u8(MSG_JOIN_REFUSED);
                self.str(reason);
            }
            Message::Fetch { view, wanted } => {
                self.u8(MSG_FETCH);
                self.u64(view.0);
                self.list(wanted, |w, msg| w.message_ref(msg));
            }
            Message::Carry { view, msgs } => {
                self.u8(MSG_CARRY);
                self.u64(view.0);
                self.list(msgs, |w, msg| w.multicast(msg));
            }
            Message::Progress { view } => {
                self.u8(MSG_PROGRESS);
                self.u64(view.0);
            }
        }
    }
}

/// Reads the fields of one body from a stream, never past the body's length.
///
/// `remaining` is what the length prefix still allows. Every read is checked against it first, so a
/// field that would run past the body is [`WireError::Truncated`] (a malformed body), while the stream
/// itself ending is [`ReadError::EofMidFrame`] (a closed connection).
struct Reader<'a, R: Read> {
    inner: &'a mut R,
    remaining: usize,
}

impl<R: Read> Reader<'_, R> {
    fn take(&mut self, len: usize) -> Result<(), ReadError> {
        if len > self.remaining {
            return Err(ReadError::Wire(WireError::Truncated));
        }
        self.remaining -= len;
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        self.take(buf.len())?;
        self.inner.read_exact(buf).map_err(stream_error)
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        self.take(1)?;
        self.inner.read_u8().map_err(stream_error)
    }
    fn u16(&mut self) -> Result<u16, ReadError> {
        self.take(2)?;
        self.inner.read_u16::<BigEndian>().map_err(stream_error)
    }
    fn u32(&mut self) -> Result<u32, ReadError> {
        self.take(4)?;
        self.inner.read_u32::<BigEndian>().map_err(stream_error)
    }
    fn u64(&mut self) -> Result<u64, ReadError> {
        self.take(8)?;
        self.inner.read_u64::<BigEndian>().map_err(stream_error)
    }

    /// A length or count, checked against the bytes left: `count` items of at least `item_len` bytes.
    fn count(&mut self, item_len: usize) -> Result<usize, ReadError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_len) > self.remaining {
            return Err(ReadError::Wire(WireError::Truncated));
        }
        Ok(count)
    }

    fn bool(&mut self) -> Result<bool, ReadError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ReadError::Wire(WireError::Malformed("flag byte is neither 0 nor 1"))),
        }
    }

    /// `len` bytes, in a buffer that grows as they arrive: a length the frame allows but the peer never
    /// sends costs at most [`GROWING_READ_STEP`] bytes.
    fn byte_vec(&mut self, len: usize) -> Result<Vec<u8>, ReadError> {
        self.take(len)?;
        let mut bytes = Vec::with_capacity(len.min(GROWING_READ_STEP));
        let read = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut bytes)
            .map_err(stream_error)?;
        if read < len {
            return Err(ReadError::EofMidFrame);
        }
        Ok(bytes)
    }

    fn string(&mut self) -> Result<String, ReadError> {
        let len = self.count(1)?;
        let bytes = self.byte_vec(len)?;
        String::from_utf8(bytes).map_err(|_| ReadError::Wire(WireError::BadUtf8))
    }

    fn payload(&mut self) -> Result<Payload, ReadError> {
        let len = self.count(1)?;
        if len > PAYLOAD_LEN_MAX {
            return Err(ReadError::Wire(WireError::TooLong {
                len: len as u64,
                max: PAYLOAD_LEN_MAX as u64,
            }));
        }
        // Read straight into the shared buffer the payload keeps: one allocation, no copy.
        let mut bytes: Arc<[u8]> = (0..len).map(|_| 0u8).collect();
        match Arc::get_mut(&mut bytes) {
            Some(buf) => self.fill(buf)?,
            None => return Err(ReadError::Wire(WireError::Malformed("payload buffer shared"))),
        }
        Ok(Payload(bytes))
    }

    fn list<T>(
        &mut self,
        item_len_min: usize,
        item: impl FnMut(&mut Self) -> Result<T, ReadError>,
    ) -> Result<Vec<T>, ReadError> {
        self.list_of_at_most(usize::MAX, item_len_min, item)
    }

    /// A list of one entry per member at most: longer is refused, whatever the frame could hold.
    fn member_list<T>(
        &mut self,
        item_len_min: usize,
        item: impl FnMut(&mut Self) -> Result<T, ReadError>,
    ) -> Result<Vec<T>, ReadError> {
        self.list_of_at_most(usize::from(MEMBERS_MAX), item_len_min, item)
    }

    fn list_of_at_most<T>(
        &mut self,
        count_max: usize,
        item_len_min: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, ReadError>,
    ) -> Result<Vec<T>, ReadError> {
        let count = self.count(item_len_min)?;
        if count > count_max {
            return Err(ReadError::Wire(WireError::TooLong {
                len: count as u64,
                max: count_max as u64,
            }));
        }
        let mut items = Vec::with_capacity(count.min(LIST_PREALLOCATE_MAX));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn option<T>(&mut self, item: impl FnOnce(&mut Self) -> Result<T, ReadError>) -> Result<Option<T>, ReadError> {
        if self.bool()? {
            Ok(Some(item(self)?))
        } else {
            Ok(None)
        }
    }

    fn rank(&mut self) -> Result<Rank, ReadError> {
        Ok(Rank(self.u16()?))
    }
    fn nonce(&mut self) -> Result<Nonce, ReadError> {
        let mut nonce = [0; NONCE_LEN];
        self.fill(&mut nonce)?;
        Ok(Nonce(nonce))
    }
    fn proof(&mut self) -> Result<Proof, ReadError> {
        let mut proof = [0; PROOF_LEN];
        self.fill(&mut proof)?;
        Ok(Proof(proof))
    }
    fn view_id(&mut self) -> Result<ViewId, ReadError> {
        Ok(ViewId(self.u64()?))
    }
    fn ranks(&mut self) -> Result<Vec<Rank>, ReadError> {
        self.member_list(RANK_LEN, |r| r.rank())
    }
    fn acks(&mut self) -> Result<Vec<u64>, ReadError> {
        self.member_list(ACK_LEN, |r| r.u64())
    }
    fn stamp(&mut self) -> Result<Stamp, ReadError> {
        Ok(Stamp {
            lamport: self.u64()?,
            origin: self.rank()?,
        })
    }
    fn ballot(&mut self) -> Result<Ballot, ReadError> {
        Ok(Ballot {
            round: self.u64()?,
            proposer: self.rank()?,
        })
    }
    fn multicast(&mut self) -> Result<Multicast, ReadError> {
        Ok(Multicast {
            origin: self.rank()?,
            seq: self.u64()?,
            lamport: self.u64()?,
            payload: self.payload()?,
        })
    }
    fn multicasts(&mut self) -> Result<Vec<Multicast>, ReadError> {
        self.list(MULTICAST_LEN_MIN, |r| r.multicast())
    }
    fn view(&mut self) -> Result<View, ReadError> {
        Ok(View {
            id: self.view_id()?,
            members: self.member_list(MEMBER_ID_LEN, |r| {
                Ok(MemberId {
                    rank: r.rank()?,
                    incarnation: Incarnation(r.u64()?),
                    process: ProcessId(r.u64()?),
                })
            })?,
        })
    }
    fn member_id(&mut self) -> Result<MemberId, ReadError> {
        Ok(MemberId {
            rank: self.rank()?,
            incarnation: Incarnation(self.u64()?),
            process: ProcessId(self.u64()?),
        })
    }
    fn message_ref(&mut self) -> Result<MessageRef, ReadError> {
        Ok(MessageRef {
            lamport: self.u64()?,
            origin: self.rank()?,
            seq: self.u64()?,
        })
    }
    fn message_refs(&mut self) -> Result<Vec<MessageRef>, ReadError> {
        self.list(MESSAGE_REF_LEN, |r| r.message_ref())
    }
    fn proposal(&mut self) -> Result<Proposal, ReadError> {
        Ok(Proposal {
            view: self.view()?,
            carried: self.message_refs()?,
            start_position: self.u64()?,
            lamport: self.u64()?,
        })
    }
    fn report(&mut self) -> Result<Report, ReadError> {
        Ok(Report {
            delivered_count: self.u64()?,
            last_delivered: self.option(|r| r.stamp())?,
            held: self.message_refs()?,
            suspects: self.ranks()?,
            leaving: self.ranks()?,
            joining: self.member_list(JOINING_LEN, |r| Ok((r.rank()?, ProcessId(r.u64()?))))?,
            lamport: self.u64()?,
        })
    }

    /// Checks [`MAGIC`] and [`PROTOCOL_VERSION`] before any other field of a handshake is looked at.
    fn handshake_header(&mut self) -> Result<(), ReadError> {
        let mut magic = [0; MAGIC.len()];
        self.fill(&mut magic)?;
        if magic != MAGIC {
            return Err(ReadError::Wire(WireError::BadMagic));
        }
        let theirs = self.u16()?;
        if theirs != PROTOCOL_VERSION {
            return Err(ReadError::Wire(WireError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
            }));
        }
        Ok(())
    }

    fn frame(&mut self) -> Result<Frame, ReadError> {
        let tag = self.u8()?;
        let frame = match tag {
            TAG_HELLO => {
                self.handshake_header()?;
                Frame::Hello(Hello {
                    group: self.string()?,
                    rank: self.rank()?,
                    incarnation: Incarnation(self.u64()?),
                    process: ProcessId(self.u64()?),
                    purpose: match self.u8()? {
                        PURPOSE_FORM => Purpose::Form,
                        PURPOSE_REJOIN => Purpose::Rejoin,
                        PURPOSE_STATUS => Purpose::Status,
                        tag => return Err(ReadError::Wire(WireError::UnknownTag { what: "purpose", tag })),
                    },
                    nonce: self.option(|r| r.nonce())?,
                })
            }
            TAG_WELCOME => Frame::Welcome,
            TAG_REFUSE => Frame::Refuse { reason: self.string()? },
            TAG_HEARTBEAT => Frame::Heartbeat,
            TAG_REGISTER => {
                self.handshake_header()?;
                Frame::Register(Register {
                    group: self.string()?,
                    host: self.string()?,
                    port: self.u16()?,
                    process: ProcessId(self.u64()?),
                    rejoin: self.option(|r| r.rank())?,
                    admitted: self.option(|r| Ok(Incarnation(r.u64()?)))?,
                    nonce: self.option(|r| r.nonce())?,
                })
            }
            TAG_ROSTER => Frame::Roster(Roster {
                rank: self.rank()?,
                size: self.u16()?,
                members: self.member_list(ROSTER_ENTRY_LEN_MIN, |r| {
                    Ok(RosterEntry {
                        rank: r.rank()?,
                        host: r.string()?,
                        port: r.u16()?,
                        incarnation: Incarnation(r.u64()?),
                        process: ProcessId(r.u64()?),
                    })
                })?,
                from: self.option(|r| r.member_id())?,
            }),
            TAG_PROTOCOL => Frame::Protocol(self.message()?),
            TAG_STATUS_REPORT => Frame::StatusReport { report: self.string()? },
            TAG_CHALLENGE => Frame::Challenge {
                nonce: self.nonce()?,
                proof: self.proof()?,
            },
            TAG_PROOF => Frame::Proof(self.proof()?),
            TAG_SNAPSHOT => {
                let view = ViewId(self.u64()?);
                let position = self.u64()?;
                let offset = self.u64()?;
                let total = self.u64()?;
                let len = self.count(1)?;
                if offset.checked_add(len as u64).map_or(true, |end| end > total) {
                    return Err(ReadError::Wire(WireError::Malformed(
                        "snapshot chunk beyond the state's end",
                    )));
                }
                Frame::Snapshot {
                    view,
                    position,
                    offset,
                    total,
                    chunk: self.byte_vec(len)?,
                }
            }
            tag => return Err(ReadError::Wire(WireError::UnknownTag { what: "frame", tag })),
        };
        if self.remaining != 0 {
            return Err(ReadError::Wire(WireError::Malformed("bytes left after the last field")));
        }
        Ok(frame)
    }

    fn message(&mut self) -> Result<Message, ReadError> {
        let tag = self.u8()?;
        Ok(match tag {
            MSG_DATA => Message::Data {
                view: self.view_id()?,
                msg: self.multicast()?,
                acks: self.acks()?,
            },
            MSG_ACK => Message::Ack {
                view: self.view_id()?,
                acks: self.acks()?,
            },
            MSG_SUSPECT => Message::Suspect {
                view: self.view_id()?,
                rank: self.rank()?,
            },
            MSG_LEAVE => Message::Leave { view: self.view_id()? },
            MSG_PREPARE => Message::Prepare {
                view: self.view_id()?,
                ballot: self.ballot()?,
            },
            MSG_PROMISE => Message::Promise {
                view: self.view_id()?,
                ballot: self.ballot()?,
                accepted: self.option(|r| Ok((r.ballot()?, Box::new(r.proposal()?))))?,
                report: Box::new(self.report()?),
            },
            MSG_REJECT => Message::Reject {
                view: self.view_id()?,
                ballot: self.ballot()?,
                promised: self.ballot()?,
            },
            MSG_ACCEPT => Message::Accept {
                view: self.view_id()?,
                ballot: self.ballot()?,
                proposal: Box::new(self.proposal()?),
            },
            MSG_ACCEPTED => Message::Accepted {
                view: self.view_id()?,
                ballot: self.ballot()?,
            },
            MSG_DECIDE => Message::Decide {
                proposal: Box::new(self.proposal()?),
            },
            MSG_JOIN_REQUEST => Message::JoinRequest {
                rank: self.rank()?,
                process: ProcessId(self.u64()?),
            },
            MSG_JOIN_REFUSED => Message::JoinRefused { reason: self.string()? },
            MSG_FETCH => Message::Fetch {
                view: self.view_id()?,
                wanted: self.message_refs()?,
            },
            MSG_CARRY => Message::Carry {
                view: self.view_id()?,
                msgs: self.multicasts()?,
            },
            MSG_PROGRESS => Message::Progress { view: self.view_id()? },
            tag => return Err(ReadError::Wire(WireError::UnknownTag { what: "message", tag })),
        })
    }
}

/// A failed read of a field that the length prefix allows: the stream, not the body, is at fault.
fn stream_error(error: io::Error) -> ReadError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        ReadError::EofMidFrame
    } else {
        ReadError::Io(error)
    }
}
