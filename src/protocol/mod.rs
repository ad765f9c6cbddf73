//! The pure protocol core: one member's state machine. (API skeleton; implementation in progress.)

use crate::message::Message;
use crate::types::{MemberId, Payload, Rank, View, ViewId};

/// Settings of one member's core. Time is counted in ticks ([`Input::Tick`]); the driver decides how long
/// a tick is.
#[derive(Clone, Debug)]
pub struct Config {
    /// This member's rank.
    pub me: Rank,
    /// Ticks a view change may take before the proposer retries with a higher ballot, or before a
    /// member waiting on a silent proposer suspects it.
    pub view_change_timeout_ticks: u64,
    /// Most of this member's own messages that may be multicast but not yet delivered; further
    /// multicasts wait in the backlog (flow control).
    pub window: usize,
}

impl Config {
    /// Defaults for `me`: a view change timeout of 20 ticks, a window of 1024 messages.
    pub fn new(me: Rank) -> Config {
        Config { me, view_change_timeout_ticks: 20, window: 1024 }
    }
}

/// Everything that can happen to a member, as the driver reports it.
#[derive(Clone, Debug)]
pub enum Input {
    /// The application multicasts these bytes.
    Multicast(Payload),
    /// A protocol message arrived on the member connection of `from` (the driver forwards frames only
    /// from the newest connection of each rank).
    Received {
        /// The sending rank.
        from: Rank,
        /// The message.
        msg: Message,
    },
    /// A restarted process asked, on a rejoin connection, to come back as `rank`.
    JoinRequest {
        /// The rank it asks for.
        rank: Rank,
    },
    /// A joining member's connection to `rank` is up (drivers of a joiner report each one).
    Connected(Rank),
    /// `rank` is suspected: its connection closed, or it was silent past the failure timeout.
    Suspect(Rank),
    /// One unit of logical time passed.
    Tick,
    /// The application leaves the group cleanly.
    Leave,
}

/// One delivered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The life that multicast it.
    pub origin: MemberId,
    /// Its Lamport time.
    pub lamport: u64,
    /// The application's bytes.
    pub payload: Payload,
    /// Its position in the group's total order: 1 for the first message the group ever delivered.
    pub position: u64,
}

/// Everything a member asks its driver to do, in order.
#[derive(Clone, Debug)]
pub enum Output {
    /// Send `msg` on the member connection to `to`.
    Send {
        /// The destination rank (never this member itself).
        to: Rank,
        /// The message.
        msg: Message,
    },
    /// Send `msg` on the rejoin connection of the process asking for `rank`.
    SendToJoiner {
        /// The rank the joiner asks for.
        rank: Rank,
        /// The message.
        msg: Message,
    },
    /// Hand this message to the application.
    Deliver(Delivery),
    /// A view was installed. From here on, frames for a rank belong to the life this view lists.
    ViewInstalled(View),
    /// This joining member is in: the group delivered `position` messages before its first delivery.
    Joined {
        /// Messages the group delivered before this member's first delivery.
        position: u64,
    },
    /// This member was excluded by `view` (which does not list it): it delivers nothing more.
    Excluded {
        /// The view that excluded it.
        view: ViewId,
    },
    /// This member's clean departure is complete: it delivers nothing more.
    Left,
}

/// A sink for outputs: the driver drains it after every call.
#[derive(Debug, Default)]
pub struct Outbox {
    outputs: Vec<Output>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }
    /// Appends one output.
    pub fn push(&mut self, output: Output) {
        self.outputs.push(output);
    }
    /// Takes every output, oldest first.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }
    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }
}

/// Where a member is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A restarted process waiting to be admitted.
    Joining,
    /// A member of an installed view, multicasting and delivering.
    Member,
    /// A member that promised a view change: it neither acknowledges nor multicasts until the next view
    /// is decided (deliveries already fully acknowledged still happen).
    Changing,
    /// Excluded by a view that does not list it; inert.
    Excluded,
    /// Left cleanly; inert.
    Left,
}

/// One member's protocol state machine. See the module docs.
#[derive(Debug)]
pub struct Node {
    _todo: (),
}

impl Node {
    /// A member of a freshly formed group: `view` is [`View::initial`] and must list `config.me`.
    pub fn new(_config: Config, _view: View) -> Node {
        todo!()
    }
    /// A restarted process that asks to come back as `config.me`.
    pub fn rejoin(_config: Config) -> Node {
        todo!()
    }
    /// Feeds one input; outputs go to `out`, in order.
    pub fn handle(&mut self, _input: Input, _out: &mut Outbox) {
        todo!()
    }
    /// The driver has no more input queued: send acknowledgements held back for coalescing.
    pub fn flush(&mut self, _out: &mut Outbox) {
        todo!()
    }
    /// This life (incarnation 0 while joining).
    pub fn me(&self) -> MemberId {
        todo!()
    }
    /// The installed view (none while joining).
    pub fn view(&self) -> Option<&View> {
        todo!()
    }
    /// Where this member is in its life.
    pub fn phase(&self) -> Phase {
        todo!()
    }
    /// Messages delivered since the group formed (a joiner starts at its join position).
    pub fn delivered_count(&self) -> u64 {
        todo!()
    }
    /// The Lamport clock.
    pub fn lamport(&self) -> u64 {
        todo!()
    }
    /// Multicasts accepted but not yet sent (flow control or a view change holds them).
    pub fn backlog(&self) -> usize {
        todo!()
    }
    /// Panics if an internal invariant is broken. Drivers call it after every input in tests.
    pub fn check_invariants(&self) {
        todo!()
    }
}
