//! What a member reports to its application, in order: the one vocabulary of the pure
//! [`crate::endpoint`] and of the threaded [`crate::runtime`] that carries its events out.

use crate::protocol::Delivery;
use crate::types::{View, ViewId};

/// What a member reports to the application, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message, in the group's total order.
    Deliver(Delivery),
    /// A new view was installed (also the first view, at formation).
    View(View),
    /// This restarted member was admitted; the group had delivered `position` messages before.
    Joined {
        /// Messages the group delivered before this member's first delivery.
        position: u64,
    },
    /// This member was excluded (or lost its quorum) and delivers nothing more.
    Excluded {
        /// The view that excluded it, or the last view it had when it lost its quorum.
        view: ViewId,
    },
    /// This member's clean departure is complete.
    Left,
}
