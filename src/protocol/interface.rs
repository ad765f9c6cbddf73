//! What a driver hands the core and what it gets back: the settings, the inputs, the outputs and the
//! outbox they land in, and the phases of a member's life. Plain data; the state machine that reads and
//! writes them is [`super::Node`].

use crate::message::Message;
use crate::types::{MemberId, Payload, ProcessId, Rank, View, ViewId};

/// Settings of one member's core. Time is counted in ticks ([`Input::Tick`]); the driver decides how long
/// a tick is.
#[derive(Clone, Debug, Hash)]
pub struct CoreConfig {
    /// This member's rank.
    pub me: Rank,
    /// Ticks a view change may take before the proposer retries with a higher ballot, or before a
    /// member waiting on a silent proposer suspects it.
    pub view_change_timeout_ticks: u64,
    /// Most of this member's own messages that may be multicast but not yet delivered; further
    /// multicasts wait in the backlog (flow control).
    pub window: usize,
    /// Most payload bytes in one [`Message::Carry`] chunk of a view change's transfer (a larger single
    /// message travels alone). Keeps every frame of a view change far below the wire's frame limit,
    /// whatever the payloads.
    pub carry_chunk_bytes: usize,
    /// Most payload bytes in one [`Message::Data`] frame: at a flush, the multicasts the window has room
    /// for go out as runs of at most this many bytes (a larger single message travels alone).
    pub data_batch_bytes: usize,
}

/// The default [`CoreConfig::carry_chunk_bytes`]: 4 MiB, a sixteenth of the wire's frame limit.
pub const CARRY_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The default [`CoreConfig::data_batch_bytes`]: 256 KiB. Large enough that a full window of small
/// messages is one frame per peer (1,024 × 64 B), small enough that one frame never holds up the
/// connection for long.
pub const DATA_BATCH_BYTES: usize = 256 * 1024;

impl CoreConfig {
    /// Defaults for `me`: a view change timeout of 20 ticks, a window of 1024 messages, 4 MiB chunks,
    /// data frames of up to 256 KiB of payloads.
    pub fn new(me: Rank) -> CoreConfig {
        CoreConfig {
            me,
            view_change_timeout_ticks: 20,
            window: 1024,
            carry_chunk_bytes: CARRY_CHUNK_BYTES,
            data_batch_bytes: DATA_BATCH_BYTES,
        }
    }
}

/// Everything that can happen to a member, as the driver reports it.
#[derive(Clone, Debug, Hash)]
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
        /// The asking process (its connection's handshake and its request name it).
        process: ProcessId,
    },
    /// A joining member's connection to `rank` is up (drivers of a joiner report each one).
    Connected(Rank),
    /// This life is suspected: its connection closed, or it was silent past the failure timeout. A
    /// suspicion names the life the detector watched, so a late report about an old life never counts
    /// against a newer life of the same rank.
    Suspect(MemberId),
    /// The detector hears again a life it reported silent (a cut healed, a paused process resumed):
    /// this member withdraws its own suspicion of it, so that what it reports from now on (its
    /// promises) no longer asks to exclude a member that is reachable again. A suspicion for another
    /// reason (a closed connection, a peer that stopped reading) is never withdrawn so.
    HeardAgain(MemberId),
    /// One unit of logical time passed.
    Tick,
    /// The application leaves the group cleanly.
    Leave,
    /// The application is (`true`) or is no longer (`false`) behind on deliveries. While it is, this
    /// member delivers nothing, acknowledges nothing and multicasts nothing, so the group slows down to
    /// its pace instead of queueing without bound (others cannot deliver without its acknowledgements,
    /// and their flow-control windows fill). Safety is unaffected: this is only slowness.
    ApplicationBusy(bool),
}

/// One delivered message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
#[derive(Clone, Debug, Hash)]
pub enum Output {
    /// Send `msg` on the member connection to `to`.
    Send {
        /// The destination rank (never this member itself).
        to: Rank,
        /// The message.
        msg: Message,
    },
    /// Send the same `msg` on the member connection of every rank in `to` (never this member itself):
    /// one output, so a driver can encode the frame once for all of them.
    Broadcast {
        /// The destination ranks, in view order.
        to: Vec<Rank>,
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
#[derive(Debug, Default, Hash)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// A restarted process waiting to be admitted.
    Joining,
    /// A member of an installed view, multicasting and delivering.
    Member,
    /// A member that promised a view change: frozen until the next view is decided (it neither takes
    /// data, acknowledges, multicasts nor delivers), so the report it sent stays exactly its state.
    Changing,
    /// Excluded by a view that does not list it; inert.
    Excluded,
    /// Left cleanly; inert.
    Left,
}
