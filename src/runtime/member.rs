//! The threaded runtime of one member: the public [`Member`] handle and the protocol thread.
//!
//! ```text
//! reader thread per connection ──┐                          ┌─► Outgoing buffer per peer ─► writer thread
//! heartbeat thread (suspicions) ─┼─► Signal channel ─► protocol thread: Node::handle ─┤
//! Member::multicast / leave ─────┤      + tick                                        └─► Event channel ─► application
//! acceptor (rejoin connections) ─┘
//! ```
//!
//! **The protocol thread is the only place protocol state changes**, and it never blocks on the network:
//! it appends frames to per-peer buffers that writer threads drain. It drains every queued signal before
//! calling [`Node::flush`], so acknowledgements are coalesced exactly when there is a backlog and go out
//! at once when there is none.
//!
//! Connections: every connection speaks for one process (named by its hello, or by the member that
//! answered a rejoining process's dial). Each rank has at most one member connection, whose frames go
//! to the core only while the installed view lists that rank's life with that connection's process; a
//! process asking to rejoin has a joiner connection, known by (rank, process), until a view admits that
//! very process. Which connection becomes which, at each view, and what happens to frames that arrive
//! early, is decided by [`super::roles`]. Suspicions name the life a connection spoke for.
//!
//! Addresses: this member's directory (handed to processes that rejoin through it, `--peer`) lists
//! admitted lives only. A rejoining process's announced address is kept on its connection and
//! committed to the directory when a view admits that process; a process that rejoined registers with
//! the helper again, as admitted, once it installed the view that admitted it. A refused rejoin so
//! changes no directory.
//!
//! Flow control: [`Member::multicast`] blocks while this member has `window` messages multicast and not
//! yet delivered; shutdown and the end of membership release it with an error.
//!
//! Shutdown order: stop the protocol thread (it closes every outgoing buffer), shut every socket down
//! (readers blocked in `read` return), stop the heartbeat thread, then join everything. Nothing here
//! waits on a peer, so shutdown never hangs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};
use log::{debug, info, warn};
use parking_lot::{Condvar, Mutex};

use super::heartbeat;
use super::hops::{EngineProbe, HopProbe, ReadProbe, WriteProbe};
use super::links::{Clock, LastHeard, Outgoing};
use super::peer::spawn_reader_probed;
use super::rejoin;
use super::roles::{self, EarlyFrames, Link};
use super::state::{self, ReplicatedState};
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::formation::{self, Formed, Incoming};
use crate::message::Message;
use crate::protocol::{self, Delivery, Input, Node, Outbox, Output, Status};
use crate::trace::{self, EventKind, TraceEvent, TraceSink};
use crate::types::{Incarnation, MemberId, Payload, ProcessId, Rank, View, ViewId};
use crate::wire::{self, Frame, Purpose, Roster, RosterEntry};

/// Settings of a member: how to form the group, and the runtime's timing.
#[derive(Clone, Debug)]
pub struct Config {
    /// How to find the helper and the other members.
    pub formation: formation::Config,
    /// Length of one tick of the protocol's logical time.
    pub tick_ms: u64,
    /// How often a heartbeat goes to every peer.
    pub heartbeat_interval_ms: u64,
    /// A peer silent for longer than this (or whose writer is stuck that long, or a member of the view
    /// this member has had no connection to for that long) is suspected. The default
    /// suits a LAN: long enough for a paused or loaded process, short enough to keep the group moving.
    pub failure_timeout_ms: u64,
    /// Most of this member's own messages multicast and not yet delivered; `multicast` blocks beyond.
    pub window: usize,
    /// Most events waiting for the application before this member holds back its deliveries and
    /// acknowledgements (so a slow consumer slows the group instead of growing a queue); it resumes
    /// when the application has taken half of them.
    pub delivery_queue_max: usize,
    /// Where to write this member's trace (one JSON line per protocol event, see [`crate::trace`]);
    /// `None`: no trace.
    pub trace: Option<TraceSink>,
    /// The application's state, kept in step with the total order and handed to members that rejoin
    /// (see [`super::state`]). `None`: nothing is transferred.
    pub state: Option<ReplicatedState>,
    /// Not part of the supported API: per-hop timestamps of sampled multicasts for
    /// `tom-bench --breakdown` (see [`super::hops`]). `None` (the default): nothing is stamped.
    #[doc(hidden)]
    pub hop_probe: Option<HopProbe>,
}

impl Config {
    /// Defaults: 10 ms ticks, heartbeats every 100 ms, a 1,500 ms failure timeout, a window of 1,024,
    /// at most 4,096 events waiting for the application.
    pub fn new(formation: formation::Config) -> Config {
        Config {
            formation,
            tick_ms: 10,
            heartbeat_interval_ms: 100,
            failure_timeout_ms: 1_500,
            window: 1_024,
            delivery_queue_max: 4_096,
            trace: None,
            state: None,
            hop_probe: None,
        }
    }
}

/// What a member reports to the application, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message, in the group's total order.
    Deliver(Delivery),
    /// A new view was installed (also the first view, at formation).
    View(View),
    /// This restarted member was admitted; the group had delivered `position` messages before.
    Joined {
        /// Messages the group delivered before this member's first delivery.
        position: u64,
    },
    /// This member was excluded (or lost its quorum) and delivers nothing more.
    Excluded {
        /// The view that excluded it, or the last view it had when it lost its quorum.
        view: ViewId,
    },
    /// This member's clean departure is complete.
    Left,
}

/// A connection's number within one member (connections of one rank come and go).
pub type ConnId = u64;

/// What the protocol thread is told, by every other thread.
#[derive(Debug)]
pub enum Signal {
    /// A frame arrived on a connection.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Frame,
    },
    /// A connection ended (end of file, read or write error).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: String,
    },
    /// The heartbeat thread suspects this life (the one the silent connection spoke for).
    Suspect(MemberId),
    /// The application multicasts.
    Multicast(Payload),
    /// The application leaves.
    Leave,
    /// The application asks for a status snapshot.
    Status(Sender<Status>),
    /// A connection this newly admitted life dialled, after its admission, to `life` of the view,
    /// which it had no connection to.
    Dialled {
        /// The life that answered.
        life: MemberId,
        /// The connection.
        stream: TcpStream,
    },
    /// Stop now.
    Shutdown,
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The member connection of a rank (or this member's own).
    Member(Rank),
    /// A restarted process asking to come back as this rank.
    Joiner(Rank),
}

struct Conn {
    role: Role,
    /// The process at the other end: the connection speaks for it only.
    process: ProcessId,
    outgoing: Arc<Outgoing>,
    /// What a joiner connection sent beyond its join request, for when a view admits its process.
    early: EarlyFrames,
    /// The address a joiner connection's process announced, committed to the directory once a view
    /// admits that process.
    announced: Option<(String, u16)>,
}

/// What the heartbeat thread watches: one entry per connection.
#[derive(Clone)]
pub struct Watched {
    /// The connection.
    pub conn: ConnId,
    /// The rank at the other end.
    pub rank: Rank,
    /// True for member connections; joiner connections only get heartbeats (and are closed when stuck).
    pub is_member: bool,
    /// The life of the installed view this member connection speaks for (rank and process match);
    /// `None` for a connection that speaks for no life of the view (not suspected when silent).
    pub life: Option<MemberId>,
    /// The outgoing buffer.
    pub outgoing: Arc<Outgoing>,
    /// When the peer was last heard from.
    pub heard: Arc<LastHeard>,
}

/// State shared by the member's threads.
pub(crate) struct Shared {
    pub clock: Clock,
    /// Every open connection's streams (reading and writing end), so shutdown can unblock its reader.
    /// An entry leaves when its connection closes: a long-lived member that sees many rejoins must not
    /// keep their sockets open.
    streams: Mutex<BTreeMap<ConnId, [TcpStream; 2]>>,
    /// What the heartbeat thread pings and watches.
    pub watched: Mutex<Vec<Watched>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Flow control for `multicast`: counts this member's own undelivered messages.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    window: usize,
}

struct GateState {
    in_flight: usize,
    closed: Option<Closed>,
}

/// Why the gate no longer lets multicasts through.
#[derive(Clone, Copy, Debug)]
enum Closed {
    ShutDown,
    Excluded(ViewId),
}

impl Closed {
    fn error(self) -> Error {
        match self {
            Closed::ShutDown => Error::ShutDown,
            Closed::Excluded(view) => Error::Excluded { view },
        }
    }
}

impl Gate {
    fn acquire(&self, wait: bool) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            if let Some(closed) = state.closed {
                return Err(closed.error());
            }
            if state.in_flight < self.window {
                state.in_flight += 1;
                return Ok(());
            }
            if !wait {
                return Err(Error::WouldBlock);
            }
            self.changed.wait(&mut state);
        }
    }

    fn release(&self) {
        let mut state = self.state.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        self.changed.notify_one();
    }

    fn close(&self, why: Closed) {
        let mut state = self.state.lock();
        state.closed.get_or_insert(why);
        self.changed.notify_all();
    }
}

/// A running member of a group. Dropping it shuts it down (as a crash, for the others: use
/// [`Member::leave`] for a clean departure).
pub struct Member {
    rank: Rank,
    size: u16,
    signals: Sender<Signal>,
    events: Receiver<Event>,
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    stop_heartbeat: Mutex<Option<Sender<()>>>,
    acceptor: Mutex<Option<formation::Acceptor>>,
    local_addr: SocketAddr,
    stopped: std::sync::atomic::AtomicBool,
}

impl Member {
    /// Forms the group through the helper (see [`formation::form`]) and starts the member.
    pub fn join(config: Config) -> Result<Member> {
        let formed = formation::form(&config.formation)?;
        Member::start(config, formed)
    }

    /// Starts a member on an already formed mesh.
    pub fn start(config: Config, formed: Formed) -> Result<Member> {
        let Formed {
            rank,
            process,
            size,
            roster,
            links,
            self_link,
            incoming,
            acceptor,
            ..
        } = formed;
        // View 1 names every founder's process, as the helper's roster lists them.
        let processes: Vec<ProcessId> = roster.iter().map(|entry| entry.process).collect();
        let view = View::formed(&processes);
        if view.member(rank).map(|m| m.process) != Some(process) {
            return Err(Error::Unexpected(format!(
                "the roster does not list this process ({process}) as rank {rank}"
            )));
        }
        let node = Node::new(core_config(&config, rank), view.clone());
        let mut conns: Vec<(Rank, ProcessId, TcpStream, TcpStream)> = Vec::new();
        for (peer, stream) in links {
            let Some(life) = view.member(peer) else { continue };
            conns.push((peer, life.process, stream.try_clone()?, stream));
        }
        let (dialled, accepted) = self_link;
        conns.push((rank, process, accepted, dialled));
        Member::launch(
            &config,
            node,
            size,
            roster,
            conns,
            incoming,
            acceptor,
            Some(Event::View(view)),
            None,
        )
    }

    /// Comes back as `rank` after a crash: finds the live members through the helper in `config` (or,
    /// if it does not answer, through `peers`, `HOST:PORT` of live members), asks to be admitted and
    /// waits until the group admits this process as a new life of `rank`, at most `join_timeout`.
    ///
    /// Returns the member and its join position: the number of messages the group delivered before
    /// this member's first delivery. Fails with a clear error when no member can be reached, or when
    /// the group does not admit it in time (for example because the rank is still alive).
    pub fn rejoin(config: Config, rank: Rank, peers: &[String], join_timeout: Duration) -> Result<(Member, u64)> {
        // A fresh identity for this life: the group's decision will name it.
        let process = crate::auth::fresh_process_id();
        let found = rejoin::reconnect(&config.formation, rank, process, peers)?;
        let node = Node::rejoin(core_config(&config, rank), process);
        let conns = found
            .links
            .into_iter()
            .map(|(peer, (stream, life))| Ok((peer, life.process, stream.try_clone()?, stream)))
            .collect::<Result<Vec<_>>>()?;
        let announce = Announce {
            host: found.host.clone(),
            port: found.local_addr.port(),
        };
        let member = Member::launch(
            &config,
            node,
            found.size,
            found.roster,
            conns,
            found.incoming,
            found.acceptor,
            None,
            Some(announce),
        )?;
        let deadline = std::time::Instant::now() + join_timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match member.events.recv_timeout(left) {
                Ok(Event::Joined { position }) => return Ok((member, position)),
                Ok(other) => debug!("rank {rank}: {other:?} before being admitted"),
                Err(_) => {
                    let reason = member.status().ok().and_then(|s| s.join_refusal);
                    member.shutdown();
                    return Err(match reason {
                        Some(reason) => Error::Refused(format!("rank {rank} was not admitted: {reason}")),
                        None => Error::Timeout(format!("waiting to be admitted as rank {rank}")),
                    });
                }
            }
        }
    }

    /// Starts the threads around `node`, with one connection per entry of `conns`
    /// (`(rank, process at the other end, reading end, writing end)`). `announce`: for a restarted
    /// process, the address it registers with the helper once admitted.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        config: &Config,
        node: Node,
        size: u16,
        directory: Vec<RosterEntry>,
        conns: Vec<(Rank, ProcessId, TcpStream, TcpStream)>,
        incoming: Receiver<Incoming>,
        acceptor: formation::Acceptor,
        first_event: Option<Event>,
        announce: Option<Announce>,
    ) -> Result<Member> {
        let (signal_tx, signal_rx) = crossbeam_channel::unbounded();
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            clock: Clock::new(),
            streams: Mutex::new(BTreeMap::new()),
            watched: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let gate = Arc::new(Gate {
            state: Mutex::new(GateState {
                in_flight: 0,
                closed: None,
            }),
            changed: Condvar::new(),
            window: config.window.max(1),
        });
        let rank = node.me().rank;
        // A returning member with state to receive expects a snapshot from the moment it starts: the
        // sponsor's may arrive before this member learns it was admitted.
        let transfer = if node.phase() == protocol::Phase::Joining && config.state.is_some() {
            Transfer::Admitted { early: None }
        } else {
            Transfer::None
        };
        let announce = announce
            .filter(|_| !config.formation.helper.is_empty())
            .map(|announce| (config.formation.clone(), announce));
        let mut engine = Engine {
            node,
            conns: BTreeMap::new(),
            member_conn: BTreeMap::new(),
            joiner_conn: BTreeMap::new(),
            next_conn: 0,
            shared: Arc::clone(&shared),
            signals: signal_tx.clone(),
            events: event_tx,
            gate: Arc::clone(&gate),
            to_close: Vec::new(),
            to_demote: Vec::new(),
            replay: Vec::new(),
            unsent: BTreeMap::new(),
            dialled_while_joining: BTreeSet::new(),
            unconnected_since_ms: BTreeMap::new(),
            failure_timeout_ms: config.failure_timeout_ms,
            early_limit: roles::early_bytes_max(config.window.max(1)),
            announce,
            finished: false,
            size,
            directory,
            state: config.state.clone(),
            transfer,
            trace: config.trace.clone(),
            held: Vec::new(),
            delivery_queue_max: config.delivery_queue_max.max(1),
            application_busy: false,
            probe: config.hop_probe.clone().map(EngineProbe::new),
        };
        let joining = engine.node.phase() == protocol::Phase::Joining;
        engine.trace_event(EventKind::Start {
            clock: "wall".into(),
            joining,
        });
        if let Some(Event::View(view)) = &first_event {
            engine.trace_output(&Output::ViewInstalled(view.clone()));
        }
        let mut out = Outbox::new();
        for (peer, process, reading, writing) in conns {
            let conn = engine.add_conn(Role::Member(peer), process, reading, writing)?;
            if joining {
                engine.dialled_while_joining.insert(conn);
            }
            engine.node.handle(Input::Connected(peer), &mut out);
        }
        engine.dispatch(&mut out);
        if let Some(event) = first_event {
            let _ = engine.events.send(event);
        }

        let tick = Duration::from_millis(config.tick_ms.max(1));
        let protocol_thread = std::thread::Builder::new()
            .name(format!("tom-{rank}-protocol"))
            .spawn(move || engine.run(signal_rx, incoming, tick))?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let heartbeat_thread = heartbeat::spawn(
            heartbeat::Settings {
                me: rank,
                heartbeat_interval_ms: config.heartbeat_interval_ms.max(1),
                failure_timeout_ms: config.failure_timeout_ms,
            },
            Arc::clone(&shared),
            signal_tx.clone(),
            stop_rx,
        )?;
        shared.threads.lock().extend([protocol_thread, heartbeat_thread]);
        Ok(Member {
            rank,
            size,
            signals: signal_tx,
            events: event_rx,
            gate,
            shared,
            stop_heartbeat: Mutex::new(Some(stop_tx)),
            local_addr: acceptor.local_addr(),
            acceptor: Mutex::new(Some(acceptor)),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// This member's rank.
    pub fn rank(&self) -> Rank {
        self.rank
    }

    /// The size of the group at formation (N).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The address this member listens on (for processes that rejoin through it, and status queries).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Multicasts `payload` to the group. Blocks while this member has `window` messages undelivered.
    /// Errors: [`Error::PayloadTooLarge`], or the member is no longer running.
    pub fn multicast(&self, payload: impl Into<Payload>) -> Result<()> {
        self.multicast_inner(payload.into(), true)
    }

    /// Like [`Member::multicast`], but returns [`Error::WouldBlock`] at once instead of blocking.
    pub fn try_multicast(&self, payload: impl Into<Payload>) -> Result<()> {
        self.multicast_inner(payload.into(), false)
    }

    fn multicast_inner(&self, payload: Payload, wait: bool) -> Result<()> {
        if payload.len() > wire::PAYLOAD_LEN_MAX {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                max: wire::PAYLOAD_LEN_MAX,
            });
        }
        self.gate.acquire(wait)?;
        self.signals
            .send(Signal::Multicast(payload))
            .map_err(|_| Error::ShutDown)
    }

    /// Deliveries and views, in order. The channel ends after [`Event::Excluded`] or [`Event::Left`], or at
    /// shutdown.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// A snapshot of the protocol state: the head of the hold-back queue and whose acknowledgement it
    /// waits for, the view, the suspects.
    pub fn status(&self) -> Result<Status> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.signals.send(Signal::Status(tx)).map_err(|_| Error::ShutDown)?;
        rx.recv_timeout(Duration::from_secs(5)).map_err(|_| Error::ShutDown)
    }

    /// Starts a clean departure and returns at once: this member's own messages are delivered first,
    /// then a view without it is installed, and [`Event::Left`] ends its events. For an application that
    /// reads the events on another thread (see [`Member::leave`] to wait here instead).
    pub fn start_leave(&self) -> Result<()> {
        self.signals.send(Signal::Leave).map_err(|_| Error::ShutDown)
    }

    /// Leaves cleanly: this member's own messages are delivered first, then a view without it is
    /// installed; waits at most `timeout` for that, then shuts down. It reads [`Member::events`] itself
    /// (deliveries before the departure are skipped): an application that reads them on another thread
    /// uses [`Member::start_leave`] instead.
    pub fn leave(self, timeout: Duration) -> Result<()> {
        self.signals.send(Signal::Leave).map_err(|_| Error::ShutDown)?;
        let deadline = std::time::Instant::now() + timeout;
        let mut outcome = Err(Error::Timeout("leave".into()));
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(Event::Left) => {
                    outcome = Ok(());
                    break;
                }
                Ok(Event::Excluded { view }) => {
                    outcome = Err(Error::Excluded { view });
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.stop();
        outcome
    }

    /// Stops every thread of this member and waits for them; a `multicast` blocked on another thread
    /// returns [`Error::ShutDown`]. To the group this is a crash. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.stop();
    }

    fn stop(&self) {
        if self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        self.gate.close(Closed::ShutDown);
        let _ = self.signals.send(Signal::Shutdown);
        if let Some(stop) = self.stop_heartbeat.lock().take() {
            let _ = stop.send(());
        }
        if let Some(acceptor) = self.acceptor.lock().take() {
            acceptor.stop();
        }
        // The protocol thread closes the outgoing buffers as it stops; shutting the sockets down here
        // ends the readers (and any writer blocked on a full socket) without waiting on a peer.
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.shared.threads.lock());
        let mut threads = threads.into_iter();
        if let Some(protocol_thread) = threads.next() {
            let _ = protocol_thread.join();
        }
        for stream in std::mem::take(&mut *self.shared.streams.lock()).values().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in threads {
            let _ = thread.join();
        }
        // Readers and writers started later by the protocol thread registered themselves too.
        let rest: Vec<JoinHandle<()>> = std::mem::take(&mut *self.shared.threads.lock());
        for thread in rest {
            let _ = thread.join();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the member listening at `addr` (`HOST:PORT`) of group `group` for its status: the head of its
/// hold-back queue and whose acknowledgements it waits for, its view with every member's incarnation, its
/// suspects. The answer to "why isn't it delivered?", from outside the process.
///
/// With the group's `secret`, the query proves it like any member connection; a group with a secret
/// answers no query without it.
pub fn query_status(addr: &str, group: &str, secret: Option<&Secret>, timeout: Duration) -> Result<String> {
    let (host, port) = super::net::split_host_port(addr)?;
    let stream = super::net::connect(&host, port, timeout)?;
    let hello = wire::Hello {
        group: group.to_string(),
        rank: Rank(0),
        incarnation: Incarnation(0),
        process: ProcessId(0),
        purpose: Purpose::Status,
        nonce: None,
    };
    let deadline = std::time::Instant::now() + timeout;
    crate::auth::open(&stream, Frame::Hello(hello), secret, deadline, addr)?;
    match super::net::read_frame_before(&stream, deadline, wire::HANDSHAKE_LEN_MAX)? {
        Frame::Welcome => {}
        Frame::Refuse { reason } => return Err(Error::Refused(format!("{addr}: {reason}"))),
        other => {
            return Err(Error::Unexpected(format!(
                "{addr} answered a status query with a {}",
                other.kind()
            )))
        }
    }
    match super::net::read_frame_before(&stream, deadline, wire::FRAME_LEN_MAX)? {
        Frame::StatusReport { report } => Ok(report),
        other => Err(Error::Unexpected(format!(
            "{addr} answered a status query with a {}",
            other.kind()
        ))),
    }
}

/// The core's settings from the runtime's: the view-change timeout follows the failure timeout.
fn core_config(config: &Config, rank: Rank) -> protocol::Config {
    let mut core = protocol::Config::new(rank);
    core.window = config.window.max(1);
    core.view_change_timeout_ticks = (config.failure_timeout_ms / config.tick_ms.max(1)).max(2);
    core
}

/// The protocol thread's state: the core and the connections it talks through.
struct Engine {
    node: Node,
    conns: BTreeMap<ConnId, Conn>,
    /// The current member connection of each rank: frames from any other connection of that rank are
    /// an older life's and are dropped.
    member_conn: BTreeMap<Rank, ConnId>,
    /// Connections of restarted processes asking to rejoin, by the rank each asks for and its process.
    joiner_conn: BTreeMap<(Rank, ProcessId), ConnId>,
    next_conn: ConnId,
    shared: Arc<Shared>,
    signals: Sender<Signal>,
    events: Sender<Event>,
    gate: Arc<Gate>,
    /// Connections to close once the current outbox is dispatched (their last frames still go out).
    to_close: Vec<ConnId>,
    /// Member connections to turn into joiner connections once the current outbox is dispatched.
    to_demote: Vec<(Rank, ConnId)>,
    /// Frames for lives of the view without a connection yet, by rank, with the process they are for.
    unsent: BTreeMap<Rank, (ProcessId, EarlyFrames)>,
    /// Early frames of connections just promoted, to feed to the core once the outbox is dispatched.
    replay: Vec<(ConnId, Vec<Frame>)>,
    /// The member connections this process dialled before a view admitted it (see [`roles`]).
    dialled_while_joining: BTreeSet<ConnId>,
    /// Since when (clock ms) each member of the view has had no member connection.
    unconnected_since_ms: BTreeMap<Rank, u64>,
    /// See [`Config::failure_timeout_ms`].
    failure_timeout_ms: u64,
    /// Most bytes a joiner connection may send before a view admits its process
    /// ([`roles::early_bytes_max`] of the window).
    early_limit: usize,
    /// For a restarted process: how to reach the helper and the address to register once admitted
    /// (taken when it is sent).
    announce: Option<(formation::Config, Announce)>,
    finished: bool,
    /// The group's size N.
    size: u16,
    /// Every rank's last known address, of admitted lives only (and this member's own), handed to a
    /// process that rejoins through this member.
    directory: Vec<RosterEntry>,
    /// The application's state, if it asked for state transfer.
    state: Option<ReplicatedState>,
    /// Where this member is in receiving a snapshot.
    transfer: Transfer,
    /// Where protocol events are traced, if anywhere.
    trace: Option<TraceSink>,
    /// Events (and hand-offs of the state to newer lives) held back until the snapshot is restored.
    held: Vec<Held>,
    /// See [`Config::delivery_queue_max`].
    delivery_queue_max: usize,
    /// The core was told the application is behind.
    application_busy: bool,
    /// See [`Config::hop_probe`].
    probe: Option<EngineProbe>,
}

/// The address a restarted process registers with the helper once the group admitted it.
#[derive(Clone, Debug)]
struct Announce {
    host: String,
    port: u16,
}

/// A returning member's progress in receiving the application's state.
#[derive(Debug)]
enum Transfer {
    /// Nothing to receive.
    None,
    /// Not yet in a view; snapshot chunks that arrive before the view are kept.
    Admitted { early: Option<Assembly> },
    /// Waiting for the snapshot of `view` from the `sponsor` life; events are held.
    Awaiting {
        sponsor: MemberId,
        view: ViewId,
        assembly: Option<Assembly>,
    },
}

/// A snapshot being reassembled from its chunks.
#[derive(Debug)]
struct Assembly {
    /// The rank and process it comes from.
    from: (Rank, ProcessId),
    view: ViewId,
    position: u64,
    total: u64,
    bytes: Vec<u8>,
}

impl Assembly {
    fn is_complete(&self) -> bool {
        self.bytes.len() as u64 == self.total
    }
}

/// One chunk of a snapshot, as it arrived.
struct Chunk {
    from: (Rank, ProcessId),
    view: ViewId,
    position: u64,
    offset: u64,
    total: u64,
    bytes: Vec<u8>,
}

/// Adds `chunk` to the assembly in `slot`: a chunk at offset 0 starts a new one; any other must
/// continue the one in progress exactly (same sender, view, position and length, next offset), or the
/// assembly is dropped.
fn add_chunk(slot: &mut Option<Assembly>, chunk: Chunk) -> std::result::Result<(), String> {
    if chunk.offset == 0 {
        *slot = Some(Assembly {
            from: chunk.from,
            view: chunk.view,
            position: chunk.position,
            total: chunk.total,
            bytes: chunk.bytes,
        });
        return Ok(());
    }
    let fits = slot.as_ref().is_some_and(|a| {
        a.from == chunk.from
            && a.view == chunk.view
            && a.position == chunk.position
            && a.total == chunk.total
            && a.bytes.len() as u64 == chunk.offset
    });
    if !fits {
        *slot = None;
        return Err(format!(
            "snapshot chunk at offset {} of {} from rank {} does not continue the snapshot in progress",
            chunk.offset, chunk.total, chunk.from.0
        ));
    }
    if let Some(assembly) = slot.as_mut() {
        assembly.bytes.extend_from_slice(&chunk.bytes);
    }
    Ok(())
}

/// What a member waiting for its own snapshot holds back.
#[derive(Debug)]
enum Held {
    /// An event for the application (a delivery is applied to the state when it is released).
    Event(Event),
    /// `view` made this member the sponsor of its new lives: hand them the state at `position` once
    /// every event before it is released.
    Handoff { view: View, position: u64 },
}

impl Engine {
    fn run(mut self, signals: Receiver<Signal>, mut incoming: Receiver<Incoming>, tick: Duration) {
        let ticker = crossbeam_channel::tick(tick);
        let mut out = Outbox::new();
        while !self.finished {
            self.flush_trace();
            select! {
                recv(signals) -> signal => match signal {
                    Ok(signal) => self.on_signal(signal, &mut out),
                    Err(_) => break,
                },
                recv(ticker) -> _ => {
                    self.node.handle(Input::Tick, &mut out);
                    self.suspect_unconnected(&mut out);
                }
                recv(incoming) -> accepted => match accepted {
                    Ok(accepted) => self.on_incoming(accepted),
                    // The acceptor stopped: stop selecting on it rather than spin on a closed channel.
                    Err(_) => incoming = crossbeam_channel::never(),
                },
            }
            // Drain what is already queued before flushing: acknowledgements coalesce under load and go
            // out at once otherwise.
            while !self.finished {
                self.dispatch(&mut out);
                match signals.try_recv() {
                    Ok(signal) => self.on_signal(signal, &mut out),
                    Err(_) => break,
                }
            }
            self.node.flush(&mut out);
            self.dispatch(&mut out);
            self.pace_to_application(&mut out);
            // Debug builds (every `make test` run) check the core's invariants after each batch, as
            // the simulator does after every input: the real runtime's interleavings are checked too.
            #[cfg(debug_assertions)]
            self.node.check_invariants();
        }
        self.flush_trace();
        self.gate.close(Closed::ShutDown);
        for conn in self.conns.values() {
            conn.outgoing.close();
        }
    }

    /// Holds back deliveries while the application is behind, resumes when it has caught up halfway.
    fn pace_to_application(&mut self, out: &mut Outbox) {
        let waiting = self.events.len();
        let busy = if self.application_busy {
            waiting > self.delivery_queue_max / 2
        } else {
            waiting > self.delivery_queue_max
        };
        if busy != self.application_busy {
            debug!(
                "member {}: application {} ({waiting} events waiting)",
                self.node.me(),
                if busy { "behind" } else { "caught up" }
            );
            self.application_busy = busy;
            self.node.handle(Input::ApplicationBusy(busy), out);
            self.dispatch(out);
        }
    }

    fn on_signal(&mut self, signal: Signal, out: &mut Outbox) {
        match signal {
            Signal::Frame { conn, frame } => self.on_frame(conn, frame, out),
            Signal::Closed { conn, reason } => self.on_closed(conn, &reason, out),
            Signal::Suspect(life) => self.handle(Input::Suspect(life), out),
            Signal::Multicast(payload) => {
                if let Some(probe) = &mut self.probe {
                    probe.taken(self.node.me().rank);
                }
                self.handle(Input::Multicast(payload), out)
            }
            Signal::Leave => self.handle(Input::Leave, out),
            Signal::Status(reply) => {
                let _ = reply.send(self.node.status());
            }
            Signal::Dialled { life, stream } => self.on_dialled(life, stream),
            Signal::Shutdown => {
                self.trace_event(EventKind::Stop);
                self.finished = true
            }
        }
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame, out: &mut Outbox) {
        let Some((role, process)) = self.conns.get(&conn).map(|c| (c.role, c.process)) else {
            return;
        };
        let me = self.node.me();
        let role_rank = match role {
            Role::Member(rank) | Role::Joiner(rank) => rank,
        };
        match (role, frame) {
            (Role::Member(rank), Frame::Protocol(msg)) if self.member_conn.get(&rank) == Some(&conn) => {
                if self.speaks_for_listed_life(rank, process) {
                    if let Some(probe) = &mut self.probe {
                        probe.frame(me.rank, self.node.view(), rank, &msg);
                    }
                    self.handle(Input::Received { from: rank, msg }, out)
                } else {
                    debug!(
                        "member {me}: {} from process {process} of rank {rank}, not the life the view lists, dropped",
                        msg.kind()
                    )
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
            ) if asked == rank && asking == process => self.handle(Input::JoinRequest { rank, process }, out),
            (
                Role::Joiner(rank),
                Frame::Protocol(Message::JoinRequest {
                    rank: asked,
                    process: asking,
                }),
            ) => warn!(
                "member {me}: unexpected join-request frame on connection {conn} dropped: the connection of process \
                 {process} asking for rank {rank} asked for rank {asked} as process {asking}"
            ),
            (_, Frame::Register(register))
                if register.rejoin == Some(role_rank) && register.process == process && register.admitted.is_none() =>
            {
                self.on_new_address(conn, register.host, register.port)
            }
            // Sent after a view admitted that process, which this member has not installed yet.
            (Role::Joiner(rank), frame @ (Frame::Protocol(_) | Frame::Snapshot { .. })) => {
                self.keep_early(conn, rank, frame)
            }
            // A member answering a rejoiner's address with its directory: read by `rejoin.rs` before the
            // connection is handed to the runtime; a repeated answer carries nothing new.
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
            ) if self.member_conn.get(&rank) == Some(&conn) => self.on_snapshot(Chunk {
                from: (rank, process),
                view,
                position,
                offset,
                total,
                bytes: chunk,
            }),
            (_, other) => warn!(
                "member {me}: unexpected {} frame on connection {conn} dropped",
                other.kind()
            ),
        }
    }

    /// True if frames of `process` for `rank` may reach the core: the installed view lists that rank's
    /// life with that very process (before a first view, a restarted process takes its dials' frames:
    /// its core installs only a decision that admits it).
    fn speaks_for_listed_life(&self, rank: Rank, process: ProcessId) -> bool {
        self.node
            .view()
            .map_or(true, |view| view.member(rank).is_some_and(|m| m.process == process))
    }

    /// The life of the installed view that a member connection of `process` for `rank` speaks for.
    fn listed_life(&self, rank: Rank, process: ProcessId) -> Option<MemberId> {
        self.node
            .view()
            .and_then(|view| view.member(rank))
            .filter(|m| m.process == process)
    }

    /// A restarted process told this member its new address: keep it on its connection (committed to
    /// the directory only once a view admits that process, see [`Engine::commit_addresses`]).
    fn on_new_address(&mut self, conn: ConnId, host: String, port: u16) {
        if let Some(joiner) = self.conns.get_mut(&conn) {
            joiner.announced = Some((host, port));
        }
    }

    /// The first frame on a connection a restarted process dialled (heartbeats aside): every address
    /// this member knows, and the life that answers, which is the life the connection speaks with. Sent
    /// as the connection is taken, before anything else can be queued on it, so that the dialler can
    /// read it before it hands the connection on.
    fn greet(&self, conn: ConnId, rank: Rank) {
        let roster = Roster {
            rank,
            size: self.size,
            members: self.directory.clone(),
            from: Some(self.node.me()),
        };
        if let Some(conn) = self.conns.get(&conn) {
            conn.outgoing.push(&Frame::Roster(roster));
        }
    }

    /// The addresses that the lives of `view` announced on their connections, now that the view
    /// admits their processes, go to the directory (a later life's entry is never overwritten by an
    /// earlier one's); and this member's own entry names its current life.
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
        if let Some(own) = self.directory.iter().find(|entry| entry.rank == me.rank).cloned() {
            admitted.push(RosterEntry {
                incarnation: me.incarnation,
                process: me.process,
                ..own
            });
        }
        for entry in admitted {
            match self.directory.iter_mut().find(|known| known.rank == entry.rank) {
                Some(known) if known.incarnation > entry.incarnation && known.rank != me.rank => {}
                Some(known) => {
                    if (&known.host, known.port) != (&entry.host, entry.port) {
                        info!(
                            "member {me}: rank {} (life {}) now at {}:{}",
                            entry.rank, entry.incarnation.0, entry.host, entry.port
                        );
                    }
                    *known = entry;
                }
                None => {
                    self.directory.push(entry);
                    self.directory.sort_by_key(|known| known.rank);
                }
            }
        }
    }

    /// Keeps a frame of a joiner connection until a view admits its process (see [`roles`]); a
    /// connection that sends more than [`roles::early_bytes_max`] before that is closed.
    fn keep_early(&mut self, conn: ConnId, rank: Rank, frame: Frame) {
        let me = self.node.me();
        let Some(entry) = self.conns.get_mut(&conn) else { return };
        let kind = frame.kind();
        if entry.early.keep(frame).is_err() {
            warn!(
                "member {me}: connection {conn} of rank {rank} sent over {} bytes before a view admitted it; \
                 closing it",
                entry.early.limit()
            );
            self.forget_conn(conn);
            return;
        }
        if entry.early.len() == 1 {
            info!(
                "member {me}: {kind} frame on connection {conn} of rank {rank}, asking to rejoin, held until a view \
                 admits it"
            );
        } else {
            debug!("member {me}: {kind} frame on connection {conn} of rank {rank} held too");
        }
    }

    fn on_closed(&mut self, conn: ConnId, reason: &str, out: &mut Outbox) {
        // Shut down at once: the reader or the writer failed, and the other one may be stuck.
        if let Some(streams) = self.shared.streams.lock().remove(&conn) {
            for stream in &streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        self.dialled_while_joining.remove(&conn);
        let Some(closed) = self.conns.remove(&conn) else { return };
        closed.outgoing.close();
        self.forget_watched(conn);
        match closed.role {
            Role::Member(rank) if self.member_conn.get(&rank) == Some(&conn) => {
                self.member_conn.remove(&rank);
                if rank != self.node.me().rank {
                    // The life this connection spoke for, if the view lists it.
                    match self.listed_life(rank, closed.process) {
                        Some(life) => {
                            info!(
                                "member {}: connection to {life} lost ({reason}): suspecting it",
                                self.node.me()
                            );
                            self.handle(Input::Suspect(life), out);
                        }
                        None => info!(
                            "member {}: connection to process {} of rank {rank}, no life of the view, closed: {reason}",
                            self.node.me(),
                            closed.process
                        ),
                    }
                }
            }
            Role::Joiner(rank) => {
                if self.joiner_conn.get(&(rank, closed.process)) == Some(&conn) {
                    self.joiner_conn.remove(&(rank, closed.process));
                }
                info!(
                    "member {}: connection {conn} of rank {rank}, asking to rejoin, closed: {reason}",
                    self.node.me()
                );
            }
            _ => {}
        }
    }

    fn on_incoming(&mut self, accepted: Incoming) {
        let Incoming { hello, stream } = accepted;
        match hello.purpose {
            Purpose::Rejoin => {
                let (rank, process) = (hello.rank, hello.process);
                let Ok(reading) = stream.try_clone() else { return };
                let links = self.links();
                let node = &self.node;
                if roles::arrives_admitted(node.view(), rank, process, &links, |m| node.is_suspected(m)) {
                    info!(
                        "member {}: process {process} of rank {rank}, admitted by the current view, connects: its \
                         member connection",
                        self.node.me()
                    );
                    if let Ok(conn) = self.add_conn(Role::Member(rank), process, reading, stream) {
                        self.greet(conn, rank);
                        self.send_unsent(rank);
                    }
                    return;
                }
                info!(
                    "member {}: process {process} connects to rejoin as rank {rank}",
                    self.node.me()
                );
                if let Ok(conn) = self.add_conn(Role::Joiner(rank), process, reading, stream) {
                    self.greet(conn, rank);
                    if let Some(old) = self.joiner_conn.insert((rank, process), conn) {
                        self.close_conn(old);
                    }
                }
            }
            Purpose::Status => {
                // Answered from a short-lived thread: the protocol thread never waits on a socket.
                let report = Frame::StatusReport {
                    report: self.node.status().to_string(),
                };
                let _ = std::thread::Builder::new().name("tom-status".into()).spawn(move || {
                    let _ = super::net::write_frame(&stream, &report, Duration::from_secs(5));
                    let _ = stream.shutdown(Shutdown::Both);
                });
            }
            Purpose::Form => {
                warn!(
                    "member {}: formation connection from rank {} after formation refused",
                    self.node.me(),
                    hello.rank
                );
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Registers a connection: a reader on `reading`, a writer on `writing` (two ends of one socket,
    /// or, for the self-connection, the two sockets of one loopback connection).
    /// `process` is the process at the other end.
    fn add_conn(&mut self, role: Role, process: ProcessId, reading: TcpStream, writing: TcpStream) -> Result<ConnId> {
        let conn = self.next_conn;
        self.next_conn += 1;
        let me = self.node.me().rank;
        let (rank, is_member) = match role {
            Role::Member(rank) => (rank, true),
            Role::Joiner(rank) => (rank, false),
        };
        let copies = [reading.try_clone()?, writing.try_clone()?];
        self.shared.streams.lock().insert(conn, copies);
        let heard = Arc::new(LastHeard::default());
        heard.stamp(self.shared.clock.now_ms());
        let signals = self.signals.clone();
        let hops = self.probe.as_ref().map(|probe| probe.hops.clone());
        let write_probe = hops.clone().map(|hops| WriteProbe { hops, me, peer: rank });
        let (outgoing, writer) = Outgoing::start_probed(
            writing,
            self.shared.clock,
            format!("tom-{me}-w{rank}"),
            write_probe,
            move |error| {
                let _ = signals.send(Signal::Closed {
                    conn,
                    reason: format!("write failed: {error}"),
                });
            },
        )?;
        let reader = spawn_reader_probed(
            reading,
            conn,
            Arc::clone(&heard),
            self.shared.clock,
            self.signals.clone(),
            format!("tom-{me}-r{rank}"),
            hops.map(|hops| ReadProbe { hops, me }),
        )?;
        {
            let mut threads = self.shared.threads.lock();
            // Threads of closed connections have ended: forget them (the protocol thread, first, runs).
            threads.retain(|thread| !thread.is_finished());
            threads.extend([writer, reader]);
        }
        let life = if is_member {
            self.listed_life(rank, process)
        } else {
            None
        };
        self.shared.watched.lock().push(Watched {
            conn,
            rank,
            is_member,
            life,
            outgoing: Arc::clone(&outgoing),
            heard: Arc::clone(&heard),
        });
        if let Role::Member(rank) = role {
            self.member_conn.insert(rank, conn);
        }
        self.conns.insert(
            conn,
            Conn {
                role,
                process,
                outgoing,
                early: EarlyFrames::new(self.early_limit),
                announced: None,
            },
        );
        Ok(conn)
    }

    /// Closes a connection once its writer has sent what is queued (it then shuts the socket down,
    /// which ends the reader).
    fn close_conn(&mut self, conn: ConnId) {
        self.dialled_while_joining.remove(&conn);
        if let Some(closed) = self.conns.remove(&conn) {
            closed.outgoing.close();
            self.forget_watched(conn);
        }
        self.shared.streams.lock().remove(&conn);
    }

    /// The member connections with the process each speaks for (for [`roles`]).
    fn links(&self) -> BTreeMap<Rank, Link> {
        self.member_conn
            .iter()
            .filter_map(|(&rank, &conn)| {
                let process = self.conns.get(&conn)?.process;
                Some((rank, Link { conn, process }))
            })
            .collect()
    }

    /// Closes a connection and forgets whichever role it had.
    fn forget_conn(&mut self, conn: ConnId) {
        self.member_conn.retain(|_, c| *c != conn);
        self.joiner_conn.retain(|_, c| *c != conn);
        self.close_conn(conn);
    }

    fn forget_watched(&self, conn: ConnId) {
        self.shared.watched.lock().retain(|w| w.conn != conn);
    }

    /// Carries out the core's outputs, in order.
    fn dispatch(&mut self, out: &mut Outbox) {
        for output in out.drain() {
            self.trace_output(&output);
            match output {
                Output::Send { to, msg } => {
                    if let Some(probe) = &mut self.probe {
                        probe.sent(self.node.me().rank, self.node.view(), to, &msg);
                    }
                    match self.member_conn.get(&to).and_then(|c| self.conns.get(c)) {
                        Some(conn) => conn.outgoing.push(&Frame::Protocol(msg)),
                        None => self.keep_unsent(to, Frame::Protocol(msg)),
                    }
                }
                Output::SendToJoiner { rank, msg } => {
                    // Every process asking for that rank hears it (a refusal is about the rank).
                    let frame = Frame::Protocol(msg);
                    for (_, conn) in self
                        .joiner_conn
                        .range((rank, ProcessId(0))..=(rank, ProcessId(u64::MAX)))
                    {
                        if let Some(conn) = self.conns.get(conn) {
                            conn.outgoing.push(&frame);
                        }
                    }
                }
                Output::Deliver(delivery) => {
                    if delivery.origin == self.node.me() {
                        self.gate.release();
                        if let Some(probe) = &mut self.probe {
                            probe.delivered(delivery.origin.rank);
                        }
                    }
                    self.report(Event::Deliver(delivery));
                }
                Output::ViewInstalled(view) => {
                    self.unsent
                        .retain(|rank, (process, _)| view.member(*rank).is_some_and(|m| m.process == *process));
                    self.adopt_view(&view);
                    self.commit_addresses(&view);
                    self.refresh_watched();
                    self.announce_admission(&view);
                    self.transfer_state(&view);
                    self.report(Event::View(view));
                }
                Output::Joined { position } => {
                    let _ = self.events.send(Event::Joined { position });
                }
                Output::Excluded { view } => {
                    self.gate.close(Closed::Excluded(view));
                    let _ = self.events.send(Event::Excluded { view });
                    self.finished = true;
                }
                Output::Left => {
                    self.gate.close(Closed::ShutDown);
                    let _ = self.events.send(Event::Left);
                    self.finished = true;
                }
            }
        }
        for conn in std::mem::take(&mut self.to_close) {
            self.forget_conn(conn);
        }
        let demote = std::mem::take(&mut self.to_demote);
        if !demote.is_empty() {
            for (rank, conn) in demote {
                self.demote(rank, conn);
            }
            self.refresh_watched();
        }
        // The early frames of connections promoted by a view just installed: the core sees them now,
        // in the order they arrived, before anything that arrives later on the same connection.
        let replay = std::mem::take(&mut self.replay);
        if !replay.is_empty() {
            for (conn, frames) in replay {
                for frame in frames {
                    self.on_frame(conn, frame, out);
                }
            }
            self.dispatch(out);
        }
    }

    /// A restarted process just installed the view that admitted it: it tells the helper, on a
    /// short-lived thread (the protocol thread never waits on a socket), so that the helper's roster
    /// records this life's address. Before this, the helper only looked the roster up for it. The
    /// helper answers with its roster, which names every admitted life: the lives of the view this one
    /// has no connection to (admitted after this process found the group, at an address it never
    /// knew) are dialled at the address the roster names for that very life.
    fn announce_admission(&mut self, view: &View) {
        let me = self.node.me();
        if me.incarnation.0 != view.id.0 {
            return;
        }
        let Some((formation, announce)) = self.announce.take() else {
            return;
        };
        let links = self.links();
        let missing: Vec<MemberId> = view
            .members
            .iter()
            .filter(|m| m.rank != me.rank && links.get(&m.rank).map(|l| l.process) != Some(m.process))
            .copied()
            .collect();
        let register = rejoin::admitted_register(&formation, &announce.host, announce.port, me);
        let signals = self.signals.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tom-{}-admitted", me.rank))
            .spawn(move || {
                let roster = match rejoin::register_admitted(&formation, register, me) {
                    Ok(roster) => {
                        info!(
                            "member {me}: the helper at {} records this life at {}:{}",
                            formation.helper, announce.host, announce.port
                        );
                        roster
                    }
                    Err(error) => {
                        warn!(
                            "member {me}: could not tell the helper at {} that this life was admitted: {error}",
                            formation.helper
                        );
                        return;
                    }
                };
                for life in missing {
                    let listed = roster.members.iter().find(|e| {
                        e.rank == life.rank && e.incarnation == life.incarnation && e.process == life.process
                    });
                    let Some(entry) = listed else { continue };
                    match rejoin::dial_listed(&formation, entry, me, &announce.host, announce.port) {
                        Ok((stream, answered)) if answered == life => {
                            info!("member {me}: dialled {life}, which it had no connection to");
                            let _ = signals.send(Signal::Dialled { life, stream });
                        }
                        Ok((stream, answered)) => {
                            warn!(
                                "member {me}: {answered}, not {life}, answered at {}:{}",
                                entry.host, entry.port
                            );
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                        Err(error) => warn!("member {me}: could not dial {life}: {error}"),
                    }
                }
            });
        if let Err(error) = spawned {
            warn!("member {me}: no thread to tell the helper of this life: {error}");
        }
    }

    /// A connection dialled after this life's admission to `life`: its member connection, if the view
    /// still lists that life and no member connection of it came meanwhile.
    fn on_dialled(&mut self, life: MemberId, stream: TcpStream) {
        let connected = self.member_conn.contains_key(&life.rank);
        if self.listed_life(life.rank, life.process).is_none() || connected {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let Ok(reading) = stream.try_clone() else { return };
        if self
            .add_conn(Role::Member(life.rank), life.process, reading, stream)
            .is_ok()
        {
            self.send_unsent(life.rank);
        }
    }

    /// A frame for a life of the view this member has no connection to yet (the two were admitted at
    /// different times and neither dialled the other; the late dial is on its way): kept, in order, for
    /// the connection, so that nothing sent on the link is lost, up to the early-frame bound (then the
    /// frames are dropped: the life will be suspected for want of a connection anyway).
    fn keep_unsent(&mut self, to: Rank, frame: Frame) {
        let me = self.node.me();
        // Not for a suspected life: its connection broke (or it is silent), and a view without it is
        // on its way.
        let listed = self.node.view().and_then(|v| v.member(to));
        let Some(life) = listed.filter(|life| to != me.rank && !self.node.is_suspected(*life)) else {
            debug!("member {me}: no connection to {to}; {} dropped", frame.kind());
            return;
        };
        let limit = self.early_limit;
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
            .and_then(|c| self.conns.get(c))
            .filter(|c| c.process == process);
        if let Some(conn) = conn {
            debug!(
                "member {}: {} frames kept for {rank} while it had no connection go out",
                self.node.me(),
                frames.len()
            );
            for frame in frames.take() {
                conn.outgoing.push(&frame);
            }
        }
    }

    /// A member of the view without a member connection cannot take part: after a failure timeout
    /// without one (a connection may still be on its way from the acceptor), it is suspected, as a
    /// silent member would be, rather than left to stall the group.
    fn suspect_unconnected(&mut self, out: &mut Outbox) {
        let me = self.node.me();
        let Some(view) = self
            .node
            .view()
            .filter(|_| self.node.phase() == protocol::Phase::Member)
        else {
            self.unconnected_since_ms.clear();
            return;
        };
        let unconnected = roles::unconnected(me.rank, view, &self.links());
        let view_id = view.id;
        let now_ms = self.shared.clock.now_ms();
        self.unconnected_since_ms.retain(|rank, _| unconnected.contains(rank));
        for rank in unconnected {
            let since_ms = *self.unconnected_since_ms.entry(rank).or_insert(now_ms);
            if now_ms.saturating_sub(since_ms) > self.failure_timeout_ms {
                warn!(
                    "member {me}: no connection to rank {rank} of view {view_id} for over {} ms: suspecting it",
                    self.failure_timeout_ms
                );
                // Again only after another timeout, should the suspicion not lead to a view change.
                self.unconnected_since_ms.insert(rank, now_ms);
                if let Some(life) = self.node.view().and_then(|v| v.member(rank)) {
                    self.handle(Input::Suspect(life), out);
                }
            }
        }
    }

    /// Applies a delivery to the application's state and reports an event, or holds both back while a
    /// snapshot is awaited.
    fn report(&mut self, event: Event) {
        if matches!(self.transfer, Transfer::Awaiting { .. }) {
            self.held.push(Held::Event(event));
            return;
        }
        if let (Event::Deliver(delivery), Some(state)) = (&event, &self.state) {
            state.0.lock().apply(delivery);
        }
        let _ = self.events.send(event);
    }

    /// At a view installed: a member just admitted starts waiting for its state (or restores the one
    /// that came early); a member waiting on a sponsor that is gone stops; the sponsor of the view's
    /// new lives hands them the state at the join position, at once, or, while it still waits for its
    /// own snapshot, once that is restored and everything before this view is applied.
    fn transfer_state(&mut self, view: &View) {
        let me = self.node.me();
        match std::mem::replace(&mut self.transfer, Transfer::None) {
            Transfer::Admitted { early } => {
                let Some(sponsor) = state::sponsor(view) else { return };
                // Chunks that came before the view count only if they are the sponsor's, for this view.
                let early = early.filter(|a| a.from == (sponsor.rank, sponsor.process) && a.view == view.id);
                let complete = early.as_ref().is_some_and(Assembly::is_complete);
                self.transfer = Transfer::Awaiting {
                    sponsor,
                    view: view.id,
                    assembly: early,
                };
                if complete {
                    self.restore_awaited();
                }
                return;
            }
            Transfer::Awaiting {
                sponsor, view: awaited, ..
            } if !view.contains(sponsor) => {
                warn!("member {me}: {sponsor} left before handing over the state of view {awaited}; stopping");
                self.gate.close(Closed::Excluded(view.id));
                self.held.clear();
                let _ = self.events.send(Event::Excluded { view: view.id });
                self.finished = true;
                return;
            }
            other => self.transfer = other,
        }
        if state::sponsor(view) != Some(me) || state::new_lives(view).next().is_none() {
            return;
        }
        let position = self.node.delivered_count();
        if matches!(self.transfer, Transfer::Awaiting { .. }) {
            info!(
                "member {me}: sponsor of view {}'s new lives, but its own state is not restored yet: handing it \
                 on once it is",
                view.id
            );
            self.held.push(Held::Handoff {
                view: view.clone(),
                position,
            });
        } else {
            self.hand_off(view, position);
        }
    }

    /// Sends the application's state, as it is now (at `position`), to the new lives of `view`, in
    /// chunks, on the member connection of each (of that life's process).
    fn hand_off(&self, view: &View, position: u64) {
        let me = self.node.me();
        let snapshot = self.state.as_ref().map(|s| s.0.lock().snapshot()).unwrap_or_default();
        let total = snapshot.len() as u64;
        let mut chunks: Vec<Frame> = snapshot
            .chunks(wire::SNAPSHOT_CHUNK_LEN_MAX)
            .scan(0u64, |offset, chunk| {
                let frame = Frame::Snapshot {
                    view: view.id,
                    position,
                    offset: *offset,
                    total,
                    chunk: chunk.to_vec(),
                };
                *offset += chunk.len() as u64;
                Some(frame)
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(Frame::Snapshot {
                view: view.id,
                position,
                offset: 0,
                total: 0,
                chunk: Vec::new(),
            });
        }
        for life in state::new_lives(view) {
            let conn = self
                .member_conn
                .get(&life.rank)
                .and_then(|c| self.conns.get(c))
                .filter(|c| c.process == life.process);
            match conn {
                Some(conn) => {
                    info!(
                        "member {me}: handing the state at position {position} ({total} bytes, {} chunks) to {life}",
                        chunks.len()
                    );
                    for chunk in &chunks {
                        conn.outgoing.push(chunk);
                    }
                }
                None => warn!("member {me}: no connection to {life} to hand it the state"),
            }
        }
    }

    /// A snapshot chunk arrived: kept before the view that admits this member, added to the awaited
    /// snapshot after; the awaited snapshot, once whole, is restored.
    fn on_snapshot(&mut self, chunk: Chunk) {
        let me = self.node.me();
        let (from, view) = (chunk.from, chunk.view);
        let added = match &mut self.transfer {
            Transfer::Admitted { early } => add_chunk(early, chunk),
            Transfer::Awaiting {
                sponsor,
                view: awaited,
                assembly,
            } if (sponsor.rank, sponsor.process) == from && *awaited == view => add_chunk(assembly, chunk),
            _ => {
                debug!("member {me}: snapshot chunk from {} for view {view} ignored", from.0);
                return;
            }
        };
        if let Err(problem) = added {
            warn!("member {me}: {problem}; dropped");
            return;
        }
        let complete = matches!(
            &self.transfer,
            Transfer::Awaiting { assembly: Some(a), .. } if a.is_complete()
        );
        if complete {
            self.restore_awaited();
        }
    }

    /// The awaited snapshot is whole: restore it, then release the held events (and hand-offs) in order.
    fn restore_awaited(&mut self) {
        let Transfer::Awaiting {
            sponsor,
            assembly: Some(assembly),
            ..
        } = std::mem::replace(&mut self.transfer, Transfer::None)
        else {
            return;
        };
        if let Some(state) = &self.state {
            state.0.lock().restore(&assembly.bytes);
        }
        info!(
            "member {}: state at position {} restored from {sponsor} ({} bytes)",
            self.node.me(),
            assembly.position,
            assembly.bytes.len()
        );
        for held in std::mem::take(&mut self.held) {
            match held {
                Held::Event(event) => self.report(event),
                Held::Handoff { view, position } => self.hand_off(&view, position),
            }
        }
    }

    /// A new view: joiner connections of the processes it admitted become member connections,
    /// connections that speak for no life it lists close once the decision (already queued) has gone
    /// out, and a life just admitted keeps its dials to processes still joining (the rules and why:
    /// [`roles`]).
    fn adopt_view(&mut self, view: &View) {
        let me = self.node.me();
        let adoption = roles::adopt(me, view, &self.links(), &self.joiner_conn, &self.dialled_while_joining);
        for (rank, conn) in adoption.promote {
            let Some(entry) = self.conns.get_mut(&conn) else {
                continue;
            };
            self.joiner_conn.remove(&(rank, entry.process));
            entry.role = Role::Member(rank);
            if !entry.early.is_empty() {
                debug!(
                    "member {me}: {} early frames ({} bytes) of rank {rank} to replay",
                    entry.early.len(),
                    entry.early.bytes()
                );
                self.replay.push((conn, entry.early.take()));
            }
            self.member_conn.insert(rank, conn);
        }
        for &(rank, conn) in &adoption.demote {
            info!(
                "member {me}: connection {conn}, dialled while joining, speaks for no life of rank {rank} in view {}: \
                 kept as its process's joiner connection",
                view.id
            );
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
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        entry.role = Role::Joiner(rank);
        let process = entry.process;
        if let Some(older) = self.joiner_conn.insert((rank, process), conn) {
            self.close_conn(older);
        }
    }

    /// Tells the heartbeat thread, for every connection, whether it is a member connection and which
    /// life of the installed view it speaks for.
    fn refresh_watched(&self) {
        let mut watched = self.shared.watched.lock();
        for w in watched.iter_mut() {
            let Some(conn) = self.conns.get(&w.conn) else { continue };
            w.is_member = matches!(conn.role, Role::Member(_));
            w.life = if w.is_member {
                self.listed_life(w.rank, conn.process)
            } else {
                None
            };
        }
    }
}

/// The trace hooks: events derived from the core's inputs and outputs, stamped with the wall clock.
impl Engine {
    /// Feeds one input to the core, tracing it (after the call, so the event carries the clock it left).
    fn handle(&mut self, input: Input, out: &mut Outbox) {
        let event = self.trace.as_ref().and_then(|_| trace::input_event(&self.node, &input));
        self.node.handle(input, out);
        if let Some(kind) = event {
            self.trace_event(kind);
        }
    }

    fn trace_output(&self, output: &Output) {
        if let Some(kind) = self
            .trace
            .as_ref()
            .and_then(|_| trace::output_event(&self.node, output))
        {
            self.trace_event(kind);
        }
    }

    fn trace_event(&self, kind: EventKind) {
        if let Some(sink) = &self.trace {
            sink.record(&TraceEvent::of(&self.node, trace::wall_clock_us(), kind));
        }
    }

    /// Once per batch of the protocol loop: a running member's trace is readable as it runs.
    fn flush_trace(&self) {
        if let Some(sink) = &self.trace {
            sink.flush();
        }
    }
}
