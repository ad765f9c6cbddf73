//! One view's ordering state: the hold-back queue, the acknowledgement table, and the delivery rule.
//!
//! An [`Epoch`] lives exactly as long as one installed view; installing the next view starts a fresh one
//! (sequence numbers restart at 1, the table restarts at zero). That is what lets a view change be a clean
//! cut: nothing of one view's bookkeeping leaks into the next.
//!
//! # The delivery rule
//! The head of the queue (the smallest [`Stamp`]) is delivered once *every* member of the view,
//! its origin and this member included, has acknowledged it: `acks[k][origin] >= seq` for all `k`.
//!
//! An acknowledgement from `k` for origin `o` up to `seq` means two things at once:
//! 1. `k` holds every message of `o` up to `seq` (needed so that a crash can never lose a delivered
//!    message: whoever survives holds it);
//! 2. `k` sent it after receiving them, so `k`'s clock was already past their Lamport times, and every
//!    message `k` multicast with a smaller time went out earlier on the same FIFO connection.
//!
//! A data message from `o` (a run of its messages, see [`Batch`]) acknowledges `o`'s own messages up to
//! the run's last `seq` (the origin obviously holds
//! them, and its later messages carry larger times); this member's own row is its own receive counters.
//!
//! # The queue: one per origin
//! Each origin's messages arrive in seq order without gaps (a FIFO connection, checked on receipt) and
//! with growing Lamport times (an origin's clock only grows, also checked), so each origin's queue is
//! in stamp order by itself, and the head of the view's total order is the smallest of the queues'
//! fronts. Taking a message in or out is then a push at a queue's back or a pop at its front, with no
//! allocation per message, and finding the head is a look at one front per member.
//!
//! # Invariants (checked by [`Epoch::check`])
//! - every held message belongs to a member of the view and sits in that origin's queue, its `seq` is at
//!   most what this member has received from that origin, its stamp is after the last delivered one,
//!   and each queue is in seq and stamp order;
//! - this member's own row counts exactly the messages it multicast in this view;
//! - `own_undelivered` is the number of this member's own messages still held.

use std::collections::VecDeque;

use crate::message::{Batch, Multicast};
use crate::types::{MemberId, Stamp, View};

/// One view's hold-back queue and acknowledgement table.
#[derive(Debug, Clone, Hash)]
pub struct Epoch {
    /// The view this epoch belongs to.
    pub view: View,
    /// This member's index in `view.members`.
    pub my_index: usize,
    /// Received but undelivered messages of this view, one queue per origin (by view index), each in
    /// seq and stamp order.
    held: Vec<VecDeque<Multicast>>,
    /// Per origin (by view index), the Lamport time of its last message taken in this view (0: none).
    last_lamport: Vec<u64>,
    /// `acks[k][o]`: highest `seq` of the `o`-th member that the `k`-th member is known to hold.
    acks: Vec<Vec<u64>>,
    /// The stamp of the last message delivered in this view.
    last_delivered: Option<Stamp>,
    /// This member's own messages multicast but not yet delivered (flow control counts them).
    own_undelivered: usize,
}

/// Why a received data message was not taken.
#[derive(Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The claimed origin is not the sending member.
    Spoofed,
    /// The sequence number is not the next one expected from that origin (a gap or a repeat).
    OutOfSequence {
        /// The `seq` expected next.
        expected: u64,
        /// The `seq` received.
        got: u64,
    },
    /// The acknowledgement vector does not have one entry per member.
    BadAckVector,
    /// The sender is not a member of this view.
    NotAMember,
    /// A run's Lamport times do not grow from one message to the next.
    Unordered,
}

impl Epoch {
    /// A fresh epoch for `view`, seen from member `me` (which must be listed in it).
    pub fn new(view: View, me: MemberId) -> Epoch {
        let my_index = view
            .index_of(me.rank)
            .expect("an epoch is only made for a member of its view");
        let size = view.members.len();
        Epoch {
            view,
            my_index,
            held: vec![VecDeque::new(); size],
            last_lamport: vec![0; size],
            acks: vec![vec![0; size]; size],
            last_delivered: None,
            own_undelivered: 0,
        }
    }

    /// The next sequence number this member will use.
    pub fn next_own_seq(&self) -> u64 {
        self.acks[self.my_index][self.my_index] + 1
    }

    /// Takes this member's own new message (its `seq` must be [`Epoch::next_own_seq`]).
    pub fn hold_own(&mut self, msg: Multicast) {
        debug_assert_eq!(msg.seq, self.next_own_seq());
        debug_assert!(msg.lamport > self.last_lamport[self.my_index]);
        self.acks[self.my_index][self.my_index] = msg.seq;
        self.own_undelivered += 1;
        self.last_lamport[self.my_index] = msg.lamport;
        self.held[self.my_index].push_back(msg);
    }

    /// Takes a run of data messages received from the member at `from_index`, with its piggybacked
    /// acks: all of it, or (refused) none of it.
    pub fn hold_received(&mut self, from_index: usize, batch: Batch, acks: &[u64]) -> Result<(), Refusal> {
        if self.view.members[from_index].rank != batch.origin() {
            return Err(Refusal::Spoofed);
        }
        let expected = self.acks[self.my_index][from_index] + 1;
        if batch.first_seq() != expected {
            return Err(Refusal::OutOfSequence {
                expected,
                got: batch.first_seq(),
            });
        }
        if acks.len() != self.view.members.len() {
            return Err(Refusal::BadAckVector);
        }
        let lamports = std::iter::once(self.last_lamport[from_index]).chain(batch.msgs().iter().map(|m| m.lamport));
        if lamports
            .clone()
            .zip(lamports.skip(1))
            .any(|(before, after)| before >= after)
        {
            // An origin's clock only grows: its queue stays in stamp order, and no two of its messages
            // share a stamp.
            return Err(Refusal::Unordered);
        }
        let last = batch.last_seq();
        self.acks[self.my_index][from_index] = last;
        let row = &mut self.acks[from_index];
        row[from_index] = row[from_index].max(last);
        self.last_lamport[from_index] = batch.lamport_max();
        self.held[from_index].extend(batch.into_msgs());
        self.merge_acks(from_index, acks)
    }

    /// Merges an acknowledgement vector from the member at `from_index` (acks only grow).
    pub fn merge_acks(&mut self, from_index: usize, acks: &[u64]) -> Result<(), Refusal> {
        if acks.len() != self.view.members.len() {
            return Err(Refusal::BadAckVector);
        }
        if from_index == self.my_index {
            return Ok(());
        }
        for (known, claimed) in self.acks[from_index].iter_mut().zip(acks) {
            *known = (*known).max(*claimed);
        }
        Ok(())
    }

    /// This member's own acknowledgement vector, to send.
    pub fn my_acks(&self) -> Vec<u64> {
        self.acks[self.my_index].clone()
    }

    /// The view index of the origin whose queue's front is the head of the total order (the smallest
    /// stamp of all fronts), if anything is held.
    fn head_origin(&self) -> Option<usize> {
        self.held
            .iter()
            .enumerate()
            .filter_map(|(origin, queue)| queue.front().map(|msg| (msg.stamp(), origin)))
            .min()
            .map(|(_, origin)| origin)
    }

    /// Removes and returns the head of the queue if every member acknowledged it.
    pub fn pop_deliverable(&mut self) -> Option<Multicast> {
        let origin = self.head_origin()?;
        let seq = self.held[origin].front()?.seq;
        if self.acks.iter().any(|row| row[origin] < seq) {
            return None;
        }
        let msg = self.held[origin].pop_front()?;
        self.last_delivered = Some(msg.stamp());
        if origin == self.my_index {
            self.own_undelivered -= 1;
        }
        Some(msg)
    }

    /// The head of the queue and the members whose acknowledgement it still waits for.
    pub fn head_waiting_for(&self) -> Option<(Stamp, Vec<MemberId>)> {
        let origin = self.head_origin()?;
        let head = self.held[origin].front()?;
        let missing = (0..self.acks.len())
            .filter(|k| self.acks[*k][origin] < head.seq)
            .map(|k| self.view.members[k])
            .collect();
        Some((head.stamp(), missing))
    }

    /// The held (undelivered) message with this stamp, if any.
    pub fn get(&self, stamp: Stamp) -> Option<&Multicast> {
        let queue = &self.held[self.view.index_of(stamp.origin)?];
        let at = queue.binary_search_by_key(&stamp.lamport, |msg| msg.lamport).ok()?;
        queue.get(at)
    }

    /// Every held message, origin by origin, each origin's in seq order.
    pub fn held(&self) -> impl Iterator<Item = &Multicast> {
        self.held.iter().flatten()
    }

    /// Number of held messages.
    pub fn held_len(&self) -> usize {
        self.held.iter().map(VecDeque::len).sum()
    }

    /// The last stamp delivered in this view.
    pub fn last_delivered(&self) -> Option<Stamp> {
        self.last_delivered
    }

    /// This member's own messages not yet delivered.
    pub fn own_undelivered(&self) -> usize {
        self.own_undelivered
    }

    /// Panics if an invariant (see the module docs) is broken.
    pub fn check(&self) {
        let me = self.my_index;
        let mut own = 0;
        assert_eq!(self.held.len(), self.view.members.len(), "one queue per member");
        for (origin, queue) in self.held.iter().enumerate() {
            let mut previous: Option<&Multicast> = None;
            for msg in queue {
                let stamp = msg.stamp();
                assert_eq!(
                    self.view.index_of(msg.origin),
                    Some(origin),
                    "held {stamp} in another origin's queue"
                );
                assert!(
                    msg.seq <= self.acks[me][origin],
                    "held {stamp} beyond what was received"
                );
                assert!(
                    self.last_delivered.map_or(true, |last| stamp > last),
                    "held {stamp} at or before the last delivered"
                );
                if let Some(previous) = previous {
                    assert!(
                        previous.seq + 1 == msg.seq && previous.lamport < msg.lamport,
                        "queue of origin {} out of order at {stamp}",
                        msg.origin
                    );
                }
                assert!(
                    msg.lamport <= self.last_lamport[origin],
                    "held {stamp} after its origin's last time"
                );
                previous = Some(msg);
                if origin == me {
                    own += 1;
                }
            }
        }
        assert_eq!(own, self.own_undelivered, "own undelivered count drifted");
        for row in &self.acks {
            assert_eq!(row.len(), self.view.members.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Payload, Rank};

    /// A run of origin `origin`'s messages, `(seq, lamport)` each.
    fn run(origin: u16, msgs: &[(u64, u64)]) -> Batch {
        let msgs = msgs
            .iter()
            .map(|&(seq, lamport)| Multicast {
                origin: Rank(origin),
                seq,
                lamport,
                payload: Payload::from("m"),
            })
            .collect();
        Batch::from_msgs(msgs).expect("consecutive seqs of one origin")
    }

    /// An origin's times only grow, from one run to the next too: a run that goes back is refused
    /// whole, and the queue keeps what it had.
    #[test]
    fn a_run_whose_first_time_is_not_past_its_origins_last_is_refused_whole() {
        let view = View::initial(2);
        let me = view.member(Rank(1)).expect("listed");
        let mut epoch = Epoch::new(view, me);
        epoch
            .hold_received(1, run(2, &[(1, 5), (2, 6)]), &[0, 2])
            .expect("taken");
        assert_eq!(
            epoch.hold_received(1, run(2, &[(3, 6)]), &[0, 3]),
            Err(Refusal::Unordered)
        );
        assert_eq!(epoch.held_len(), 2);
        epoch.hold_received(1, run(2, &[(3, 7)]), &[0, 3]).expect("taken");
        assert_eq!(epoch.held_len(), 3);
        epoch.check();
    }

    /// The head of the total order is the smallest front of the origins' queues, and it is delivered
    /// only once every member acknowledged it.
    #[test]
    fn the_head_is_the_smallest_front_and_waits_for_every_acknowledgement() {
        let view = View::initial(3);
        let me = view.member(Rank(1)).expect("listed");
        let mut epoch = Epoch::new(view, me);
        epoch
            .hold_received(1, run(2, &[(1, 2), (2, 4)]), &[0, 2, 0])
            .expect("taken");
        epoch
            .hold_received(2, run(3, &[(1, 2), (2, 3)]), &[0, 0, 2])
            .expect("taken");
        // 2.2 is the head (tie on time 2 broken by rank), but 3 has not acknowledged it.
        let (head, waiting) = epoch.head_waiting_for().expect("a head");
        assert_eq!((head.lamport, head.origin), (2, Rank(2)));
        assert_eq!(waiting.iter().map(|m| m.rank).collect::<Vec<_>>(), vec![Rank(3)]);
        assert!(epoch.pop_deliverable().is_none());
        epoch.merge_acks(2, &[0, 2, 2]).expect("merged");
        epoch.merge_acks(1, &[0, 2, 2]).expect("merged");
        let order: Vec<(u64, u16)> = std::iter::from_fn(|| epoch.pop_deliverable())
            .map(|m| (m.lamport, m.origin.0))
            .collect();
        assert_eq!(order, vec![(2, 2), (2, 3), (3, 3), (4, 2)]);
        assert_eq!(epoch.held_len(), 0);
        epoch.check();
    }
}
