//! The public [`Member`] handle: it forms or rejoins the group, starts the member's threads around a
//! pure [`Endpoint`], and turns the application's calls into signals for the protocol thread
//! (`engine.rs`). What it waits for (its own deliveries, admission, the end of a leave) the protocol
//! thread records in a shared `Progress`, never in the events, which belong to the application.
//!
//! Addresses: this member's directory (handed to processes that rejoin through it, `--peer`) lists
//! admitted lives only; a process that rejoined registers with the helper again, as admitted, once it
//! installed the view that admitted it (the endpoint decides both, see [`crate::endpoint::directory`]).
//!
//! Flow control: [`Member::multicast`] blocks while this member has `window` messages multicast and not
//! yet delivered; shutdown and the end of membership release it with an error.
//!
//! Shutdown order: stop the protocol thread (it closes every outgoing buffer), let the writers write
//! what is queued (at most `STOP_DRAIN_MS`: a leave's last relayed decision must get out), shut
//! every socket down (readers blocked in `read` return), stop the heartbeat thread, then join
//! everything. Nothing here waits on a peer past that bound, so shutdown never hangs.

use std::collections::BTreeMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::engine::Engine;
use super::events::Events;
use super::failure;
use super::gate::{Closed, Gate};
use super::heartbeat;
use super::hops::{EngineProbe, HopProbe};
use super::progress::{End, Progress};
use super::rejoin;
use super::state::AnyState;
use super::{DialRequest, Shared, Signal};
use crate::auth::Secret;
use crate::endpoint::{self, Endpoint, Origin};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::formation::{self, Formed, Incoming};
use crate::protocol::{self, Node, Status};
use crate::trace::TraceSink;
use crate::types::{Incarnation, MemberId, Payload, ProcessId, Rank, View};
use crate::wire::{self, Frame, Purpose, RosterEntry};

/// How long a stop waits for the writers to write what is queued before it shuts the sockets down:
/// long enough for a last decision on a healthy link, short enough that a peer that stopped reading
/// (a full socket) never holds a shutdown up for long.
const STOP_DRAIN_MS: u64 = 500;

/// The runtime's settings, as [`crate::Config`] hands them on: how to form the group, and the
/// runtime's timing. Not part of the supported API (use [`crate::Config`]); its values are taken as
/// they are, so [`crate::Config::validate`] must have passed.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// How to find the helper and the other members.
    pub formation: formation::FormationConfig,
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
    pub state: Option<AnyState>,
    /// Not part of the supported API: per-hop timestamps of sampled multicasts for
    /// `tom-bench --breakdown` (see [`super::hops`]). `None` (the default): nothing is stamped.
    #[doc(hidden)]
    pub hop_probe: Option<HopProbe>,
}

impl RuntimeConfig {
    /// Defaults: 10 ms ticks, heartbeats every 100 ms, a 1,500 ms failure timeout, a window of 1,024,
    /// at most 4,096 events waiting for the application.
    pub fn new(formation: formation::FormationConfig) -> RuntimeConfig {
        RuntimeConfig {
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

/// One connection to start with: `(rank, process at the other end, reading end, writing end)`.
type Opened = (Rank, ProcessId, TcpStream, TcpStream);

/// What a member starts from: its core, the group's size, the addresses it knows, and its first
/// connections (all of one origin).
struct Start {
    node: Node,
    size: u16,
    directory: Vec<RosterEntry>,
    /// Addresses the members that answered a restarted process listed in their greetings.
    learned: Vec<RosterEntry>,
    conns: Vec<Opened>,
    origin: Origin,
    /// A founder's first view, reported first.
    formed: Option<View>,
    /// A restarted process's address, registered with the helper once admitted.
    announce: Option<(String, u16)>,
}

/// What the protocol thread shares with the handle and the other threads.
struct Handles {
    shared: Arc<Shared>,
    signals: Sender<Signal>,
    events: Sender<Event>,
    gate: Arc<Gate>,
    progress: Arc<Progress>,
    dials: Sender<DialRequest>,
}

/// Names one of this member's own multicasts, as [`Member::multicast`] returns it: the `n`-th message
/// this life multicast, counting from 1. Give it to [`Member::wait_delivered`].
///
/// A member delivers its own messages in the order it multicast them (total order keeps each origin's
/// order), so message `n` is the `n`-th [`Event::Deliver`] whose origin is [`Member::id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(u64);

impl MessageId {
    /// Which of this life's multicasts it names: 1 for the first.
    pub fn number(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "own message {}", self.0)
    }
}

/// A running member of a group. Dropping it shuts it down (as a crash, for the others: use
/// [`Member::leave`] for a clean departure).
///
/// Every method takes `&self` (except [`Member::leave`]), so a member can be shared between threads
/// (in an `Arc`): one multicasts while another reads [`Member::events`].
pub struct Member {
    rank: Rank,
    size: u16,
    signals: Sender<Signal>,
    events: Events,
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    progress: Arc<Progress>,
    /// A [`crate::Config::state`] was given: a rejoined member's state is restored from a snapshot.
    state_transfer: bool,
    /// This life's multicasts handed to the protocol thread so far (under the lock, so that numbers
    /// follow the order in which the protocol thread takes them).
    multicasts: Mutex<u64>,
    stop_heartbeat: Mutex<Option<Sender<()>>>,
    acceptor: Mutex<Option<formation::Listener>>,
    local_addr: SocketAddr,
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("life", &self.progress.me())
            .field("size", &self.size)
            .field("local_addr", &self.local_addr)
            .field("multicasts", &*self.multicasts.lock())
            .field("ended", &self.progress.end())
            .finish_non_exhaustive()
    }
}

impl Member {
    /// Forms a new group through the helper of `config` and starts this member of it. Waits until the
    /// group's N members registered with the helper and connected to each other, at most
    /// [`crate::Config::join_timeout_ms`] ([`Error::Timeout`]).
    ///
    /// Its first event is [`Event::View`] with view 1 (see [`Event`]). Fails with
    /// [`Error::InvalidSetting`] before anything else when a setting cannot work.
    pub fn join(config: crate::Config) -> Result<Member> {
        let runtime = config.for_join()?;
        let formed = formation::form(&runtime.formation)?;
        Member::launch_formed(runtime, formed)
    }

    /// Starts a member on an already formed mesh. Not part of the supported API (tests form the mesh
    /// themselves).
    #[doc(hidden)]
    pub fn start(config: crate::Config, formed: Formed) -> Result<Member> {
        Member::launch_formed(config.for_start()?, formed)
    }

    fn launch_formed(config: RuntimeConfig, formed: Formed) -> Result<Member> {
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
        let mut conns: Vec<Opened> = Vec::new();
        for (peer, stream) in links {
            let Some(life) = view.member(peer) else { continue };
            conns.push((peer, life.process, stream.try_clone()?, stream));
        }
        let (dialled, accepted) = self_link;
        conns.push((rank, process, accepted, dialled));
        let start = Start {
            node,
            size,
            directory: roster,
            learned: Vec::new(),
            conns,
            origin: Origin::Mesh,
            formed: Some(view),
            announce: None,
        };
        Member::launch(&config, start, incoming, acceptor)
    }

    /// Comes back as `rank` after a crash (or a clean leave), as a new life of that rank with a new
    /// process identity: finds the live members through the helper of `config` (or, if it does not
    /// answer, through the [`crate::Config::peer`]s), asks to be admitted and waits until the group
    /// admits this process, at most [`crate::Config::join_timeout_ms`].
    ///
    /// With a [`crate::Config::state`], the state is restored from a live member's snapshot a moment
    /// after the admission (the snapshot may still be on its way when this returns):
    /// [`Member::wait_restored`] waits for it, after which [`crate::ReplicatedState::read`] sees the
    /// group's state at the join position (and every delivery since).
    ///
    /// Its events start with [`Event::Joined`] (the join position, also [`Member::join_position`]),
    /// then [`Event::View`] with the view that admitted it, then the group's deliveries from the join
    /// position on (see [`Event`]). Fails with a clear error when no member can be reached
    /// ([`Error::GroupUnreachable`]), when the group does not admit it in time ([`Error::Refused`] with
    /// the group's reason, for example because the rank is still alive, or [`Error::Timeout`]).
    pub fn rejoin(config: crate::Config, rank: Rank) -> Result<Member> {
        let (config, peers, join_timeout_ms) = config.for_rejoin()?;
        // A fresh identity for this life: the group's decision will name it.
        let process = crate::auth::fresh_process_id();
        let found = rejoin::reconnect(&config.formation, rank, process, &peers)?;
        let node = Node::rejoin(core_config(&config, rank), process);
        let conns = found
            .links
            .into_iter()
            .map(|(peer, (stream, life))| Ok((peer, life.process, stream.try_clone()?, stream)))
            .collect::<Result<Vec<_>>>()?;
        let start = Start {
            node,
            size: found.size,
            directory: found.roster,
            learned: found.learned,
            conns,
            origin: Origin::Dialled,
            formed: None,
            announce: Some((found.host.clone(), found.local_addr.port())),
        };
        let member = Member::launch(&config, start, found.incoming, found.acceptor)?;
        let deadline = Instant::now() + Duration::from_millis(join_timeout_ms);
        match member.progress.wait_until(deadline, |r| r.joined().is_some()) {
            Ok(true) => Ok(member),
            Ok(false) => {
                let reason = member.status().ok().and_then(|s| s.join_refusal);
                member.shutdown();
                Err(match reason {
                    Some(reason) => Error::Refused(format!("rank {rank} was not admitted: {reason}")),
                    None => Error::Timeout(format!("waiting to be admitted as rank {rank}")),
                })
            }
            Err(end) => {
                member.shutdown();
                Err(end.error())
            }
        }
    }

    /// Starts the threads around an endpoint made of `start`.
    fn launch(
        config: &RuntimeConfig,
        start: Start,
        incoming: Receiver<Incoming>,
        acceptor: formation::Listener,
    ) -> Result<Member> {
        let (signal_tx, signal_rx) = crossbeam_channel::unbounded();
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let (dial_tx, dial_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new());
        let gate = Arc::new(Gate::new(config.window));
        let progress = Arc::new(Progress::default());
        progress.set_me(start.node.me());
        let rank = start.node.me().rank;
        let own_address = own_address(&start.directory, rank, acceptor.local_addr());
        let size = start.size;
        let engine = Self::engine(
            config,
            start,
            Handles {
                shared: Arc::clone(&shared),
                signals: signal_tx.clone(),
                events: event_tx,
                gate: Arc::clone(&gate),
                progress: Arc::clone(&progress),
                dials: dial_tx,
            },
        )?;

        let tick = Duration::from_millis(config.tick_ms);
        let protocol_thread = std::thread::Builder::new()
            .name(format!("tom-{rank}-protocol"))
            .spawn(move || failure::run_or_fail(engine, |engine| engine.run(signal_rx, incoming, tick)))?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let heartbeat_thread = heartbeat::spawn(
            heartbeat::HeartbeatSettings {
                me: rank,
                heartbeat_interval_ms: config.heartbeat_interval_ms,
                failure_timeout_ms: config.failure_timeout_ms,
            },
            heartbeat::Dialler {
                formation: config.formation.clone(),
                requests: dial_rx,
                own_address,
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
            events: Events::new(event_rx),
            gate,
            shared,
            progress,
            state_transfer: config.state.is_some(),
            multicasts: Mutex::new(0),
            stop_heartbeat: Mutex::new(Some(stop_tx)),
            local_addr: acceptor.local_addr(),
            acceptor: Mutex::new(Some(acceptor)),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The protocol thread's engine around an endpoint made of `start`, with its first
    /// connections added and what they caused carried out.
    fn engine(config: &RuntimeConfig, start: Start, handles: Handles) -> Result<Engine> {
        let settings = endpoint_settings(config, start.size, start.announce.clone());
        let mut endpoint = Endpoint::new(start.node, settings, start.directory, start.formed);
        endpoint.learn_addresses(start.learned);
        let mut engine = Engine {
            endpoint,
            outgoing: BTreeMap::new(),
            next_conn: 0,
            shared: handles.shared,
            signals: handles.signals,
            events: handles.events,
            gate: handles.gate,
            progress: handles.progress,
            dials: handles.dials,
            formation: config.formation.clone(),
            state: config.state.clone(),
            trace: config.trace.clone(),
            delivery_queue_max: config.delivery_queue_max,
            application_busy: false,
            unpaced: false,
            probe: config.hop_probe.clone().map(EngineProbe::new),
            encoded: Vec::new(),
            appended_to: Vec::new(),
        };
        for (peer, process, reading, writing) in start.conns {
            let conn = engine.add_conn(peer, reading, writing)?;
            engine.endpoint.opened(conn, start.origin, peer, process);
        }
        engine.carry_out();
        Ok(engine)
    }

    /// This member's rank.
    pub fn rank(&self) -> Rank {
        self.rank
    }

    /// This life of the rank: rank, incarnation (1 for a founder, the view that admitted it for a
    /// rejoined one) and process. Deliveries of this member's own messages have it as their origin.
    pub fn id(&self) -> MemberId {
        self.progress.me().unwrap_or(MemberId {
            rank: self.rank,
            incarnation: crate::types::Incarnation(0),
            process: ProcessId(0),
        })
    }

    /// The size of the group at formation (N).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// For a member that rejoined: how many messages the group delivered before this member's first
    /// delivery (its [`Event::Joined`]). `None` for a founder.
    pub fn join_position(&self) -> Option<u64> {
        self.progress.join_position()
    }

    /// For a member that rejoined with a [`crate::Config::state`]: waits until its state is restored
    /// from the sponsor's snapshot (the state of the group at this member's join position), at most
    /// `timeout`. From then on [`crate::ReplicatedState::read`] sees that state and every delivery
    /// since. `Ok` at once for a founder, or without a state.
    ///
    /// Errors: [`Error::Timeout`]; [`Error::Excluded`] if the sponsor left before its snapshot arrived
    /// (the member stops rather than run with a wrong state), or [`Error::ShutDown`].
    pub fn wait_restored(&self, timeout: Duration) -> Result<()> {
        if !self.state_transfer || self.progress.join_position().is_none() {
            return Ok(());
        }
        match self.progress.wait_until(Instant::now() + timeout, |r| r.restored()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Timeout(format!("waiting for the state of {}", self.id()))),
            Err(end) => Err(end.error()),
        }
    }

    /// The address this member listens on (for processes that rejoin through it, and status queries).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Multicasts `payload` to the group and returns its [`MessageId`] (for
    /// [`Member::wait_delivered`]). Blocks while this member has [`crate::Config::window`] messages
    /// multicast and not yet delivered. Errors: [`Error::PayloadTooLarge`], or the member is no longer
    /// running ([`Error::ShutDown`], [`Error::Excluded`]). A message multicast after
    /// [`Member::start_leave`] is not delivered.
    pub fn multicast(&self, payload: impl Into<Payload>) -> Result<MessageId> {
        self.multicast_inner(payload.into(), true)
    }

    /// Like [`Member::multicast`], but returns [`Error::WouldBlock`] at once instead of blocking.
    pub fn try_multicast(&self, payload: impl Into<Payload>) -> Result<MessageId> {
        self.multicast_inner(payload.into(), false)
    }

    fn multicast_inner(&self, payload: Payload, wait: bool) -> Result<MessageId> {
        if payload.len() > wire::PAYLOAD_LEN_MAX {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                max: wire::PAYLOAD_LEN_MAX,
            });
        }
        self.gate.acquire(wait)?;
        let mut multicasts = self.multicasts.lock();
        self.signals
            .send(Signal::Multicast(payload))
            .map_err(|_| Error::ShutDown)?;
        *multicasts += 1;
        Ok(MessageId(*multicasts))
    }

    /// Waits until this member's own message `id` is delivered here, at most `timeout`: once it
    /// returns `Ok`, its [`Event::Deliver`] is queued on [`Member::events`] and the
    /// [`crate::Config::state`] has applied it, and every member of the view delivers it too (total
    /// order is uniform). Any thread may call it, whoever reads the events.
    ///
    /// Errors: [`Error::Timeout`]; [`Error::Excluded`] or [`Error::ShutDown`] if membership ended
    /// before it was delivered (an excluded member's undelivered message may still be delivered by the
    /// others, or not); [`Error::Left`] for a message multicast after the leave began, which is never
    /// delivered.
    pub fn wait_delivered(&self, id: MessageId, timeout: Duration) -> Result<()> {
        match self.progress.wait_own_delivered(id.0, Instant::now() + timeout)? {
            true => Ok(()),
            false => Err(Error::Timeout(format!(
                "waiting for {id} of {} to be delivered",
                self.id()
            ))),
        }
    }

    /// This member's events, in order (see [`Event`] for exactly which arrive when). They end after
    /// [`Event::Excluded`] or [`Event::Left`], or at shutdown. While more than
    /// [`crate::Config::delivery_queue_max`] wait unread, this member holds back its deliveries and
    /// acknowledgements, which slows the group: read them.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// A snapshot of the protocol state: the head of the hold-back queue and whose acknowledgement it
    /// waits for, the view, the suspects.
    pub fn status(&self) -> Result<Status> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.signals.send(Signal::Status(tx)).map_err(|_| Error::ShutDown)?;
        rx.recv_timeout(Duration::from_secs(5)).map_err(|_| Error::ShutDown)
    }

    /// Starts a clean departure and returns at once: this member's own messages multicast before are
    /// delivered first, then a view without it is installed, and [`Event::Left`] ends its events (or
    /// [`Event::Excluded`], if the group excluded it first). For an application that watches its
    /// events; [`Member::leave`] waits instead.
    pub fn start_leave(&self) -> Result<()> {
        self.signals
            .send(Signal::Leave { unpaced: false })
            .map_err(|_| Error::ShutDown)
    }

    /// Leaves cleanly and shuts down: this member's own messages multicast before are delivered first,
    /// then a view without it is installed; waits at most `timeout` for that ([`Error::Timeout`]),
    /// then stops every thread. `Ok` once the departure is complete, whoever reads the events (they
    /// go on until [`Event::Left`]; while it leaves, the member no longer holds its deliveries back for
    /// an application that does not read them). [`Error::Excluded`] if the group excluded it first.
    ///
    /// A member alone in its view leaves too (the group dissolves into the empty view).
    pub fn leave(self, timeout: Duration) -> Result<()> {
        let asked = self.signals.send(Signal::Leave { unpaced: true });
        let outcome = match self.progress.wait_until(Instant::now() + timeout, |_| false) {
            Err(End::Left) => Ok(()),
            Err(end) => Err(end.error()),
            Ok(_) if asked.is_err() => Err(Error::ShutDown),
            Ok(_) => Err(Error::Timeout(
                "waiting for the group to complete this member's leave".into(),
            )),
        };
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
        // The protocol thread closes the outgoing buffers as it stops. Each writer then writes what is
        // queued (a decision this member relays as its last act of a leave: without it a member that
        // waits for it takes itself for cut off) and ends. Shutting the sockets down then ends the
        // readers, and any writer still blocked on a full socket after the bound, without waiting on
        // a peer.
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.shared.threads.lock());
        let mut threads = threads.into_iter();
        if let Some(protocol_thread) = threads.next() {
            let _ = protocol_thread.join();
        }
        let writers: Vec<JoinHandle<()>> = std::mem::take(&mut *self.shared.writers.lock());
        let drained_by = Instant::now() + Duration::from_millis(STOP_DRAIN_MS);
        while Instant::now() < drained_by && !writers.iter().all(JoinHandle::is_finished) {
            std::thread::sleep(Duration::from_millis(1));
        }
        for stream in std::mem::take(&mut *self.shared.streams.lock()).values().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in threads.chain(writers) {
            let _ = thread.join();
        }
        // Readers and writers started later by the protocol thread registered themselves too.
        let rest = std::mem::take(&mut *self.shared.threads.lock());
        let rest_writers = std::mem::take(&mut *self.shared.writers.lock());
        for thread in rest.into_iter().chain(rest_writers) {
            let _ = thread.join();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the member listening at `addr` (anything that prints as `HOST:PORT`, such as a
/// [`Member::local_addr`]) of group `group` for its status: the head of its
/// hold-back queue and whose acknowledgements it waits for, its view with every member's incarnation, its
/// suspects. The answer to "why isn't it delivered?", from outside the process.
///
/// With the group's `secret`, the query proves it like any member connection; a group with a secret
/// answers no query without it.
pub fn query_status(addr: impl ToString, group: &str, secret: Option<&Secret>, timeout: Duration) -> Result<String> {
    let addr = addr.to_string();
    let addr = addr.as_str();
    let (host, port) = crate::net::split_host_port(addr)?;
    let stream = crate::net::connect(&host, port, timeout)?;
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
    match crate::net::read_frame_before(&stream, deadline, wire::HANDSHAKE_LEN_MAX)? {
        Frame::Welcome => {}
        Frame::Refuse { reason } => return Err(Error::Refused(format!("{addr}: {reason}"))),
        other => {
            return Err(Error::Unexpected(format!(
                "{addr} answered a status query with a {}",
                other.kind()
            )))
        }
    }
    match crate::net::read_frame_before(&stream, deadline, wire::FRAME_LEN_MAX)? {
        Frame::StatusReport { report } => Ok(report),
        other => Err(Error::Unexpected(format!(
            "{addr} answered a status query with a {}",
            other.kind()
        ))),
    }
}

/// The core's settings from the runtime's: the view-change timeout follows the failure timeout (at
/// least two ticks).
fn core_config(config: &RuntimeConfig, rank: Rank) -> protocol::CoreConfig {
    let mut core = protocol::CoreConfig::new(rank);
    core.window = config.window;
    core.view_change_timeout_ticks = (config.failure_timeout_ms / config.tick_ms).max(2);
    core
}

/// The address this member tells a member it dials: its directory entry's host (the one the group
/// knows it by) with the port it listens on, else its listener's own address.
fn own_address(directory: &[RosterEntry], rank: Rank, listening: SocketAddr) -> (String, u16) {
    directory
        .iter()
        .find(|entry| entry.rank == rank)
        .map(|entry| (entry.host.clone(), listening.port()))
        .unwrap_or_else(|| (listening.ip().to_string(), listening.port()))
}

/// The endpoint's settings from the runtime's: a life left unconnected is dialled again every fifth
/// of a failure timeout (at most once a heartbeat interval).
fn endpoint_settings(config: &RuntimeConfig, size: u16, announce: Option<(String, u16)>) -> endpoint::EndpointSettings {
    endpoint::EndpointSettings {
        failure_timeout_ms: config.failure_timeout_ms,
        redial_interval_ms: (config.failure_timeout_ms / 5).max(config.heartbeat_interval_ms),
        window: config.window,
        size,
        state_transfer: config.state.is_some(),
        announce: announce.filter(|_| !config.formation.helper.is_empty()),
        trace_clock: config.trace.is_some().then_some("wall"),
    }
}
