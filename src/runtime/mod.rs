//! The threaded runtime that drives the pure [`crate::endpoint::Endpoint`] over real connections.
//!
//! ```text
//! reader thread per peer ────────┐                                   ┌─► Outgoing buffer per peer ─► socket (or writer thread)
//! heartbeat thread (suspicions) ─┼─► Signal channel ─► protocol thread ─┤
//! Member::multicast / leave ─────┤      + tick          (Endpoint)      ├─► Event channel ─► application
//! acceptor (rejoin connections) ─┘                                   └─► dial requests ─► heartbeat thread
//! ```
//!
//! - [`member`]: the public [`Member`] handle (configured by [`crate::Config`]);
//! - [`events`]: the application's end of the events, [`Events`];
//! - `progress.rs`: what the protocol thread records for the handle (own deliveries, admission, the
//!   end of membership), so that waiting never means reading the application's events;
//! - [`state`]: the application's [`Replicated`] state and its typed handle, [`ReplicatedState`];
//! - `engine.rs`: the protocol thread, which turns signals into endpoint inputs and actions into bytes;
//! - `failure.rs`: a protocol thread that panics ends its member visibly (an event, errors, closed
//!   connections), never leaving a process that looks alive;
//! - [`peer`]: one blocking reader thread per connection, which stamps "heard from" and decodes frames;
//! - [`links`]: per-peer outgoing buffers, sent by the protocol thread with a non-blocking send after
//!   each drain of its input, and by a writer thread started only while a socket refuses bytes (the
//!   protocol thread never blocks on a socket; an idle member has no writer threads);
//! - [`heartbeat`]: heartbeats, the failure detector's clock, and the dials the endpoint asks for;
//! - `gate.rs`: flow control of `multicast`;
//! - [`rejoin`]: how a restarted process finds the group and dials it.
//!
//! Socket plumbing (port probing, connecting with retries, reading a handshake before a deadline) is
//! [`crate::net`], shared with the helper and formation.
//!
//! This file holds the vocabulary the threads share. Everything but what the crate root re-exports is
//! internal (public only for the crate's own programs and tests, and hidden from the documentation).
mod engine;
pub mod events;
mod failure;
mod gate;
pub mod heartbeat;
#[doc(hidden)]
pub mod hops;
pub mod links;
pub mod member;
#[doc(hidden)]
pub use crate::net;
pub mod peer;
mod progress;
pub mod rejoin;
pub mod state;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

pub use crate::endpoint::ConnId;
pub use crate::event::Event;
pub use events::{Events, RecvError};
pub use member::{query_status, Member, MessageId, RuntimeConfig};
pub use state::{Replicated, ReplicatedState, StateGuard};

use crate::protocol::Status;
use crate::types::{MemberId, Payload, Rank};
use crate::wire::{Frame, RosterEntry};
use links::{Clock, LastHeard, Outgoing, WriterThreads};

/// What the protocol thread is told, by every other thread.
#[derive(Debug)]
pub enum Signal {
    /// A frame arrived on a connection.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Frame,
    },
    /// A connection ended (end of file, read or write error).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: String,
    },
    /// The heartbeat thread suspects this life (the one the silent connection spoke for).
    Suspect(MemberId),
    /// The heartbeat thread hears again a life it suspected as silent.
    HeardAgain(MemberId),
    /// The application multicasts.
    Multicast(Payload),
    /// The application leaves; `unpaced`: it may no longer read the events, so deliveries are no
    /// longer held back for it.
    Leave {
        /// Stop pacing deliveries to the application.
        unpaced: bool,
    },
    /// The application asks for a status snapshot.
    Status(Sender<Status>),
    /// A connection the heartbeat thread dialled to `life` because the endpoint asked.
    Dialled {
        /// The life the endpoint asked for.
        life: MemberId,
        /// The connection (its greeting not read yet).
        stream: TcpStream,
    },
    /// A dial the endpoint asked for failed.
    DialFailed {
        /// The life.
        life: MemberId,
        /// Why.
        reason: String,
    },
    /// The helper's roster, answering this restarted process's admitted registration.
    Addresses(Vec<RosterEntry>),
    /// Stop now.
    Shutdown,
}

/// A dial the endpoint asked for, carried out by the heartbeat thread.
#[derive(Clone, Debug)]
pub struct DialRequest {
    /// This member's life (the dial names its process).
    pub from: MemberId,
    /// The life to reach.
    pub life: MemberId,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// What the heartbeat thread watches: one entry per connection.
#[derive(Clone, Debug)]
pub struct Watched {
    /// The connection.
    pub conn: ConnId,
    /// The rank at the other end.
    pub rank: Rank,
    /// True for member connections; joiner connections only get heartbeats (and are closed when stuck).
    pub is_member: bool,
    /// The life of the installed view this member connection speaks for (rank and process match);
    /// `None` for a connection that speaks for no life of the view (not suspected when silent).
    pub life: Option<MemberId>,
    /// The outgoing buffer.
    pub outgoing: Arc<Outgoing>,
    /// When the peer was last heard from.
    pub heard: Arc<LastHeard>,
}

/// State shared by the member's threads.
pub(crate) struct Shared {
    pub clock: Clock,
    /// Every open connection's streams (reading and writing end), so shutdown can unblock its reader.
    /// An entry leaves when its connection closes: a long-lived member that sees many rejoins must not
    /// keep their sockets open.
    pub streams: Mutex<BTreeMap<ConnId, [TcpStream; 2]>>,
    /// What the heartbeat thread pings and watches.
    pub watched: Mutex<Vec<Watched>>,
    /// The protocol thread first, then the heartbeat thread and every reader.
    pub threads: Mutex<Vec<JoinHandle<()>>>,
    /// The writer threads that run (a connection starts one only while its socket refuses bytes): a
    /// stop lets them write what is queued before it shuts the sockets down.
    pub writers: WriterThreads,
}

impl Shared {
    /// Nothing open, no thread started, the clock at 0.
    pub fn new() -> Shared {
        Shared {
            clock: Clock::new(),
            streams: Mutex::new(BTreeMap::new()),
            watched: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            writers: WriterThreads::default(),
        }
    }
}
