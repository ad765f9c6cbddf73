//! The proposer's side of a view change once a quorum promised: the proposal (a fresh one from the
//! promises, or the highest one already accepted), gathering the payloads of its cut, and the Accept.
//! See [`super::view_change`] for the whole algorithm and its invariants.

use std::collections::{BTreeMap, BTreeSet};

use log::{debug, info};

use super::transfer;
use super::view_change::Promised;
use super::{Node, Outbox};
use crate::message::{Message, MessageRef, Multicast, Proposal};
use crate::types::{Incarnation, MemberId, ProcessId, Rank, View, ViewId};

impl Node {
    /// Phase 2a, once enough promises are in: choose the value, then gather its payloads.
    pub(super) fn try_propose(&mut self, out: &mut Outbox) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let Some(proposer) = self.proposer.as_ref() else {
            return;
        };
        if proposer.proposal.is_some() {
            return;
        }
        let mine: BTreeSet<Rank> = self.detected.iter().map(|m| m.rank).collect();
        let responders: Vec<Rank> = proposer.promises.keys().copied().collect();
        let all_in = view
            .ranks()
            .filter(|r| !mine.contains(r))
            .all(|r| responders.contains(&r));
        let suspected = weigh_suspicions(mine, &self.heard_again, &proposer.promises);
        // Every member this proposer's own detector does not suspect is waited for: going on without
        // a slow one would exclude a healthy member on the word of whichever accuser's promise came
        // first, while the accused may accuse the accuser back (a cut between them) or be heard
        // again (a cut that healed). One that is gone is suspected here within a failure timeout
        // (its connection closes, or the detector finds it silent), and is then not waited for.
        if !all_in || !view.is_quorum(&responders) {
            // Waiting on purpose: the promisers must not take this proposer for a silent one while
            // its own detector has yet to report a member that is gone.
            self.keep_promisers_waiting(out);
            return;
        }
        let accepted = highest_accepted(&proposer.promises);
        if accepted.is_none() && self.awaits_withdrawal(out) {
            return;
        }
        let Some(proposer) = self.proposer.as_ref() else {
            return;
        };
        let proposal = match accepted {
            Some(accepted) => accepted,
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
            self.gather(view, &missing, out);
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

    /// The proposal's cut lacks `missing` here: ask, for each payload, a member that reported it,
    /// unsuspected ones first (a suspected one may still be alive, and the only one to have it); asking
    /// again asks every member that reported it, so one that died before it answered does not stall the
    /// ballot (a payload that arrives twice is kept once).
    fn gather(&mut self, view: ViewId, missing: &[MessageRef], out: &mut Outbox) {
        let Some(proposer) = self.proposer.as_ref() else {
            return;
        };
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
        let by_source = transfer::sources_of(&reports, missing, round);
        if let Some(proposer) = self.proposer.as_mut() {
            proposer.fetch_rounds += 1;
            proposer.fetched_at_tick = self.now_ticks;
        }
        for (source, wanted) in by_source {
            self.fetch(out, view, wanted, source);
        }
    }

    /// True while a fresh proposal waits for accusations against members that answered this proposer
    /// to be withdrawn: a member that promised is reachable from here, so an accusation against it
    /// may be one made across a cut that has healed since, and its accuser, hearing it again,
    /// withdraws it and promises again ([`Node::withdraw_suspicion`]). The wait is one view-change
    /// timeout from the first such promise, once per view (later ballots of the view do not wait
    /// again: proposers that each waited in turn could outbid one another for ever); then the
    /// accusations still standing are weighed. While it waits, it tells its promisers every half
    /// timeout that it is at work, so that none takes it for a silent proposer.
    fn awaits_withdrawal(&mut self, out: &mut Outbox) -> bool {
        let now = self.now_ticks;
        let timeout = self.config.view_change_timeout_ticks.max(1);
        let Some(proposer) = self.proposer.as_ref() else {
            return false;
        };
        if !contested(&self.detected, &proposer.promises) {
            return false;
        }
        let since = *self.contested_at_tick.get_or_insert(now);
        if now.saturating_sub(since) >= timeout {
            return false;
        }
        debug!(
            "member {}: a member that promised is accused; waiting for the accusation to be withdrawn",
            self.me
        );
        self.keep_promisers_waiting(out);
        true
    }

    pub(super) fn leaving_ranks(&self) -> BTreeSet<Rank> {
        self.leaving.iter().map(|m| m.rank).collect()
    }
}

/// Whom a proposal treats as suspected: what the proposer's own detector suspects, then what each
/// promiser's detector suspects (reports carry first-hand suspicions only), a promiser's counting only
/// if it is not itself suspected by then, weighed in rank order. With one link cut, each end suspects
/// the other: taking both would exclude both ends of one broken link, and a healthy member with them.
/// Nor does the report of a promiser this proposer's detector found silent in this view and has heard
/// again since (`heard_again`) count: what it accuses was seen from the far side of a cut that has
/// healed, and it may have stopped (alone on its side) before it could hear anyone again to withdraw.
fn weigh_suspicions(
    mine: BTreeSet<Rank>,
    heard_again: &BTreeSet<Rank>,
    promises: &BTreeMap<Rank, Promised>,
) -> BTreeSet<Rank> {
    let mut suspected = mine;
    for (rank, promise) in promises {
        if !suspected.contains(rank) && !heard_again.contains(rank) {
            suspected.extend(promise.report.suspects.iter().copied());
        }
    }
    suspected
}

/// The proposal of the highest ballot some promiser accepted, which a proposer must propose again
/// (Paxos: a value a quorum may have accepted is never replaced).
fn highest_accepted(promises: &BTreeMap<Rank, Promised>) -> Option<Proposal> {
    promises
        .values()
        .filter_map(|p| p.accepted.as_ref())
        .max_by_key(|(b, _)| *b)
        .map(|(_, accepted)| (**accepted).clone())
}

/// True if some member that promised is accused by another promiser's report, and not by this
/// proposer's own detector (what it observes itself it weighs at once).
fn contested(mine: &BTreeSet<MemberId>, promises: &BTreeMap<Rank, Promised>) -> bool {
    promises.iter().any(|(accuser, promise)| {
        promise.report.suspects.iter().any(|accused| {
            accused != accuser && promises.contains_key(accused) && !mine.iter().any(|m| m.rank == *accused)
        })
    })
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
