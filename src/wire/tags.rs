//! The numbers on the wire: frame tags, message tags, purposes, and the fixed lengths decoding checks
//! lists against before allocating.

// Tags. Numbers are never reused: a retired tag stays retired, so an old peer never misreads a new frame.
pub(super) const TAG_HELLO: u8 = 1;
pub(super) const TAG_WELCOME: u8 = 2;
pub(super) const TAG_REFUSE: u8 = 3;
pub(super) const TAG_HEARTBEAT: u8 = 4;
pub(super) const TAG_REGISTER: u8 = 5;
pub(super) const TAG_ROSTER: u8 = 6;
pub(super) const TAG_PROTOCOL: u8 = 7;
pub(super) const TAG_SNAPSHOT: u8 = 8;
pub(super) const TAG_STATUS_REPORT: u8 = 9;
pub(super) const TAG_CHALLENGE: u8 = 10;
pub(super) const TAG_PROOF: u8 = 11;

// 1 was a data frame of one multicast, up to protocol version 3; retired for MSG_DATA (16).
pub(super) const MSG_ACK: u8 = 2;
pub(super) const MSG_SUSPECT: u8 = 3;
pub(super) const MSG_LEAVE: u8 = 4;
pub(super) const MSG_PREPARE: u8 = 5;
pub(super) const MSG_PROMISE: u8 = 6;
pub(super) const MSG_REJECT: u8 = 7;
pub(super) const MSG_ACCEPT: u8 = 8;
pub(super) const MSG_ACCEPTED: u8 = 9;
pub(super) const MSG_DECIDE: u8 = 10;
pub(super) const MSG_JOIN_REQUEST: u8 = 11;
pub(super) const MSG_JOIN_REFUSED: u8 = 12;
pub(super) const MSG_FETCH: u8 = 13;
pub(super) const MSG_CARRY: u8 = 14;
pub(super) const MSG_PROGRESS: u8 = 15;
/// A data frame: a run of consecutive multicasts of one origin (protocol version 4 on).
pub(super) const MSG_DATA: u8 = 16;

pub(super) const PURPOSE_FORM: u8 = 1;
pub(super) const PURPOSE_REJOIN: u8 = 2;
pub(super) const PURPOSE_STATUS: u8 = 3;

// The fewest bytes one item of a list can take; a count is checked against them before anything is
// allocated, so a count the remaining bytes cannot hold is refused at once.
pub(super) const MULTICAST_LEN_MIN: usize = 2 + 8 + 8 + 4;
/// One message of a data frame's run: its Lamport time and its payload's length.
pub(super) const BATCH_ENTRY_LEN_MIN: usize = 8 + 4;
pub(super) const MEMBER_ID_LEN: usize = 2 + 8 + 8;
pub(super) const MESSAGE_REF_LEN: usize = 8 + 2 + 8;
pub(super) const JOINING_LEN: usize = 2 + 8;
pub(super) const RANK_LEN: usize = 2;
pub(super) const ACK_LEN: usize = 8;
pub(super) const ROSTER_ENTRY_LEN_MIN: usize = 2 + 4 + 2 + 8 + 8;

// A string's or a snapshot's buffer starts at most this long and grows as its bytes arrive.
pub(super) const GROWING_READ_STEP: usize = 64 * 1024;

// A list's buffer starts at most this long and grows only as items arrive, so a count that the
// remaining length allows but the peer never sends allocates little.
pub(super) const LIST_PREALLOCATE_MAX: usize = 1024;
