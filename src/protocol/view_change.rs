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
//! ([`crate::types::View::is_quorum`]). Any two quorums of one view intersect, so two sides of a split group can
//! never both decide. The cost: a view of two can only lose its higher rank; a group that loses half or
//! more of a view at once (without its lowest rank) stops.
//!
//! # Invariants
//! - `phase == Changing` exactly when this member promised a ballot for the current instance;
//! - a member in `Changing` sends no acknowledgement and no data in the current view;
//! - installing view `n + 1` happens once, only from view `n`, and leaves `delivered_count` equal to the
//!   proposal's `start_position`.

use std::collections::{BTreeMap, BTreeSet};

use log::{debug, info};

use super::{Node, Outbox, Phase};
use crate::message::{Ballot, Message, Proposal, Report};
use crate::types::{MemberId, Rank, ViewId};

/// The acceptor side of the current instance.
#[derive(Debug, Default, Clone, Hash)]
pub(super) struct AcceptorState {
    /// The highest ballot promised (default = none).
    pub promised: Ballot,
    /// The highest-ballot proposal accepted.
    pub accepted: Option<(Ballot, Box<Proposal>)>,
    /// When this member promised (for suspecting a silent proposer).
    pub promised_at_tick: u64,
}

/// A promise as the proposer keeps it.
#[derive(Debug, Clone, Hash)]
pub(super) struct Promised {
    pub(super) accepted: Option<(Ballot, Box<Proposal>)>,
    pub(super) report: Box<Report>,
}

/// The proposer side, while this member runs a ballot.
#[derive(Debug, Clone, Hash)]
pub(super) struct Proposer {
    pub ballot: Ballot,
    /// The last sign that the ballot is moving (a promise, a payload chunk, a transfer's progress).
    pub progress_at_tick: u64,
    /// When this proposer last told the promisers it is still at work.
    pub keepalive_at_tick: u64,
    pub(super) promises: BTreeMap<Rank, Promised>,
    /// The value chosen; `Accept`s go out once this proposer holds every payload it carries.
    pub proposal: Option<Proposal>,
    /// The value's payloads are gathered and the `Accept`s sent.
    pub accepts_sent: bool,
    /// How many times this proposer asked for the payloads it lacks (0: not yet), and when it last
    /// did: each view-change timeout it asks again, the next member that reported each one.
    pub(super) fetch_rounds: usize,
    pub(super) fetched_at_tick: u64,
    pub(super) accepted_by: BTreeSet<Rank>,
}

impl Proposer {
    /// The members that promised this ballot.
    pub fn responders(&self) -> Vec<Rank> {
        self.promises.keys().copied().collect()
    }
}

/// A decided next view this member must install but whose payloads it does not all hold yet.
#[derive(Debug, Clone, Hash)]
pub(super) struct PendingDecision {
    pub proposal: Proposal,
    /// When it was last asked for the missing payloads.
    pub asked_at_tick: u64,
    /// How many times it asked (the next time it asks the next member of the new view).
    pub attempts: usize,
}

impl Node {
    /// The rank that should run the next view change, as this member sees it.
    pub(super) fn coordinator(&self) -> Option<Rank> {
        let view = self.view.as_ref()?;
        view.members.iter().find(|m| !self.suspects.contains(m)).map(|m| m.rank)
    }

    /// True if something asks for a new view: a suspected or leaving member, or a rank asking to rejoin.
    pub(super) fn change_wanted(&self) -> bool {
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
            progress_at_tick: self.now_ticks,
            keepalive_at_tick: self.now_ticks,
            promises: BTreeMap::new(),
            proposal: None,
            accepts_sent: false,
            fetch_rounds: 0,
            fetched_at_tick: 0,
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
    pub(super) fn reject_if_outbid(&mut self, from: Rank, view_id: ViewId, ballot: Ballot, out: &mut Outbox) -> bool {
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
    pub(super) fn report(&self) -> Report {
        let epoch = self.epoch.as_ref().expect("a member has an epoch");
        let in_view = |m: &&MemberId| epoch.view.contains(**m);
        Report {
            delivered_count: self.delivered_count,
            last_delivered: epoch.last_delivered(),
            held: self.holdings(),
            // First-hand only: a suspicion this member was told is in its accuser's own report, and
            // counts there only if the accuser itself is not suspected (`weigh_suspicions`).
            suspects: self.detected.iter().filter(in_view).map(|m| m.rank).collect(),
            leaving: self.leaving.iter().filter(in_view).map(|m| m.rank).collect(),
            joining: self.joining.iter().map(|(rank, process)| (*rank, *process)).collect(),
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
        proposer.progress_at_tick = self.now_ticks;
        self.try_propose(out);
    }

    /// A decision waiting for payloads asks again, each view-change timeout, the next member of the new
    /// view (the one asked first may have died before it answered).
    pub(super) fn pending_decision_timer(&mut self, out: &mut Outbox) {
        let timeout = self.config.view_change_timeout_ticks.max(1);
        let now = self.now_ticks;
        let Some(pending) = self.pending_decision.as_mut() else {
            return;
        };
        if now.saturating_sub(pending.asked_at_tick) < timeout {
            return;
        }
        pending.asked_at_tick = now;
        pending.attempts += 1;
        let me = self.me.rank;
        let sources: Vec<Rank> = pending.proposal.view.ranks().filter(|r| *r != me).collect();
        if sources.is_empty() {
            return;
        }
        let source = sources[pending.attempts % sources.len()];
        let carried = pending.proposal.carried.clone();
        let missing = self.missing_payloads(&carried);
        let Some(view) = self.view.as_ref().map(|v| v.id) else {
            return;
        };
        self.fetch(out, view, missing, source);
    }

    /// Tick-driven timeouts of the view change.
    pub(super) fn view_change_timers(&mut self, out: &mut Outbox) {
        let timeout = self.config.view_change_timeout_ticks.max(1);
        self.pending_decision_timer(out);
        if let Some(proposer) = &self.proposer {
            let waited = self.now_ticks.saturating_sub(proposer.progress_at_tick);
            if proposer.proposal.is_none() {
                self.try_propose(out);
            } else if !proposer.accepts_sent {
                self.accept_when_gathered(out); // asks again if the last request went unanswered
            }
            if waited >= 2 * timeout {
                // Nothing moved in two timeouts: retry with a higher ballot (a quorum may have come back).
                // A cut whose payloads are still moving counts as moving.
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
