//! The normal case of a view: multicasts (with flow control and the backlog while a view changes),
//! data and acknowledgements, and the delivery rule: the hold-back queue's head is delivered once
//! every member of the view acknowledged it ([`super::holdback`]).

use log::{debug, info, warn};

use super::{Delivery, Node, Outbox, Output, Phase};
use crate::message::{Batch, Message, Multicast};
use crate::types::{Payload, Rank, ViewId};

impl Node {
    pub(super) fn on_multicast(&mut self, payload: Payload) {
        match self.phase {
            Phase::Excluded | Phase::Left => warn!("member {}: multicast after the end of membership dropped", self.me),
            _ if self.leave_requested => {
                warn!("member {}: multicast after leave() dropped", self.me)
            }
            // Stamped and sent at the next flush, with every other multicast of this drain.
            _ => self.backlog.push_back(payload),
        }
    }

    /// At a flush: stamps the backlog's messages while the view is stable and the window has room,
    /// and sends them as data frames of at most [`super::CoreConfig::data_batch_bytes`] of payloads each.
    /// True if it sent any.
    ///
    /// Stamping only here, right before sending, keeps the rule of §3 of the protocol notes: no
    /// message of this member has a Lamport time it has not sent yet, so every acknowledgement it sends
    /// follows, on each FIFO connection, every message of its own with a smaller time.
    pub(super) fn pump_backlog(&mut self, out: &mut Outbox) -> bool {
        let mut sent = false;
        while let Some(batch) = self.next_batch() {
            let Some(epoch) = self.epoch.as_ref() else { break };
            let data = Message::Data {
                view: epoch.view.id,
                batch,
                acks: epoch.my_acks(),
            };
            // The data carries this member's acknowledgements: nothing else to send for now.
            self.ack_dirty = false;
            self.send_to_others(out, data);
            sent = true;
        }
        sent
    }

    /// Stamps and holds the next run of backlog messages that may go out now, if any.
    fn next_batch(&mut self) -> Option<Batch> {
        if self.phase != Phase::Member || self.application_busy {
            return None;
        }
        let epoch = self.epoch.as_mut()?;
        let mut msgs: Vec<Multicast> = Vec::new();
        let mut bytes = 0;
        while epoch.own_undelivered() < self.config.window {
            let Some(len) = self.backlog.front().map(|p| p.as_bytes().len()) else {
                break;
            };
            if !msgs.is_empty() && bytes + len > self.config.data_batch_bytes {
                break;
            }
            let Some(payload) = self.backlog.pop_front() else { break };
            bytes += len;
            self.lamport += 1;
            let msg = Multicast {
                origin: self.me.rank,
                seq: epoch.next_own_seq(),
                lamport: self.lamport,
                payload,
            };
            epoch.hold_own(msg.clone());
            msgs.push(msg);
        }
        if msgs.is_empty() {
            return None;
        }
        let batch = Batch::from_msgs(msgs);
        if batch.is_none() {
            self.broken_invariant = Some("own messages stamped out of sequence".to_string());
        }
        batch
    }

    /// A message from `from`, dispatched by this member's phase: a joining process only waits for
    /// its admission; a member (or one changing views) takes every kind.
    pub(super) fn on_message(&mut self, from: Rank, msg: Message, out: &mut Outbox) {
        match self.phase {
            Phase::Member | Phase::Changing => self.on_member_message(from, msg, out),
            Phase::Joining => self.on_joining_message(from, msg, out),
            Phase::Excluded | Phase::Left => {}
        }
    }

    fn on_member_message(&mut self, from: Rank, msg: Message, out: &mut Outbox) {
        if let Some(pending) = &self.pending_decision {
            if msg.view() == Some(pending.proposal.view.id) {
                // A frame of the view this member is about to install (it waits for the cut's
                // payloads): the sender installed it already. Kept, and taken right after the install.
                self.early.push((from, msg));
                return;
            }
        }
        if self.phase == Phase::Changing && from == self.acceptor.promised.proposer && from != self.me.rank {
            // The proposer this member promised is at work: it is not silent.
            self.acceptor.promised_at_tick = self.now_ticks;
        }
        match msg {
            Message::Data { view, batch, acks } => self.on_data(from, view, batch, acks, out),
            Message::Ack { view, acks } => self.on_ack(from, view, acks, out),
            Message::Suspect { view, rank } => self.on_suspect(from, view, rank, out),
            Message::Leave { view } => self.on_leave(from, view, out),
            Message::Prepare { view, ballot } => self.on_prepare(from, view, ballot, out),
            Message::Promise {
                view,
                ballot,
                accepted,
                report,
            } => self.on_promise(from, view, ballot, accepted, report, out),
            Message::Reject { view, ballot, promised } => self.on_reject(view, ballot, promised),
            Message::Accept { view, ballot, proposal } => self.on_accept(from, view, ballot, *proposal, out),
            Message::Accepted { view, ballot } => self.on_accepted(from, view, ballot, out),
            Message::Decide { proposal } => self.on_decide(from, *proposal, out),
            Message::JoinRequest { rank, process } => self.on_join_request(rank, process, out),
            Message::JoinRefused { .. } => {
                debug!("member {}: join refusal from {} ignored", self.me, from)
            }
            Message::Fetch { view, wanted } => self.on_fetch(from, view, wanted, out),
            Message::Carry { view, msgs } => self.on_carry(from, view, msgs, out),
            Message::Progress { view } => {
                if self.is_current_member(from, view) {
                    self.note_progress(from, out);
                }
            }
        }
    }

    /// A joining process takes only the decision that may admit it, and notes why it is refused.
    fn on_joining_message(&mut self, from: Rank, msg: Message, out: &mut Outbox) {
        match msg {
            Message::Decide { proposal } => self.on_decide(from, *proposal, out),
            Message::JoinRefused { reason } => {
                info!("member {}: member {} does not admit us yet: {}", self.me, from, reason);
                self.last_join_refusal = Some(reason);
            }
            other => debug!(
                "member {}: {} from {} ignored while joining",
                self.me,
                other.kind(),
                from
            ),
        }
    }

    /// `from` passes on a suspicion of `rank`; one from a member this one suspects is not taken: it
    /// is on its way out.
    fn on_suspect(&mut self, from: Rank, view: ViewId, rank: Rank, out: &mut Outbox) {
        let sender = self.view.as_ref().and_then(|v| v.member(from));
        if self.is_current_member(from, view) && !sender.is_some_and(|s| self.suspects.contains(&s)) {
            if let Some(member) = self.view.as_ref().and_then(|v| v.member(rank)) {
                self.suspect(member, false, out);
            }
        }
    }

    /// `from` announced its clean departure.
    fn on_leave(&mut self, from: Rank, view: ViewId, out: &mut Outbox) {
        if self.is_current_member(from, view) {
            if let Some(member) = self.view.as_ref().and_then(|v| v.member(from)) {
                self.leaving.insert(member);
                self.maybe_start_change(out);
            }
        }
    }

    /// True if `from` is a member of this member's view and `view` is that view.
    pub(super) fn is_current_member(&self, from: Rank, view: ViewId) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| v.id == view && v.index_of(from).is_some())
    }

    pub(super) fn on_data(&mut self, from: Rank, view: ViewId, batch: Batch, acks: Vec<u64>, out: &mut Outbox) {
        let Some(epoch) = self.epoch.as_mut() else {
            return;
        };
        if epoch.view.id != view {
            // An older view's frame (its content is settled by the cut) or, impossibly, a newer one.
            debug!(
                "member {}: data of view {} from {} dropped at view {}",
                self.me, view, from, epoch.view.id
            );
            return;
        }
        if self.phase == Phase::Changing {
            // After promising, this member takes nothing new of the old view: its report is already out.
            // The message is carried by its origin's report if the origin stays, and delivered by
            // nobody otherwise.
            debug!("member {}: data from {} after promising dropped", self.me, from);
            return;
        }
        let Some(from_index) = epoch.view.index_of(from) else {
            return;
        };
        let lamport = batch.lamport_max();
        if let Err(refusal) = epoch.hold_received(from_index, batch, &acks) {
            warn!("member {}: data from {} dropped: {:?}", self.me, from, refusal);
            return;
        }
        self.lamport = self.lamport.max(lamport) + 1;
        self.ack_dirty = true;
        self.try_deliver(out);
    }

    pub(super) fn on_ack(&mut self, from: Rank, view: ViewId, acks: Vec<u64>, out: &mut Outbox) {
        let Some(epoch) = self.epoch.as_mut() else {
            return;
        };
        if epoch.view.id != view {
            return;
        }
        let Some(from_index) = epoch.view.index_of(from) else {
            return;
        };
        if let Err(refusal) = epoch.merge_acks(from_index, &acks) {
            warn!("member {}: ack from {} dropped: {:?}", self.me, from, refusal);
            return;
        }
        self.try_deliver(out);
    }

    pub(super) fn try_deliver(&mut self, out: &mut Outbox) {
        // A member that promised is frozen until the next view: its report must stay exactly its state,
        // or the cut could miss what it delivers (or count it twice). A busy application waits.
        if self.phase == Phase::Changing || self.application_busy {
            return;
        }
        let mut delivered_any = false;
        while let Some(msg) = self.epoch.as_mut().and_then(|e| e.pop_deliverable()) {
            self.deliver(msg, out);
            delivered_any = true;
        }
        // The window's room this made is used at the next flush.
        if delivered_any {
            self.maybe_announce_leave(out);
        }
    }

    /// Hands one message of the current view to the application.
    pub(super) fn deliver(&mut self, msg: Multicast, out: &mut Outbox) {
        let origin = self.view.as_ref().and_then(|v| v.member(msg.origin));
        let Some(origin) = origin else {
            warn!(
                "member {}: message from non-member {} not delivered",
                self.me, msg.origin
            );
            return;
        };
        self.delivered_count += 1;
        out.push(Output::Deliver(Delivery {
            origin,
            lamport: msg.lamport,
            payload: msg.payload,
            position: self.delivered_count,
        }));
    }
}
