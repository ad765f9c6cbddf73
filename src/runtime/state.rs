//! State transfer for a member that rejoins: the application's state, taken exactly at the join
//! position on a live member, handed to the returning one before its first delivery.
//!
//! The application keeps its state in a [`Replicated`] object, wrapped in a [`ReplicatedState`] handle
//! that it gives to [`crate::Config::state`] and keeps a clone of. The protocol thread updates the state
//! with every delivery, in order, before reporting it. That is what makes "exactly at the join
//! position" exact: when a view admitting a new life is installed, the protocol thread has applied every
//! message ordered before the join and none after it, so the snapshot it takes then is the state at the
//! join position.
//!
//! The order of the transfer (who sends, which chunks count, what is held back) is the pure
//! state transfer's ([`crate::state_transfer`]); this file holds the application's side.
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
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::protocol::Delivery;

/// An application state kept in step with the total order.
///
/// Every member of a group that uses state transfer must configure one ([`crate::Config::state`]):
/// a sponsor without one has no state to hand to a member that rejoins.
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

/// A shared, typed handle on the application's [`Replicated`] state: the member's protocol thread
/// updates it (and restores it on a member that rejoins), the application reads it through its own
/// clone.
///
/// The application only reads: a change made outside the total order would differ from member to
/// member. To change the state, multicast a message that [`Replicated::apply`] turns into the change.
///
/// ```
/// use tom::{Delivery, Replicated, ReplicatedState};
///
/// #[derive(Default)]
/// struct Count(u64);
///
/// impl Replicated for Count {
///     fn apply(&mut self, _: &Delivery) { self.0 += 1 }
///     fn snapshot(&self) -> Vec<u8> { self.0.to_be_bytes().to_vec() }
///     fn restore(&mut self, bytes: &[u8]) { self.0 = bytes.try_into().map_or(0, u64::from_be_bytes) }
/// }
///
/// let state = ReplicatedState::new(Count::default());
/// let config = tom::Config::new("127.0.0.1:9999").state(&state);
/// assert_eq!(state.read(|count| count.0), 0);
/// # drop(config);
/// ```
pub struct ReplicatedState<T> {
    inner: Arc<Mutex<T>>,
}

impl<T: Replicated + 'static> ReplicatedState<T> {
    /// Wraps `state`; give the handle to [`crate::Config::state`] and keep it (or a clone) to read
    /// the state.
    pub fn new(state: T) -> ReplicatedState<T> {
        ReplicatedState {
            inner: Arc::new(Mutex::new(state)),
        }
    }

    /// Calls `read` with the state as it is now, and returns what it returns. The protocol thread
    /// waits while `read` runs: keep it short.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&self.inner.lock())
    }

    /// The state, locked for reading until the guard is dropped (the protocol thread waits meanwhile,
    /// so hold it briefly).
    pub fn lock(&self) -> StateGuard<'_, T> {
        StateGuard {
            guard: self.inner.lock(),
        }
    }

    /// The type-erased handle the runtime keeps.
    pub(crate) fn erased(&self) -> AnyState {
        AnyState(Arc::clone(&self.inner) as Arc<Mutex<dyn Replicated>>)
    }
}

impl<T> Clone for ReplicatedState<T> {
    fn clone(&self) -> Self {
        ReplicatedState {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for ReplicatedState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicatedState<{}>", std::any::type_name::<T>())
    }
}

/// The application's state, locked for reading ([`ReplicatedState::lock`]); dereferences to it.
pub struct StateGuard<'a, T> {
    guard: MutexGuard<'a, T>,
}

impl<T> Deref for StateGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for StateGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.guard, f)
    }
}

/// The runtime's untyped handle on a [`ReplicatedState`]. Not part of the supported API (it is public
/// only because the hidden [`crate::runtime::RuntimeConfig`] holds one).
#[doc(hidden)]
#[derive(Clone)]
pub struct AnyState(Arc<Mutex<dyn Replicated>>);

impl AnyState {
    /// Applies one delivery.
    pub(crate) fn apply(&self, delivery: &Delivery) {
        self.0.lock().apply(delivery);
    }

    /// The state's snapshot.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        self.0.lock().snapshot()
    }

    /// Replaces the state with `bytes`.
    pub(crate) fn restore(&self, bytes: &[u8]) {
        self.0.lock().restore(bytes);
    }
}

impl<T: Replicated + 'static> From<&ReplicatedState<T>> for AnyState {
    fn from(state: &ReplicatedState<T>) -> AnyState {
        state.erased()
    }
}

impl fmt::Debug for AnyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplicatedState")
    }
}

pub use crate::state_transfer::{new_lives, sponsor};
