//! Moving a view change's payloads: the cut is agreed on by name, its bytes travel in bounded chunks.
//!
//! The consensus messages ([`Message::Promise`], [`Message::Accept`], [`Message::Decide`]) name the
//! messages of the cut by [`MessageRef`] only, so their size grows with the number of messages, never
//! with the payloads: a view change of a full window of 1 MiB messages per member is a few kilobytes of
//! ballot. The payloads move separately, in [`Message::Carry`] chunks of at most
//! [`CoreConfig::carry_chunk_bytes`](super::CoreConfig::carry_chunk_bytes) each (a single message is never split:
//! a payload is at most 1 MiB, far below the frame limit):
//!
//! - **the proposer gathers**: once it knows the value to propose, it asks ([`Message::Fetch`]) the
//!   promisers that reported a message it lacks for that message's payload;
//! - **the proposer pushes**: before its `Accept` to each acceptor it sends, on the same FIFO
//!   connection, the payloads that acceptor's report shows it lacks, so an acceptor holds the whole cut
//!   when the `Accept` arrives;
//! - **an installer pulls**: a member that learns a decision whose payloads it does not all hold (it
//!   never got the deciding ballot's `Accept`) fetches the missing ones from the member that sent it the
//!   decision, and installs once it holds them; frames of the new view that arrive meanwhile wait.
//!
//! Every member keeps the payloads of the cut it delivered at its last install ([`Node`]'s `last_cut`),
//! so any member that installed a view can serve a member still behind.
//!
//! Why a payload is always somewhere to be had: a member that must deliver a carried message it does
//! not hold has not delivered it, so nobody delivered it in the normal way (delivery needs every
//! member's acknowledgement, and an acknowledgement means "I hold it"); hence every member that has it
//! either still holds it (frozen in the view change) or delivered it at an install and kept it in its
//! `last_cut`. `docs/PROTOCOL.md` §4 gives the whole argument.
//!
//! Transfers count as progress ([`Message::Progress`]): a big cut moving slowly is not taken for a
//! silent proposer, and does not make the proposer retry.

use std::collections::{BTreeMap, BTreeSet};

use log::{debug, warn};

use super::{Node, Outbox};
use crate::message::{Message, MessageRef, Multicast};
use crate::types::{Rank, ViewId};

/// The bytes one message counts for in a chunk: its payload and a generous bound on its fields.
fn counted_len(msg: &Multicast) -> usize {
    msg.payload.len() + 64
}

/// Splits `msgs` into chunks of at most `chunk_bytes` (a message larger than that is a chunk alone).
pub(super) fn chunks(msgs: Vec<Multicast>, chunk_bytes: usize) -> Vec<Vec<Multicast>> {
    let mut chunks = Vec::new();
    let mut current: Vec<Multicast> = Vec::new();
    let mut current_len = 0;
    for msg in msgs {
        let len = counted_len(&msg);
        if !current.is_empty() && current_len + len > chunk_bytes {
            chunks.push(std::mem::take(&mut current));
            current_len = 0;
        }
        current_len += len;
        current.push(msg);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

impl Node {
    /// The payload of `wanted`, a message of view `view`, if this member has it: held back or gathered
    /// in the current view, or part of the cut it delivered when it installed the view after `view`.
    pub(super) fn payload_of(&self, view: ViewId, wanted: &MessageRef) -> Option<Multicast> {
        let same = |m: &&Multicast| m.seq == wanted.seq;
        let current = self.view.as_ref().map(|v| v.id);
        if current == Some(view) {
            let stamp = wanted.stamp();
            let held = self.epoch.as_ref().and_then(|e| e.get(stamp)).filter(same);
            return held.or_else(|| self.gathered.get(&stamp).filter(same)).cloned();
        }
        if self.last_cut_view == Some(view) {
            return self.last_cut.get(&wanted.stamp()).filter(same).cloned();
        }
        None
    }

    /// The messages of `carried` this member must deliver at the install (after its last delivery) and
    /// has no payload for.
    pub(super) fn missing_payloads(&self, carried: &[MessageRef]) -> Vec<MessageRef> {
        let Some(view) = self.view.as_ref().map(|v| v.id) else {
            return Vec::new();
        };
        let last = self.epoch.as_ref().and_then(|e| e.last_delivered());
        carried
            .iter()
            .filter(|r| last.map_or(true, |l| r.stamp() > l))
            .filter(|r| self.payload_of(view, r).is_none())
            .copied()
            .collect()
    }

    /// Names every undelivered message of the current view this member holds, as its report says:
    /// what it holds back, and the gathered payloads that continue, without a gap, what it holds of the
    /// same origin.
    ///
    /// A report is prefix-closed per origin, as held-back queues are (FIFO), so a cut built from reports
    /// never carries a message without its origin's earlier ones. Gathered payloads past a gap (a ballot
    /// that died while this member gathered its cut) are left out: nobody delivered them, since delivery
    /// needs every member's acknowledgement and an acknowledgement covers the whole prefix.
    pub(super) fn holdings(&self) -> Vec<MessageRef> {
        let Some(epoch) = &self.epoch else {
            return Vec::new();
        };
        let mut refs: BTreeSet<MessageRef> = epoch.held().map(Multicast::reference).collect();
        let held_up_to = epoch.my_acks();
        let mut gathered: Vec<&Multicast> = self.gathered.values().collect();
        gathered.sort_by_key(|m| (m.origin, m.seq));
        let mut next_seq: BTreeMap<Rank, u64> = BTreeMap::new();
        for msg in gathered {
            let Some(index) = epoch.view.index_of(msg.origin) else {
                continue;
            };
            let next = next_seq.entry(msg.origin).or_insert(held_up_to[index] + 1);
            if msg.seq == *next {
                refs.insert(msg.reference());
                *next += 1;
            }
        }
        refs.into_iter().collect()
    }

    /// Sends the payloads of `msgs` of `view` to `to` in chunks.
    pub(super) fn send_payloads(&mut self, out: &mut Outbox, to: Rank, view: ViewId, msgs: Vec<Multicast>) {
        for chunk in chunks(msgs, self.config.carry_chunk_bytes.max(1)) {
            self.send(out, to, Message::Carry { view, msgs: chunk });
        }
    }

    /// Asks `source` for the payloads of `wanted`, messages of `view` (never this member itself).
    pub(super) fn fetch(&mut self, out: &mut Outbox, view: ViewId, wanted: Vec<MessageRef>, source: Rank) {
        if wanted.is_empty() || source == self.me.rank {
            return;
        }
        debug!(
            "member {}: fetching {} payloads of view {view} from {source}",
            self.me,
            wanted.len()
        );
        self.send(out, source, Message::Fetch { view, wanted });
    }

    /// A member asks for payloads: send those this member has (the others it cannot have; the asker
    /// asks someone else on its next timeout).
    pub(super) fn on_fetch(&mut self, from: Rank, view: ViewId, wanted: Vec<MessageRef>, out: &mut Outbox) {
        let found: Vec<Multicast> = wanted.iter().filter_map(|r| self.payload_of(view, r)).collect();
        if found.len() < wanted.len() {
            debug!(
                "member {}: {} of {} payloads asked by {from} for view {view} not here",
                self.me,
                wanted.len() - found.len(),
                wanted.len()
            );
        }
        self.send_payloads(out, from, view, found);
    }

    /// A chunk of payloads arrived: keep the ones of the current view this member lacks, tell the
    /// sender it moved, and go on with whatever waited for them.
    pub(super) fn on_carry(&mut self, from: Rank, view: ViewId, msgs: Vec<Multicast>, out: &mut Outbox) {
        let Some(current) = self.view.clone() else { return };
        if current.id != view {
            debug!(
                "member {}: carry of view {view} from {from} ignored at view {}",
                self.me, current.id
            );
            return;
        }
        let last = self.epoch.as_ref().and_then(|e| e.last_delivered());
        for msg in msgs {
            if current.index_of(msg.origin).is_none() || last.is_some_and(|l| msg.stamp() <= l) {
                warn!(
                    "member {}: carried message {} from {from} not of view {view}: dropped",
                    self.me,
                    msg.stamp()
                );
                continue;
            }
            let held = self.epoch.as_ref().is_some_and(|e| e.get(msg.stamp()).is_some());
            if !held {
                self.gathered.entry(msg.stamp()).or_insert(msg);
            }
        }
        self.send(out, from, Message::Progress { view });
        self.note_progress(from, out);
        self.after_payloads(out);
    }

    /// A transfer moved (a chunk arrived here, or `from` acknowledged one).
    pub(super) fn note_progress(&mut self, from: Rank, out: &mut Outbox) {
        let now = self.now_ticks;
        if from == self.acceptor.promised.proposer {
            self.acceptor.promised_at_tick = now;
        }
        let Some(proposer) = self.proposer.as_mut() else { return };
        proposer.progress_at_tick = now;
        self.keep_promisers_waiting(out);
    }

    /// Tells the promisers of this proposer's ballot, at most every half view-change timeout, that
    /// it is at work (a transfer moves, or it waits on purpose): none then takes it for silent.
    pub(super) fn keep_promisers_waiting(&mut self, out: &mut Outbox) {
        let now = self.now_ticks;
        let half_timeout = (self.config.view_change_timeout_ticks / 2).max(1);
        let Some(proposer) = self.proposer.as_mut() else { return };
        if now.saturating_sub(proposer.keepalive_at_tick) < half_timeout {
            return;
        }
        // The promisers not part of this transfer wait on this proposer: tell them it is working.
        proposer.keepalive_at_tick = now;
        let waiting: Vec<Rank> = proposer.responders();
        let Some(view) = self.view.as_ref().map(|v| v.id) else {
            return;
        };
        for rank in waiting {
            if rank != self.me.rank {
                self.send(out, rank, Message::Progress { view });
            }
        }
    }

    /// New payloads are here: a gathering proposer, an acceptor waiting to accept, or a member waiting
    /// to install may now go on.
    pub(super) fn after_payloads(&mut self, out: &mut Outbox) {
        if self
            .proposer
            .as_ref()
            .is_some_and(|p| p.proposal.is_some() && !p.accepts_sent)
        {
            self.accept_when_gathered(out);
        }
        if let Some((from, ballot, proposal)) = self.pending_accept.take() {
            if self.missing_payloads(&proposal.carried).is_empty() {
                let view = self.view.as_ref().map_or(ViewId(0), |v| v.id);
                self.on_accept(from, view, ballot, proposal, out);
            } else {
                self.pending_accept = Some((from, ballot, proposal));
            }
        }
        if let Some(pending) = self.pending_decision.take() {
            if self.missing_payloads(&pending.proposal.carried).is_empty() {
                self.install(pending.proposal, out);
            } else {
                self.pending_decision = Some(pending);
            }
        }
    }
}

/// Where a gathering proposer asks for each payload it lacks: the first promiser in `reports` that
/// reported it, the first time (`round` 0); every promiser that reported it, when asking again (the
/// one asked first may have died before it answered).
pub(super) fn sources_of(
    reports: &[(Rank, BTreeSet<MessageRef>)],
    wanted: &[MessageRef],
    round: usize,
) -> BTreeMap<Rank, Vec<MessageRef>> {
    let mut by_source: BTreeMap<Rank, Vec<MessageRef>> = BTreeMap::new();
    for msg in wanted {
        let holders = reports
            .iter()
            .filter(|(_, held)| held.contains(msg))
            .map(|(rank, _)| *rank);
        let asked: Vec<Rank> = if round == 0 {
            holders.take(1).collect()
        } else {
            holders.collect()
        };
        for rank in asked {
            by_source.entry(rank).or_default().push(*msg);
        }
    }
    by_source
}
