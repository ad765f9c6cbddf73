//! The heartbeat thread: the failure detector's clock.
//!
//! Every `heartbeat_interval_ms` it sends a heartbeat frame on every connection to another process
//! (the self-connection carries nothing, see `formation.rs`) and asks the pure
//! [`Detector`] which member connections have been silent for longer than the failure timeout, and
//! which of those it suspected are heard again since ([`Signal::HeardAgain`]: the core withdraws its
//! suspicion; see PROTOCOL.md §6). It also
//! suspects a peer whose writer has been unable to make progress that long: a peer that stopped reading
//! must not stall the group. Each member connection is watched together with the life it speaks for
//! (the one the installed view lists with that connection's process), and a suspicion names that life
//! ([`Signal::Suspect`]), so a late report never counts against a newer life of the same rank. A member
//! connection that speaks for no life of the view yet (a restarted process's dials before it is
//! admitted) only gets heartbeats. A connection of a process asking to rejoin that stops reading for
//! as long as the failure timeout is closed ([`Signal::Closed`]).
//!
//! The reader threads stamp "heard from"; this thread only reads the stamps, so its view of silence does
//! not depend on how busy the protocol thread is.
//!
//! It also carries out the recovery handshake: the dials the endpoint asks for (whom and when is the
//! endpoint's decision). A dial runs between two heartbeats and is given at most half an interval to
//! connect and be welcomed, and heartbeats are kept on their own schedule, so a slow or dead address
//! never delays a heartbeat past one interval (which could get this member suspected). The connection
//! goes to the protocol thread as [`Signal::Dialled`]; a dial that fails is [`Signal::DialFailed`], and
//! the endpoint dials again later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use log::info;

use super::{rejoin, ConnId, DialRequest, Shared, Signal, Watched};
use crate::detector::Detector;
use crate::formation;
use crate::types::{MemberId, Rank};
use crate::wire::Frame;

/// The heartbeat thread's settings.
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatSettings {
    /// This member (never suspected by itself).
    pub me: Rank,
    /// How often heartbeats go out.
    pub heartbeat_interval_ms: u64,
    /// Silence (or a stuck writer) longer than this is a suspicion.
    pub failure_timeout_ms: u64,
}

/// What the heartbeat thread needs to dial.
#[derive(Debug)]
pub(crate) struct Dialler {
    /// The group, its secret and timeouts.
    pub formation: formation::FormationConfig,
    /// The dials the endpoint asks for.
    pub requests: Receiver<DialRequest>,
    /// This member's address, told to the member dialled.
    pub own_address: (String, u16),
}

impl Dialler {
    /// Makes one dial, within `deadline`, and tells the protocol thread how it went.
    fn dial(&self, request: DialRequest, deadline: Instant, signals: &Sender<Signal>) -> bool {
        let DialRequest { from, life, host, port } = request;
        let own = (self.own_address.0.as_str(), self.own_address.1);
        let signal = match rejoin::redial(&self.formation, &host, port, from, own, deadline) {
            Ok(stream) => Signal::Dialled { life, stream },
            Err(error) => Signal::DialFailed {
                life,
                reason: format!("{host}:{port}: {error}"),
            },
        };
        signals.send(signal).is_ok()
    }
}

/// Starts the heartbeat thread; it ends when `stop` receives or is dropped.
pub(crate) fn spawn(
    settings: HeartbeatSettings,
    dialler: Dialler,
    shared: Arc<Shared>,
    signals: Sender<Signal>,
    stop: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("tom-{}-heartbeat", settings.me))
        .spawn(move || {
            let mut watcher = Watcher {
                settings,
                detector: Detector::new(settings.failure_timeout_ms),
                watched_conn: BTreeMap::new(),
                shared,
                signals,
            };
            let interval = Duration::from_millis(settings.heartbeat_interval_ms);
            let mut next_beat = Instant::now() + interval;
            loop {
                let wait = next_beat.saturating_duration_since(Instant::now());
                // A dial only while no heartbeat is due, and for half an interval at most: a heartbeat
                // is never late by more than that.
                if !wait.is_zero() {
                    select! {
                        recv(stop) -> _ => return,
                        recv(dialler.requests) -> request => {
                            let Ok(request) = request else { return };
                            if !dialler.dial(request, Instant::now() + interval / 2, &watcher.signals) {
                                return;
                            }
                            continue;
                        }
                        default(wait) => {}
                    }
                }
                next_beat = (next_beat + interval).max(Instant::now());
                if !watcher.beat() {
                    return;
                }
            }
        })
}

/// The failure detector's side of the heartbeat thread.
struct Watcher {
    settings: HeartbeatSettings,
    detector: Detector,
    /// The connection and life each rank was watched on: a new one is watched afresh.
    watched_conn: BTreeMap<Rank, (ConnId, MemberId)>,
    shared: Arc<Shared>,
    signals: Sender<Signal>,
}

impl Watcher {
    /// Sends a heartbeat on every connection and reports what fell silent or got stuck; false once the
    /// protocol thread is gone.
    fn beat(&mut self) -> bool {
        let settings = self.settings;
        let watched: Vec<Watched> = self.shared.watched.lock().clone();
        let now_ms = self.shared.clock.now_ms();
        let mut heard = Vec::new();
        let mut lives: BTreeMap<Rank, MemberId> = BTreeMap::new();
        let mut signals = Vec::new();
        for link in &watched {
            link.outgoing.push(&Frame::Heartbeat);
            let stuck = link.outgoing.stalled_for_ms() > settings.failure_timeout_ms;
            if !link.is_member {
                // A rejoining process that stops reading is dropped, not waited for: its connection
                // must not grow a buffer for as long as it stays stuck.
                if stuck {
                    signals.push(Signal::Closed {
                        conn: link.conn,
                        reason: "it stopped reading".into(),
                    });
                }
                continue;
            }
            let Some(life) = link.life.filter(|_| link.rank != settings.me) else {
                continue;
            };
            if self.watched_conn.insert(link.rank, (link.conn, life)) != Some((link.conn, life)) {
                self.detector.forget(link.rank);
            }
            lives.insert(link.rank, life);
            heard.push((link.rank, link.heard.get_ms()));
            if stuck && self.detector.report(link.rank) {
                info!(
                    "member {}: {life} stopped reading (writer stuck): suspecting it",
                    settings.me
                );
                signals.push(Signal::Suspect(life));
            }
        }
        self.watched_conn.retain(|rank, _| lives.contains_key(rank));
        for rank in self.detector.heard_again(heard.iter().copied()) {
            let Some(&life) = lives.get(&rank) else { continue };
            info!("member {}: {life} is heard again", settings.me);
            signals.push(Signal::HeardAgain(life));
        }
        for rank in self.detector.newly_silent(now_ms, heard) {
            let Some(&life) = lives.get(&rank) else { continue };
            info!(
                "member {}: {life} silent for over {} ms: suspecting it",
                settings.me, settings.failure_timeout_ms
            );
            signals.push(Signal::Suspect(life));
        }
        signals.into_iter().all(|signal| self.signals.send(signal).is_ok())
    }
}
