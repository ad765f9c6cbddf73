//! The network side of coming back: a restarted process finds the live members and dials them.
//!
//! The join itself — when the process is admitted, with which incarnation, from which position in the
//! total order — is decided by the group inside the pure core ([`crate::protocol`]); this module only
//! gets the process connected:
//!
//! 1. bind a listener (probing ports upward) and start an [`Listener`] on it, so that later joiners and
//!    status queries can reach this member;
//! 2. find the members' addresses: look the roster up at the helper with a rejoin registration (which
//!    records nothing: the helper records this process's address only once the group admitted it, when
//!    the runtime registers again as admitted), or, when the helper is gone, ask any live member given
//!    with `--peer`;
//! 3. dial every other member with a `Rejoin` handshake naming this process, tell it this process's new
//!    address (which it keeps aside until a view admits this process), and read its greeting (the first
//!    frame a member sends on a rejoin connection: its directory and the life that answers): that life
//!    is the one this connection speaks with.
//!
//! A process admitted after another one found the group may have no connection to it (neither knew the
//! other's address): once admitted, it registers with the helper as admitted, and the endpoint asks for
//! dials ([`crate::endpoint::directory`]) that the heartbeat thread makes with [`redial`].
//!
//! Members that do not answer are skipped: they may be the crashed ones. With none reachable, it fails
//! with a clear error instead of waiting.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{info, warn};

use crate::auth;
use crate::endpoint::directory;
use crate::error::{Error, Result};
use crate::formation::{self, Incoming, Listener, ListenerSettings};
use crate::net::{self, Retry};
use crate::types::{Incarnation, MemberId, ProcessId, Rank};
use crate::wire::{self, Frame, Hello, Purpose, Register, Roster, RosterEntry};

/// A restarted process connected to the live members, ready to ask to be admitted.
#[derive(Debug)]
pub struct Reconnected {
    /// The rank it comes back as.
    pub rank: Rank,
    /// This process's identity, named by its hellos and registrations.
    pub process: ProcessId,
    /// The host it advertised (with `local_addr`'s port): what it registers once admitted.
    pub host: String,
    /// The group's size N.
    pub size: u16,
    /// The members' addresses as last known (this rank's entry is the new address, incarnation 0 and
    /// this process: not admitted yet).
    pub roster: Vec<RosterEntry>,
    /// What the greetings of the members that answered list: their directories of admitted lives.
    pub learned: Vec<RosterEntry>,
    /// One connection per member that answered, with the life that answered on it.
    pub links: BTreeMap<Rank, (TcpStream, MemberId)>,
    /// Connections validated by this member's acceptor (later joiners, status queries).
    pub incoming: Receiver<Incoming>,
    /// The thread that owns the listener.
    pub acceptor: Listener,
    /// The address the listener is bound to.
    pub local_addr: SocketAddr,
}

/// Connects a restarted process, `process`, as `rank`: through the helper in `config`, or else through
/// `peers` (`HOST:PORT` of live members).
pub fn reconnect(
    config: &formation::FormationConfig,
    rank: Rank,
    process: ProcessId,
    peers: &[String],
) -> Result<Reconnected> {
    if rank.0 == 0 {
        return Err(Error::InvalidConfig("rank 0 does not exist: ranks start at 1".into()));
    }
    let listener = net::bind_probing(&config.bind_host, config.first_port, config.port_span)?;
    let local_addr = listener.local_addr()?;
    let (acceptor, incoming) = Listener::start(
        listener,
        ListenerSettings {
            group: config.group.clone(),
            handshake_timeout_ms: config.handshake_timeout_ms,
            pending_max: config.handshake_pending_max,
            hold_timeout_ms: config.handshake_timeout_ms,
            secret: config.secret.clone(),
        },
    )?;
    info!("listening on {local_addr}; looking for the group to rejoin as rank {rank}");
    let (mut roster, host) = find_roster(config, rank, process, local_addr.port(), peers)?;
    if rank.0 > roster.size {
        return Err(Error::Refused(format!(
            "rank {rank} out of range: the group has ranks 1..={}",
            roster.size
        )));
    }
    acceptor.set_roster(rank, roster.size);
    acceptor.set_formed();

    let register = rejoin_register(config, &host, local_addr.port(), rank, process);
    let own = (register.host.as_str(), local_addr.port());
    let Dialled { links, learned, tried } = dial_members(config, &mut roster.members, rank, &register, own);
    if links.is_empty() {
        return Err(Error::GroupUnreachable {
            tried: format!("no member answered: {}", tried.join("; ")),
        });
    }
    info!(
        "rank {rank}: connected to ranks {:?}; asking to be admitted",
        links.keys().collect::<Vec<_>>()
    );
    // This process's own entry: its new address, not admitted yet.
    let own = RosterEntry {
        rank,
        host: host.clone(),
        port: local_addr.port(),
        incarnation: Incarnation(0),
        process,
    };
    set_entry(&mut roster.members, own);
    Ok(Reconnected {
        rank,
        process,
        host,
        size: roster.size,
        roster: roster.members,
        learned,
        links,
        incoming,
        acceptor,
        local_addr,
    })
}

/// Puts `entry` in `members` (sorted by rank) in place of its rank's.
fn set_entry(members: &mut Vec<RosterEntry>, entry: RosterEntry) {
    match members.iter_mut().find(|e| e.rank == entry.rank) {
        Some(e) => *e = entry,
        None => {
            members.push(entry);
            members.sort_by_key(|e| e.rank);
        }
    }
}

/// The members a restarted process reached, what their greetings listed, and what it could not reach.
struct Dialled {
    links: BTreeMap<Rank, (TcpStream, MemberId)>,
    learned: Vec<RosterEntry>,
    tried: Vec<String>,
}

/// Dials every member `roster` lists (see [`directory::first_dials`]), then, at a newer address its
/// greetings list, each rank that did not answer ([`directory::second_dial`]); a rank reached so gets
/// that address in `roster`.
fn dial_members(
    config: &formation::FormationConfig,
    roster: &mut [RosterEntry],
    rank: Rank,
    register: &Register,
    own: (&str, u16),
) -> Dialled {
    let mut links = BTreeMap::new();
    let mut tried = Vec::new();
    // What the members that answered list in their greetings: their directories of admitted lives.
    let mut directories: Vec<RosterEntry> = Vec::new();
    let mut unreached: Vec<RosterEntry> = Vec::new();
    for entry in directory::first_dials(roster, rank, own) {
        match dial_member(config, entry, rank, register) {
            Ok((stream, life, greeting_directory)) => {
                info!(
                    "rank {} at {}:{} answered as life {life} (process {})",
                    entry.rank, entry.host, entry.port, life.process
                );
                links.insert(entry.rank, (stream, life));
                directories.extend(greeting_directory);
            }
            Err(error) => {
                warn!(
                    "rank {} at {}:{} not reachable: {error}",
                    entry.rank, entry.host, entry.port
                );
                tried.push(format!(
                    "rank {} at {}:{} ({error})",
                    entry.rank, entry.host, entry.port
                ));
                unreached.push(entry.clone());
            }
        }
    }
    // A rank the roster lists at a dead address may have come back elsewhere, through a member rather
    // than the helper (`--peer`): the members that answered know its newest admitted life's address.
    for stale in unreached {
        let Some(entry) = directory::second_dial(&stale, &directories, own) else {
            continue;
        };
        match dial_member(config, &entry, rank, register) {
            Ok((stream, life, _)) => {
                info!(
                    "rank {} at {}:{}, as a member's directory lists it, answered as life {life}",
                    entry.rank, entry.host, entry.port
                );
                links.insert(entry.rank, (stream, life));
                if let Some(listed) = roster.iter_mut().find(|e| e.rank == entry.rank) {
                    *listed = entry;
                }
            }
            Err(error) => warn!(
                "rank {} at {}:{}, as a member's directory lists it, not reachable either: {error}",
                entry.rank, entry.host, entry.port
            ),
        }
    }
    Dialled {
        links,
        learned: directories,
        tried,
    }
}

/// The roster, and the host to advertise: from the helper, else from the first peer that answers.
fn find_roster(
    config: &formation::FormationConfig,
    rank: Rank,
    process: ProcessId,
    port: u16,
    peers: &[String],
) -> Result<(Roster, String)> {
    let deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms.max(1_000));
    let mut tried = Vec::new();
    if !config.helper.is_empty() {
        // With peers to fall back on, do not spend the whole retry budget on a helper that may be gone.
        let attempts = if peers.is_empty() { config.connect_attempts } else { 2 };
        match ask_helper(config, rank, process, port, attempts, deadline) {
            Ok(found) => return Ok(found),
            Err(error) => {
                warn!("helper at {}: {error}", config.helper);
                tried.push(format!("helper {} ({error})", config.helper));
            }
        }
    }
    for peer in peers {
        match ask_peer(config, peer, rank, process, port, deadline) {
            Ok(found) => return Ok(found),
            Err(error) => {
                warn!("peer {peer}: {error}");
                tried.push(format!("peer {peer} ({error})"));
            }
        }
    }
    if tried.is_empty() {
        return Err(Error::InvalidConfig(
            "neither a helper nor a peer to find the group".into(),
        ));
    }
    Err(Error::GroupUnreachable {
        tried: tried.join("; "),
    })
}

fn ask_helper(
    config: &formation::FormationConfig,
    rank: Rank,
    process: ProcessId,
    port: u16,
    attempts: u32,
    deadline: Instant,
) -> Result<(Roster, String)> {
    let (host, helper_port) = net::split_host_port(&config.helper)?;
    let retry = Retry {
        attempts,
        interval_ms: config.connect_retry_interval_ms,
        connect_timeout_ms: config.connect_timeout_ms,
    };
    let stream =
        net::connect_retrying(&host, helper_port, retry, "helper").map_err(|error| Error::HelperUnreachable {
            addr: config.helper.clone(),
            reason: error.to_string(),
        })?;
    let advertised = advertised_host(config, &stream)?;
    let register = rejoin_register(config, &advertised, port, rank, process);
    let handshake_deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms);
    let helper_name = format!("helper at {}", config.helper);
    auth::open(
        &stream,
        Frame::Register(register),
        config.secret.as_ref(),
        handshake_deadline.min(deadline),
        &helper_name,
    )?;
    Ok((
        read_roster(&stream, deadline, &format!("helper at {}", config.helper))?,
        advertised,
    ))
}

fn ask_peer(
    config: &formation::FormationConfig,
    peer: &str,
    rank: Rank,
    process: ProcessId,
    port: u16,
    deadline: Instant,
) -> Result<(Roster, String)> {
    let (host, peer_port) = net::split_host_port(peer)?;
    let stream = net::connect(&host, peer_port, Duration::from_millis(config.connect_timeout_ms))?;
    let advertised = advertised_host(config, &stream)?;
    let register = rejoin_register(config, &advertised, port, rank, process);
    handshake(config, &stream, rank, &register, deadline)?;
    Ok((read_roster(&stream, deadline, &format!("peer {peer}"))?, advertised))
}

/// The registration a returning `rank` sends while not admitted: its group, its new address and its
/// process. To the helper it is a lookup; to a member, an address kept aside until a view admits it.
fn rejoin_register(
    config: &formation::FormationConfig,
    host: &str,
    port: u16,
    rank: Rank,
    process: ProcessId,
) -> Register {
    Register {
        group: config.group.clone(),
        host: host.to_string(),
        port,
        process,
        rejoin: Some(rank),
        admitted: None,
        nonce: None,
    }
}

/// Tells the helper that the group admitted `register.process` as `life`: the helper records its
/// address for the rank. Returns the helper's roster, which names every admitted life it knows.
pub fn register_admitted(
    config: &formation::FormationConfig,
    mut register: Register,
    life: MemberId,
) -> Result<Roster> {
    let (host, helper_port) = net::split_host_port(&config.helper)?;
    let stream = net::connect(&host, helper_port, Duration::from_millis(config.connect_timeout_ms))?;
    register.rejoin = Some(life.rank);
    register.admitted = Some(life.incarnation);
    register.process = life.process;
    let deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms);
    let helper_name = format!("helper at {}", config.helper);
    auth::open(
        &stream,
        Frame::Register(register),
        config.secret.as_ref(),
        deadline,
        &helper_name,
    )?;
    read_roster(&stream, deadline, &helper_name)
}

/// Opens a `Rejoin` connection from `me` to the life listening at `host:port`, for a dial the
/// endpoint asked for, all within `deadline`: connect, prove the secret, be welcomed, tell it this
/// process's address (`own`). The greeting that names the life at the other end is the endpoint's to
/// read, on the connection.
pub fn redial(
    config: &formation::FormationConfig,
    host: &str,
    port: u16,
    me: MemberId,
    own: (&str, u16),
    deadline: Instant,
) -> Result<TcpStream> {
    let left = deadline.saturating_duration_since(Instant::now());
    let stream = net::connect(host, port, left.max(Duration::from_millis(1)))?;
    let register = rejoin_register(config, own.0, own.1, me.rank, me.process);
    handshake(config, &stream, me.rank, &register, deadline)?;
    Ok(stream)
}

/// The registration this process sends the helper once admitted (see [`register_admitted`]).
pub fn admitted_register(config: &formation::FormationConfig, host: &str, port: u16, life: MemberId) -> Register {
    Register {
        admitted: Some(life.incarnation),
        ..rejoin_register(config, host, port, life.rank, life.process)
    }
}

/// Opens a `Rejoin` connection to one member, tells it this process's address, and reads its answer:
/// the life that answered. An answer from another rank (its process took a dead member's port) is
/// refused: that member is not the one listed there.
fn dial_member(
    config: &formation::FormationConfig,
    entry: &RosterEntry,
    rank: Rank,
    register: &Register,
) -> Result<(TcpStream, MemberId, Vec<RosterEntry>)> {
    let deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms);
    let stream = net::connect(
        &entry.host,
        entry.port,
        Duration::from_millis(config.connect_timeout_ms),
    )?;
    handshake(config, &stream, rank, register, deadline)?;
    let answer = read_roster(&stream, deadline, &format!("rank {}", entry.rank))?;
    match answer.from {
        Some(life) if life.rank == entry.rank => Ok((stream, life, answer.members)),
        Some(life) => Err(Error::Unexpected(format!(
            "rank {} listens there no more: life {life} answered",
            entry.rank
        ))),
        None => Err(Error::Unexpected(format!(
            "rank {} answered without naming its life",
            entry.rank
        ))),
    }
}

/// Sends the `Rejoin` hello, waits for the welcome, then sends this member's address.
fn handshake(
    config: &formation::FormationConfig,
    stream: &TcpStream,
    rank: Rank,
    register: &Register,
    deadline: Instant,
) -> Result<()> {
    let timeout = Duration::from_millis(config.handshake_timeout_ms);
    // Incarnation 0: the group decides the new life's number when it admits it.
    let hello = Hello {
        group: config.group.clone(),
        rank,
        incarnation: Incarnation(0),
        process: register.process,
        purpose: Purpose::Rejoin,
        nonce: None,
    };
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "a member".to_string(), |addr| format!("member at {addr}"));
    auth::open(stream, Frame::Hello(hello), config.secret.as_ref(), deadline, &peer)?;
    match net::read_frame_before(stream, deadline, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Welcome) => {}
        Ok(Frame::Refuse { reason }) => return Err(Error::Refused(reason)),
        Ok(other) => return Err(Error::Unexpected(format!("a {} instead of a welcome", other.kind()))),
        Err(error) => return Err(error.into()),
    }
    net::write_frame(stream, &Frame::Register(register.clone()), timeout)?;
    Ok(())
}

fn read_roster(stream: &TcpStream, deadline: Instant, from: &str) -> Result<Roster> {
    // A member may send heartbeats on the connection before its answer: they carry nothing here.
    let mut frame = net::read_frame_before(stream, deadline, wire::HANDSHAKE_LEN_MAX);
    while matches!(frame, Ok(Frame::Heartbeat)) {
        frame = net::read_frame_before(stream, deadline, wire::HANDSHAKE_LEN_MAX);
    }
    match frame {
        Ok(Frame::Roster(roster)) => Ok(roster),
        Ok(Frame::Refuse { reason }) => Err(Error::Refused(format!("{from}: {reason}"))),
        Ok(other) => Err(Error::Unexpected(format!(
            "{from} sent a {} instead of the roster",
            other.kind()
        ))),
        Err(error) => Err(error.into()),
    }
}

/// The configured advertised host, or the local address of a connection into the group.
fn advertised_host(config: &formation::FormationConfig, stream: &TcpStream) -> Result<String> {
    match &config.advertised_host {
        Some(host) if host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) => Err(
            Error::InvalidConfig(format!("advertised host {host:?}: other members cannot dial it")),
        ),
        Some(host) => Ok(host.clone()),
        None => Ok(stream.local_addr()?.ip().to_string()),
    }
}
