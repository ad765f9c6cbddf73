//! The endpoint's one store of frames kept for other processes, keyed by process, both ways:
//! - **from** a process a view does not list yet: what it sent beyond its join request (a process
//!   admitted elsewhere first sends its first frames of the new view), handed to the core in the order
//!   they arrived once a view here lists that process, on the connection they came on;
//! - **to** a listed process: what this member sent it that it may not have read — frames for a
//!   life of the view without a connection yet (sent first once one comes), and what was written on
//!   a connection its process has not used yet (a restarted process abandons a dial at its handshake
//!   deadline; the frames then go out on its next connection). Kept until the process uses a
//!   connection of this member.
//!
//! Both are bounded per process, so a peer can never make this member grow a buffer without limit.

use std::collections::BTreeMap;

use super::ConnId;
use crate::types::{ProcessId, Rank};
use crate::wire::{self, Frame};

/// Room for one data frame beyond its payload: the message header and its acknowledgements (one per
/// member, at most [`wire::MEMBERS_MAX`]).
pub const EARLY_FRAME_OVERHEAD: usize = 4 * 1024;

/// How many bytes (encoded) a joiner connection may send before a view admits its process, for a group
/// whose members have `window` messages in flight at most. It sends nothing but its join request until
/// it is admitted; then its decision relay and its first frames of the new view may arrive here before
/// this member has installed that view: up to a full window of its own messages of up to
/// [`wire::PAYLOAD_LEN_MAX`] each, with what else goes with them (acknowledgements, a relayed decision,
/// a snapshot chunk) within one more frame's worth.
pub fn early_bytes_max(window: usize) -> usize {
    window
        .saturating_mul(wire::PAYLOAD_LEN_MAX + EARLY_FRAME_OVERHEAD)
        .saturating_add(wire::FRAME_LEN_MAX)
}

/// The frames would pass the bound.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TooMuchEarly;

/// The frames kept for other processes, by process (see the module documentation).
#[derive(Clone, Debug, Hash)]
pub(super) struct EarlyStore {
    /// From a process not listed yet, with the connection they came on.
    pub from: ByProcess<ConnId>,
    /// To a process, with the rank it is a life of.
    pub to: ByProcess<Rank>,
}

impl EarlyStore {
    /// An empty store for a group whose members have `window` messages in flight at most.
    pub fn new(window: usize) -> EarlyStore {
        let limit = early_bytes_max(window.max(1));
        EarlyStore {
            from: ByProcess::new(limit),
            to: ByProcess::new(limit),
        }
    }
}

/// Frames kept one way, by process, each under a key (the connection they came on, the rank of the
/// life they are for), at most `limit` encoded bytes per process: frames under one key never mix with
/// another's.
#[derive(Clone, Debug, Hash)]
pub(super) struct ByProcess<K> {
    limit: usize,
    kept: BTreeMap<ProcessId, Kept<K>>,
}

/// What is kept for one process: its key, the frames in order, and their encoded size.
#[derive(Clone, Debug, Hash)]
struct Kept<K> {
    key: K,
    frames: Vec<Frame>,
    bytes: usize,
}

impl<K: Copy + Eq> ByProcess<K> {
    fn new(limit: usize) -> ByProcess<K> {
        ByProcess {
            limit,
            kept: BTreeMap::new(),
        }
    }

    /// The bound, in encoded bytes per process.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Keeps `frame` for `process` under `key` (what was kept under another key is let go); past the
    /// bound everything kept for it is let go. How many frames are kept, if within the bound.
    pub fn keep(&mut self, process: ProcessId, key: K, frame: Frame) -> Result<usize, TooMuchEarly> {
        let mut encoded = Vec::new();
        wire::encode(&frame, &mut encoded);
        let empty = || Kept {
            key,
            frames: Vec::new(),
            bytes: 0,
        };
        let kept = self.kept.entry(process).or_insert_with(empty);
        if kept.key != key {
            *kept = empty();
        }
        if kept.bytes.saturating_add(encoded.len()) > self.limit {
            self.kept.remove(&process);
            return Err(TooMuchEarly);
        }
        kept.bytes += encoded.len();
        kept.frames.push(frame);
        Ok(kept.frames.len())
    }

    /// The frames kept for `process` under `key`, oldest first; `keep`: they stay kept.
    pub fn frames(&mut self, process: ProcessId, key: K, keep: bool) -> Vec<Frame> {
        match self.kept.get(&process) {
            Some(kept) if kept.key == key && keep => kept.frames.clone(),
            Some(kept) if kept.key == key => self.kept.remove(&process).map_or_else(Vec::new, |k| k.frames),
            _ => Vec::new(),
        }
    }

    /// Nothing more is kept for `process`.
    pub fn forget(&mut self, process: ProcessId) {
        self.kept.remove(&process);
    }

    /// Keeps only what `keep(process, key)` names.
    pub fn retain(&mut self, mut keep: impl FnMut(ProcessId, K) -> bool) {
        self.kept.retain(|process, kept| keep(*process, kept.key));
    }

    /// What is kept: (process, key).
    pub fn keys(&self) -> impl Iterator<Item = (ProcessId, K)> + '_ {
        self.kept.iter().map(|(process, kept)| (*process, kept.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Batch, Message, Multicast};
    use crate::types::{Payload, Rank, ViewId};

    #[test]
    fn frames_are_kept_in_order_under_one_key_up_to_the_bound() {
        let mut early: ByProcess<u64> = ByProcess::new(1_000);
        let (p, q) = (ProcessId(7), ProcessId(8));
        let big = Frame::StatusReport {
            report: "x".repeat(600),
        };
        assert_eq!(early.keep(p, 1, Frame::StatusReport { report: "a".into() }), Ok(1));
        assert_eq!(early.keep(p, 1, big.clone()), Ok(2));
        assert_eq!(early.keep(q, 1, big.clone()), Ok(1), "the bound is per process");
        assert_eq!(early.frames(p, 2, true).len(), 0, "not under another key");
        let frames = early.frames(p, 1, true);
        assert!(matches!(&frames[0], Frame::StatusReport { report } if report == "a"));
        assert_eq!(early.keep(p, 1, big.clone()), Err(TooMuchEarly));
        assert_eq!(early.frames(p, 1, false).len(), 0, "past the bound, nothing is kept");
        assert_eq!(early.keep(q, 2, big), Ok(1), "another key lets the old frames go");
        assert_eq!(early.frames(q, 2, false).len(), 1);
        assert_eq!(early.keys().count(), 0);
    }

    /// A joiner's first frames with a full window of the largest payloads, each with a full
    /// acknowledgement vector, plus a frame-sized one, are kept.
    #[test]
    fn a_full_window_of_the_largest_payloads_is_kept() {
        let window = 3;
        let mut early: ByProcess<u64> = ByProcess::new(early_bytes_max(window));
        let joiner = ProcessId(9);
        let payload = Payload::from(vec![7u8; wire::PAYLOAD_LEN_MAX]);
        for seq in 1..=window as u64 {
            let data = Message::Data {
                view: ViewId(4),
                batch: Batch::new(Multicast {
                    origin: Rank(3),
                    seq,
                    lamport: seq,
                    payload: payload.clone(),
                }),
                acks: vec![u64::MAX; usize::from(wire::MEMBERS_MAX)],
            };
            early.keep(joiner, 1, Frame::Protocol(data)).unwrap();
        }
        let chunk = Frame::Snapshot(wire::SnapshotChunk {
            view: ViewId(4),
            position: 0,
            offset: 0,
            total: wire::SNAPSHOT_CHUNK_LEN_MAX as u64,
            bytes: vec![0; wire::SNAPSHOT_CHUNK_LEN_MAX],
        });
        assert_eq!(early.keep(joiner, 1, chunk), Ok(window + 1));
        assert!(early_bytes_max(1_024) > 1_024 * wire::PAYLOAD_LEN_MAX + wire::FRAME_LEN_MAX);
    }
}
