//! Frames kept for a connection that may not carry them yet: what a process asking to rejoin sends
//! before a view admits it (held until the admitting view is installed here, then handed to the core in
//! the order they arrived), and what this member sends to a life of its view it has no connection to
//! yet (sent first once one comes). Both are bounded, so a peer can never make this member grow a
//! buffer without limit.

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

/// Frames a joiner connection sent before a view admitted its process, in order, bounded by
/// a byte limit ([`early_bytes_max`]).
#[derive(Clone, Debug, Hash)]
pub struct EarlyFrames {
    frames: Vec<Frame>,
    bytes: usize,
    limit: usize,
}

/// The early frames would pass their limit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TooMuchEarly;

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

    /// How many encoded bytes are kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The most bytes kept.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// True if nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
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
        assert!(early.is_empty());
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
