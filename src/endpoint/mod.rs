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
mod handoff;
mod incoming;
mod outputs;
pub mod roles;
pub mod snapshot;
mod unconnected;
mod views;

use std::collections::{BTreeMap, BTreeSet};

use log::{info, warn};

pub use action::{Action, ConnId, Origin, Watch};
use directory::Directory;
pub use early::{early_bytes_max, EarlyFrames};
use roles::Link;
use snapshot::StateTransfer;

use crate::event::Event;
use crate::protocol::{Input, Node, Outbox, Output, Phase};
use crate::trace::EventKind;
use crate::types::{MemberId, ProcessId, Rank, View};
use crate::wire::{Frame, RosterEntry};

/// How an endpoint behaves; the driver's timing, in the driver's milliseconds.
#[derive(Clone, Debug, Hash)]
pub struct EndpointSettings {
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
    /// Emit [`Action::Trace`] for every protocol event, naming this clock (what the driver stamps
    /// events with: `wall`, `sim`) in the start event; `None`: no trace.
    pub trace_clock: Option<&'static str>,
}

/// One connection as the endpoint knows it.
#[derive(Clone, Debug, Hash)]
struct Conn {
    role: Role,
    /// The process at the other end: the connection speaks for it only.
    process: ProcessId,
    /// What a joiner connection sent beyond its join request, for when a view admits its process.
    early: EarlyFrames,
    /// The address a joiner connection's process announced, committed once a view admits it.
    announced: Option<(String, u16)>,
    /// The other end has used the connection: this member formed or dialled it, or the process that
    /// dialled it sent a frame beyond its registration. A dialler reads the greeting before it takes
    /// a connection, and abandons one that reached another rank's process (a stale address) or whose
    /// handshake passed its deadline; the close of a connection it never used is that, not a crash.
    used: bool,
    /// While not `used`: what this member wrote on it after the greeting, which the other end never
    /// read if it abandons the connection; it then goes out on the life's next connection.
    unconfirmed: EarlyFrames,
}

impl Conn {
    /// The other end used the connection (or wrote more than the bound): nothing more is kept.
    fn mark_used(&mut self) {
        self.used = true;
        self.unconfirmed.take();
    }
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Role {
    /// The member connection of a rank (or this member's own).
    Member(Rank),
    /// A restarted process asking to come back as this rank.
    Joiner(Rank),
    /// Dialled on the endpoint's request; taken once its greeting names `life`.
    Greeting(MemberId),
}

/// A member's protocol core and its connections (see the module documentation).
#[derive(Clone, Debug, Hash)]
pub struct Endpoint {
    node: Node,
    settings: EndpointSettings,
    conns: BTreeMap<ConnId, Conn>,
    /// The current member connection of each rank.
    member_conn: BTreeMap<Rank, ConnId>,
    /// Connections of restarted processes asking to rejoin, by the rank each asks for and its process.
    joiner_conn: BTreeMap<(Rank, ProcessId), ConnId>,
    /// The member connections this process dialled before a view admitted it (see [`roles`]).
    dialled_while_joining: BTreeSet<ConnId>,
    /// Frames for lives of the view without a connection yet, by rank, with the process they are for.
    unsent: BTreeMap<Rank, (ProcessId, EarlyFrames)>,
    /// Since when (ms) each life of the view has had no member connection. Kept by life, not by rank:
    /// a new life of a rank whose old life was unconnected gets a failure timeout of its own (rejoin
    /// seed 34585 suspected one at once).
    unconnected_since_ms: BTreeMap<MemberId, u64>,
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
    /// A hand-off to new lives that had no member connection yet when it was due.
    handoff_pending: Option<handoff::PendingHandOff>,
}

impl Endpoint {
    /// An endpoint around `node`, knowing the addresses in `directory` (the roster it formed or
    /// rejoined with). A founder passes the view it formed with as `formed`: it is reported first.
    pub fn new(node: Node, settings: EndpointSettings, directory: Vec<RosterEntry>, formed: Option<View>) -> Endpoint {
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
            handoff_pending: None,
        };
        let joining = endpoint.node.phase() == Phase::Joining;
        if let Some(clock) = endpoint.settings.trace_clock {
            endpoint.trace(EventKind::Start {
                clock: clock.into(),
                joining,
            });
        }
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
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.used = false;
                }
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
                        Some(life) if !closed.used => {
                            info!("member {me}: {life} abandoned its dial to this member before using it ({reason}): suspecting nobody; what was written on it goes out on its next connection");
                            self.directory.unlink(life);
                            let mut unwritten = closed.unconfirmed;
                            for frame in unwritten.take() {
                                self.keep_unsent(rank, frame);
                            }
                        }
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
                used: true,
                unconfirmed: EarlyFrames::new(limit),
            },
        );
        self.roles_changed = true;
    }

    fn write(&mut self, conn: ConnId, frame: Frame) {
        self.remember_unconfirmed(conn, &frame);
        self.actions.push(Action::Write { conn, frame });
    }

    /// Keeps a copy of `frame` while the other end of `conn` has not used it (see [`Conn`]'s `used`);
    /// past the early-frame bound it stops keeping and takes the connection as used.
    fn remember_unconfirmed(&mut self, conn: ConnId, frame: &Frame) {
        let Some(entry) = self.conns.get_mut(&conn).filter(|c| !c.used) else {
            return;
        };
        if entry.unconfirmed.keep(frame.clone()).is_err() {
            entry.mark_used();
        }
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
}

/// What the unit tests of this module's files share.
#[cfg(test)]
mod test_support {
    use crate::types::{Incarnation, MemberId, ProcessId, Rank};

    /// Life `rank#incarnation`, with a process number made of both.
    pub fn life(rank: u16, incarnation: u64) -> MemberId {
        MemberId {
            rank: Rank(rank),
            incarnation: Incarnation(incarnation),
            process: ProcessId(u64::from(rank) * 100 + incarnation),
        }
    }
}
