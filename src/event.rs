//! What a member reports to its application, in order: the one vocabulary of the pure endpoint
//! (`src/endpoint/`) and of the threaded runtime that carries its events out ([`crate::Events`]).

use crate::protocol::Delivery;
use crate::types::{View, ViewId};

/// What a member reports to its application on [`crate::Member::events`], in this order:
///
/// - **A founder** ([`crate::Member::join`]): first [`Event::View`] with view 1, which lists every
///   founder. Then [`Event::Deliver`]s in the group's total order and an [`Event::View`] at every view
///   change this member takes part in, interleaved as they happen. Every member that installs two
///   consecutive views delivers the same messages between their two `View` events.
/// - **A member that rejoined** ([`crate::Member::rejoin`]): first [`Event::Joined`] (once, before
///   anything else), then [`Event::View`] with the view that admitted it, then as a founder, from its
///   join position on: its first `Deliver`, if any, has position `position + 1`. With a
///   [`crate::Config::state`], the `View` and everything after it are reported once the state is
///   restored from the group's.
/// - **The end**, for both: [`Event::Left`] after a leave, or [`Event::Excluded`]; exactly one of
///   them, as the last event (or [`Event::Failed`], which the runtime reports instead if the
///   member's protocol thread panicked; the pure endpoint never reports it). The messages of the last view that the group still delivers (its *cut*)
///   come as `Deliver`s just before it; no `View` without this member is reported. A member that is
///   shut down (or dropped) reports neither: its events just end.
///
/// Nothing else arrives: no event is repeated, and none is reported to one reader and withheld from
/// another (clones of [`crate::Events`] share one queue).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A message, in the group's total order: the same sequence at every member, each message once.
    /// Its `origin` is the life that multicast it (this member's own messages have
    /// [`crate::Member::id`] as origin, in the order of their [`crate::MessageId`]s); its `position`
    /// counts every message the group delivered, from 1. A [`crate::Config::state`] has applied it
    /// when it is reported.
    Deliver(Delivery),
    /// A view was installed: the group's members from now on, each with its incarnation. Reported for
    /// view 1 at formation, for the view that admitted a rejoined member, and at every later view change
    /// that keeps this member.
    View(View),
    /// This rejoined member was admitted (its first event; founders never get one); the group had
    /// delivered `position` messages before this member's first delivery
    /// ([`crate::Member::join_position`]).
    Joined {
        /// Messages the group delivered before this member's first delivery.
        position: u64,
    },
    /// The last event of a member that the group excluded (it was suspected, for example after a
    /// pause), that lost its quorum, or that rejoined and whose sponsor left before handing over the
    /// state. It delivers nothing more; it may rejoin as a new life of its rank.
    Excluded {
        /// The view that excluded it, or the last view it had when it lost its quorum.
        view: ViewId,
    },
    /// The last event of a member that left ([`crate::Member::leave`], [`crate::Member::start_leave`]):
    /// every message it multicast before the leave began is delivered, and the group installed a view
    /// without it.
    Left,
    /// The last event of a member whose protocol thread panicked (a bug in tom, or a panic in the
    /// application's [`crate::Replicated`] callbacks, which run on it), with the panic's message. The
    /// member delivers nothing more and has closed its connections, so the group sees a crash; its
    /// process should end (it may come back as a new life of its rank).
    Failed {
        /// The panic's message.
        reason: String,
    },
}
