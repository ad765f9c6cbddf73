//! One member's pure engine: the protocol core ([`Node`]) and the connections it talks through.
//!
//! The threaded runtime and the simulator both drive an [`Endpoint`]: they hand it what happened
//! (a connection opened or closed, a frame arrived, a tick, a suspicion, the application's requests)
//! and carry out the [`Action`]s it asks for (write a frame, close a connection, dial a life, report an
//! event, hand the state over). Like the core, it has no sockets, threads, clocks or randomness
//! inside; time comes in with each tick. So every rule about *which connection counts* is run by the
//! simulator's seeds exactly as the runtime runs it:
//!
//! - which connection speaks for which life, at formation, when a process asks to rejoin, and at every
//!   view ([`roles`]);
//! - what a process asking to rejoin may send before a view admits it, and what is kept for a life of
//!   the view that has no connection yet ([`early`]);
//! - a member of the view this member has had no connection to for a failure timeout is suspected;
//! - whom to dial and when, and which addresses this member knows and hands on ([`directory`]);
//! - the order of the state transfer ([`snapshot`]).
//!
//! # The driver contract
//! Hand inputs one at a time; after each call, take [`Endpoint::take_actions`] and carry them out in
//! order; call [`Endpoint::flush`] when no input is waiting. A connection's frames are handed over in
//! the order they arrived, and [`Endpoint::closed`] after its last one.
//!
//! # Invariants
//! - a connection has one role: a rank's member connection (at most one per rank) or a joiner's;
//! - only a member connection whose process the installed view lists for its rank feeds the core;
//! - frames of a joiner connection reach the core, in order, only once a view admits its process.

mod action;
pub mod directory;
pub mod early;
pub mod roles;
pub mod snapshot;

use std::collections::{BTreeMap, BTreeSet};

use log::{debug, info, warn};

pub use action::{Action, ConnId, Origin, Watch};
use directory::Directory;
pub use early::{early_bytes_max, EarlyFrames};
use roles::Link;
use snapshot::{AtView, Chunk, Held, Restored, StateTransfer};

use crate::event::Event;
use crate::message::Message;
use crate::protocol::{Input, Node, Outbox, Output, Phase};
use crate::trace::{self, EventKind, TraceEvent};
use crate::types::{MemberId, ProcessId, Rank, View};
use crate::wire::{Frame, Roster, RosterEntry};

/// How an endpoint behaves; the driver's timing, in the driver's milliseconds.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A member of the view with no connection for this long is suspected.
    pub failure_timeout_ms: u64,
    /// A life left unconnected is dialled again after this long.
    pub redial_interval_ms: u64,
    /// Most of this member's own messages in flight (bounds the early frames).
    pub window: usize,
    /// The group's size N.
    pub size: u16,
    /// The application's state is transferred to returning members.
    pub state_transfer: bool,
    /// For a restarted process: the address it announced, registered with the helper once admitted.
    pub announce: Option<(String, u16)>,
    /// Emit [`Action::Trace`] for every protocol event.
    pub trace: bool,
}

/// One connection as the endpoint knows it.
#[derive(Debug)]
struct Conn {
    role: Role,
    /// The process at the other end: the connection speaks for it only.
    process: ProcessId,
    /// What a joiner connection sent beyond its join request, for when a view admits its process.
    early: EarlyFrames,
    /// The address a joiner connection's process announced, committed once a view admits it.
    announced: Option<(String, u16)>,
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The member connection of a rank (or this member's own).
    Member(Rank),
    /// A restarted process asking to come back as this rank.
    Joiner(Rank),
    /// Dialled on the endpoint's request; taken once its greeting names `life`.
    Greeting(MemberId),
}

/// A member's protocol core and its connections (see the module documentation).
#[derive(Debug)]
pub struct Endpoint {
    node: Node,
    settings: Settings,
    conns: BTreeMap<ConnId, Conn>,
    /// The current member connection of each rank.
    member_conn: BTreeMap<Rank, ConnId>,
    /// Connections of restarted processes asking to rejoin, by the rank each asks for and its process.
    joiner_conn: BTreeMap<(Rank, ProcessId), ConnId>,
    /// The member connections this process dialled before a view admitted it (see [`roles`]).
    dialled_while_joining: BTreeSet<ConnId>,
    /// Frames for lives of the view without a connection yet, by rank, with the process they are for.
    unsent: BTreeMap<Rank, (ProcessId, EarlyFrames)>,
    /// Since when (ms) each member of the view has had no member connection.
    unconnected_since_ms: BTreeMap<Rank, u64>,
    now_ms: u64,
    directory: Directory,
    transfer: StateTransfer,
    /// Connections to close, and member connections to turn into joiner connections, once the current
    /// outputs are carried out (their last frames still go out).
    to_close: Vec<ConnId>,
    to_demote: Vec<(Rank, ConnId)>,
    /// Early frames of connections just promoted, for the core once the outputs are carried out.
    replay: Vec<(ConnId, Vec<Frame>)>,
    actions: Vec<Action>,
    roles_changed: bool,
    finished: bool,
}

impl Endpoint {
    /// An endpoint around `node`, knowing the addresses in `directory` (the roster it formed or
    /// rejoined with). A founder passes the view it formed with as `formed`: it is reported first.
    pub fn new(node: Node, settings: Settings, directory: Vec<RosterEntry>, formed: Option<View>) -> Endpoint {
        let expecting = node.phase() == Phase::Joining && settings.state_transfer;
        let redial = settings.redial_interval_ms;
        let mut endpoint = Endpoint {
            node,
            settings,
            conns: BTreeMap::new(),
            member_conn: BTreeMap::new(),
            joiner_conn: BTreeMap::new(),
            dialled_while_joining: BTreeSet::new(),
            unsent: BTreeMap::new(),
            unconnected_since_ms: BTreeMap::new(),
            now_ms: 0,
            directory: Directory::new(directory, redial),
            transfer: StateTransfer::new(expecting),
            to_close: Vec::new(),
            to_demote: Vec::new(),
            replay: Vec::new(),
            actions: Vec::new(),
            roles_changed: false,
            finished: false,
        };
        let joining = endpoint.node.phase() == Phase::Joining;
        endpoint.trace(EventKind::Start {
            clock: "wall".into(),
            joining,
        });
        if let Some(view) = formed {
            endpoint.trace_output(&Output::ViewInstalled(view.clone()));
            endpoint.actions.push(Action::Event(Event::View(view)));
        }
        endpoint
    }

    /// The protocol core (for status queries and invariant checks).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// True once this member delivers nothing more (excluded, left, or stopped).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// What to do, in order, since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// True (once) if some connection changed role since the last call: the heartbeat side should
    /// read [`Endpoint::watch`] again.
    pub fn take_roles_changed(&mut self) -> bool {
        std::mem::take(&mut self.roles_changed)
    }

    /// How the heartbeat side treats `conn`.
    pub fn watch(&self, conn: ConnId) -> Option<Watch> {
        let entry = self.conns.get(&conn)?;
        let (rank, is_member) = match entry.role {
            Role::Member(rank) => (rank, self.member_conn.get(&rank) == Some(&conn)),
            Role::Joiner(rank) => (rank, false),
            Role::Greeting(life) => (life.rank, false),
        };
        let life = if is_member {
            self.listed_life(rank, entry.process)
        } else {
            None
        };
        Some(Watch {
            rank,
            process: entry.process,
            is_member,
            life,
        })
    }

    /// The rank at the other end of `conn`.
    pub fn rank_of(&self, conn: ConnId) -> Option<Rank> {
        self.watch(conn).map(|w| w.rank)
    }

    /// The addresses this member knows (what it hands to a process that rejoins through it).
    pub fn directory(&self) -> &[RosterEntry] {
        self.directory.entries()
    }

    // ---- connections --------------------------------------------------------------------------------

    /// A connection opened: of `process` for `rank`, as `origin` says.
    pub fn opened(&mut self, conn: ConnId, origin: Origin, rank: Rank, process: ProcessId) {
        let me = self.node.me();
        match origin {
            Origin::Mesh => {
                self.add(conn, Role::Member(rank), process);
                self.handle(Input::Connected(rank));
            }
            Origin::Dialled => {
                self.add(conn, Role::Member(rank), process);
                if self.node.phase() == Phase::Joining {
                    self.dialled_while_joining.insert(conn);
                }
                self.handle(Input::Connected(rank));
            }
            Origin::Accepted => {
                let admitted = roles::arrives_admitted(self.node.view(), rank, process, &self.links(), |m| {
                    self.node.is_suspected(m) || self.directory.was_linked(m)
                });
                self.add(
                    conn,
                    if admitted {
                        Role::Member(rank)
                    } else {
                        Role::Joiner(rank)
                    },
                    process,
                );
                self.greet(conn, rank);
                if admitted {
                    info!("member {me}: process {process} of rank {rank}, admitted by the current view, connects: its member connection");
                    self.send_unsent(rank);
                } else {
                    info!("member {me}: process {process} connects to rejoin as rank {rank}");
                    if let Some(old) = self.joiner_conn.insert((rank, process), conn) {
                        self.close(old);
                    }
                }
            }
            Origin::Redialled { life } => self.add(conn, Role::Greeting(life), process),
        }
        self.after_outputs();
    }

    /// A frame arrived on `conn`.
    pub fn frame(&mut self, conn: ConnId, frame: Frame) {
        self.on_frame(conn, frame);
        self.after_outputs();
    }

    /// `conn` ended (end of file, read or write error): the life it spoke for is suspected.
    pub fn closed(&mut self, conn: ConnId, reason: &str) {
        let me = self.node.me();
        self.dialled_while_joining.remove(&conn);
        let Some(closed) = self.conns.remove(&conn) else { return };
        self.roles_changed = true;
        match closed.role {
            Role::Member(rank) if self.member_conn.get(&rank) == Some(&conn) => {
                self.member_conn.remove(&rank);
                if rank != me.rank {
                    match self.listed_life(rank, closed.process) {
                        Some(life) => {
                            info!("member {me}: connection to {life} lost ({reason}): suspecting it");
                            self.handle(Input::Suspect(life));
                        }
                        None => info!(
                            "member {me}: connection to process {} of rank {rank}, no life of the view, closed: {reason}",
                            closed.process
                        ),
                    }
                }
            }
            Role::Joiner(rank) => {
                if self.joiner_conn.get(&(rank, closed.process)) == Some(&conn) {
                    self.joiner_conn.remove(&(rank, closed.process));
                }
                info!("member {me}: connection {conn} of rank {rank}, asking to rejoin, closed: {reason}");
            }
            Role::Greeting(life) => {
                info!("member {me}: connection dialled to {life} closed before its greeting: {reason}");
                self.directory.dial_ended(life);
            }
            Role::Member(_) => {}
        }
        self.after_outputs();
    }

    /// A dial the endpoint asked for found nobody (or no handshake).
    pub fn dial_failed(&mut self, life: MemberId, reason: &str) {
        warn!("member {}: could not dial {life}: {reason}", self.node.me());
        self.directory.dial_ended(life);
    }

    /// The helper's roster (its answer to [`Action::RegisterAdmitted`]): addresses to dial.
    pub fn learn_addresses(&mut self, entries: Vec<RosterEntry>) {
        let me = self.node.me();
        for moved in self.directory.learn(me, entries) {
            info!(
                "member {me}: rank {} (life {}) now at {}:{}",
                moved.rank, moved.incarnation.0, moved.host, moved.port
            );
        }
    }

    // ---- time and the application -------------------------------------------------------------------

    /// One tick at `now_ms`: the core's timers, the unconnected suspicion, and the dials now due.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.handle(Input::Tick);
        self.suspect_unconnected();
        self.dial_unconnected();
        self.after_outputs();
    }

    /// An input for the core from the driver or the application: a suspicion, a multicast, a leave,
    /// flow control.
    pub fn input(&mut self, input: Input) {
        self.handle(input);
        self.after_outputs();
    }

    /// No input is waiting: what the core coalesced goes out.
    pub fn flush(&mut self) {
        let mut out = Outbox::new();
        self.node.flush(&mut out);
        self.dispatch(out);
        self.after_outputs();
    }

    /// The driver stops this member (the process ends).
    pub fn stop(&mut self) {
        self.trace(EventKind::Stop);
        self.finished = true;
    }
}

// ---- inside -------------------------------------------------------------------------------------------

impl Endpoint {
    fn add(&mut self, conn: ConnId, role: Role, process: ProcessId) {
        if let Role::Member(rank) = role {
            self.member_conn.insert(rank, conn);
            if let Some(life) = self.listed_life(rank, process) {
                self.directory.linked(life);
            }
        }
        let limit = early_bytes_max(self.settings.window.max(1));
        self.conns.insert(
            conn,
            Conn {
                role,
                process,
                early: EarlyFrames::new(limit),
                announced: None,
            },
        );
        self.roles_changed = true;
    }

    fn write(&mut self, conn: ConnId, frame: Frame) {
        self.actions.push(Action::Write { conn, frame });
    }

    /// Closes a connection once what is queued on it has gone out.
    fn close(&mut self, conn: ConnId) {
        self.dialled_while_joining.remove(&conn);
        if self.conns.remove(&conn).is_some() {
            self.roles_changed = true;
            self.actions.push(Action::Close { conn });
        }
    }

    /// Closes a connection and forgets whichever role it had.
    fn forget(&mut self, conn: ConnId) {
        self.member_conn.retain(|_, c| *c != conn);
        self.joiner_conn.retain(|_, c| *c != conn);
        self.close(conn);
    }

    fn links(&self) -> BTreeMap<Rank, Link> {
        self.member_conn
            .iter()
            .filter_map(|(&rank, &conn)| {
                let process = self.conns.get(&conn)?.process;
                Some((rank, Link { conn, process }))
            })
            .collect()
    }

    /// The life of the installed view that a connection of `process` for `rank` speaks for.
    fn listed_life(&self, rank: Rank, process: ProcessId) -> Option<MemberId> {
        self.node
            .view()
            .and_then(|view| view.member(rank))
            .filter(|m| m.process == process)
    }

    /// True if frames of `process` for `rank` may reach the core: the installed view lists that rank's
    /// life with that very process (before a first view, a restarted process takes its dials' frames:
    /// its core installs only a decision that admits it).
    fn speaks_for_listed_life(&self, rank: Rank, process: ProcessId) -> bool {
        self.node
            .view()
            .map_or(true, |view| view.member(rank).is_some_and(|m| m.process == process))
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame) {
        let Some((role, process)) = self.conns.get(&conn).map(|c| (c.role, c.process)) else {
            return;
        };
        let me = self.node.me();
        match (role, frame) {
            (Role::Greeting(life), Frame::Roster(roster)) => self.on_greeting(conn, life, roster),
            (Role::Member(rank), Frame::Protocol(msg)) if self.member_conn.get(&rank) == Some(&conn) => {
                if self.speaks_for_listed_life(rank, process) {
                    self.handle(Input::Received { from: rank, msg });
                } else {
                    debug!(
                        "member {me}: {} from process {process} of rank {rank}, not the life the view lists, dropped",
                        msg.kind()
                    );
                }
            }
            (Role::Member(rank), Frame::Protocol(_)) => {
                debug!("member {me}: frame from an old connection of {rank} dropped")
            }
            (
                Role::Joiner(rank),
                Frame::Protocol(Message::JoinRequest {
                    rank: asked,
                    process: asking,
                }),
            ) => {
                if asked == rank && asking == process {
                    self.handle(Input::JoinRequest { rank, process });
                } else {
                    warn!("member {me}: unexpected join-request frame on connection {conn} dropped: the connection of process {process} asking for rank {rank} asked for rank {asked} as process {asking}");
                }
            }
            (Role::Member(rank) | Role::Joiner(rank), Frame::Register(register))
                if register.rejoin == Some(rank) && register.process == process && register.admitted.is_none() =>
            {
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.announced = Some((register.host, register.port));
                }
            }
            // Sent after a view admitted that process, which this member has not installed yet.
            (Role::Joiner(rank), frame @ (Frame::Protocol(_) | Frame::Snapshot { .. })) => {
                self.keep_early(conn, rank, frame)
            }
            // A member's greeting on a connection this process dialled while joining: read before the
            // connection was handed over; a repeated one carries nothing new.
            (Role::Member(_), Frame::Roster(_)) => {}
            (
                Role::Member(rank),
                Frame::Snapshot {
                    view,
                    position,
                    offset,
                    total,
                    chunk,
                },
            ) if self.member_conn.get(&rank) == Some(&conn) => {
                let chunk = Chunk {
                    from: (rank, process),
                    view,
                    position,
                    offset,
                    total,
                    bytes: chunk,
                };
                match self.transfer.on_chunk(chunk) {
                    Ok(Some(restored)) => self.restore(restored),
                    Ok(None) => {}
                    Err(problem) => warn!("member {me}: {problem}; dropped"),
                }
            }
            (_, other) => warn!(
                "member {me}: unexpected {} frame on connection {conn} dropped",
                other.kind()
            ),
        }
    }

    /// The greeting on a connection this member dialled to `life`: taken as its member connection if
    /// `life` answered, the view still lists it, and no member connection of it came meanwhile.
    fn on_greeting(&mut self, conn: ConnId, life: MemberId, roster: Roster) {
        let me = self.node.me();
        self.learn_addresses(roster.members);
        let answered = roster.from;
        let wanted = answered == Some(life)
            && self.listed_life(life.rank, life.process).is_some()
            && !self.member_conn.contains_key(&life.rank)
            && !self.directory.was_linked(life);
        self.directory.dial_ended(life);
        if !wanted {
            info!("member {me}: dialled {life}; {answered:?} answered, not taken");
            self.close(conn);
            return;
        }
        info!("member {me}: dialled {life}, which it had no connection to");
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.role = Role::Member(life.rank);
        }
        self.member_conn.insert(life.rank, conn);
        self.directory.linked(life);
        self.roles_changed = true;
        self.send_unsent(life.rank);
    }

    /// The first frame on a connection a restarted process dialled (heartbeats aside): every address
    /// this member knows, and the life that answers, which is the life the connection speaks with.
    fn greet(&mut self, conn: ConnId, rank: Rank) {
        let roster = Roster {
            rank,
            size: self.settings.size,
            members: self.directory.entries().to_vec(),
            from: Some(self.node.me()),
        };
        self.write(conn, Frame::Roster(roster));
    }

    /// Keeps a frame of a joiner connection until a view admits its process; a connection that sends
    /// more than [`early_bytes_max`] before that is closed.
    fn keep_early(&mut self, conn: ConnId, rank: Rank, frame: Frame) {
        let me = self.node.me();
        let Some(entry) = self.conns.get_mut(&conn) else { return };
        let kind = frame.kind();
        if entry.early.keep(frame).is_err() {
            warn!("member {me}: connection {conn} of rank {rank} sent over {} bytes before a view admitted it; closing it", entry.early.limit());
            self.forget(conn);
            return;
        }
        if entry.early.len() == 1 {
            info!("member {me}: {kind} frame on connection {conn} of rank {rank}, asking to rejoin, held until a view admits it");
        }
    }

    /// Feeds one input to the core and carries out what it outputs.
    fn handle(&mut self, input: Input) {
        let traced = if self.settings.trace {
            trace::input_event(&self.node, &input)
        } else {
            None
        };
        let mut out = Outbox::new();
        self.node.handle(input, &mut out);
        if let Some(kind) = traced {
            self.trace(kind);
        }
        self.dispatch(out);
    }

    /// The core's outputs, in order, as actions.
    fn dispatch(&mut self, mut out: Outbox) {
        let me = self.node.me();
        let outputs: Vec<Output> = out.drain().collect();
        for output in outputs {
            self.trace_output(&output);
            match output {
                Output::Send { to, msg } => match self.member_conn.get(&to).copied() {
                    Some(conn) => self.write(conn, Frame::Protocol(msg)),
                    None => self.keep_unsent(to, Frame::Protocol(msg)),
                },
                Output::SendToJoiner { rank, msg } => {
                    // Every process asking for that rank hears it (a refusal is about the rank).
                    let conns: Vec<ConnId> = self
                        .joiner_conn
                        .range((rank, ProcessId(0))..=(rank, ProcessId(u64::MAX)))
                        .map(|(_, conn)| *conn)
                        .collect();
                    for conn in conns {
                        self.write(conn, Frame::Protocol(msg.clone()));
                    }
                }
                Output::Deliver(delivery) => {
                    if delivery.origin == me {
                        self.actions.push(Action::OwnDelivered);
                    }
                    self.report(Event::Deliver(delivery));
                }
                Output::ViewInstalled(view) => self.installed(view),
                Output::Joined { position } => self.actions.push(Action::Event(Event::Joined { position })),
                Output::Excluded { view } => {
                    self.actions.push(Action::Event(Event::Excluded { view }));
                    self.finished = true;
                }
                Output::Left => {
                    self.actions.push(Action::Event(Event::Left));
                    self.finished = true;
                }
            }
        }
    }

    /// After the outputs of one call: closes and demotions decided at a view, then the early frames of
    /// connections it promoted, in the order they arrived.
    fn after_outputs(&mut self) {
        for conn in std::mem::take(&mut self.to_close) {
            self.forget(conn);
        }
        for (rank, conn) in std::mem::take(&mut self.to_demote) {
            self.demote(rank, conn);
        }
        let replay = std::mem::take(&mut self.replay);
        if !replay.is_empty() {
            for (conn, frames) in replay {
                for frame in frames {
                    self.on_frame(conn, frame);
                }
            }
            self.after_outputs();
        }
    }

    fn installed(&mut self, view: View) {
        self.unsent
            .retain(|rank, (process, _)| view.member(*rank).is_some_and(|m| m.process == *process));
        self.adopt(&view);
        self.commit_addresses(&view);
        self.roles_changed = true;
        self.announce_admission(&view);
        self.transfer_state(&view);
        self.report(Event::View(view));
    }

    /// A new view: joiner connections of the processes it admitted become member connections,
    /// connections that speak for no life it lists close once the decision (already queued) has gone
    /// out, and a life just admitted keeps its dials to processes still joining ([`roles`]).
    fn adopt(&mut self, view: &View) {
        let me = self.node.me();
        let adoption = roles::adopt(me, view, &self.links(), &self.joiner_conn, &self.dialled_while_joining);
        for (rank, conn) in adoption.promote {
            let Some(entry) = self.conns.get_mut(&conn) else {
                continue;
            };
            let process = entry.process;
            entry.role = Role::Member(rank);
            if !entry.early.is_empty() {
                debug!(
                    "member {me}: {} early frames ({} bytes) of rank {rank} to replay",
                    entry.early.len(),
                    entry.early.bytes()
                );
                self.replay.push((conn, entry.early.take()));
            }
            self.joiner_conn.remove(&(rank, process));
            self.member_conn.insert(rank, conn);
            if let Some(life) = view.member(rank).filter(|m| m.process == process) {
                self.directory.linked(life);
            }
        }
        for &(rank, conn) in &adoption.demote {
            info!("member {me}: connection {conn}, dialled while joining, speaks for no life of rank {rank} in view {}: kept as its process's joiner connection", view.id);
        }
        self.to_demote.extend(adoption.demote);
        self.to_close.extend(adoption.close);
    }

    /// A member connection dialled while joining, to a process the view does not list, becomes that
    /// process's joiner connection (after the decision went out on it).
    fn demote(&mut self, rank: Rank, conn: ConnId) {
        if self.member_conn.get(&rank) != Some(&conn) {
            return;
        }
        self.member_conn.remove(&rank);
        self.dialled_while_joining.remove(&conn);
        let Some(entry) = self.conns.get_mut(&conn) else { return };
        entry.role = Role::Joiner(rank);
        let process = entry.process;
        self.roles_changed = true;
        if let Some(older) = self.joiner_conn.insert((rank, process), conn) {
            self.close(older);
        }
    }

    /// The addresses the lives of `view` announced on their connections, now that the view admits
    /// their processes, go to the directory; and this member's own entry names its current life.
    fn commit_addresses(&mut self, view: &View) {
        let me = self.node.me();
        let mut admitted: Vec<RosterEntry> = Vec::new();
        for member in view.members.iter().filter(|m| m.rank != me.rank) {
            let announced = self
                .member_conn
                .get(&member.rank)
                .and_then(|conn| self.conns.get(conn))
                .filter(|conn| conn.process == member.process)
                .and_then(|conn| conn.announced.clone());
            if let Some((host, port)) = announced {
                admitted.push(RosterEntry {
                    rank: member.rank,
                    host,
                    port,
                    incarnation: member.incarnation,
                    process: member.process,
                });
            }
        }
        if let Some(own) = self.directory.own(me.rank).cloned() {
            admitted.push(RosterEntry {
                incarnation: me.incarnation,
                process: me.process,
                ..own
            });
        }
        self.learn_addresses(admitted);
    }

    /// A restarted process just installed the view that admitted it: it registers with the helper,
    /// whose roster then names the lives it may have to dial.
    fn announce_admission(&mut self, view: &View) {
        let me = self.node.me();
        if me.incarnation.0 != view.id.0 {
            return;
        }
        if let Some((host, port)) = self.settings.announce.take() {
            self.actions.push(Action::RegisterAdmitted { life: me, host, port });
        }
    }

    /// A frame for a life of the view this member has no connection to yet: kept, in order, for the
    /// connection, up to the early-frame bound (then dropped: the life will be suspected for want of a
    /// connection anyway).
    fn keep_unsent(&mut self, to: Rank, frame: Frame) {
        let me = self.node.me();
        let listed = self.node.view().and_then(|v| v.member(to));
        // Not for a suspected life: its connection broke (or it is silent), and a view without it comes.
        let Some(life) = listed.filter(|life| to != me.rank && !self.node.is_suspected(*life)) else {
            debug!("member {me}: no connection to {to}; {} dropped", frame.kind());
            return;
        };
        let limit = early_bytes_max(self.settings.window.max(1));
        let kept = self
            .unsent
            .entry(to)
            .or_insert_with(|| (life.process, EarlyFrames::new(limit)));
        if kept.0 != life.process {
            *kept = (life.process, EarlyFrames::new(limit));
        }
        if kept.1.keep(frame).is_err() {
            warn!("member {me}: over {limit} bytes for {life}, which has no connection: dropped");
            self.unsent.remove(&to);
        }
    }

    /// The frames kept for `rank` while it had no connection go out on its member connection, first.
    fn send_unsent(&mut self, rank: Rank) {
        let Some((process, mut frames)) = self.unsent.remove(&rank) else {
            return;
        };
        let conn = self
            .member_conn
            .get(&rank)
            .copied()
            .filter(|c| self.conns.get(c).is_some_and(|c| c.process == process));
        if let Some(conn) = conn {
            debug!(
                "member {}: {} frames kept for {rank} while it had no connection go out",
                self.node.me(),
                frames.len()
            );
            for frame in frames.take() {
                self.write(conn, frame);
            }
        }
    }

    /// The members of the view this member has no member connection to (of the listed process).
    fn unconnected(&self) -> Vec<MemberId> {
        let me = self.node.me();
        let Some(view) = self.node.view().filter(|_| self.node.phase() == Phase::Member) else {
            return Vec::new();
        };
        roles::unconnected(me.rank, view, &self.links())
            .into_iter()
            .filter_map(|rank| view.member(rank))
            .collect()
    }

    /// A member of the view without a member connection cannot take part: after a failure timeout
    /// without one, it is suspected, as a silent member would be, rather than left to stall the group.
    fn suspect_unconnected(&mut self) {
        let me = self.node.me();
        let unconnected = self.unconnected();
        let now_ms = self.now_ms;
        self.unconnected_since_ms
            .retain(|rank, _| unconnected.iter().any(|m| m.rank == *rank));
        for life in unconnected {
            let since_ms = *self.unconnected_since_ms.entry(life.rank).or_insert(now_ms);
            if now_ms.saturating_sub(since_ms) > self.settings.failure_timeout_ms {
                warn!(
                    "member {me}: no connection to {life} for over {} ms: suspecting it",
                    self.settings.failure_timeout_ms
                );
                // Again only after another timeout, should the suspicion not lead to a view change.
                self.unconnected_since_ms.insert(life.rank, now_ms);
                self.handle(Input::Suspect(life));
            }
        }
    }

    /// Asks the driver to dial the unconnected lives this member is the one to dial ([`directory`]).
    fn dial_unconnected(&mut self) {
        let me = self.node.me();
        let unconnected: Vec<MemberId> = self
            .unconnected()
            .into_iter()
            .filter(|m| !self.node.is_suspected(*m))
            .collect();
        for (life, host, port) in self.directory.due(me, &unconnected, self.now_ms) {
            info!("member {me}: no connection to {life}: dialling it at {host}:{port}");
            self.actions.push(Action::Dial { life, host, port });
        }
    }

    /// Reports an event, or holds it back while a snapshot is awaited.
    fn report(&mut self, event: Event) {
        if let Some(Held::Event(event)) = self.transfer.hold(Held::Event(event)) {
            self.actions.push(Action::Event(event));
        }
    }

    /// At a view installed: a member just admitted starts waiting for its state (or restores the one
    /// that came early); a member waiting on a sponsor that is gone stops; the sponsor of the view's
    /// new lives hands them the state at the join position, at once or once its own is restored.
    fn transfer_state(&mut self, view: &View) {
        let me = self.node.me();
        match self.transfer.on_view(view) {
            AtView::Nothing => {}
            AtView::Restored(restored) => {
                self.restore(restored);
                return;
            }
            AtView::SponsorGone { sponsor, awaited } => {
                warn!("member {me}: {sponsor} left before handing over the state of view {awaited}; stopping");
                self.actions.push(Action::Event(Event::Excluded { view: view.id }));
                self.finished = true;
                return;
            }
        }
        if !self.settings.state_transfer
            || snapshot::sponsor(view) != Some(me)
            || snapshot::new_lives(view).next().is_none()
        {
            return;
        }
        let position = self.node.delivered_count();
        let handoff = Held::HandOff {
            view: view.clone(),
            position,
        };
        if let Some(Held::HandOff { view, position }) = self.transfer.hold(handoff) {
            self.hand_off(&view, position);
        } else {
            info!("member {me}: sponsor of view {}'s new lives, but its own state is not restored yet: handing it on once it is", view.id);
        }
    }

    fn hand_off(&mut self, view: &View, position: u64) {
        let me = self.node.me();
        let mut to = Vec::new();
        for life in snapshot::new_lives(view) {
            let conn = self
                .member_conn
                .get(&life.rank)
                .copied()
                .filter(|c| self.conns.get(c).is_some_and(|c| c.process == life.process));
            match conn {
                Some(conn) => to.push((life, conn)),
                None => warn!("member {me}: no connection to {life} to hand it the state"),
            }
        }
        self.actions.push(Action::HandOff {
            view: view.id,
            position,
            to,
        });
    }

    /// The awaited snapshot is whole: restore it, then release the held events (and hand-offs).
    fn restore(&mut self, restored: Restored) {
        info!(
            "member {}: state at position {} restored from {} ({} bytes)",
            self.node.me(),
            restored.position,
            restored.sponsor,
            restored.bytes.len()
        );
        self.actions.push(Action::Restore {
            sponsor: restored.sponsor,
            position: restored.position,
            bytes: restored.bytes,
        });
        for held in restored.released {
            match held {
                Held::Event(event) => self.report(event),
                Held::HandOff { view, position } => self.hand_off(&view, position),
            }
        }
    }

    fn trace_output(&mut self, output: &Output) {
        if let Some(kind) = self
            .settings
            .trace
            .then(|| trace::output_event(&self.node, output))
            .flatten()
        {
            self.trace(kind);
        }
    }

    fn trace(&mut self, kind: EventKind) {
        if self.settings.trace {
            self.actions.push(Action::Trace(TraceEvent::of(&self.node, 0, kind)));
        }
    }
}
