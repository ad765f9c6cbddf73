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
//! Connections: each rank has at most one member connection, whose frames go to the core; a process
//! asking to rejoin has a joiner connection until a view admits it. Which connection becomes which, at
//! each view, and what happens to frames that arrive early, is decided by [`super::roles`].
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
use super::links::{Clock, LastHeard, Outgoing};
use super::peer::spawn_reader;
use super::rejoin;
use super::roles::{self, EarlyFrames};
use super::state::{self, ReplicatedState};
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::formation::{self, Formed, Incoming};
use crate::message::Message;
use crate::protocol::{self, Delivery, Input, Node, Outbox, Output, Status};
use crate::trace::{self, EventKind, TraceEvent, TraceSink};
use crate::types::{Payload, ProcessId, Rank, View, ViewId};
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
    /// The heartbeat thread suspects `rank`.
    Suspect(Rank),
    /// The application multicasts.
    Multicast(Payload),
    /// The application leaves.
    Leave,
    /// The application asks for a status snapshot.
    Status(Sender<Status>),
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
    outgoing: Arc<Outgoing>,
    /// What a joiner connection sent beyond its join request, for when a view admits its life.
    early: EarlyFrames,
}

/// What the heartbeat thread watches: one entry per connection.
#[derive(Clone)]
pub struct Watched {
    /// The connection.
    pub conn: ConnId,
    /// The rank at the other end.
    pub rank: Rank,
    /// True for member connections (suspected when silent); joiner connections only get heartbeats.
    pub is_member: bool,
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
            size,
            roster,
            links,
            self_link,
            incoming,
            acceptor,
            ..
        } = formed;
        let view = View::initial(size);
        let node = Node::new(core_config(&config, rank), view.clone());
        let mut conns: Vec<(Rank, TcpStream, TcpStream)> = Vec::new();
        for (peer, stream) in links {
            conns.push((peer, stream.try_clone()?, stream));
        }
        let (dialled, accepted) = self_link;
        conns.push((rank, accepted, dialled));
        Member::launch(
            &config,
            node,
            size,
            roster,
            conns,
            incoming,
            acceptor,
            Some(Event::View(view)),
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
        let found = rejoin::reconnect(&config.formation, rank, peers)?;
        let node = Node::rejoin(core_config(&config, rank), fresh_process_id());
        let conns = found
            .links
            .into_iter()
            .map(|(peer, stream)| Ok((peer, stream.try_clone()?, stream)))
            .collect::<Result<Vec<_>>>()?;
        let member = Member::launch(
            &config,
            node,
            found.size,
            found.roster,
            conns,
            found.incoming,
            found.acceptor,
            None,
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
    /// (`(rank, reading end, writing end)`).
    #[allow(clippy::too_many_arguments)]
    fn launch(
        config: &Config,
        node: Node,
        size: u16,
        directory: Vec<RosterEntry>,
        conns: Vec<(Rank, TcpStream, TcpStream)>,
        incoming: Receiver<Incoming>,
        acceptor: formation::Acceptor,
        first_event: Option<Event>,
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
            dialled_while_joining: BTreeSet::new(),
            unconnected_since_ms: BTreeMap::new(),
            failure_timeout_ms: config.failure_timeout_ms,
            finished: false,
            size,
            directory,
            state: config.state.clone(),
            transfer,
            trace: config.trace.clone(),
            held: Vec::new(),
            delivery_queue_max: config.delivery_queue_max.max(1),
            application_busy: false,
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
        for (peer, reading, writing) in conns {
            let conn = engine.add_conn(Role::Member(peer), reading, writing)?;
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
        incarnation: crate::types::Incarnation(0),
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
/// A fresh identity for a life this process starts.
fn fresh_process_id() -> ProcessId {
    let nonce = crate::auth::fresh_nonce();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&nonce.0[..8]);
    ProcessId(u64::from_be_bytes(bytes))
}

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
    /// Connections of restarted processes asking to rejoin.
    joiner_conn: BTreeMap<Rank, ConnId>,
    next_conn: ConnId,
    shared: Arc<Shared>,
    signals: Sender<Signal>,
    events: Sender<Event>,
    gate: Arc<Gate>,
    /// Connections to close once the current outbox is dispatched (their last frames still go out).
    to_close: Vec<ConnId>,
    /// Member connections to turn into joiner connections once the current outbox is dispatched.
    to_demote: Vec<(Rank, ConnId)>,
    /// Early frames of connections just promoted, to feed to the core once the outbox is dispatched.
    replay: Vec<(ConnId, Vec<Frame>)>,
    /// The member connections this process dialled before a view admitted it (see [`roles`]).
    dialled_while_joining: BTreeSet<ConnId>,
    /// Since when (clock ms) each member of the view has had no member connection.
    unconnected_since_ms: BTreeMap<Rank, u64>,
    /// See [`Config::failure_timeout_ms`].
    failure_timeout_ms: u64,
    finished: bool,
    /// The group's size N.
    size: u16,
    /// Every rank's last known address, handed to a process that rejoins through this member.
    directory: Vec<RosterEntry>,
    /// The application's state, if it asked for state transfer.
    state: Option<ReplicatedState>,
    /// Where this member is in receiving a snapshot.
    transfer: Transfer,
    /// Where protocol events are traced, if anywhere.
    trace: Option<TraceSink>,
    /// Events held back until the snapshot is restored.
    held: Vec<Event>,
    /// See [`Config::delivery_queue_max`].
    delivery_queue_max: usize,
    /// The core was told the application is behind.
    application_busy: bool,
}

/// A returning member's progress in receiving the application's state.
#[derive(Debug)]
enum Transfer {
    /// Nothing to receive.
    None,
    /// Not yet in a view; a snapshot that arrives before the view is kept.
    Admitted { early: Option<(ViewId, Vec<u8>)> },
    /// Waiting for the snapshot of `view` from `sponsor`; events are held.
    Awaiting { sponsor: Rank, view: ViewId },
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
            Signal::Suspect(rank) => self.suspect_rank(rank, out),
            Signal::Multicast(payload) => self.handle(Input::Multicast(payload), out),
            Signal::Leave => self.handle(Input::Leave, out),
            Signal::Status(reply) => {
                let _ = reply.send(self.node.status());
            }
            Signal::Shutdown => {
                self.trace_event(EventKind::Stop);
                self.finished = true
            }
        }
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame, out: &mut Outbox) {
        let Some(role) = self.conns.get(&conn).map(|c| c.role) else {
            return;
        };
        let me = self.node.me();
        match (role, frame) {
            (Role::Member(rank), Frame::Protocol(msg)) if self.member_conn.get(&rank) == Some(&conn) => {
                self.handle(Input::Received { from: rank, msg }, out)
            }
            (Role::Member(rank), Frame::Protocol(_)) => {
                debug!("member {me}: frame from an old connection of {rank} dropped")
            }
            (Role::Joiner(rank), Frame::Protocol(Message::JoinRequest { rank: asked, process })) if asked == rank => {
                self.handle(Input::JoinRequest { rank, process }, out)
            }
            (Role::Joiner(rank), Frame::Register(register)) if register.rejoin == Some(rank) => {
                self.on_new_address(conn, rank, register.host, register.port)
            }
            // Sent after a view admitted that process, which this member has not installed yet.
            (Role::Joiner(rank), frame @ (Frame::Protocol(_) | Frame::Snapshot { .. }))
                if !matches!(frame, Frame::Protocol(Message::JoinRequest { .. })) =>
            {
                self.keep_early(conn, rank, frame)
            }
            // A member answering a rejoiner's address with its directory: only used by `--peer` discovery.
            (Role::Member(_), Frame::Roster(_)) => {}
            (Role::Member(rank), Frame::Snapshot { view, state, .. }) => self.on_snapshot(rank, view, &state),
            (_, other) => warn!(
                "member {me}: unexpected {} frame on connection {conn} dropped",
                other.kind()
            ),
        }
    }

    /// A restarted process told this member its new address: remember it (the next rejoiner may ask
    /// for it) and answer with every address this member knows.
    fn on_new_address(&mut self, conn: ConnId, rank: Rank, host: String, port: u16) {
        match self.directory.iter_mut().find(|entry| entry.rank == rank) {
            Some(entry) => {
                entry.host = host;
                entry.port = port;
            }
            None => {
                self.directory.push(RosterEntry { rank, host, port });
                self.directory.sort_by_key(|entry| entry.rank);
            }
        }
        let roster = Roster {
            rank,
            size: self.size,
            members: self.directory.clone(),
        };
        if let Some(joiner) = self.conns.get(&conn) {
            joiner.outgoing.push(&Frame::Roster(roster));
        }
    }

    /// Keeps a frame of a joiner connection until a view admits its life (see [`roles`]); a connection
    /// that sends more than a frame's worth before that is closed.
    fn keep_early(&mut self, conn: ConnId, rank: Rank, frame: Frame) {
        let me = self.node.me();
        let Some(entry) = self.conns.get_mut(&conn) else { return };
        let kind = frame.kind();
        if entry.early.keep(frame).is_err() {
            warn!(
                "member {me}: connection {conn} of rank {rank} sent over {} bytes before a view admitted it; \
                 closing it",
                roles::EARLY_BYTES_MAX
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
                    info!(
                        "member {}: connection to {rank} lost ({reason}): suspecting it",
                        self.node.me()
                    );
                    self.suspect_rank(rank, out);
                }
            }
            Role::Joiner(rank) => {
                if self.joiner_conn.get(&rank) == Some(&conn) {
                    self.joiner_conn.remove(&rank);
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
                let rank = hello.rank;
                let Ok(reading) = stream.try_clone() else { return };
                let node = &self.node;
                if roles::arrives_admitted(node.view(), rank, &self.member_conn, |m| node.is_suspected(m)) {
                    info!(
                        "member {}: rank {rank}, admitted by the current view, connects: its member connection",
                        self.node.me()
                    );
                    let _ = self.add_conn(Role::Member(rank), reading, stream);
                    return;
                }
                info!("member {}: rank {rank} connects to rejoin", self.node.me());
                if let Ok(conn) = self.add_conn(Role::Joiner(rank), reading, stream) {
                    if let Some(old) = self.joiner_conn.insert(rank, conn) {
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
    fn add_conn(&mut self, role: Role, reading: TcpStream, writing: TcpStream) -> Result<ConnId> {
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
        let (outgoing, writer) =
            Outgoing::start(writing, self.shared.clock, format!("tom-{me}-w{rank}"), move |error| {
                let _ = signals.send(Signal::Closed {
                    conn,
                    reason: format!("write failed: {error}"),
                });
            })?;
        let reader = spawn_reader(
            reading,
            conn,
            Arc::clone(&heard),
            self.shared.clock,
            self.signals.clone(),
            format!("tom-{me}-r{rank}"),
        )?;
        {
            let mut threads = self.shared.threads.lock();
            // Threads of closed connections have ended: forget them (the protocol thread, first, runs).
            threads.retain(|thread| !thread.is_finished());
            threads.extend([writer, reader]);
        }
        self.shared.watched.lock().push(Watched {
            conn,
            rank,
            is_member,
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
                outgoing,
                early: EarlyFrames::default(),
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
        let me = self.node.me();
        for output in out.drain() {
            self.trace_output(&output);
            match output {
                Output::Send { to, msg } => match self.member_conn.get(&to).and_then(|c| self.conns.get(c)) {
                    Some(conn) => conn.outgoing.push(&Frame::Protocol(msg)),
                    None => debug!("member {me}: no connection to {to}; {} dropped", msg.kind()),
                },
                Output::SendToJoiner { rank, msg } => {
                    if let Some(conn) = self.joiner_conn.get(&rank).and_then(|c| self.conns.get(c)) {
                        conn.outgoing.push(&Frame::Protocol(msg));
                    }
                }
                Output::Deliver(delivery) => {
                    if delivery.origin == self.node.me() {
                        self.gate.release();
                    }
                    self.report(Event::Deliver(delivery));
                }
                Output::ViewInstalled(view) => {
                    self.adopt_view(&view);
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
        for (rank, conn) in std::mem::take(&mut self.to_demote) {
            self.demote(rank, conn);
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

    /// Suspects the life the current view lists for `rank`.
    fn suspect_rank(&mut self, rank: Rank, out: &mut Outbox) {
        if let Some(life) = self.node.view().and_then(|v| v.member(rank)) {
            self.handle(Input::Suspect(life), out);
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
        let unconnected = roles::unconnected(me.rank, view, &self.member_conn);
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
                self.suspect_rank(rank, out);
            }
        }
    }

    /// Applies a delivery to the application's state and reports an event, or holds both back while a
    /// snapshot is awaited.
    fn report(&mut self, event: Event) {
        if matches!(self.transfer, Transfer::Awaiting { .. }) {
            self.held.push(event);
            return;
        }
        if let (Event::Deliver(delivery), Some(state)) = (&event, &self.state) {
            state.0.lock().apply(delivery);
        }
        let _ = self.events.send(event);
    }

    /// At a view installed: a sponsor sends the state to each new life; a member just admitted starts
    /// waiting for it (or restores the one that came early); a member waiting on a sponsor that is gone
    /// stops.
    fn transfer_state(&mut self, view: &View) {
        let me = self.node.me();
        match std::mem::replace(&mut self.transfer, Transfer::None) {
            Transfer::Admitted { early } => {
                let Some(sponsor) = state::sponsor(view) else { return };
                self.transfer = Transfer::Awaiting { sponsor, view: view.id };
                if let Some((early_view, snapshot)) = early {
                    self.on_snapshot(sponsor, early_view, &snapshot);
                }
                return;
            }
            Transfer::Awaiting { sponsor, view: awaited } if view.index_of(sponsor).is_none() => {
                warn!("member {me}: rank {sponsor} left before handing over the state of view {awaited}; stopping");
                self.gate.close(Closed::Excluded(view.id));
                self.held.clear();
                let _ = self.events.send(Event::Excluded { view: view.id });
                self.finished = true;
                return;
            }
            other => self.transfer = other,
        }
        if state::sponsor(view) != Some(me.rank) {
            return;
        }
        let position = self.node.delivered_count();
        let snapshot = self.state.as_ref().map(|s| s.0.lock().snapshot()).unwrap_or_default();
        for rank in state::new_lives(view).collect::<Vec<_>>() {
            if let Some(conn) = self.member_conn.get(&rank).and_then(|c| self.conns.get(c)) {
                info!("member {me}: handing the state at position {position} to rank {rank}");
                conn.outgoing.push(&Frame::Snapshot {
                    view: view.id,
                    position,
                    state: snapshot.clone(),
                });
            }
        }
    }

    /// A snapshot arrived from `from`: restore it if it is the awaited one, then release held events.
    fn on_snapshot(&mut self, from: Rank, view: ViewId, snapshot: &[u8]) {
        match &mut self.transfer {
            Transfer::Admitted { early } => *early = Some((view, snapshot.to_vec())),
            Transfer::Awaiting { sponsor, view: awaited } if *sponsor == from && *awaited == view => {
                if let Some(state) = &self.state {
                    state.0.lock().restore(snapshot);
                }
                info!("member {}: state restored from rank {from}", self.node.me());
                self.transfer = Transfer::None;
                for event in std::mem::take(&mut self.held) {
                    self.report(event);
                }
            }
            _ => debug!(
                "member {}: snapshot from {from} for view {view} ignored",
                self.node.me()
            ),
        }
    }

    /// A new view: joiner connections of lives it admitted become member connections, connections of
    /// ranks it no longer lists close once the decision (already queued) has gone out, and a life just
    /// admitted keeps its dials to ranks still joining (the rules and why: [`roles`]).
    fn adopt_view(&mut self, view: &View) {
        let me = self.node.me();
        let adoption = roles::adopt(
            me,
            view,
            &self.member_conn,
            &self.joiner_conn,
            &self.dialled_while_joining,
        );
        for (rank, conn) in adoption.promote {
            self.joiner_conn.remove(&rank);
            let Some(entry) = self.conns.get_mut(&conn) else {
                continue;
            };
            entry.role = Role::Member(rank);
            if !entry.early.is_empty() {
                debug!(
                    "member {me}: {} early frames of rank {rank} to replay",
                    entry.early.len()
                );
                self.replay.push((conn, entry.early.take()));
            }
            self.member_conn.insert(rank, conn);
            self.set_watched_as_member(conn, true);
        }
        for &(rank, conn) in &adoption.demote {
            info!(
                "member {me}: rank {rank} is not in view {}: keeping connection {conn}, dialled while joining, \
                 as its joiner connection",
                view.id
            );
        }
        self.to_demote.extend(adoption.demote);
        self.to_close.extend(adoption.close);
    }

    /// A member connection dialled while joining, to a rank the view no longer lists, becomes that
    /// rank's joiner connection (after the decision that removed the rank went out on it).
    fn demote(&mut self, rank: Rank, conn: ConnId) {
        if self.member_conn.get(&rank) != Some(&conn) {
            return;
        }
        self.member_conn.remove(&rank);
        self.dialled_while_joining.remove(&conn);
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.role = Role::Joiner(rank);
        }
        if let Some(older) = self.joiner_conn.insert(rank, conn) {
            self.close_conn(older);
        }
        self.set_watched_as_member(conn, false);
    }

    fn set_watched_as_member(&self, conn: ConnId, is_member: bool) {
        for watched in self.shared.watched.lock().iter_mut().filter(|w| w.conn == conn) {
            watched.is_member = is_member;
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
