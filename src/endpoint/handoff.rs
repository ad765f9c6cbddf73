//! The endpoint's side of the state transfer: events held while the own snapshot is awaited, the
//! sponsor's hand-off at a view admitting new lives, the restore ([`super::snapshot`] holds the rules).

use log::{info, warn};

use super::snapshot::{self, AtView, Deferred, Restored};
use super::{Action, Endpoint};
use crate::event::Event;
use crate::types::View;

impl Endpoint {
    /// Reports an event, or holds it back while a snapshot is awaited.
    pub(super) fn report(&mut self, event: Event) {
        if let Some(Deferred::Event(event)) = self.transfer.defer(Deferred::Event(event)) {
            self.actions.push(Action::Event(event));
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

    pub(super) fn hand_off(&mut self, view: &View, position: u64) {
        let me = self.node.me();
        let mut to = Vec::new();
        for life in snapshot::new_lives(view) {
            let conn = self
                .member_conn
                .get(&life.rank)
                .copied()
                .filter(|c| self.conns.get(c).is_some_and(|c| c.process == life.process));
            match conn {
                Some(conn) => to.push((life, conn)),
                None => warn!("member {me}: no connection to {life} to hand it the state"),
            }
        }
        self.actions.push(Action::HandOff {
            view: view.id,
            position,
            to,
        });
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
        for held in restored.released {
            match held {
                Deferred::Event(event) => self.report(event),
                Deferred::HandOff { view, position } => self.hand_off(&view, position),
            }
        }
    }
}
