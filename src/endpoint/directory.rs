//! Addresses and dials: every rank's last known address (of admitted lives only), and which life of
//! the view this member dials, and when.
//!
//! **Addresses.** The directory starts as the roster this process found the group with; an address a
//! restarted process announced on its connection is committed once a view admits that very process;
//! the directories members send in their greetings and the helper's roster add what they know. An
//! entry of a later life of a rank is never overwritten by an earlier life's (this member's own entry
//! always names its current life). It is what this member hands to a process that rejoins through it.
//!
//! **Dials.** Two lives of one view need one connection between them. The founders have the formation
//! mesh, and a restarted process dials every address it was given; what is left unconnected (a life
//! admitted after this one found the group, or a member that did not answer then) is dialled *by the
//! life admitted later* (of two admitted together, the lower rank), at the address the directory lists
//! for that very life, again every `redial_interval_ms` until a connection stands. Exactly one side
//! dials, so two dials never cross and close each other. A life this process ever had a connection to
//! is never dialled again: a new connection after a broken one would hide the frames lost in between,
//! and the protocol counts on each connection being the whole stream (the broken one made this member
//! suspect that life instead). The one exception is a connection its dialler abandoned before using
//! it: what was written on it is kept, and goes out first on the next one.
//!
//! # Invariants
//! - at most one dial to a life is in flight;
//! - no life in `linked` is ever dialled (a life leaves `linked` only through `unlink`).

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{MemberId, Rank};
use crate::wire::RosterEntry;

/// Every rank's last known address, and the dials this member makes.
#[derive(Clone, Debug, Hash)]
pub struct Directory {
    entries: Vec<RosterEntry>,
    /// Lives with a dial in flight.
    dialling: BTreeSet<MemberId>,
    /// When each life was last dialled (ms of the driver's clock).
    last_dial_ms: BTreeMap<MemberId, u64>,
    /// Lives this process had a member connection to (never dialled again).
    linked: BTreeSet<MemberId>,
    redial_interval_ms: u64,
}

impl Directory {
    /// A directory of `entries`; a life is dialled again at most every `redial_interval_ms`.
    pub fn new(mut entries: Vec<RosterEntry>, redial_interval_ms: u64) -> Directory {
        entries.sort_by_key(|entry| entry.rank);
        Directory {
            entries,
            dialling: BTreeSet::new(),
            last_dial_ms: BTreeMap::new(),
            linked: BTreeSet::new(),
            redial_interval_ms: redial_interval_ms.max(1),
        }
    }

    /// The entries, by rank.
    pub fn entries(&self) -> &[RosterEntry] {
        &self.entries
    }

    /// The address of this member's own rank, if known.
    pub fn own(&self, rank: Rank) -> Option<&RosterEntry> {
        self.entries.iter().find(|entry| entry.rank == rank)
    }

    /// Adds what `learned` knows (a later life's entry is kept over an earlier one's; `me`'s own entry
    /// is this member's to set). Returns the entries that changed an address.
    pub fn learn(&mut self, me: MemberId, learned: impl IntoIterator<Item = RosterEntry>) -> Vec<RosterEntry> {
        let mut moved = Vec::new();
        for entry in learned {
            let is_own = entry.rank == me.rank;
            match self.entries.iter_mut().find(|known| known.rank == entry.rank) {
                Some(_) if is_own && entry.process != me.process => {}
                Some(known) if known.incarnation > entry.incarnation && !is_own => {}
                Some(known) => {
                    if (&known.host, known.port) != (&entry.host, entry.port) {
                        moved.push(entry.clone());
                    }
                    *known = entry;
                }
                None => {
                    self.entries.push(entry);
                    self.entries.sort_by_key(|known| known.rank);
                }
            }
        }
        moved
    }

    /// This process has (had) a member connection to `life`.
    pub fn linked(&mut self, life: MemberId) {
        self.linked.insert(life);
        self.dialling.remove(&life);
    }

    /// The member connection to `life` closed before `life`'s process used it (it abandoned the
    /// dial): nothing was lost on it that is not kept, so `life` may be dialled again.
    pub fn unlink(&mut self, life: MemberId) {
        self.linked.remove(&life);
    }

    /// True if this process ever had a member connection to `life`.
    pub fn was_linked(&self, life: MemberId) -> bool {
        self.linked.contains(&life)
    }

    /// A dial to `life` ended without a connection (or the connection did not speak for it).
    pub fn dial_ended(&mut self, life: MemberId) {
        self.dialling.remove(&life);
    }

    /// The dials `me` starts now, at `now_ms`, to the lives in `unconnected` (members of its view it
    /// has no member connection to, not suspected): `(life, host, port)`.
    pub fn due(&mut self, me: MemberId, unconnected: &[MemberId], now_ms: u64) -> Vec<(MemberId, String, u16)> {
        let mut dials = Vec::new();
        for &life in unconnected {
            let dials_it =
                (me.incarnation, std::cmp::Reverse(me.rank)) > (life.incarnation, std::cmp::Reverse(life.rank));
            if !dials_it || self.linked.contains(&life) || self.dialling.contains(&life) {
                continue;
            }
            let recent = self
                .last_dial_ms
                .get(&life)
                .is_some_and(|at| now_ms.saturating_sub(*at) < self.redial_interval_ms);
            let listed = self
                .entries
                .iter()
                .find(|e| e.rank == life.rank && e.process == life.process && e.incarnation == life.incarnation);
            let Some(entry) = listed.filter(|_| !recent) else {
                continue;
            };
            self.dialling.insert(life);
            self.last_dial_ms.insert(life, now_ms);
            dials.push((life, entry.host.clone(), entry.port));
        }
        self.last_dial_ms.retain(|life, _| unconnected.contains(life));
        dials
    }
}

/// Whom a restarted process dials first, from the roster it found the group with: every other rank's
/// listed address, except one equal to its own `(host, port)` (the roster may still list a dead member
/// at the port this process now listens on: dialling it would reach this very process).
pub fn first_dials<'a>(
    roster: &'a [RosterEntry],
    rank: Rank,
    own: (&'a str, u16),
) -> impl Iterator<Item = &'a RosterEntry> {
    roster
        .iter()
        .filter(move |e| e.rank != rank && !(e.host == own.0 && e.port == own.1))
}

/// Where a restarted process dials a rank again whose listed address did not answer: the newest life of
/// that rank that the greetings of the members that did answer list (`learned`) at another address (it
/// may have come back through a member, `--peer`, and never told the helper).
pub fn second_dial(unreached: &RosterEntry, learned: &[RosterEntry], own: (&str, u16)) -> Option<RosterEntry> {
    learned
        .iter()
        .filter(|d| d.rank == unreached.rank && (d.host != unreached.host || d.port != unreached.port))
        .filter(|d| !(d.host == own.0 && d.port == own.1))
        .max_by_key(|d| d.incarnation)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::test_support::life;

    fn entry(of: MemberId, port: u16) -> RosterEntry {
        RosterEntry {
            rank: of.rank,
            host: "127.0.0.1".into(),
            port,
            incarnation: of.incarnation,
            process: of.process,
        }
    }

    #[test]
    fn the_life_admitted_later_dials_and_only_at_that_lifes_address() {
        let mut directory = Directory::new(vec![entry(life(1, 1), 10), entry(life(2, 3), 20)], 100);
        // 3#5 was admitted after 2#3 and 1#1: it dials both; they never dial it.
        let dials = directory.due(life(3, 5), &[life(1, 1), life(2, 3)], 0);
        assert_eq!(dials.len(), 2);
        assert!(
            directory.due(life(2, 3), &[life(3, 5)], 0).is_empty(),
            "the earlier life waits"
        );
        // Of two admitted together, the lower rank dials.
        let mut directory = Directory::new(vec![entry(life(4, 5), 40)], 100);
        assert_eq!(directory.due(life(3, 5), &[life(4, 5)], 0).len(), 1);
        let mut directory = Directory::new(vec![entry(life(3, 5), 30)], 100);
        assert!(directory.due(life(4, 5), &[life(3, 5)], 0).is_empty());
        // An address of another life of the rank is not dialled.
        let mut directory = Directory::new(vec![entry(life(1, 1), 10)], 100);
        assert!(directory.due(life(3, 5), &[life(1, 4)], 0).is_empty());
    }

    #[test]
    fn a_failed_dial_is_retried_after_the_interval_and_a_linked_life_never() {
        let mut directory = Directory::new(vec![entry(life(1, 1), 10)], 100);
        assert_eq!(directory.due(life(3, 5), &[life(1, 1)], 0).len(), 1);
        assert!(
            directory.due(life(3, 5), &[life(1, 1)], 500).is_empty(),
            "one dial in flight"
        );
        directory.dial_ended(life(1, 1));
        assert!(directory.due(life(3, 5), &[life(1, 1)], 50).is_empty(), "too soon");
        assert_eq!(directory.due(life(3, 5), &[life(1, 1)], 150).len(), 1);
        directory.linked(life(1, 1));
        assert!(directory.due(life(3, 5), &[life(1, 1)], 1_000).is_empty());
    }

    #[test]
    fn a_restarted_process_dials_every_other_address_then_a_newer_one_for_a_dead_address() {
        let roster = [entry(life(1, 1), 10), entry(life(2, 1), 20), entry(life(3, 1), 30)];
        // Rank 3 restarted on port 20, where the roster still lists rank 2's dead life.
        let first: Vec<u16> = first_dials(&roster, Rank(3), ("127.0.0.1", 20))
            .map(|e| e.port)
            .collect();
        assert_eq!(first, vec![10]);
        let learned = [entry(life(2, 4), 21), entry(life(2, 6), 22), entry(life(1, 1), 10)];
        assert_eq!(
            second_dial(&roster[1], &learned, ("127.0.0.1", 20)).map(|e| e.port),
            Some(22)
        );
        assert_eq!(
            second_dial(&roster[0], &learned, ("127.0.0.1", 20)),
            None,
            "no other address"
        );
    }

    #[test]
    fn a_later_lifes_address_is_kept() {
        let me = life(1, 1);
        let mut directory = Directory::new(vec![entry(me, 10), entry(life(2, 3), 20)], 100);
        let moved = directory.learn(me, [entry(life(2, 1), 21), entry(life(3, 4), 30)]);
        assert!(moved.is_empty());
        assert_eq!(directory.entries().len(), 3);
        assert_eq!(
            directory.entries()[1].port,
            20,
            "the earlier life's address is not taken"
        );
        let moved = directory.learn(me, [entry(life(2, 6), 22), entry(life(1, 9), 11)]);
        assert_eq!(moved.len(), 1, "another process's entry for this rank is not taken");
        assert_eq!(directory.own(Rank(1)).unwrap().port, 10);
    }
}
