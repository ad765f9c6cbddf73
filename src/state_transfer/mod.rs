//! The state transfer, as one pure state machine: a returning member receives the application's
//! state at its join position from the *sponsor* of the view that admits it, and holds its events
//! until that state is restored; the sponsor hands the state over at the view's install.
//!
//! The endpoint feeds it the facts (a view installed, an event for the application, a snapshot chunk,
//! which lives have a connection) and carries out the [`Step`]s it returns; it knows no connection,
//! so the rules of the transfer read without the endpoint's, and the simulator runs them as the
//! runtime does. The bytes themselves go out through the driver ([`Step::HandOff`]): the snapshot is
//! the application's, taken at the moment the driver carries the step out.
//!
//! The order is the whole point:
//! - a returning member holds its events from the view that admits it until the whole snapshot is
//!   restored (`receive.rs`), then releases them in order: they come after the state they apply to;
//! - a sponsor hands the state at the join position: its own events after that position wait until
//!   the state went out to every new life of the view (a new life without a connection yet dials the
//!   sponsor, being the later life; until then the sponsor's state must stay the state at the join
//!   position); a sponsor still waiting for its own snapshot holds its hand-off with its events.
//!
//! # Invariants
//! - something is held only while a snapshot is awaited or a hand-off waits for connections;
//! - what is held is released in the order it was held (a hand-off may hold the rest again).

mod receive;

use std::collections::{BTreeMap, VecDeque};

use log::{info, warn};

use receive::{AtView, Receiving};
pub use receive::{Chunk, Snapshot};

use crate::event::Event;
use crate::types::{MemberId, View, ViewId};

/// The life of `view` that hands the state to its new lives: its lowest rank that is not new itself.
pub fn sponsor(view: &View) -> Option<MemberId> {
    view.members.iter().find(|m| !view.admits(**m)).copied()
}

/// The lives that `view` admits.
pub fn new_lives(view: &View) -> impl Iterator<Item = MemberId> + '_ {
    view.members.iter().filter(move |m| view.admits(**m)).copied()
}

/// What the endpoint carries out for the state transfer, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Report `event` to the application.
    Event(Event),
    /// Send the application's state, as it stands now (at `position`), to `to` for `view`.
    HandOff {
        /// The view whose new lives get it.
        view: ViewId,
        /// The number of deliveries the state reflects.
        position: u64,
        /// The lives to send it to, each on its connection.
        to: Vec<MemberId>,
    },
    /// Restore the application's state from the snapshot.
    Restore(Snapshot),
    /// The sponsor awaited for the state of view `awaited` is not in the view installed: the state
    /// cannot come, and this member stops.
    SponsorGone {
        /// The sponsor.
        sponsor: MemberId,
        /// The view whose state was awaited.
        awaited: ViewId,
    },
}

/// Held while a snapshot is awaited or a hand-off waits (not to be confused with the core's hold-back
/// queue, which holds messages until they may be delivered).
#[derive(Clone, Debug, Hash)]
enum Held {
    Event(Event),
    HandOff { view: View, position: u64 },
}

/// A hand-off of the state at `position` to new lives of `view`, until each has it.
#[derive(Clone, Debug, Hash)]
struct Waiting {
    view: ViewId,
    position: u64,
    /// Lives to send the state to once they have a connection.
    lives: Vec<MemberId>,
    /// Lives it went to on a connection they had not used yet: a restarted process may abandon that
    /// one (a dial past its handshake deadline) and never read it (rejoin seed 15795 waited for its
    /// snapshot for ever); it is sent again on the next ([`StateTransfer::abandoned`]).
    sent: Vec<MemberId>,
}

/// One member's side of the state transfer, as receiver and as sponsor (see the module documentation).
#[derive(Clone, Debug, Hash)]
pub struct StateTransfer {
    me: MemberId,
    /// This member sponsors new lives (the group transfers state).
    sponsors: bool,
    receiving: Receiving,
    held: VecDeque<Held>,
    waiting: Option<Waiting>,
    steps: Vec<Step>,
}

impl StateTransfer {
    /// `me`'s side; `enabled`: the group transfers state; `joining`: `me` is a returning member.
    pub fn new(me: MemberId, enabled: bool, joining: bool) -> StateTransfer {
        StateTransfer {
            me,
            sponsors: enabled,
            receiving: if enabled && joining {
                Receiving::Admitted { early: None }
            } else {
                Receiving::Nothing
            },
            held: VecDeque::new(),
            waiting: None,
            steps: Vec::new(),
        }
    }

    /// What to carry out, in order, since the last call.
    pub fn take_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }

    /// True while a hand-off waits for new lives to connect, or to use the connection the state went
    /// on ([`StateTransfer::on_connections`]).
    pub fn waits_for_connections(&self) -> bool {
        self.waiting.is_some()
    }

    /// An event for the application: held, or given back to be reported at once (the common case,
    /// on every delivery: no step is made for it). Nothing held is released here: something is held
    /// only while this member holds.
    pub fn report(&mut self, event: Event) -> Option<Event> {
        if self.is_holding() {
            self.held.push_back(Held::Event(event));
            return None;
        }
        Some(event)
    }

    /// `view` was installed, `me` (this member's life in it) having delivered `position` messages.
    pub fn on_view(&mut self, view: &View, me: MemberId, position: u64) {
        self.me = me;
        match self.receiving.on_view(view) {
            AtView::Nothing => {}
            AtView::Whole(whole) => {
                self.restore(whole);
                return;
            }
            AtView::SponsorGone { sponsor, awaited } => {
                self.held.clear();
                self.steps.push(Step::SponsorGone { sponsor, awaited });
                return;
            }
        }
        if !self.sponsors || sponsor(view) != Some(me) || new_lives(view).next().is_none() {
            return;
        }
        if self.is_holding() {
            info!(
                "member {me}: sponsor of view {}'s new lives, but its own state is not restored yet: handing it on once it is",
                view.id
            );
        }
        self.held.push_back(Held::HandOff {
            view: view.clone(),
            position,
        });
        self.release();
    }

    /// A snapshot chunk arrived; `Err` names what was wrong with it (it is dropped).
    pub fn on_chunk(&mut self, chunk: Chunk) -> Result<(), String> {
        if let Some(whole) = self.receiving.on_chunk(chunk)? {
            self.restore(whole);
        }
        Ok(())
    }

    /// A hand-off waits (after every call of the endpoint, with the installed `view` and the lives this
    /// member has a connection to, each with whether the life has used it): each waiting life with a
    /// connection gets the state now, and has it once it used that connection; a life `view` no longer
    /// lists is given up; once every life has it, what was held is released.
    pub fn on_connections(&mut self, view: &View, connected: &BTreeMap<MemberId, bool>) {
        let Some(mut waiting) = self.waiting.take() else {
            return;
        };
        let mut to = Vec::new();
        let mut still = Vec::new();
        for life in std::mem::take(&mut waiting.lives) {
            if !view.contains(life) {
                warn!(
                    "member {}: {life} left the view before it had a connection to take the state on",
                    self.me
                );
            } else if let Some(&used) = connected.get(&life) {
                to.push(life);
                if !used {
                    waiting.sent.push(life);
                }
            } else {
                still.push(life);
            }
        }
        waiting
            .sent
            .retain(|life| view.contains(*life) && connected.get(life) == Some(&false));
        if !to.is_empty() {
            self.steps.push(Step::HandOff {
                view: waiting.view,
                position: waiting.position,
                to,
            });
        }
        if !still.is_empty() || !waiting.sent.is_empty() {
            waiting.lives = still;
            self.waiting = Some(waiting);
            return;
        }
        self.release();
    }

    /// `life` abandoned the connection it had not used: if the state went out on it, it goes out
    /// again on the next.
    pub fn abandoned(&mut self, life: MemberId) {
        if let Some(waiting) = &mut self.waiting {
            if let Some(at) = waiting.sent.iter().position(|l| *l == life) {
                waiting.sent.remove(at);
                waiting.lives.push(life);
            }
        }
    }

    /// This member stops (excluded, or left): a hand-off still waiting is given up and the events it
    /// held go out (a returning member still awaiting its state reports nothing more).
    pub fn stop(&mut self) {
        if self.waiting.take().is_none() {
            return;
        }
        for held in std::mem::take(&mut self.held) {
            if let Held::Event(event) = held {
                self.steps.push(Step::Event(event));
            }
        }
    }

    fn is_holding(&self) -> bool {
        matches!(self.receiving, Receiving::Awaiting { .. }) || self.waiting.is_some()
    }

    fn restore(&mut self, whole: Snapshot) {
        info!(
            "member {}: state at position {} restored from {} ({} bytes)",
            self.me,
            whole.position,
            whole.sponsor,
            whole.bytes.len()
        );
        self.steps.push(Step::Restore(whole));
        self.release();
    }

    /// Releases what is held, in order, until something holds again: a hand-off, which waits for
    /// [`StateTransfer::on_connections`] to learn which of its lives are connected.
    fn release(&mut self) {
        while !self.is_holding() {
            let Some(held) = self.held.pop_front() else {
                return;
            };
            match held {
                Held::Event(event) => self.steps.push(Step::Event(event)),
                Held::HandOff { view: handed, position } => {
                    self.waiting = Some(Waiting {
                        view: handed.id,
                        position,
                        lives: new_lives(&handed).collect(),
                        sent: Vec::new(),
                    });
                }
            }
        }
    }
}
