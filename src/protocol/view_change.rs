//! View changes: one consensus instance per view, deciding the next view and the cut.
//!
//! Replacing view `n` is single-decree Paxos among the members of view `n` (the acceptors). The value
//! decided is a [`Proposal`]: the members of view `n + 1` (with the life of each rank) and `carried`,
//! the messages of view `n` that every member of view `n + 1` delivers when it installs it.
//!
//! ```text
//!  proposer (lowest rank it does not suspect)          acceptors (members of view n)
//!     Prepare(n, b)  ─────────────────────────────►  promise b; stop acknowledging and multicasting
//!                    ◄─────────────────────────────  Promise(b, accepted?, report: held msgs, suspects…)
//!     (all unsuspected answered, or timeout; a quorum of view n)
//!     value = highest accepted proposal, else a fresh one from the reports
//!     Accept(n, b, value) ─────────────────────────►  accept unless a higher ballot was promised
//!                    ◄─────────────────────────────  Accepted(b)
//!     (a quorum of view n accepted: decided)
//!     Decide(value) ──► everyone in view n and n+1; every member that installs relays it the same way
//! ```
//!
//! # Why the cut is safe
//! A member that promised sends no acknowledgement in view `n` again. So a message anyone delivers in
//! view `n` was acknowledged by every member *before* that member promised: every promiser holds it
//! (undelivered, so in its report) or has delivered it. A fresh proposal carries the union of the
//! promisers' held messages, so it carries every message some member may have delivered and not all
//! have. Paxos makes the value unique: a later ballot that finds an accepted value re-proposes it.
//!
//! Promisers report their own sent messages too (a member holds its own message from the moment it
//! multicasts it), and a member does not multicast while it has promised: no message of view `n` from
//! a member of view `n + 1` can be missing from the cut.
//!
//! # Quorums
//! A quorum of a view is more than half its members, or exactly half including its lowest rank
//! ([`View::is_quorum`]). Any two quorums of one view intersect, so two sides of a split group can
//! never both decide. The cost: a view of two can only lose its higher rank; a group that loses half or
//! more of a view at once (without its lowest rank) stops.
//!
//! # Invariants
//! - `phase == Changing` exactly when this member promised a ballot for the current instance;
//! - a member in `Changing` sends no acknowledgement and no data in the current view;
//! - installing view `n + 1` happens once, only from view `n`, and leaves `delivered_count` equal to the
//!   proposal's `start_position`.

use std::collections::{BTreeMap, BTreeSet};

use log::{debug, info, warn};

use super::holdback::Epoch;
use super::{Node, Outbox, Output, Phase};
use crate::message::{Ballot, Message, Multicast, Proposal, Report};
use crate::types::{Incarnation, MemberId, Rank, Stamp, View, ViewId};

/// The acceptor side of the current instance.
#[derive(Debug, Default, Clone)]
pub(super) struct Acceptor {
    /// The highest ballot promised (default = none).
    pub promised: Ballot,
    /// The highest-ballot proposal accepted.
    pub accepted: Option<(Ballot, Box<Proposal>)>,
    /// When this member promised (for suspecting a silent proposer).
    pub promised_at_tick: u64,
}

/// A promise as the proposer keeps it.
#[derive(Debug, Clone)]
pub(super) struct Promised {
    accepted: Option<(Ballot, Box<Proposal>)>,
    report: Box<Report>,
}

/// The proposer side, while this member runs a ballot.
#[derive(Debug, Clone)]
pub(super) struct Proposer {
    pub ballot: Ballot,
    pub started_at_tick: u64,
    promises: BTreeMap<Rank, Promised>,
    proposal: Option<Proposal>,
    accepted_by: BTreeSet<Rank>,
}

impl Node {
    /// The rank that should run the next view change, as this member sees it.
    pub(super) fn coordinator(&self) -> Option<Rank> {
        let view = self.view.as_ref()?;
        view.members.iter().find(|m| !self.suspects.contains(m)).map(|m| m.rank)
    }

    /// True if something asks for a new view: a suspected or leaving member, or a rank asking to rejoin.
    fn change_wanted(&self) -> bool {
        let Some(view) = &self.view else { return false };
        self.suspects.iter().any(|m| view.contains(*m))
            || self.leaving.iter().any(|m| view.contains(*m))
            || !self.joining.is_empty()
    }

    /// Starts a ballot if a change is wanted, this member is the coordinator and none is running.
    pub(super) fn maybe_start_change(&mut self, out: &mut Outbox) {
        if !matches!(self.phase, Phase::Member | Phase::Changing) || self.proposer.is_some() {
            return;
        }
        if !self.change_wanted() || self.coordinator() != Some(self.me.rank) {
            return;
        }
        self.start_ballot(out);
    }

    /// Phase 1a with a ballot higher than any seen.
    pub(super) fn start_ballot(&mut self, out: &mut Outbox) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let round = self.highest_round_seen.max(self.acceptor.promised.round) + 1;
        self.highest_round_seen = round;
        let ballot = Ballot {
            round,
            proposer: self.me.rank,
        };
        info!(
            "member {}: starting view change from view {} with ballot {}.{}",
            self.me, view.id, round, self.me.rank
        );
        self.proposer = Some(Proposer {
            ballot,
            started_at_tick: self.now_ticks,
            promises: BTreeMap::new(),
            proposal: None,
            accepted_by: BTreeSet::new(),
        });
        self.send_to_view(out, Message::Prepare { view: view.id, ballot });
    }

    /// Phase 1b.
    pub(super) fn on_prepare(&mut self, from: Rank, view_id: ViewId, ballot: Ballot, out: &mut Outbox) {
        let Some(view) = &self.view else { return };
        if view_id < view.id {
            // The sender is behind: the decision that installed this view tells it what happened
            // (including, if it is not in it, that it was excluded).
            if let Some(decision) = &self.last_decision {
                self.send(
                    out,
                    from,
                    Message::Decide {
                        proposal: Box::new(decision.clone()),
                    },
                );
            }
            return;
        }
        if view_id > view.id || view.index_of(from).is_none() {
            debug!(
                "member {}: prepare for view {} from {} ignored (at view {})",
                self.me, view_id, from, view.id
            );
            return;
        }
        if self.reject_if_outbid(from, view_id, ballot, out) {
            return;
        }
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
        if ballot > self.acceptor.promised {
            self.acceptor.promised = ballot;
            self.acceptor.promised_at_tick = self.now_ticks;
        }
        self.phase = Phase::Changing;
        let report = Box::new(self.report());
        let accepted = self.acceptor.accepted.clone();
        self.send(
            out,
            from,
            Message::Promise {
                view: view_id,
                ballot,
                accepted,
                report,
            },
        );
    }

    /// Tells the proposer of `ballot` that a higher one was already promised; true if so.
    fn reject_if_outbid(&mut self, from: Rank, view_id: ViewId, ballot: Ballot, out: &mut Outbox) -> bool {
        let promised = self.acceptor.promised;
        if ballot >= promised {
            return false;
        }
        self.send(
            out,
            from,
            Message::Reject {
                view: view_id,
                ballot,
                promised,
            },
        );
        true
    }

    /// What this member holds and knows, for a proposer.
    fn report(&self) -> Report {
        let epoch = self.epoch.as_ref().expect("a member has an epoch");
        let in_view = |m: &&MemberId| epoch.view.contains(**m);
        Report {
            delivered_count: self.delivered_count,
            last_delivered: epoch.last_delivered(),
            held: epoch.held().cloned().collect(),
            suspects: self.suspects.iter().filter(in_view).map(|m| m.rank).collect(),
            leaving: self.leaving.iter().filter(in_view).map(|m| m.rank).collect(),
            joining: self.joining.iter().copied().collect(),
            lamport: self.lamport,
        }
    }

    /// A promise reached the proposer.
    pub(super) fn on_promise(
        &mut self,
        from: Rank,
        view_id: ViewId,
        ballot: Ballot,
        accepted: Option<(Ballot, Box<Proposal>)>,
        report: Box<Report>,
        out: &mut Outbox,
    ) {
        let current = self.view.as_ref().map(|v| v.id);
        let Some(proposer) = self.proposer.as_mut() else {
            return;
        };
        if proposer.ballot != ballot || current != Some(view_id) {
            return;
        }
        proposer.promises.insert(from, Promised { accepted, report });
        self.try_propose(out);
    }

    /// Phase 2a, once enough promises are in.
    pub(super) fn try_propose(&mut self, out: &mut Outbox) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let timeout = self.config.view_change_timeout_ticks;
        let now = self.now_ticks;
        let Some(proposer) = self.proposer.as_ref() else {
            return;
        };
        if proposer.proposal.is_some() {
            return;
        }
        let mut suspected: BTreeSet<Rank> = self.suspects.iter().map(|m| m.rank).collect();
        for promise in proposer.promises.values() {
            suspected.extend(promise.report.suspects.iter().copied());
        }
        let responders: Vec<Rank> = proposer.promises.keys().copied().collect();
        let all_in = view
            .ranks()
            .filter(|r| !suspected.contains(r))
            .all(|r| responders.contains(&r));
        let timed_out = now.saturating_sub(proposer.started_at_tick) >= timeout;
        if !(all_in || timed_out) || !view.is_quorum(&responders) {
            return;
        }
        let proposal = match proposer
            .promises
            .values()
            .filter_map(|p| p.accepted.as_ref())
            .max_by_key(|(b, _)| *b)
        {
            Some((_, accepted)) => (**accepted).clone(),
            None => fresh_proposal(
                &view,
                &proposer.promises,
                &suspected,
                &self.leaving_ranks(),
                &self.joining,
            ),
        };
        let ballot = proposer.ballot;
        info!(
            "member {}: proposing view {} = [{}] carrying {} messages",
            self.me,
            proposal.view.id,
            proposal.view,
            proposal.carried.len()
        );
        if let Some(proposer) = self.proposer.as_mut() {
            proposer.proposal = Some(proposal.clone());
        }
        for rank in responders {
            self.send(
                out,
                rank,
                Message::Accept {
                    view: view.id,
                    ballot,
                    proposal: Box::new(proposal.clone()),
                },
            );
        }
    }

    fn leaving_ranks(&self) -> BTreeSet<Rank> {
        self.leaving.iter().map(|m| m.rank).collect()
    }

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

    /// A decided next view arrived.
    pub(super) fn on_decide(&mut self, proposal: Proposal, out: &mut Outbox) {
        match self.phase {
            Phase::Joining => {
                let listed = proposal.view.member(self.me.rank);
                if listed.is_some_and(|m| m.incarnation == Incarnation(proposal.view.id.0)) {
                    self.install(proposal, out);
                }
            }
            Phase::Member | Phase::Changing => {
                let current = self.view.as_ref().map_or(ViewId(0), |v| v.id);
                if proposal.view.id.0 == current.0 + 1 {
                    self.install(proposal, out);
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
        // Relay first: on every FIFO connection the decision then precedes anything this member sends
        // in the new view, so nobody sees a new-view frame before the view itself.
        let mut recipients: BTreeSet<Rank> = proposal.view.ranks().collect();
        if let Some(old) = &old_view {
            recipients.extend(old.ranks());
        }
        recipients.remove(&self.me.rank);

        let listed = proposal.view.member(self.me.rank).filter(|m| joining || *m == self.me);
        if !joining {
            let last = self.epoch.as_ref().and_then(|e| e.last_delivered());
            let to_deliver: Vec<&Multicast> = proposal
                .carried
                .iter()
                .filter(|m| last.map_or(true, |l| m.stamp() > l))
                .collect();
            let reaches = self.delivered_count + to_deliver.len() as u64 == proposal.start_position;
            if reaches {
                for msg in to_deliver {
                    self.deliver(msg.clone(), out);
                }
            } else if listed.is_some() {
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
        self.lamport = self.lamport.max(proposal.lamport);
        self.acceptor = Acceptor::default();
        self.proposer = None;

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
        self.suspects.retain(|m| view.contains(*m));
        self.detected.retain(|m| view.contains(*m));
        self.leaving.retain(|m| view.contains(*m));
        self.joining
            .retain(|r| view.member(*r).map_or(true, |m| m.incarnation.0 != view.id.0));
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
        for rank in &recipients {
            self.send(
                out,
                *rank,
                Message::Decide {
                    proposal: Box::new(proposal.clone()),
                },
            );
        }
        self.last_decision = Some(proposal);
        self.after_install(out);
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

    /// Tick-driven timeouts of the view change.
    pub(super) fn view_change_timers(&mut self, out: &mut Outbox) {
        let timeout = self.config.view_change_timeout_ticks.max(1);
        if let Some(proposer) = &self.proposer {
            let waited = self.now_ticks.saturating_sub(proposer.started_at_tick);
            if proposer.proposal.is_none() {
                self.try_propose(out);
            }
            if waited >= 2 * timeout {
                // No decision in two timeouts: retry with a higher ballot (a quorum may have come back).
                self.proposer = None;
                self.maybe_start_change(out);
            }
            return;
        }
        if self.phase == Phase::Changing && self.now_ticks.saturating_sub(self.acceptor.promised_at_tick) >= 3 * timeout
        {
            // The proposer went silent after this member promised: suspect it so someone else takes over.
            let proposer_rank = self.acceptor.promised.proposer;
            self.acceptor.promised_at_tick = self.now_ticks;
            if proposer_rank != self.me.rank {
                if let Some(member) = self.view.as_ref().and_then(|v| v.member(proposer_rank)) {
                    info!(
                        "member {}: proposer {} silent during the view change; suspecting it",
                        self.me, member
                    );
                    self.suspect(member, true, out);
                }
            }
        }
        self.maybe_start_change(out);
    }
}

/// A fresh proposal from a quorum's promises: the next view is every responder nobody suspects and that
/// is not leaving, plus a new life for each rank asking to rejoin whose old life is gone; it carries the
/// union of the responders' held messages.
fn fresh_proposal(
    view: &View,
    promises: &BTreeMap<Rank, Promised>,
    suspected: &BTreeSet<Rank>,
    my_leaving: &BTreeSet<Rank>,
    my_joining: &BTreeSet<Rank>,
) -> Proposal {
    let next_id = ViewId(view.id.0 + 1);
    let mut leaving = my_leaving.clone();
    let mut joining = my_joining.clone();
    let mut carried: BTreeMap<Stamp, Multicast> = BTreeMap::new();
    let mut lamport = 0;
    for promise in promises.values() {
        leaving.extend(promise.report.leaving.iter().copied());
        joining.extend(promise.report.joining.iter().copied());
        lamport = lamport.max(promise.report.lamport);
        for msg in &promise.report.held {
            carried.entry(msg.stamp()).or_insert_with(|| msg.clone());
        }
    }
    let mut members: Vec<MemberId> = view
        .members
        .iter()
        .filter(|m| promises.contains_key(&m.rank) && !suspected.contains(&m.rank) && !leaving.contains(&m.rank))
        .copied()
        .collect();
    for rank in joining {
        if members.iter().all(|m| m.rank != rank) {
            members.push(MemberId {
                rank,
                incarnation: Incarnation(next_id.0),
            });
        }
    }
    members.sort();
    // Every responder reaches the same position once it delivers what is carried (see the module docs);
    // the lowest responder's count stands for all, and each installer checks its own against it.
    let start_position = promises
        .values()
        .next()
        .map(|p| {
            let after_last = |m: &&Multicast| p.report.last_delivered.map_or(true, |l| m.stamp() > l);
            p.report.delivered_count + carried.values().filter(after_last).count() as u64
        })
        .unwrap_or(0);
    lamport = carried.values().map(|m| m.lamport).fold(lamport, u64::max);
    Proposal {
        view: View { id: next_id, members },
        carried: carried.into_values().collect(),
        start_position,
        lamport,
    }
}
