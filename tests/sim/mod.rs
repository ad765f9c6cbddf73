//! A deterministic whole-group simulator: every life runs the pure [`Endpoint`] (the protocol core and
//! its connection rules, exactly as the threaded runtime runs them), over simulated connections.
//!
//! [`Sim`] owns every life of every rank (an [`Endpoint`] plus its recorded [`LifeHistory`] and its
//! replicated application state), the [`Net`] of connections between them, a model of the helper's
//! roster, and one [`Rng`]. Everything that happens is an [`Action`]; applying one logs a readable line
//! (and its effects) to the story, so a failing seed reads as what happened, step by step.
//!
//! Two ways to drive it:
//! - scripted, from `tests/scenarios.rs`, `tests/safety_scenarios.rs` and
//!   `tests/connection_scenarios.rs`: `sim.multicast(1)`, `sim.deliver_next(1, 2)`, `sim.crash(3)`,
//!   `sim.suspect_everywhere(3)`, `sim.restart(3)`, `sim.connect(3, 1)`, `sim.run_until_quiet()` … —
//!   nothing happens unless asked;
//! - randomly, from `tests/simulation.rs` through [`sweep`]: a seed fixes the group size, delays,
//!   workload, faults and the world's knobs; the detector is automatic (see [`Sim::auto_detect`]).
//!
//! # The world (what the simulator gives the endpoints, as the runtime's sockets would)
//! - **Connections.** Founders form a full mesh (one connection per pair, [`Origin::Mesh`]; the core
//!   never sends to itself, so no self-connection). Every frame an endpoint writes goes on the
//!   connection it names ([`Net`]: FIFO per direction, closes with an end of file, breaks under a
//!   cut). Which connection speaks for which life is the endpoint's business alone.
//! - **Addresses.** Every life listens on a port of host `sim`. A restarted process binds a fresh port,
//!   its rank's previous port, or the lowest free one (one host shared by all), as the run's
//!   [`PortMode`] says, so a stale address may be dead, reach a newer process of the same rank, or
//!   reach another rank's process.
//! - **The helper.** A roster of the founders, updated by [`tom::endpoint::Action::RegisterAdmitted`]
//!   (a later life replaces an earlier one of its rank) and answered with the whole roster; it may go
//!   down, and a restarted process may look the group up through a live member instead (`--peer`: that
//!   member's greeting lists its directory).
//! - **Coming back.** A restarted process ([`tom::protocol::Node::rejoin`]) gets the helper's (or the
//!   peer's) roster and dials every other rank's listed address: it writes its registration (its
//!   announced address), the acceptor's endpoint takes the connection ([`Origin::Accepted`]) and
//!   greets first, the dialler reads the greeting before it hands the connection to its endpoint
//!   ([`Origin::Dialled`], the answering life; an answer from another rank is refused) and learns the
//!   greeting's directory. A rank whose listed address was dead is dialled again at the newest address
//!   some greeting listed for it. An endpoint's own [`tom::endpoint::Action::Dial`] is carried out the
//!   same way but handed over unread ([`Origin::Redialled`]).
//! - **Ends.** A crash keeps a random prefix of what each connection had in flight, then the other end
//!   reads an end of file; a clean exit delivers everything first; a power cut ([`Action::PowerCut`])
//!   goes silent. A frame over the run's frame limit makes its receiver close the connection.
//! - **The detector.** Heartbeat timeouts are scheduled [`Action::Suspect`]s (after a crash, an exit,
//!   at a view listing a gone life) and [`Action::Silence`]s across a holding cut; a closed connection
//!   is suspected by the endpoint itself.
//! - **State transfer** (when on): the application state is the digest of every delivery so far; a
//!   sponsor's [`tom::endpoint::Action::HandOff`] writes it as snapshot chunks, and every
//!   [`tom::endpoint::Action::Restore`] must be exactly the group's state at its position.
//!
//! # The driver contract
//! - after every call of an endpoint, its actions are carried out in order and the core's
//!   `check_invariants` runs;
//! - every life runs in a process of its own, with a [`ProcessId`] of its own, named by its
//!   registrations and its endpoint's greetings. The detector reports the life it watched, even when a
//!   newer life of the rank exists by then, and a rank may restart at any moment after its process
//!   died, or while it still runs (two processes for one rank, or a rejoin of a live rank).
//!
//! All randomness comes from the one seeded [`Rng`], so a seed is a complete replay.
//!
//! Traces: with `SIM_TRACE=DIR` and `SIM_SEED=n`, the run of seed `n` writes one trace per life to
//! `DIR/lifeNN-rankR.trace`, in the format of `tom::trace` (the runtime's), with simulation steps for
//! time; `tom-diagram DIR/*.trace` draws it. Stale traces in DIR are removed when the run starts.

#![allow(dead_code)] // each test crate uses a different part of the simulator

pub mod check;
pub mod net;
pub mod rng;
pub mod sweep;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

use tom::endpoint::{self, directory, ConnId, Endpoint, EndpointSettings, Origin};
use tom::event::Event;
use tom::protocol::{CoreConfig, Input, Node, Phase};
use tom::state_transfer::Snapshot;
use tom::trace::{EventKind, TraceEvent, TraceSink};
use tom::types::{Incarnation, MemberId, ProcessId, Rank, View, ViewId};
use tom::wire::{self, Frame, RosterEntry};

use check::{Delivered, End, Expect, LifeHistory};
use net::{lives_of, ConnKey, CutMode, DelayProfile, Keep, LifeId, Net, Segment};
use rng::Rng;

/// The host every simulated life listens on.
pub const HOST: &str = "sim";

/// The first port: founder `r` listens on `FIRST_PORT + r - 1`.
pub const FIRST_PORT: u16 = 20_000;

/// The message of a caught panic (`panic!` payloads are a `String` or a `&str`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".to_string())
}

/// How a crash treats what the crashed life still had in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Each outgoing connection keeps a random prefix (a broken TCP connection).
    RandomPrefix,
    /// Everything in flight from it is lost.
    All,
    /// Everything already sent still arrives.
    Nothing,
}

/// Which port a restarted process binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortMode {
    /// A port no life had before.
    Fresh,
    /// Its rank's founder port when free (one member per host, a fixed `--port`), else a fresh one.
    SameAsRank,
    /// The lowest port no running process holds (every member on one host, one shared first port).
    LowestFree,
}

/// One thing that happens in a run. Lives are named by index; the story prints them as `rank` (first
/// life) or `rank~life` (later lives).
#[derive(Clone, Debug, Hash)]
pub enum Action {
    /// The application of `node` multicasts its next payload.
    Multicast { node: LifeId },
    /// The head segment of the next connection `from → to` arrives (see [`Net::pick`]).
    Deliver { from: LifeId, to: LifeId },
    /// The head segment `from` wrote on `conn` arrives at the other end (the explorer names the
    /// connection: of two between one pair, either may go first).
    DeliverOn { conn: ConnKey, from: LifeId },
    /// One connection breaks: nothing in flight on it arrives, and each end still reading gets an end
    /// of file (a reset). What arrived before is the prefix that got through.
    Break { conn: ConnKey },
    /// One tick at `node`.
    Tick { node: LifeId },
    /// `node`'s driver is idle: coalesced acknowledgements go out.
    Flush { node: LifeId },
    /// `node` dies; the other end of each of its connections reads an end of file after what survived.
    Crash { node: LifeId, loss: Loss },
    /// `node`'s machine loses power: everything in flight from it is lost and its connections go silent
    /// (only detectors notice).
    PowerCut { node: LifeId },
    /// An excluded or departed life's process exits (its connections close cleanly).
    Exit { node: LifeId },
    /// The detector at `at` reports the life `of` (whatever the view lists by then).
    Suspect { at: LifeId, of: LifeId },
    /// The detector at `at` has heard nothing from `of` for a failure timeout: it suspects `of` if a cut
    /// still separates them (heartbeats resumed otherwise).
    Silence { at: LifeId, of: LifeId },
    /// The detector at `at` hears `of` again after reporting it silent (the cut healed, heartbeats came
    /// through): the driver says so if both run and nothing separates them.
    HeardAgain { at: LifeId, of: LifeId },
    /// Links between the two sides hold or break.
    Partition {
        side_a: Vec<Rank>,
        side_b: Vec<Rank>,
        mode: CutMode,
    },
    /// Every cut heals.
    Heal,
    /// A new process for `rank` starts and asks to rejoin (whether or not another process of the rank
    /// still runs).
    Restart { rank: Rank },
    /// A joiner not admitted by now gives up (its join timeout): its process ends.
    GiveUp { node: LifeId },
    /// The joiner `joiner` dials the life `to` where it listens (a scripted dial, or an operator's
    /// `--peer` when the joiner's contacts are gone).
    Connect { joiner: LifeId, to: LifeId },
    /// The restarted process `joiner` dials the address its roster lists for `rank`.
    DialAddress { joiner: LifeId, rank: Rank, port: u16 },
    /// That dial, with a greeting that comes after the joiner's handshake deadline (a slow link or a
    /// busy acceptor): the acceptor took the connection and read the registration, the joiner closes
    /// it unread and counts the rank as unreached.
    DialLate { joiner: LifeId, rank: Rank, port: u16 },
    /// The restarted process `joiner` dials again, at the newest address a greeting listed, each rank
    /// whose listed address did not answer.
    DialStale { joiner: LifeId },
    /// The driver of `node` carries out its endpoint's dial of `life` at `port`.
    Redial { node: LifeId, life: MemberId, port: u16 },
    /// `node`'s application leaves the group.
    Leave { node: LifeId },
    /// `node`'s application falls behind on deliveries (`busy`) or catches up: flow control.
    Busy { node: LifeId, busy: bool },
    /// The helper goes away: no more lookups or registrations.
    HelperDown,
}

/// The replicated application state of one life: one digest per delivery, in order.
#[derive(Clone, Debug, Default, Hash)]
pub struct AppState {
    /// The state's bytes.
    pub bytes: Vec<u8>,
    /// The position in the total order it stands at.
    pub position: u64,
    /// A restarted life's snapshot was restored.
    pub restored: bool,
}

/// The digest one delivery adds to the application state.
pub fn digest(payload: &[u8]) -> [u8; 8] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in payload {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.to_le_bytes()
}

/// One life of one rank.
#[derive(Clone, Debug, Hash)]
pub struct Life {
    /// The rank.
    pub rank: Rank,
    /// The endpoint; `None` once the process crashed or exited.
    pub endpoint: Option<Endpoint>,
    /// Everything recorded about this life, for the checker.
    pub history: LifeHistory,
    /// The process this life runs in.
    pub process: ProcessId,
    /// Where it listens (host [`HOST`]).
    pub port: u16,
    /// The application's replicated state.
    pub app: AppState,
    /// Its application asked to leave.
    pub leave_requested: bool,
    /// A restarted process: the directories its contacts' greetings listed.
    greeted: Vec<RosterEntry>,
    /// A restarted process: the roster entries whose address did not answer.
    unreached: Vec<RosterEntry>,
    /// A restarted process still dialling the addresses it found: the connections that answered, with
    /// the life that answered, handed to its endpoint once every dial is done.
    bootstrap: Option<Vec<(ConnKey, MemberId)>>,
}

impl Life {
    /// True while the process runs (it may be inert: excluded or left but not yet exited).
    pub fn running(&self) -> bool {
        self.endpoint.is_some()
    }

    /// The core of a running life.
    pub fn node(&self) -> Option<&Node> {
        self.endpoint.as_ref().map(Endpoint::node)
    }

    /// The phase of a running life; an endpoint that stopped on its own (its state could not come) is
    /// `Excluded` whatever its core says.
    pub fn phase(&self) -> Option<Phase> {
        let endpoint = self.endpoint.as_ref()?;
        let phase = endpoint.node().phase();
        Some(if endpoint.is_finished() && phase != Phase::Left {
            Phase::Excluded
        } else {
            phase
        })
    }

    /// True for a member of a view (not joining, not inert).
    pub fn is_member(&self) -> bool {
        matches!(self.phase(), Some(Phase::Member | Phase::Changing))
    }
}

/// One step of the story: the action's line and what it caused.
#[derive(Clone, Debug, Hash)]
struct Entry {
    step: u64,
    line: String,
    effects: Vec<String>,
}

/// The world's knobs a run fixes before the group forms.
#[derive(Clone, Debug, Hash)]
pub struct Knobs {
    /// Every node's `carry_chunk_bytes`.
    pub carry_chunk_bytes: usize,
    /// A member of the view with no connection for this many steps is suspected (the endpoint's
    /// failure timeout, in steps).
    pub failure_timeout_steps: u64,
    /// An unconnected life is dialled again after this many steps.
    pub redial_interval_steps: u64,
    /// The application state is handed to returning members.
    pub state_transfer: bool,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Every node's `data_batch_bytes`: how many payload bytes one data frame's run may carry.
    pub data_batch_bytes: usize,
    /// Every node's `view_change_timeout_ticks`.
    pub view_change_timeout_ticks: u64,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            carry_chunk_bytes: tom::protocol::CARRY_CHUNK_BYTES,
            failure_timeout_steps: 2_000,
            redial_interval_steps: 100,
            state_transfer: false,
            snapshot_chunk_bytes: 64,
            data_batch_bytes: tom::protocol::DATA_BATCH_BYTES,
            view_change_timeout_ticks: CoreConfig::new(Rank(1)).view_change_timeout_ticks,
        }
    }
}

/// The simulated group. A clone is an independent copy of the whole world (the exhaustive explorer
/// branches on it); a clone does not write traces.
#[derive(Clone)]
pub struct Sim {
    /// The seed the run started from.
    pub seed: u64,
    /// The group size at formation.
    pub size: u16,
    pub rng: Rng,
    pub lives: Vec<Life>,
    pub net: Net,
    /// Logical time in steps (frame delays, scheduled events and the endpoints' clocks count in steps).
    pub now_step: u64,
    /// When set, the endpoints' clock instead: it advances by one at each round of ticks and not with
    /// deliveries, so everything in flight arrives within one tick, as over real links where a frame
    /// takes far less than a heartbeat interval ([`Sim::clock_by_rounds`]).
    pub round_clock: Option<u64>,
    /// Events scheduled for a later step (detector reports, exits, dials, heals).
    pub scheduled: Vec<(u64, Action)>,
    /// Lives whose application is behind on deliveries (flow control holds them back).
    pub busy: BTreeSet<LifeId>,
    /// When true, crashes and exits schedule suspicions at every running life, exclusions schedule the
    /// process's exit, and restarts schedule the new process's dials: the automatic detector and
    /// operator of random runs. Scripted scenarios leave it off and report everything themselves.
    pub auto_detect: bool,
    /// Longest detector delay, in steps, when `auto_detect` is on.
    pub detect_delay_max_steps: u64,
    /// Longest time a dial takes, in steps (0: at once, within the step that asks for it).
    pub dial_delay_max_steps: u64,
    /// Percent of node inputs followed at once by a flush of that node.
    pub flush_after_percent: u64,
    /// Every view anyone installed, by id (for quorum guards).
    pub views: BTreeMap<u64, View>,
    /// The life that first proposed each value a view change accepted: the first to send an Accept of
    /// it (a later ballot that finds it accepted proposes it again, and is not its author). The sweep
    /// judges an exclusion by where the author of the excluding view stood.
    pub authors: HashMap<View, LifeId>,
    /// The view each excluded life was told excluded it (its own last view if it lost its quorum).
    pub exclusions: BTreeMap<LifeId, u64>,
    story: Vec<Entry>,
    /// Per-life trace files, when `SIM_TRACE` asks for them (decided at the first input).
    tracer: Tracer,
    /// Set when a fault plan may have cost the group its quorum: only safety is then checked.
    pub liveness_waived: bool,
    /// The detector reports of silence across a cut still standing, as `(at, of)`: the heal makes
    /// each detector hear the other side again.
    pub silenced: BTreeSet<(LifeId, LifeId)>,
    /// The frame limit the receivers enforce, in encoded bytes (`None`: unlimited).
    pub frame_limit_bytes: Option<usize>,
    /// Multicast payloads are padded by up to this many bytes (big payloads).
    pub payload_pad_max: usize,
    /// A rank may restart as soon as its process is gone, without waiting for the group to suspect
    /// the old life.
    pub restart_any_moment: bool,
    /// Which port a restarted process binds.
    pub port_mode: PortMode,
    /// Percent of restarts that look the group up through a live member rather than the helper.
    pub peer_lookup_percent: u64,
    /// The helper's roster: every rank's last registered life.
    pub helper: Vec<RosterEntry>,
    /// False once the helper is gone.
    pub helper_up: bool,
    knobs: Knobs,
    /// Actions to apply right after the current one (dials that take no time).
    pending: VecDeque<Action>,
    /// The identity the next restarted process takes (then cleared); `None`: a random one.
    pub next_process: Option<ProcessId>,
    /// The member the next restarted process asks for the roster when it looks the group up through a
    /// peer (then cleared); `None`: a random one. The explorer makes it a choice.
    pub next_peer: Option<LifeId>,
    /// When true, a restarted process dials as a real one does (each listed address in turn, then the
    /// dead ones again, handing its connections over only then), but each dial waits in
    /// [`Sim::dials_due`] until a driver applies it: the explorer makes every dial a choice.
    pub dials_on_demand: bool,
    /// The dials each restarted process still has to make, in order (with `dials_on_demand`).
    pub dials_due: BTreeMap<LifeId, VecDeque<Action>>,
    /// When true, nothing is written to the story (the explorer's search, which replays a path with
    /// the story on when it reports one).
    pub story_off: bool,
    trace_endpoints: bool,
}

impl Sim {
    /// A formed group of `size` founders, with a given delay profile.
    pub fn with_delays(size: u16, seed: u64, delay: DelayProfile) -> Sim {
        Sim::with_chunks(size, seed, delay, tom::protocol::CARRY_CHUNK_BYTES)
    }

    /// A formed group whose nodes carry view-change payloads in chunks of `carry_chunk_bytes`.
    pub fn with_chunks(size: u16, seed: u64, delay: DelayProfile, carry_chunk_bytes: usize) -> Sim {
        let knobs = Knobs {
            carry_chunk_bytes,
            ..Knobs::default()
        };
        Sim::with_knobs(size, seed, delay, knobs)
    }

    /// A formed group with the given knobs: every founder's endpoint, and the formation mesh.
    pub fn with_knobs(size: u16, seed: u64, delay: DelayProfile, knobs: Knobs) -> Sim {
        let trace_endpoints = std::env::var("SIM_TRACE").is_ok_and(|dir| !dir.is_empty());
        let mut sim = Sim {
            seed,
            size,
            rng: Rng::new(seed),
            lives: Vec::new(),
            net: Net::new(delay),
            now_step: 0,
            round_clock: None,
            scheduled: Vec::new(),
            busy: BTreeSet::new(),
            auto_detect: false,
            detect_delay_max_steps: 200,
            dial_delay_max_steps: 0,
            flush_after_percent: 0,
            views: BTreeMap::new(),
            authors: HashMap::new(),
            exclusions: BTreeMap::new(),
            story: Vec::new(),
            tracer: Tracer::Unchecked { pending: Vec::new() },
            liveness_waived: false,
            silenced: BTreeSet::new(),
            frame_limit_bytes: None,
            payload_pad_max: 0,
            restart_any_moment: false,
            port_mode: PortMode::Fresh,
            peer_lookup_percent: 0,
            helper: Vec::new(),
            helper_up: true,
            knobs,
            pending: VecDeque::new(),
            next_process: None,
            next_peer: None,
            dials_on_demand: false,
            dials_due: BTreeMap::new(),
            story_off: false,
            trace_endpoints,
        };
        let view = View::initial(size);
        let roster: Vec<RosterEntry> = view
            .members
            .iter()
            .map(|m| RosterEntry {
                rank: m.rank,
                host: HOST.to_string(),
                port: FIRST_PORT + m.rank.0 - 1,
                incarnation: m.incarnation,
                process: m.process,
            })
            .collect();
        sim.helper = roster.clone();
        for member in &view.members {
            let node = Node::new(sim.core_config(member.rank), view.clone());
            let id = sim.lives.len();
            sim.net.register(id, member.rank);
            let endpoint = Endpoint::new(node, sim.settings(None), roster.clone(), Some(view.clone()));
            sim.lives.push(Life {
                rank: member.rank,
                endpoint: Some(endpoint),
                history: LifeHistory::founder(member.rank.0),
                process: member.process,
                port: FIRST_PORT + member.rank.0 - 1,
                app: AppState::default(),
                leave_requested: false,
                greeted: Vec::new(),
                unreached: Vec::new(),
                bootstrap: None,
            });
            sim.after_call(id);
        }
        // The formation mesh: one connection per pair of founders, the lower rank's dial.
        for a in 0..sim.lives.len() {
            for b in a + 1..sim.lives.len() {
                let conn = sim.net.open(a, b);
                let (rank_a, process_a) = (sim.lives[a].rank, sim.lives[a].process);
                let (rank_b, process_b) = (sim.lives[b].rank, sim.lives[b].process);
                sim.call(a, |e| e.opened(conn, Origin::Mesh, rank_b, process_b));
                sim.call(b, |e| e.opened(conn, Origin::Mesh, rank_a, process_a));
            }
        }
        sim
    }

    /// The knobs of this run.
    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    /// The core settings of every node of this run.
    fn core_config(&self, rank: Rank) -> CoreConfig {
        let mut config = CoreConfig::new(rank);
        config.carry_chunk_bytes = self.knobs.carry_chunk_bytes;
        config.data_batch_bytes = self.knobs.data_batch_bytes;
        config.view_change_timeout_ticks = self.knobs.view_change_timeout_ticks;
        config
    }

    /// The endpoint settings of every life of this run; a restarted process announces its address.
    fn settings(&self, announce: Option<u16>) -> EndpointSettings {
        EndpointSettings {
            failure_timeout_ms: self.knobs.failure_timeout_steps,
            redial_interval_ms: self.knobs.redial_interval_steps,
            window: CoreConfig::new(Rank(1)).window,
            size: self.size,
            state_transfer: self.knobs.state_transfer,
            announce: announce.map(|port| (HOST.to_string(), port)),
            trace_clock: self.trace_endpoints.then_some("sim"),
        }
    }

    /// The life the process `process` runs, if any.
    pub fn life_of_process(&self, process: ProcessId) -> Option<LifeId> {
        self.lives.iter().position(|l| l.process == process)
    }

    /// The newest running member (not joiner) life of `rank`, else its newest life.
    pub fn member_life(&self, rank: u16) -> LifeId {
        self.lives
            .iter()
            .rposition(|l| l.rank.0 == rank && l.is_member())
            .unwrap_or_else(|| self.current(rank))
    }

    /// A scripted group: frames arrive only when a scenario delivers them.
    pub fn new(size: u16) -> Sim {
        Sim::with_delays(
            size,
            0,
            DelayProfile {
                max_steps: 0,
                slow_percent: 0,
            },
        )
    }

    // ---- names and lookups --------------------------------------------------------------------------

    /// How the story names a life.
    pub fn name(&self, life: LifeId) -> String {
        self.lives[life].history.to_string()
    }

    /// The newest life of `rank`.
    pub fn current(&self, rank: u16) -> LifeId {
        self.lives
            .iter()
            .rposition(|l| l.rank.0 == rank)
            .unwrap_or_else(|| panic!("no rank {rank} in this group"))
    }

    /// Lives whose process runs and that are members of a view (not joining, not inert).
    pub fn members(&self) -> Vec<LifeId> {
        (0..self.lives.len()).filter(|l| self.lives[*l].is_member()).collect()
    }

    /// Lives whose process runs.
    pub fn running(&self) -> Vec<LifeId> {
        (0..self.lives.len()).filter(|l| self.lives[*l].running()).collect()
    }

    /// Running lives still asking to be admitted.
    pub fn joiners(&self) -> Vec<LifeId> {
        (0..self.lives.len())
            .filter(|l| self.lives[*l].phase() == Some(Phase::Joining))
            .collect()
    }

    /// The running life listening on `port`, if any.
    pub fn listener(&self, port: u16) -> Option<LifeId> {
        self.lives.iter().position(|l| l.running() && l.port == port)
    }

    /// The histories of every life, marked with how each stands right now.
    pub fn histories(&self) -> Vec<LifeHistory> {
        self.lives
            .iter()
            .map(|life| {
                let mut history = life.history.clone();
                history.member_at_end = life.is_member();
                history
            })
            .collect()
    }

    // ---- the story ----------------------------------------------------------------------------------

    fn log(&mut self, line: String) {
        if self.story_off {
            return;
        }
        self.story.push(Entry {
            step: self.now_step,
            line,
            effects: Vec::new(),
        });
    }

    fn effect(&mut self, line: String) {
        if self.story_off {
            return;
        }
        if let Some(entry) = self.story.last_mut() {
            entry.effects.push(line);
        }
    }

    /// Adds a free-form line (a scenario's or a driver's remark).
    pub fn note(&mut self, line: impl Into<String>) {
        self.log(format!("# {}", line.into()));
    }

    /// The last `entries` steps of the story, one action per line, effects indented.
    pub fn story(&self, entries: usize) -> String {
        let mut text = String::new();
        let skip = self.story.len().saturating_sub(entries);
        if skip > 0 {
            let _ = writeln!(text, "… {skip} earlier steps not shown");
        }
        for entry in &self.story[skip..] {
            let _ = writeln!(text, "[{:>6}] {}", entry.step, entry.line);
            for effect in &entry.effects {
                let _ = writeln!(text, "           {effect}");
            }
        }
        text
    }

    /// Number of steps logged.
    pub fn story_len(&self) -> usize {
        self.story.len()
    }

    /// True if some line of the story (an action or an effect) contains `text`.
    pub fn story_mentions(&self, text: &str) -> bool {
        self.story
            .iter()
            .any(|e| e.line.contains(text) || e.effects.iter().any(|x| x.contains(text)))
    }

    /// Panics with `problem`, the seed and the story.
    pub fn fail(&self, problem: &str) -> ! {
        // A replay (`SIM_SEED`) shows the whole story; a sweep keeps the report short.
        let entries = if std::env::var("SIM_SEED").is_ok() {
            usize::MAX
        } else {
            200
        };
        panic!(
            "simulation failed (seed {}): {problem}\n--- story ---\n{}--- state ---\n{}",
            self.seed,
            self.story(entries),
            self.state_summary()
        );
    }

    /// One line per life: how it stands now (phase, view, position, what its queue head waits for,
    /// its open connections).
    pub fn state_summary(&self) -> String {
        let mut text = String::new();
        for (id, life) in self.lives.iter().enumerate() {
            let name = self.name(id);
            let Some(node) = life.node() else {
                let _ = writeln!(
                    text,
                    "{name}: gone ({:?}), delivered up to {}",
                    life.history.end,
                    life.history.last_position()
                );
                continue;
            };
            let status = node.status();
            let conns: Vec<String> = self
                .net
                .conns_of(id)
                .into_iter()
                .filter(|c| self.net.reads(*c, id) || self.net.writes(*c, id))
                .filter_map(|c| Some(format!("c{c}→{}", self.name(self.net.peer(c, id)?))))
                .collect();
            let _ = writeln!(
                text,
                "{name}: {} {:?} view {} [{}] delivered {} held {} head {:?} backlog {} suspects {:?} lamport {} \
                 port {} conns [{}]",
                status.me,
                life.phase().unwrap_or(status.phase),
                status.view.as_ref().map_or(0, |v| v.id.0),
                status.view.as_ref().map_or(String::new(), lives_of),
                status.delivered_count,
                status.held,
                status.head.map(|(stamp, waiting)| format!(
                    "{stamp} waiting for {}",
                    waiting.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(",")
                )),
                status.backlog,
                status.suspects.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                status.lamport,
                life.port,
                conns.join(" ")
            );
        }
        text
    }

    /// How the story names `action` if it were applied now.
    pub fn describe(&self, action: &Action) -> String {
        match action {
            Action::Multicast { node } => format!("multicast at {}", self.name(*node)),
            Action::Deliver { from, to } => match self.net.pick(*from, *to, self.now_step) {
                Some(conn) => {
                    let what = self
                        .net
                        .head(conn, *from)
                        .map_or("nothing".to_string(), Segment::describe);
                    format!("deliver {} → {} (c{conn}): {what}", self.name(*from), self.name(*to))
                }
                None => format!("deliver {} → {}: nothing", self.name(*from), self.name(*to)),
            },
            Action::DeliverOn { conn, from } => {
                let what = self
                    .net
                    .head(*conn, *from)
                    .map_or("nothing".to_string(), Segment::describe);
                let to = self
                    .net
                    .peer(*conn, *from)
                    .map_or("nobody".to_string(), |to| self.name(to));
                format!("deliver {} → {to} (c{conn}): {what}", self.name(*from))
            }
            Action::Break { conn } => {
                let ends = self
                    .net
                    .ends(*conn)
                    .map_or("?".to_string(), |[a, b]| format!("{} – {}", self.name(a), self.name(b)));
                format!("BREAK c{conn} ({ends}): what is in flight on it is lost")
            }
            Action::Tick { node } => format!("tick {}", self.name(*node)),
            Action::Flush { node } => format!("flush {}", self.name(*node)),
            Action::Crash { node, loss } => format!("CRASH {} ({loss:?} lost)", self.name(*node)),
            Action::PowerCut { node } => format!("POWER CUT at {} (its connections go silent)", self.name(*node)),
            Action::Exit { node } => format!("exit {} (its process ends)", self.name(*node)),
            Action::Suspect { at, of } => {
                format!("detector at {} suspects {}", self.name(*at), self.name(*of))
            }
            Action::Silence { at, of } => {
                format!(
                    "detector at {} hears nothing from {} for a while",
                    self.name(*at),
                    self.name(*of)
                )
            }
            Action::HeardAgain { at, of } => {
                format!("detector at {} hears {} again", self.name(*at), self.name(*of))
            }
            Action::Partition { side_a, side_b, mode } => format!("PARTITION {side_a:?} | {side_b:?} ({mode:?})"),
            Action::Heal => "HEAL every cut".to_string(),
            Action::Restart { rank } => format!("RESTART rank {rank} (new process, empty memory)"),
            Action::GiveUp { node } => format!("joiner {} gives up unless admitted", self.name(*node)),
            Action::Connect { joiner, to } => {
                format!("joiner {} dials {}", self.name(*joiner), self.name(*to))
            }
            Action::DialAddress { joiner, rank, port } => {
                format!(
                    "joiner {} dials rank {rank} at {HOST}:{port}, as its roster lists it",
                    self.name(*joiner)
                )
            }
            Action::DialLate { joiner, rank, port } => {
                format!(
                    "joiner {} dials rank {rank} at {HOST}:{port}; the greeting comes after its handshake deadline",
                    self.name(*joiner)
                )
            }
            Action::DialStale { joiner } => {
                format!(
                    "joiner {} dials the ranks its roster listed at dead addresses again",
                    self.name(*joiner)
                )
            }
            Action::Redial { node, life, port } => {
                format!(
                    "{} dials {life} at {HOST}:{port}, as its endpoint asked",
                    self.name(*node)
                )
            }
            Action::Leave { node } => format!("LEAVE {}", self.name(*node)),
            Action::Busy { node, busy } => {
                format!(
                    "application at {} {}",
                    self.name(*node),
                    if *busy { "falls behind" } else { "catches up" }
                )
            }
            Action::HelperDown => "the HELPER goes away".to_string(),
        }
    }

    // ---- applying actions ---------------------------------------------------------------------------

    /// Logs and performs one action, then the actions it made due at once.
    pub fn apply(&mut self, action: Action) {
        self.apply_one(action);
        while let Some(next) = self.pending.pop_front() {
            self.apply_one(next);
        }
    }

    fn apply_one(&mut self, action: Action) {
        self.trace_init();
        if !self.story_off {
            let line = self.describe(&action);
            self.log(line);
        }
        // A tick or flush that changed nothing is not worth a line of the story.
        let quiet_if_no_effect = matches!(action, Action::Tick { .. } | Action::Flush { .. });
        self.perform(action);
        if quiet_if_no_effect && self.story.last().is_some_and(|e| e.effects.is_empty()) {
            self.story.pop();
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Multicast { node } => self.do_multicast(node),
            Action::Deliver { from, to } => self.do_deliver(from, to),
            Action::DeliverOn { conn, from } => self.do_deliver_on(conn, from),
            Action::Break { conn } => {
                let now = self.now_step;
                let lost = self.net.break_conn(conn, 1, now, &mut self.rng);
                if lost > 0 {
                    self.effect(format!("{lost} frames lost"));
                }
            }
            Action::Tick { node } => {
                let now = self.endpoint_now();
                self.call(node, |e| e.tick(now));
            }
            Action::Flush { node } => self.do_flush(node),
            Action::Crash { node, loss } => {
                let keep = match loss {
                    Loss::RandomPrefix => Keep::RandomPrefix,
                    Loss::All => Keep::Nothing,
                    Loss::Nothing => Keep::All,
                };
                self.do_crash(node, keep, false);
            }
            Action::PowerCut { node } => self.do_crash(node, Keep::Nothing, true),
            Action::Exit { node } => self.do_exit(node),
            Action::Suspect { at, of } => self.do_suspect(at, of),
            Action::Silence { at, of } => {
                if self.net.cut_between(at, of).is_some() {
                    self.silenced.insert((at, of));
                    self.do_suspect(at, of);
                } else {
                    self.effect("the cut healed meanwhile: heartbeats came through, no suspicion".to_string());
                }
            }
            Action::Partition { side_a, side_b, mode } => self.do_partition(side_a, side_b, mode),
            Action::Heal => self.do_heal(),
            Action::HeardAgain { at, of } => self.do_heard_again(at, of),
            Action::Restart { rank } => self.do_restart(rank),
            Action::GiveUp { node } => {
                let rank = self.lives[node].rank;
                let rank_has_member = self.lives.iter().any(|l| l.rank == rank && l.is_member());
                match self.lives[node].phase() {
                    // Another life of the rank is a member: this process cannot be the one the group is
                    // admitting, and its end costs no quorum.
                    Some(Phase::Joining) if rank_has_member => self.do_crash(node, Keep::All, false),
                    // It may be about to be admitted: ending it now would be a crash of a member the
                    // fault plan did not weigh against the quorum. It gives up later, if still joining.
                    Some(Phase::Joining) => {
                        self.effect("no other life of its rank is a member: it waits longer".to_string());
                        let at = self.now_step + 500;
                        self.schedule(at, Action::GiveUp { node });
                    }
                    _ => self.effect("admitted meanwhile: it stays".to_string()),
                }
            }
            Action::Connect { joiner, to } => {
                let (rank, port) = (self.lives[to].rank, self.lives[to].port);
                if !self.lives[to].running() {
                    self.effect("unreachable: that process is gone".to_string());
                } else {
                    self.rejoin_dial(joiner, rank, port, false);
                }
            }
            Action::DialAddress { joiner, rank, port } | Action::DialLate { joiner, rank, port } => {
                if self.lives[joiner].phase() != Some(Phase::Joining) {
                    self.effect("no longer joining: its dials are over".to_string());
                    return;
                }
                let late = matches!(action, Action::DialLate { .. });
                if !self.rejoin_dial(joiner, rank, port, late) {
                    let stale = RosterEntry {
                        rank,
                        host: HOST.to_string(),
                        port,
                        incarnation: Incarnation(0),
                        process: ProcessId(0),
                    };
                    self.lives[joiner].unreached.push(stale);
                }
            }
            Action::DialStale { joiner } => self.do_dial_stale(joiner),
            Action::Redial { node, life, port } => self.do_redial(node, life, port),
            Action::Leave { node } => {
                self.lives[node].leave_requested = true;
                self.input(node, Input::Leave);
            }
            Action::Busy { node, busy } => {
                if busy {
                    self.busy.insert(node);
                } else {
                    self.busy.remove(&node);
                }
                self.input(node, Input::ApplicationBusy(busy));
            }
            Action::HelperDown => self.helper_up = false,
        }
    }

    fn do_multicast(&mut self, node: LifeId) {
        let life = &self.lives[node];
        let inert = matches!(life.phase(), None | Some(Phase::Excluded | Phase::Left));
        if inert || life.leave_requested {
            self.effect("refused: this life no longer multicasts".to_string());
            return;
        }
        let k = life.history.multicasts.len() as u64 + 1;
        let (rank, life_no) = (life.rank.0, life.history.life);
        let pad = if self.payload_pad_max > 0 {
            self.rng.range(0, self.payload_pad_max as u64) as usize
        } else {
            0
        };
        let payload = check::padded_payload_text(rank, life_no, k, pad);
        self.effect(format!("payload {:?}", check::short_payload(&payload)));
        self.lives[node].history.multicasts.push(payload.clone());
        self.input(node, Input::Multicast(payload.as_str().into()));
    }

    fn do_deliver(&mut self, from: LifeId, to: LifeId) {
        let Some(conn) = self.net.pick(from, to, self.now_step) else {
            self.fail(&format!(
                "nothing in flight from {} to {}",
                self.name(from),
                self.name(to)
            ));
        };
        self.do_deliver_on(conn, from);
    }

    fn do_deliver_on(&mut self, conn: ConnKey, from: LifeId) {
        let Some(arrival) = self.net.pop(conn, from) else {
            self.fail(&format!("nothing in flight on c{conn} from {}", self.name(from)));
        };
        let Some(to) = self.net.peer(conn, from) else {
            self.fail(&format!("c{conn} has no other end than {}", self.name(from)));
        };
        if !self.lives[to].running() {
            self.effect("dropped: the receiver is gone".to_string());
            return;
        }
        if arrival.unread {
            self.effect(format!("dropped: {} closed c{conn}", self.name(to)));
            return;
        }
        match arrival.segment {
            Segment::Eof(why) => {
                self.net.finish(conn, to);
                self.call(to, |e| e.closed(conn, &why));
            }
            Segment::Frame(frame) => {
                if let Some(len) = arrival.oversize {
                    let limit = self.frame_limit_bytes.unwrap_or(0);
                    self.effect(format!(
                        "a {} frame of {len} bytes exceeds the frame limit of {limit}: {} closes c{conn}",
                        frame.kind(),
                        self.name(to)
                    ));
                    let now = self.now_step;
                    self.net.close(conn, to, "frame refused", now, &mut self.rng);
                    self.call(to, |e| e.closed(conn, "frame over the limit"));
                    return;
                }
                self.call(to, |e| e.frame(conn, frame));
            }
        }
    }

    fn do_flush(&mut self, node: LifeId) {
        self.call(node, Endpoint::flush);
    }

    /// Feeds one input to a running life's endpoint and carries out what it asks.
    pub fn input(&mut self, node: LifeId, input: Input) {
        if !self.lives[node].running() {
            self.effect(format!("ignored: {} is gone", self.name(node)));
            return;
        }
        self.call(node, |e| e.input(input));
        if self.flush_after_percent > 0 && self.lives[node].running() && self.rng.percent(self.flush_after_percent) {
            let before = self.story.last().map_or(0, |e| e.effects.len());
            self.do_flush(node);
            if let Some(line) = self.story.last_mut().and_then(|e| e.effects.get_mut(before)) {
                *line = format!("then flushes: {line}");
            }
        }
    }

    /// Calls `node`'s endpoint, then carries out its actions.
    fn call(&mut self, node: LifeId, f: impl FnOnce(&mut Endpoint)) {
        let Some(endpoint) = self.lives[node].endpoint.as_mut() else {
            return;
        };
        // A member that stopped (excluded, left, or its state could not come) takes no more input: its
        // process is on its way out.
        if endpoint.is_finished() {
            return;
        }
        f(endpoint);
        self.after_call(node);
    }

    fn after_call(&mut self, node: LifeId) {
        let Some(endpoint) = self.lives[node].endpoint.as_mut() else {
            return;
        };
        let actions = endpoint.take_actions();
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| endpoint.check_invariants()));
        let me = endpoint.node().me();
        if let Err(panic) = checked {
            let text = panic_text(panic.as_ref());
            self.fail(&format!("check_invariants of {} failed: {text}", self.name(node)));
        }
        if me.incarnation.0 != 0 {
            self.lives[node].history.incarnation = Some(me.incarnation.0);
        }
        // The views in use, for the quorum guards, as the cores have them (an endpoint may hold its view
        // events back while a snapshot is awaited or handed over).
        if let Some(view) = self.lives[node].node().and_then(Node::view) {
            self.views.entry(view.id.0).or_insert_with(|| view.clone());
        }
        self.carry_out(node, actions);
    }

    /// Carries out an endpoint's actions, in order.
    /// Records `node` as the author of a proposed view if it is the first to send an Accept of it.
    fn note_author(&mut self, node: LifeId, frame: &Frame) {
        if let Frame::Protocol(tom::message::Message::Accept { proposal, .. }) = frame {
            if !self.authors.contains_key(&proposal.view) {
                self.authors.insert(proposal.view.clone(), node);
            }
        }
    }

    fn carry_out(&mut self, node: LifeId, actions: Vec<endpoint::Action>) {
        // Writes grouped by kind, kinds in the order the endpoint first wrote them.
        let mut sends: Vec<(&'static str, Vec<String>)> = Vec::new();
        let mut add = |kind: &'static str, dest: String| match sends.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, dests)) => dests.push(dest),
            None => sends.push((kind, vec![dest])),
        };
        let mut learn: Option<Vec<RosterEntry>> = None;
        for action in actions {
            match action {
                endpoint::Action::Write { conn, frame } => {
                    let kind = frame.kind();
                    self.note_author(node, &frame);
                    let dest = self.write(node, conn, frame);
                    add(kind, dest);
                }
                endpoint::Action::Broadcast { conns, frame } => {
                    let kind = frame.kind();
                    self.note_author(node, &frame);
                    for conn in conns {
                        let dest = self.write(node, conn, frame.clone());
                        add(kind, dest);
                    }
                }
                endpoint::Action::Close { conn } => {
                    let peer = self.net.peer(conn, node);
                    let now = self.now_step;
                    self.net.close(conn, node, "closed by its endpoint", now, &mut self.rng);
                    let to = peer.map_or("nobody".to_string(), |p| self.name(p));
                    self.effect(format!("{} closes c{conn} to {to}", self.name(node)));
                }
                endpoint::Action::Dial { life, host, port } => {
                    self.effect(format!("{} asks to dial {life} at {host}:{port}", self.name(node)));
                    let action = Action::Redial { node, life, port };
                    if self.dial_delay_max_steps == 0 {
                        self.pending.push_back(action);
                    } else {
                        let at = self.now_step + self.rng.range(1, self.dial_delay_max_steps);
                        self.schedule(at, action);
                    }
                }
                endpoint::Action::RegisterAdmitted { life, host, port } => {
                    if !self.helper_up {
                        self.effect(format!(
                            "{} cannot register as {life}: the helper is gone",
                            self.name(node)
                        ));
                        continue;
                    }
                    self.effect(format!(
                        "{} registers with the helper as {life} at {host}:{port}",
                        self.name(node)
                    ));
                    let entry = RosterEntry {
                        rank: life.rank,
                        host,
                        port,
                        incarnation: life.incarnation,
                        process: life.process,
                    };
                    match self.helper.iter_mut().find(|e| e.rank == life.rank) {
                        Some(known) if known.incarnation <= life.incarnation => *known = entry,
                        Some(_) => {}
                        None => {
                            self.helper.push(entry);
                            self.helper.sort_by_key(|e| e.rank);
                        }
                    }
                    learn = Some(self.helper.clone());
                }
                endpoint::Action::OwnDelivered => {}
                endpoint::Action::Event(event) => self.record_event(node, event),
                endpoint::Action::HandOff { view, position, to } => self.hand_off(node, view, position, to),
                endpoint::Action::Restore(snapshot) => self.restore(node, snapshot),
                endpoint::Action::Trace(event) => self.trace_event(node, event),
            }
        }
        if !sends.is_empty() {
            let parts: Vec<String> = sends
                .into_iter()
                .map(|(kind, dests)| format!("{kind} → {}", dests.join(", ")))
                .collect();
            self.effect(format!("{} sends {}", self.name(node), parts.join("; ")));
        }
        if let Some(roster) = learn {
            self.call(node, |e| e.learn_addresses(roster));
        }
    }

    /// Puts one frame of `node` on `conn`; returns how the story names its destination.
    fn write(&mut self, node: LifeId, conn: ConnId, frame: Frame) -> String {
        let Some(to) = self.net.peer(conn, node) else {
            self.fail(&format!("{} wrote on c{conn}, which it never had", self.name(node)));
        };
        let oversize = self.frame_limit_bytes.and_then(|limit| {
            let mut bytes = Vec::new();
            wire::encode(&frame, &mut bytes);
            let len = bytes.len() - wire::LENGTH_PREFIX_LEN;
            (len > limit).then_some(len)
        });
        let now = self.now_step;
        if self.net.send(conn, node, frame, oversize, now, &mut self.rng) {
            match oversize {
                Some(len) => format!("{} ({len} bytes, over the frame limit)", self.name(to)),
                None => self.name(to),
            }
        } else {
            format!("{} (c{conn} is closed: lost)", self.name(to))
        }
    }

    fn record_event(&mut self, node: LifeId, event: Event) {
        match event {
            Event::Deliver(d) => {
                let payload = String::from_utf8_lossy(d.payload.as_bytes()).into_owned();
                self.effect(format!(
                    "{} delivers #{} {:?} (from {}, lamport {})",
                    self.name(node),
                    d.position,
                    check::short_payload(&payload),
                    d.origin,
                    d.lamport
                ));
                if self.knobs.state_transfer {
                    let life = &self.lives[node];
                    if life.history.is_joiner() && !life.app.restored {
                        self.fail(&format!(
                            "{} delivered #{} to its application before its snapshot was restored",
                            self.name(node),
                            d.position
                        ));
                    }
                    if d.position != life.app.position + 1 {
                        self.fail(&format!(
                            "{} delivered #{} to an application state at position {}",
                            self.name(node),
                            d.position,
                            life.app.position
                        ));
                    }
                }
                let app = &mut self.lives[node].app;
                app.bytes.extend_from_slice(&digest(d.payload.as_bytes()));
                app.position = d.position;
                self.lives[node].history.deliveries.push(Delivered {
                    origin: d.origin,
                    lamport: d.lamport,
                    payload,
                    position: d.position,
                });
            }
            Event::View(view) => {
                self.effect(format!(
                    "{} installs view {} [{}]",
                    self.name(node),
                    view.id,
                    lives_of(&view)
                ));
                self.views.insert(view.id.0, view.clone());
                if self.auto_detect {
                    self.schedule_suspicions_in(node, &view);
                }
                self.lives[node].history.views.push(view);
            }
            Event::Joined { position } => {
                self.effect(format!("{} JOINED at position {position}", self.name(node)));
                self.lives[node].history.joined = Some(position);
                if !self.knobs.state_transfer {
                    self.lives[node].app.position = position;
                }
            }
            Event::Excluded { view } => {
                self.effect(format!("{} EXCLUDED (view {view}); it stops", self.name(node)));
                self.lives[node].history.end = End::Excluded;
                self.exclusions.insert(node, view.0);
                self.schedule_exit(node);
            }
            Event::Left => {
                self.effect(format!("{} LEFT", self.name(node)));
                self.lives[node].history.end = End::Left;
                self.schedule_exit(node);
            }
            // Only the threaded runtime reports it (its protocol thread panicked); the simulator runs
            // the endpoint itself, where a panic fails the run.
            Event::Failed { reason } => unreachable!("the pure endpoint never reports a failure ({reason})"),
        }
    }

    /// The group's application state at `position`, from every life's deliveries; `None` if no life
    /// delivered some position up to it.
    pub fn state_at(&self, position: u64) -> Option<Vec<u8>> {
        let mut at: BTreeMap<u64, &str> = BTreeMap::new();
        for life in &self.lives {
            for d in &life.history.deliveries {
                if d.position <= position {
                    at.entry(d.position).or_insert(d.payload.as_str());
                }
            }
        }
        if at.len() as u64 != position {
            return None;
        }
        Some(at.values().flat_map(|p| digest(p.as_bytes())).collect())
    }

    /// `node`, the sponsor of `view`'s new lives, hands them its state at `position` in snapshot chunks.
    fn hand_off(&mut self, node: LifeId, view: ViewId, position: u64, to: Vec<(MemberId, ConnId)>) {
        let app = self.lives[node].app.clone();
        if app.position != position || self.state_at(position).as_ref() != Some(&app.bytes) {
            self.fail(&format!(
                "{} hands off the state at position {position}, but its application stands at {} {}",
                self.name(node),
                app.position,
                if self.state_at(app.position).as_ref() == Some(&app.bytes) {
                    "(the group's state there)"
                } else {
                    "(not the group's state there)"
                }
            ));
        }
        let chunk_len = self.knobs.snapshot_chunk_bytes.max(1);
        let total = app.bytes.len() as u64;
        let mut chunks: Vec<(u64, Vec<u8>)> = app
            .bytes
            .chunks(chunk_len)
            .enumerate()
            .map(|(i, c)| ((i * chunk_len) as u64, c.to_vec()))
            .collect();
        if chunks.is_empty() {
            chunks.push((0, Vec::new()));
        }
        let names: Vec<String> = to.iter().map(|(life, _)| life.to_string()).collect();
        self.effect(format!(
            "{} hands the state at position {position} ({total} bytes, {} chunks) to {}",
            self.name(node),
            chunks.len(),
            if names.is_empty() {
                "nobody".to_string()
            } else {
                names.join(", ")
            }
        ));
        for (_, conn) in to {
            for (offset, chunk) in &chunks {
                let frame = Frame::Snapshot(wire::SnapshotChunk {
                    view,
                    position,
                    offset: *offset,
                    total,
                    bytes: chunk.clone(),
                });
                self.write(node, conn, frame);
            }
        }
    }

    /// `node` restores the snapshot `bytes` from `sponsor` at `position`: it must be the group's state
    /// there, at the position the life joined at.
    fn restore(&mut self, node: LifeId, snapshot: Snapshot) {
        let Snapshot {
            sponsor,
            position,
            bytes,
        } = snapshot;
        self.effect(format!(
            "{} restores the state at position {position} ({} bytes) from {sponsor}",
            self.name(node),
            bytes.len()
        ));
        if self.state_at(position).as_ref() != Some(&bytes) {
            self.fail(&format!(
                "{} restored a snapshot from {sponsor} that is not the group's state at position {position}",
                self.name(node)
            ));
        }
        if self.lives[node].history.joined != Some(position) {
            self.fail(&format!(
                "{} restored the state at position {position} but joined at {:?}",
                self.name(node),
                self.lives[node].history.joined
            ));
        }
        let app = &mut self.lives[node].app;
        app.bytes = bytes;
        app.position = position;
        app.restored = true;
    }

    fn do_crash(&mut self, node: LifeId, keep: Keep, silent: bool) {
        if !self.lives[node].running() {
            self.effect("already gone".to_string());
            return;
        }
        self.trace_own(node, EventKind::Crash);
        self.lives[node].endpoint = None;
        self.lives[node].history.end = End::Crashed;
        let now = self.now_step;
        let lost = self.net.process_ended(node, keep, silent, now, &mut self.rng);
        if lost > 0 {
            self.effect(format!("{lost} frames to or from it lost"));
        }
        if self.auto_detect {
            self.schedule_suspicions_of(node);
        }
    }

    fn do_exit(&mut self, node: LifeId) {
        if !self.lives[node].running() {
            return;
        }
        if let Some(endpoint) = self.lives[node].endpoint.as_mut() {
            endpoint.stop();
        }
        self.after_call(node);
        self.lives[node].endpoint = None;
        let now = self.now_step;
        let lost = self.net.process_ended(node, Keep::All, false, now, &mut self.rng);
        if lost > 0 {
            self.effect(format!("{lost} frames to it lost"));
        }
        if self.auto_detect {
            self.schedule_suspicions_of(node);
        }
    }

    fn do_partition(&mut self, side_a: Vec<Rank>, side_b: Vec<Rank>, mode: CutMode) {
        let now = self.now_step;
        let eof_delay = self.detect_delay_max_steps;
        let lost = self.net.cut(&side_a, &side_b, mode, eof_delay, now, &mut self.rng);
        if lost > 0 {
            self.effect(format!("{lost} frames in flight across the cut lost"));
        }
        if mode == CutMode::Hold && self.auto_detect {
            // Heartbeats stop across the cut: each detector times out, if the cut lasts that long.
            let side = |sim: &Sim, ranks: &[Rank]| -> Vec<LifeId> {
                sim.running()
                    .into_iter()
                    .filter(|l| ranks.contains(&sim.lives[*l].rank))
                    .collect()
            };
            let (a, b) = (side(self, &side_a), side(self, &side_b));
            for x in &a {
                for y in &b {
                    for (at, of) in [(*x, *y), (*y, *x)] {
                        let when = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
                        self.schedule(when, Action::Silence { at, of });
                    }
                }
            }
        }
    }

    /// Every cut heals; each detector that reported silence across a cut hears the other side again
    /// within a heartbeat or two, if a connection between them survived the cut: well within half a
    /// view-change timeout, as in the runtime (heartbeats every 100 ms, the timeout 1.5 s).
    fn do_heal(&mut self) {
        self.net.heal();
        for (at, of) in std::mem::take(&mut self.silenced) {
            let when = self.now_step + self.rng.range(1, self.knobs.view_change_timeout_ticks / 2 + 2);
            self.schedule(when, Action::HeardAgain { at, of });
        }
    }

    /// The detector at `at` hears `of` again: the core withdraws its suspicion, if `of` still runs,
    /// nothing separates them and a connection between them carries its heartbeats.
    fn do_heard_again(&mut self, at: LifeId, of: LifeId) {
        if !self.lives[of].running() || self.net.cut_between(at, of).is_some() || !self.net.connected(at, of) {
            self.effect("nothing comes through: no withdrawal".to_string());
            return;
        }
        let Some(life) = self.lives[at]
            .node()
            .and_then(|n| n.view())
            .and_then(|v| v.member(self.lives[of].rank))
        else {
            return;
        };
        if life.process != self.lives[of].process {
            self.effect(format!("{}'s view lists another life of that rank", self.name(at)));
            return;
        }
        self.input(at, Input::HeardAgain(life));
    }

    /// The detector at `at` reports the life `of` it watched: named as `at`'s view lists it when that
    /// is `of`'s process, else as `of` knows itself. The core ignores a life its view does not list, so
    /// a late report about an old life never counts against a newer life of the rank.
    fn do_suspect(&mut self, at: LifeId, of: LifeId) {
        let rank = self.lives[of].rank;
        let listed = self.lives[at]
            .node()
            .and_then(|n| n.view())
            .and_then(|v| v.member(rank));
        let life = match listed {
            Some(member) if member.process == self.lives[of].process => member,
            _ => MemberId {
                rank,
                incarnation: Incarnation(self.lives[of].history.incarnation.unwrap_or(1)),
                process: self.lives[of].process,
            },
        };
        if listed != Some(life) {
            self.effect(format!(
                "{}'s view lists another life of rank {rank}: the core should ignore this",
                self.name(at)
            ));
        }
        self.input(at, Input::Suspect(life));
    }

    /// The life of `rank` that `at`'s installed view names, if any: the one running the listed process.
    pub fn listed_life(&self, at: LifeId, rank: Rank) -> Option<LifeId> {
        let listed = self.lives[at].node()?.view()?.member(rank)?;
        self.life_of_process(listed.process)
    }

    /// True if a new process for `rank` may start now: its newest life's process is gone and, unless the
    /// run restarts at any moment, every running member no longer lists the rank or suspects the life
    /// it lists (the gentle schedule older runs used).
    pub fn restartable(&self, rank: Rank) -> bool {
        let newest = self.current(rank.0);
        if self.lives.iter().any(|l| l.rank == rank && l.running()) {
            return false; // a process of the rank still runs (the planned duplicates start on purpose)
        }
        if self.restart_any_moment {
            return true;
        }
        if self.suspicion_pending(newest) {
            return false;
        }
        self.members().into_iter().all(|member| {
            let Some(node) = self.lives[member].node() else {
                return true;
            };
            let Some(listed) = node.view().and_then(|v| v.member(rank)) else {
                return true;
            };
            node.status().suspects.contains(&listed)
        })
    }

    /// After `node` installed `view`: its detector will notice every listed life that is gone.
    fn schedule_suspicions_in(&mut self, node: LifeId, view: &View) {
        for member in &view.members {
            if member.rank == self.lives[node].rank {
                continue;
            }
            if let Some(listed) = self.listed_life(node, member.rank) {
                if !self.lives[listed].running() {
                    let when = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
                    self.schedule(when, Action::Suspect { at: node, of: listed });
                }
            }
        }
    }

    // ---- coming back --------------------------------------------------------------------------------

    /// The port a new process of `rank` binds.
    fn bind_port(&self, rank: Rank) -> u16 {
        let taken = |port: u16| self.lives.iter().any(|l| l.running() && l.port == port);
        let fresh = || FIRST_PORT + 1_000 + self.lives.len() as u16;
        match self.port_mode {
            PortMode::Fresh => fresh(),
            PortMode::SameAsRank => {
                let own = FIRST_PORT + rank.0 - 1;
                if taken(own) {
                    fresh()
                } else {
                    own
                }
            }
            PortMode::LowestFree => (FIRST_PORT..).find(|p| !taken(*p)).expect("a free port"),
        }
    }

    fn do_restart(&mut self, rank: Rank) {
        let old = self.current(rank.0);
        if self.lives[old].running() {
            self.effect(format!(
                "{} still runs: a second process asks for rank {rank}",
                self.name(old)
            ));
        }
        let life_no = self.lives[old].history.life + 1;
        let id = self.lives.len();
        let port = self.bind_port(rank);
        self.net.register(id, rank);
        // Identities are drawn at random, as the runtime's are: of two processes asking for one rank,
        // either may be the larger.
        let process = self
            .next_process
            .take()
            .unwrap_or_else(|| ProcessId(self.rng.next_u64() | 1 << 63));
        self.lives.push(Life {
            rank,
            endpoint: None,
            history: LifeHistory::joiner(rank.0, life_no),
            process,
            port,
            app: AppState::default(),
            leave_requested: false,
            greeted: Vec::new(),
            unreached: Vec::new(),
            bootstrap: None,
        });
        // It finds the group: through the helper, or through a live member (`--peer`).
        let through_peer = !self.helper_up || self.rng.percent(self.peer_lookup_percent);
        let peers: Vec<LifeId> = self
            .members()
            .into_iter()
            .filter(|l| self.lives[*l].rank != rank)
            .collect();
        let mut roster = if through_peer {
            let chosen = self.next_peer.take().filter(|p| peers.contains(p));
            match chosen.or_else(|| self.rng.pick(&peers)) {
                Some(peer) => self.ask_peer(id, peer),
                None if self.helper_up => Some(self.helper.clone()),
                None => None,
            }
        } else {
            Some(self.helper.clone())
        };
        if through_peer && roster.is_none() && self.helper_up {
            roster = Some(self.helper.clone());
        }
        let Some(mut roster) = roster else {
            self.effect(format!(
                "{} finds no group (no helper, no peer): it exits",
                self.name(id)
            ));
            self.lives[id].history.end = End::Crashed;
            return;
        };
        if !through_peer {
            self.effect(format!(
                "{} binds {HOST}:{port}; the helper lists [{}]",
                self.name(id),
                net::entries(&roster)
            ));
        }
        // Whom it dials first: every other rank's listed address but its own.
        let dials: Vec<(Rank, u16)> = directory::first_dials(&roster, rank, (HOST, port))
            .map(|e| (e.rank, e.port))
            .collect();
        // Its own entry: its new address, not admitted yet.
        roster.retain(|e| e.rank != rank);
        roster.push(RosterEntry {
            rank,
            host: HOST.to_string(),
            port,
            incarnation: Incarnation(0),
            process,
        });
        roster.sort_by_key(|e| e.rank);
        let node = Node::rejoin(self.core_config(rank), process);
        // Without a helper, an admitted process has nobody to register with.
        let announce = self.helper_up.then_some(port);
        let endpoint = Endpoint::new(node, self.settings(announce), roster, None);
        self.lives[id].endpoint = Some(endpoint);
        self.effect(format!("{} starts, joining", self.name(id)));
        self.after_call(id);
        if self.dials_on_demand {
            self.lives[id].bootstrap = Some(Vec::new());
            let mut due: VecDeque<Action> = dials
                .into_iter()
                .map(|(listed, listed_port)| Action::DialAddress {
                    joiner: id,
                    rank: listed,
                    port: listed_port,
                })
                .collect();
            due.push_back(Action::DialStale { joiner: id });
            self.dials_due.insert(id, due);
        } else if self.auto_detect {
            // It dials every other rank's listed address, one after the other, then the dead ones again,
            // and only then hands the connections to its endpoint (which asks to be admitted on them).
            self.lives[id].bootstrap = Some(Vec::new());
            let mut at = self.now_step;
            for (listed, listed_port) in dials {
                at += self.rng.range(1, 1 + self.net_delay_max() * 3);
                self.schedule(
                    at,
                    Action::DialAddress {
                        joiner: id,
                        rank: listed,
                        port: listed_port,
                    },
                );
            }
            self.schedule(at + 1, Action::DialStale { joiner: id });
        }
    }

    fn net_delay_max(&self) -> u64 {
        self.detect_delay_max_steps.min(30)
    }

    /// The restarted process `joiner` asks a live member for the roster (`--peer`): a rejoin connection
    /// whose greeting it reads, then closes.
    fn ask_peer(&mut self, joiner: LifeId, peer: LifeId) -> Option<Vec<RosterEntry>> {
        if self.net.cut_between(joiner, peer) == Some(CutMode::Drop) {
            return None;
        }
        let conn = self.net.open(joiner, peer);
        let (rank, process) = (self.lives[joiner].rank, self.lives[joiner].process);
        self.write_registration(joiner, conn);
        self.call(peer, |e| e.opened(conn, Origin::Accepted, rank, process));
        let roster = self.read_greeting(joiner, peer, conn)?;
        let now = self.now_step;
        self.net
            .close(conn, joiner, "the roster was all it wanted", now, &mut self.rng);
        self.effect(format!(
            "{} binds {HOST}:{}; asks {} for the roster (c{conn}, closed after its greeting): [{}]",
            self.name(joiner),
            self.lives[joiner].port,
            self.name(peer),
            net::entries(&roster.members)
        ));
        Some(roster.members)
    }

    /// The registration a restarted (or newly admitted) process writes first on a connection it dials:
    /// its rank, process and announced address.
    fn write_registration(&mut self, node: LifeId, conn: ConnKey) {
        let life = &self.lives[node];
        let register = wire::Register {
            group: "sim".to_string(),
            host: HOST.to_string(),
            port: life.port,
            process: life.process,
            rejoin: Some(life.rank),
            admitted: None,
            nonce: None,
        };
        let now = self.now_step;
        self.net
            .send(conn, node, Frame::Register(register), None, now, &mut self.rng);
    }

    /// The dialler reads the greeting, the first frame `acceptor` wrote on `conn`, at once.
    fn read_greeting(&mut self, dialler: LifeId, acceptor: LifeId, conn: ConnKey) -> Option<wire::Roster> {
        match self.net.head(conn, acceptor) {
            Some(Segment::Frame(Frame::Roster(_))) => {}
            other => {
                let what = other.map_or("nothing".to_string(), Segment::describe);
                self.effect(format!(
                    "{} did not greet {} first: {what}",
                    self.name(acceptor),
                    self.name(dialler)
                ));
                return None;
            }
        }
        match self.net.pop(conn, acceptor).map(|a| a.segment) {
            Some(Segment::Frame(Frame::Roster(roster))) => Some(roster),
            _ => None,
        }
    }

    /// The restarted process `joiner` dials `port`, the address it has for `rank`; true if that rank
    /// answered and the connection went to its endpoint.
    /// `late`: the greeting comes after the joiner's handshake deadline, and it abandons the dial.
    fn rejoin_dial(&mut self, joiner: LifeId, rank: Rank, port: u16, late: bool) -> bool {
        if !self.lives[joiner].running() {
            self.effect("the joiner is gone".to_string());
            return false;
        }
        if port == self.lives[joiner].port {
            self.effect("that is its own address: skipped".to_string());
            return false;
        }
        let Some(acceptor) = self.listener(port) else {
            self.effect(format!("nothing listens at {HOST}:{port}: unreachable"));
            return false;
        };
        if self.net.cut_between(joiner, acceptor) == Some(CutMode::Drop) {
            self.effect(format!("{} is across a cut: unreachable", self.name(acceptor)));
            return false;
        }
        let conn = self.net.open(joiner, acceptor);
        let (own_rank, process) = (self.lives[joiner].rank, self.lives[joiner].process);
        self.write_registration(joiner, conn);
        self.effect(format!("{} answers at {HOST}:{port} (c{conn})", self.name(acceptor)));
        self.call(acceptor, |e| e.opened(conn, Origin::Accepted, own_rank, process));
        if late {
            let now = self.now_step;
            self.net.close(
                conn,
                joiner,
                "no greeting by the handshake deadline",
                now,
                &mut self.rng,
            );
            self.effect(format!("{} abandons c{conn} unread", self.name(joiner)));
            return false;
        }
        let Some(greeting) = self.read_greeting(joiner, acceptor, conn) else {
            let now = self.now_step;
            self.net.close(conn, joiner, "no greeting", now, &mut self.rng);
            return false;
        };
        self.lives[joiner].greeted.extend(greeting.members.iter().cloned());
        if self.lives[joiner].bootstrap.is_none() {
            let members = greeting.members.clone();
            self.call(joiner, |e| e.learn_addresses(members));
        }
        match greeting.from {
            Some(life) if life.rank == rank => {
                if let Some(links) = self.lives[joiner].bootstrap.as_mut() {
                    // Its endpoint takes the connection once every dial is done; what comes meanwhile waits.
                    links.push((conn, life));
                    self.net.park(conn, joiner, true);
                    self.effect(format!("{} reads the greeting of {life}", self.name(joiner)));
                    return true;
                }
                self.effect(format!(
                    "{} reads the greeting of {life} and hands c{conn} to its endpoint",
                    self.name(joiner)
                ));
                self.call(joiner, |e| e.opened(conn, Origin::Dialled, life.rank, life.process));
                true
            }
            other => {
                let now = self.now_step;
                self.net
                    .close(conn, joiner, "another rank answered", now, &mut self.rng);
                self.effect(format!(
                    "{:?} answered for rank {rank}: it listens there no more; {} closes c{conn}",
                    other.map(|m| m.to_string()),
                    self.name(joiner)
                ));
                false
            }
        }
    }

    fn do_dial_stale(&mut self, joiner: LifeId) {
        if self.lives[joiner].phase() != Some(Phase::Joining) {
            self.effect("no longer joining: its dials are over".to_string());
            return;
        }
        let unreached = std::mem::take(&mut self.lives[joiner].unreached);
        let own_port = self.lives[joiner].port;
        for stale in unreached {
            let newest = directory::second_dial(&stale, &self.lives[joiner].greeted, (HOST, own_port));
            let Some(entry) = newest else { continue };
            self.effect(format!(
                "rank {} is listed at {HOST}:{} by a greeting (life {})",
                entry.rank, entry.port, entry.incarnation.0
            ));
            self.rejoin_dial(joiner, entry.rank, entry.port, false);
        }
        // Every dial is done: the endpoint takes the connections that answered, then what their greetings
        // listed; with none, the process gives up (no member answered).
        let links = self.lives[joiner].bootstrap.take().unwrap_or_default();
        if links.is_empty() {
            self.effect(format!("no member answered {}: its process exits", self.name(joiner)));
            self.do_crash(joiner, Keep::All, false);
            return;
        }
        let names: Vec<String> = links.iter().map(|(c, life)| format!("c{c} ({life})")).collect();
        self.effect(format!(
            "{} hands {} to its endpoint",
            self.name(joiner),
            names.join(", ")
        ));
        for (conn, life) in links {
            self.net.park(conn, joiner, false);
            self.call(joiner, |e| e.opened(conn, Origin::Dialled, life.rank, life.process));
        }
        let learned = self.lives[joiner].greeted.clone();
        self.call(joiner, |e| e.learn_addresses(learned));
    }

    /// `node`'s driver dials `life` at `port` for its endpoint: the connection goes over unread (the
    /// endpoint reads the greeting), or the dial fails.
    fn do_redial(&mut self, node: LifeId, life: MemberId, port: u16) {
        if !self.lives[node].running() {
            self.effect("the dialler is gone".to_string());
            return;
        }
        let acceptor = self.listener(port);
        let reason = match acceptor {
            None => Some(format!("nothing listens at {HOST}:{port}")),
            Some(a) if self.net.cut_between(node, a) == Some(CutMode::Drop) => Some("across a cut".to_string()),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            self.effect(format!("dial failed: {reason}"));
            self.call(node, |e| e.dial_failed(life, &reason));
            return;
        }
        let acceptor = acceptor.expect("checked");
        if acceptor == node {
            // Its own port now (it took a dead life's): its own listener would answer.
            self.effect("that is its own address now".to_string());
            self.call(node, |e| e.dial_failed(life, "its own address"));
            return;
        }
        let conn = self.net.open(node, acceptor);
        let (rank, process) = (self.lives[node].rank, self.lives[node].process);
        self.write_registration(node, conn);
        self.effect(format!("{} answers (c{conn})", self.name(acceptor)));
        self.call(acceptor, |e| e.opened(conn, Origin::Accepted, rank, process));
        self.call(node, |e| {
            e.opened(conn, Origin::Redialled { life }, life.rank, life.process)
        });
    }

    // ---- the automatic detector ---------------------------------------------------------------------

    /// Queues an action for step `at`.
    pub fn schedule(&mut self, at: u64, action: Action) {
        self.scheduled.push((at, action));
    }

    fn schedule_suspicions_of(&mut self, gone: LifeId) {
        for at in self.running() {
            if at != gone {
                let when = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
                self.schedule(when, Action::Suspect { at, of: gone });
            }
        }
    }

    fn schedule_exit(&mut self, node: LifeId) {
        if self.auto_detect {
            let when = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
            self.schedule(when, Action::Exit { node });
        }
    }

    /// True if a suspicion of `life` is still scheduled (its rank may not restart before it fires).
    pub fn suspicion_pending(&self, life: LifeId) -> bool {
        self.scheduled
            .iter()
            .any(|(_, a)| matches!(a, Action::Suspect { of, .. } | Action::Exit { node: of } if *of == life))
    }

    /// Removes and returns the earliest scheduled action due by now.
    pub fn take_due(&mut self) -> Option<Action> {
        let (index, _) = self
            .scheduled
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= self.now_step)
            .min_by_key(|(i, (at, _))| (*at, *i))?;
        Some(self.scheduled.remove(index).1)
    }

    // ---- scripted API (ranks name the newest life) ----------------------------------------------------

    /// The newest life of `rank` multicasts and, as a driver does once its input is drained, flushes:
    /// the message goes out at once, alone in its data frame. Returns the payload.
    pub fn multicast(&mut self, rank: u16) -> String {
        let node = self.current(rank);
        self.apply(Action::Multicast { node });
        self.apply(Action::Flush { node });
        self.lives[node].history.multicasts.last().cloned().unwrap_or_default()
    }

    /// The newest life of `rank` multicasts without flushing: the message waits, with any others, for
    /// the next flush ([`Sim::flush`]), which sends them as one data frame. Returns the payload.
    pub fn multicast_unflushed(&mut self, rank: u16) -> String {
        let node = self.current(rank);
        self.apply(Action::Multicast { node });
        self.lives[node].history.multicasts.last().cloned().unwrap_or_default()
    }

    /// Delivers the head frame from `from`'s newest life to `to`'s newest life; returns its description.
    pub fn deliver_next(&mut self, from: u16, to: u16) -> String {
        let (from, to) = (self.current(from), self.current(to));
        self.deliver_between(from, to)
    }

    /// The segment the next delivery from `from` to `to` takes, if any.
    pub fn peek(&self, from: LifeId, to: LifeId) -> Option<&Segment> {
        self.net.peek(from, to, self.now_step)
    }

    /// Delivers every frame in flight, in a seeded order, except on the `held` links, and flushes idle
    /// nodes, until nothing else moves. No ticks.
    pub fn settle_except(&mut self, held: &[(LifeId, LifeId)]) {
        for _ in 0..100_000 {
            let links: Vec<_> = self
                .net
                .busy_links()
                .into_iter()
                .filter(|l| !held.contains(l))
                .collect();
            if let Some((from, to)) = self.rng.pick(&links) {
                self.apply(Action::Deliver { from, to });
                continue;
            }
            if !self.flush_all() {
                return;
            }
        }
        self.fail("not quiet");
    }

    /// Delivers frames on one link, oldest first, until one of `kind` has been delivered.
    pub fn deliver_through(&mut self, from: LifeId, to: LifeId, kind: &str) {
        loop {
            let Some(next) = self.peek(from, to).map(|f| f.describe()) else {
                self.fail(&format!("no {kind} in flight from {from} to {to}"));
            };
            self.deliver_between(from, to);
            if next.starts_with(kind) {
                return;
            }
        }
    }

    /// Turns the automatic detector on from now: every running member reports each gone life its view
    /// lists (and, from then on, lives that go away and gone lives a later view lists), as a real
    /// detector does a failure timeout later.
    pub fn start_detecting(&mut self) {
        self.auto_detect = true;
        for node in self.running() {
            let view = self.lives[node].node().and_then(|n| n.view().cloned());
            if let Some(view) = view {
                self.schedule_suspicions_in(node, &view);
            }
        }
    }

    /// With the automatic detector on, ticks, deliveries, flushes and the scheduled reports go on until
    /// the group settles.
    pub fn settle_detecting(&mut self) {
        self.auto_detect = true;
        self.settle(50_000);
    }

    /// Delivers the head segment on a connection between two given lives.
    pub fn deliver_between(&mut self, from: LifeId, to: LifeId) -> String {
        let Some(segment) = self.peek(from, to) else {
            self.fail(&format!(
                "scenario expected a frame from {} to {}",
                self.name(from),
                self.name(to)
            ));
        };
        let text = segment.describe();
        self.apply(Action::Deliver { from, to });
        text
    }

    /// Delivers everything queued from `from` to `to`.
    pub fn deliver_all(&mut self, from: u16, to: u16) {
        let (from, to) = (self.current(from), self.current(to));
        while self.net.queued(from, to) > 0 {
            self.apply(Action::Deliver { from, to });
        }
    }

    /// Frames queued from `from`'s newest life to `to`'s newest life.
    pub fn queued(&self, from: u16, to: u16) -> usize {
        self.net.queued(self.current(from), self.current(to))
    }

    /// The kind of the head segment from `from` to `to`, if any (a message's kind, `registration`,
    /// `roster`, `snapshot` or `eof`).
    pub fn next_kind(&self, from: u16, to: u16) -> Option<&'static str> {
        self.peek(self.current(from), self.current(to)).map(Segment::kind)
    }

    /// Flushes `rank`.
    pub fn flush(&mut self, rank: u16) {
        let node = self.current(rank);
        self.apply(Action::Flush { node });
    }

    /// From here on the endpoints' clock advances with rounds of ticks only: the explorer's fair run,
    /// whose timeouts are a tick or two, so that a frame on its way (a dial's greeting, a promise)
    /// is not outrun by a timeout that over real links lasts many round trips.
    pub fn clock_by_rounds(&mut self) {
        self.round_clock.get_or_insert(self.now_step);
    }

    /// The time an endpoint's tick reads ([`Sim::round_clock`]).
    fn endpoint_now(&self) -> u64 {
        self.round_clock.unwrap_or(self.now_step)
    }

    /// `ticks` ticks at every running life, one round at a time.
    pub fn tick_all(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.tick_round();
        }
    }

    /// One tick at every running life, as one line of the story.
    fn tick_round(&mut self) {
        self.trace_init();
        self.log("tick every running life".to_string());
        if let Some(round) = self.round_clock.as_mut() {
            *round += 1;
        }
        let now = self.endpoint_now();
        for node in self.running() {
            self.call(node, |e| e.tick(now));
        }
        // Quiet rounds of ticks fold into one line, so a stalled run's story stays readable.
        let len = self.story.len();
        if len >= 2 && self.story[len - 1].effects.is_empty() {
            let previous = &self.story[len - 2];
            if previous.effects.is_empty() && previous.line.starts_with("tick every running life") {
                let rounds: u64 = previous
                    .line
                    .rsplit('×')
                    .next()
                    .and_then(|n| n.trim_end_matches(')').parse().ok())
                    .unwrap_or(1);
                self.story.pop();
                let last = self.story.last_mut().expect("checked");
                last.line = format!("tick every running life (quiet rounds ×{})", rounds + 1);
            }
        }
        while let Some(next) = self.pending.pop_front() {
            self.apply_one(next);
        }
    }

    /// `rank` crashes; what it had in flight is lost.
    pub fn crash(&mut self, rank: u16) {
        let node = self.current(rank);
        self.apply(Action::Crash { node, loss: Loss::All });
    }

    /// `rank` crashes; what it had already sent still arrives.
    pub fn crash_keeping_in_flight(&mut self, rank: u16) {
        let node = self.current(rank);
        self.apply(Action::Crash {
            node,
            loss: Loss::Nothing,
        });
    }

    /// The detector of `at` suspects `rank`.
    pub fn suspect(&mut self, at: u16, rank: u16) {
        let (at, of) = (self.current(at), self.current(rank));
        self.apply(Action::Suspect { at, of });
    }

    /// Every running life other than `rank`'s newest suspects `rank`.
    pub fn suspect_everywhere(&mut self, rank: u16) {
        let of = self.current(rank);
        for at in self.running() {
            if at != of {
                self.apply(Action::Suspect { at, of });
            }
        }
    }

    /// Cuts the links between two sides.
    pub fn partition(&mut self, side_a: &[u16], side_b: &[u16], mode: CutMode) {
        let ranks = |side: &[u16]| side.iter().map(|r| Rank(*r)).collect();
        self.apply(Action::Partition {
            side_a: ranks(side_a),
            side_b: ranks(side_b),
            mode,
        });
    }

    /// Heals every cut.
    pub fn heal(&mut self) {
        self.apply(Action::Heal);
    }

    /// Starts a new life of `rank` (its old one must be gone).
    pub fn restart(&mut self, rank: u16) {
        self.apply(Action::Restart { rank: Rank(rank) });
    }

    /// `rank`'s joiner dials `to`'s newest life where it listens.
    pub fn connect(&mut self, rank: u16, to: u16) {
        let (joiner, to) = (self.current(rank), self.current(to));
        self.apply(Action::Connect { joiner, to });
    }

    /// `rank`'s joiner dials `port`, the address its roster lists for `listed`.
    pub fn dial_address(&mut self, rank: u16, listed: u16, port: u16) {
        let joiner = self.current(rank);
        self.apply(Action::DialAddress {
            joiner,
            rank: Rank(listed),
            port,
        });
    }

    /// The connections between two lives, oldest first (open or not).
    pub fn conns_between(&self, a: LifeId, b: LifeId) -> Vec<ConnKey> {
        self.net
            .conns_of(a)
            .into_iter()
            .filter(|c| self.net.peer(*c, a) == Some(b))
            .collect()
    }

    /// How `life`'s endpoint holds `conn` (`None`: it does not, or the process is gone).
    pub fn watch(&self, life: LifeId, conn: ConnKey) -> Option<endpoint::Watch> {
        self.lives[life].endpoint.as_ref()?.watch(conn)
    }

    /// `rank` leaves.
    pub fn leave(&mut self, rank: u16) {
        let node = self.current(rank);
        self.apply(Action::Leave { node });
    }

    /// Payloads delivered by `rank`'s newest life, in order.
    pub fn delivered(&self, rank: u16) -> Vec<String> {
        self.lives[self.current(rank)]
            .history
            .deliveries
            .iter()
            .map(|d| d.payload.clone())
            .collect()
    }

    /// The ranks of `rank`'s newest life's view.
    pub fn view_of(&self, rank: u16) -> Vec<u16> {
        self.lives[self.current(rank)]
            .history
            .views
            .last()
            .map_or(Vec::new(), |v| v.ranks().map(|r| r.0).collect())
    }

    /// The phase of `rank`'s newest life (`None` once gone).
    pub fn phase(&self, rank: u16) -> Option<Phase> {
        self.lives[self.current(rank)].phase()
    }

    /// `rank`'s newest life's core.
    pub fn node(&self, rank: u16) -> &Node {
        self.lives[self.current(rank)]
            .node()
            .unwrap_or_else(|| panic!("rank {rank} is not running"))
    }

    // ---- running --------------------------------------------------------------------------------------

    /// Delivers frames in a seeded random order, flushing idle nodes, until nothing is in flight and no
    /// flush sends anything. No ticks: timers do not fire. Panics (with the story) past `max_steps`.
    pub fn run_until_quiet(&mut self) {
        let max_steps = 200_000;
        for _ in 0..max_steps {
            self.now_step += 1;
            let ready = self.net.busy_links();
            if let Some((from, to)) = self.rng.pick(&ready) {
                self.apply(Action::Deliver { from, to });
                continue;
            }
            if !self.flush_all() {
                return;
            }
        }
        self.fail(&format!("not quiet after {max_steps} steps"));
    }

    /// Flushes every running life; true if any of them sent something.
    pub fn flush_all(&mut self) -> bool {
        self.trace_init();
        let before = self.net.in_flight();
        self.log("idle: flush every running life".to_string());
        for node in self.running() {
            self.do_flush(node);
        }
        while let Some(next) = self.pending.pop_front() {
            self.apply_one(next);
        }
        let sent = self.net.in_flight() != before;
        if !sent && self.story.last().is_some_and(|e| e.effects.is_empty()) {
            // A flush that changed nothing is not worth a line of the story.
            self.story.pop();
        }
        sent
    }

    /// The liveness phase: cuts heal, no new faults; frames, scheduled events, flushes and ticks go on
    /// until the group settles ([`Sim::settled`]). Panics (with the story) past `max_steps`.
    pub fn settle(&mut self, max_steps: u64) {
        if !self.try_settle(max_steps) {
            let why = self
                .settled()
                .err()
                .unwrap_or_else(|| format!("{} scheduled events still pending", self.scheduled.len()));
            self.fail(&format!(
                "liveness: the group did not settle within {max_steps} steps after faults stopped: {why}"
            ));
        }
    }

    /// Joiners dial every member they have no connection to (an operator's `--peer` for a joiner whose
    /// contacts are gone).
    fn reconnect_joiners(&mut self) {
        for joiner in self.joiners() {
            if self.lives[joiner].bootstrap.is_some() {
                continue; // its own dials are not over yet
            }
            for to in self.members() {
                let rank = self.lives[to].rank;
                if rank != self.lives[joiner].rank && !self.net.connected_to_rank(joiner, rank) {
                    self.apply(Action::Connect { joiner, to });
                }
            }
        }
    }

    /// [`Sim::settle`] without the verdict: true if the group settled within `max_steps`.
    pub fn try_settle(&mut self, max_steps: u64) -> bool {
        // Faults stopped: every application catches up (a busy one holds the group back on purpose).
        for node in std::mem::take(&mut self.busy) {
            if self.lives[node].running() {
                self.apply(Action::Busy { node, busy: false });
            }
        }
        if self.net.is_cut() {
            self.apply(Action::Heal);
        }
        self.reconnect_joiners();
        let deadline = self.now_step + max_steps;
        let mut rounds_without_progress = 0;
        while self.now_step < deadline {
            self.now_step += 1;
            if let Some(action) = self.take_due() {
                self.apply(action);
                continue;
            }
            let ready = self.net.ready(self.now_step);
            if let Some((from, to)) = self.rng.pick(&ready) {
                self.apply(Action::Deliver { from, to });
                if self.rng.percent(5) {
                    if let Some(node) = self.rng.pick(&self.running()) {
                        self.apply(Action::Tick { node });
                    }
                }
                continue;
            }
            if self.net.has_deliverable() {
                // Frames wait for their delay: let time pass, with ticks.
                let next = self.net.next_ready_at().unwrap_or(self.now_step);
                self.now_step = next.max(self.now_step);
                continue;
            }
            if self.flush_all() {
                continue;
            }
            if self.scheduled.is_empty() && self.settled().is_ok() {
                return true;
            }
            rounds_without_progress += 1;
            self.tick_round();
            if rounds_without_progress % 50 == 0 {
                // Joiners whose contacts died need a live member to ask.
                self.reconnect_joiners();
            }
        }
        false
    }

    /// Ok if every running life is a member of one and the same view, listing exactly them, with
    /// nothing held or waiting; otherwise why not.
    pub fn settled(&self) -> Result<(), String> {
        let mut view: Option<&View> = None;
        let mut running = Vec::new();
        for (id, life) in self.lives.iter().enumerate() {
            let Some(node) = life.node() else { continue };
            let phase = life.phase().expect("running");
            if matches!(phase, Phase::Excluded | Phase::Left) {
                // Inert: it delivers nothing more; its process exits when the driver gets to it.
                continue;
            }
            if phase != Phase::Member {
                return Err(format!("{} is {phase:?}", self.name(id)));
            }
            let status = node.status();
            if status.held > 0 || status.backlog > 0 {
                return Err(format!(
                    "{} holds {} messages, backlog {}, head {:?}",
                    self.name(id),
                    status.held,
                    status.backlog,
                    status.head
                ));
            }
            if self.knobs.state_transfer && life.history.is_joiner() && !life.app.restored {
                return Err(format!("{} still waits for its snapshot", self.name(id)));
            }
            let mine = node.view().expect("a member has a view");
            if view.is_some_and(|v| v != mine) {
                return Err(format!(
                    "views differ: {} vs {} at {}",
                    view.map_or(0, |v| v.id.0),
                    mine.id,
                    self.name(id)
                ));
            }
            view = Some(mine);
            running.push(node.me());
        }
        running.sort();
        if let Some(view) = view {
            if view.members != running {
                return Err(format!(
                    "view {} lists [{}] but the running members are {running:?}",
                    view.id,
                    lives_of(view)
                ));
            }
            // Every two members speak on a member connection (otherwise a suspicion is only a failure
            // timeout away).
            for (id, life) in self.lives.iter().enumerate() {
                let Some(me) = life.node().filter(|_| life.is_member()).map(Node::me) else {
                    continue;
                };
                for other in view.members.iter().filter(|m| m.rank != me.rank) {
                    let linked = self
                        .net
                        .conns_of(id)
                        .into_iter()
                        .any(|c| self.watch(id, c).is_some_and(|w| w.is_member && w.life == Some(*other)));
                    if !linked {
                        return Err(format!("{} has no member connection to {other}", self.name(id)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs the history checker; panics with the story on a counterexample. With state transfer, every
    /// running member's application state must also be the group's state at its position.
    pub fn check(&self, expect: Expect) {
        if let Err(problem) = check::check(&self.histories(), expect) {
            self.fail(&problem);
        }
        if self.knobs.state_transfer {
            for (id, life) in self.lives.iter().enumerate() {
                if !life.is_member() || (life.history.is_joiner() && !life.app.restored) {
                    continue;
                }
                if life.app.position != life.history.last_position()
                    || self.state_at(life.app.position).as_ref() != Some(&life.app.bytes)
                {
                    self.fail(&format!(
                        "the application state of {} (at position {}) is not the group's",
                        self.name(id),
                        life.app.position
                    ));
                }
            }
        }
    }
}

/// Where a simulated run's traces go.
enum Tracer {
    /// `SIM_TRACE` not looked at yet (the driver sets the seed after building the group): events so
    /// far wait here.
    Unchecked { pending: Vec<(LifeId, TraceEvent)> },
    /// No tracing for this run.
    Off,
    /// One trace file per life, opened at its first event.
    On {
        dir: std::path::PathBuf,
        sinks: BTreeMap<LifeId, TraceSink>,
    },
}

impl Clone for Tracer {
    /// Trace files belong to the run that opened them: a copy of the world traces nothing.
    fn clone(&self) -> Tracer {
        match self {
            Tracer::Unchecked { .. } | Tracer::Off | Tracer::On { .. } => Tracer::Off,
        }
    }
}

impl Sim {
    /// At the first input: trace this run if `SIM_TRACE` is set and `SIM_SEED` names its seed; the
    /// events of the founders' formation are written then.
    fn trace_init(&mut self) {
        let Tracer::Unchecked { pending } = &mut self.tracer else {
            return;
        };
        let pending = std::mem::take(pending);
        self.tracer = Tracer::Off;
        let Ok(dir) = std::env::var("SIM_TRACE") else { return };
        let seed_matches = std::env::var("SIM_SEED").ok().and_then(|s| s.parse::<u64>().ok()) == Some(self.seed);
        if dir.is_empty() || !seed_matches {
            return;
        }
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("SIM_TRACE={}: {e}", dir.display()));
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|x| x == "trace") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        self.tracer = Tracer::On {
            dir,
            sinks: BTreeMap::new(),
        };
        for (life, event) in pending {
            self.record_trace(life, event);
        }
    }

    /// An endpoint's trace event, stamped with the simulation step.
    fn trace_event(&mut self, life: LifeId, mut event: TraceEvent) {
        event.time_us = self.now_step;
        match &mut self.tracer {
            Tracer::Unchecked { pending } => pending.push((life, event)),
            Tracer::Off => {}
            Tracer::On { .. } => self.record_trace(life, event),
        }
    }

    /// A trace event the simulator itself records for a life (a crash).
    fn trace_own(&mut self, life: LifeId, kind: EventKind) {
        if !self.trace_endpoints {
            return;
        }
        if let Some(core) = self.lives[life].node() {
            let event = TraceEvent::of(core, self.now_step, kind);
            self.trace_event(life, event);
        }
    }

    /// Appends one event to `life`'s trace (written at once: a failing seed still leaves its trace).
    fn record_trace(&mut self, life: LifeId, event: TraceEvent) {
        let Tracer::On { dir, sinks } = &mut self.tracer else {
            return;
        };
        let sink = sinks.entry(life).or_insert_with(|| {
            let path = dir.join(format!("life{life:02}-rank{}.trace", self.lives[life].rank));
            TraceSink::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        });
        sink.record(&event);
        sink.flush();
    }
}
