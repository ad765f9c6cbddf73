//! # tom: total-order multicast for a group of processes that crash and come back
//!
//! A group of N processes agrees on one order of all messages any of them multicasts, and keeps
//! agreeing when members crash, are wrongly suspected, leave, or restart and rejoin. Every member
//! delivers the same messages in the same order; a message is delivered by all survivors or by none,
//! even when its sender dies halfway through sending it.
//!
//! ## Using it
//!
//! ```no_run
//! use std::time::Duration;
//! use tom::formation;
//! use tom::runtime::{Config, Event, Member};
//!
//! // A helper (`tom-helper --size 3`) runs on port 9999; start three processes like this one.
//! let member = Member::join(Config::new(formation::Config::new("127.0.0.1:9999")))?;
//! member.multicast(format!("hello from {}", member.rank()).into_bytes())?;
//! for event in member.events().iter() {
//!     match event {
//!         Event::Deliver(d) => println!("{} {} {:?}", d.origin.rank, d.lamport, d.payload),
//!         Event::View(view) => println!("view {view}"),
//!         Event::Excluded { .. } | Event::Left => break,
//!         Event::Joined { .. } => {}
//!     }
//! }
//! member.leave(Duration::from_secs(10))?;
//! # Ok::<(), tom::error::Error>(())
//! ```
//!
//! `examples/three_members.rs` runs a whole group in one process. The programs `tom-helper` and
//! `tom-member` (in `bin/`) are the same library behind a line-oriented stdin/stdout contract.
//!
//! ## Architecture: one core, two drivers
//!
//! ```text
//! reader thread per connection ──┐                          ┌─► Outgoing buffer per peer ─► writer thread
//! heartbeat thread (suspicions) ─┼─► Signal channel ─► protocol thread: Node::handle ─┤
//! Member::multicast / leave ─────┤      + tick                                        └─► Event channel ─► application
//! acceptor (rejoin connections) ─┘
//! ```
//!
//! The protocol is a pure, deterministic state machine, [`protocol::Node`]: no sockets, threads,
//! clocks or randomness inside. Around it, [`endpoint::Endpoint`] is just as pure and holds every rule
//! about connections (which one counts for which life, what is kept until a view admits a process, whom
//! to dial, when an unconnected member is suspected, the order of the state transfer); both drivers
//! embed the endpoint, so the simulator runs those rules too. **Feed it one [`protocol::Input`] at a time, drain the
//! [`protocol::Outbox`] after every call, and call [`protocol::Node::flush`] whenever no input is
//! waiting.** Two drivers do exactly that:
//!
//! - the threaded runtime ([`runtime`]): blocking `TcpStream` reader threads feed a crossbeam channel
//!   into one protocol thread, which owns the endpoint (and so the Lamport clock, the acknowledgement
//!   table and the alive set) and never blocks on a socket; a heartbeat thread is the failure detector
//!   and makes the dials the endpoint asks for;
//! - the seeded simulator in `tests/sim/`, which runs several nodes through random delays, crashes,
//!   partitions and rejoins, thousands of seeds per `make test`, and checks every history.
//!
//! The runtime's protocol loop, in essence:
//!
//! ```ignore
//! loop {
//!     select! {
//!         recv(signals) -> signal => on_signal(&mut endpoint, signal), // frame, close, suspicion, multicast…
//!         recv(ticker) -> _ => endpoint.tick(clock.now_ms()),
//!         recv(incoming) -> conn => endpoint.opened(conn, Origin::Accepted, rank, process),
//!     }
//!     carry_out(endpoint.take_actions());
//!     while let Ok(signal) = signals.try_recv() { on_signal(&mut endpoint, signal); carry_out(endpoint.take_actions()); }
//!     endpoint.flush();                   // nothing more queued: coalesced acknowledgements go out now
//!     carry_out(endpoint.take_actions()); // frames to peers' buffers, dials, events to the application
//! }
//! ```
//!
//! ## Modules
//!
//! | module | what lives there |
//! |---|---|
//! | [`types`] | `Rank`, `Incarnation`, `ViewId`, `Stamp` (its `Ord` is the total order), `Payload`, `View` |
//! | [`message`] | the member-to-member protocol messages, as plain data |
//! | [`protocol`] | the pure core: hold-back queue and delivery rule, view changes, rejoin, leave |
//! | [`endpoint`] | the pure engine around the core: which connection speaks for which life, early frames, whom to dial, the state-transfer order |
//! | [`event`] | what a member reports to its application |
//! | [`detector`] | the failure detector's decision, a pure function of last-heard times |
//! | [`wire`] | length-prefixed binary frames; decoding never panics and never trusts a length |
//! | [`registry`] | the helper: ranks 1..N in arrival order, the roster, rejoin registrations |
//! | [`formation`] | the member side of forming a group: probe a port, register, build the mesh |
//! | [`auth`] | the group secret and the challenge–response every connection opens with when there is one |
//! | [`digest`] | SHA-256 and HMAC-SHA-256, written here (no crypto crate), checked against published vectors |
//! | [`runtime`] | threads and sockets around the core: [`runtime::Member`] |
//! | [`trace`] | JSON-lines traces of protocol events (`tom-member --trace`, the simulator), read by `tom-diagram` |
//! | [`logcheck`] | checks the stdout logs of a run's `tom-member` processes (`tom-check`) |
//! | [`error`] | the crate's error type |
//!
//! `docs/PROTOCOL.md` explains the algorithm and why it is correct, case by case. The library never
//! writes to stdout and never installs a logger: it logs through the `log` crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
pub mod auth;
pub mod detector;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod formation;
pub mod logcheck;
pub mod message;
pub mod protocol;
pub mod registry;
pub mod runtime;
pub mod trace;
pub mod types;
pub mod wire;
