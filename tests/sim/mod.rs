//! A deterministic whole-group simulator for the pure protocol core.
//!
//! [`Sim`] owns every life of every rank (a [`Node`] plus its recorded [`LifeHistory`]), the
//! [`Net`] between them, and one [`Rng`]. Everything that happens is an [`Action`]; applying one logs a
//! readable line (and its effects) to the story, so a failing seed reads as what happened, step by step.
//!
//! Two ways to drive it:
//! - scripted, from `tests/scenarios.rs`: `sim.multicast(1)`, `sim.deliver_next(1, 2)`, `sim.crash(3)`,
//!   `sim.suspect_everywhere(3)`, `sim.run_until_quiet()` … — nothing happens unless asked;
//! - randomly, from `tests/simulation.rs` through [`sweep`]: a seed fixes the group size, delays,
//!   workload and faults; the detector is automatic (see [`Sim::auto_detect`]).
//!
//! # What the simulator promises the core (the driver contract)
//! - after every `handle` or `flush` of a node, its outbox is drained in order and `check_invariants`
//!   runs;
//! - `Send` goes on the FIFO link from this life to the life its connection to that rank reaches (see
//!   [`Life::target`]): the founders at first; after a crash the connection is broken (sends are lost)
//!   until this life installs a view that lists a new life of the rank;
//! - a joiner's own `JoinRequest` travels on its rejoin connection and arrives as
//!   [`Input::JoinRequest`]; `SendToJoiner` goes to the running joiner of that rank;
//! - every life runs in a process of its own, with a [`ProcessId`] of its own; connections, join
//!   requests and suspicions name that process, as the runtime's do. The detector reports the life it
//!   watched, even when a newer life of the rank exists by then (the core ignores a suspicion of a life
//!   its view does not list), and a rank may restart at any moment after its process died, or while it
//!   still runs (two processes for one rank, or a rejoin of a live rank);
//! - with a frame limit set, a message whose encoding exceeds it is refused by the receiver, which
//!   closes the connection (both ends then suspect each other), exactly as the runtime's reader does.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use tom::protocol::{Config, Input, Node, Outbox, Output, Phase};
use tom::trace::{self, EventKind, TraceEvent, TraceSink};
use tom::types::{Incarnation, MemberId, ProcessId, Rank, View};

use check::{Delivered, End, Expect, LifeHistory};
use net::{describe_message, lives_of, CutMode, DelayProfile, Frame, LifeId, Net};
use rng::Rng;

/// The message of a caught panic (`panic!` payloads are a `String` or a `&str`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".to_string())
}

/// How a crash treats what the crashed life still had in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Each outgoing link keeps a random prefix (a broken TCP connection).
    RandomPrefix,
    /// Everything in flight from it is lost.
    All,
    /// Everything already sent still arrives.
    Nothing,
}

/// One thing that happens in a run. Lives are named by index; the story prints them as `rank` (first
/// life) or `rank~life` (later lives).
#[derive(Clone, Debug)]
pub enum Action {
    /// The application of `node` multicasts its next payload.
    Multicast { node: LifeId },
    /// The head frame of the link `from → to` arrives.
    Deliver { from: LifeId, to: LifeId },
    /// One tick of logical time at `node`.
    Tick { node: LifeId },
    /// `node`'s driver is idle: coalesced acknowledgements go out.
    Flush { node: LifeId },
    /// `node` dies.
    Crash { node: LifeId, loss: Loss },
    /// An excluded or departed life's process exits (its connections close cleanly).
    Exit { node: LifeId },
    /// The detector at `at` reports `of`'s rank (only while `of` is that rank's newest life).
    Suspect { at: LifeId, of: LifeId },
    /// Links between the two sides hold or drop everything.
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
    /// The joiner `joiner` reports its connection to `to`'s rank.
    Connect { joiner: LifeId, to: LifeId },
    /// `node`'s application leaves the group.
    Leave { node: LifeId },
    /// `node`'s application falls behind on deliveries (`busy`) or catches up: flow control.
    Busy { node: LifeId, busy: bool },
}

/// One life of one rank.
#[derive(Debug)]
pub struct Life {
    /// The rank.
    pub rank: Rank,
    /// The core; `None` once the process crashed or exited.
    pub node: Option<Node>,
    /// Everything recorded about this life, for the checker.
    pub history: LifeHistory,
    /// The life each of this life's member connections reaches, by rank (`None`: broken or absent).
    pub target: BTreeMap<Rank, Option<LifeId>>,
    /// The process this life runs in.
    pub process: ProcessId,
    /// The lives this joiner dialled (its rejoin connections): a member with no member connection to
    /// the joiner's rank answers on that connection.
    pub dialled: BTreeSet<LifeId>,
    leave_requested: bool,
}

impl Life {
    /// True while the process runs (it may be inert: excluded or left but not yet exited).
    pub fn running(&self) -> bool {
        self.node.is_some()
    }

    /// The phase of a running life.
    pub fn phase(&self) -> Option<Phase> {
        self.node.as_ref().map(Node::phase)
    }
}

/// One step of the story: the action's line and what it caused.
#[derive(Clone, Debug)]
struct Entry {
    step: u64,
    line: String,
    effects: Vec<String>,
}

/// The simulated group.
pub struct Sim {
    /// The seed the run started from.
    pub seed: u64,
    /// The group size at formation.
    pub size: u16,
    pub rng: Rng,
    pub lives: Vec<Life>,
    pub net: Net,
    /// Logical time in steps (frame delays and scheduled events count in steps; ticks are separate).
    pub now_step: u64,
    /// Events scheduled for a later step (detector reports, exits, joiner connections, heals).
    pub scheduled: Vec<(u64, Action)>,
    /// Lives whose application is behind on deliveries (flow control holds them back).
    pub busy: std::collections::BTreeSet<LifeId>,
    /// When true, crashes and exits schedule suspicions at every running life, exclusions schedule the
    /// process's exit, and restarts schedule the joiner's connections: the automatic detector of random
    /// runs. Scripted scenarios leave it off and report everything themselves.
    pub auto_detect: bool,
    /// Longest detector delay, in steps, when `auto_detect` is on.
    pub detect_delay_max_steps: u64,
    /// Percent of node inputs followed at once by a flush of that node.
    pub flush_after_percent: u64,
    /// Every view anyone installed, by id (for quorum guards).
    pub views: BTreeMap<u64, View>,
    story: Vec<Entry>,
    /// Per-life trace files, when `SIM_TRACE` asks for them (decided at the first input).
    tracer: Tracer,
    /// Set when a fault plan may have cost the group its quorum: only safety is then checked.
    pub liveness_waived: bool,
    /// Every node's `carry_chunk_bytes`.
    pub carry_chunk_bytes: usize,
    /// The frame limit the receivers enforce, in encoded bytes (`None`: unlimited).
    pub frame_limit_bytes: Option<usize>,
    /// Multicast payloads are padded by up to this many bytes (big payloads).
    pub payload_pad_max: usize,
    /// A rank may restart as soon as its process is gone, without waiting for the group to suspect
    /// the old life.
    pub restart_any_moment: bool,
}

impl Sim {
    /// A formed group of `size` founders, with a given delay profile.
    pub fn with_delays(size: u16, seed: u64, delay: DelayProfile) -> Sim {
        Sim::with_chunks(size, seed, delay, tom::protocol::CARRY_CHUNK_BYTES)
    }

    /// A formed group whose nodes carry view-change payloads in chunks of `carry_chunk_bytes`.
    pub fn with_chunks(size: u16, seed: u64, delay: DelayProfile, carry_chunk_bytes: usize) -> Sim {
        let mut sim = Sim {
            seed,
            size,
            rng: Rng::new(seed),
            lives: Vec::new(),
            net: Net::new(delay),
            now_step: 0,
            scheduled: Vec::new(),
            busy: std::collections::BTreeSet::new(),
            auto_detect: false,
            detect_delay_max_steps: 200,
            flush_after_percent: 0,
            views: BTreeMap::new(),
            story: Vec::new(),
            tracer: Tracer::Unchecked,
            liveness_waived: false,
            carry_chunk_bytes,
            frame_limit_bytes: None,
            payload_pad_max: 0,
            restart_any_moment: false,
        };
        let view = View::initial(size);
        sim.views.insert(1, view.clone());
        for rank in 1..=size {
            let node = Node::new(sim.core_config(Rank(rank)), view.clone());
            let mut history = LifeHistory::founder(rank);
            history.views.push(view.clone());
            let target = (1..=size)
                .filter(|r| *r != rank)
                .map(|r| (Rank(r), Some(r as usize - 1)))
                .collect();
            sim.net.register(sim.lives.len(), Rank(rank));
            sim.lives.push(Life {
                rank: Rank(rank),
                node: Some(node),
                history,
                target,
                process: view.members[rank as usize - 1].process,
                dialled: BTreeSet::new(),
                leave_requested: false,
            });
        }
        sim
    }

    /// The core settings of every node of this run.
    fn core_config(&self, rank: Rank) -> Config {
        let mut config = Config::new(rank);
        config.carry_chunk_bytes = self.carry_chunk_bytes;
        config
    }

    /// The life the process `process` runs, if any.
    pub fn life_of_process(&self, process: ProcessId) -> Option<LifeId> {
        self.lives.iter().position(|l| l.process == process)
    }

    /// The newest running member (not joiner) life of `rank`, else its newest life.
    pub fn member_life(&self, rank: u16) -> LifeId {
        self.lives
            .iter()
            .rposition(|l| l.rank.0 == rank && matches!(l.phase(), Some(Phase::Member | Phase::Changing)))
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
        (0..self.lives.len())
            .filter(|l| matches!(self.lives[*l].phase(), Some(Phase::Member | Phase::Changing)))
            .collect()
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

    /// The histories of every life, marked with how each stands right now.
    pub fn histories(&self) -> Vec<LifeHistory> {
        self.lives
            .iter()
            .map(|life| {
                let mut history = life.history.clone();
                history.member_at_end = matches!(life.phase(), Some(Phase::Member | Phase::Changing));
                history
            })
            .collect()
    }

    // ---- the story ----------------------------------------------------------------------------------

    fn log(&mut self, line: String) {
        self.story.push(Entry {
            step: self.now_step,
            line,
            effects: Vec::new(),
        });
    }

    fn effect(&mut self, line: String) {
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

    /// One line per life: how it stands now (phase, view, position, what its queue head waits for).
    pub fn state_summary(&self) -> String {
        let mut text = String::new();
        for (id, life) in self.lives.iter().enumerate() {
            let name = self.name(id);
            let Some(node) = &life.node else {
                let _ = writeln!(
                    text,
                    "{name}: gone ({:?}), delivered up to {}",
                    life.history.end,
                    life.history.last_position()
                );
                continue;
            };
            let status = node.status();
            let _ = writeln!(
                text,
                "{name}: {} {:?} view {} [{}] delivered {} held {} head {:?} backlog {} suspects {:?} lamport {}",
                status.me,
                status.phase,
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
                status.lamport
            );
        }
        text
    }

    fn describe(&self, action: &Action) -> String {
        match action {
            Action::Multicast { node } => format!("multicast at {}", self.name(*node)),
            Action::Deliver { from, to } => {
                let what = self.net.peek(*from, *to).map_or("nothing".to_string(), Frame::describe);
                format!("deliver {} → {}: {what}", self.name(*from), self.name(*to))
            }
            Action::Tick { node } => format!("tick {}", self.name(*node)),
            Action::Flush { node } => format!("flush {}", self.name(*node)),
            Action::Crash { node, loss } => format!("CRASH {} ({loss:?} lost)", self.name(*node)),
            Action::Exit { node } => format!("exit {} (its process ends)", self.name(*node)),
            Action::Suspect { at, of } => {
                format!("detector at {} suspects {}", self.name(*at), self.name(*of))
            }
            Action::Partition { side_a, side_b, mode } => format!("PARTITION {side_a:?} | {side_b:?} ({mode:?})"),
            Action::Heal => "HEAL every cut".to_string(),
            Action::Restart { rank } => format!("RESTART rank {rank} (new process, empty memory)"),
            Action::GiveUp { node } => format!("joiner {} gives up unless admitted", self.name(*node)),
            Action::Connect { joiner, to } => {
                format!("joiner {} connects to {}", self.name(*joiner), self.name(*to))
            }
            Action::Leave { node } => format!("LEAVE {}", self.name(*node)),
            Action::Busy { node, busy } => {
                format!(
                    "application at {} {}",
                    self.name(*node),
                    if *busy { "falls behind" } else { "catches up" }
                )
            }
        }
    }

    // ---- applying actions ---------------------------------------------------------------------------

    /// Logs and performs one action.
    pub fn apply(&mut self, action: Action) {
        let line = self.describe(&action);
        self.log(line);
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
            Action::Tick { node } => self.input(node, Input::Tick),
            Action::Flush { node } => self.do_flush(node),
            Action::Crash { node, loss } => self.do_crash(node, loss),
            Action::Exit { node } => self.do_exit(node),
            Action::Suspect { at, of } => self.do_suspect(at, of),
            Action::Partition { side_a, side_b, mode } => {
                let lost = self.net.cut(&side_a, &side_b, mode, &mut self.rng);
                if lost > 0 {
                    self.effect(format!("{lost} frames in flight across the cut lost"));
                }
                if mode == CutMode::Drop && self.auto_detect {
                    self.schedule_cut_suspicions(&side_a, &side_b);
                }
            }
            Action::Heal => self.net.heal(),
            Action::Restart { rank } => self.do_restart(rank),
            Action::GiveUp { node } => {
                let rank = self.lives[node].rank;
                let rank_has_member = self
                    .lives
                    .iter()
                    .any(|l| l.rank == rank && matches!(l.phase(), Some(Phase::Member | Phase::Changing)));
                match self.lives[node].phase() {
                    // Another life of the rank is a member: this process cannot be the one the group is
                    // admitting, and its end costs no quorum.
                    Some(Phase::Joining) if rank_has_member => self.do_crash(node, Loss::Nothing),
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
                if self.lives[to].running() {
                    self.lives[joiner].dialled.insert(to);
                    let rank = self.lives[to].rank;
                    self.input(joiner, Input::Connected(rank));
                } else {
                    self.effect("unreachable: that process is gone".to_string());
                }
            }
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
        let Some(frame) = self.net.pop(from, to) else {
            self.fail(&format!(
                "nothing in flight from {} to {}",
                self.name(from),
                self.name(to)
            ));
        };
        if !self.lives[to].running() {
            self.effect("dropped: the receiver is gone".to_string());
            return;
        }
        let input = match frame {
            Frame::Msg(msg) => Input::Received {
                from: self.lives[from].rank,
                msg,
            },
            Frame::JoinRequest(rank, process) => Input::JoinRequest { rank, process },
        };
        self.input(to, input);
    }

    fn do_flush(&mut self, node: LifeId) {
        let Some(core) = self.lives[node].node.as_mut() else {
            return;
        };
        let mut out = Outbox::new();
        core.flush(&mut out);
        self.after_call(node, out);
    }

    /// Feeds one input to a running life and routes what it outputs.
    pub fn input(&mut self, node: LifeId, input: Input) {
        self.trace_init();
        let traced = match (&self.tracer, self.lives[node].node.as_ref()) {
            (Tracer::On { .. }, Some(core)) => trace::input_event(core, &input),
            _ => None,
        };
        let Some(core) = self.lives[node].node.as_mut() else {
            self.effect(format!("ignored: {} is gone", self.name(node)));
            return;
        };
        let mut out = Outbox::new();
        core.handle(input, &mut out);
        if let Some(kind) = traced {
            self.trace(node, kind);
        }
        self.after_call(node, out);
        if self.flush_after_percent > 0 && self.lives[node].running() && self.rng.percent(self.flush_after_percent) {
            let before = self.story.last().map_or(0, |e| e.effects.len());
            self.do_flush(node);
            if let Some(line) = self.story.last_mut().and_then(|e| e.effects.get_mut(before)) {
                *line = format!("then flushes: {line}");
            }
        }
    }

    fn after_call(&mut self, node: LifeId, mut out: Outbox) {
        let core = self.lives[node].node.as_ref().expect("called on a running life");
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.check_invariants()));
        if let Err(panic) = checked {
            let text = panic_text(panic.as_ref());
            self.fail(&format!("check_invariants of {} failed: {text}", self.name(node)));
        }
        let me = core.me();
        if me.incarnation.0 != 0 {
            self.lives[node].history.incarnation = Some(me.incarnation.0);
        }
        let outputs: Vec<Output> = out.drain().collect();
        self.trace_outputs(node, &outputs);
        // Grouped by kind, kinds in the order the core first sent them.
        let mut sends: Vec<(&'static str, Vec<String>)> = Vec::new();
        let mut add = |kind: &'static str, dest: String| match sends.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, dests)) => dests.push(dest),
            None => sends.push((kind, vec![dest])),
        };
        for output in outputs {
            match output {
                Output::Send { to, msg } => {
                    let kind = msg.kind();
                    let dest = self.route(node, to, &msg);
                    add(kind, dest);
                }
                Output::SendToJoiner { rank, msg } => {
                    let kind = msg.kind();
                    let joiner = self
                        .joiner_connected_to(node, rank)
                        .unwrap_or_else(|| self.current(rank.0));
                    let dest = if self.lives[joiner].running() && joiner != node {
                        let detail = describe_message(&msg);
                        self.send_frame(node, joiner, Frame::Msg(msg));
                        format!("joiner {} ({detail})", self.name(joiner))
                    } else {
                        format!("joiner of rank {rank} (none running: lost)")
                    };
                    add(kind, dest);
                }
                Output::Deliver(d) => self.record_delivery(node, d),
                Output::ViewInstalled(view) => {
                    self.effect(format!(
                        "{} installs view {} [{}]",
                        self.name(node),
                        view.id,
                        lives_of(&view)
                    ));
                    self.retarget(node, &view);
                    self.views.insert(view.id.0, view.clone());
                    if self.auto_detect {
                        self.schedule_suspicions_in(node, &view);
                    }
                    self.lives[node].history.views.push(view);
                }
                Output::Joined { position } => {
                    self.effect(format!("{} JOINED at position {position}", self.name(node)));
                    self.lives[node].history.joined = Some(position);
                }
                Output::Excluded { view } => {
                    self.effect(format!("{} EXCLUDED (view {view}); it stops", self.name(node)));
                    self.lives[node].history.end = End::Excluded;
                    self.schedule_exit(node);
                }
                Output::Left => {
                    self.effect(format!("{} LEFT", self.name(node)));
                    self.lives[node].history.end = End::Left;
                    self.schedule_exit(node);
                }
            }
        }
        if !sends.is_empty() {
            let parts: Vec<String> = sends
                .into_iter()
                .map(|(kind, dests)| format!("{kind} → {}", dests.join(", ")))
                .collect();
            self.effect(format!("{} sends {}", self.name(node), parts.join("; ")));
        }
    }

    fn record_delivery(&mut self, node: LifeId, d: tom::protocol::Delivery) {
        let payload = String::from_utf8_lossy(d.payload.as_bytes()).into_owned();
        self.effect(format!(
            "{} delivers #{} {:?} (from {}, lamport {})",
            self.name(node),
            d.position,
            check::short_payload(&payload),
            d.origin,
            d.lamport
        ));
        self.lives[node].history.deliveries.push(Delivered {
            origin: d.origin,
            lamport: d.lamport,
            payload,
            position: d.position,
        });
    }

    /// Puts a `Send` on the right link; returns how the story names its destination.
    fn route(&mut self, node: LifeId, to: Rank, msg: &tom::message::Message) -> String {
        let own_join_request = matches!(msg, tom::message::Message::JoinRequest { rank, process }
            if *rank == self.lives[node].rank && *process == self.lives[node].process
                && self.lives[node].phase() == Some(Phase::Joining));
        if own_join_request {
            // A joiner's request goes out on its rejoin connection to the process it dialled for that
            // rank (or, never having dialled it, to whatever process runs that rank now).
            let dialled = self.lives[node]
                .dialled
                .iter()
                .copied()
                .filter(|l| self.lives[*l].rank == to)
                .max();
            let dest = dialled.unwrap_or_else(|| self.member_life(to.0));
            if !self.lives[dest].running() {
                return format!("{to} (gone: lost)");
            }
            let process = self.lives[node].process;
            self.send_frame(node, dest, Frame::JoinRequest(self.lives[node].rank, process));
            return self.name(dest);
        }
        // A connection is one TCP connection: if the newest life of `to` still holds one to `node`, so
        // does `node`, whatever `node`'s own view says about that rank.
        let newest = self.current(to.0);
        let reverse = (self.lives[newest].running()
            && self.lives[newest].target.get(&self.lives[node].rank) == Some(&Some(node)))
        .then_some(newest);
        match self.lives[node].target.get(&to).copied().flatten().or(reverse) {
            Some(dest) if self.lives[dest].running() => {
                self.send_frame(node, dest, Frame::Msg(msg.clone()));
                self.name(dest)
            }
            _ => match self.joiner_connected_to(node, to) {
                // No member connection to that rank: the runtime answers on a joiner's connection, which
                // may be another process than the life the decision admits.
                Some(joiner) => {
                    self.send_frame(node, joiner, Frame::Msg(msg.clone()));
                    format!("{} (on its rejoin connection)", self.name(joiner))
                }
                None => format!("{to} (no connection: lost)"),
            },
        }
    }

    /// The newest running joiner of `rank` that dialled `node`.
    fn joiner_connected_to(&self, node: LifeId, rank: Rank) -> Option<LifeId> {
        (0..self.lives.len()).rev().find(|l| {
            let life = &self.lives[*l];
            life.rank == rank && life.phase() == Some(Phase::Joining) && life.dialled.contains(&node)
        })
    }

    fn send_frame(&mut self, from: LifeId, to: LifeId, frame: Frame) {
        if let (Some(limit), Frame::Msg(msg)) = (self.frame_limit_bytes, &frame) {
            let mut bytes = Vec::new();
            tom::wire::encode(&tom::wire::Frame::Protocol(msg.clone()), &mut bytes);
            let len = bytes.len() - tom::wire::LENGTH_PREFIX_LEN;
            if len > limit {
                // The receiver's reader refuses the length and closes the connection; both ends notice.
                let lost = self.net.break_connection(from, to);
                self.effect(format!(
                    "a {} frame of {len} bytes exceeds the frame limit of {limit}: {} closes the connection \
                     from {} ({lost} frames in flight lost)",
                    msg.kind(),
                    self.name(to),
                    self.name(from)
                ));
                if self.auto_detect {
                    for (at, of) in [(from, to), (to, from)] {
                        let when = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
                        self.schedule(when, Action::Suspect { at, of });
                    }
                }
                return;
            }
        }
        if !self.net.send(from, to, frame, self.now_step, &mut self.rng) {
            self.effect(format!(
                "a frame {} → {} is lost in the cut",
                self.name(from),
                self.name(to)
            ));
        }
    }

    /// `node` installed `view`: its connection to each listed rank now reaches the life the view lists,
    /// which is the rank's newest life if that one is the listed incarnation or is still unnamed.
    fn retarget(&mut self, node: LifeId, view: &View) {
        for member in &view.members {
            if member.rank == self.lives[node].rank {
                continue;
            }
            let process = member.process;
            let reaches_listed =
                |sim: &Sim, life: LifeId| sim.lives[life].running() && sim.lives[life].process == process;
            let target = self.lives[node].target.get(&member.rank).copied().flatten();
            if target.is_some_and(|t| reaches_listed(self, t)) {
                continue;
            }
            let next = self.life_of_process(process).filter(|l| reaches_listed(self, *l));
            let replaced_member = |sim: &Sim, t: LifeId| {
                matches!(sim.lives[t].phase(), Some(Phase::Member | Phase::Changing)) && Some(t) != next
            };
            if let Some(old) = target.filter(|t| replaced_member(self, *t)) {
                // The view lists another process for this rank: the runtime closes the old life's
                // connection (it is excluded; the relayed decision goes to the rank's new process),
                // and the old life's detector notices the close.
                let lost = self.net.break_connection(node, old);
                self.effect(format!(
                    "{} closes its connection to {}, a replaced life ({lost} frames in flight lost)",
                    self.name(node),
                    self.name(old)
                ));
                if self.auto_detect {
                    let when = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
                    self.schedule(when, Action::Suspect { at: old, of: node });
                }
            }
            if next != target {
                if let Some(life) = next {
                    self.effect(format!(
                        "{}'s connection to rank {} now reaches {}",
                        self.name(node),
                        member.rank,
                        self.name(life)
                    ));
                }
                self.lives[node].target.insert(member.rank, next);
            }
        }
    }

    fn do_crash(&mut self, node: LifeId, loss: Loss) {
        if !self.lives[node].running() {
            self.effect("already gone".to_string());
            return;
        }
        self.trace(node, EventKind::Crash);
        self.lives[node].node = None;
        self.lives[node].history.end = End::Crashed;
        let lost = match loss {
            Loss::RandomPrefix => self.net.crash(node, &mut self.rng),
            Loss::All => {
                let mut lost = self.net.close_incoming(node);
                for (from, to) in self.net.busy_links() {
                    if from == node {
                        while self.net.pop(from, to).is_some() {
                            lost += 1;
                        }
                    }
                }
                lost
            }
            Loss::Nothing => self.net.close_incoming(node),
        };
        if lost > 0 {
            self.effect(format!("{lost} frames to or from it lost"));
        }
        self.break_connections_to(node);
        if self.auto_detect {
            self.schedule_suspicions_of(node);
        }
    }

    fn do_exit(&mut self, node: LifeId) {
        if !self.lives[node].running() {
            return;
        }
        self.trace(node, EventKind::Stop);
        self.lives[node].node = None;
        let lost = self.net.close_incoming(node);
        if lost > 0 {
            self.effect(format!("{lost} frames to it lost"));
        }
        self.break_connections_to(node);
        if self.auto_detect {
            self.schedule_suspicions_of(node);
        }
    }

    fn break_connections_to(&mut self, node: LifeId) {
        let rank = self.lives[node].rank;
        for life in &mut self.lives {
            if life.target.get(&rank) == Some(&Some(node)) {
                life.target.insert(rank, None);
            }
        }
    }

    /// The detector at `at` reports the life `of` it watched: named as `at`'s view lists it when that
    /// is `of`'s process, else as `of` knows itself. The core ignores a life its view does not list, so
    /// a late report about an old life never counts against a newer life of the rank.
    fn do_suspect(&mut self, at: LifeId, of: LifeId) {
        let rank = self.lives[of].rank;
        let listed = self.lives[at]
            .node
            .as_ref()
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
        let listed = self.lives[at].node.as_ref()?.view()?.member(rank)?;
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
            let Some(node) = &self.lives[member].node else {
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
        self.net.register(id, rank);
        let target = (1..=self.size)
            .filter(|r| *r != rank.0)
            .map(|r| {
                let member = self.member_life(r);
                let is_member = matches!(self.lives[member].phase(), Some(Phase::Member | Phase::Changing));
                (Rank(r), is_member.then_some(member))
            })
            .collect();
        // Identities are drawn at random, as the runtime's are: of two processes asking for one rank,
        // either may be the larger.
        let process = ProcessId(self.rng.next_u64() | 1 << 63);
        let config = self.core_config(rank);
        self.lives.push(Life {
            rank,
            node: Some(Node::rejoin(config, process)),
            history: LifeHistory::joiner(rank.0, life_no),
            target,
            process,
            dialled: BTreeSet::new(),
            leave_requested: false,
        });
        self.effect(format!("{} starts, joining", self.name(id)));
        self.trace(
            id,
            EventKind::Start {
                clock: "sim".into(),
                joining: true,
            },
        );
        if self.auto_detect {
            for member in self.members() {
                let at = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
                self.schedule(at, Action::Connect { joiner: id, to: member });
            }
        }
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

    /// A dropping cut breaks connections: both ends' detectors notice, each at its own time.
    fn schedule_cut_suspicions(&mut self, side_a: &[Rank], side_b: &[Rank]) {
        let lives_of_side = |sim: &Sim, side: &[Rank]| -> Vec<LifeId> {
            side.iter()
                .map(|r| sim.member_life(r.0))
                .filter(|l| sim.lives[*l].running())
                .collect()
        };
        let a = lives_of_side(self, side_a);
        let b = lives_of_side(self, side_b);
        for x in &a {
            for y in &b {
                for (at, of) in [(*x, *y), (*y, *x)] {
                    let when = self.now_step + self.rng.range(1, self.detect_delay_max_steps);
                    self.schedule(when, Action::Suspect { at, of });
                }
            }
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

    /// The newest life of `rank` multicasts; returns the payload.
    pub fn multicast(&mut self, rank: u16) -> String {
        let node = self.current(rank);
        self.apply(Action::Multicast { node });
        self.lives[node].history.multicasts.last().cloned().unwrap_or_default()
    }

    /// Delivers the head frame from `from`'s newest life to `to`'s newest life; returns its description.
    pub fn deliver_next(&mut self, from: u16, to: u16) -> String {
        let (from, to) = (self.current(from), self.current(to));
        self.deliver_between(from, to)
    }

    /// Delivers the head frame on a link between two given lives.
    pub fn deliver_between(&mut self, from: LifeId, to: LifeId) -> String {
        let Some(frame) = self.net.peek(from, to) else {
            self.fail(&format!(
                "scenario expected a frame from {} to {}",
                self.name(from),
                self.name(to)
            ));
        };
        let text = frame.describe();
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

    /// The kind of the head frame from `from` to `to`, if any.
    pub fn next_kind(&self, from: u16, to: u16) -> Option<&'static str> {
        match self.net.peek(self.current(from), self.current(to))? {
            Frame::Msg(msg) => Some(msg.kind()),
            Frame::JoinRequest(..) => Some("join-request"),
        }
    }

    /// Flushes `rank`.
    pub fn flush(&mut self, rank: u16) {
        let node = self.current(rank);
        self.apply(Action::Flush { node });
    }

    /// `ticks` ticks at every running life, one round at a time.
    pub fn tick_all(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.tick_round();
        }
    }

    /// One tick at every running life, as one line of the story.
    fn tick_round(&mut self) {
        self.log("tick every running life".to_string());
        for node in self.running() {
            self.input(node, Input::Tick);
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

    /// `rank`'s joiner reports its connection to `to`.
    pub fn connect(&mut self, rank: u16, to: u16) {
        let (joiner, to) = (self.current(rank), self.current(to));
        self.apply(Action::Connect { joiner, to });
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
            .node
            .as_ref()
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
        let before = self.net_len_marker();
        self.log("idle: flush every running life".to_string());
        for node in self.running() {
            self.do_flush(node);
        }
        let sent = self.net_len_marker() != before;
        if !sent {
            // A flush that changed nothing is not worth a line of the story.
            self.story.pop();
        }
        sent
    }

    fn net_len_marker(&self) -> usize {
        self.net.busy_links().iter().map(|(f, t)| self.net.queued(*f, *t)).sum()
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
        for joiner in self.joiners() {
            for to in self.members() {
                self.apply(Action::Connect { joiner, to });
            }
        }
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
                    let node = self.rng.pick(&self.running()).expect("someone runs");
                    self.apply(Action::Tick { node });
                }
                continue;
            }
            if !self.net.is_empty() {
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
                for joiner in self.joiners() {
                    for to in self.members() {
                        self.apply(Action::Connect { joiner, to });
                    }
                }
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
            let Some(node) = &life.node else { continue };
            if matches!(node.phase(), Phase::Excluded | Phase::Left) {
                // Inert: it delivers nothing more; its process exits when the driver gets to it.
                continue;
            }
            if node.phase() != Phase::Member {
                return Err(format!("{} is {:?}", self.name(id), node.phase()));
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
        }
        Ok(())
    }

    /// Runs the history checker; panics with the story on a counterexample.
    pub fn check(&self, expect: Expect) {
        if let Err(problem) = check::check(&self.histories(), expect) {
            self.fail(&problem);
        }
    }
}

/// Where a simulated run's traces go.
enum Tracer {
    /// `SIM_TRACE` not looked at yet (the driver sets the seed after building the group).
    Unchecked,
    /// No tracing for this run.
    Off,
    /// One trace file per life, opened at its first event.
    On {
        dir: std::path::PathBuf,
        sinks: BTreeMap<LifeId, TraceSink>,
    },
}

impl Sim {
    /// At the first input: trace this run if `SIM_TRACE` is set and `SIM_SEED` names its seed; founders
    /// get their `start` and first `view` lines at step 0.
    fn trace_init(&mut self) {
        if !matches!(self.tracer, Tracer::Unchecked) {
            return;
        }
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
        for life in 0..self.lives.len() {
            let joining = self.lives[life].history.life > 1;
            self.trace(
                life,
                EventKind::Start {
                    clock: "sim".into(),
                    joining,
                },
            );
            if let Some(view) = self.lives[life].node.as_ref().and_then(|n| n.view().cloned()) {
                self.trace_outputs(life, &[Output::ViewInstalled(view)]);
            }
        }
    }

    /// Appends one event to `life`'s trace (written at once: a failing seed still leaves its trace).
    fn trace(&mut self, life: LifeId, kind: EventKind) {
        let Tracer::On { dir, sinks } = &mut self.tracer else {
            return;
        };
        let Some(core) = self.lives[life].node.as_ref() else {
            return;
        };
        let sink = sinks.entry(life).or_insert_with(|| {
            let path = dir.join(format!("life{life:02}-rank{}.trace", self.lives[life].rank));
            TraceSink::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        });
        sink.record(&TraceEvent::of(core, self.now_step, kind));
        sink.flush();
    }

    fn trace_outputs(&mut self, life: LifeId, outputs: &[Output]) {
        if !matches!(self.tracer, Tracer::On { .. }) {
            return;
        }
        for output in outputs {
            let kind = self.lives[life]
                .node
                .as_ref()
                .and_then(|core| trace::output_event(core, output));
            if let Some(kind) = kind {
                self.trace(life, kind);
            }
        }
    }
}
