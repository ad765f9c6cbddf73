//! Flow control for [`super::Member::multicast`]: it blocks while this member has `window` of its own
//! messages multicast and not yet delivered; shutdown and the end of membership release it with an
//! error.
//!
//! A blocked multicast is woken once half the window is free again, not at every delivery: a sender
//! that fills the window then goes on with a run of multicasts (which the protocol thread sends as
//! one data frame) instead of waking, and putting the protocol thread to work, once per message.

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::types::ViewId;

/// Counts this member's own undelivered messages.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    window: usize,
}

#[derive(Debug)]
struct GateState {
    in_flight: usize,
    /// Multicasts blocked in [`Gate::acquire`].
    waiting: usize,
    closed: Option<Closed>,
}

/// Why the gate no longer lets multicasts through.
#[derive(Clone, Debug)]
pub(crate) enum Closed {
    ShutDown,
    Excluded(ViewId),
    /// The protocol thread panicked, with the panic's message.
    Failed(String),
}

impl Closed {
    fn error(&self) -> Error {
        match self {
            Closed::ShutDown => Error::ShutDown,
            Closed::Excluded(view) => Error::Excluded { view: *view },
            Closed::Failed(reason) => Error::Failed { reason: reason.clone() },
        }
    }
}

impl Gate {
    /// A gate letting at most `window` messages through at once.
    pub fn new(window: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                in_flight: 0,
                waiting: 0,
                closed: None,
            }),
            changed: Condvar::new(),
            window: window.max(1),
        }
    }

    /// Takes one place, waiting for one if `wait`, else failing with [`Error::WouldBlock`].
    pub fn acquire(&self, wait: bool) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            if let Some(closed) = &state.closed {
                return Err(closed.error());
            }
            if state.in_flight < self.window {
                state.in_flight += 1;
                return Ok(());
            }
            if !wait {
                return Err(Error::WouldBlock);
            }
            state.waiting += 1;
            self.changed.wait(&mut state);
            state.waiting -= 1;
        }
    }

    /// `delivered` own messages were delivered.
    pub fn release(&self, delivered: usize) {
        let mut state = self.state.lock();
        state.in_flight = state.in_flight.saturating_sub(delivered);
        if state.waiting > 0 && state.in_flight <= self.window / 2 {
            self.changed.notify_all();
        }
    }

    /// No more multicasts, for `why` (the first reason given stays).
    pub fn close(&self, why: Closed) {
        let mut state = self.state.lock();
        state.closed.get_or_insert(why);
        self.changed.notify_all();
    }
}
