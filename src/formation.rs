//! Static group formation, the member side: draw this life's process identity, bind a listener,
//! register with the helper, get the roster, build the full mesh. Also the [`Listener`], which owns the
//! listener for the member's whole life.
//!
//! # Identities
//! Every founder draws a fresh [`ProcessId`] before it registers ([`auth::fresh_process_id`]); the
//! registration carries it, the roster lists every founder's, and view 1 is
//! [`View::formed`](crate::types::View::formed) from the roster: each founder's life names its process.
//! A formation connection names its caller's process in its hello, and the acceptor lets it through only
//! if that is the process the roster lists for the caller's rank.
//!
//! # The mesh rule
//! Member `i` dials every `j >= i`, itself included, and accepts from every `j <= i` (from itself, the
//! other end of its own dial). So every pair of members shares exactly one connection, and member `i`
//! also holds a loopback connection to itself, as the group's design asks (every member is connected to
//! itself). Forming it proves, once, that this member's own listener takes connections. Nothing travels
//! on it afterwards: the core hands a member's own messages to itself through its own queue
//! (`self_queue` in `src/protocol/`), never through a socket, so the runtime only keeps its two
//! sockets open and gives it no reader, writer or heartbeats.
//!
//! # Invariants
//! - The acceptor thread owns the listener from the moment it is bound, before the helper hears of this
//!   member: a peer that dials early always finds it listening.
//! - Formation is not a barrier. A peer may dial before this member's roster arrives; such connections
//!   are held (their handshake threads wait) and judged once the roster is known, not refused.
//! - Each accepted connection runs its handshake on its own thread with a deadline, and at most
//!   [`FormationConfig::handshake_pending_max`] may be pending: a silent or hostile stranger never delays a
//!   member. A stranger (garbage, wrong group or version, rank out of range, a rank that by the mesh rule
//!   should not dial this member, a duplicate) is refused with the reason sent back and logged.
//! - Validated connections come out on one channel ([`Incoming`]), answered with a
//!   [`Frame::Welcome`]; formation consumes it, and after formation the runtime keeps consuming it
//!   (rejoin and status connections).
//! - Streams handed on have `TCP_NODELAY` and no read timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};
use parking_lot::{Condvar, Mutex};

use crate::auth::{self, Rejection, Secret};
use crate::error::{Error, Result};
use crate::net::{self, Listening, PendingSlot, Retry};
use crate::types::{Incarnation, ProcessId, Rank};
use crate::wire::{self, Frame, Hello, Purpose, ReadError, Register, Roster, RosterEntry};

/// The group name used unless one is configured.
pub const GROUP_DEFAULT: &str = "tom";

/// The first port probed for a member's listener unless one is configured.
pub const FIRST_PORT_DEFAULT: u16 = 10_000;

/// How a member finds the helper and the other members. Internal: the public [`crate::Config`] folds
/// these settings in (and checks them) and hands them on.
#[derive(Clone, Debug)]
pub struct FormationConfig {
    /// The helper's address, `HOST:PORT` (a host name or an IP address).
    pub helper: String,
    /// The group's name. Default [`GROUP_DEFAULT`].
    pub group: String,
    /// The host name or IP address other members dial to reach this one. Default: the local address of
    /// this member's connection to the helper, i.e. the interface that routes to the helper.
    pub advertised_host: Option<String>,
    /// The address the listener binds. Default "0.0.0.0" (every IPv4 interface).
    pub bind_host: String,
    /// The first port probed for the listener. Default [`FIRST_PORT_DEFAULT`]; 0 lets the system pick.
    pub first_port: u16,
    /// Ports probed upward from `first_port` before giving up. Default 100.
    pub port_span: u16,
    /// How long a peer may take to send its handshake once connected. Default 5,000 ms.
    pub handshake_timeout_ms: u64,
    /// Most accepted connections whose handshake is not yet judged. Default 256.
    pub handshake_pending_max: usize,
    /// Attempts to connect to the helper, and to each peer, before giving up. Default 10.
    pub connect_attempts: u32,
    /// Pause between two connection attempts. Default 500 ms.
    pub connect_retry_interval_ms: u64,
    /// Longest wait for one connection attempt. Default 3,000 ms.
    pub connect_timeout_ms: u64,
    /// How long formation may take in all, from binding to the last connection, waiting for the other
    /// members to register included. Default 600,000 ms (ten minutes: groups are often started by hand);
    /// [`crate::Member::join`] sets it to [`crate::Config::join_timeout_ms`].
    pub formation_timeout_ms: u64,
    /// The group's secret. With one, every connection this member opens or accepts (helper, members,
    /// status queries) proves it by challenge–response ([`crate::auth`]); without, none does. Default none.
    pub secret: Option<Secret>,
}

impl FormationConfig {
    /// The defaults, with the helper at `helper` (`HOST:PORT`).
    pub fn new(helper: impl Into<String>) -> FormationConfig {
        FormationConfig {
            helper: helper.into(),
            group: GROUP_DEFAULT.to_string(),
            advertised_host: None,
            bind_host: "0.0.0.0".to_string(),
            first_port: FIRST_PORT_DEFAULT,
            port_span: net::PORT_SPAN_DEFAULT,
            handshake_timeout_ms: 5_000,
            handshake_pending_max: 256,
            connect_attempts: 10,
            connect_retry_interval_ms: 500,
            connect_timeout_ms: 3_000,
            formation_timeout_ms: 600_000,
            secret: None,
        }
    }

    fn retry(&self) -> Retry {
        Retry {
            attempts: self.connect_attempts,
            interval_ms: self.connect_retry_interval_ms,
            connect_timeout_ms: self.connect_timeout_ms,
        }
    }
}

/// A connection whose handshake the acceptor validated and answered with [`Frame::Welcome`].
#[derive(Debug)]
pub struct Incoming {
    /// The caller's handshake.
    pub hello: Hello,
    /// The connection, with no read timeout.
    pub stream: TcpStream,
}

/// A formed group, as one member holds it: every connection of the mesh is up.
#[derive(Debug)]
pub struct Formed {
    /// This member's rank.
    pub rank: Rank,
    /// This life's process identity, drawn before registering.
    pub process: ProcessId,
    /// The group's size N.
    pub size: u16,
    /// Every member's address and process, sorted by rank, as the helper sent it.
    pub roster: Vec<RosterEntry>,
    /// One duplex connection per other rank.
    pub links: BTreeMap<Rank, TcpStream>,
    /// The connection to itself: `(dialled, accepted)`. Write on the dialled end, read on the accepted one.
    pub self_link: (TcpStream, TcpStream),
    /// Connections validated after formation (rejoin, status), for the runtime to consume.
    pub incoming: Receiver<Incoming>,
    /// The thread that owns the listener; stopping it closes the listener.
    pub acceptor: Listener,
    /// The address the listener is bound to.
    pub local_addr: SocketAddr,
}

/// Forms the group: binds a listener, registers with the helper, waits for the roster, builds the mesh.
pub fn form(config: &FormationConfig) -> Result<Formed> {
    let deadline = Instant::now() + Duration::from_millis(config.formation_timeout_ms);
    let (helper_host, helper_port) = net::split_host_port(&config.helper)?;
    if let Some(host) = &config.advertised_host {
        if host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return Err(Error::InvalidConfig(format!(
                "advertised host {host:?}: other members cannot dial it"
            )));
        }
    }
    let listener = net::bind_probing(&config.bind_host, config.first_port, config.port_span)?;
    let local_addr = listener.local_addr()?;
    let (acceptor, incoming) = Listener::start(
        listener,
        ListenerSettings {
            group: config.group.clone(),
            handshake_timeout_ms: config.handshake_timeout_ms,
            pending_max: config.handshake_pending_max,
            hold_timeout_ms: config.formation_timeout_ms,
            secret: config.secret.clone(),
        },
    )?;
    info!("listening on {local_addr}");
    let process = auth::fresh_process_id();

    let roster = register(
        config,
        (&helper_host, helper_port),
        local_addr.port(),
        process,
        deadline,
    )?;
    let (rank, size) = (roster.rank, roster.size);
    check_roster(&roster.members, rank, size, local_addr.port(), process)?;
    acceptor.set_founders(roster.members.iter().map(|entry| entry.process).collect());
    acceptor.set_roster(rank, size);
    info!("rank {rank} of {size}: connecting the mesh");

    let (links, self_link) = connect_mesh(config, &roster.members, rank, process, &incoming, deadline)?;
    acceptor.set_formed();
    info!("rank {rank} of {size}: formed, {} connections up", links.len() + 1);
    Ok(Formed {
        rank,
        process,
        size,
        roster: roster.members,
        links,
        self_link,
        incoming,
        acceptor,
        local_addr,
    })
}

/// Registers this process (listening on `port`) with the helper at `helper` and waits, until
/// `deadline`, for the roster that gives it its rank.
fn register(
    config: &FormationConfig,
    helper: (&str, u16),
    port: u16,
    process: ProcessId,
    deadline: Instant,
) -> Result<Roster> {
    let (helper_host, helper_port) = helper;
    let helper = net::connect_retrying(helper_host, helper_port, config.retry(), "helper").map_err(|error| {
        Error::HelperUnreachable {
            addr: config.helper.clone(),
            reason: error.to_string(),
        }
    })?;
    let host = match &config.advertised_host {
        Some(host) => host.clone(),
        None => helper.local_addr()?.ip().to_string(),
    };
    let register = Register {
        group: config.group.clone(),
        host: host.clone(),
        port,
        process,
        rejoin: None,
        admitted: None,
        nonce: None,
    };
    let handshake_deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms);
    let helper_name = format!("helper at {}", config.helper);
    auth::open(
        &helper,
        Frame::Register(register),
        config.secret.as_ref(),
        handshake_deadline,
        &helper_name,
    )?;
    info!(
        "registered with the helper at {} as {host}:{}; waiting for the group to form",
        config.helper, port
    );
    let roster = match net::read_frame_before(&helper, deadline, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Roster(roster)) => roster,
        Ok(Frame::Refuse { reason }) => return Err(Error::Refused(format!("helper at {}: {reason}", config.helper))),
        Ok(other) => {
            return Err(Error::Unexpected(format!(
                "helper at {} sent a {} instead of the roster",
                config.helper,
                other.kind()
            )))
        }
        Err(error) => return Err(timeout_or(error, "waiting for the roster from the helper")),
    };
    Ok(roster)
}

/// The mesh rule: this rank dials every rank from its own up (itself included), and waits until
/// `deadline` for every rank up to its own to dial it. Returns the links to the others and the two
/// ends of the self-connection (dialled, accepted).
fn connect_mesh(
    config: &FormationConfig,
    members: &[RosterEntry],
    rank: Rank,
    process: ProcessId,
    incoming: &Receiver<Incoming>,
    deadline: Instant,
) -> Result<(BTreeMap<Rank, TcpStream>, (TcpStream, TcpStream))> {
    let mut links = BTreeMap::new();
    let mut dialled_self = None;
    for entry in &members[usize::from(rank.0 - 1)..] {
        let stream = dial(config, entry, rank, process, deadline)?;
        if entry.rank == rank {
            dialled_self = Some(stream);
        } else {
            links.insert(entry.rank, stream);
        }
    }
    let mut accepted_self = None;
    let mut missing: BTreeSet<Rank> = (1..=rank.0).map(Rank).collect();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Incoming { hello, stream } = match incoming.recv_timeout(left) {
            Ok(accepted) => accepted,
            Err(RecvTimeoutError::Timeout) => {
                return Err(Error::Timeout(format!(
                    "waiting for connections from ranks {missing:?}"
                )))
            }
            Err(RecvTimeoutError::Disconnected) => return Err(Error::Unexpected("the acceptor stopped".into())),
        };
        if hello.purpose != Purpose::Form {
            warn!(
                "rank {rank}: {:?} connection from rank {} during formation closed",
                hello.purpose, hello.rank
            );
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        // The acceptor lets each rank <= ours through once, so `hello.rank` is one we miss.
        missing.remove(&hello.rank);
        if hello.rank == rank {
            accepted_self = Some(stream);
        } else {
            links.insert(hello.rank, stream);
        }
    }
    let (Some(dialled), Some(accepted)) = (dialled_self, accepted_self) else {
        return Err(Error::Unexpected("self-connection missing".into()));
    };
    Ok((links, (dialled, accepted)))
}

/// The helper's roster must list ranks 1..=N in order, with us (our port, our process) at our rank.
fn check_roster(members: &[RosterEntry], rank: Rank, size: u16, port: u16, process: ProcessId) -> Result<()> {
    let in_order = members.len() == usize::from(size)
        && members
            .iter()
            .enumerate()
            .all(|(i, entry)| usize::from(entry.rank.0) == i + 1);
    if !in_order || rank.0 == 0 || rank.0 > size {
        return Err(Error::Unexpected(format!(
            "roster from the helper is inconsistent (rank {rank}, size {size}, {} entries)",
            members.len()
        )));
    }
    if members[usize::from(rank.0 - 1)].port != port {
        return Err(Error::Unexpected(format!(
            "roster lists rank {rank} on port {}, but this member listens on {port}",
            members[usize::from(rank.0 - 1)].port
        )));
    }
    if members[usize::from(rank.0 - 1)].process != process {
        return Err(Error::Unexpected(format!(
            "roster lists rank {rank} as process {}, but this member is process {process}",
            members[usize::from(rank.0 - 1)].process
        )));
    }
    Ok(())
}

/// Opens the mesh connection from `me` to `entry` and waits for its welcome.
fn dial(
    config: &FormationConfig,
    entry: &RosterEntry,
    me: Rank,
    process: ProcessId,
    deadline: Instant,
) -> Result<TcpStream> {
    let what = format!("rank {}", entry.rank);
    let stream = net::connect_retrying(&entry.host, entry.port, config.retry(), &what)?;
    let hello = Hello {
        group: config.group.clone(),
        rank: me,
        incarnation: Incarnation(1),
        process,
        purpose: Purpose::Form,
        nonce: None,
    };
    let handshake_deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms);
    auth::open(
        &stream,
        Frame::Hello(hello),
        config.secret.as_ref(),
        handshake_deadline.min(deadline),
        &what,
    )?;
    // The peer may hold us until its own roster arrives, so wait as long as formation may take.
    match net::read_frame_before(&stream, deadline, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Welcome) => Ok(stream),
        Ok(Frame::Refuse { reason }) => Err(Error::Refused(format!(
            "rank {} at {}:{}: {reason}",
            entry.rank, entry.host, entry.port
        ))),
        Ok(other) => Err(Error::Unexpected(format!(
            "rank {} answered our hello with a {}",
            entry.rank,
            other.kind()
        ))),
        Err(error) => Err(timeout_or(
            error,
            &format!("waiting for rank {} to welcome us", entry.rank),
        )),
    }
}

fn timeout_or(error: ReadError, what: &str) -> Error {
    match error {
        ReadError::Io(error) if error.kind() == std::io::ErrorKind::TimedOut => Error::Timeout(what.to_string()),
        other => other.into(),
    }
}

/// What the acceptor checks and how long it waits.
#[derive(Clone, Debug)]
pub struct ListenerSettings {
    /// The group; a hello naming another is refused.
    pub group: String,
    /// How long a caller may take to send its hello.
    pub handshake_timeout_ms: u64,
    /// Most connections whose handshake is not yet judged (held ones included).
    pub pending_max: usize,
    /// How long a member connection is held while this member waits for its roster.
    pub hold_timeout_ms: u64,
    /// The group's secret, which every caller must prove; `None`: callers must not have one either.
    pub secret: Option<Secret>,
}

/// What the acceptor knows of the group, as formation learns it.
#[derive(Default)]
struct AcceptState {
    /// This member's rank and the group's size, once the roster arrived.
    known: Option<(Rank, u16)>,
    /// The founders' processes (index i = rank i + 1), once the roster arrived: a formation
    /// connection must name its rank's. Empty when unknown (a restarted process takes no formation
    /// connections).
    founders: Vec<ProcessId>,
    /// Ranks whose formation connection was let through (each at most once).
    formed_from: BTreeSet<Rank>,
    /// Formation is over: no more formation connections.
    formed: bool,
}

/// What every handshake thread of one acceptor shares.
struct AcceptShared {
    state: Mutex<AcceptState>,
    /// Signalled when the roster becomes known, and on stop.
    changed: Condvar,
    listening: Arc<Listening>,
    settings: ListenerSettings,
    /// Names this acceptor in logs.
    label: String,
}

/// The thread that owns a member's listener and judges every connection's handshake.
pub struct Listener {
    shared: Arc<AcceptShared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listener({})", self.local_addr())
    }
}

impl Listener {
    /// Starts accepting on `listener`. Validated connections arrive on the returned receiver.
    pub fn start(listener: TcpListener, settings: ListenerSettings) -> std::io::Result<(Listener, Receiver<Incoming>)> {
        let local_addr = listener.local_addr()?;
        let listening = Listening::new(local_addr, settings.pending_max);
        let (sender, receiver) = crossbeam_channel::unbounded();
        let shared = Arc::new(AcceptShared {
            state: Mutex::new(AcceptState::default()),
            changed: Condvar::new(),
            listening: Arc::clone(&listening),
            settings,
            label: format!("acceptor {local_addr}"),
        });
        let judging = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("tom-accept-{}", local_addr.port()))
            .spawn(move || {
                let label = judging.label.clone();
                net::accept_loop(
                    listener,
                    listening,
                    &label,
                    "tom-handshake",
                    move |stream, peer, slot| handshake(&judging, stream, peer, slot, &sender),
                )
            })?;
        Ok((
            Listener {
                shared,
                thread: Some(thread),
            },
            receiver,
        ))
    }

    /// The roster arrived: judge held connections and every later one against it.
    pub fn set_roster(&self, me: Rank, size: u16) {
        let mut state = self.shared.state.lock();
        state.known = Some((me, size));
        self.shared.changed.notify_all();
    }

    /// The founders' processes from the roster (index i = rank i + 1): a formation connection is let
    /// through only from the process the roster lists for its rank. Call before [`Listener::set_roster`].
    pub fn set_founders(&self, founders: Vec<ProcessId>) {
        self.shared.state.lock().founders = founders;
    }

    /// Formation is over: further formation connections are refused.
    pub fn set_formed(&self) {
        self.shared.state.lock().formed = true;
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listening.local_addr()
    }

    /// Closes the listener and waits for the accepting thread (handshakes in progress end on their own
    /// deadline; held ones are released at once).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        {
            // Under the lock, so that no held handshake checks the flag and then misses the notification.
            let _state = self.shared.state.lock();
            self.shared.listening.set_stopped();
            self.shared.changed.notify_all();
        }
        self.shared.listening.wake();
        let _ = thread.join();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One accepted connection: judge its hello, then hand it on or refuse it.
fn handshake(
    shared: &AcceptShared,
    stream: TcpStream,
    peer: SocketAddr,
    pending: PendingSlot,
    sender: &Sender<Incoming>,
) {
    let verdict = judge(shared, &stream);
    drop(pending);
    match verdict {
        Verdict::Accept(hello) => {
            // A closed channel means nobody consumes connections any more: the member is gone.
            let _ = sender.send(Incoming { hello, stream });
        }
        Verdict::Refuse(reason) => {
            let timeout = Duration::from_millis(shared.settings.handshake_timeout_ms.min(2_000));
            net::refuse(&stream, peer, &reason, &shared.label, timeout);
        }
        Verdict::Drop(reason) => {
            warn!("{}: dropped {peer}: {reason}", shared.label);
        }
    }
}

enum Verdict {
    /// Welcomed; hand it on.
    Accept(Hello),
    /// Tell the caller why, then close.
    Refuse(String),
    /// The caller cannot be told (it went silent or away): close.
    Drop(String),
}

/// Reads the caller's hello and decides. Answers a welcome itself, so that only connections whose
/// welcome was sent come out of the acceptor.
fn judge(shared: &AcceptShared, stream: &TcpStream) -> Verdict {
    let _ = stream.set_nodelay(true);
    let settings = &shared.settings;
    let deadline = Instant::now() + Duration::from_millis(settings.handshake_timeout_ms);
    let hello = match net::read_frame_before(stream, deadline, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Hello(hello)) => hello,
        Ok(other) => return Verdict::Refuse(format!("expected a hello, got a {}", other.kind())),
        Err(ReadError::Wire(error)) => return Verdict::Refuse(error.to_string()),
        Err(error) => return Verdict::Drop(format!("{error} before its hello")),
    };
    if hello.group != settings.group {
        return Verdict::Refuse(format!(
            "wrong group: this member belongs to {:?}, the caller to {:?}",
            settings.group, hello.group
        ));
    }
    match auth::answer(stream, &Frame::Hello(hello.clone()), settings.secret.as_ref(), deadline) {
        Ok(()) => {}
        Err(Rejection::Refuse(reason)) => return Verdict::Refuse(reason),
        Err(Rejection::Drop(reason)) => return Verdict::Drop(reason),
    }
    if hello.purpose != Purpose::Status {
        if let Err(reason) = admit_member(shared, &hello) {
            return Verdict::Refuse(reason);
        }
    }
    let welcome = net::write_frame(
        stream,
        &Frame::Welcome,
        Duration::from_millis(settings.handshake_timeout_ms),
    );
    match welcome {
        Ok(()) => Verdict::Accept(hello),
        Err(error) => {
            if hello.purpose == Purpose::Form {
                // Let the rank try again: its connection never came through.
                shared.state.lock().formed_from.remove(&hello.rank);
            }
            Verdict::Drop(format!("could not welcome rank {}: {error}", hello.rank))
        }
    }
}

/// Judges a member's hello against the roster, waiting for the roster if it has not arrived yet.
fn admit_member(shared: &AcceptShared, hello: &Hello) -> std::result::Result<(), String> {
    let hold_until = Instant::now() + Duration::from_millis(shared.settings.hold_timeout_ms);
    let mut state = shared.state.lock();
    let (me, size) = loop {
        if let Some(known) = state.known {
            break known;
        }
        if shared.listening.is_stopped() {
            return Err("this member is shutting down".into());
        }
        if shared.changed.wait_until(&mut state, hold_until).timed_out() {
            return Err("this member never learnt its rank".into());
        }
    };
    let rank = hello.rank;
    if rank.0 == 0 || rank.0 > size {
        return Err(format!("rank {rank} out of range: ranks are 1..={size}"));
    }
    match hello.purpose {
        Purpose::Form => {
            if state.formed {
                return Err(format!("rank {me} already formed its group"));
            }
            if rank > me {
                return Err(format!(
                    "rank {rank} should not dial rank {me}: lower ranks dial higher ones"
                ));
            }
            if hello.incarnation != Incarnation(1) {
                return Err(format!(
                    "formation connection from rank {rank} with incarnation {}, not 1",
                    hello.incarnation.0
                ));
            }
            let listed = state.founders.get(usize::from(rank.0 - 1)).copied();
            if listed.is_some_and(|listed| listed != hello.process) {
                return Err(format!(
                    "formation connection of rank {rank} from process {}, but the roster lists process {}",
                    hello.process,
                    listed.unwrap_or_default()
                ));
            }
            if !state.formed_from.insert(rank) {
                return Err(format!("rank {rank} is already connected to rank {me}"));
            }
            Ok(())
        }
        Purpose::Rejoin if !state.formed => Err(format!("rank {rank} cannot rejoin: the group is not formed yet")),
        Purpose::Rejoin | Purpose::Status => Ok(()),
    }
}
