//! The pure protocol core: one member's state machine, driven by inputs, answering with outputs.
//!
//! No sockets, threads, clocks, channels or randomness live here: the threaded runtime
//! ([`crate::runtime`]) and the simulator in `tests/` are two drivers of the very same [`Node`]. That is
//! what makes a run reproducible from a seed, and correctness something the simulator checks on
//! thousands of interleavings rather than a hope.
//!
//! # Driving a node
//! - inputs: [`Node::handle`] with an [`Input`] (a multicast request, a received message, a suspicion,
//!   a tick of logical time, a leave, a join request), then [`Node::flush`] whenever the driver has no
//!   more input queued (that is when coalesced acknowledgements go out);
//! - outputs: everything lands in an [`Outbox`] the driver drains after each call, in order: messages to
//!   send, deliveries, installed views, the end of this member's life;
//! - getters: [`Node::view`], [`Node::phase`], [`Node::status`] and friends;
//! - tests: [`Node::check_invariants`] after every call.
//!
//! # Life of a member
//! ```text
//!            Node::rejoin                     Node::new (formed group)
//!                 │                                  │
//!                 ▼      Decide lists this life      ▼
//!             Joining ─────────────────────────► Member ◄──────────────┐
//!                                                  │  promise a ballot  │ install the decided view
//!                                                  ▼                    │
//!                                               Changing ───────────────┘
//!                                                  │ a decided view without this life,
//!                                                  ▼ or no quorum left unsuspected
//!                                          Excluded / Left (inert)
//! ```
//!
//! # The algorithm in one paragraph
//! Within a view, members multicast with Lamport timestamps; every message is held in a queue ordered by
//! (Lamport time, origin rank) and delivered once every member of the view acknowledged it
//! ([`holdback`]). A suspicion, a leave or a rejoin request starts a view change ([`view_change`]): a
//! consensus among the view's members that fixes the next view and the cut (the messages of the old view
//! every member of the new view must still deliver), so a message is delivered by all survivors or by
//! none. `docs/PROTOCOL.md` gives the full argument.
//!
//! # Where each part lives
//! | file | what |
//! |---|---|
//! | `interface.rs` | settings, inputs, outputs, the outbox, phases |
//! | `mod.rs` | the node's state, dispatching inputs, getters, the invariant checker |
//! | `data.rs` | multicasts, data and acknowledgements, the delivery rule |
//! | `holdback.rs` | the hold-back queue and acknowledgement table of one view |
//! | `membership.rs` | suspicions and the quorum rule, leaving, join requests, timers |
//! | `view_change.rs` | the view change's state, ballots, promises, its timers |
//! | `proposal.rs` | the proposer once a quorum promised: the proposal and its cut |
//! | `transfer.rs` | moving a cut's payloads in chunks (fetch, carry) |
//! | `install.rs` | accept, decide, install, becoming inert |
//! | `status.rs` | the answer to "why isn't it delivered?" |

mod data;
pub mod holdback;
mod install;
mod interface;
mod membership;
mod proposal;
mod status;
mod transfer;
pub mod view_change;

pub use interface::{CoreConfig, Delivery, Input, Outbox, Output, Phase, CARRY_CHUNK_BYTES, DATA_BATCH_BYTES};
pub use status::Status;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use log::debug;

use crate::message::{Ballot, Message, Multicast, Proposal};
use crate::types::{Incarnation, MemberId, Payload, ProcessId, Rank, Stamp, View, ViewId};
use holdback::Epoch;
use view_change::{AcceptorState, PendingDecision, Proposer};

/// One member's protocol state machine. See the module docs.
#[derive(Clone, Debug, Hash)]
pub struct Node {
    config: CoreConfig,
    /// This life (incarnation 0 until a joiner is admitted).
    me: MemberId,
    phase: Phase,
    /// The installed view; `None` while joining.
    view: Option<View>,
    /// The installed view's ordering state; `None` unless a member.
    epoch: Option<Epoch>,
    lamport: u64,
    /// Messages delivered since the group formed: the position of the last one.
    delivered_count: u64,
    /// Multicasts accepted from the application but not yet sent.
    backlog: VecDeque<Payload>,
    /// Lives of the current view suspected by this member or reported suspected by another.
    suspects: BTreeSet<MemberId>,
    /// The subset of `suspects` this member's own detector reported (first-hand evidence).
    detected: BTreeSet<MemberId>,
    /// Lives of the current view that announced a clean departure.
    leaving: BTreeSet<MemberId>,
    /// Processes asking to rejoin through this member, by the rank each asks for (of two processes
    /// asking for one rank, the larger identity).
    joining: BTreeMap<Rank, ProcessId>,
    /// The application asked to leave (announced once its own messages are delivered).
    leave_requested: bool,
    acceptor: AcceptorState,
    proposer: Option<Proposer>,
    /// Payloads of the current view gathered during a view change (messages this member never
    /// received in the normal way), keyed by stamp.
    gathered: BTreeMap<Stamp, Multicast>,
    /// The payloads of the cut this member delivered when it installed its current view, and the view
    /// they belong to: what a member still behind may fetch from here.
    last_cut: BTreeMap<Stamp, Multicast>,
    last_cut_view: Option<ViewId>,
    /// An `Accept` that waits for payloads this member lacks: (proposer, ballot, value).
    pending_accept: Option<(Rank, Ballot, Proposal)>,
    /// A decided next view that waits for payloads this member lacks.
    pending_decision: Option<PendingDecision>,
    /// Frames of that next view, kept in arrival order until it is installed.
    early: Vec<(Rank, Message)>,
    /// The decision that installed the current view, for members that fall behind.
    last_decision: Option<Proposal>,
    /// When this member, as a proposer in the current view, first held a promise from a member that
    /// another promiser accuses (`awaits_withdrawal` in `proposal.rs`): the accusation gets one
    /// view-change timeout per view to be withdrawn before it is weighed.
    contested_at_tick: Option<u64>,
    /// The ranks whose lives this member's detector found silent in the current view and heard again
    /// since: their reports do not count in a proposal of this member's (`weigh_suspicions`).
    heard_again: BTreeSet<Rank>,
    /// The highest ballot round seen, so a new ballot beats every earlier one.
    highest_round_seen: u64,
    now_ticks: u64,
    /// This member received data since it last sent its acknowledgements.
    ack_dirty: bool,
    /// Messages for this member itself (its own, and kept frames to take again), with their sender,
    /// handled before `handle` returns.
    self_queue: VecDeque<(Rank, Message)>,
    /// Members a joiner can reach (it asks each of them to be admitted).
    join_contacts: BTreeSet<Rank>,
    /// The last reason a member gave for not admitting this joiner.
    last_join_refusal: Option<String>,
    /// Set when an internal check fails in a way that must not panic a running member.
    broken_invariant: Option<String>,
    /// The application is behind on deliveries (see [`Input::ApplicationBusy`]).
    application_busy: bool,
}

impl Node {
    /// A member of a freshly formed group: `view` is [`View::initial`] and must list `config.me`.
    pub fn new(config: CoreConfig, view: View) -> Node {
        let me = view.member(config.me).expect("the initial view lists every member");
        let mut node = Node::blank(config, me, Phase::Member);
        node.epoch = Some(Epoch::new(view.clone(), me));
        node.view = Some(view);
        node
    }

    /// A restarted process, `process`, that asks to come back as `config.me`. Report each member
    /// connection with [`Input::Connected`]; the node asks to be admitted and becomes a member when a
    /// view lists this rank with this process.
    pub fn rejoin(config: CoreConfig, process: ProcessId) -> Node {
        let me = MemberId {
            rank: config.me,
            incarnation: Incarnation(0),
            process,
        };
        Node::blank(config, me, Phase::Joining)
    }

    fn blank(config: CoreConfig, me: MemberId, phase: Phase) -> Node {
        Node {
            config,
            me,
            phase,
            view: None,
            epoch: None,
            lamport: 0,
            delivered_count: 0,
            backlog: VecDeque::new(),
            suspects: BTreeSet::new(),
            detected: BTreeSet::new(),
            leaving: BTreeSet::new(),
            joining: BTreeMap::new(),
            leave_requested: false,
            acceptor: AcceptorState::default(),
            proposer: None,
            gathered: BTreeMap::new(),
            last_cut: BTreeMap::new(),
            last_cut_view: None,
            pending_accept: None,
            pending_decision: None,
            early: Vec::new(),
            last_decision: None,
            contested_at_tick: None,
            heard_again: BTreeSet::new(),
            highest_round_seen: 0,
            now_ticks: 0,
            ack_dirty: false,
            self_queue: VecDeque::new(),
            join_contacts: BTreeSet::new(),
            last_join_refusal: None,
            broken_invariant: None,
            application_busy: false,
        }
    }

    /// Feeds one input; outputs go to `out`, in order.
    pub fn handle(&mut self, input: Input, out: &mut Outbox) {
        match input {
            Input::Multicast(payload) => self.on_multicast(payload),
            Input::Received { from, msg } => self.on_message(from, msg, out),
            Input::JoinRequest { rank, process } => {
                self.on_join_request(rank, process, out);
                self.forward_join_request(rank, out);
            }
            Input::Connected(rank) => self.on_connected(rank, out),
            Input::Suspect(member) => {
                if self.view.as_ref().is_some_and(|v| v.contains(member)) {
                    self.suspect(member, true, out);
                } else {
                    debug!(
                        "member {}: suspicion of {member}, not a life of this view, ignored",
                        self.me
                    );
                }
            }
            Input::HeardAgain(member) => self.withdraw_suspicion(member, out),
            Input::Tick => self.on_tick(out),
            Input::Leave => {
                self.leave_requested = true;
                self.maybe_announce_leave(out);
            }
            Input::ApplicationBusy(busy) => {
                self.application_busy = busy;
                if !busy {
                    self.try_deliver(out);
                }
            }
        }
        self.drain_self_queue(out);
    }

    /// Handles what this member sent itself (its own votes and decisions in a view change), so that no
    /// call returns with its own messages still queued.
    fn drain_self_queue(&mut self, out: &mut Outbox) {
        while let Some((from, msg)) = self.self_queue.pop_front() {
            self.on_message(from, msg, out);
        }
    }

    /// The driver has no more input queued: what was held back for coalescing goes out. First the
    /// multicasts the window has room for, as data frames (runs of consecutive messages, see
    /// [`Message::Data`]) that carry this member's acknowledgements; then, if no data went out, the
    /// acknowledgements alone. Drivers call it after every drain of their input, so a lone multicast
    /// at low rate goes out at once, and the multicasts of a burst go out together.
    pub fn flush(&mut self, out: &mut Outbox) {
        // Delivering its own messages may free this member's window (a group of one delivers them
        // at once): then the backlog goes on. A delivery may also announce this member's leave, whose
        // view change starts with a prepare to itself: handled here, as `handle` does.
        loop {
            while self.pump_backlog(out) {
                self.try_deliver(out);
            }
            if self.self_queue.is_empty() {
                break;
            }
            self.drain_self_queue(out);
        }
        if !self.ack_dirty || self.phase != Phase::Member || self.application_busy {
            return;
        }
        self.ack_dirty = false;
        let Some(epoch) = &self.epoch else { return };
        let msg = Message::Ack {
            view: epoch.view.id,
            acks: epoch.my_acks(),
        };
        self.send_to_others(out, msg);
    }

    /// This life (incarnation 0 while joining).
    pub fn me(&self) -> MemberId {
        self.me
    }

    /// The installed view (none while joining).
    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// True if this member suspects `member` (a suspicion lasts until a view without it is installed).
    pub fn is_suspected(&self, member: MemberId) -> bool {
        self.suspects.contains(&member)
    }

    /// Where this member is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Messages delivered since the group formed (a joiner starts at its join position).
    pub fn delivered_count(&self) -> u64 {
        self.delivered_count
    }

    /// The decision that installed the current view (what tells a member that fell behind, or one
    /// the view dropped, what happened).
    pub fn last_decision(&self) -> Option<&Proposal> {
        self.last_decision.as_ref()
    }

    /// The Lamport clock.
    pub fn lamport(&self) -> u64 {
        self.lamport
    }

    /// Multicasts accepted but not yet sent (flow control or a view change holds them).
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// This member's own messages multicast and not yet delivered, plus its backlog: what flow control
    /// counts against [`CoreConfig::window`].
    pub fn undelivered_own(&self) -> usize {
        self.backlog.len() + self.epoch.as_ref().map_or(0, |e| e.own_undelivered())
    }

    /// The last reason a member gave for not admitting this joiner.
    pub fn last_join_refusal(&self) -> Option<&str> {
        self.last_join_refusal.as_deref()
    }

    /// A snapshot for "why isn't it delivered?".
    pub fn status(&self) -> Status {
        Status {
            me: self.me,
            phase: self.phase,
            view: self.view.clone(),
            lamport: self.lamport,
            delivered_count: self.delivered_count,
            held: self.epoch.as_ref().map_or(0, |e| e.held_len()),
            head: self.epoch.as_ref().and_then(|e| e.head_waiting_for()),
            backlog: self.backlog.len(),
            suspects: self.suspects.iter().copied().collect(),
            join_refusal: self.last_join_refusal.clone(),
        }
    }

    /// Panics if an internal invariant is broken. Drivers call it after every input in tests.
    pub fn check_invariants(&self) {
        if let Some(problem) = &self.broken_invariant {
            panic!("member {}: {problem}", self.me);
        }
        match self.phase {
            Phase::Member | Phase::Changing => {
                let view = self.view.as_ref().expect("a member has a view");
                let epoch = self.epoch.as_ref().expect("a member has an epoch");
                assert_eq!(&epoch.view, view, "epoch and view disagree");
                assert!(view.contains(self.me), "member {} not in its own view", self.me);
                assert_eq!(
                    self.phase == Phase::Changing,
                    self.acceptor.promised != Default::default(),
                    "Changing exactly when a ballot is promised"
                );
                epoch.check();
                for msg in epoch.held() {
                    assert!(msg.lamport <= self.lamport, "clock behind a held message");
                }
                assert!(self.self_queue.is_empty());
            }
            Phase::Joining => assert!(self.view.is_none() && self.epoch.is_none()),
            Phase::Excluded | Phase::Left => assert!(self.epoch.is_none()),
        }
    }

    // ---- sending -----------------------------------------------------------------------------------

    fn send(&mut self, out: &mut Outbox, to: Rank, msg: Message) {
        if to == self.me.rank {
            self.self_queue.push_back((to, msg));
        } else {
            out.push(Output::Send { to, msg });
        }
    }

    /// To every member of the view, this one included.
    fn send_to_view(&mut self, out: &mut Outbox, msg: Message) {
        let ranks: Vec<Rank> = self.view.iter().flat_map(|v| v.ranks()).collect();
        for rank in ranks {
            self.send(out, rank, msg.clone());
        }
    }

    /// To every other member of the view, as one output (the driver encodes it once).
    fn send_to_others(&mut self, out: &mut Outbox, msg: Message) {
        let me = self.me.rank;
        let to: Vec<Rank> = self.view.iter().flat_map(|v| v.ranks()).filter(|r| *r != me).collect();
        if !to.is_empty() {
            out.push(Output::Broadcast { to, msg });
        }
    }
}

#[cfg(test)]
mod tests;
