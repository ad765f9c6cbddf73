//! The network side of coming back: a restarted process finds the live members and dials them.
//!
//! The join itself — when the process is admitted, with which incarnation, from which position in the
//! total order — is decided by the group inside the pure core ([`crate::protocol`]); this module only
//! gets the process connected:
//!
//! 1. bind a listener (probing ports upward) and start an [`Acceptor`] on it, so that later joiners and
//!    status queries can reach this member;
//! 2. find the members' addresses: register with the helper as a returning rank (the helper updates
//!    this rank's address, so the next rejoiner finds it), or, when the helper is gone, ask any live
//!    member given with `--peer`;
//! 3. dial every other member with a `Rejoin` handshake and tell it this member's new address.
//!
//! Members that do not answer are skipped: they may be the crashed ones. With none reachable, it fails
//! with a clear error instead of waiting.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{info, warn};

use crate::auth;
use crate::error::{Error, Result};
use crate::formation::{self, Acceptor, AcceptorSettings, Incoming};
use crate::runtime::net::{self, Retry};
use crate::types::{Incarnation, Rank};
use crate::wire::{self, Frame, Hello, Purpose, Register, Roster, RosterEntry};

/// A restarted process connected to the live members, ready to ask to be admitted.
#[derive(Debug)]
pub struct Reconnected {
    /// The rank it comes back as.
    pub rank: Rank,
    /// The group's size N.
    pub size: u16,
    /// The members' addresses as last known (this rank's entry is the new address).
    pub roster: Vec<RosterEntry>,
    /// One connection per member that answered.
    pub links: BTreeMap<Rank, TcpStream>,
    /// Connections validated by this member's acceptor (later joiners, status queries).
    pub incoming: Receiver<Incoming>,
    /// The thread that owns the listener.
    pub acceptor: Acceptor,
    /// The address the listener is bound to.
    pub local_addr: SocketAddr,
}

/// Connects a restarted process as `rank`: through the helper in `config`, or else through `peers`
/// (`HOST:PORT` of live members).
pub fn reconnect(config: &formation::Config, rank: Rank, peers: &[String]) -> Result<Reconnected> {
    if rank.0 == 0 {
        return Err(Error::InvalidConfig("rank 0 does not exist: ranks start at 1".into()));
    }
    let listener = net::bind_probing(&config.bind_host, config.first_port, config.port_span)?;
    let local_addr = listener.local_addr()?;
    let (acceptor, incoming) = Acceptor::start(
        listener,
        AcceptorSettings {
            group: config.group.clone(),
            handshake_timeout_ms: config.handshake_timeout_ms,
            pending_max: config.handshake_pending_max,
            hold_timeout_ms: config.handshake_timeout_ms,
            secret: config.secret.clone(),
        },
    )?;
    info!("listening on {local_addr}; looking for the group to rejoin as rank {rank}");
    let (roster, host) = find_roster(config, rank, local_addr.port(), peers)?;
    if rank.0 > roster.size {
        return Err(Error::Refused(format!(
            "rank {rank} out of range: the group has ranks 1..={}",
            roster.size
        )));
    }
    acceptor.set_roster(rank, roster.size);
    acceptor.set_formed();

    let register = rejoin_register(config, &host, local_addr.port(), rank);
    let mut links = BTreeMap::new();
    let mut tried = Vec::new();
    // The roster may still list a dead member at the port this process now listens on (members on one
    // host share a first port): dialling it would reach this very process.
    let is_self = |e: &&RosterEntry| e.port == local_addr.port() && e.host == register.host;
    for entry in roster.members.iter().filter(|e| e.rank != rank && !is_self(e)) {
        match dial_member(config, entry, rank, &register) {
            Ok(stream) => {
                links.insert(entry.rank, stream);
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
            }
        }
    }
    if links.is_empty() {
        return Err(Error::GroupUnreachable {
            tried: format!("no member answered: {}", tried.join("; ")),
        });
    }
    info!(
        "rank {rank}: connected to ranks {:?}; asking to be admitted",
        links.keys().collect::<Vec<_>>()
    );
    Ok(Reconnected {
        rank,
        size: roster.size,
        roster: roster.members,
        links,
        incoming,
        acceptor,
        local_addr,
    })
}

/// The roster, and the host to advertise: from the helper, else from the first peer that answers.
fn find_roster(config: &formation::Config, rank: Rank, port: u16, peers: &[String]) -> Result<(Roster, String)> {
    let deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms.max(1_000));
    let mut tried = Vec::new();
    if !config.helper.is_empty() {
        // With peers to fall back on, do not spend the whole retry budget on a helper that may be gone.
        let attempts = if peers.is_empty() { config.connect_attempts } else { 2 };
        match ask_helper(config, rank, port, attempts, deadline) {
            Ok(found) => return Ok(found),
            Err(error) => {
                warn!("helper at {}: {error}", config.helper);
                tried.push(format!("helper {} ({error})", config.helper));
            }
        }
    }
    for peer in peers {
        match ask_peer(config, peer, rank, port, deadline) {
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
    config: &formation::Config,
    rank: Rank,
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
    let register = rejoin_register(config, &advertised, port, rank);
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
    config: &formation::Config,
    peer: &str,
    rank: Rank,
    port: u16,
    deadline: Instant,
) -> Result<(Roster, String)> {
    let (host, peer_port) = net::split_host_port(peer)?;
    let stream = net::connect(&host, peer_port, Duration::from_millis(config.connect_timeout_ms))?;
    let advertised = advertised_host(config, &stream)?;
    let register = rejoin_register(config, &advertised, port, rank);
    handshake(config, &stream, rank, &register, deadline)?;
    Ok((read_roster(&stream, deadline, &format!("peer {peer}"))?, advertised))
}

/// The registration a returning `rank` sends: its group and its new address.
fn rejoin_register(config: &formation::Config, host: &str, port: u16, rank: Rank) -> Register {
    Register {
        group: config.group.clone(),
        host: host.to_string(),
        port,
        rejoin: Some(rank),
        nonce: None,
    }
}

/// Opens a `Rejoin` connection to one member and tells it this member's address.
fn dial_member(config: &formation::Config, entry: &RosterEntry, rank: Rank, register: &Register) -> Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_millis(config.handshake_timeout_ms);
    let stream = net::connect(
        &entry.host,
        entry.port,
        Duration::from_millis(config.connect_timeout_ms),
    )?;
    handshake(config, &stream, rank, register, deadline)?;
    Ok(stream)
}

/// Sends the `Rejoin` hello, waits for the welcome, then sends this member's address.
fn handshake(
    config: &formation::Config,
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
fn advertised_host(config: &formation::Config, stream: &TcpStream) -> Result<String> {
    match &config.advertised_host {
        Some(host) if host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) => Err(
            Error::InvalidConfig(format!("advertised host {host:?}: other members cannot dial it")),
        ),
        Some(host) => Ok(host.clone()),
        None => Ok(stream.local_addr()?.ip().to_string()),
    }
}
