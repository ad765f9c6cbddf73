//! The failure detector's decision, as a pure function of when each peer was last heard from.
//!
//! The runtime records "heard from" where bytes arrive (each reader thread stamps its peer on every
//! frame), so a protocol thread busy with a backlog never makes a live peer look dead. The heartbeat
//! thread asks this detector, every heartbeat interval, which peers have been silent for longer than the
//! failure timeout. A peer is reported once; a new connection for its rank clears it. A peer reported
//! silent that is heard again afterwards (a cut healed, a paused process resumed) is reported as
//! heard again, once, and watched afresh; a peer reported for another reason (its writer stuck) is not.
//!
//! Times are milliseconds on the runtime's monotonic clock; the detector itself reads no clock, so it is
//! tested with made-up times.
//!
//! # Invariants
//! - a rank is reported at most once until [`Detector::forget`] is called for it, or it is reported
//!   heard again;
//! - a peer heard from within the timeout is never reported silent;
//! - only a rank reported silent is ever reported heard again, and only for a frame after the report.

use std::collections::BTreeMap;

use crate::types::Rank;

/// Suspects peers silent for longer than a timeout.
#[derive(Debug, Clone)]
pub struct Detector {
    failure_timeout_ms: u64,
    /// Each rank reported, with when it was found silent (`None`: reported for another reason).
    reported: BTreeMap<Rank, Option<u64>>,
}

impl Detector {
    /// A detector that suspects a peer silent for more than `failure_timeout_ms`.
    pub fn new(failure_timeout_ms: u64) -> Detector {
        Detector {
            failure_timeout_ms,
            reported: BTreeMap::new(),
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
            if now_ms.saturating_sub(heard_ms) > self.failure_timeout_ms && !self.reported.contains_key(&rank) {
                self.reported.insert(rank, Some(now_ms));
                silent.push(rank);
            }
        }
        silent
    }

    /// Peers reported silent that were heard after the report, given `(rank, last_heard_ms)`: each is
    /// watched afresh from now on.
    pub fn heard_again(&mut self, last_heard: impl IntoIterator<Item = (Rank, u64)>) -> Vec<Rank> {
        let mut heard = Vec::new();
        for (rank, heard_ms) in last_heard {
            if let Some(Some(silent_at_ms)) = self.reported.get(&rank) {
                if heard_ms > *silent_at_ms {
                    self.reported.remove(&rank);
                    heard.push(rank);
                }
            }
        }
        heard
    }

    /// Reports `rank` now for another reason (closed connection, writer stuck); true if not yet reported.
    /// Such a report is never withdrawn by hearing the peer: a peer that stopped reading still sends.
    pub fn report(&mut self, rank: Rank) -> bool {
        self.reported.insert(rank, None).is_none()
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
    fn a_peer_reported_silent_and_heard_after_the_report_is_heard_again_once() {
        let mut detector = Detector::new(100);
        assert_eq!(
            detector.newly_silent(200, [(Rank(2), 50), (Rank(3), 50)]),
            vec![Rank(2), Rank(3)]
        );
        assert!(
            detector.heard_again([(Rank(2), 200), (Rank(3), 50)]).is_empty(),
            "nothing heard after the report"
        );
        assert_eq!(detector.heard_again([(Rank(2), 201), (Rank(3), 50)]), vec![Rank(2)]);
        assert!(detector.heard_again([(Rank(2), 300)]).is_empty(), "heard again once");
        assert_eq!(
            detector.newly_silent(500, [(Rank(2), 300)]),
            vec![Rank(2)],
            "watched afresh: silent again, reported again"
        );
        assert!(detector.report(Rank(4)));
        assert!(
            detector.heard_again([(Rank(4), 10_000)]).is_empty(),
            "a stuck writer's report is not withdrawn by hearing the peer"
        );
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
