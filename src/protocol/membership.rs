//! Who is in the group: suspicions and the quorum rule, a clean leave, join requests of restarted
//! processes, and the timers that start a view change ([`super::view_change`] runs it).

use log::{debug, info, warn};

use super::{Node, Outbox, Output, Phase};
use crate::message::{Ballot, Message};
use crate::types::{MemberId, ProcessId, Rank};

impl Node {
    /// Records a suspicion, this member's own or one it was told, and passes it on to every other
    /// member the first time: a suspicion a crashing member sent only partly still reaches every live
    /// member, so live members agree on whom they suspect and hence on who coordinates. A member never
    /// suspects itself (it would stop coordinating while the others wait for it). Without a quorum of
    /// unsuspected members left, this member cannot tell "they crashed" from "I am cut off", and stops.
    pub(super) fn suspect(&mut self, member: MemberId, first_hand: bool, out: &mut Outbox) {
        if member == self.me || !matches!(self.phase, Phase::Member | Phase::Changing) {
            return;
        }
        let Some(view) = self.view.clone() else { return };
        if !view.contains(member) {
            return;
        }
        let new_suspicion = self.suspects.insert(member);
        let new_detection = first_hand && self.detected.insert(member);
        if new_suspicion {
            info!(
                "member {}: suspects {}{}",
                self.me,
                member,
                if first_hand { "" } else { " (told)" }
            );
            self.send_to_others(
                out,
                Message::Suspect {
                    view: view.id,
                    rank: member.rank,
                },
            );
        }
        // Only this member's own observations count here: a suspicion it was told may come from a
        // member that is itself being excluded, and must not make a healthy majority stop.
        if new_detection && self.stop_without_quorum(out) {
            return;
        }
        if new_suspicion || new_detection {
            self.maybe_start_change(out);
        }
    }

    /// This member's detector hears `member` again: its first-hand suspicion of it is withdrawn. A
    /// suspicion already passed on stays with those told (their view change goes on), but this
    /// member's reports no longer carry it, and a promise it already made is made again with the
    /// report of now (the proposer keeps a promiser's latest), so a proposal weighs what is still
    /// observed (PROTOCOL.md §6): after a cut heals, the accusations made across it no longer
    /// exclude members that everyone hears again.
    pub(super) fn withdraw_suspicion(&mut self, member: MemberId, out: &mut Outbox) {
        if !self.detected.remove(&member) {
            return;
        }
        info!("member {}: hears {member} again: withdraws its suspicion", self.me);
        self.heard_again.insert(member.rank);
        let ballot = self.acceptor.promised;
        let Some(view) = self.view.as_ref().map(|v| v.id) else {
            return;
        };
        if self.phase != Phase::Changing || ballot == Ballot::default() {
            return;
        }
        let report = Box::new(self.report());
        let accepted = self.acceptor.accepted.clone();
        self.send(
            out,
            ballot.proposer,
            Message::Promise {
                view,
                ballot,
                accepted,
                report,
            },
        );
    }

    /// Stops this member if the lives its own detector suspects leave no quorum of its view: it cannot
    /// tell "they all crashed" from "I am cut off", and the second is the likely one. True if stopped.
    pub(super) fn stop_without_quorum(&mut self, out: &mut Outbox) -> bool {
        let Some(view) = self.view.clone() else { return false };
        let unsuspected: Vec<Rank> = view
            .members
            .iter()
            .filter(|m| !self.detected.contains(m))
            .map(|m| m.rank)
            .collect();
        if view.is_quorum(&unsuspected) {
            return false;
        }
        warn!(
            "member {}: no quorum of view {} left unsuspected; stopping to keep one history",
            self.me, view.id
        );
        self.become_inert(Phase::Excluded, view.id, out);
        true
    }

    pub(super) fn maybe_announce_leave(&mut self, out: &mut Outbox) {
        if !self.leave_requested || self.phase != Phase::Member || !self.backlog.is_empty() {
            return;
        }
        if self.epoch.as_ref().is_some_and(|e| e.own_undelivered() > 0) || self.leaving.contains(&self.me) {
            return;
        }
        let Some(view) = self.view.as_ref().map(|v| v.id) else {
            return;
        };
        info!("member {}: leaving", self.me);
        self.leaving.insert(self.me);
        self.send_to_others(out, Message::Leave { view });
        self.maybe_start_change(out);
    }

    pub(super) fn on_join_request(&mut self, rank: Rank, process: ProcessId, out: &mut Outbox) {
        let refuse = |node: &Node, reason: String| {
            debug!("member {}: join of rank {} refused: {}", node.me, rank, reason);
            Output::SendToJoiner {
                rank,
                msg: Message::JoinRefused { reason },
            }
        };
        let Some(view) = self
            .view
            .clone()
            .filter(|_| matches!(self.phase, Phase::Member | Phase::Changing))
        else {
            out.push(refuse(self, format!("member {} is not in a running group", self.me)));
            return;
        };
        if rank == self.me.rank || rank.0 == 0 {
            out.push(refuse(self, format!("rank {rank} cannot rejoin through itself")));
            return;
        }
        if let Some(old) = view.member(rank) {
            if old.process == process {
                out.push(refuse(
                    self,
                    format!("process {process} is already life {old} in view {}", view.id),
                ));
                return;
            }
            if view.admits(old) && view.id.0 > 1 {
                // Admitted by this very view (formation's view 1 admits nobody): a request still in
                // flight from before must not admit a second, phantom life.
                out.push(refuse(self, format!("rank {rank} was just admitted as life {old}")));
                return;
            }
            if !self.suspects.contains(&old) {
                out.push(refuse(
                    self,
                    format!("rank {rank} is alive in view {} (life {old})", view.id),
                ));
                return;
            }
        }
        match self.joining.get(&rank).copied() {
            None => info!("member {}: rank {rank} asks to rejoin (process {process})", self.me),
            Some(known) if known == process => {}
            Some(known) => info!(
                "member {}: two processes ask for rank {rank} ({known} and {process}): the larger identity goes on",
                self.me
            ),
        }
        let entry = self.joining.entry(rank).or_insert(process);
        *entry = (*entry).max(process);
        self.maybe_start_change(out);
    }

    /// A joiner may not reach the coordinator: pass its request on (only requests straight from a
    /// joiner are passed on, so two members that disagree on the coordinator cannot bounce one forever).
    pub(super) fn forward_join_request(&mut self, rank: Rank, out: &mut Outbox) {
        let Some(process) = self.joining.get(&rank).copied() else {
            return;
        };
        if let Some(coordinator) = self.coordinator().filter(|c| *c != self.me.rank) {
            out.push(Output::Send {
                to: coordinator,
                msg: Message::JoinRequest { rank, process },
            });
        }
    }

    /// This joiner's request to be admitted.
    pub(super) fn own_join_request(&self) -> Message {
        Message::JoinRequest {
            rank: self.me.rank,
            process: self.me.process,
        }
    }

    pub(super) fn on_connected(&mut self, rank: Rank, out: &mut Outbox) {
        if self.phase == Phase::Joining && self.join_contacts.insert(rank) {
            out.push(Output::Send {
                to: rank,
                msg: self.own_join_request(),
            });
        }
    }

    pub(super) fn on_tick(&mut self, out: &mut Outbox) {
        self.now_ticks += 1;
        match self.phase {
            Phase::Joining => {
                // Ask again now and then: a refusal ("still alive") may no longer hold.
                if self.now_ticks % self.config.view_change_timeout_ticks.max(1) == 0 {
                    for rank in self.join_contacts.clone() {
                        out.push(Output::Send {
                            to: rank,
                            msg: self.own_join_request(),
                        });
                    }
                }
            }
            Phase::Member | Phase::Changing => self.view_change_timers(out),
            Phase::Excluded | Phase::Left => {}
        }
    }

    /// After installing a view: send what waited, and carry on with what is still wanted.
    pub(super) fn after_install(&mut self, out: &mut Outbox) {
        // Suspicions this member's detector made of lives the new view keeps still stand: without a
        // quorum of the new view left unsuspected, stop now rather than wait on a view change forever.
        if self.stop_without_quorum(out) {
            return;
        }
        // Suspicions that outlive the view are announced again: a member that just joined never heard them.
        if let Some(view) = self.view.as_ref().map(|v| v.id) {
            for member in self.suspects.clone() {
                self.send_to_others(
                    out,
                    Message::Suspect {
                        view,
                        rank: member.rank,
                    },
                );
            }
        }
        // The backlog goes out at the next flush, in the new view.
        if self.leave_requested {
            self.leaving.remove(&self.me);
            self.maybe_announce_leave(out);
        }
        self.maybe_start_change(out);
    }
}
