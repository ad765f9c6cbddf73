//! The failure detector's decision, as a pure function of when each peer was last heard from.
//!
//! The runtime records "heard from" where bytes arrive (each reader thread stamps its peer on every
//! frame), so a protocol thread busy with a backlog never makes a live peer look dead. The heartbeat
//! thread asks this detector, every heartbeat interval, which peers have been silent for longer than the
//! failure timeout. A peer is reported once; a new connection for its rank clears it.
//!
//! Times are milliseconds on the runtime's monotonic clock; the detector itself reads no clock, so it is
//! tested with made-up times.
//!
//! # Invariants
//! - a rank is reported at most once until [`Detector::forget`] is called for it;
//! - a peer heard from within the timeout is never reported.

use std::collections::BTreeSet;

use crate::types::Rank;

/// Suspects peers silent for longer than a timeout.
#[derive(Debug, Clone)]
pub struct Detector {
    failure_timeout_ms: u64,
    reported: BTreeSet<Rank>,
}

impl Detector {
    /// A detector that suspects a peer silent for more than `failure_timeout_ms`.
    pub fn new(failure_timeout_ms: u64) -> Detector {
        Detector {
            failure_timeout_ms,
            reported: BTreeSet::new(),
        }
    }

    /// The failure timeout.
    pub fn failure_timeout_ms(&self) -> u64 {
        self.failure_timeout_ms
    }

    /// Peers newly found silent at `now_ms`, given `(rank, last_heard_ms)` for each watched peer.
    pub fn newly_silent(&mut self, now_ms: u64, last_heard: impl IntoIterator<Item = (Rank, u64)>) -> Vec<Rank> {
        let mut silent = Vec::new();
        for (rank, heard_ms) in last_heard {
            if now_ms.saturating_sub(heard_ms) > self.failure_timeout_ms && self.reported.insert(rank) {
                silent.push(rank);
            }
        }
        silent
    }

    /// Reports `rank` now for another reason (closed connection, writer stuck); true if not yet reported.
    pub fn report(&mut self, rank: Rank) -> bool {
        self.reported.insert(rank)
    }

    /// `rank` has a new connection (a new life): watch it afresh.
    pub fn forget(&mut self, rank: Rank) {
        self.reported.remove(&rank);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_suspected_once_after_the_timeout_and_again_after_forget() {
        let mut detector = Detector::new(100);
        assert!(
            detector.newly_silent(100, [(Rank(2), 0)]).is_empty(),
            "exactly the timeout is not silence"
        );
        assert_eq!(detector.newly_silent(101, [(Rank(2), 0), (Rank(3), 50)]), vec![Rank(2)]);
        assert!(detector.newly_silent(500, [(Rank(2), 0)]).is_empty(), "reported once");
        detector.forget(Rank(2));
        assert_eq!(detector.newly_silent(500, [(Rank(2), 0)]), vec![Rank(2)]);
    }

    #[test]
    fn a_peer_heard_recently_is_never_suspected() {
        let mut detector = Detector::new(100);
        for now in (0..10_000).step_by(50) {
            assert!(detector
                .newly_silent(now, [(Rank(1), now.saturating_sub(60))])
                .is_empty());
        }
    }
}
