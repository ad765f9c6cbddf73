//! One member's pure engine: the protocol core ([`Node`]) and the connections it talks through.
//!
//! The threaded runtime and the simulator both drive an [`Endpoint`]: they hand it what happened
//! (a connection opened or closed, a frame arrived, a tick, a suspicion, the application's requests)
//! and carry out the [`Action`]s it asks for (write a frame, close a connection, dial a life, report an
//! event, hand the state over). Like the core, it has no sockets, threads, clocks or randomness
//! inside; time comes in with each tick. So every rule about *which connection counts* is run by the
//! simulator's seeds exactly as the runtime runs it:
//!
//! - a connection speaks for one process for its whole life, and what its frames may do is read from
//!   the installed view, never stored (`standing.rs`);
//! - what a connection does at a view: the one connection of each listed process, closes of the
//!   connections of lives the view no longer lists (`views.rs`);
//! - what a process asking to rejoin may send before a view admits it, and what is kept for a life of
//!   the view that has no connection yet ([`early`]);
//! - a member of the view this member has had no connection to for a failure timeout is suspected;
//! - whom to dial and when, and which addresses this member knows and hands on ([`directory`]);
//! - the state transfer's steps, carried out on the connections of the lives they name
//!   ([`crate::state_transfer`] holds its rules).
//!
//! # The driver contract
//! Hand inputs one at a time; after each call, take [`Endpoint::take_actions`] and carry them out in
//! order; call [`Endpoint::flush`] when no input is waiting. A connection's frames are handed over in
//! the order they arrived, and [`Endpoint::closed`] after its last one.
//!
//! # Invariants ([`Endpoint::check_invariants`])
//! - a connection speaks for the (rank, process) it opened with (a redial: once its greeting named it);
//! - a process the installed view lists has at most one connection, and it is the one whose frames
//!   reach the core; a connection that served a life never serves another;
//! - frames of a process the view does not list reach the core only as join requests or decisions of a
//!   view that lists that very process (a membership message for an older view is answered with the installed
//!   view's decision); the rest is kept until a view lists that process.

mod action;
pub mod directory;
pub mod early;
mod incoming;
mod outputs;
mod standing;
mod unconnected;
mod views;

use std::collections::BTreeMap;

use log::{info, warn};

pub use action::{Action, ConnId, Origin, Watch};
use directory::Directory;
pub use early::early_bytes_max;
use early::EarlyStore;
use standing::Standing;

use crate::event::Event;
use crate::protocol::{Input, Node, Outbox, Output, Phase};
use crate::state_transfer::StateTransfer;
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

/// One connection as the endpoint knows it: the process it speaks for and the facts of its history.
/// Its standing (what its frames may do) is not here: it follows from the view ([`standing`]).
#[derive(Clone, Debug, Hash)]
struct Conn {
    /// The rank and process at the other end, for the connection's whole life (a redial: the life
    /// asked for, taken only once its greeting names that process).
    rank: Rank,
    process: ProcessId,
    /// How it came to be.
    origin: Origin,
    /// A redial whose greeting has not come yet speaks for nobody.
    greeted: bool,
    /// The life it was the connection of, once a view listed its process (it never serves another).
    life: Option<MemberId>,
    /// The address its process announced, committed once a view lists that process.
    announced: Option<(String, u16)>,
    /// The other end has used the connection: this member formed or dialled it, or the process that
    /// dialled it sent a frame beyond its registration. A dialler reads the greeting before it takes
    /// a connection, and abandons one that reached another rank's process (a stale address) or whose
    /// handshake passed its deadline; the close of a connection it never used is that, not a crash.
    /// Until then, what this member writes on it is kept for its process too ([`early`]).
    used: bool,
}

/// A member's protocol core and its connections (see the module documentation).
#[derive(Clone, Debug, Hash)]
pub struct Endpoint {
    node: Node,
    settings: EndpointSettings,
    conns: BTreeMap<ConnId, Conn>,
    /// Frames kept for and from other processes ([`early`]).
    early: EarlyStore,
    /// Since when (ms) each life of the view has had no connection. Kept by life, not by rank: a new
    /// life of a rank whose old life was unconnected gets a failure timeout of its own (rejoin seed
    /// 34585 suspected one at once).
    unconnected_since_ms: BTreeMap<MemberId, u64>,
    now_ms: u64,
    directory: Directory,
    transfer: StateTransfer,
    /// Connections a view let go, closed once the current outputs are carried out (the decision
    /// still goes out on them); they speak for nobody meanwhile.
    to_close: Vec<ConnId>,
    /// Early frames of connections whose process a view just listed, for the core once the outputs
    /// are carried out.
    replay: Vec<(ConnId, Vec<Frame>)>,
    actions: Vec<Action>,
    roles_changed: bool,
    finished: bool,
}

impl Endpoint {
    /// An endpoint around `node`, knowing the addresses in `directory` (the roster it formed or
    /// rejoined with). A founder passes the view it formed with as `formed`: it is reported first.
    pub fn new(node: Node, settings: EndpointSettings, directory: Vec<RosterEntry>, formed: Option<View>) -> Endpoint {
        let transfer = StateTransfer::new(node.me(), settings.state_transfer, node.phase() == Phase::Joining);
        let redial = settings.redial_interval_ms;
        let mut endpoint = Endpoint {
            early: EarlyStore::new(settings.window),
            node,
            settings,
            conns: BTreeMap::new(),
            unconnected_since_ms: BTreeMap::new(),
            now_ms: 0,
            directory: Directory::new(directory, redial),
            transfer,
            to_close: Vec::new(),
            replay: Vec::new(),
            actions: Vec::new(),
            roles_changed: false,
            finished: false,
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

    /// True (once) if some connection may stand otherwise since the last call (one opened or closed,
    /// a view was installed): the heartbeat side should read [`Endpoint::watch`] again.
    pub fn take_roles_changed(&mut self) -> bool {
        std::mem::take(&mut self.roles_changed)
    }

    /// How the heartbeat side treats `conn`.
    pub fn watch(&self, conn: ConnId) -> Option<Watch> {
        let entry = self.conns.get(&conn)?;
        let life = match self.standing(conn)? {
            Standing::Member(life) => Some(life),
            _ => None,
        };
        Some(Watch {
            rank: entry.rank,
            process: entry.process,
            is_member: life.is_some(),
            life: life.flatten(),
        })
    }

    // ---- connections --------------------------------------------------------------------------------

    /// A connection opened: of `process` for `rank`, as `origin` says.
    pub fn opened(&mut self, conn: ConnId, origin: Origin, rank: Rank, process: ProcessId) {
        let me = self.node.me();
        match origin {
            Origin::Mesh | Origin::Dialled => {
                self.add(conn, origin, rank, process);
                self.handle(Input::Connected(rank));
            }
            Origin::Accepted => {
                if self.refuses(rank, process) {
                    info!("member {me}: process {process} of rank {rank} connects again, but the view's life of that process is connected or lost here already: closing the new connection");
                    self.actions.push(Action::Close { conn });
                    self.after_outputs();
                    return;
                }
                // An earlier dial of the same process: abandoned at its handshake deadline if it never
                // used it; a process still asking to rejoin speaks on its latest dial.
                let listed = self.listed_life(rank, process).is_some();
                let abandoned: Vec<ConnId> = self
                    .conns_of(rank, process)
                    .filter(|c| self.conns[c].origin == Origin::Accepted && (!listed || !self.conns[c].used))
                    .collect();
                for old in abandoned {
                    self.close_abandoned(old);
                }
                self.add(conn, origin, rank, process);
                self.greet(conn, rank);
                if let Some(life) = self.listed_life(rank, process) {
                    info!("member {me}: process {process} of rank {rank}, admitted by the current view, connects: its connection");
                    self.send_unsent(life);
                } else {
                    info!("member {me}: process {process} connects to rejoin as rank {rank}");
                }
            }
            Origin::Redialled { .. } => self.add(conn, origin, rank, process),
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
        let Some(standing) = self.standing(conn) else { return };
        let Some(closed) = self.conns.remove(&conn) else { return };
        self.forget_closed(conn, &closed);
        let was_dial = closed.origin == Origin::Dialled;
        match standing {
            Standing::Member(Some(life)) if life.rank != me.rank => {
                if closed.used {
                    info!("member {me}: connection to {life} lost ({reason}): suspecting it");
                    self.handle(Input::Suspect(life));
                } else {
                    info!("member {me}: {life} abandoned its dial to this member before using it ({reason}): suspecting nobody; what was written on it goes out on its next connection");
                    self.directory.unlink(life);
                    self.transfer.abandoned(life);
                }
            }
            Standing::Greeting(life) => {
                info!("member {me}: connection dialled to {life} closed before its greeting: {reason}");
                self.directory.dial_ended(life);
            }
            Standing::Asking => info!(
                "member {me}: connection {conn} of rank {}, asking to rejoin, closed: {reason}",
                closed.rank
            ),
            Standing::Member(_) => info!(
                "member {me}: connection {conn} of process {} of rank {}, no life of the view, closed: {reason}",
                closed.process, closed.rank
            ),
        }
        if was_dial {
            self.ask_on_accepted_if_no_dial_is_left();
        }
        self.after_outputs();
    }

    /// A joining process whose last dial closed asks on the connections processes dialled to it: they
    /// dialled it while joining, and may be members by now (rejoin seed 21791: it asked nobody and
    /// waited for ever). Not before: it would be admitted before its own dials are handed over, and
    /// a sponsor's snapshot could go out on a dial that the joining side then abandons.
    fn ask_on_accepted_if_no_dial_is_left(&mut self) {
        let me = self.node.me();
        if self.node.phase() != Phase::Joining || self.conns.values().any(|c| c.origin == Origin::Dialled) {
            return;
        }
        let ranks: std::collections::BTreeSet<Rank> = self
            .conns
            .values()
            .filter(|c| c.rank != me.rank && c.greeted)
            .map(|c| c.rank)
            .collect();
        for rank in ranks {
            self.handle(Input::Connected(rank));
        }
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
    fn add(&mut self, conn: ConnId, origin: Origin, rank: Rank, process: ProcessId) {
        let redial = matches!(origin, Origin::Redialled { .. });
        let life = self.listed_life(rank, process).filter(|_| !redial);
        self.conns.insert(
            conn,
            Conn {
                rank,
                process,
                origin,
                greeted: !redial,
                life,
                announced: None,
                // A process that dialled this member uses the connection once it sends beyond its
                // registration; on every other, this member (or the driver) did.
                used: origin != Origin::Accepted,
            },
        );
        if let Some(life) = life {
            self.directory.linked(life);
        }
        self.roles_changed = true;
    }

    /// True if an accepted connection of `process` for `rank` is refused: the view lists that process
    /// and this member has (or had) a connection of that life. Frames may be missing between the two,
    /// so the newer one never feeds the core; closing it suspects nobody. A dial the process never
    /// used (abandoned at its handshake deadline) does not count: the newer dial takes its place.
    fn refuses(&self, rank: Rank, process: ProcessId) -> bool {
        let Some(life) = self.listed_life(rank, process) else {
            return false;
        };
        let mut here = self.conns_of(rank, process).peekable();
        let had_one = here.peek().is_none() && self.directory.was_linked(life);
        let used_one = here.any(|c| self.conns[&c].used);
        life.incarnation.0 <= 1 || used_one || had_one || self.node.is_suspected(life)
    }

    /// The other end abandoned `conn` (it never used it): closed, suspecting nobody; what was written
    /// on it stays kept for its process's next connection.
    fn close_abandoned(&mut self, conn: ConnId) {
        if let Some(life) = self.close(conn).and_then(|closed| closed.life) {
            self.directory.unlink(life);
            self.transfer.abandoned(life);
        }
    }

    fn write(&mut self, conn: ConnId, frame: Frame) {
        self.remember_unconfirmed(conn, &frame);
        self.actions.push(Action::Write { conn, frame });
    }

    /// Keeps a copy of `frame` for the process of `conn` while it has not used `conn` (see [`Conn`]'s
    /// `used`); past the bound it stops keeping and takes the connection as used.
    fn remember_unconfirmed(&mut self, conn: ConnId, frame: &Frame) {
        let Some(&Conn { rank, process, .. }) = self.conns.get(&conn).filter(|c| !c.used) else {
            return;
        };
        if self.early.to.keep(process, rank, frame.clone()).is_err() {
            self.mark_used(conn);
        }
    }

    /// The other end of `conn` used it (or more than the bound was written on it unread): nothing
    /// more is kept for its process.
    fn mark_used(&mut self, conn: ConnId) {
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.used = true;
            self.early.to.forget(entry.process);
        }
    }

    /// Closes a connection once what is queued on it has gone out; returns what it was.
    fn close(&mut self, conn: ConnId) -> Option<Conn> {
        let closed = self.conns.remove(&conn)?;
        self.forget_closed(conn, &closed);
        self.actions.push(Action::Close { conn });
        Some(closed)
    }

    /// `conn`, of `closed`'s process, is gone: what that process sent on it is let go, and what was
    /// kept for it too, unless the view lists it (its next connection takes it) or it has another.
    fn forget_closed(&mut self, conn: ConnId, closed: &Conn) {
        self.to_close.retain(|c| *c != conn);
        self.roles_changed = true;
        self.early.from.frames(closed.process, conn, false);
        let listed = self.listed_life(closed.rank, closed.process);
        if listed.is_some_and(|life| self.node.is_suspected(life))
            || (listed.is_none() && self.conns_of(closed.rank, closed.process).next().is_none())
        {
            self.early.to.forget(closed.process);
        }
    }

    /// The life of the installed view that a connection of `process` for `rank` speaks for.
    fn listed_life(&self, rank: Rank, process: ProcessId) -> Option<MemberId> {
        self.node
            .view()
            .and_then(|view| view.member(rank))
            .filter(|m| m.process == process)
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
