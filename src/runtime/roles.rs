//! Which connection speaks for which rank: the rules the protocol thread applies when a view is
//! installed, when a rejoin connection arrives, and on every tick. Pure functions over the two maps
//! the protocol thread keeps (no sockets), so each rule is tested on its own below.
//!
//! A connection is held in one of two roles. A **member connection** carries a view member's frames
//! to the core; a rank has at most one. A **joiner connection** belongs to a process asking to come
//! back as that rank: it may only ask to be admitted and give its address, and what else it sends is
//! kept ([`EarlyFrames`]) until a view admits that process.
//!
//! How lives get connected: founders through the formation mesh; a restarted process dials every
//! address it was given (see `rejoin.rs`) and holds each such connection as a member connection, while
//! the member it dialled holds it as a joiner connection until a view admits the new life. Two
//! processes that rejoin at the same time complicate this, because one may dial the other while both
//! are still joining, and the other may have found only the first one's dead address:
//!
//! - **Admitted by the same view**: each may hold the connection it dialled and the one it accepted;
//!   both keep the one the lower rank dialled, so they never close each other's only link.
//! - **Admitted one after the other** (A before B): if A dialled B, a view that does not list B (A's
//!   first, or the one that excludes B's old life when A's first still listed it) would close that
//!   connection as a departed rank's. A keeps it instead as B's joiner connection, since A dialled it
//!   while joining and cannot tell the old life from a new process at that address; B, at the view
//!   that admits it, takes the connection A dialled as A's member connection when it has none of its
//!   own. If B dialled A, that is the normal case.
//! - **A connection that arrives after the view that admitted its life** (the protocol thread was busy
//!   when the acceptor handed it over) becomes the member connection at once.
//!
//! Whatever is left unconnected is not left hanging: a member of the view this member has had no
//! connection to for a failure timeout is suspected, as if it were silent.
//!
//! # Invariants
//! - a connection is in at most one of the two maps;
//! - a member connection is only ever created for a rank the installed view lists, and frames of a
//!   joiner connection reach the core only once it has become a member connection, in the order they
//!   arrived.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{MemberId, Rank, View};
use crate::wire::{self, Frame};

use super::member::ConnId;

/// How many bytes (encoded) a joiner connection may send before a view admits it. It sends nothing
/// but its join request until it is admitted; then its decision relay and its first frames of the new
/// view may arrive here before this member has installed that view. A `Decide` carries the cut, so
/// the bound is that of one frame.
pub const EARLY_BYTES_MAX: usize = wire::FRAME_LEN_MAX;

/// What to do with the connections when a view is installed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    /// Joiner connections that become their rank's member connection.
    pub promote: Vec<(Rank, ConnId)>,
    /// Member connections that become their rank's joiner connection: dialled by this process while it
    /// was joining, to a rank the view does not list (the process at the other end may be one still
    /// asking to rejoin, not the life that left). After the outbox is dispatched, like `close`.
    pub demote: Vec<(Rank, ConnId)>,
    /// Connections to close once the decision (already queued) has gone out.
    pub close: Vec<ConnId>,
}

/// The connection changes at the install of `view` by `me` (its life in that view). `dialled_while_joining`
/// holds the member connections this process dialled before a view admitted it.
pub fn adopt(
    me: MemberId,
    view: &View,
    member_conn: &BTreeMap<Rank, ConnId>,
    joiner_conn: &BTreeMap<Rank, ConnId>,
    dialled_while_joining: &BTreeSet<ConnId>,
) -> Adoption {
    let mut adoption = Adoption::default();
    // This life was admitted by this very view: its member connections are the ones it dialled while
    // joining, and its joiner connections were accepted while it was joining.
    let first_view = me.incarnation.0 == view.id.0;
    for member in view.members.iter().filter(|m| m.rank != me.rank) {
        let rank = member.rank;
        let admitted_now = member.incarnation.0 == view.id.0;
        let dialled = member_conn.get(&rank);
        let accepted = joiner_conn.get(&rank);
        if admitted_now && first_view && dialled.is_some() {
            // Both joined now and each may have dialled the other: keep the lower rank's dial.
            if let Some(&accepted) = accepted {
                if me.rank < rank {
                    adoption.close.push(accepted);
                } else {
                    adoption.promote.push((rank, accepted));
                    adoption.close.extend(dialled);
                }
            }
            continue;
        }
        let takes_accepted = admitted_now || (first_view && dialled.is_none());
        if let (true, Some(&accepted)) = (takes_accepted, accepted) {
            adoption.promote.push((rank, accepted));
            adoption.close.extend(dialled);
        }
    }
    for (&rank, &conn) in member_conn {
        if view.index_of(rank).is_some() {
            continue;
        }
        if dialled_while_joining.contains(&conn) && rank != me.rank && !joiner_conn.contains_key(&rank) {
            adoption.demote.push((rank, conn));
        } else {
            // A departed life (or, for a process that also dialled us, the duplicate: that process
            // keeps the connection it dialled as our member connection).
            adoption.close.push(conn);
        }
    }
    adoption
}

/// True if a rejoin connection of `rank` that arrives now is the member connection of the life the
/// current view admitted (the view was installed before the connection was handed over). Not if that
/// life is suspected: its connection was there and broke, and this is a yet newer process.
pub fn arrives_admitted(
    view: Option<&View>,
    rank: Rank,
    member_conn: &BTreeMap<Rank, ConnId>,
    is_suspected: impl Fn(MemberId) -> bool,
) -> bool {
    let admitted = view
        .and_then(|v| v.member(rank).map(|m| (v, m)))
        .filter(|(v, m)| m.incarnation.0 == v.id.0 && !is_suspected(*m));
    admitted.is_some() && !member_conn.contains_key(&rank)
}

/// The members of `view` other than `me` that have no member connection.
pub fn unconnected(me: Rank, view: &View, member_conn: &BTreeMap<Rank, ConnId>) -> Vec<Rank> {
    view.ranks()
        .filter(|rank| *rank != me && !member_conn.contains_key(rank))
        .collect()
}

/// Frames a joiner connection sent before a view admitted its life, in order, bounded by
/// [`EARLY_BYTES_MAX`].
#[derive(Debug, Default)]
pub struct EarlyFrames {
    frames: Vec<Frame>,
    bytes: usize,
}

/// The early frames would pass [`EARLY_BYTES_MAX`].
#[derive(Debug, PartialEq, Eq)]
pub struct TooMuchEarly;

impl EarlyFrames {
    /// Keeps `frame` for when the connection is admitted.
    pub fn keep(&mut self, frame: Frame) -> Result<(), TooMuchEarly> {
        let mut encoded = Vec::new();
        wire::encode(&frame, &mut encoded);
        if self.bytes + encoded.len() > EARLY_BYTES_MAX {
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

    /// True if nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Incarnation, ViewId};

    fn life(rank: u16, incarnation: u64) -> MemberId {
        MemberId {
            rank: Rank(rank),
            incarnation: Incarnation(incarnation),
        }
    }

    fn view(id: u64, members: &[(u16, u64)]) -> View {
        View {
            id: ViewId(id),
            members: members.iter().map(|&(r, i)| life(r, i)).collect(),
        }
    }

    fn conns(entries: &[(u16, ConnId)]) -> BTreeMap<Rank, ConnId> {
        entries.iter().map(|&(r, c)| (Rank(r), c)).collect()
    }

    fn set(conns: &[ConnId]) -> BTreeSet<ConnId> {
        conns.iter().copied().collect()
    }

    #[test]
    fn a_life_admitted_by_the_view_speaks_on_the_connection_it_dialled() {
        // Member 1 holds rank 3's dial (connection 7) as a joiner connection; view 4 admits 3#4.
        let v = view(4, &[(1, 1), (2, 1), (3, 4)]);
        let adoption = adopt(life(1, 1), &v, &conns(&[(1, 0), (2, 1)]), &conns(&[(3, 7)]), &set(&[]));
        assert_eq!(adoption.promote, vec![(Rank(3), 7)]);
        assert!(adoption.demote.is_empty() && adoption.close.is_empty());
        // And the new life keeps the connections it dialled.
        let adoption = adopt(
            life(3, 4),
            &v,
            &conns(&[(1, 10), (2, 11)]),
            &conns(&[]),
            &set(&[10, 11]),
        );
        assert_eq!(adoption, Adoption::default());
    }

    #[test]
    fn connections_of_a_departed_life_close() {
        let v = view(3, &[(1, 1), (2, 1)]);
        let adoption = adopt(
            life(1, 1),
            &v,
            &conns(&[(1, 0), (2, 1), (3, 2)]),
            &conns(&[]),
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
            &conns(&[(1, 1), (3, 2), (4, 5)]),
            &conns(&[(4, 6)]),
            &set(&[1, 2, 5]),
        );
        assert_eq!(at_2.close, vec![6], "2 closes 4's dial");
        assert!(at_2.promote.is_empty());
        let dialled_at_4 = set(&[11, 12, 16]);
        let at_4 = adopt(
            life(4, 3),
            &v,
            &conns(&[(1, 11), (2, 16), (3, 12)]),
            &conns(&[(2, 15)]),
            &dialled_at_4,
        );
        assert_eq!(at_4.promote, vec![(Rank(2), 15)], "4 takes 2's dial");
        assert_eq!(at_4.close, vec![16]);
        // Only one of them dialled: that connection stays, whichever rank dialled it.
        let at_2 = adopt(
            life(2, 3),
            &v,
            &conns(&[(1, 1), (3, 2)]),
            &conns(&[(4, 6)]),
            &set(&[1, 2]),
        );
        assert_eq!(at_2.promote, vec![(Rank(4), 6)]);
        let at_4 = adopt(
            life(4, 3),
            &v,
            &conns(&[(1, 11), (2, 16), (3, 12)]),
            &conns(&[]),
            &dialled_at_4,
        );
        assert_eq!(at_4, Adoption::default());
    }

    /// The race behind a hang seen under load: 4 restarted first and found only 2's dead address; 2
    /// restarted next and dialled 4's new process; view 3 admitted 2, view 4 admitted 4.
    #[test]
    fn a_life_admitted_first_keeps_its_dial_to_one_still_joining_and_both_use_it_later() {
        let view_3 = view(3, &[(1, 1), (2, 3), (3, 1), (5, 1)]);
        // At 2: connection 5 is its dial to 4, whose rank view 3 does not list.
        let dialled_at_2 = set(&[1, 2, 3, 5]);
        let member_at_2 = conns(&[(1, 1), (3, 2), (4, 5), (5, 3)]);
        let at_2 = adopt(life(2, 3), &view_3, &member_at_2, &conns(&[]), &dialled_at_2);
        assert_eq!(at_2.demote, vec![(Rank(4), 5)], "kept as 4's joiner connection");
        assert!(at_2.close.is_empty());

        let view_4 = view(4, &[(1, 1), (2, 3), (3, 1), (4, 4), (5, 1)]);
        let member_at_2 = conns(&[(1, 1), (3, 2), (5, 3)]);
        let at_2 = adopt(life(2, 3), &view_4, &member_at_2, &conns(&[(4, 5)]), &dialled_at_2);
        assert_eq!(at_2.promote, vec![(Rank(4), 5)]);
        // At 4: connection 15 is 2's dial, accepted while both were joining; 4 has none of its own.
        let member_at_4 = conns(&[(1, 11), (3, 12), (5, 13)]);
        let at_4 = adopt(
            life(4, 4),
            &view_4,
            &member_at_4,
            &conns(&[(2, 15)]),
            &set(&[11, 12, 13]),
        );
        assert_eq!(at_4.promote, vec![(Rank(2), 15)]);
        assert!(at_4.close.is_empty() && at_4.demote.is_empty());
    }

    /// Like the test above, but the view that admitted 2 still listed 4's old life: 2's dial to 4's new
    /// process served as 4's member connection until the view that excludes the old life.
    #[test]
    fn a_dial_to_a_new_process_survives_the_exclusion_of_the_old_life() {
        let view_4 = view(4, &[(1, 1), (2, 3), (3, 1)]);
        let dialled_at_2 = set(&[1, 2, 5]);
        let at_2 = adopt(
            life(2, 3),
            &view_4,
            &conns(&[(1, 1), (3, 2), (4, 5)]),
            &conns(&[]),
            &dialled_at_2,
        );
        assert_eq!(at_2.demote, vec![(Rank(4), 5)]);
        let view_5 = view(5, &[(1, 1), (2, 3), (3, 1), (4, 5)]);
        let at_2 = adopt(
            life(2, 3),
            &view_5,
            &conns(&[(1, 1), (3, 2)]),
            &conns(&[(4, 5)]),
            &dialled_at_2,
        );
        assert_eq!(at_2.promote, vec![(Rank(4), 5)]);
        let at_4 = adopt(
            life(4, 5),
            &view_5,
            &conns(&[(1, 11), (3, 12)]),
            &conns(&[(2, 15)]),
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
            &conns(&[(1, 1), (3, 2), (4, 5)]),
            &conns(&[(4, 6)]),
            &dialled_at_2,
        );
        assert_eq!(at_2.close, vec![5]);
        assert!(at_2.demote.is_empty() && at_2.promote.is_empty());
        let view_4 = view(4, &[(1, 1), (2, 3), (3, 1), (4, 4)]);
        let at_2 = adopt(
            life(2, 3),
            &view_4,
            &conns(&[(1, 1), (3, 2)]),
            &conns(&[(4, 6)]),
            &dialled_at_2,
        );
        assert_eq!(at_2.promote, vec![(Rank(4), 6)]);
        let dialled_at_4 = set(&[11, 12, 16]);
        let at_4 = adopt(
            life(4, 4),
            &view_4,
            &conns(&[(1, 11), (2, 16), (3, 12)]),
            &conns(&[]),
            &dialled_at_4,
        );
        assert_eq!(at_4, Adoption::default());
    }

    #[test]
    fn an_old_member_never_takes_a_joiner_connection_for_an_older_life() {
        // Member 1 lost 3#1's connection (suspected, not yet excluded); a new process of 3 dialled it.
        // View 5 still lists 3#1: its joiner connection stays one.
        let v = view(5, &[(1, 1), (2, 1), (3, 1)]);
        let adoption = adopt(life(1, 1), &v, &conns(&[(1, 0), (2, 1)]), &conns(&[(3, 9)]), &set(&[]));
        assert_eq!(adoption, Adoption::default());
    }

    #[test]
    fn a_connection_arriving_after_its_admission_is_a_member_connection() {
        let v = view(4, &[(1, 1), (2, 1), (3, 4)]);
        assert!(arrives_admitted(Some(&v), Rank(3), &conns(&[(1, 0)]), |_| false));
        assert!(
            !arrives_admitted(Some(&v), Rank(3), &conns(&[]), |m| m == life(3, 4)),
            "crashed since"
        );
        assert!(
            !arrives_admitted(Some(&v), Rank(3), &conns(&[(3, 7)]), |_| false),
            "already connected"
        );
        assert!(
            !arrives_admitted(Some(&v), Rank(2), &conns(&[]), |_| false),
            "an older life's rank"
        );
        assert!(
            !arrives_admitted(Some(&v), Rank(5), &conns(&[]), |_| false),
            "not in the view"
        );
        assert!(!arrives_admitted(None, Rank(3), &conns(&[]), |_| false), "no view yet");
    }

    #[test]
    fn unconnected_members_are_found() {
        let v = view(4, &[(1, 1), (2, 1), (3, 4)]);
        assert_eq!(unconnected(Rank(1), &v, &conns(&[(1, 0), (3, 2)])), vec![Rank(2)]);
        assert!(
            unconnected(Rank(3), &v, &conns(&[(1, 0), (2, 1)])).is_empty(),
            "not itself"
        );
    }

    #[test]
    fn early_frames_are_kept_in_order_up_to_the_bound() {
        let mut early = EarlyFrames::default();
        let big = Frame::Snapshot {
            view: ViewId(2),
            position: 0,
            state: vec![0; EARLY_BYTES_MAX / 2],
        };
        early.keep(Frame::StatusReport { report: "a".into() }).unwrap();
        early.keep(big.clone()).unwrap();
        assert_eq!(early.keep(big), Err(TooMuchEarly));
        assert_eq!(early.len(), 2);
        let frames = early.take();
        assert!(matches!(&frames[0], Frame::StatusReport { report } if report == "a"));
        assert!(early.is_empty());
    }
}
