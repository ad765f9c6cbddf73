//! The endpoint's vocabulary: how its driver names connections, how a connection came to be, and what
//! the endpoint asks its driver to do. Plain data, so the threaded runtime and the simulator carry out
//! the same decisions.

use crate::event::Event;
use crate::state_transfer::Snapshot;
use crate::trace::TraceEvent;
use crate::types::{MemberId, ProcessId, Rank, ViewId};
use crate::wire::Frame;

/// A connection's number, chosen by the driver (connections of one rank come and go; a number is
/// never reused within one process).
pub type ConnId = u64;

/// How a connection came to be, as the driver hands it to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A connection of the formation mesh (or the self-connection): it speaks for the founder of
    /// `rank` whose process the roster names.
    Mesh,
    /// A connection this process dialled while joining, on which `process` of `rank` answered (its
    /// greeting named the life).
    Dialled,
    /// A connection a restarted `process` dialled to this member, asking to come back as `rank`.
    Accepted,
    /// A connection the driver dialled because the endpoint asked ([`Action::Dial`]): the greeting
    /// that the other end sends first says which life answered, and only `life` is taken.
    Redialled {
        /// The life the endpoint asked to dial.
        life: MemberId,
    },
}

/// What the endpoint asks its driver to do, in order.
#[derive(Clone, Debug, Hash)]
pub enum Action {
    /// Append `frame` to the connection's outgoing bytes.
    Write {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Frame,
    },
    /// Append the same `frame` to each of these connections' outgoing bytes: a driver encodes it once.
    Broadcast {
        /// The connections, in the order of the view's ranks.
        conns: Vec<ConnId>,
        /// The frame.
        frame: Frame,
    },
    /// Close the connection once what was written before has gone out (its reader ends with it).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Dial `life` at `host:port` with a rejoin handshake naming this process, then hand the
    /// connection over as [`Origin::Redialled`], or report [`crate::endpoint::Endpoint::dial_failed`].
    Dial {
        /// The life to reach.
        life: MemberId,
        /// Where its directory entry says it listens.
        host: String,
        /// Its port.
        port: u16,
    },
    /// Tell the helper that this restarted process was admitted as `life`, listening at
    /// `host:port`; its answer (the helper's roster) goes to
    /// [`crate::endpoint::Endpoint::learn_addresses`].
    RegisterAdmitted {
        /// The life the group admitted.
        life: MemberId,
        /// The address this process announced.
        host: String,
        /// Its port.
        port: u16,
    },
    /// One of this member's own multicasts was delivered (flow control frees one place of the window).
    OwnDelivered,
    /// Report an event to the application (a delivery is applied to the replicated state first).
    Event(Event),
    /// Hand the application's state, as it is after every event reported so far (the state at
    /// `position`), to each listed new life of `view` on its connection, in snapshot chunks.
    HandOff {
        /// The view that admitted them.
        view: ViewId,
        /// The group's delivered count the state stands at.
        position: u64,
        /// The new lives and their member connections.
        to: Vec<(MemberId, ConnId)>,
    },
    /// Replace the application's state with the snapshot's, before the events that follow.
    Restore(Snapshot),
    /// Record a trace event (its `time_us` is 0: the driver stamps its own clock).
    Trace(TraceEvent),
}

/// What the heartbeat side needs to know about one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Watch {
    /// The rank at the other end.
    pub rank: Rank,
    /// The process at the other end.
    pub process: ProcessId,
    /// A member connection (false: a joiner's, which only gets heartbeats, or one not yet greeted).
    pub is_member: bool,
    /// The life of the installed view it speaks for, if any (only such a connection is watched for
    /// silence and suspected).
    pub life: Option<MemberId>,
}
