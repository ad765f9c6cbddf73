//! State transfer for a member that rejoins: the application's state, taken exactly at the join
//! position on a live member, handed to the returning one before its first delivery.
//!
//! The application keeps its state in a [`Replicated`] object that the protocol thread updates with every
//! delivery, in order, before reporting it. That is what makes "exactly at the join position" exact:
//! when a view admitting a new life is installed, the protocol thread has applied every message ordered
//! before the join and none after it, so the snapshot it takes then is the state at the join position.
//!
//! The order of the transfer (who sends, which chunks count, what is held back) is the pure
//! endpoint's ([`crate::endpoint::snapshot`]); this file holds the application's side.
//!
//! Who sends: the lowest rank of the new view that is not itself new (the *sponsor*); both sides compute
//! it from the view, so no extra agreement is needed. The snapshot goes on the connection to the new life
//! as consecutive chunks of at most [`crate::wire::SNAPSHOT_CHUNK_LEN_MAX`] bytes (so no frame grows
//! with the state), right after the view is installed; the returning member reassembles them, checks
//! that they fit together and come from the sponsor's life, holds back its events until the whole
//! snapshot is restored, then applies and reports them in order.
//!
//! A sponsor that rejoined recently may itself still be waiting for its own snapshot when a view makes
//! it a sponsor: the state it holds then is not the state at the join position. It hands the newcomer
//! the state only once its own is restored and every delivery before the newcomer's join is applied
//! to it, in order, with the events it held back.
//!
//! Limitation, stated plainly: if the sponsor leaves the view before its snapshot arrives, the returning
//! member cannot get the state and stops (it reports itself excluded) rather than run with a wrong one.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::protocol::Delivery;

/// An application state kept in step with the total order.
pub trait Replicated: Send {
    /// Applies one delivered message. Called on the protocol thread, in delivery order, before the
    /// delivery is reported on the member's events.
    fn apply(&mut self, delivery: &Delivery);
    /// The state as bytes, for a member that rejoins.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a live member's snapshot (on a member that rejoined, before its first
    /// delivery).
    fn restore(&mut self, snapshot: &[u8]);
}

/// A shared handle on the application's [`Replicated`] state: the runtime updates it, the application
/// reads it through its own clone.
#[derive(Clone)]
pub struct ReplicatedState(pub Arc<Mutex<dyn Replicated>>);

impl ReplicatedState {
    /// Wraps `state`, returning the handle to put in the runtime's config (clone it to read the state).
    pub fn new(state: impl Replicated + 'static) -> ReplicatedState {
        ReplicatedState(Arc::new(Mutex::new(state)))
    }
}

impl fmt::Debug for ReplicatedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplicatedState")
    }
}

pub use crate::endpoint::snapshot::{new_lives, sponsor};
