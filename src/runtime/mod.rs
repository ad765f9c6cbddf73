//! The threaded runtime that drives the protocol core over real connections.
//!
//! - [`member`]: the public [`Member`] handle and the protocol thread, the only place protocol state
//!   changes;
//! - [`peer`]: one blocking reader thread per connection, which stamps "heard from" and decodes frames;
//! - [`links`]: per-peer outgoing buffers drained by one writer thread each (the protocol thread never
//!   blocks on a socket);
//! - [`heartbeat`]: heartbeats and the failure detector's clock;
//! - [`roles`]: which connection speaks for which life (rank and process) when views change and lives
//!   rejoin;
//! - [`net`]: socket plumbing (port probing, connecting with retries, reading a handshake before a
//!   deadline).
pub mod heartbeat;
#[doc(hidden)]
pub mod hops;
pub mod links;
pub mod member;
pub mod net;
pub mod peer;
pub mod rejoin;
mod roles;
pub mod state;

pub use member::{query_status, Config, Event, Member};
pub use state::{Replicated, ReplicatedState};
