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
use super::transfer;
use super::{Node, Outbox, Output, Phase};
use crate::message::{Ballot, Message, MessageRef, Multicast, Proposal, Report};
use crate::types::{Incarnation, MemberId, ProcessId, Rank, Stamp, View, ViewId};

/// The acceptor side of the current instance.
#[derive(Debug, Default, Clone)]
pub(super) struct AcceptorState {
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
    /// The last sign that the ballot is moving (a promise, a payload chunk, a transfer's progress).
    pub progress_at_tick: u64,
    /// When this proposer last told the promisers it is still at work.
    pub keepalive_at_tick: u64,
    promises: BTreeMap<Rank, Promised>,
    /// The value chosen; `Accept`s go out once this proposer holds every payload it carries.
    pub proposal: Option<Proposal>,
    /// The value's payloads are gathered and the `Accept`s sent.
    pub accepts_sent: bool,
    /// How many times this proposer asked for the payloads it lacks (0: not yet), and when it last
    /// did: each view-change timeout it asks again, the next member that reported each one.
    fetch_rounds: usize,
    fetched_at_tick: u64,
    accepted_by: BTreeSet<Rank>,
}

impl Proposer {
    /// The members that promised this ballot.
    pub fn responders(&self) -> Vec<Rank> {
        self.promises.keys().copied().collect()
    }
}

/// A decided next view this member must install but whose payloads it does not all hold yet.
#[derive(Debug, Clone)]
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

    /// Phase 2a, once enough promises are in: choose the value, then gather its payloads.
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
        let mine: BTreeSet<Rank> = self.detected.iter().map(|m| m.rank).collect();
        let suspected = weigh_suspicions(mine, &proposer.promises);
        let responders: Vec<Rank> = proposer.promises.keys().copied().collect();
        let all_in = view
            .ranks()
            .filter(|r| !suspected.contains(r))
            .all(|r| responders.contains(&r));
        let timed_out = now.saturating_sub(proposer.started_at_tick) >= timeout;
        // A change wanted only for leaves or joins waits for every member nobody suspects: going on
        // without a slow one would exclude a healthy member that nobody asked to exclude.
        let suspicion_wanted = view.ranks().any(|r| suspected.contains(&r));
        if !(all_in || (timed_out && suspicion_wanted)) || !view.is_quorum(&responders) {
            return;
        }
        let proposal = match proposer
            .promises
            .values()
            .filter_map(|p| p.accepted.as_ref())
            .max_by_key(|(b, _)| *b)
        {
            Some((_, accepted)) => (**accepted).clone(),
            None => {
                let fresh = fresh_proposal(
                    &view,
                    &proposer.promises,
                    &suspected,
                    &self.leaving_ranks(),
                    &self.joining,
                );
                let Some(fresh) = fresh else {
                    debug!(
                        "member {}: no member of view {} would stay; waiting for more answers",
                        self.me, view.id
                    );
                    return;
                };
                fresh
            }
        };
        info!(
            "member {}: proposing view {} = [{}] carrying {} messages",
            self.me,
            proposal.view.id,
            proposal.view,
            proposal.carried.len()
        );
        if let Some(proposer) = self.proposer.as_mut() {
            proposer.proposal = Some(proposal);
        }
        self.accept_when_gathered(out);
    }

    /// Sends the `Accept`s once this proposer holds every payload the value carries (asking the
    /// promisers that reported the ones it lacks first), each preceded by the payloads that acceptor
    /// lacks, on the same FIFO connection.
    pub(super) fn accept_when_gathered(&mut self, out: &mut Outbox) {
        let Some(view) = self.view.as_ref().map(|v| v.id) else {
            return;
        };
        let Some(proposer) = self.proposer.as_ref() else {
            return;
        };
        let Some(proposal) = proposer.proposal.clone() else {
            return;
        };
        if proposer.accepts_sent {
            return;
        }
        let missing = self.missing_payloads(&proposal.carried);
        if !missing.is_empty() {
            // Ask, for each payload, a member that reported it, unsuspected ones first (a suspected one
            // may still be alive, and the only one to have it); asking again asks every member that
            // reported it, so one that died before it answered does not stall the ballot (a payload
            // that arrives twice is kept once).
            let round = proposer.fetch_rounds;
            let suspected = |rank: &Rank| self.suspects.iter().any(|m| m.rank == *rank);
            let mut reports: Vec<(Rank, BTreeSet<MessageRef>)> = proposer
                .promises
                .iter()
                .filter(|(rank, _)| **rank != self.me.rank)
                .map(|(rank, p)| (*rank, p.report.held.iter().copied().collect()))
                .collect();
            reports.sort_by_key(|(rank, _)| (suspected(rank), *rank));
            let timeout = self.config.view_change_timeout_ticks.max(1);
            let asked_recently = self.now_ticks.saturating_sub(proposer.fetched_at_tick) < timeout;
            if proposer.fetch_rounds > 0 && asked_recently {
                return; // asked already: the chunks are on their way
            }
            // Asked a timeout ago, and every member that reported some payload still missing is
            // suspected (it died after promising; a suspected member still alive would have answered).
            let ungatherable = round > 0
                && missing.iter().any(|msg| {
                    reports
                        .iter()
                        .filter(|(_, held)| held.contains(msg))
                        .all(|(rank, _)| suspected(rank))
                });
            if ungatherable {
                // This value may never be gathered. Start over: the next ballot's reports no longer
                // name what only a dead member held, and nobody delivered that (delivery needs every
                // member's acknowledgement). A value a quorum accepted is not lost so: a live member of
                // any quorum holds its payloads and reports them.
                info!(
                    "member {}: payloads of ballot {}.{} held only by suspected members; starting over",
                    self.me, proposer.ballot.round, proposer.ballot.proposer
                );
                self.proposer = None;
                self.maybe_start_change(out);
                return;
            }
            let by_source = transfer::sources_of(&reports, &missing, round);
            if let Some(proposer) = self.proposer.as_mut() {
                proposer.fetch_rounds += 1;
                proposer.fetched_at_tick = self.now_ticks;
            }
            for (source, wanted) in by_source {
                self.fetch(out, view, wanted, source);
            }
            return;
        }
        let ballot = proposer.ballot;
        let plan: Vec<(Rank, Vec<MessageRef>)> = proposer
            .promises
            .iter()
            .map(|(rank, promise)| {
                let has: BTreeSet<&MessageRef> = promise.report.held.iter().collect();
                let last = promise.report.last_delivered;
                let lacking = proposal
                    .carried
                    .iter()
                    .filter(|r| last.map_or(true, |l| r.stamp() > l) && !has.contains(r))
                    .copied()
                    .collect();
                (*rank, lacking)
            })
            .collect();
        if let Some(proposer) = self.proposer.as_mut() {
            proposer.accepts_sent = true;
        }
        for (rank, lacking) in plan {
            if rank != self.me.rank {
                let msgs: Vec<Multicast> = lacking.iter().filter_map(|r| self.payload_of(view, r)).collect();
                self.send_payloads(out, rank, view, msgs);
            }
            self.send(
                out,
                rank,
                Message::Accept {
                    view,
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
        let mut cut: BTreeMap<Stamp, Multicast> = BTreeMap::new();
        if let (false, Some(old)) = (joining, &old_view) {
            let last = self.epoch.as_ref().and_then(|e| e.last_delivered());
            let to_deliver: Vec<&MessageRef> = proposal
                .carried
                .iter()
                .filter(|m| last.map_or(true, |l| m.stamp() > l))
                .collect();
            let payloads: Option<Vec<Multicast>> = to_deliver.iter().map(|r| self.payload_of(old.id, r)).collect();
            let reaches = self.delivered_count + to_deliver.len() as u64 == proposal.start_position;
            if let (true, Some(msgs)) = (reaches, payloads) {
                for msg in msgs {
                    self.deliver(msg.clone(), out);
                    cut.insert(msg.stamp(), msg);
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
        // Only first-hand suspicions outlive a view (announced again in `after_install`): one this member
        // was told is told again by its accuser if the accuser is still in the group, and is dropped if
        // the accuser was excluded, so a suspicion the proposal did not weigh cannot ask for view changes
        // for ever.
        self.detected.retain(|m| view.contains(*m));
        let detected = self.detected.clone();
        self.suspects.retain(|m| detected.contains(m));
        self.leaving.retain(|m| view.contains(*m));
        self.joining
            .retain(|rank, _| view.member(*rank).map_or(true, |m| m.incarnation.0 != view.id.0));
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

    /// A decision waiting for payloads asks again, each view-change timeout, the next member of the new
    /// view (the one asked first may have died before it answered).
    fn pending_decision_timer(&mut self, out: &mut Outbox) {
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

/// Whom a proposal treats as suspected: what the proposer's own detector suspects, then what each
/// promiser's detector suspects (reports carry first-hand suspicions only), a promiser's counting only
/// if it is not itself suspected by then, weighed in rank order. With one link cut, each end suspects
/// the other: taking both would exclude both ends of one broken link, and a healthy member with them.
fn weigh_suspicions(mine: BTreeSet<Rank>, promises: &BTreeMap<Rank, Promised>) -> BTreeSet<Rank> {
    let mut suspected = mine;
    for (rank, promise) in promises {
        if !suspected.contains(rank) {
            suspected.extend(promise.report.suspects.iter().copied());
        }
    }
    suspected
}

/// A fresh proposal from a quorum's promises: the next view is every responder nobody suspects and that
/// is not leaving, plus a new life for each rank asking to rejoin whose old life is gone; it carries the
/// union of the responders' held messages. `None` when no member of the view would stay (a view of
/// joiners alone, or an empty one, would lose the group's history), unless every member answered and
/// leaves: a dissolving group ends in the empty view.
fn fresh_proposal(
    view: &View,
    promises: &BTreeMap<Rank, Promised>,
    suspected: &BTreeSet<Rank>,
    my_leaving: &BTreeSet<Rank>,
    my_joining: &BTreeMap<Rank, ProcessId>,
) -> Option<Proposal> {
    let next_id = ViewId(view.id.0 + 1);
    let mut leaving = my_leaving.clone();
    let mut joining = my_joining.clone();
    let mut carried: BTreeSet<MessageRef> = BTreeSet::new();
    let mut lamport = 0;
    for promise in promises.values() {
        leaving.extend(promise.report.leaving.iter().copied());
        for (rank, process) in &promise.report.joining {
            // Two processes asking for one rank: the larger identity wins, the same at every proposer.
            let entry = joining.entry(*rank).or_insert(*process);
            *entry = (*entry).max(*process);
        }
        lamport = lamport.max(promise.report.lamport);
        carried.extend(promise.report.held.iter().copied());
    }
    let mut members: Vec<MemberId> = view
        .members
        .iter()
        .filter(|m| promises.contains_key(&m.rank) && !suspected.contains(&m.rank) && !leaving.contains(&m.rank))
        .copied()
        .collect();
    if members.is_empty() {
        // Only a group that is dissolving ends in an empty view: every member of the view answered and
        // leaves (a lone member leaving, or everyone at once). Otherwise no member would stay and the
        // group's history would be lost, or a healthy member excluded.
        let dissolving = view
            .members
            .iter()
            .all(|m| promises.contains_key(&m.rank) && leaving.contains(&m.rank));
        if !dissolving {
            return None;
        }
        joining.clear();
    }
    for (rank, process) in joining {
        if members.iter().all(|m| m.rank != rank) {
            members.push(MemberId {
                rank,
                incarnation: Incarnation(next_id.0),
                process,
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
            let after_last = |m: &&MessageRef| p.report.last_delivered.map_or(true, |l| m.stamp() > l);
            p.report.delivered_count + carried.iter().filter(after_last).count() as u64
        })
        .unwrap_or(0);
    lamport = carried.iter().map(|m| m.lamport).fold(lamport, u64::max);
    // Sorted by stamp: `MessageRef`'s order is (lamport, origin, seq), which is the stamp order.
    Some(Proposal {
        view: View { id: next_id, members },
        carried: carried.into_iter().collect(),
        start_position,
        lamport,
    })
}
