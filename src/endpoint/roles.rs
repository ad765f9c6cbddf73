//! Which connection speaks for which life: the rules the protocol thread applies when a view is
//! installed, when a rejoin connection arrives, and on every tick. Pure functions over the two maps
//! the protocol thread keeps (no sockets), so each rule is tested on its own below.
//!
//! Every connection speaks for one process: the one its hello named (a connection this member
//! accepted) or the one that answered (a connection it dialled: the roster's founder at formation,
//! the life named in a member's answer to a rejoining process). A connection is held in one of two
//! roles. A **member connection** carries a view member's frames to the core; a rank has at most one,
//! and it counts only for the life the view lists *with that connection's process*. A **joiner
//! connection** belongs to a process asking to come back as a rank, and is known by (rank, process): it
//! may only ask to be admitted and give its address, and what else it sends is kept ([`super::EarlyFrames`])
//! until a view admits *that process*. Of two processes asking for one rank, only the connection of the
//! process the view admits is promoted; the other stays a joiner connection.
//!
//! How lives get connected: founders through the formation mesh; a restarted process dials every
//! address it was given (see `rejoin.rs`) and holds each such connection as a member connection, while
//! the member it dialled holds it as a joiner connection until a view admits the new process. Two
//! processes that rejoin at the same time complicate this, because one may dial the other while both
//! are still joining:
//!
//! - **Admitted by the same view**: each may hold the connection it dialled and the one it accepted;
//!   both keep the one the lower rank dialled, so they never close each other's only link.
//! - **Admitted one after the other** (A before B): A's dial to B's new process is, at a view that does
//!   not list that process (A's first, listing B's old life or no life of B), not a member connection of
//!   that view: A keeps it as B's joiner connection (of B's new process), and promotes it at the view
//!   that admits B's new process. B, at that view, takes the connection A dialled as A's member
//!   connection when it has none of its own. If B dialled A, that is the normal case.
//! - **A connection that arrives after the view that admitted its process** (the protocol thread was
//!   busy when the acceptor handed it over) becomes the member connection at once.
//!
//! Whatever is left unconnected is not left hanging: a member of the view this member has had no
//! connection to for a failure timeout is suspected, as if it were silent.
//!
//! # Invariants
//! - a connection is in at most one of the two maps;
//! - a member connection is only ever kept, past an install, for a life the installed view lists with
//!   that connection's process; frames of a joiner connection reach the core only once it has become a
//!   member connection, in the order they arrived.

use std::collections::{BTreeMap, BTreeSet};

use super::ConnId;
use crate::types::{MemberId, ProcessId, Rank, View};

/// A member connection, with the process at its other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    /// The connection.
    pub conn: ConnId,
    /// The process it speaks for.
    pub process: ProcessId,
}

/// What to do with the connections when a view is installed.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct Adoption {
    /// Joiner connections that become their rank's member connection.
    pub promote: Vec<(Rank, ConnId)>,
    /// Member connections that become joiner connections (of their own process): dialled by this
    /// process while it was joining, to a process the view does not list (it may be one still asking to
    /// rejoin). After the outbox is dispatched, like `close`.
    pub demote: Vec<(Rank, ConnId)>,
    /// Connections to close once the decision (already queued) has gone out.
    pub close: Vec<ConnId>,
}

/// The connection changes at the install of `view` by `me` (its life in that view). `dialled_while_joining`
/// holds the member connections this process dialled before a view admitted it.
pub fn adopt(
    me: MemberId,
    view: &View,
    member_conn: &BTreeMap<Rank, Link>,
    joiner_conn: &BTreeMap<(Rank, ProcessId), ConnId>,
    dialled_while_joining: &BTreeSet<ConnId>,
) -> Adoption {
    let mut adoption = Adoption::default();
    // This life was admitted by this very view: its member connections are the ones it dialled while
    // joining, and its joiner connections were accepted while it was joining.
    let first_view = me.incarnation.0 == view.id.0;
    // Member connections that do not speak for the life the view lists for their rank.
    let mut not_listed: Vec<(Rank, Link)> = Vec::new();
    for member in view.members.iter().filter(|m| m.rank != me.rank) {
        let rank = member.rank;
        let admitted_now = member.incarnation.0 == view.id.0;
        let dialled = member_conn.get(&rank).filter(|link| link.process == member.process);
        if let Some(&other) = member_conn.get(&rank).filter(|link| link.process != member.process) {
            not_listed.push((rank, other));
        }
        // Only a connection of the very process the view lists: another process asking for the same
        // rank keeps its joiner connection.
        let accepted = joiner_conn.get(&(rank, member.process));
        if admitted_now && first_view && dialled.is_some() {
            // Both joined now and each may have dialled the other: keep the lower rank's dial.
            if let Some(&accepted) = accepted {
                if me.rank < rank {
                    adoption.close.push(accepted);
                } else {
                    adoption.promote.push((rank, accepted));
                    adoption.close.extend(dialled.map(|link| link.conn));
                }
            }
            continue;
        }
        if let (None, Some(&accepted)) = (dialled, accepted) {
            adoption.promote.push((rank, accepted));
        }
    }
    not_listed.extend(
        member_conn
            .iter()
            .filter(|(rank, _)| view.index_of(**rank).is_none())
            .map(|(rank, link)| (*rank, *link)),
    );
    for (rank, link) in not_listed {
        // Only at this life's first view: a dial made while joining that reached a process the view
        // does not list may have reached one still asking to rejoin. In any later view the
        // connection speaks for a life this member knew as a member, and the view replaced it:
        // kept, it would leave that old life waiting on a connection nobody answers, never learning
        // its exclusion.
        let kept_as_joiner = first_view
            && dialled_while_joining.contains(&link.conn)
            && rank != me.rank
            && !joiner_conn.contains_key(&(rank, link.process));
        if kept_as_joiner {
            adoption.demote.push((rank, link.conn));
        } else {
            // A departed life (or, for a process that also dialled us, the duplicate: that process
            // keeps the connection it dialled as our member connection).
            adoption.close.push(link.conn);
        }
    }
    adoption
}

/// True if a rejoin connection of `process` asking for `rank` that arrives now is the member
/// connection of a life of the current view (the view admitting that process was installed before the
/// connection was handed over). Not if that life is suspected: its connection was there and broke, and
/// this is a yet newer connection that the next view may exclude.
pub fn arrives_admitted(
    view: Option<&View>,
    rank: Rank,
    process: ProcessId,
    member_conn: &BTreeMap<Rank, Link>,
    is_suspected: impl Fn(MemberId) -> bool,
) -> bool {
    let admitted = view
        .and_then(|v| v.member(rank))
        .filter(|m| m.process == process && m.incarnation.0 > 1 && !is_suspected(*m));
    admitted.is_some() && !member_conn.contains_key(&rank)
}

/// The members of `view` other than `me` that have no member connection.
pub fn unconnected(me: Rank, view: &View, member_conn: &BTreeMap<Rank, Link>) -> Vec<Rank> {
    view.ranks()
        .filter(|rank| *rank != me && !member_conn.contains_key(rank))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Incarnation, ViewId};

    /// The process of life `rank#incarnation` in these tests.
    fn pid(rank: u16, incarnation: u64) -> ProcessId {
        ProcessId(u64::from(rank) * 1000 + incarnation)
    }

    fn life(rank: u16, incarnation: u64) -> MemberId {
        MemberId {
            rank: Rank(rank),
            incarnation: Incarnation(incarnation),
            process: pid(rank, incarnation),
        }
    }

    fn view(id: u64, members: &[(u16, u64)]) -> View {
        View {
            id: ViewId(id),
            members: members.iter().map(|&(r, i)| life(r, i)).collect(),
        }
    }

    /// Member connections `(rank, connection, incarnation of the life that answered on it)`.
    fn conns(entries: &[(u16, ConnId, u64)]) -> BTreeMap<Rank, Link> {
        entries
            .iter()
            .map(|&(r, conn, i)| {
                (
                    Rank(r),
                    Link {
                        conn,
                        process: pid(r, i),
                    },
                )
            })
            .collect()
    }

    /// Joiner connections `(rank, connection, incarnation the process will have once admitted)`.
    fn joiners(entries: &[(u16, ConnId, u64)]) -> BTreeMap<(Rank, ProcessId), ConnId> {
        entries
            .iter()
            .map(|&(r, conn, i)| ((Rank(r), pid(r, i)), conn))
            .collect()
    }

    fn set(conns: &[ConnId]) -> BTreeSet<ConnId> {
        conns.iter().copied().collect()
    }

    #[test]
    fn a_life_admitted_by_the_view_speaks_on_the_connection_it_dialled() {
        // Member 1 holds rank 3's dial (connection 7) as a joiner connection; view 4 admits 3#4.
        let v = view(4, &[(1, 1), (2, 1), (3, 4)]);
        let adoption = adopt(
            life(1, 1),
            &v,
            &conns(&[(1, 0, 1), (2, 1, 1)]),
            &joiners(&[(3, 7, 4)]),
            &set(&[]),
        );
        assert_eq!(adoption.promote, vec![(Rank(3), 7)]);
        assert!(adoption.demote.is_empty() && adoption.close.is_empty());
        // And the new life keeps the connections it dialled.
        let adoption = adopt(
            life(3, 4),
            &v,
            &conns(&[(1, 10, 1), (2, 11, 1)]),
            &joiners(&[]),
            &set(&[10, 11]),
        );
        assert_eq!(adoption, Adoption::default());
    }

    #[test]
    fn two_processes_ask_for_one_rank_the_view_admits_one_and_only_its_connection_is_promoted() {
        // Two processes ask member 1 to become rank 3's next life: connections 7 (process A) and 8
        // (process B). View 4 admits B.
        let (a, b) = (ProcessId(0xa), ProcessId(0xb));
        let mut v = view(4, &[(1, 1), (2, 1)]);
        v.members.push(MemberId {
            rank: Rank(3),
            incarnation: Incarnation(4),
            process: b,
        });
        let joining: BTreeMap<(Rank, ProcessId), ConnId> = [((Rank(3), a), 7), ((Rank(3), b), 8)].into();
        let adoption = adopt(life(1, 1), &v, &conns(&[(1, 0, 1), (2, 1, 1)]), &joining, &set(&[]));
        assert_eq!(adoption.promote, vec![(Rank(3), 8)], "only B's connection");
        assert!(
            !adoption.close.contains(&7) && adoption.demote.is_empty(),
            "A's stays a joiner's"
        );
        // A's connection, should it arrive only now, is no member connection either.
        let member = conns(&[(1, 0, 1), (2, 1, 1)]);
        assert!(!arrives_admitted(Some(&v), Rank(3), a, &member, |_| false));
        assert!(arrives_admitted(Some(&v), Rank(3), b, &member, |_| false));
        // The other way round: the view admits A, B's connection stays.
        v.members[2].process = a;
        let adoption = adopt(life(1, 1), &v, &conns(&[(1, 0, 1), (2, 1, 1)]), &joining, &set(&[]));
        assert_eq!(adoption.promote, vec![(Rank(3), 7)]);
    }

    #[test]
    fn a_member_connection_of_another_process_than_the_listed_life_is_not_kept() {
        // Member 1's connection to rank 2 answered as another process than the one view 2 lists.
        let v = view(2, &[(1, 1), (2, 1)]);
        let adoption = adopt(
            life(1, 1),
            &v,
            &conns(&[(1, 0, 1), (2, 4, 9)]),
            &joiners(&[]),
            &set(&[]),
        );
        assert_eq!(adoption.close, vec![4]);
        assert!(adoption.promote.is_empty() && adoption.demote.is_empty());
    }

    #[test]
    fn connections_of_a_departed_life_close() {
        let v = view(3, &[(1, 1), (2, 1)]);
        let adoption = adopt(
            life(1, 1),
            &v,
            &conns(&[(1, 0, 1), (2, 1, 1), (3, 2, 1)]),
            &joiners(&[]),
            &set(&[]),
        );
        assert_eq!(adoption.close, vec![2]);
        assert!(adoption.demote.is_empty());
    }

    #[test]
    fn two_lives_admitted_together_keep_the_lower_ranks_dial() {
        // 2 dialled 4 (connection 5 at 2, 15 at 4) and 4 dialled 2 (connection 16 at 4, 6 at 2).
        let v = view(3, &[(1, 1), (2, 3), (3, 1), (4, 3)]);
        let at_2 = adopt(
            life(2, 3),
            &v,
            &conns(&[(1, 1, 1), (3, 2, 1), (4, 5, 3)]),
            &joiners(&[(4, 6, 3)]),
            &set(&[1, 2, 5]),
        );
        assert_eq!(at_2.close, vec![6], "2 closes 4's dial");
        assert!(at_2.promote.is_empty());
        let dialled_at_4 = set(&[11, 12, 16]);
        let at_4 = adopt(
            life(4, 3),
            &v,
            &conns(&[(1, 11, 1), (2, 16, 3), (3, 12, 1)]),
            &joiners(&[(2, 15, 3)]),
            &dialled_at_4,
        );
        assert_eq!(at_4.promote, vec![(Rank(2), 15)], "4 takes 2's dial");
        assert_eq!(at_4.close, vec![16]);
        // Only one of them dialled: that connection stays, whichever rank dialled it.
        let at_2 = adopt(
            life(2, 3),
            &v,
            &conns(&[(1, 1, 1), (3, 2, 1)]),
            &joiners(&[(4, 6, 3)]),
            &set(&[1, 2]),
        );
        assert_eq!(at_2.promote, vec![(Rank(4), 6)]);
        let at_4 = adopt(
            life(4, 3),
            &v,
            &conns(&[(1, 11, 1), (2, 16, 3), (3, 12, 1)]),
            &joiners(&[]),
            &dialled_at_4,
        );
        assert_eq!(at_4, Adoption::default());
    }

    /// The race behind a hang seen under load: 4 restarted first and found only 2's dead address; 2
    /// restarted next and dialled 4's new process; view 3 admitted 2, view 4 admitted 4.
    #[test]
    fn a_life_admitted_first_keeps_its_dial_to_one_still_joining_and_both_use_it_later() {
        let view_3 = view(3, &[(1, 1), (2, 3), (3, 1), (5, 1)]);
        // At 2: connection 5 is its dial to 4's new process, whose rank view 3 does not list.
        let dialled_at_2 = set(&[1, 2, 3, 5]);
        let member_at_2 = conns(&[(1, 1, 1), (3, 2, 1), (4, 5, 4), (5, 3, 1)]);
        let at_2 = adopt(life(2, 3), &view_3, &member_at_2, &joiners(&[]), &dialled_at_2);
        assert_eq!(at_2.demote, vec![(Rank(4), 5)], "kept as 4's joiner connection");
        assert!(at_2.close.is_empty());

        let view_4 = view(4, &[(1, 1), (2, 3), (3, 1), (4, 4), (5, 1)]);
        let member_at_2 = conns(&[(1, 1, 1), (3, 2, 1), (5, 3, 1)]);
        let at_2 = adopt(life(2, 3), &view_4, &member_at_2, &joiners(&[(4, 5, 4)]), &dialled_at_2);
        assert_eq!(at_2.promote, vec![(Rank(4), 5)]);
        // At 4: connection 15 is 2's dial, accepted while both were joining; 4 has none of its own.
        let member_at_4 = conns(&[(1, 11, 1), (3, 12, 1), (5, 13, 1)]);
        let at_4 = adopt(
            life(4, 4),
            &view_4,
            &member_at_4,
            &joiners(&[(2, 15, 3)]),
            &set(&[11, 12, 13]),
        );
        assert_eq!(at_4.promote, vec![(Rank(2), 15)]);
        assert!(at_4.close.is_empty() && at_4.demote.is_empty());
    }

    /// Like the test above, but the view that admitted 2 still listed 4's old life: 2's dial reached
    /// 4's new process, which is not that life, so it is kept as the new process's joiner connection
    /// through the view that excludes the old life, and promoted at the view that admits the new one.
    /// 3#4 dialled rank 4 while joining and reached 4#1, which view 4 (3's first) listed: the dial
    /// became 3's member connection to 4#1. View 6 replaces 4#1 with 4#6: that connection closes, so
    /// 4#1, still running somewhere, sees it close and learns it is out (simulator, rejoin seed 869:
    /// kept as a joiner connection, 4#1 waited in its old view for ever).
    #[test]
    fn a_dial_made_while_joining_to_a_life_a_later_view_replaced_closes() {
        let view_6 = view(6, &[(2, 1), (3, 4), (4, 6), (5, 6)]);
        let at_3 = adopt(
            life(3, 4),
            &view_6,
            &conns(&[(2, 17, 1), (4, 18, 1), (5, 20, 6)]),
            &joiners(&[]),
            &set(&[17, 18]),
        );
        assert_eq!(at_3.close, vec![18]);
        assert!(at_3.demote.is_empty());
    }

    #[test]
    fn a_dial_to_a_new_process_survives_the_exclusion_of_the_old_life() {
        let view_3 = view(3, &[(1, 1), (2, 3), (3, 1), (4, 1)]);
        let dialled_at_2 = set(&[1, 2, 5]);
        let at_2 = adopt(
            life(2, 3),
            &view_3,
            &conns(&[(1, 1, 1), (3, 2, 1), (4, 5, 5)]),
            &joiners(&[]),
            &dialled_at_2,
        );
        assert_eq!(at_2.demote, vec![(Rank(4), 5)], "not 4#1's: the new process's");
        let view_4 = view(4, &[(1, 1), (2, 3), (3, 1)]);
        let at_2 = adopt(
            life(2, 3),
            &view_4,
            &conns(&[(1, 1, 1), (3, 2, 1)]),
            &joiners(&[(4, 5, 5)]),
            &dialled_at_2,
        );
        assert_eq!(at_2, Adoption::default());
        let view_5 = view(5, &[(1, 1), (2, 3), (3, 1), (4, 5)]);
        let at_2 = adopt(
            life(2, 3),
            &view_5,
            &conns(&[(1, 1, 1), (3, 2, 1)]),
            &joiners(&[(4, 5, 5)]),
            &dialled_at_2,
        );
        assert_eq!(at_2.promote, vec![(Rank(4), 5)]);
        let at_4 = adopt(
            life(4, 5),
            &view_5,
            &conns(&[(1, 11, 1), (3, 12, 1)]),
            &joiners(&[(2, 15, 3)]),
            &set(&[11, 12]),
        );
        assert_eq!(at_4.promote, vec![(Rank(2), 15)]);
    }

    #[test]
    fn a_life_admitted_first_that_was_also_dialled_keeps_the_other_ones_dial() {
        // 2 dialled 4 (connection 5) and 4 dialled 2 (connection 6, accepted at 2): at 2's first view
        // its own dial closes; 4 keeps its dial as 2's member connection at view 4.
        let view_3 = view(3, &[(1, 1), (2, 3), (3, 1)]);
        let dialled_at_2 = set(&[1, 2, 5]);
        let at_2 = adopt(
            life(2, 3),
            &view_3,
            &conns(&[(1, 1, 1), (3, 2, 1), (4, 5, 4)]),
            &joiners(&[(4, 6, 4)]),
            &dialled_at_2,
        );
        assert_eq!(at_2.close, vec![5]);
        assert!(at_2.demote.is_empty() && at_2.promote.is_empty());
        let view_4 = view(4, &[(1, 1), (2, 3), (3, 1), (4, 4)]);
        let at_2 = adopt(
            life(2, 3),
            &view_4,
            &conns(&[(1, 1, 1), (3, 2, 1)]),
            &joiners(&[(4, 6, 4)]),
            &dialled_at_2,
        );
        assert_eq!(at_2.promote, vec![(Rank(4), 6)]);
        let dialled_at_4 = set(&[11, 12, 16]);
        let at_4 = adopt(
            life(4, 4),
            &view_4,
            &conns(&[(1, 11, 1), (2, 16, 3), (3, 12, 1)]),
            &joiners(&[]),
            &dialled_at_4,
        );
        assert_eq!(at_4, Adoption::default());
    }

    #[test]
    fn an_old_member_never_takes_a_joiner_connection_for_an_older_life() {
        // Member 1 lost 3#1's connection (suspected, not yet excluded); a new process of 3 dialled it.
        // View 5 still lists 3#1: its joiner connection stays one.
        let v = view(5, &[(1, 1), (2, 1), (3, 1)]);
        let adoption = adopt(
            life(1, 1),
            &v,
            &conns(&[(1, 0, 1), (2, 1, 1)]),
            &joiners(&[(3, 9, 6)]),
            &set(&[]),
        );
        assert_eq!(adoption, Adoption::default());
    }

    #[test]
    fn a_connection_arriving_after_its_admission_is_a_member_connection() {
        let v = view(4, &[(1, 1), (2, 1), (3, 4)]);
        let p3 = pid(3, 4);
        assert!(arrives_admitted(Some(&v), Rank(3), p3, &conns(&[(1, 0, 1)]), |_| false));
        assert!(
            !arrives_admitted(Some(&v), Rank(3), p3, &conns(&[]), |m| m == life(3, 4)),
            "crashed since"
        );
        assert!(
            !arrives_admitted(Some(&v), Rank(3), p3, &conns(&[(3, 7, 4)]), |_| false),
            "already connected"
        );
        assert!(
            !arrives_admitted(Some(&v), Rank(3), pid(3, 9), &conns(&[]), |_| false),
            "another process"
        );
        assert!(
            !arrives_admitted(Some(&v), Rank(2), pid(2, 1), &conns(&[]), |_| false),
            "a founder's rank"
        );
        assert!(
            !arrives_admitted(Some(&v), Rank(5), pid(5, 4), &conns(&[]), |_| false),
            "not in the view"
        );
        assert!(
            !arrives_admitted(None, Rank(3), p3, &conns(&[]), |_| false),
            "no view yet"
        );
    }

    #[test]
    fn unconnected_members_are_found() {
        let v = view(4, &[(1, 1), (2, 1), (3, 4)]);
        assert_eq!(unconnected(Rank(1), &v, &conns(&[(1, 0, 1), (3, 2, 4)])), vec![Rank(2)]);
        assert!(
            unconnected(Rank(3), &v, &conns(&[(1, 0, 1), (2, 1, 1)])).is_empty(),
            "not itself"
        );
    }
}
