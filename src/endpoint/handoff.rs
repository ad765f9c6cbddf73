//! The endpoint's side of the state transfer: events held while the own snapshot is awaited, the
//! sponsor's hand-off at a view admitting new lives, the restore ([`super::snapshot`] holds the rules).

use log::{info, warn};

use super::snapshot::{self, AtView, Deferred, Restored};
use super::{Action, Endpoint};
use crate::event::Event;
use crate::types::{MemberId, View};
use crate::wire::{Frame, Roster};

impl Endpoint {
    /// Reports an event, or holds it back while a snapshot is awaited or a hand-off waits for a
    /// connection.
    pub(super) fn report(&mut self, event: Event) {
        if let Some(Deferred::Event(event)) = self.transfer.defer(Deferred::Event(event)) {
            match &mut self.handoff_pending {
                Some(pending) => pending.held.push(Deferred::Event(event)),
                None => self.actions.push(Action::Event(event)),
            }
        }
    }

    /// At a view installed: a member just admitted starts waiting for its state (or restores the one
    /// that came early); a member waiting on a sponsor that is gone stops; the sponsor of the view's
    /// new lives hands them the state at the join position, at once or once its own is restored.
    pub(super) fn transfer_state(&mut self, view: &View) {
        let me = self.node.me();
        match self.transfer.on_view(view) {
            AtView::Nothing => {}
            AtView::Restored(restored) => {
                self.restore(restored);
                return;
            }
            AtView::SponsorGone { sponsor, awaited } => {
                warn!("member {me}: {sponsor} left before handing over the state of view {awaited}; stopping");
                self.actions.push(Action::Event(Event::Excluded { view: view.id }));
                self.finished = true;
                return;
            }
        }
        if !self.settings.state_transfer
            || snapshot::sponsor(view) != Some(me)
            || snapshot::new_lives(view).next().is_none()
        {
            return;
        }
        let position = self.node.delivered_count();
        let handoff = Deferred::HandOff {
            view: view.clone(),
            position,
        };
        if let Some(Deferred::HandOff { view, position }) = self.transfer.defer(handoff) {
            self.hand_off(&view, position);
        } else {
            info!("member {me}: sponsor of view {}'s new lives, but its own state is not restored yet: handing it on once it is", view.id);
        }
    }

    /// Hands the state at `position` to `view`'s new lives on their member connections. A new life
    /// without one yet (it dials this member, being the later life) gets it once its connection comes:
    /// until then this member's events are held, so its state stays the state at `position`.
    pub(super) fn hand_off(&mut self, view: &View, position: u64) {
        let me = self.node.me();
        if let Some(pending) = &mut self.handoff_pending {
            pending.held.push(Deferred::HandOff {
                view: view.clone(),
                position,
            });
            return;
        }
        let mut to = Vec::new();
        let mut waiting = Vec::new();
        for life in snapshot::new_lives(view) {
            match self.conn_of(life) {
                Some(conn) => to.push((life, conn)),
                None => waiting.push(life),
            }
        }
        if !to.is_empty() || waiting.is_empty() {
            self.actions.push(Action::HandOff {
                view: view.id,
                position,
                to,
            });
        }
        if !waiting.is_empty() {
            info!(
                "member {me}: no connection to {waiting:?} yet: the state stays at position {position}, its events \
                 held, until they connect"
            );
            self.handoff_pending = Some(PendingHandOff {
                view: view.clone(),
                position,
                waiting,
                held: Vec::new(),
            });
        }
    }

    /// A pending hand-off goes on (after every call): each waiting life that has a member connection
    /// now gets the state, a life the view no longer lists is given up; once none waits, what was held
    /// is released, in order.
    pub(super) fn continue_hand_off(&mut self) {
        let Some(mut pending) = self.handoff_pending.take() else {
            return;
        };
        let me = self.node.me();
        let mut to = Vec::new();
        let mut waiting = Vec::new();
        for life in std::mem::take(&mut pending.waiting) {
            if !self.node.view().is_some_and(|v| v.contains(life)) {
                warn!("member {me}: {life} left the view before it had a connection to take the state on");
            } else if let Some(conn) = self.conn_of(life) {
                to.push((life, conn));
            } else {
                waiting.push(life);
            }
        }
        if !to.is_empty() {
            self.actions.push(Action::HandOff {
                view: pending.view.id,
                position: pending.position,
                to,
            });
        }
        if waiting.is_empty() {
            self.release(pending.held);
        } else {
            pending.waiting = waiting;
            self.handoff_pending = Some(pending);
        }
    }

    /// This member stops (excluded, or left) with a hand-off still waiting: the events held go out,
    /// the hand-offs are given up.
    pub(super) fn abandon_hand_off(&mut self) {
        let Some(pending) = self.handoff_pending.take() else {
            return;
        };
        for item in pending.held {
            if let Deferred::Event(event) = item {
                self.actions.push(Action::Event(event));
            }
        }
    }

    /// Held events and hand-offs, in order (they may be held again).
    fn release(&mut self, held: Vec<Deferred>) {
        for item in held {
            match item {
                Deferred::Event(event) => self.report(event),
                Deferred::HandOff { view, position } => self.hand_off(&view, position),
            }
        }
    }

    /// Every life `view` admits gets this member's directory on its member connection: it may have
    /// found the group before lives it must now dial came back (and without a helper it has nobody
    /// else to learn their addresses from).
    pub(super) fn hand_directory(&mut self, view: &View) {
        let me = self.node.me();
        let lives: Vec<MemberId> = snapshot::new_lives(view).filter(|m| m.rank != me.rank).collect();
        for life in lives {
            if let Some(conn) = self.conn_of(life) {
                let roster = Roster {
                    rank: life.rank,
                    size: self.settings.size,
                    members: self.directory.entries().to_vec(),
                    from: Some(me),
                };
                self.write(conn, Frame::Roster(roster));
            }
        }
    }

    /// The awaited snapshot is whole: restore it, then release the held events (and hand-offs).
    pub(super) fn restore(&mut self, restored: Restored) {
        info!(
            "member {}: state at position {} restored from {} ({} bytes)",
            self.node.me(),
            restored.position,
            restored.sponsor,
            restored.bytes.len()
        );
        self.actions.push(Action::Restore {
            sponsor: restored.sponsor,
            position: restored.position,
            bytes: restored.bytes,
        });
        self.release(restored.released);
    }
}

/// A hand-off of the state at `position` to new lives of `view` that have no member connection yet:
/// this member's events are held meanwhile (see [`Endpoint::hand_off`]).
#[derive(Clone, Debug, Hash)]
pub(super) struct PendingHandOff {
    view: View,
    position: u64,
    waiting: Vec<MemberId>,
    held: Vec<Deferred>,
}
