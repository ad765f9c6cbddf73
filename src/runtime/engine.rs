//! The protocol thread: it turns frames and signals into the [`Endpoint`]'s inputs, and its
//! [`Action`]s into bytes on sockets, dials, and events for the application. Nothing else: which
//! connection counts for which life, what is kept for later, whom to dial, when to suspect an
//! unconnected member and in which order the state moves are the endpoint's decisions (pure, and run by
//! the simulator too).
//!
//! **The protocol thread is the only place protocol state changes**, and it never blocks on the network:
//! it encodes each frame once and appends it to the buffer of every connection it goes to; after each
//! drain it sends those buffers itself with a non-blocking send, and a writer thread, started only then,
//! writes what a socket did not take ([`super::links`]). It drains the queued signals (up to [`DRAIN_SIGNALS_MAX`]) before
//! calling [`Endpoint::flush`], so multicasts batch and acknowledgements coalesce exactly when there is
//! a backlog, and both go out at once when there is none. Debug builds check the core's invariants after
//! each batch.

use std::collections::BTreeMap;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};
use log::{debug, info, warn};

use super::gate::{Closed, Gate};
use super::hops::{EngineProbe, ReadProbe, WriteProbe};
use super::links::{LastHeard, Outgoing};
use super::peer::spawn_reader_probed;
use super::progress::{End, Progress};
use super::state::AnyState;
use super::{rejoin, ConnId, DialRequest, Shared, Signal, Watched};
use crate::endpoint::{Action, Endpoint, Origin};
use crate::error::Result;
use crate::event::Event;
use crate::formation::{self, Incoming};
use crate::protocol::Input;
use crate::trace::{self, TraceSink};
use crate::types::{MemberId, Rank, ViewId};
use crate::wire::{self, Frame, Purpose};

/// The protocol thread's state: the endpoint and the sockets it talks through.
pub(crate) struct Engine {
    pub endpoint: Endpoint,
    /// Every open connection's outgoing buffer.
    pub outgoing: BTreeMap<ConnId, Arc<Outgoing>>,
    pub next_conn: ConnId,
    pub shared: Arc<Shared>,
    pub signals: Sender<Signal>,
    pub events: Sender<Event>,
    pub gate: Arc<Gate>,
    /// What the handle waits for: own deliveries, admission, the end of membership.
    pub progress: Arc<Progress>,
    /// Dials the endpoint asks for, carried out by the heartbeat thread.
    pub dials: Sender<DialRequest>,
    /// How to reach the helper, for a restarted process's admitted registration.
    pub formation: formation::FormationConfig,
    pub state: Option<AnyState>,
    pub trace: Option<TraceSink>,
    /// See [`super::RuntimeConfig::delivery_queue_max`].
    pub delivery_queue_max: usize,
    /// The endpoint was told the application is behind.
    pub application_busy: bool,
    /// The application left with [`super::Member::leave`] and may not read its events any more:
    /// deliveries are no longer held back for it.
    pub unpaced: bool,
    pub probe: Option<EngineProbe>,
    /// The frame being written, encoded once for every connection it goes to (reused: no allocation
    /// per frame).
    pub encoded: Vec<u8>,
    /// Connections with bytes appended since the last [`Engine::send_appended`].
    pub appended_to: Vec<ConnId>,
}

/// Whether the loop ended or a panic unwinds it, every writer is told to write what is queued and
/// shut its socket down: a writer left waiting would keep the member's stop waiting for it.
impl Drop for Engine {
    fn drop(&mut self) {
        for outgoing in self.outgoing.values() {
            outgoing.close();
        }
    }
}

/// Most signals taken in one drain before what they caused goes out: under a steady stream of input
/// the protocol thread still sends (and acknowledges) at least this often.
const DRAIN_SIGNALS_MAX: usize = 1024;

impl Engine {
    pub fn run(mut self, signals: Receiver<Signal>, mut incoming: Receiver<Incoming>, tick: Duration) {
        let ticker = crossbeam_channel::tick(tick);
        self.carry_out();
        self.send_appended();
        while !self.endpoint.is_finished() {
            self.flush_trace();
            select! {
                recv(signals) -> signal => match signal {
                    Ok(signal) => self.on_signal(signal),
                    Err(_) => break,
                },
                recv(ticker) -> _ => self.endpoint.tick(self.shared.clock.now_ms()),
                recv(incoming) -> accepted => match accepted {
                    Ok(accepted) => self.on_incoming(accepted),
                    // The acceptor stopped: stop selecting on it rather than spin on a closed channel.
                    Err(_) => incoming = crossbeam_channel::never(),
                },
            }
            // Drain what is already queued before flushing: multicasts batch and acknowledgements
            // coalesce under load, and both go out at once otherwise.
            let mut drained = 0;
            while !self.endpoint.is_finished() && drained < DRAIN_SIGNALS_MAX {
                self.carry_out();
                match signals.try_recv() {
                    Ok(signal) => self.on_signal(signal),
                    Err(_) => break,
                }
                drained += 1;
            }
            self.endpoint.flush();
            self.carry_out();
            self.pace_to_application();
            self.send_appended();
            // Debug builds (every `make test` run) check the endpoint's and the core's invariants after
            // each batch, as the simulator does after every input: the real runtime's interleavings are
            // checked too.
            #[cfg(debug_assertions)]
            self.endpoint.check_invariants();
        }
        self.flush_trace();
        self.gate.close(Closed::ShutDown);
        self.progress.ended(End::Stopped);
        // The writers are closed as the engine drops.
    }

    /// Holds back deliveries while the application is behind, resumes when it has caught up halfway.
    fn pace_to_application(&mut self) {
        let waiting = self.events.len();
        let limit = if self.application_busy {
            self.delivery_queue_max / 2
        } else {
            self.delivery_queue_max
        };
        let busy = waiting > limit && !self.unpaced;
        if busy != self.application_busy {
            debug!(
                "member {}: application {} ({waiting} events waiting)",
                self.endpoint.node().me(),
                if busy { "behind" } else { "caught up" }
            );
            self.application_busy = busy;
            self.endpoint.input(Input::ApplicationBusy(busy));
            self.carry_out();
        }
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::Frame { conn, frame } => {
                if let (Some(probe), Frame::Protocol(msg)) = (&mut self.probe, &frame) {
                    if let Some(from) = self.endpoint.watch(conn).map(|w| w.rank) {
                        let node = self.endpoint.node();
                        probe.frame(node.me().rank, node.view(), from, msg);
                    }
                }
                self.endpoint.frame(conn, frame)
            }
            Signal::Closed { conn, reason } => {
                self.drop_sockets(conn);
                self.endpoint.closed(conn, &reason)
            }
            Signal::Suspect(life) => self.endpoint.input(Input::Suspect(life)),
            Signal::HeardAgain(life) => self.endpoint.input(Input::HeardAgain(life)),
            Signal::Multicast(payload) => {
                if let Some(probe) = &mut self.probe {
                    probe.taken(self.endpoint.node().me().rank);
                }
                self.endpoint.input(Input::Multicast(payload))
            }
            Signal::Leave { unpaced } => {
                self.unpaced |= unpaced;
                self.endpoint.input(Input::Leave)
            }
            Signal::Status(reply) => {
                let _ = reply.send(self.endpoint.node().status());
            }
            Signal::Dialled { life, stream } => {
                if let Ok(reading) = stream.try_clone() {
                    if let Ok(conn) = self.add_conn(life.rank, reading, stream) {
                        self.endpoint
                            .opened(conn, Origin::Redialled { life }, life.rank, life.process);
                    }
                }
            }
            Signal::DialFailed { life, reason } => self.endpoint.dial_failed(life, &reason),
            Signal::Addresses(entries) => self.endpoint.learn_addresses(entries),
            Signal::Shutdown => self.endpoint.stop(),
        }
    }

    fn on_incoming(&mut self, accepted: Incoming) {
        let Incoming { hello, stream } = accepted;
        match hello.purpose {
            Purpose::Rejoin => {
                let Ok(reading) = stream.try_clone() else { return };
                if let Ok(conn) = self.add_conn(hello.rank, reading, stream) {
                    self.endpoint.opened(conn, Origin::Accepted, hello.rank, hello.process);
                }
            }
            Purpose::Status => {
                // Answered from a short-lived thread: the protocol thread never waits on a socket.
                let report = Frame::StatusReport {
                    report: self.endpoint.node().status().to_string(),
                };
                let _ = std::thread::Builder::new().name("tom-status".into()).spawn(move || {
                    let _ = crate::net::write_frame(&stream, &report, Duration::from_secs(5));
                    let _ = stream.shutdown(Shutdown::Both);
                });
            }
            Purpose::Form => {
                warn!(
                    "member {}: formation connection from rank {} after formation refused",
                    self.endpoint.node().me(),
                    hello.rank
                );
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Carries out the endpoint's actions, in order.
    pub fn carry_out(&mut self) {
        // Own deliveries free the gate once per call, not once per message.
        let mut own_delivered = 0;
        for action in self.endpoint.take_actions() {
            match action {
                Action::Write { conn, frame } => self.write(&[conn], &frame),
                Action::Broadcast { conns, frame } => self.write(&conns, &frame),
                Action::Close { conn } => self.close(conn),
                Action::Dial { life, host, port } => {
                    let from = self.endpoint.node().me();
                    let _ = self.dials.send(DialRequest { from, life, host, port });
                }
                Action::RegisterAdmitted { life, host, port } => self.register_admitted(life, host, port),
                Action::OwnDelivered => {
                    own_delivered += 1;
                    if let Some(probe) = &mut self.probe {
                        probe.delivered(self.endpoint.node().me().rank);
                    }
                }
                Action::Event(event) => self.report(event),
                Action::HandOff { view, position, to } => self.hand_off(view, position, &to),
                Action::Restore(snapshot) => {
                    if let Some(state) = &self.state {
                        state.restore(&snapshot.bytes);
                    }
                    self.progress.restored();
                }
                Action::Trace(mut event) => {
                    if let Some(sink) = &self.trace {
                        event.time_us = trace::wall_clock_us();
                        sink.record(&event);
                    }
                }
            }
        }
        if own_delivered > 0 {
            self.gate.release(own_delivered);
        }
        if self.endpoint.take_roles_changed() {
            self.refresh_watched();
        }
    }

    /// Encodes `frame` once and appends it to each connection's buffer; it goes out at the next
    /// [`Engine::send_appended`].
    fn write(&mut self, conns: &[ConnId], frame: &Frame) {
        if let (Some(probe), Frame::Protocol(msg)) = (&mut self.probe, frame) {
            for conn in conns {
                if let Some(to) = self.endpoint.watch(*conn).map(|w| w.rank) {
                    let node = self.endpoint.node();
                    probe.sent(node.me().rank, node.view(), to, msg);
                }
            }
        }
        self.encoded.clear();
        wire::encode(frame, &mut self.encoded);
        for conn in conns {
            if let Some(outgoing) = self.outgoing.get(conn) {
                outgoing.append(&self.encoded, frame);
                if !self.appended_to.contains(conn) {
                    self.appended_to.push(*conn);
                }
            }
        }
        // Keep the buffer for the next frame, but not a big one's worth of memory.
        if self.encoded.capacity() > 1 << 20 {
            self.encoded = Vec::new();
        }
    }

    /// Sends what this drain appended: each connection's bytes go out now if its socket takes them,
    /// else through its writer thread.
    fn send_appended(&mut self) {
        for conn in std::mem::take(&mut self.appended_to) {
            if let Some(outgoing) = self.outgoing.get(&conn) {
                outgoing.send_now();
            }
        }
    }

    /// Applies a delivery to the state, queues the event for the application, then records what the
    /// handle waits for (so a wait that ends finds the event queued and the state updated).
    fn report(&mut self, event: Event) {
        let me = self.endpoint.node().me();
        let mut own = false;
        let mut joined = None;
        let mut end = None;
        match &event {
            Event::Deliver(delivery) => {
                if let Some(state) = &self.state {
                    state.apply(delivery);
                }
                own = delivery.origin == me;
            }
            Event::Excluded { view } => {
                self.gate.close(Closed::Excluded(*view));
                end = Some(End::Excluded(*view));
            }
            Event::Left => {
                self.gate.close(Closed::ShutDown);
                end = Some(End::Left);
            }
            Event::Joined { position } => joined = Some(*position),
            // Reported by the protocol thread's wrapper after a panic, never by the endpoint.
            Event::View(_) | Event::Failed { .. } => {}
        }
        let _ = self.events.send(event);
        if own {
            self.progress.own_delivered();
        }
        if let Some(position) = joined {
            self.progress.set_me(me);
            self.progress.joined(position);
        }
        if let Some(end) = end {
            self.progress.ended(end);
        }
    }

    /// Sends the application's state, as it is now (at `position`), to the listed lives, in chunks.
    fn hand_off(&mut self, view: ViewId, position: u64, to: &[(MemberId, ConnId)]) {
        let me = self.endpoint.node().me();
        let snapshot = self.state.as_ref().map(AnyState::snapshot).unwrap_or_default();
        let chunks = snapshot_chunks(view, position, &snapshot);
        for (life, conn) in to {
            info!(
                "member {me}: handing the state at position {position} ({} bytes, {} chunks) to {life}",
                snapshot.len(),
                chunks.len()
            );
            for chunk in &chunks {
                self.write(&[*conn], chunk);
            }
        }
    }

    /// A restarted process was admitted: it tells the helper, on a short-lived thread (the protocol
    /// thread never waits on a socket); the helper's roster comes back as addresses for the endpoint.
    fn register_admitted(&self, life: MemberId, host: String, port: u16) {
        if self.formation.helper.is_empty() {
            return;
        }
        let formation = self.formation.clone();
        let signals = self.signals.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tom-{}-admitted", life.rank))
            .spawn(move || {
                let register = rejoin::admitted_register(&formation, &host, port, life);
                match rejoin::register_admitted(&formation, register, life) {
                    Ok(roster) => {
                        info!(
                            "member {life}: the helper at {} records this life at {host}:{port}",
                            formation.helper
                        );
                        let _ = signals.send(Signal::Addresses(roster.members));
                    }
                    Err(error) => warn!(
                        "member {life}: could not tell the helper at {} that this life was admitted: {error}",
                        formation.helper
                    ),
                }
            });
        if let Err(error) = spawned {
            warn!("member {life}: no thread to tell the helper of this life: {error}");
        }
    }

    /// Registers a connection: a reader on `reading`, and an outgoing buffer on `writing` (two ends of
    /// one socket). The self-connection (this member's rank: the two sockets of one loopback
    /// connection) is only kept open: it carries nothing (the core hands its own messages to itself),
    /// so it has no threads and no heartbeats.
    pub fn add_conn(&mut self, rank: Rank, reading: TcpStream, writing: TcpStream) -> Result<ConnId> {
        let conn = self.next_conn;
        self.next_conn += 1;
        let me = self.endpoint.node().me().rank;
        if rank == me {
            self.shared.streams.lock().insert(conn, [reading, writing]);
            return Ok(conn);
        }
        let copies = [reading.try_clone()?, writing.try_clone()?];
        self.shared.streams.lock().insert(conn, copies);
        let heard = Arc::new(LastHeard::default());
        heard.stamp(self.shared.clock.now_ms());
        let signals = self.signals.clone();
        let hops = self.probe.as_ref().map(|probe| probe.hops.clone());
        let write_probe = hops.clone().map(|hops| WriteProbe { hops, me, peer: rank });
        let outgoing = Outgoing::start_probed(
            writing,
            self.shared.clock,
            format!("tom-{me}-w{rank}"),
            Arc::clone(&self.shared.writers),
            write_probe,
            move |error| {
                let _ = signals.send(Signal::Closed {
                    conn,
                    reason: format!("write failed: {error}"),
                });
            },
        );
        let reader = spawn_reader_probed(
            reading,
            conn,
            Arc::clone(&heard),
            self.shared.clock,
            self.signals.clone(),
            format!("tom-{me}-r{rank}"),
            hops.map(|hops| ReadProbe { hops, me }),
        )?;
        {
            let mut threads = self.shared.threads.lock();
            // Threads of closed connections have ended: forget them (the protocol thread, first, runs).
            threads.retain(|thread| !thread.is_finished());
            threads.push(reader);
        }
        self.shared.watched.lock().push(Watched {
            conn,
            rank,
            is_member: false,
            life: None,
            outgoing: Arc::clone(&outgoing),
            heard,
        });
        self.outgoing.insert(conn, outgoing);
        Ok(conn)
    }

    /// Closes a connection once its writer has sent what is queued (it then shuts the socket down,
    /// which ends the reader).
    fn close(&mut self, conn: ConnId) {
        if let Some(outgoing) = self.outgoing.remove(&conn) {
            outgoing.close();
        }
        self.shared.watched.lock().retain(|w| w.conn != conn);
        self.shared.streams.lock().remove(&conn);
    }

    /// A connection failed: shut it down at once (the reader or the writer failed, and the other one
    /// may be stuck).
    fn drop_sockets(&mut self, conn: ConnId) {
        if let Some(streams) = self.shared.streams.lock().remove(&conn) {
            for stream in &streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        if let Some(outgoing) = self.outgoing.remove(&conn) {
            outgoing.close();
        }
        self.shared.watched.lock().retain(|w| w.conn != conn);
    }

    /// Tells the heartbeat thread, for every connection, whether it is a member connection and which
    /// life of the installed view it speaks for.
    fn refresh_watched(&self) {
        let mut watched = self.shared.watched.lock();
        for w in watched.iter_mut() {
            let Some(watch) = self.endpoint.watch(w.conn) else {
                continue;
            };
            w.is_member = watch.is_member;
            w.life = watch.life;
        }
    }

    fn flush_trace(&self) {
        if let Some(sink) = &self.trace {
            sink.flush();
        }
    }
}

/// The snapshot frames of `snapshot` for `view` at `position`: chunks of at most
/// [`wire::SNAPSHOT_CHUNK_LEN_MAX`] bytes (one empty chunk for an empty state).
fn snapshot_chunks(view: ViewId, position: u64, snapshot: &[u8]) -> Vec<Frame> {
    let total = snapshot.len() as u64;
    let mut chunks: Vec<Frame> = snapshot
        .chunks(wire::SNAPSHOT_CHUNK_LEN_MAX)
        .scan(0u64, |offset, chunk| {
            let frame = Frame::Snapshot(wire::SnapshotChunk {
                view,
                position,
                offset: *offset,
                total,
                bytes: chunk.to_vec(),
            });
            *offset += chunk.len() as u64;
            Some(frame)
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(Frame::Snapshot(wire::SnapshotChunk {
            view,
            position,
            offset: 0,
            total: 0,
            bytes: Vec::new(),
        }));
    }
    chunks
}
