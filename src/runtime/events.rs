//! The application's end of a member's events: [`Events`], what [`crate::Member::events`] returns.

use std::fmt;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use crate::error::Error;
use crate::event::Event;

/// A member's events, in order (see [`Event`] for which arrive when). They end after
/// [`Event::Left`] or [`Event::Excluded`], or when the member shuts down; events already queued are
/// still received after that.
///
/// Clones receive from the same queue: each event goes to exactly one of them, so an application
/// normally reads from one thread.
#[derive(Clone)]
pub struct Events {
    receiver: Receiver<Event>,
}

/// Why no event was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// [`Events::try_recv`]: no event is waiting.
    Empty,
    /// [`Events::recv_timeout`]: no event arrived in time.
    Timeout,
    /// The events ended (after [`Event::Left`] or [`Event::Excluded`], or at shutdown) and none is
    /// left.
    Ended,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvError::Empty => "no event is waiting",
            RecvError::Timeout => "timed out waiting for an event",
            RecvError::Ended => "the member's events ended",
        })
    }
}

impl std::error::Error for RecvError {}

impl From<RecvError> for Error {
    fn from(error: RecvError) -> Error {
        match error {
            RecvError::Empty => Error::WouldBlock,
            RecvError::Timeout => Error::Timeout("waiting for an event".into()),
            RecvError::Ended => Error::ShutDown,
        }
    }
}

impl Events {
    pub(crate) fn new(receiver: Receiver<Event>) -> Events {
        Events { receiver }
    }

    /// The next event, waiting for it; [`RecvError::Ended`] once the events ended and none is left.
    pub fn recv(&self) -> Result<Event, RecvError> {
        self.receiver.recv().map_err(|_| RecvError::Ended)
    }

    /// The next event, waiting at most `timeout` ([`RecvError::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvError> {
        self.receiver.recv_timeout(timeout).map_err(|error| match error {
            RecvTimeoutError::Timeout => RecvError::Timeout,
            RecvTimeoutError::Disconnected => RecvError::Ended,
        })
    }

    /// The next event if one is waiting ([`RecvError::Empty`] otherwise); never waits.
    pub fn try_recv(&self) -> Result<Event, RecvError> {
        self.receiver.try_recv().map_err(|error| match error {
            TryRecvError::Empty => RecvError::Empty,
            TryRecvError::Disconnected => RecvError::Ended,
        })
    }

    /// The events as they come, waiting for each; the iterator ends when the events end.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// The events waiting now, without waiting for more.
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// How many events are waiting. A member holds back its deliveries (and so slows the group) while
    /// more than [`crate::Config::delivery_queue_max`] wait.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// No event is waiting.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").field("waiting", &self.len()).finish()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = Event;
    type IntoIter = Box<dyn Iterator<Item = Event> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
