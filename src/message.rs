//! The member-to-member protocol messages, as plain data.
//!
//! These are what the pure core ([`crate::protocol`]) consumes and produces; [`crate::wire`] turns them
//! into bytes. Connection-level frames (handshakes, heartbeats, the helper's registry frames) are not
//! here: the core never sees them.
//!
//! Every message that belongs to a view carries that view's id, so a frame from an older view, or from
//! a life of a rank that a later view excluded, is recognised and dropped instead of counted.

use crate::types::{Payload, ProcessId, Rank, Stamp, View, ViewId};

/// One multicast message: its identity within its view (`origin`, `seq`), its place in the total order
/// (`lamport`, `origin`), and the application's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Multicast {
    /// The rank that multicast it (its life is the one listed in the view the message belongs to).
    pub origin: Rank,
    /// 1, 2, 3, … per origin within one view: lets acks be cumulative and gap-free.
    pub seq: u64,
    /// The origin's Lamport clock at the multicast.
    pub lamport: u64,
    /// The application's bytes.
    pub payload: Payload,
}

impl Multicast {
    /// The message's position in its view's total order.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            lamport: self.lamport,
            origin: self.origin,
        }
    }
}

/// A run of consecutive multicasts of one origin, as one [`Message::Data`] frame carries them: the
/// origin sends, at each flush, every multicast the window has room for as one frame.
///
/// # Invariants (kept by the constructor and [`Batch::push`])
/// - at least one message;
/// - one origin, and sequence numbers that follow each other without a gap (`first_seq`, `first_seq + 1`,
///   …); so a batch is a seq range, and acknowledgements, cumulative per origin, need no change.
///
/// Each message keeps its own Lamport time: the origin stamps them one after another, so they grow
/// within a batch, but the receiver does not rely on that.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    msgs: Vec<Multicast>,
}

impl Batch {
    /// A batch of one message.
    pub fn new(first: Multicast) -> Batch {
        Batch { msgs: vec![first] }
    }

    /// A batch of `msgs`, if they keep the invariants (some messages, one origin, consecutive seqs).
    pub fn from_msgs(msgs: Vec<Multicast>) -> Option<Batch> {
        let first = msgs.first()?;
        let consecutive = msgs.iter().all(|msg| msg.origin == first.origin)
            && msgs
                .windows(2)
                .all(|pair| pair[0].seq.checked_add(1) == Some(pair[1].seq));
        consecutive.then_some(Batch { msgs })
    }

    /// Appends `msg` if it is the origin's next message; gives it back otherwise.
    pub fn push(&mut self, msg: Multicast) -> Result<(), Multicast> {
        if msg.origin != self.origin() || Some(msg.seq) != self.last_seq().checked_add(1) {
            return Err(msg);
        }
        self.msgs.push(msg);
        Ok(())
    }

    /// The origin of every message.
    pub fn origin(&self) -> Rank {
        self.msgs[0].origin
    }

    /// The first message's `seq`.
    pub fn first_seq(&self) -> u64 {
        self.msgs[0].seq
    }

    /// The last message's `seq`.
    pub fn last_seq(&self) -> u64 {
        self.msgs[self.msgs.len() - 1].seq
    }

    /// The largest Lamport time in the batch.
    pub fn lamport_max(&self) -> u64 {
        self.msgs.iter().map(|m| m.lamport).max().unwrap_or(0)
    }

    /// The messages, in seq order.
    pub fn msgs(&self) -> &[Multicast] {
        &self.msgs
    }

    /// The messages, in seq order.
    pub fn into_msgs(self) -> Vec<Multicast> {
        self.msgs
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Never true (a batch holds at least one message); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }
}

/// A multicast named without its payload: what a view change agrees on. The payloads themselves travel
/// in [`Message::Carry`] chunks, so no consensus message grows with the payloads (a view change with
/// every window full of 1 MiB messages stays far below the frame limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageRef {
    /// The message's Lamport time.
    pub lamport: u64,
    /// Its origin.
    pub origin: Rank,
    /// Its sequence number from that origin in its view.
    pub seq: u64,
}

impl MessageRef {
    /// The message's position in its view's total order.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            lamport: self.lamport,
            origin: self.origin,
        }
    }
}

impl Multicast {
    /// This message named without its payload.
    pub fn reference(&self) -> MessageRef {
        MessageRef {
            lamport: self.lamport,
            origin: self.origin,
            seq: self.seq,
        }
    }
}

/// A proposal number in the view-change consensus: higher round wins, the proposer's rank breaks ties,
/// so two proposers never use the same ballot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    /// Grows each time a proposer retries.
    pub round: u64,
    /// The proposer's rank.
    pub proposer: Rank,
}

/// What a member tells a view-change proposer when it promises: everything the proposer needs to fix
/// the set of this view's messages that the next view must still deliver.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Report {
    /// Messages delivered by this member since the group formed (its global position).
    pub delivered_count: u64,
    /// The stamp of the last message it delivered in the current view, if any.
    pub last_delivered: Option<Stamp>,
    /// Every message of the current view it holds and has not delivered, its own sent ones included,
    /// sorted by stamp (named only: the proposer fetches the payloads it lacks).
    pub held: Vec<MessageRef>,
    /// Ranks it suspects (crashed, silent, or cut off).
    pub suspects: Vec<Rank>,
    /// Ranks that announced a clean departure.
    pub leaving: Vec<Rank>,
    /// Processes that asked to rejoin through this member, with the rank each asks for.
    pub joining: Vec<(Rank, ProcessId)>,
    /// Its Lamport clock.
    pub lamport: u64,
}

/// The value the view-change consensus decides: the next view, and the messages of the current view
/// that every member of the next view delivers when it installs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// The next view (id = current + 1).
    pub view: View,
    /// Messages of the current view still to be delivered, sorted by stamp, named without payloads. A
    /// member skips those it already delivered (every one at or before its last delivered stamp) and
    /// installs only once it holds the payload of every other one ([`Message::Carry`]).
    pub carried: Vec<MessageRef>,
    /// How many messages the group has delivered once `carried` is delivered: the global position at
    /// which the new view starts (a joining member's `STATE`).
    pub start_position: u64,
    /// A floor for every member's Lamport clock in the new view.
    pub lamport: u64,
}

/// A protocol message between members. The rare, large view-change values are boxed so that the
/// common data and ack messages stay small when they travel through channels.
///
/// `view` fields name the sender's current view; in the
/// view-change messages it is the view being replaced (the consensus instance decides `view + 1`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A run of multicasts, with the sender's cumulative acknowledgements piggybacked.
    Data {
        /// The view they are multicast in.
        view: ViewId,
        /// The messages (their `origin` must be the sending rank).
        batch: Batch,
        /// The sender's acknowledgements, as in [`Message::Ack`].
        acks: Vec<u64>,
    },
    /// Cumulative acknowledgements: `acks[i]` = the highest `seq` from the view's `i`-th member that the
    /// sender holds, with every lower one. Sent after receiving, so the sender's clock is past each
    /// acknowledged message's Lamport time.
    Ack {
        /// The view the acknowledgements count in.
        view: ViewId,
        /// One entry per member of the view, in view order.
        acks: Vec<u64>,
    },
    /// The sender suspects `rank` (crashed, silent or cut off) and wants it out of the view.
    Suspect {
        /// The sender's view.
        view: ViewId,
        /// The suspected rank.
        rank: Rank,
    },
    /// The sender leaves the group cleanly (not a crash) and asks for a view without it.
    Leave {
        /// The sender's view.
        view: ViewId,
    },
    /// Consensus phase 1a: the proposer asks for a promise to ignore lower ballots for instance `view + 1`.
    Prepare {
        /// The view being replaced.
        view: ViewId,
        /// The proposer's ballot.
        ballot: Ballot,
    },
    /// Consensus phase 1b: the promise, the last proposal accepted (if any) and the member's report.
    Promise {
        /// The view being replaced.
        view: ViewId,
        /// The ballot promised.
        ballot: Ballot,
        /// The highest-ballot proposal this member accepted for this instance, if any.
        accepted: Option<(Ballot, Box<Proposal>)>,
        /// The member's state.
        report: Box<Report>,
    },
    /// The sender already promised a higher ballot for this instance.
    Reject {
        /// The view being replaced.
        view: ViewId,
        /// The ballot refused.
        ballot: Ballot,
        /// The higher ballot already promised.
        promised: Ballot,
    },
    /// Consensus phase 2a: accept this proposal.
    Accept {
        /// The view being replaced.
        view: ViewId,
        /// The proposer's ballot.
        ballot: Ballot,
        /// The proposed next view and carried messages.
        proposal: Box<Proposal>,
    },
    /// Consensus phase 2b: accepted.
    Accepted {
        /// The view being replaced.
        view: ViewId,
        /// The ballot accepted.
        ballot: Ballot,
    },
    /// The decided next view. Sent by the proposer and relayed by every member that installs it, to the
    /// members of both the old and the new view, so that a member excluded by it learns so.
    Decide {
        /// The decided value.
        proposal: Box<Proposal>,
    },
    /// A restarted process asks to come back with its old rank.
    JoinRequest {
        /// The rank it asks for.
        rank: Rank,
        /// The asking process: the decision that admits it names this identity.
        process: ProcessId,
    },
    /// A join that cannot be granted now, with the reason (for the joiner's log and error).
    JoinRefused {
        /// Why.
        reason: String,
    },
    /// During a view change: send me the payloads of these messages of `view` (the proposer gathering
    /// a cut, or a member that holds a decision but not every payload it carries).
    Fetch {
        /// The view the messages belong to (the one being replaced).
        view: ViewId,
        /// The messages wanted.
        wanted: Vec<MessageRef>,
    },
    /// During a view change: payloads of messages of `view`, one bounded chunk of a transfer.
    Carry {
        /// The view the messages belong to (the one being replaced).
        view: ViewId,
        /// The messages, each whole.
        msgs: Vec<Multicast>,
    },
    /// During a view change: a transfer is moving. Sent for every [`Message::Carry`] chunk received and,
    /// by a proposer that sees transfers moving, to the members waiting on it, so that a big cut counts
    /// as progress and not as a silent proposer.
    Progress {
        /// The view being replaced.
        view: ViewId,
    },
}

impl Message {
    /// A short name for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Data { .. } => "data",
            Message::Ack { .. } => "ack",
            Message::Suspect { .. } => "suspect",
            Message::Leave { .. } => "leave",
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Reject { .. } => "reject",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Decide { .. } => "decide",
            Message::JoinRequest { .. } => "join-request",
            Message::JoinRefused { .. } => "join-refused",
            Message::Fetch { .. } => "fetch",
            Message::Carry { .. } => "carry",
            Message::Progress { .. } => "progress",
        }
    }

    /// The view a message belongs to, for those that name one (a `Decide` names the view it replaces
    /// through its proposal; a join request or refusal names none).
    pub fn view(&self) -> Option<ViewId> {
        match self {
            Message::Data { view, .. }
            | Message::Ack { view, .. }
            | Message::Suspect { view, .. }
            | Message::Leave { view }
            | Message::Prepare { view, .. }
            | Message::Promise { view, .. }
            | Message::Reject { view, .. }
            | Message::Accept { view, .. }
            | Message::Accepted { view, .. }
            | Message::Fetch { view, .. }
            | Message::Carry { view, .. }
            | Message::Progress { view } => Some(*view),
            Message::Decide { proposal } => Some(ViewId(proposal.view.id.0.saturating_sub(1))),
            Message::JoinRequest { .. } | Message::JoinRefused { .. } => None,
        }
    }
}
