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

pub mod holdback;
mod transfer;
pub mod view_change;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use log::{debug, info, warn};

use crate::message::{Ballot, Message, Multicast, Proposal};
use crate::types::{Incarnation, MemberId, Payload, ProcessId, Rank, Stamp, View, ViewId};
use holdback::Epoch;
use view_change::{AcceptorState, PendingDecision, Proposer};

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
    /// Most payload bytes in one [`Message::Carry`] chunk of a view change's transfer (a larger single
    /// message travels alone). Keeps every frame of a view change far below the wire's frame limit,
    /// whatever the payloads.
    pub carry_chunk_bytes: usize,
}

/// The default [`Config::carry_chunk_bytes`]: 4 MiB, a sixteenth of the wire's frame limit.
pub const CARRY_CHUNK_BYTES: usize = 4 * 1024 * 1024;

impl Config {
    /// Defaults for `me`: a view change timeout of 20 ticks, a window of 1024 messages, 4 MiB chunks.
    pub fn new(me: Rank) -> Config {
        Config {
            me,
            view_change_timeout_ticks: 20,
            window: 1024,
            carry_chunk_bytes: CARRY_CHUNK_BYTES,
        }
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
        /// The asking process (its connection's handshake and its request name it).
        process: ProcessId,
    },
    /// A joining member's connection to `rank` is up (drivers of a joiner report each one).
    Connected(Rank),
    /// This life is suspected: its connection closed, or it was silent past the failure timeout. A
    /// suspicion names the life the detector watched, so a late report about an old life never counts
    /// against a newer life of the same rank.
    Suspect(MemberId),
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
    /// A member that promised a view change: frozen until the next view is decided (it neither takes
    /// data, acknowledges, multicasts nor delivers), so the report it sent stays exactly its state.
    Changing,
    /// Excluded by a view that does not list it; inert.
    Excluded,
    /// Left cleanly; inert.
    Left,
}

/// Why a message is not yet delivered, as seen by one member: the answer to "why isn't it delivered?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This life.
    pub me: MemberId,
    /// Where it is in its life.
    pub phase: Phase,
    /// The installed view, if any.
    pub view: Option<View>,
    /// The Lamport clock.
    pub lamport: u64,
    /// Messages delivered since formation.
    pub delivered_count: u64,
    /// Undelivered messages held.
    pub held: usize,
    /// The head of the hold-back queue and the members whose acknowledgement it still waits for.
    pub head: Option<(Stamp, Vec<MemberId>)>,
    /// Multicasts waiting to be sent.
    pub backlog: usize,
    /// Members this one suspects.
    pub suspects: Vec<MemberId>,
    /// While joining: the last reason a member gave for not admitting this process yet.
    pub join_refusal: Option<String>,
}

impl std::fmt::Display for Status {
    /// A readable report: what a status query over a member's port answers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "member {} ({:?})", self.me, self.phase)?;
        match &self.view {
            Some(view) => {
                let lives: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
                writeln!(f, "view {}: {} (rank#incarnation)", view.id, lives.join(" "))?
            }
            None => writeln!(f, "view: none yet (joining)")?,
        }
        writeln!(
            f,
            "lamport {}, delivered {}, held back {}, backlog {}",
            self.lamport, self.delivered_count, self.held, self.backlog
        )?;
        match &self.head {
            Some((stamp, waiting)) if waiting.is_empty() => writeln!(f, "head {stamp}: deliverable")?,
            Some((stamp, waiting)) => {
                let lives: Vec<String> = waiting.iter().map(|m| m.to_string()).collect();
                writeln!(
                    f,
                    "head {stamp} (lamport.origin): waiting for acknowledgements from {}",
                    lives.join(" ")
                )?
            }
            None => writeln!(f, "head: nothing held back")?,
        }
        let suspects: Vec<String> = self.suspects.iter().map(|m| m.to_string()).collect();
        write!(
            f,
            "suspects: {}",
            if suspects.is_empty() {
                "none".to_string()
            } else {
                suspects.join(" ")
            }
        )?;
        if let Some(reason) = &self.join_refusal {
            write!(f, "\nlast join refusal: {reason}")?;
        }
        Ok(())
    }
}

/// One member's protocol state machine. See the module docs.
#[derive(Debug)]
pub struct Node {
    config: Config,
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
    pub fn new(config: Config, view: View) -> Node {
        let me = view.member(config.me).expect("the initial view lists every member");
        let mut node = Node::blank(config, me, Phase::Member);
        node.epoch = Some(Epoch::new(view.clone(), me));
        node.view = Some(view);
        node
    }

    /// A restarted process, `process`, that asks to come back as `config.me`. Report each member
    /// connection with [`Input::Connected`]; the node asks to be admitted and becomes a member when a
    /// view lists this rank with this process.
    pub fn rejoin(config: Config, process: ProcessId) -> Node {
        let me = MemberId {
            rank: config.me,
            incarnation: Incarnation(0),
            process,
        };
        Node::blank(config, me, Phase::Joining)
    }

    fn blank(config: Config, me: MemberId, phase: Phase) -> Node {
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
            Input::Multicast(payload) => self.on_multicast(payload, out),
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
            Input::Tick => self.on_tick(out),
            Input::Leave => {
                self.leave_requested = true;
                self.maybe_announce_leave(out);
            }
            Input::ApplicationBusy(busy) => {
                self.application_busy = busy;
                if !busy {
                    self.try_deliver(out);
                    self.pump_backlog(out);
                }
            }
        }
        while let Some((from, msg)) = self.self_queue.pop_front() {
            self.on_message(from, msg, out);
        }
    }

    /// The driver has no more input queued: send acknowledgements held back for coalescing.
    pub fn flush(&mut self, out: &mut Outbox) {
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

    /// The Lamport clock.
    pub fn lamport(&self) -> u64 {
        self.lamport
    }

    /// Multicasts accepted but not yet sent (flow control or a view change holds them).
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// This member's own messages multicast and not yet delivered, plus its backlog: what flow control
    /// counts against [`Config::window`].
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

    fn send_to_others(&mut self, out: &mut Outbox, msg: Message) {
        let me = self.me.rank;
        let ranks: Vec<Rank> = self.view.iter().flat_map(|v| v.ranks()).filter(|r| *r != me).collect();
        for rank in ranks {
            out.push(Output::Send {
                to: rank,
                msg: msg.clone(),
            });
        }
    }

    // ---- the normal case ---------------------------------------------------------------------------

    fn on_multicast(&mut self, payload: Payload, out: &mut Outbox) {
        match self.phase {
            Phase::Excluded | Phase::Left => warn!("member {}: multicast after the end of membership dropped", self.me),
            _ if self.leave_requested => {
                warn!("member {}: multicast after leave() dropped", self.me)
            }
            _ => {
                self.backlog.push_back(payload);
                self.pump_backlog(out);
            }
        }
    }

    /// Sends backlog messages while the view is stable and the window has room.
    fn pump_backlog(&mut self, out: &mut Outbox) {
        while self.phase == Phase::Member && !self.application_busy {
            let Some(epoch) = self.epoch.as_mut() else {
                return;
            };
            if epoch.own_undelivered() >= self.config.window {
                return;
            }
            let Some(payload) = self.backlog.pop_front() else {
                return;
            };
            self.lamport += 1;
            let msg = Multicast {
                origin: self.me.rank,
                seq: epoch.next_own_seq(),
                lamport: self.lamport,
                payload,
            };
            epoch.hold_own(msg.clone());
            let data = Message::Data {
                view: epoch.view.id,
                msg,
                acks: epoch.my_acks(),
            };
            // The data carries this member's acknowledgements: nothing else to send for now.
            self.ack_dirty = false;
            self.send_to_others(out, data);
            self.try_deliver(out);
        }
    }

    fn on_message(&mut self, from: Rank, msg: Message, out: &mut Outbox) {
        if matches!(self.phase, Phase::Excluded | Phase::Left) {
            return;
        }
        if self.phase == Phase::Joining {
            match msg {
                Message::Decide { proposal } => self.on_decide(from, *proposal, out),
                Message::JoinRefused { reason } => {
                    info!("member {}: member {} does not admit us yet: {}", self.me, from, reason);
                    self.last_join_refusal = Some(reason);
                }
                other => debug!(
                    "member {}: {} from {} ignored while joining",
                    self.me,
                    other.kind(),
                    from
                ),
            }
            return;
        }
        if let Some(pending) = &self.pending_decision {
            if msg.view() == Some(pending.proposal.view.id) {
                // A frame of the view this member is about to install (it waits for the cut's
                // payloads): the sender installed it already. Kept, and taken right after the install.
                self.early.push((from, msg));
                return;
            }
        }
        if self.phase == Phase::Changing && from == self.acceptor.promised.proposer && from != self.me.rank {
            // The proposer this member promised is at work: it is not silent.
            self.acceptor.promised_at_tick = self.now_ticks;
        }
        match msg {
            Message::Data { view, msg, acks } => self.on_data(from, view, msg, acks, out),
            Message::Ack { view, acks } => self.on_ack(from, view, acks, out),
            Message::Suspect { view, rank } => {
                // A suspicion from a member this one suspects is not taken: it is on its way out.
                let sender = self.view.as_ref().and_then(|v| v.member(from));
                if self.is_current_member(from, view) && !sender.is_some_and(|s| self.suspects.contains(&s)) {
                    if let Some(member) = self.view.as_ref().and_then(|v| v.member(rank)) {
                        self.suspect(member, false, out);
                    }
                }
            }
            Message::Leave { view } => {
                if self.is_current_member(from, view) {
                    if let Some(member) = self.view.as_ref().and_then(|v| v.member(from)) {
                        self.leaving.insert(member);
                        self.maybe_start_change(out);
                    }
                }
            }
            Message::Prepare { view, ballot } => self.on_prepare(from, view, ballot, out),
            Message::Promise {
                view,
                ballot,
                accepted,
                report,
            } => self.on_promise(from, view, ballot, accepted, report, out),
            Message::Reject { view, ballot, promised } => self.on_reject(view, ballot, promised),
            Message::Accept { view, ballot, proposal } => self.on_accept(from, view, ballot, *proposal, out),
            Message::Accepted { view, ballot } => self.on_accepted(from, view, ballot, out),
            Message::Decide { proposal } => self.on_decide(from, *proposal, out),
            Message::JoinRequest { rank, process } => self.on_join_request(rank, process, out),
            Message::JoinRefused { .. } => {
                debug!("member {}: join refusal from {} ignored", self.me, from)
            }
            Message::Fetch { view, wanted } => self.on_fetch(from, view, wanted, out),
            Message::Carry { view, msgs } => self.on_carry(from, view, msgs, out),
            Message::Progress { view } => {
                if self.is_current_member(from, view) {
                    self.note_progress(from, out);
                }
            }
        }
    }

    /// True if `from` is a member of this member's view and `view` is that view.
    fn is_current_member(&self, from: Rank, view: ViewId) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| v.id == view && v.index_of(from).is_some())
    }

    fn on_data(&mut self, from: Rank, view: ViewId, msg: Multicast, acks: Vec<u64>, out: &mut Outbox) {
        let Some(epoch) = self.epoch.as_mut() else {
            return;
        };
        if epoch.view.id != view {
            // An older view's frame (its content is settled by the cut) or, impossibly, a newer one.
            debug!(
                "member {}: data of view {} from {} dropped at view {}",
                self.me, view, from, epoch.view.id
            );
            return;
        }
        if self.phase == Phase::Changing {
            // After promising, this member takes nothing new of the old view: its report is already out.
            // The message is carried by its origin's report if the origin stays, and delivered by
            // nobody otherwise.
            debug!("member {}: data from {} after promising dropped", self.me, from);
            return;
        }
        let Some(from_index) = epoch.view.index_of(from) else {
            return;
        };
        let lamport = msg.lamport;
        if let Err(refusal) = epoch.hold_received(from_index, msg, &acks) {
            warn!("member {}: data from {} dropped: {:?}", self.me, from, refusal);
            return;
        }
        self.lamport = self.lamport.max(lamport) + 1;
        self.ack_dirty = true;
        self.try_deliver(out);
    }

    fn on_ack(&mut self, from: Rank, view: ViewId, acks: Vec<u64>, out: &mut Outbox) {
        let Some(epoch) = self.epoch.as_mut() else {
            return;
        };
        if epoch.view.id != view {
            return;
        }
        let Some(from_index) = epoch.view.index_of(from) else {
            return;
        };
        if let Err(refusal) = epoch.merge_acks(from_index, &acks) {
            warn!("member {}: ack from {} dropped: {:?}", self.me, from, refusal);
            return;
        }
        self.try_deliver(out);
    }

    fn try_deliver(&mut self, out: &mut Outbox) {
        // A member that promised is frozen until the next view: its report must stay exactly its state,
        // or the cut could miss what it delivers (or count it twice). A busy application waits.
        if self.phase == Phase::Changing || self.application_busy {
            return;
        }
        let mut delivered_any = false;
        while let Some(msg) = self.epoch.as_mut().and_then(|e| e.pop_deliverable()) {
            self.deliver(msg, out);
            delivered_any = true;
        }
        if delivered_any {
            self.pump_backlog(out);
            self.maybe_announce_leave(out);
        }
    }

    /// Hands one message of the current view to the application.
    fn deliver(&mut self, msg: Multicast, out: &mut Outbox) {
        let origin = self.view.as_ref().and_then(|v| v.member(msg.origin));
        let Some(origin) = origin else {
            warn!(
                "member {}: message from non-member {} not delivered",
                self.me, msg.origin
            );
            return;
        };
        self.delivered_count += 1;
        out.push(Output::Deliver(Delivery {
            origin,
            lamport: msg.lamport,
            payload: msg.payload,
            position: self.delivered_count,
        }));
    }

    // ---- membership --------------------------------------------------------------------------------

    /// Records a suspicion, this member's own or one it was told, and passes it on to every other
    /// member the first time: a suspicion a crashing member sent only partly still reaches every live
    /// member, so live members agree on whom they suspect and hence on who coordinates. A member never
    /// suspects itself (it would stop coordinating while the others wait for it). Without a quorum of
    /// unsuspected members left, this member cannot tell "they crashed" from "I am cut off", and stops.
    fn suspect(&mut self, member: MemberId, first_hand: bool, out: &mut Outbox) {
        if member == self.me || !matches!(self.phase, Phase::Member | Phase::Changing) {
            return;
        }
        let Some(view) = self.view.clone() else { return };
        if !view.contains(member) {
            return;
        }
        let new_suspicion = self.suspects.insert(member);
        let new_detection = first_hand && self.detected.insert(member);
        if new_suspicion {
            info!(
                "member {}: suspects {}{}",
                self.me,
                member,
                if first_hand { "" } else { " (told)" }
            );
            self.send_to_others(
                out,
                Message::Suspect {
                    view: view.id,
                    rank: member.rank,
                },
            );
        }
        // Only this member's own observations count here: a suspicion it was told may come from a
        // member that is itself being excluded, and must not make a healthy majority stop.
        if new_detection && self.stop_without_quorum(out) {
            return;
        }
        if new_suspicion || new_detection {
            self.maybe_start_change(out);
        }
    }

    /// Stops this member if the lives its own detector suspects leave no quorum of its view: it cannot
    /// tell "they all crashed" from "I am cut off", and the second is the likely one. True if stopped.
    fn stop_without_quorum(&mut self, out: &mut Outbox) -> bool {
        let Some(view) = self.view.clone() else { return false };
        let unsuspected: Vec<Rank> = view
            .members
            .iter()
            .filter(|m| !self.detected.contains(m))
            .map(|m| m.rank)
            .collect();
        if view.is_quorum(&unsuspected) {
            return false;
        }
        warn!(
            "member {}: no quorum of view {} left unsuspected; stopping to keep one history",
            self.me, view.id
        );
        self.become_inert(Phase::Excluded, view.id, out);
        true
    }

    fn maybe_announce_leave(&mut self, out: &mut Outbox) {
        if !self.leave_requested || self.phase != Phase::Member || !self.backlog.is_empty() {
            return;
        }
        if self.epoch.as_ref().is_some_and(|e| e.own_undelivered() > 0) || self.leaving.contains(&self.me) {
            return;
        }
        let Some(view) = self.view.as_ref().map(|v| v.id) else {
            return;
        };
        info!("member {}: leaving", self.me);
        self.leaving.insert(self.me);
        self.send_to_others(out, Message::Leave { view });
        self.maybe_start_change(out);
    }

    fn on_join_request(&mut self, rank: Rank, process: ProcessId, out: &mut Outbox) {
        let refuse = |node: &Node, reason: String| {
            debug!("member {}: join of rank {} refused: {}", node.me, rank, reason);
            Output::SendToJoiner {
                rank,
                msg: Message::JoinRefused { reason },
            }
        };
        let Some(view) = self
            .view
            .clone()
            .filter(|_| matches!(self.phase, Phase::Member | Phase::Changing))
        else {
            out.push(refuse(self, format!("member {} is not in a running group", self.me)));
            return;
        };
        if rank == self.me.rank || rank.0 == 0 {
            out.push(refuse(self, format!("rank {rank} cannot rejoin through itself")));
            return;
        }
        if let Some(old) = view.member(rank) {
            if old.process == process {
                out.push(refuse(
                    self,
                    format!("process {process} is already life {old} in view {}", view.id),
                ));
                return;
            }
            if old.incarnation.0 == view.id.0 && view.id.0 > 1 {
                // Admitted by this very view (formation's view 1 admits nobody): a request still in
                // flight from before must not admit a second, phantom life.
                out.push(refuse(self, format!("rank {rank} was just admitted as life {old}")));
                return;
            }
            if !self.suspects.contains(&old) {
                out.push(refuse(
                    self,
                    format!("rank {rank} is alive in view {} (life {old})", view.id),
                ));
                return;
            }
        }
        match self.joining.get(&rank).copied() {
            None => info!("member {}: rank {rank} asks to rejoin (process {process})", self.me),
            Some(known) if known == process => {}
            Some(known) => info!(
                "member {}: two processes ask for rank {rank} ({known} and {process}): the larger identity goes on",
                self.me
            ),
        }
        let entry = self.joining.entry(rank).or_insert(process);
        *entry = (*entry).max(process);
        self.maybe_start_change(out);
    }

    /// A joiner may not reach the coordinator: pass its request on (only requests straight from a
    /// joiner are passed on, so two members that disagree on the coordinator cannot bounce one forever).
    fn forward_join_request(&mut self, rank: Rank, out: &mut Outbox) {
        let Some(process) = self.joining.get(&rank).copied() else {
            return;
        };
        if let Some(coordinator) = self.coordinator().filter(|c| *c != self.me.rank) {
            out.push(Output::Send {
                to: coordinator,
                msg: Message::JoinRequest { rank, process },
            });
        }
    }

    /// This joiner's request to be admitted.
    fn own_join_request(&self) -> Message {
        Message::JoinRequest {
            rank: self.me.rank,
            process: self.me.process,
        }
    }

    fn on_connected(&mut self, rank: Rank, out: &mut Outbox) {
        if self.phase == Phase::Joining && self.join_contacts.insert(rank) {
            out.push(Output::Send {
                to: rank,
                msg: self.own_join_request(),
            });
        }
    }

    fn on_tick(&mut self, out: &mut Outbox) {
        self.now_ticks += 1;
        match self.phase {
            Phase::Joining => {
                // Ask again now and then: a refusal ("still alive") may no longer hold.
                if self.now_ticks % self.config.view_change_timeout_ticks.max(1) == 0 {
                    for rank in self.join_contacts.clone() {
                        out.push(Output::Send {
                            to: rank,
                            msg: self.own_join_request(),
                        });
                    }
                }
            }
            Phase::Member | Phase::Changing => self.view_change_timers(out),
            Phase::Excluded | Phase::Left => {}
        }
    }

    /// After installing a view: send what waited, and carry on with what is still wanted.
    fn after_install(&mut self, out: &mut Outbox) {
        // Suspicions this member's detector made of lives the new view keeps still stand: without a
        // quorum of the new view left unsuspected, stop now rather than wait on a view change forever.
        if self.stop_without_quorum(out) {
            return;
        }
        // Suspicions that outlive the view are announced again: a member that just joined never heard them.
        if let Some(view) = self.view.as_ref().map(|v| v.id) {
            for member in self.suspects.clone() {
                self.send_to_others(
                    out,
                    Message::Suspect {
                        view,
                        rank: member.rank,
                    },
                );
            }
        }
        self.pump_backlog(out);
        if self.leave_requested {
            self.leaving.remove(&self.me);
            self.maybe_announce_leave(out);
        }
        self.maybe_start_change(out);
    }
}

#[cfg(test)]
mod tests;
