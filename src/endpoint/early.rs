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

/// Frames kept for one process one way, in order, bounded by a byte limit ([`early_bytes_max`]).
#[derive(Clone, Debug, Hash)]
pub(super) struct EarlyFrames {
    frames: Vec<Frame>,
    bytes: usize,
    limit: usize,
}

/// The early frames would pass their limit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TooMuchEarly;

impl EarlyFrames {
    /// An empty buffer that keeps at most `limit` encoded bytes.
    pub fn new(limit: usize) -> EarlyFrames {
        EarlyFrames {
            frames: Vec::new(),
            bytes: 0,
            limit,
        }
    }

    /// Keeps `frame` for when the connection is admitted.
    pub fn keep(&mut self, frame: Frame) -> Result<(), TooMuchEarly> {
        let mut encoded = Vec::new();
        wire::encode(&frame, &mut encoded);
        if self.bytes.saturating_add(encoded.len()) > self.limit {
            return Err(TooMuchEarly);
        }
        self.bytes += encoded.len();
        self.frames.push(frame);
        Ok(())
    }

    /// The frames kept, oldest first; empties the buffer.
    pub fn take(&mut self) -> Vec<Frame> {
        self.bytes = 0;
        std::mem::take(&mut self.frames)
    }

    /// How many frames are kept.
    pub fn len(&self) -> usize {
        self.frames.len()
    }
}

/// The frames kept for other processes, by process (see the module documentation).
#[derive(Clone, Debug, Hash)]
pub(super) struct EarlyStore {
    /// The bound, per process and way.
    pub limit: usize,
    /// From a process not listed yet, with the connection they came on.
    pub from: ByProcess<ConnId>,
    /// To a process, with the rank it is a life of.
    pub to: ByProcess<Rank>,
}

impl EarlyStore {
    /// An empty store for a group whose members have `window` messages in flight at most.
    pub fn new(window: usize) -> EarlyStore {
        EarlyStore {
            limit: early_bytes_max(window.max(1)),
            from: ByProcess(BTreeMap::new()),
            to: ByProcess(BTreeMap::new()),
        }
    }
}

/// Frames kept one way, by process, each under a key (the connection they came on, the rank of the
/// life they are for): frames under one key never mix with another's.
#[derive(Clone, Debug, Hash)]
pub(super) struct ByProcess<K>(BTreeMap<ProcessId, (K, EarlyFrames)>);

impl<K: Copy + Eq> ByProcess<K> {
    /// Keeps `frame` for `process` under `key` (what was kept under another key is let go); past
    /// `limit` bytes everything kept for it is let go. How many frames are kept, if within the bound.
    pub fn keep(&mut self, process: ProcessId, key: K, frame: Frame, limit: usize) -> Result<usize, TooMuchEarly> {
        let kept = self.0.entry(process).or_insert_with(|| (key, EarlyFrames::new(limit)));
        if kept.0 != key {
            *kept = (key, EarlyFrames::new(limit));
        }
        match kept.1.keep(frame) {
            Ok(()) => Ok(kept.1.len()),
            Err(too_much) => {
                self.0.remove(&process);
                Err(too_much)
            }
        }
    }

    /// The frames kept for `process` under `key`, oldest first; `keep`: they stay kept.
    pub fn frames(&mut self, process: ProcessId, key: K, keep: bool) -> Vec<Frame> {
        match self.0.get_mut(&process) {
            Some((of, frames)) if *of == key && keep => frames.frames.clone(),
            Some((of, _)) if *of == key => self.0.remove(&process).map_or_else(Vec::new, |(_, mut f)| f.take()),
            _ => Vec::new(),
        }
    }

    /// Nothing more is kept for `process`.
    pub fn forget(&mut self, process: ProcessId) {
        self.0.remove(&process);
    }

    /// Keeps only what `keep(process, key)` names.
    pub fn retain(&mut self, mut keep: impl FnMut(ProcessId, K) -> bool) {
        self.0.retain(|process, (key, _)| keep(*process, *key));
    }

    /// What is kept: (process, key).
    pub fn keys(&self) -> impl Iterator<Item = (ProcessId, K)> + '_ {
        self.0.iter().map(|(process, (key, _))| (*process, *key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Batch, Message, Multicast};
    use crate::types::{Payload, Rank, ViewId};

    #[test]
    fn early_frames_are_kept_in_order_up_to_the_bound() {
        let mut early = EarlyFrames::new(1_000);
        let big = Frame::StatusReport {
            report: "x".repeat(600),
        };
        early.keep(Frame::StatusReport { report: "a".into() }).unwrap();
        early.keep(big.clone()).unwrap();
        assert_eq!(early.keep(big), Err(TooMuchEarly));
        assert_eq!(early.len(), 2);
        let frames = early.take();
        assert!(matches!(&frames[0], Frame::StatusReport { report } if report == "a"));
        assert_eq!(early.len(), 0);
    }

    /// A joiner's first frames with a full window of the largest payloads, each with a full
    /// acknowledgement vector, plus a frame-sized one, are kept.
    #[test]
    fn a_full_window_of_the_largest_payloads_is_kept() {
        let window = 3;
        let mut early = EarlyFrames::new(early_bytes_max(window));
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
            early.keep(Frame::Protocol(data)).unwrap();
        }
        let chunk = Frame::Snapshot {
            view: ViewId(4),
            position: 0,
            offset: 0,
            total: wire::SNAPSHOT_CHUNK_LEN_MAX as u64,
            chunk: vec![0; wire::SNAPSHOT_CHUNK_LEN_MAX],
        };
        early.keep(chunk).unwrap();
        assert_eq!(early.len(), window + 1);
        assert!(early_bytes_max(1_024) > 1_024 * wire::PAYLOAD_LEN_MAX + wire::FRAME_LEN_MAX);
    }
}
