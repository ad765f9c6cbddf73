//! What the protocol thread records for the [`super::Member`] handle, whoever reads the events: how
//! many of this life's own messages were delivered, whether (and where) a restarted process was
//! admitted and its state restored, and how membership ended. [`super::Member::leave`],
//! [`super::Member::wait_delivered`] and [`super::Member::rejoin`] wait on it instead of reading the
//! events, so an application reading them on another thread loses nothing and misleads nobody.

use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::types::{MemberId, ViewId};

/// How a member's participation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Its clean departure completed ([`crate::Event::Left`]).
    Left,
    /// It was excluded, or lost its quorum, or could not get its state ([`crate::Event::Excluded`]).
    Excluded(ViewId),
    /// Its protocol thread stopped without either (shutdown).
    Stopped,
    /// Its protocol thread panicked ([`crate::Event::Failed`]), with the panic's message.
    Failed(String),
}

impl End {
    /// The error a wait that this end cut short returns.
    pub(crate) fn error(self) -> Error {
        match self {
            End::Left => Error::Left,
            End::Excluded(view) => Error::Excluded { view },
            End::Stopped => Error::ShutDown,
            End::Failed(reason) => Error::Failed { reason },
        }
    }
}

#[derive(Debug, Default)]
struct Recorded {
    /// This life, as the core knows it (a restarted process learns its incarnation when admitted).
    me: Option<MemberId>,
    /// This life's own messages delivered (and applied to the replicated state) so far.
    own_delivered: u64,
    /// A restarted process was admitted: the group had delivered this many messages before.
    joined: Option<u64>,
    /// A restarted process's state was restored from its sponsor's snapshot.
    restored: bool,
    /// Membership ended.
    end: Option<End>,
}

/// Shared by the protocol thread (which records) and the handle (which waits).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    recorded: Mutex<Recorded>,
    changed: Condvar,
}

impl Progress {
    fn update(&self, change: impl FnOnce(&mut Recorded)) {
        change(&mut self.recorded.lock());
        self.changed.notify_all();
    }

    /// The core's identity of this life.
    pub fn set_me(&self, me: MemberId) {
        self.update(|r| r.me = Some(me));
    }

    /// One of this life's own messages was delivered.
    pub fn own_delivered(&self) {
        self.update(|r| r.own_delivered += 1);
    }

    /// This restarted process was admitted at `position`.
    pub fn joined(&self, position: u64) {
        self.update(|r| r.joined = Some(position));
    }

    /// This restarted process's state was restored.
    pub fn restored(&self) {
        self.update(|r| r.restored = true);
    }

    /// Membership ended (the first end recorded stays).
    pub fn ended(&self, end: End) {
        self.update(|r| {
            r.end.get_or_insert(end);
        });
    }

    pub fn me(&self) -> Option<MemberId> {
        self.recorded.lock().me
    }

    pub fn join_position(&self) -> Option<u64> {
        self.recorded.lock().joined
    }

    pub fn end(&self) -> Option<End> {
        self.recorded.lock().end.clone()
    }

    /// Waits until `done` holds (`Ok`), membership ends first (`Err(end)`), or `deadline` passes
    /// (`Ok(false)`).
    pub fn wait_until(
        &self,
        deadline: Instant,
        done: impl Fn(&RecordedView) -> bool,
    ) -> std::result::Result<bool, End> {
        let mut recorded = self.recorded.lock();
        loop {
            if done(&RecordedView(&recorded)) {
                return Ok(true);
            }
            if let Some(end) = recorded.end.clone() {
                return Err(end);
            }
            if self.changed.wait_until(&mut recorded, deadline).timed_out() {
                return Ok(done(&RecordedView(&recorded)));
            }
        }
    }

    /// Waits until this life's `count`-th own message is delivered, membership ends, or `deadline`.
    pub fn wait_own_delivered(&self, count: u64, deadline: Instant) -> Result<bool> {
        match self.wait_until(deadline, |r| r.own_delivered() >= count) {
            Ok(done) => Ok(done),
            Err(end) => Err(end.error()),
        }
    }
}

/// What a wait looks at.
pub(crate) struct RecordedView<'a>(&'a Recorded);

impl RecordedView<'_> {
    pub fn own_delivered(&self) -> u64 {
        self.0.own_delivered
    }
    pub fn joined(&self) -> Option<u64> {
        self.0.joined
    }
    pub fn restored(&self) -> bool {
        self.0.restored
    }
}
