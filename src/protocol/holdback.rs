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
//! # Invariants (checked by [`Epoch::check`])
//! - every held message belongs to a member of the view, its `seq` is at most what this member has
//!   received from that origin, and its stamp is after the last delivered one;
//! - this member's own row counts exactly the messages it multicast in this view;
//! - `own_undelivered` is the number of this member's own messages still held.

use std::collections::BTreeMap;

use crate::message::{Batch, Multicast};
use crate::types::{MemberId, Stamp, View};

/// One view's hold-back queue and acknowledgement table.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// The view this epoch belongs to.
    pub view: View,
    /// This member's index in `view.members`.
    pub my_index: usize,
    /// Received but undelivered messages of this view, in total order.
    held: BTreeMap<Stamp, Multicast>,
    /// `acks[k][o]`: highest `seq` of the `o`-th member that the `k`-th member is known to hold.
    acks: Vec<Vec<u64>>,
    /// The stamp of the last message delivered in this view.
    last_delivered: Option<Stamp>,
    /// This member's own messages multicast but not yet delivered (flow control counts them).
    own_undelivered: usize,
}

/// Why a received data message was not taken.
#[derive(Debug, PartialEq, Eq)]
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
            held: BTreeMap::new(),
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
        self.acks[self.my_index][self.my_index] = msg.seq;
        self.own_undelivered += 1;
        self.held.insert(msg.stamp(), msg);
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
        if batch.msgs().windows(2).any(|pair| pair[0].lamport >= pair[1].lamport) {
            // Two messages of one origin under one stamp would take each other's place.
            return Err(Refusal::Unordered);
        }
        let last = batch.last_seq();
        self.acks[self.my_index][from_index] = last;
        let row = &mut self.acks[from_index];
        row[from_index] = row[from_index].max(last);
        for msg in batch.into_msgs() {
            self.held.insert(msg.stamp(), msg);
        }
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

    /// Removes and returns the head of the queue if every member acknowledged it.
    pub fn pop_deliverable(&mut self) -> Option<Multicast> {
        let (_, head) = self.held.first_key_value()?;
        let origin = self.view.index_of(head.origin)?;
        if self.acks.iter().any(|row| row[origin] < head.seq) {
            return None;
        }
        let (stamp, msg) = self.held.pop_first()?;
        self.last_delivered = Some(stamp);
        if origin == self.my_index {
            self.own_undelivered -= 1;
        }
        Some(msg)
    }

    /// The head of the queue and the members whose acknowledgement it still waits for.
    pub fn head_waiting_for(&self) -> Option<(Stamp, Vec<MemberId>)> {
        let (stamp, head) = self.held.first_key_value()?;
        let origin = self.view.index_of(head.origin)?;
        let missing = (0..self.acks.len())
            .filter(|k| self.acks[*k][origin] < head.seq)
            .map(|k| self.view.members[k])
            .collect();
        Some((*stamp, missing))
    }

    /// Every held (undelivered) message, in total order.
    pub fn get(&self, stamp: Stamp) -> Option<&Multicast> {
        self.held.get(&stamp)
    }

    /// Every held message, in stamp order.
    pub fn held(&self) -> impl Iterator<Item = &Multicast> {
        self.held.values()
    }

    /// Number of held messages.
    pub fn held_len(&self) -> usize {
        self.held.len()
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
        for (stamp, msg) in &self.held {
            assert_eq!(*stamp, msg.stamp(), "held under a wrong stamp");
            let origin = self.view.index_of(msg.origin).expect("held message from a non-member");
            assert!(
                msg.seq <= self.acks[me][origin],
                "held {stamp} beyond what was received"
            );
            assert!(
                self.last_delivered.map_or(true, |last| *stamp > last),
                "held {stamp} at or before the last delivered"
            );
            if origin == me {
                own += 1;
            }
        }
        assert_eq!(own, self.own_undelivered, "own undelivered count drifted");
        for row in &self.acks {
            assert_eq!(row.len(), self.view.members.len());
        }
    }
}
