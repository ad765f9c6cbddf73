//! [`Config`]: every setting of a member, in one builder.

use std::fmt;
use std::net::IpAddr;

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::formation;
use crate::runtime::state::{Replicated, ReplicatedState};
use crate::runtime::{self, hops::HopProbe};
use crate::trace::TraceSink;

/// How long [`crate::Member::join`] and [`crate::Member::rejoin`] wait by default: a minute.
pub const JOIN_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// The settings of a member: how it finds the group, its timing, its flow control, its replicated
/// state. Start from [`Config::new`] and change what differs from the defaults:
///
/// ```
/// use tom::{Config, Secret};
///
/// let config = Config::new("helper.lab:9999")
///     .group("lab-7")
///     .secret(Secret::new(*b"a long random secret")?)
///     .failure_timeout_ms(3_000)
///     .window(256);
/// config.validate()?;
/// # Ok::<(), tom::Error>(())
/// ```
///
/// Nothing is checked until [`Config::validate`], which [`crate::Member::join`] and
/// [`crate::Member::rejoin`] call first: a setting that cannot work is an
/// [`Error::InvalidSetting`] naming it, never silently replaced.
#[derive(Clone)]
pub struct Config {
    runtime: runtime::RuntimeConfig,
    join_timeout_ms: u64,
    peers: Vec<String>,
}

impl Config {
    /// The defaults, with the helper (`tom-helper`, or a [`crate::Helper`]) at `helper`: anything
    /// that prints as `HOST:PORT`, such as `"helper.lab:9999"` or a [`std::net::SocketAddr`]. A host name
    /// is resolved at each connection attempt.
    ///
    /// | setting | default |
    /// |---|---|
    /// | [`group`](Config::group) | `"tom"` |
    /// | [`secret`](Config::secret) | none |
    /// | [`bind_host`](Config::bind_host) | `"0.0.0.0"` |
    /// | [`first_port`](Config::first_port), [`port_span`](Config::port_span) | 10,000, 100 |
    /// | [`advertised_host`](Config::advertised_host) | this host's address on its route to the helper |
    /// | [`join_timeout_ms`](Config::join_timeout_ms) | 60,000 |
    /// | [`failure_timeout_ms`](Config::failure_timeout_ms) | 1,500 |
    /// | [`heartbeat_interval_ms`](Config::heartbeat_interval_ms) | 100 |
    /// | [`tick_ms`](Config::tick_ms) | 10 |
    /// | [`window`](Config::window) | 1,024 |
    /// | [`delivery_queue_max`](Config::delivery_queue_max) | 4,096 |
    /// | [`state`](Config::state), [`trace`](Config::trace), [`peer`](Config::peer) | none |
    pub fn new(helper: impl ToString) -> Config {
        Config {
            runtime: runtime::RuntimeConfig::new(formation::FormationConfig::new(helper.to_string())),
            join_timeout_ms: JOIN_TIMEOUT_MS_DEFAULT,
            peers: Vec::new(),
        }
    }

    /// The defaults without a helper: only for [`crate::Member::rejoin`] through live members given
    /// with [`Config::peer`] (the helper is gone).
    pub fn without_helper() -> Config {
        Config::new("")
    }

    /// The group's name; the helper and every member must use the same. Default `"tom"`.
    pub fn group(mut self, name: impl Into<String>) -> Config {
        self.runtime.formation.group = name.into();
        self
    }

    /// The group's secret. With one, every connection this member opens or accepts (helper, members,
    /// status queries) proves it by challenge–response; the helper and every member need the same.
    /// Default none.
    pub fn secret(mut self, secret: Secret) -> Config {
        self.runtime.formation.secret = Some(secret);
        self
    }

    /// The host name or IP address the other members dial to reach this one. Default: this host's
    /// address on its route to the helper. Set it when that address is not reachable by the others.
    pub fn advertised_host(mut self, host: impl Into<String>) -> Config {
        self.runtime.formation.advertised_host = Some(host.into());
        self
    }

    /// The address this member's listener binds. Default `"0.0.0.0"` (every IPv4 interface).
    pub fn bind_host(mut self, host: impl Into<String>) -> Config {
        self.runtime.formation.bind_host = host.into();
        self
    }

    /// The first port tried for this member's listener; the next free one upward is used. Default
    /// 10,000; 0 lets the system pick any free port.
    pub fn first_port(mut self, port: u16) -> Config {
        self.runtime.formation.first_port = port;
        self
    }

    /// How many ports are tried upward from [`Config::first_port`]. Default 100; at least 1.
    pub fn port_span(mut self, ports: u16) -> Config {
        self.runtime.formation.port_span = ports;
        self
    }

    /// A live member (`HOST:PORT`, the address it listens on, [`crate::Member::local_addr`]) that
    /// [`crate::Member::rejoin`] asks for the group when the helper does not answer. Repeatable.
    pub fn peer(mut self, addr: impl ToString) -> Config {
        self.peers.push(addr.to_string());
        self
    }

    /// How long [`crate::Member::join`] waits for the group to form (the other members to register and
    /// connect), and [`crate::Member::rejoin`] to be admitted. Default 60,000 ms.
    pub fn join_timeout_ms(mut self, ms: u64) -> Config {
        self.join_timeout_ms = ms;
        self
    }

    /// A peer silent for longer than this (or whose writer is stuck that long, or a member of the view
    /// this member has had no connection to for that long) is suspected. Default 1,500 ms: long enough
    /// for a paused or loaded process on a LAN, short enough to keep the group moving.
    pub fn failure_timeout_ms(mut self, ms: u64) -> Config {
        self.runtime.failure_timeout_ms = ms;
        self
    }

    /// How often a heartbeat goes to every peer. Default 100 ms.
    pub fn heartbeat_interval_ms(mut self, ms: u64) -> Config {
        self.runtime.heartbeat_interval_ms = ms;
        self
    }

    /// The length of one tick of the protocol's logical time (its timers). Default 10 ms.
    pub fn tick_ms(mut self, ms: u64) -> Config {
        self.runtime.tick_ms = ms;
        self
    }

    /// Most of this member's own messages multicast and not yet delivered;
    /// [`crate::Member::multicast`] blocks beyond. Default 1,024; at least 1.
    pub fn window(mut self, messages: usize) -> Config {
        self.runtime.window = messages;
        self
    }

    /// Most events waiting for the application before this member holds back its deliveries and
    /// acknowledgements (so a slow consumer slows the group instead of growing a queue); it resumes when
    /// the application has taken half of them. Default 4,096; at least 1.
    pub fn delivery_queue_max(mut self, events: usize) -> Config {
        self.runtime.delivery_queue_max = events;
        self
    }

    /// The application's state, kept in step with the total order and handed to members that rejoin
    /// (see [`ReplicatedState`]). Every member of the group must have one. Default none.
    pub fn state<T: Replicated + 'static>(mut self, state: &ReplicatedState<T>) -> Config {
        self.runtime.state = Some(state.into());
        self
    }

    /// Writes this member's trace to `sink`: one JSON line per protocol event (the format of
    /// `tom-member --trace`, which `tom-diagram` draws). Default none.
    pub fn trace(mut self, sink: TraceSink) -> Config {
        self.runtime.trace = Some(sink);
        self
    }

    /// How long a peer may take to send its handshake once connected. Default 5,000 ms.
    pub fn handshake_timeout_ms(mut self, ms: u64) -> Config {
        self.runtime.formation.handshake_timeout_ms = ms;
        self
    }

    /// Most accepted connections whose handshake is not yet judged. Default 256.
    pub fn handshake_pending_max(mut self, connections: usize) -> Config {
        self.runtime.formation.handshake_pending_max = connections;
        self
    }

    /// Attempts to connect to the helper, and to each peer, before giving up. Default 10.
    pub fn connect_attempts(mut self, attempts: u32) -> Config {
        self.runtime.formation.connect_attempts = attempts;
        self
    }

    /// Pause between two connection attempts. Default 500 ms.
    pub fn connect_retry_interval_ms(mut self, ms: u64) -> Config {
        self.runtime.formation.connect_retry_interval_ms = ms;
        self
    }

    /// Longest wait for one connection attempt. Default 3,000 ms.
    pub fn connect_timeout_ms(mut self, ms: u64) -> Config {
        self.runtime.formation.connect_timeout_ms = ms;
        self
    }

    /// Not part of the supported API: per-hop timestamps for `tom-bench --breakdown`.
    #[doc(hidden)]
    pub fn hop_probe(mut self, probe: HopProbe) -> Config {
        self.runtime.hop_probe = Some(probe);
        self
    }

    /// Checks every setting; the first that cannot work is an [`Error::InvalidSetting`] that names it
    /// and says why. Called by [`crate::Member::join`] and [`crate::Member::rejoin`] before anything
    /// else (they also need a helper, or for a rejoin a helper or a peer).
    pub fn validate(&self) -> Result<()> {
        let formation = &self.runtime.formation;
        if !formation.helper.is_empty() {
            host_port("helper", &formation.helper)?;
        }
        for peer in &self.peers {
            host_port("peer", peer)?;
        }
        if let Some(host) = &formation.advertised_host {
            if host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
                return Err(invalid(
                    "advertised_host",
                    format!("{host:?}: other members cannot dial it (give this host's name or address)"),
                ));
            }
        }
        if formation.bind_host.is_empty() {
            return Err(invalid("bind_host", "empty (\"0.0.0.0\" binds every IPv4 interface)"));
        }
        let at_least_one: [(&'static str, u64); 12] = [
            ("port_span", u64::from(formation.port_span)),
            ("join_timeout_ms", self.join_timeout_ms),
            ("failure_timeout_ms", self.runtime.failure_timeout_ms),
            ("heartbeat_interval_ms", self.runtime.heartbeat_interval_ms),
            ("tick_ms", self.runtime.tick_ms),
            ("window", self.runtime.window as u64),
            ("delivery_queue_max", self.runtime.delivery_queue_max as u64),
            ("handshake_timeout_ms", formation.handshake_timeout_ms),
            ("handshake_pending_max", formation.handshake_pending_max as u64),
            ("connect_attempts", u64::from(formation.connect_attempts)),
            ("connect_timeout_ms", formation.connect_timeout_ms),
            ("formation_timeout_ms", formation.formation_timeout_ms),
        ];
        if let Some((field, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(field, "0: it must be at least 1"));
        }
        Ok(())
    }

    /// The settings for [`crate::Member::join`], checked: a helper is needed, and formation may take
    /// [`Config::join_timeout_ms`].
    pub(crate) fn for_join(&self) -> Result<runtime::RuntimeConfig> {
        self.validate()?;
        if self.runtime.formation.helper.is_empty() {
            return Err(invalid("helper", "none: a group is formed through its helper"));
        }
        let mut runtime = self.runtime.clone();
        runtime.formation.formation_timeout_ms = self.join_timeout_ms;
        Ok(runtime)
    }

    /// The settings for [`crate::Member::rejoin`], checked: a helper or a peer is needed. Returns them
    /// with the peers and how long to wait to be admitted.
    pub(crate) fn for_rejoin(&self) -> Result<(runtime::RuntimeConfig, Vec<String>, u64)> {
        self.validate()?;
        if self.runtime.formation.helper.is_empty() && self.peers.is_empty() {
            return Err(invalid(
                "helper",
                "none, and no peer either: a member rejoins through the helper or a live member",
            ));
        }
        Ok((self.runtime.clone(), self.peers.clone(), self.join_timeout_ms))
    }

    /// The settings for a member started on a mesh formed elsewhere ([`crate::Member::start`]).
    pub(crate) fn for_start(&self) -> Result<runtime::RuntimeConfig> {
        self.validate()?;
        Ok(self.runtime.clone())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formation = &self.runtime.formation;
        f.debug_struct("Config")
            .field("helper", &formation.helper)
            .field("group", &formation.group)
            .field("secret", &formation.secret)
            .field("advertised_host", &formation.advertised_host)
            .field("bind_host", &formation.bind_host)
            .field("first_port", &formation.first_port)
            .field("port_span", &formation.port_span)
            .field("peers", &self.peers)
            .field("join_timeout_ms", &self.join_timeout_ms)
            .field("failure_timeout_ms", &self.runtime.failure_timeout_ms)
            .field("heartbeat_interval_ms", &self.runtime.heartbeat_interval_ms)
            .field("tick_ms", &self.runtime.tick_ms)
            .field("window", &self.runtime.window)
            .field("delivery_queue_max", &self.runtime.delivery_queue_max)
            .field("state", &self.runtime.state)
            .field("trace", &self.runtime.trace)
            .field("handshake_timeout_ms", &formation.handshake_timeout_ms)
            .field("handshake_pending_max", &formation.handshake_pending_max)
            .field("connect_attempts", &formation.connect_attempts)
            .field("connect_retry_interval_ms", &formation.connect_retry_interval_ms)
            .field("connect_timeout_ms", &formation.connect_timeout_ms)
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidSetting {
        field,
        reason: reason.into(),
    }
}

/// `addr` must be `HOST:PORT` with a port 1..=65535.
fn host_port(field: &'static str, addr: &str) -> Result<()> {
    match crate::net::split_host_port(addr) {
        Ok((_, 0)) => Err(invalid(field, format!("{addr:?}: port 0 cannot be dialled"))),
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(field, format!("{addr:?} is not HOST:PORT"))),
    }
}
