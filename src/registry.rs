//! The helper: the directory that forms a group and that restarted members later ask for addresses.
//!
//! [`Registry`] is the pure part (who registered, which rank, what roster); [`RegistryServer`] serves it on a
//! listener. The helper takes no part in the protocol: once the group is formed, members never need it
//! again, except a restarted member that looks up where the others listen now.
//!
//! # Invariants
//! - Ranks are 1..=N in arrival order, each given once; the first N first-time registrations form the
//!   group, and every one of those N members gets the same full roster.
//! - Every entry names the life listening there: its incarnation and its process. Founders are
//!   incarnation 1, with the process they registered from.
//! - After formation, a first-time registration is refused (the group has its N members). A restarted
//!   process registers twice. First as a rejoin (`rejoin: Some(rank)`, no `admitted`): that only looks
//!   the roster up and changes nothing, because the group has not admitted the process, and it may
//!   never (the rank is still alive, another process got it). Then, once it installed the view that
//!   admitted it, as admitted (`admitted: Some(incarnation)`): that records its address and life for
//!   the rank, unless the entry already names a later life. A refused rejoin so leaves the roster as it
//!   was, and the roster only ever names lives the group admitted. A rejoin is never an (N+1)th member.
//! - Every client is served on its own thread and must send its registration before a deadline, and
//!   at most [`RegistrySettings::pending_max`] clients may be that early: a silent or hostile client never
//!   delays another. Every refusal is sent to the client (when it can still read it) and logged with the
//!   client's address and the reason.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::{Condvar, Mutex};

use crate::auth::{self, Rejection, Secret};
use crate::net::{self, Listening, PendingSlot};
use crate::types::{Incarnation, Rank};
use crate::wire::{self, Frame, ReadError, Register, Roster, RosterEntry};

/// The pure registration logic of the helper.
#[derive(Clone, Debug)]
pub struct Registry {
    group: String,
    size: u16,
    /// Entry `i` is rank `i + 1`.
    members: Vec<RosterEntry>,
}

impl Registry {
    /// A registry that forms `group` once `size` members registered.
    pub fn new(group: impl Into<String>, size: u16) -> Registry {
        Registry {
            group: group.into(),
            size,
            members: Vec::new(),
        }
    }

    /// The group this registry forms.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group's size N.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// True once N members registered.
    pub fn is_formed(&self) -> bool {
        self.members.len() >= usize::from(self.size)
    }

    /// Every registered member, sorted by rank, with its latest address.
    pub fn members(&self) -> &[RosterEntry] {
        &self.members
    }

    /// Registers a member: its rank, or the reason it is refused.
    ///
    /// A first-time registration from an address already registered before formation (a member that
    /// retried) gets its rank again rather than a second one, with the process that registered last.
    /// A rejoin only looks up (see the module docs), an admitted one records the new life.
    pub fn register(&mut self, request: &Register) -> Result<Rank, String> {
        if request.group != self.group {
            return Err(format!(
                "wrong group: this helper forms group {:?}, the member asked for {:?}",
                self.group, request.group
            ));
        }
        if request.host.len() > wire::HOST_LEN_MAX {
            return Err(format!(
                "host name of {} bytes: at most {} are allowed",
                request.host.len(),
                wire::HOST_LEN_MAX
            ));
        }
        if request.host.is_empty() || request.port == 0 {
            return Err(format!(
                "unusable address {}:{} (host must be non-empty, port non-zero)",
                request.host, request.port
            ));
        }
        if request.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return Err(format!(
                "unusable host {}: other members cannot dial an unspecified address",
                request.host
            ));
        }
        if let Some(rank) = request.rejoin {
            return self.rejoin(rank, request);
        }
        if let Some(entry) = self
            .members
            .iter()
            .find(|entry| entry.host == request.host && entry.port == request.port)
        {
            if !self.is_formed() {
                let rank = entry.rank;
                if let Some(entry) = self.members.iter_mut().find(|e| e.rank == rank) {
                    entry.process = request.process;
                }
                return Ok(rank);
            }
        }
        if self.is_formed() {
            return Err(format!(
                "group {:?} is already formed with {} members (a restarted member rejoins with its rank)",
                self.group, self.size
            ));
        }
        // At most u16::MAX members, since `members.len() < size`.
        let rank = Rank(self.members.len() as u16 + 1);
        self.members.push(RosterEntry {
            rank,
            host: request.host.clone(),
            port: request.port,
            incarnation: Incarnation(1),
            process: request.process,
        });
        Ok(rank)
    }

    fn rejoin(&mut self, rank: Rank, request: &Register) -> Result<Rank, String> {
        if !self.is_formed() {
            return Err(format!(
                "rank {rank} cannot rejoin: group {:?} is not formed yet",
                self.group
            ));
        }
        let Some(entry) = self.members.iter_mut().find(|entry| entry.rank == rank) else {
            return Err(format!(
                "rank {rank} cannot rejoin: ranks of group {:?} are 1..={}",
                self.group, self.size
            ));
        };
        let Some(incarnation) = request.admitted else {
            // Not admitted (yet): a lookup. The group decides whether this process becomes the rank's
            // next life; until it has, the rank's entry stays the admitted life's.
            return Ok(rank);
        };
        if incarnation.0 < 2 {
            // A rejoined life's incarnation is the id of the view that admitted it: 2 or more.
            return Err(format!(
                "rank {rank}: incarnation {} cannot be a rejoined life",
                incarnation.0
            ));
        }
        if incarnation < entry.incarnation || (incarnation == entry.incarnation && request.process != entry.process) {
            // A later life is already recorded (this one's news came late), or another process claims
            // the recorded life: keep the entry.
            return Ok(rank);
        }
        entry.host = request.host.clone();
        entry.port = request.port;
        entry.incarnation = incarnation;
        entry.process = request.process;
        Ok(rank)
    }

    /// The roster as `rank` receives it, once the group is formed.
    pub fn roster_for(&self, rank: Rank) -> Option<Roster> {
        self.is_formed().then(|| Roster {
            rank,
            size: self.size,
            members: self.members.clone(),
            from: None,
        })
    }
}

/// How the helper serves.
#[derive(Clone, Debug)]
pub struct RegistrySettings {
    /// The group's size N.
    pub size: u16,
    /// The group's name; registrations for another group are refused.
    pub group: String,
    /// How long a client may take to send its registration. Default 5,000 ms.
    pub handshake_timeout_ms: u64,
    /// Most clients that may be connected without having registered yet; further ones are closed at
    /// once. Default 64.
    pub pending_max: usize,
    /// The group's secret, which every client must prove ([`crate::auth`]); `None`: clients must not
    /// have one either. Default none.
    pub secret: Option<Secret>,
}

impl RegistrySettings {
    /// Defaults for a group `group` of `size` members.
    pub fn new(size: u16, group: impl Into<String>) -> RegistrySettings {
        RegistrySettings {
            size,
            group: group.into(),
            handshake_timeout_ms: 5_000,
            pending_max: 64,
            secret: None,
        }
    }
}

/// How long a refusal or a roster may take to write: a client that does not read cannot hold a thread.
const REPLY_TIMEOUT_MS: u64 = 2_000;

/// What every client thread of one helper shares.
struct RegistryState {
    registry: Mutex<Registry>,
    /// Signalled when the group forms, and when the helper stops.
    changed: Condvar,
    listening: Arc<Listening>,
    settings: RegistrySettings,
}

/// A running helper: a thread accepting registrations until [`RegistryServer::stop`] (or drop).
pub struct RegistryServer {
    shared: Arc<RegistryState>,
    thread: Option<JoinHandle<()>>,
}

impl RegistryServer {
    /// Starts serving `settings.group` on `listener`. A size of 0 or above [`wire::MEMBERS_MAX`] is
    /// refused.
    pub fn start(listener: TcpListener, settings: RegistrySettings) -> std::io::Result<RegistryServer> {
        if settings.size == 0 || settings.size > wire::MEMBERS_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "group size {}: a group has 1 to {} members",
                    settings.size,
                    wire::MEMBERS_MAX
                ),
            ));
        }
        let listening = Listening::new(listener.local_addr()?, settings.pending_max);
        let shared = Arc::new(RegistryState {
            registry: Mutex::new(Registry::new(settings.group.clone(), settings.size)),
            changed: Condvar::new(),
            listening: Arc::clone(&listening),
            settings,
        });
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tom-helper-accept".into())
            .spawn(move || {
                net::accept_loop(
                    listener,
                    listening,
                    "helper",
                    "tom-helper-client",
                    move |stream, peer, slot| serve_client(&serving, stream, peer, slot),
                )
            })?;
        Ok(RegistryServer {
            shared,
            thread: Some(thread),
        })
    }

    /// The address the helper listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listening.local_addr()
    }

    /// Every registered member so far, sorted by rank, with its latest address.
    pub fn members(&self) -> Vec<RosterEntry> {
        self.shared.registry.lock().members().to_vec()
    }

    /// Stops accepting, releases clients waiting for formation, and waits for the accepting thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Blocks until the helper's accepting thread ends, which in a program is never: it serves forever.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        {
            // Under the lock, so that no client checks the flag and then misses the notification.
            let _registry = self.shared.registry.lock();
            self.shared.listening.set_stopped();
            self.shared.changed.notify_all();
        }
        self.shared.listening.wake();
        let _ = thread.join();
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serves `settings.group` on `listener`, forever.
pub fn serve(listener: TcpListener, settings: RegistrySettings) -> std::io::Result<()> {
    RegistryServer::start(listener, settings)?.wait();
    Ok(())
}

/// Reads a client's registration before the handshake deadline and checks its group and secret;
/// `None` once the client was refused (`refuse`) or dropped.
fn read_registration(
    shared: &RegistryState,
    stream: &TcpStream,
    peer: SocketAddr,
    refuse: &dyn Fn(&str),
) -> Option<Register> {
    let deadline = Instant::now() + Duration::from_millis(shared.settings.handshake_timeout_ms);
    let request = match net::read_frame_before(stream, deadline, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Register(request)) => request,
        Ok(other) => {
            refuse(&format!("expected a registration, got a {}", other.kind()));
            return None;
        }
        Err(ReadError::Wire(error)) => {
            refuse(&error.to_string());
            return None;
        }
        Err(error) => {
            warn!("helper: dropped {peer}: {error} before registering");
            return None;
        }
    };
    // The group first, so that a member of another group hears that, not that its secret is wrong.
    if request.group != shared.settings.group {
        refuse(&format!(
            "wrong group: this helper forms group {:?}, the member asked for {:?}",
            shared.settings.group, request.group
        ));
        return None;
    }
    let opening = Frame::Register(request.clone());
    match auth::answer(stream, &opening, shared.settings.secret.as_ref(), deadline) {
        Ok(()) => {}
        Err(Rejection::Refuse(reason)) => {
            refuse(&reason);
            return None;
        }
        Err(Rejection::Drop(reason)) => {
            warn!("helper: dropped {peer}: {reason}");
            return None;
        }
    }
    Some(request)
}

fn serve_client(shared: &RegistryState, stream: TcpStream, peer: SocketAddr, pending: PendingSlot) {
    let _ = stream.set_nodelay(true);
    let reply_timeout = Duration::from_millis(REPLY_TIMEOUT_MS);
    let refuse = |reason: &str| net::refuse(&stream, peer, reason, "helper", reply_timeout);
    let Some(request) = read_registration(shared, &stream, peer, &refuse) else {
        return;
    };
    drop(pending);
    let mut registry = shared.registry.lock();
    let was_formed = registry.is_formed();
    let rank = match registry.register(&request) {
        Ok(rank) => rank,
        Err(reason) => {
            drop(registry);
            return refuse(&reason);
        }
    };
    let size = registry.size();
    if let Some(incarnation) = request.admitted.filter(|_| request.rejoin.is_some()) {
        let entry = registry.members().iter().find(|e| e.rank == rank);
        if entry.is_some_and(|e| e.incarnation == incarnation && e.process == request.process) {
            info!(
                "helper: rank {rank} rejoined as life {} (process {}), now at {}:{}",
                incarnation.0, request.process, request.host, request.port
            );
        } else {
            info!(
                "helper: rank {rank} life {} (process {}) from {peer} not recorded: the roster names a later life",
                incarnation.0, request.process
            );
        }
    } else if request.rejoin.is_some() {
        info!(
            "helper: a process asking to rejoin as rank {rank} looks the roster up from {peer} (at {}:{}, \
             recorded once the group admits it)",
            request.host, request.port
        );
    } else {
        info!(
            "helper: rank {rank} registered from {peer} at {}:{} ({} of {size})",
            request.host,
            request.port,
            registry.members().len()
        );
        if registry.is_formed() && !was_formed {
            info!("helper: group {:?} formed with {size} members", registry.group());
            shared.changed.notify_all();
        }
    }
    let roster = loop {
        if let Some(roster) = registry.roster_for(rank) {
            break roster;
        }
        if shared.listening.is_stopped() {
            return;
        }
        shared.changed.wait(&mut registry);
    };
    drop(registry);
    if let Err(error) = net::write_frame(&stream, &Frame::Roster(roster), reply_timeout) {
        warn!("helper: could not send the roster to rank {rank} at {peer}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::types::ProcessId;

    fn request(host: &str, port: u16, rejoin: Option<u16>) -> Register {
        Register {
            group: "tom".into(),
            host: host.into(),
            port,
            process: ProcessId(u64::from(port) + 100),
            rejoin: rejoin.map(Rank),
            admitted: None,
            nonce: None,
        }
    }

    fn admitted(host: &str, port: u16, rank: u16, incarnation: u64) -> Register {
        Register {
            admitted: Some(Incarnation(incarnation)),
            ..request(host, port, Some(rank))
        }
    }

    fn entry(registry: &Registry, rank: u16) -> (String, u16, u64, ProcessId) {
        let e = &registry.members()[usize::from(rank - 1)];
        (e.host.clone(), e.port, e.incarnation.0, e.process)
    }

    #[test]
    fn ranks_follow_arrival_order_and_a_retry_keeps_its_rank() {
        let mut registry = Registry::new("tom", 3);
        assert_eq!(registry.register(&request("a", 1, None)), Ok(Rank(1)));
        assert_eq!(registry.register(&request("b", 2, None)), Ok(Rank(2)));
        assert_eq!(registry.register(&request("a", 1, None)), Ok(Rank(1)));
        assert!(registry.roster_for(Rank(1)).is_none());
        assert_eq!(registry.register(&request("c", 3, None)), Ok(Rank(3)));
        let roster = registry.roster_for(Rank(2)).expect("formed");
        assert_eq!((roster.rank, roster.size, roster.members.len()), (Rank(2), 3, 3));
    }

    #[test]
    fn founders_are_listed_with_their_process_as_life_one() {
        let mut registry = Registry::new("tom", 2);
        registry.register(&request("a", 1, None)).unwrap();
        registry.register(&request("b", 2, None)).unwrap();
        assert_eq!(entry(&registry, 1), ("a".into(), 1, 1, ProcessId(101)));
        assert_eq!(entry(&registry, 2), ("b".into(), 2, 1, ProcessId(102)));
    }

    #[test]
    fn after_formation_first_timers_are_refused_and_only_admitted_rejoins_move_their_rank() {
        let mut registry = Registry::new("tom", 2);
        assert!(registry.register(&request("a", 1, Some(1))).is_err());
        registry.register(&request("a", 1, None)).unwrap();
        registry.register(&request("b", 2, None)).unwrap();
        assert!(registry.register(&request("c", 3, None)).is_err());
        assert!(registry.register(&request("a", 1, None)).is_err());
        assert!(registry.register(&request("c", 3, Some(0))).is_err());
        assert!(registry.register(&request("c", 3, Some(3))).is_err());
        // A rejoin looks the roster up: nothing changes until the group admitted the process.
        let before = registry.members().to_vec();
        assert_eq!(registry.register(&request("c", 3, Some(2))), Ok(Rank(2)));
        assert_eq!(registry.members(), &before[..]);
        // Admitted as 2#4: recorded.
        assert_eq!(registry.register(&admitted("c", 3, 2, 4)), Ok(Rank(2)));
        assert_eq!(registry.members().len(), 2);
        assert_eq!(entry(&registry, 2), ("c".into(), 3, 4, ProcessId(103)));
    }

    #[test]
    fn a_refused_rejoin_leaves_the_roster_as_it_was_and_late_news_never_overwrites_a_later_life() {
        let mut registry = Registry::new("tom", 3);
        for (host, port) in [("a", 1), ("b", 2), ("c", 3)] {
            registry.register(&request(host, port, None)).unwrap();
        }
        let formed = registry.members().to_vec();
        // A process asks for rank 2 while 2 lives: the group refuses it, it never registers as admitted.
        registry.register(&request("x", 9, Some(2))).unwrap();
        assert_eq!(registry.members(), &formed[..], "a refused rejoin corrupts nothing");
        // Rank 3 crashes, comes back and is admitted as 3#5; then 3#7 of another process.
        registry.register(&request("d", 4, Some(3))).unwrap();
        registry.register(&admitted("d", 4, 3, 5)).unwrap();
        assert_eq!(entry(&registry, 3), ("d".into(), 4, 5, ProcessId(104)));
        registry.register(&admitted("e", 5, 3, 7)).unwrap();
        assert_eq!(entry(&registry, 3), ("e".into(), 5, 7, ProcessId(105)));
        // 3#5's registration, repeated late, and another process claiming 3#7: both ignored.
        registry.register(&admitted("d", 4, 3, 5)).unwrap();
        registry.register(&admitted("f", 6, 3, 7)).unwrap();
        assert_eq!(entry(&registry, 3), ("e".into(), 5, 7, ProcessId(105)));
        // An admitted life cannot be a founder's incarnation.
        assert!(registry.register(&admitted("g", 7, 3, 1)).is_err());
        assert_eq!(&registry.members()[..2], &formed[..2]);
    }

    #[test]
    fn wrong_group_and_unusable_addresses_are_refused() {
        let mut registry = Registry::new("tom", 2);
        let mut other = request("a", 1, None);
        other.group = "other".into();
        assert!(registry.register(&other).unwrap_err().contains("wrong group"));
        assert!(registry.register(&request("0.0.0.0", 1, None)).is_err());
        assert!(registry.register(&request("", 1, None)).is_err());
        assert!(registry.register(&request("a", 0, None)).is_err());
        assert!(registry.members().is_empty());
    }
}
