//! The public [`Member`] handle: it forms or rejoins the group, starts the member's threads around a
//! pure [`Endpoint`], and turns the application's calls into signals for the protocol thread
//! ([`super::engine`]).
//!
//! Addresses: this member's directory (handed to processes that rejoin through it, `--peer`) lists
//! admitted lives only; a process that rejoined registers with the helper again, as admitted, once it
//! installed the view that admitted it (the endpoint decides both, see [`crate::endpoint::directory`]).
//!
//! Flow control: [`Member::multicast`] blocks while this member has `window` messages multicast and not
//! yet delivered; shutdown and the end of membership release it with an error.
//!
//! Shutdown order: stop the protocol thread (it closes every outgoing buffer), shut every socket down
//! (readers blocked in `read` return), stop the heartbeat thread, then join everything. Nothing here
//! waits on a peer, so shutdown never hangs.

use std::collections::BTreeMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use log::debug;
use parking_lot::Mutex;

use super::engine::Engine;
use super::gate::{Closed, Gate};
use super::heartbeat;
use super::hops::{EngineProbe, HopProbe};
use super::links::Clock;
use super::rejoin;
use super::state::ReplicatedState;
use super::{Shared, Signal};
use crate::auth::Secret;
use crate::endpoint::{self, Endpoint, Origin};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::formation::{self, Formed, Incoming};
use crate::protocol::{self, Node, Status};
use crate::trace::TraceSink;
use crate::types::{Incarnation, Payload, ProcessId, Rank, View};
use crate::wire::{self, Frame, Purpose, RosterEntry};

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

    /// Starts the threads around an endpoint made of `start`.
    fn launch(
        config: &Config,
        start: Start,
        incoming: Receiver<Incoming>,
        acceptor: formation::Acceptor,
    ) -> Result<Member> {
        let (signal_tx, signal_rx) = crossbeam_channel::unbounded();
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let (dial_tx, dial_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            clock: Clock::new(),
            streams: Mutex::new(BTreeMap::new()),
            watched: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let gate = Arc::new(Gate::new(config.window));
        let rank = start.node.me().rank;
        let own_address = start
            .directory
            .iter()
            .find(|entry| entry.rank == rank)
            .map(|entry| (entry.host.clone(), acceptor.local_addr().port()))
            .unwrap_or_else(|| (acceptor.local_addr().ip().to_string(), acceptor.local_addr().port()));
        let settings = endpoint::Settings {
            failure_timeout_ms: config.failure_timeout_ms,
            redial_interval_ms: (config.failure_timeout_ms / 5).max(config.heartbeat_interval_ms),
            window: config.window.max(1),
            size: start.size,
            state_transfer: config.state.is_some(),
            announce: start.announce.filter(|_| !config.formation.helper.is_empty()),
            trace: config.trace.is_some(),
        };
        let mut endpoint = Endpoint::new(start.node, settings, start.directory, start.formed);
        endpoint.learn_addresses(start.learned);
        let mut engine = Engine {
            endpoint,
            outgoing: BTreeMap::new(),
            next_conn: 0,
            shared: Arc::clone(&shared),
            signals: signal_tx.clone(),
            events: event_tx,
            gate: Arc::clone(&gate),
            dials: dial_tx,
            formation: config.formation.clone(),
            state: config.state.clone(),
            trace: config.trace.clone(),
            delivery_queue_max: config.delivery_queue_max.max(1),
            application_busy: false,
            probe: config.hop_probe.clone().map(EngineProbe::new),
        };
        for (peer, process, reading, writing) in start.conns {
            let conn = engine.add_conn(peer, reading, writing)?;
            engine.endpoint.opened(conn, start.origin, peer, process);
        }
        engine.carry_out();

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
            size: start.size,
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
/// The core's settings from the runtime's: the view-change timeout follows the failure timeout.
fn core_config(config: &Config, rank: Rank) -> protocol::Config {
    let mut core = protocol::Config::new(rank);
    core.window = config.window.max(1);
    core.view_change_timeout_ticks = (config.failure_timeout_ms / config.tick_ms.max(1)).max(2);
    core
}
