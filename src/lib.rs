//! # tom: total-order multicast for a group of processes that crash and come back
//!
//! A group of N processes agrees on one order of all messages any of them multicasts, and keeps
//! agreeing when members crash, are wrongly suspected, leave, or restart and rejoin. Every member
//! delivers the same messages in the same order; a message is delivered by all survivors or by none,
//! even when its sender dies halfway through sending it.
//!
//! ## Using it
//!
//! A [`Helper`] (or the `tom-helper` program) forms the group: N processes each call
//! [`Member::join`] with a [`Config`] naming it, and once all N have registered each gets its
//! [`Rank`] and a connection to every other member. From then on:
//!
//! ```no_run
//! use std::time::Duration;
//! use tom::{Config, Event, Member};
//!
//! // A helper (`tom-helper --size 3`) runs on port 9999; start three processes like this one.
//! let member = Member::join(Config::new("127.0.0.1:9999").group("tom"))?;
//! let hello = member.multicast(format!("hello from {}", member.rank()).into_bytes())?;
//! member.wait_delivered(hello, Duration::from_secs(10))?; // every member of the view delivers it
//! // The events, in order (often read on a thread of their own); here, until a second of quiet.
//! while let Ok(event) = member.events().recv_timeout(Duration::from_secs(1)) {
//!     match event {
//!         Event::Deliver(d) => println!("{} {} {:?}", d.origin.rank, d.lamport, d.payload),
//!         Event::View(view) => println!("view {view}"),
//!         Event::Joined { position } => println!("rejoined after {position} messages"),
//!         Event::Excluded { .. } | Event::Left | Event::Failed { .. } => break,
//!     }
//! }
//! member.leave(Duration::from_secs(10))?;
//! # Ok::<(), tom::Error>(())
//! ```
//!
//! - [`Member`]: [`join`](Member::join) a new group, [`rejoin`](Member::rejoin) a running one as a new
//!   life of a rank, [`multicast`](Member::multicast) (returns a [`MessageId`]),
//!   [`wait_delivered`](Member::wait_delivered), [`events`](Member::events) (an [`Events`] receiver of
//!   [`Event`]s, documented exactly as they arrive), [`leave`](Member::leave),
//!   [`status`](Member::status), [`shutdown`](Member::shutdown).
//! - [`Config`]: one builder for every setting, [`Config::validate`]d by `join` and `rejoin`; a
//!   [`Secret`] keeps strangers out of a group on a shared network.
//! - [`Replicated`] and its typed handle [`ReplicatedState`]: application state kept in step with the
//!   total order, handed to a member that rejoins (state transfer) and read back with
//!   [`ReplicatedState::read`].
//! - [`Helper`] and [`HelperConfig`]: the helper inside a program.
//! - [`Error`] and [`Result`]: every failure, as values.
//! - [`query_status`]: ask a running member, over its port, why a message is (not) delivered.
//!
//! `examples/kv_store.rs` is a small replicated key-value store that does all of the above (join,
//! multicast and wait for its own message, read events, leave, rejoin with state transfer, read its
//! typed state); `examples/three_members.rs` runs a whole group in one process. The programs
//! `tom-helper` and `tom-member` (in `bin/`) are the same library behind a line-oriented
//! stdin/stdout contract.
//!
//! ## Architecture: one core, two drivers
//!
//! ```text
//! reader thread per peer ────────┐                                    ┌─► Outgoing buffer per peer ─► socket (or writer thread)
//! heartbeat thread (suspicions) ─┼─► Signal channel ─► protocol thread ─┼─► Event channel ─► application (Events)
//! Member::multicast / leave ─────┤      + tick          (Endpoint)      ├─► Progress ─► Member::wait_delivered, leave, rejoin
//! acceptor (rejoin connections) ─┘                                    └─► dial requests ─► heartbeat thread
//! ```
//!
//! The protocol is a pure, deterministic state machine, [`protocol::Node`]: no sockets, threads,
//! clocks or randomness inside. Around it, the endpoint (`src/endpoint/`) is just as pure and holds every rule
//! about connections (which one counts for which life, what is kept until a view admits a process, whom
//! to dial, when an unconnected member is suspected, the order of the state transfer); both drivers
//! embed the endpoint, so the simulator runs those rules too. **Feed it one [`protocol::Input`] at a time, drain the
//! [`protocol::Outbox`] after every call, and call [`protocol::Node::flush`] whenever no input is
//! waiting.** Two drivers do exactly that:
//!
//! - the threaded runtime (`src/runtime/`): blocking `TcpStream` reader threads feed a crossbeam channel
//!   into one protocol thread, which owns the endpoint (and so the Lamport clock, the acknowledgement
//!   table and the alive set) and never blocks on a socket; a heartbeat thread is the failure detector
//!   and makes the dials the endpoint asks for;
//! - the seeded simulator in `tests/sim/`, which runs several nodes through random delays, crashes,
//!   partitions and rejoins, thousands of seeds per `make test`, and checks every history.
//!
//! A driver's duties, as a whole driver: three cores wired through in-memory queues, one input at a
//! time, the outbox drained after every call, a flush whenever no input waits. The threaded runtime
//! does the same with sockets (its protocol thread, `src/runtime/engine.rs`), the simulator with
//! random delays and faults.
//!
//! ```
//! use std::collections::VecDeque;
//! use tom::protocol::{CoreConfig, Input, Node, Outbox, Output};
//! use tom::types::{ProcessId, Rank, View};
//!
//! let view = View::formed(&[ProcessId(1), ProcessId(2), ProcessId(3)]);
//! let mut nodes: Vec<Node> = (1..=3).map(|r| Node::new(CoreConfig::new(Rank(r)), view.clone())).collect();
//! // Inputs waiting for each node, in arrival order (FIFO per link, as TCP).
//! let mut inbox: Vec<VecDeque<Input>> = vec![VecDeque::new(); 3];
//! let mut delivered: Vec<Vec<String>> = vec![Vec::new(); 3];
//! for (i, text) in ["hello", "world"].iter().enumerate() {
//!     inbox[i].push_back(Input::Multicast((*text).into()));
//! }
//! let mut out = Outbox::new();
//! loop {
//!     let Some(i) = (0..3).find(|i| !inbox[*i].is_empty()) else { break };
//!     let input = inbox[i].pop_front().expect("an input waits");
//!     nodes[i].handle(input, &mut out); // 1. one input at a time
//!     if inbox[i].is_empty() {
//!         nodes[i].flush(&mut out); // 3. nothing more waits: what was batched goes out now
//!     }
//!     let from = Rank(i as u16 + 1);
//!     for output in out.drain() { // 2. every output, in order, after every call
//!         match output {
//!             Output::Send { to, msg } => inbox[to.0 as usize - 1].push_back(Input::Received { from, msg }),
//!             Output::Broadcast { to, msg } => {
//!                 for to in to {
//!                     inbox[to.0 as usize - 1].push_back(Input::Received { from, msg: msg.clone() });
//!                 }
//!             }
//!             Output::Deliver(d) => delivered[i].push(String::from_utf8_lossy(d.payload.as_bytes()).into()),
//!             _ => {} // views, joins, exclusions: none in a group without faults
//!         }
//!     }
//! }
//! assert_eq!(delivered[0].len(), 2);
//! assert!(delivered.iter().all(|d| *d == delivered[0]), "one order at every member");
//! ```
//!
//! ## Modules
//!
//! The crate root holds the API above. Three modules are public for readers and for other drivers of
//! the core:
//!
//! | module | what lives there |
//! |---|---|
//! | [`types`] | `Rank`, `Incarnation`, `ViewId`, `Stamp` (its `Ord` is the total order), `Payload`, `View` |
//! | [`message`] | the member-to-member protocol messages, as plain data |
//! | [`protocol`] | the pure core: hold-back queue and delivery rule, view changes, rejoin, leave |
//!
//! The rest is internal: public only so that the crate's programs and tests reach it, hidden from
//! this documentation, and free to change.
//!
//! | source | what lives there |
//! |---|---|
//! | `src/endpoint/` | the pure engine around the core: which connection speaks for which life, early frames, whom to dial |
//! | `src/state_transfer/` | the pure state transfer: which snapshot counts, what a returning member and its sponsor hold back, and when |
//! | `src/event.rs` | what a member reports to its application ([`Event`]) |
//! | `src/detector.rs` | the failure detector's decision, a pure function of last-heard times |
//! | `src/wire/` | length-prefixed binary frames; decoding never panics and never trusts a length |
//! | `src/registry.rs` | the helper: ranks 1..N in arrival order, the roster, rejoin registrations ([`Helper`] serves it) |
//! | `src/formation.rs` | the member side of forming a group: probe a port, register, build the mesh |
//! | `src/auth.rs` | the group secret ([`Secret`]) and the challenge–response every connection opens with when there is one |
//! | `src/net.rs` | socket plumbing shared by the helper, formation and the runtime: port probing, connecting with retries, reading a handshake before a deadline |
//! | `src/digest.rs` | SHA-256 and HMAC-SHA-256, written here (no crypto crate), checked against published vectors |
//! | `src/runtime/` | threads and sockets around the endpoint: [`Member`], [`Events`], [`ReplicatedState`] |
//! | `src/config.rs`, `src/helper.rs` | [`Config`]; [`Helper`] and [`HelperConfig`] |
//! | `src/trace.rs` | JSON-lines traces of protocol events ([`Config::trace`], `tom-member --trace`, the simulator), read by `tom-diagram` |
//! | `src/error.rs` | the crate's error type ([`Error`]) |
//!
//! `docs/PROTOCOL.md` explains the algorithm and why it is correct, case by case; `docs/READING.md`
//! walks a reader through the code, step by step and function by function. The library never
//! writes to stdout and never installs a logger: it logs through the `log` crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
pub mod message;
pub mod protocol;
pub mod types;

#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod detector;
#[doc(hidden)]
pub mod digest;
#[doc(hidden)]
pub mod endpoint;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod event;
#[doc(hidden)]
pub mod formation;
#[doc(hidden)]
pub mod net;
#[doc(hidden)]
pub mod registry;
#[doc(hidden)]
pub mod runtime;
#[doc(hidden)]
pub mod state_transfer;
#[doc(hidden)]
pub mod trace;
#[doc(hidden)]
pub mod wire;

mod config;
mod helper;

pub use auth::Secret;
pub use config::{Config, JOIN_TIMEOUT_MS_DEFAULT};
pub use error::{Error, Result};
pub use event::Event;
pub use helper::{Helper, HelperConfig};
pub use protocol::{Delivery, Status};
pub use runtime::{query_status, Events, Member, MessageId, RecvError, Replicated, ReplicatedState, StateGuard};
pub use trace::TraceSink;
pub use types::{Incarnation, MemberId, Payload, Rank, View, ViewId};
