//! A protocol thread that panics ends its member where everyone can see it.
//!
//! The protocol thread owns the member's protocol state; if it panics (a bug in tom, or a panic in
//! the application's [`crate::Replicated`] callbacks, which run on it), the member can never deliver
//! again. Left alone, the rest of the member would look alive: the heartbeat thread keeps answering
//! the group's failure detectors, so the group waits for this member's acknowledgements for ever,
//! and the application waits on a member that never moves. So the thread runs under
//! [`run_or_fail`], which turns a panic into what a crash looks like from each side:
//! - to the application: [`Event::Failed`] as the last event, and [`crate::Error::Failed`] from every
//!   wait and multicast (the gate and the progress record are closed with the panic's message);
//! - to the group: every connection shut down, so peers read an end of file and suspect this life
//!   as they would a crashed process (the writers are closed by the engine's drop while unwinding).
//!
//! The program decides what to do with it (`tom-member` exits non-zero); nothing here exits.

use std::net::Shutdown;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crossbeam_channel::Sender;
use log::error;

use super::engine::Engine;
use super::gate::{Closed, Gate};
use super::progress::{End, Progress};
use super::Shared;
use crate::event::Event;
use crate::types::Rank;

/// What is left to close once the engine is gone.
struct Survivors {
    rank: Rank,
    gate: Arc<Gate>,
    progress: Arc<Progress>,
    events: Sender<Event>,
    shared: Arc<Shared>,
}

/// Runs `protocol` (the protocol thread's loop over `engine`); if it panics, ends the member as the
/// module documentation says.
pub(crate) fn run_or_fail(engine: Engine, protocol: impl FnOnce(Engine)) {
    let survivors = Survivors {
        rank: engine.endpoint.node().me().rank,
        gate: Arc::clone(&engine.gate),
        progress: Arc::clone(&engine.progress),
        events: engine.events.clone(),
        shared: Arc::clone(&engine.shared),
    };
    // Unwind safety: nothing the panicking code touched is used again except the shared handles
    // above, whose state is a plain record that `fail` overwrites.
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(move || protocol(engine))) {
        survivors.fail(panic_message(panic.as_ref()));
    }
}

impl Survivors {
    fn fail(self, reason: String) {
        error!(
            "member {}: protocol thread failed ({reason}); closing its connections (the group sees a crash)",
            self.rank
        );
        self.gate.close(Closed::Failed(reason.clone()));
        self.progress.ended(End::Failed(reason.clone()));
        let _ = self.events.send(Event::Failed { reason });
        for stream in std::mem::take(&mut *self.shared.streams.lock()).values().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// A panic's message: the `&str` or `String` that `panic!` carries, or a placeholder.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_string()
    }
}
