//! The end of a view change: accepting a proposal, counting acceptances, the decision and its
//! install (the cut delivered, the new view started), and becoming inert.
//! See [`super::view_change`] for the whole algorithm and its invariants.

use std::collections::{BTreeMap, BTreeSet};

use log::{debug, info, warn};

use super::holdback::Epoch;
use super::view_change::{AcceptorState, PendingDecision};
use super::{Node, Outbox, Output, Phase};
use crate::message::{Ballot, Message, MessageRef, Multicast, Proposal};
use crate::types::{Incarnation, MemberId, Rank, Stamp, ViewId};

impl Node {
    /// Phase 2b.
    pub(super) fn on_accept(
        &mut self,
        from: Rank,
        view_id: ViewId,
        ballot: Ballot,
        proposal: Proposal,
        out: &mut Outbox,
    ) {
        let Some(view) = &self.view else { return };
        if view_id != view.id || view.index_of(from).is_none() {
            return;
        }
        if self.reject_if_outbid(from, view_id, ballot, out) {
            return;
        }
        if ballot > self.acceptor.promised {
            self.acceptor.promised = ballot;
            self.acceptor.promised_at_tick = self.now_ticks;
        }
        self.phase = Phase::Changing;
        let missing = self.missing_payloads(&proposal.carried);
        if !missing.is_empty() {
            // The proposer sends an acceptor what it lacks before the Accept, so this is only a proposer
            // that misjudged what this member holds: ask it, and accept once the payloads are here.
            warn!(
                "member {}: accept of ballot {}.{} lacks {} payloads; fetching them first",
                self.me,
                ballot.round,
                ballot.proposer,
                missing.len()
            );
            self.pending_accept = Some((from, ballot, proposal));
            self.fetch(out, view_id, missing, from);
            return;
        }
        self.acceptor.accepted = Some((ballot, Box::new(proposal)));
        self.send(out, from, Message::Accepted { view: view_id, ballot });
    }

    /// An acceptance reached the proposer; a quorum of them decides.
    pub(super) fn on_accepted(&mut self, from: Rank, view_id: ViewId, ballot: Ballot, out: &mut Outbox) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let Some(proposer) = self.proposer.as_mut() else {
            return;
        };
        if proposer.ballot != ballot || view.id != view_id {
            return;
        }
        proposer.accepted_by.insert(from);
        let voters: Vec<Rank> = proposer.accepted_by.iter().copied().collect();
        if !view.is_quorum(&voters) {
            return;
        }
        if let Some(proposal) = proposer.proposal.clone() {
            self.install(proposal, out);
        }
    }

    /// A higher ballot exists: give up this one (a later tick may start a higher one).
    pub(super) fn on_reject(&mut self, view_id: ViewId, ballot: Ballot, promised: Ballot) {
        self.highest_round_seen = self.highest_round_seen.max(promised.round);
        let current = self.view.as_ref().map(|v| v.id);
        if self.proposer.as_ref().is_some_and(|p| p.ballot == ballot) && current == Some(view_id) {
            debug!(
                "member {}: ballot {}.{} lost to {}.{}",
                self.me, ballot.round, ballot.proposer, promised.round, promised.proposer
            );
            self.proposer = None;
        }
    }

    /// A decided next view arrived from `from`.
    pub(super) fn on_decide(&mut self, from: Rank, proposal: Proposal, out: &mut Outbox) {
        match self.phase {
            Phase::Joining => {
                // Only a decision that admits this very process: another process may have asked for
                // the same rank, and the group admitted that one.
                let listed = proposal.view.member(self.me.rank);
                let mine = listed
                    .is_some_and(|m| m.incarnation == Incarnation(proposal.view.id.0) && m.process == self.me.process);
                if mine {
                    self.install(proposal, out);
                } else if listed.is_some() {
                    debug!(
                        "member {}: decision of view {} admits another process for rank {}; ignored",
                        self.me, proposal.view.id, self.me.rank
                    );
                }
            }
            Phase::Member | Phase::Changing => {
                let current = self.view.as_ref().map_or(ViewId(0), |v| v.id);
                if proposal.view.id.0 == current.0 + 1 {
                    let missing = if proposal.view.contains(self.me) {
                        self.missing_payloads(&proposal.carried)
                    } else {
                        Vec::new() // an excluded member needs no payloads to stop
                    };
                    if missing.is_empty() {
                        self.install(proposal, out);
                        return;
                    }
                    // Wait for the payloads; the member that sent the decision installed it, so it
                    // has them. Frames of the new view that arrive meanwhile are kept (`on_message`).
                    if self.pending_decision.is_none() {
                        info!(
                            "member {}: decision of view {} lacks {} payloads here; fetching from {from}",
                            self.me,
                            proposal.view.id,
                            missing.len()
                        );
                        self.pending_decision = Some(PendingDecision {
                            proposal,
                            asked_at_tick: self.now_ticks,
                            attempts: 0,
                        });
                    }
                    self.fetch(out, current, missing, from);
                } else if proposal.view.id.0 > current.0 + 1 && !proposal.view.contains(self.me) {
                    // A later view without this life: some view in between excluded it.
                    self.become_inert(Phase::Excluded, proposal.view.id, out);
                }
            }
            Phase::Excluded | Phase::Left => {}
        }
    }

    /// Installs a decided view: delivers the carried messages, starts the new epoch, relays the decision.
    pub(super) fn install(&mut self, proposal: Proposal, out: &mut Outbox) {
        let old_view = self.view.clone();
        let joining = self.phase == Phase::Joining;
        // The relays go out before anything this member multicasts or acknowledges in the new view, so
        // on every FIFO connection the decision precedes this member's new-view messages. The driver
        // hears of the view (`ViewInstalled`) just before the relays, so it can route them to the new
        // view's lives; what it sends itself on that output (a state snapshot for a newcomer) may
        // precede the relay, and a receiver keeps such frames until it has installed the view.
        let mut recipients: BTreeSet<Rank> = proposal.view.ranks().collect();
        if let Some(old) = &old_view {
            recipients.extend(old.ranks());
        }
        recipients.remove(&self.me.rank);

        let listed = proposal.view.member(self.me.rank).filter(|m| joining || *m == self.me);
        let cut = match (&old_view, joining) {
            (Some(old), false) => self.deliver_cut(&proposal, old.id, listed.is_some(), out),
            _ => BTreeMap::new(),
        };
        self.lamport = self.lamport.max(proposal.lamport);
        self.acceptor = AcceptorState::default();
        self.proposer = None;
        // The cut this member delivered stays at hand: a member still behind may fetch it from here.
        self.last_cut = cut;
        self.last_cut_view = old_view.as_ref().map(|v| v.id);
        self.gathered.clear();
        self.pending_accept = None;
        self.pending_decision = None;
        let early = std::mem::take(&mut self.early);

        let Some(me) = listed else {
            let phase = if self.leaving.contains(&self.me) {
                Phase::Left
            } else {
                Phase::Excluded
            };
            for rank in &recipients {
                self.send(
                    out,
                    *rank,
                    Message::Decide {
                        proposal: Box::new(proposal.clone()),
                    },
                );
            }
            self.become_inert(phase, proposal.view.id, out);
            return;
        };
        self.start_view(me, &proposal, early, joining, &recipients, out);
        self.last_decision = Some(proposal);
        self.after_install(out);
    }

    /// Delivers the cut of `proposal` that this member (a member of `old_view`) has not delivered yet,
    /// and returns it. `listed`: the new view lists this member (then a count that does not reach the
    /// proposal's start position is a broken invariant).
    fn deliver_cut(
        &mut self,
        proposal: &Proposal,
        old_view: ViewId,
        listed: bool,
        out: &mut Outbox,
    ) -> BTreeMap<Stamp, Multicast> {
        let mut cut: BTreeMap<Stamp, Multicast> = BTreeMap::new();
        {
            let last = self.epoch.as_ref().and_then(|e| e.last_delivered());
            let to_deliver: Vec<&MessageRef> = proposal
                .carried
                .iter()
                .filter(|m| last.map_or(true, |l| m.stamp() > l))
                .collect();
            let payloads: Option<Vec<Multicast>> = to_deliver.iter().map(|r| self.payload_of(old_view, r)).collect();
            let reaches = self.delivered_count + to_deliver.len() as u64 == proposal.start_position;
            if let (true, Some(msgs)) = (reaches, payloads) {
                for msg in msgs {
                    self.deliver(msg.clone(), out);
                    cut.insert(msg.stamp(), msg);
                }
            } else if listed {
                // Every member of the new view promised to the ballot that built the proposal, so its
                // count always matches (see the module docs); the simulator checks this.
                warn!(
                    "member {}: at install of view {} would reach {} messages, proposal says {}",
                    self.me,
                    proposal.view.id,
                    self.delivered_count + to_deliver.len() as u64,
                    proposal.start_position
                );
                self.broken_invariant = Some(format!(
                    "install of view {}: delivered count would be {}, proposal says {}",
                    proposal.view.id,
                    self.delivered_count + to_deliver.len() as u64,
                    proposal.start_position
                ));
            }
            // A member leaving the view without having promised to the deciding ballot may lack part
            // of the cut; it then stops where it is, which keeps its sequence a prefix of the group's.
        }
        cut
    }

    /// Starts the new view of `proposal` as `me`: the frames that came early are queued, the epoch,
    /// suspicions, leaves and joins move on, the driver hears of the view, and the decision is relayed.
    fn start_view(
        &mut self,
        me: MemberId,
        proposal: &Proposal,
        early: Vec<(Rank, Message)>,
        joining: bool,
        recipients: &BTreeSet<Rank>,
        out: &mut Outbox,
    ) {
        // Frames of the new view that arrived while this member waited for the cut's payloads.
        for (from, msg) in early {
            self.self_queue.push_back((from, msg));
        }
        self.me = me;
        if joining {
            self.delivered_count = proposal.start_position;
        }
        let view = proposal.view.clone();
        info!(
            "member {}: installed view {} = [{}] at position {}",
            self.me, view.id, view, proposal.start_position
        );
        self.epoch = Some(Epoch::new(view.clone(), me));
        self.contested_at_tick = None;
        self.heard_again.clear();
        // Only first-hand suspicions outlive a view (announced again in `after_install`): one this member
        // was told is told again by its accuser if the accuser is still in the group, and is dropped if
        // the accuser was excluded, so a suspicion the proposal did not weigh cannot ask for view changes
        // for ever.
        self.detected.retain(|m| view.contains(*m));
        let detected = self.detected.clone();
        self.suspects.retain(|m| detected.contains(m));
        self.leaving.retain(|m| view.contains(*m));
        // A join request stands only while the view it asks against would take it (see
        // `on_join_request`): not once the view admitted a life of that rank, nor while the listed
        // life is no longer suspected (the suspicion was dropped above, say its accuser crashed).
        // Otherwise a stale request asks for a view change at every install, for ever; the joiner
        // asks again anyway, every view-change timeout.
        let suspects = &self.suspects;
        self.joining.retain(|rank, _| {
            view.member(*rank)
                .map_or(true, |m| !view.admits(m) && suspects.contains(&m))
        });
        self.phase = Phase::Member;
        self.view = Some(view.clone());
        self.ack_dirty = false;
        // A joiner learns its position before its first view, so its driver can report the join point
        // (`STATE`) before anything else.
        if joining {
            out.push(Output::Joined {
                position: proposal.start_position,
            });
        }
        out.push(Output::ViewInstalled(view.clone()));
        for rank in recipients {
            self.send(
                out,
                *rank,
                Message::Decide {
                    proposal: Box::new(proposal.clone()),
                },
            );
        }
    }

    /// Ends this member's participation: nothing is delivered or sent from here on.
    pub(super) fn become_inert(&mut self, phase: Phase, view_id: ViewId, out: &mut Outbox) {
        info!(
            "member {}: {} by view {}",
            self.me,
            if phase == Phase::Left { "left" } else { "excluded" },
            view_id
        );
        self.phase = phase;
        self.epoch = None;
        self.proposer = None;
        self.backlog.clear();
        out.push(if phase == Phase::Left {
            Output::Left
        } else {
            Output::Excluded { view: view_id }
        });
    }
}
