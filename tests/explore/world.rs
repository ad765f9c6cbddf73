//! One state of the exhaustive search: the simulator's whole world plus what the path spent, and the
//! choices that may happen next.
//!
//! The world is [`Sim`], the same group the random sweeps and the scripted scenarios drive: every
//! life an [`tom::endpoint::Endpoint`] driven through its driver interface, connections FIFO per
//! direction, a helper, restarted processes dialling as the runtime's do. The explorer only replaces
//! the sweep's dice with branches: at every state each [`Choice`] that [`World::choices`] lists is
//! taken in turn.
//!
//! Invariants: the search never draws a random number that matters (frames have no delays, a crash
//! keeps all or nothing of what was in flight, a restarted process takes its identity from a fixed
//! pool), so a path of choices is a complete replay; and every choice a path takes is one the
//! scope's budgets allowed at that state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use tom::protocol::Phase;
use tom::types::{ProcessId, Rank};

use super::scope::{Scope, Spent};
use crate::sim::net::{ConnKey, DelayProfile, LifeId};
use crate::sim::{Action, Knobs, Loss, Sim};

/// The identity of the `k`-th process of the explorer's pool (1-based). Larger than every founder's,
/// and ordered by `k`, so a path that restarts twice picks which of the two wins a tie for its rank.
pub fn pool_process(k: u32) -> ProcessId {
    ProcessId(1 << 63 | u64::from(k))
}

/// One thing that may happen next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The head of what `from` wrote on `conn` arrives.
    Deliver { conn: ConnKey, from: LifeId },
    /// The driver of `node` is idle: it flushes (only with `f1`; otherwise every driver flushes after
    /// each step).
    Flush { node: LifeId },
    /// One tick at `node` (with the explorer's timeouts of one tick, a view-change timeout).
    Tick { node: LifeId },
    /// The application of `node` multicasts.
    Multicast { node: LifeId },
    /// `node`'s process dies; `lost` says whether what it had in flight is lost or still arrives.
    Crash { node: LifeId, lost: bool },
    /// `node`'s machine loses power: it goes silent.
    PowerCut { node: LifeId },
    /// One connection breaks.
    Break { conn: ConnKey },
    /// The detector at `at` reports `of` (true if `of`'s process is gone, false otherwise).
    Suspect { at: LifeId, of: LifeId },
    /// The detector at `at`, which reported `of` while `of` ran, hears it again (with `e`).
    HeardAgain { at: LifeId, of: LifeId },
    /// A new process (the pool's `process`-th) asks for `rank`; with the helper gone it looks the group
    /// up through the running member `peer`.
    Restart {
        rank: u16,
        process: u32,
        peer: Option<LifeId>,
    },
    /// The helper goes away (with `h2`).
    HelperDown,
    /// A restarted process makes its next dial.
    Dial { joiner: LifeId },
    /// That dial's greeting comes after the joiner's handshake deadline (with `j`).
    DialLate { joiner: LifeId },
    /// A process whose member stopped (excluded or left) exits.
    Exit { node: LifeId },
    /// The application of `node` asks to leave.
    Leave { node: LifeId },
}

impl fmt::Display for Choice {
    /// The token a replay reads back ([`Choice::parse`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Choice::Deliver { conn, from } => write!(f, "d{conn}.{from}"),
            Choice::Flush { node } => write!(f, "f{node}"),
            Choice::Tick { node } => write!(f, "t{node}"),
            Choice::Multicast { node } => write!(f, "m{node}"),
            Choice::Crash { node, lost: true } => write!(f, "c{node}"),
            Choice::Crash { node, lost: false } => write!(f, "C{node}"),
            Choice::PowerCut { node } => write!(f, "p{node}"),
            Choice::Break { conn } => write!(f, "b{conn}"),
            Choice::Suspect { at, of } => write!(f, "s{at}.{of}"),
            Choice::HeardAgain { at, of } => write!(f, "e{at}.{of}"),
            Choice::Restart {
                rank,
                process,
                peer: None,
            } => write!(f, "r{rank}.{process}"),
            Choice::Restart {
                rank,
                process,
                peer: Some(peer),
            } => write!(f, "r{rank}.{process}.{peer}"),
            Choice::HelperDown => write!(f, "H"),
            Choice::Dial { joiner } => write!(f, "D{joiner}"),
            Choice::DialLate { joiner } => write!(f, "J{joiner}"),
            Choice::Exit { node } => write!(f, "x{node}"),
            Choice::Leave { node } => write!(f, "l{node}"),
        }
    }
}

impl Choice {
    /// Reads one token as [`Choice`]'s `Display` writes it.
    pub fn parse(token: &str) -> Result<Choice, String> {
        let bad = || format!("path token {token:?}: not a choice (as in d3.1, m0, c2, s0.2, r3.1)");
        let mut chars = token.chars();
        let kind = chars.next().ok_or_else(bad)?;
        let rest = chars.as_str();
        let one = |text: &str| text.parse::<u64>().map_err(|_| bad());
        let two = |text: &str| -> Result<(u64, u64), String> {
            let (a, b) = text.split_once('.').ok_or_else(bad)?;
            Ok((one(a)?, one(b)?))
        };
        let life = |n: u64| usize::try_from(n).map_err(|_| bad());
        Ok(match kind {
            'd' => {
                let (conn, from) = two(rest)?;
                Choice::Deliver {
                    conn,
                    from: life(from)?,
                }
            }
            'f' => Choice::Flush {
                node: life(one(rest)?)?,
            },
            't' => Choice::Tick {
                node: life(one(rest)?)?,
            },
            'm' => Choice::Multicast {
                node: life(one(rest)?)?,
            },
            'c' => Choice::Crash {
                node: life(one(rest)?)?,
                lost: true,
            },
            'C' => Choice::Crash {
                node: life(one(rest)?)?,
                lost: false,
            },
            'p' => Choice::PowerCut {
                node: life(one(rest)?)?,
            },
            'b' => Choice::Break { conn: one(rest)? },
            's' => {
                let (at, of) = two(rest)?;
                Choice::Suspect {
                    at: life(at)?,
                    of: life(of)?,
                }
            }
            'e' => {
                let (at, of) = two(rest)?;
                Choice::HeardAgain {
                    at: life(at)?,
                    of: life(of)?,
                }
            }
            'r' => {
                let (rank_process, peer) = match rest.matches('.').count() {
                    2 => {
                        let (head, peer) = rest.rsplit_once('.').ok_or_else(bad)?;
                        (head, Some(life(one(peer)?)?))
                    }
                    _ => (rest, None),
                };
                let (rank, process) = two(rank_process)?;
                Choice::Restart {
                    rank: u16::try_from(rank).map_err(|_| bad())?,
                    process: u32::try_from(process).map_err(|_| bad())?,
                    peer,
                }
            }
            'H' if rest.is_empty() => Choice::HelperDown,
            'D' => Choice::Dial {
                joiner: life(one(rest)?)?,
            },
            'J' => Choice::DialLate {
                joiner: life(one(rest)?)?,
            },
            'x' => Choice::Exit {
                node: life(one(rest)?)?,
            },
            'l' => Choice::Leave {
                node: life(one(rest)?)?,
            },
            _ => return Err(bad()),
        })
    }
}

/// What the per-state checks read of one life: deliveries and views counted, incarnation, join
/// point, end and phase.
type HistoryMark = (usize, usize, Option<u64>, Option<u64>, u8, Option<Phase>);

/// One state: the world, what the path spent, and what the checks need to remember of the path.
#[derive(Clone)]
pub struct World {
    pub scope: Scope,
    pub sim: Sim,
    pub spent: Spent,
    /// Lives some fault touched (see [`World::take`]): only they may end excluded.
    pub touched: BTreeSet<LifeId>,
    /// Detector reports made, as (at, of): each detector reports a life once.
    pub reported: BTreeSet<(LifeId, LifeId)>,
    /// Pool processes used so far.
    pub pool_used: BTreeSet<u32>,
    /// For each life whose process went away (crash, power cut, exit): how many of the segments on
    /// their way on each direction of each connection were written before it did, as (connection,
    /// writer) → count. Those arrive first (FIFO); the count falls as they arrive or are lost.
    pub written_before_gone: BTreeMap<LifeId, BTreeMap<(ConnKey, LifeId), usize>>,
}

impl World {
    /// The formed group of the scope's size, before anything happens.
    pub fn new(scope: Scope) -> World {
        let knobs = Knobs {
            // Every timer is a tick or two away, so a budget of a few ticks reaches each of them.
            failure_timeout_steps: 2,
            redial_interval_steps: 1,
            view_change_timeout_ticks: 1,
            state_transfer: scope.state_transfer,
            snapshot_chunk_bytes: 64,
            ..Knobs::default()
        };
        let delay = DelayProfile {
            max_steps: 0,
            slow_percent: 0,
        };
        let mut sim = Sim::with_knobs(scope.members, 0, delay, knobs);
        sim.dials_on_demand = true;
        sim.port_mode = scope.ports;
        // The ranks gone at the start leave one after the other, each view change run to its end.
        for rank in (1..=scope.members).filter(|r| scope.gone_at_start(*r)) {
            sim.leave(rank);
            sim.run_until_quiet();
            sim.apply(Action::Exit {
                node: sim.current(rank),
            });
            sim.run_until_quiet();
        }
        if scope.helper == 1 {
            sim.apply(Action::HelperDown);
        }
        World {
            scope,
            sim,
            spent: Spent::default(),
            touched: BTreeSet::new(),
            reported: BTreeSet::new(),
            pool_used: BTreeSet::new(),
            written_before_gone: BTreeMap::new(),
        }
    }

    /// Every choice the scope allows now, in a fixed order (deliveries first: they are most of a
    /// path, and a depth-first search then reaches quiet states soon).
    pub fn choices(&self) -> Vec<Choice> {
        let sim = &self.sim;
        let scope = &self.scope;
        let spent = &self.spent;
        let mut out = Vec::new();
        for (conn, from) in sim.net.busy_directions() {
            out.push(Choice::Deliver { conn, from });
        }
        for (&joiner, due) in &sim.dials_due {
            if !due.is_empty() && sim.lives[joiner].running() {
                out.push(Choice::Dial { joiner });
                if matches!(due.front(), Some(Action::DialAddress { .. }))
                    && spent.late_greetings < scope.late_greetings
                {
                    out.push(Choice::DialLate { joiner });
                }
            }
        }
        let running = sim.running();
        for &node in &running {
            let life = &sim.lives[node];
            let finished = life.endpoint.as_ref().is_some_and(|e| e.is_finished());
            if finished {
                out.push(Choice::Exit { node });
                continue;
            }
            if scope.separate_flushes {
                out.push(Choice::Flush { node });
            }
            let member = life.phase() == Some(Phase::Member) && !life.leave_requested;
            // An application multicasts whenever it likes: while its process joins or its group
            // changes views too (the message waits in the backlog until the member may send it).
            let phase_writes = matches!(life.phase(), Some(Phase::Joining | Phase::Member | Phase::Changing));
            let writes = phase_writes && !life.leave_requested && scope.writes(life.rank.0);
            if writes && (life.history.multicasts.len() as u32) < scope.multicasts_per_life {
                out.push(Choice::Multicast { node });
            }
            if member && spent.leaves < scope.leaves {
                out.push(Choice::Leave { node });
            }
            if spent.ticks < scope.ticks {
                out.push(Choice::Tick { node });
            }
        }
        // Detector reports: of a life this member's view lists, once per pair; a report of a process that
        // is gone is always due, one of a running process is a false suspicion.
        for &at in &running {
            if sim.lives[at].endpoint.as_ref().is_some_and(|e| e.is_finished()) {
                continue;
            }
            for rank in 1..=scope.members {
                let Some(of) = sim.listed_life(at, Rank(rank)).filter(|of| *of != at) else {
                    continue;
                };
                if self.reported.contains(&(at, of)) {
                    continue;
                }
                if !sim.lives[of].running() || spent.false_suspicions < scope.false_suspicions {
                    out.push(Choice::Suspect { at, of });
                }
            }
        }
        // A detector that reported a running life hears it again while a connection carries its
        // heartbeats: the member withdraws its suspicion.
        if spent.withdrawals < scope.withdrawals {
            for &(at, of) in &self.reported {
                let at_runs =
                    sim.lives[at].running() && !sim.lives[at].endpoint.as_ref().is_some_and(|e| e.is_finished());
                if at_runs && sim.lives[of].running() && sim.net.connected(at, of) {
                    out.push(Choice::HeardAgain { at, of });
                }
            }
        }
        for &node in &running {
            if !scope.may_fault(sim.lives[node].rank.0) {
                continue;
            }
            if spent.crashes < scope.crashes {
                out.push(Choice::Crash { node, lost: true });
                out.push(Choice::Crash { node, lost: false });
            }
            if spent.power_cuts < scope.power_cuts {
                out.push(Choice::PowerCut { node });
            }
        }
        if spent.breaks < scope.breaks {
            for conn in sim.net.open_conns() {
                let ends = sim.net.ends(conn).expect("listed");
                if ends.iter().all(|l| sim.lives[*l].running()) {
                    out.push(Choice::Break { conn });
                }
            }
        }
        if spent.restarts < scope.restarts {
            // The pool's lowest free identity, and (so that two processes of one path may tie either
            // way) one above it when a second restart is still in the budget.
            let free: Vec<u32> = (1..=scope.restarts).filter(|k| !self.pool_used.contains(k)).collect();
            let tries = if spent.restarts + 1 < scope.restarts { 2 } else { 1 };
            for rank in (1..=scope.members).filter(|r| scope.may_fault(*r)) {
                for &process in free.iter().take(tries) {
                    if sim.helper_up {
                        out.push(Choice::Restart {
                            rank,
                            process,
                            peer: None,
                        });
                        continue;
                    }
                    // Without the helper it asks a member it knows of (`--peer`): each is a branch.
                    let peers = sim.members().into_iter().filter(|l| sim.lives[*l].rank.0 != rank);
                    for peer in peers {
                        out.push(Choice::Restart {
                            rank,
                            process,
                            peer: Some(peer),
                        });
                    }
                }
            }
        }
        if scope.helper == 2 && sim.helper_up {
            out.push(Choice::HelperDown);
        }
        out
    }

    /// True if `choices` (this state's) leave nothing to happen but flushes: every frame delivered,
    /// every budget spent, every report made. With `f1` a flush is always a choice, so a state is
    /// quiet once only flushes are left (and the search still takes each of them).
    pub fn quiet(choices: &[Choice]) -> bool {
        choices.iter().all(|c| matches!(c, Choice::Flush { .. }))
    }

    /// Takes one choice: records what it spends and touches, applies it to the world, and lets every
    /// driver flush (unless flushes are choices of their own).
    ///
    /// A fault touches: the life that crashed or lost power; both ends of a broken connection; both
    /// lives of a false suspicion; every life of a rank a second process asks for while one still
    /// runs, and that process; every joiner still waiting when a fault happens (a restart of a rank
    /// whose process is gone is none: the group must admit it without costing anyone); and the
    /// reporter of a gone process whose frames to it are still on their way (a report a failure timeout after the last heartbeat
    /// outruns them only over a slow link).
    pub fn take(&mut self, choice: Choice) {
        let faults_before = self.spent.faults();
        // A restart while the rank's old process runs (counted apart: `faults` leaves restarts out).
        let mut disturbs = false;
        let action = self.action(choice);
        let sim = &mut self.sim;
        match choice {
            Choice::Tick { .. } => {
                self.spent.ticks += 1;
                sim.now_step += 1;
            }
            Choice::Crash { node, .. } => {
                self.spent.crashes += 1;
                self.touched.insert(node);
            }
            Choice::PowerCut { node } => {
                self.spent.power_cuts += 1;
                self.touched.insert(node);
            }
            Choice::Break { conn } => {
                self.spent.breaks += 1;
                self.touched.extend(sim.net.ends(conn).into_iter().flatten());
            }
            Choice::HeardAgain { at, of } => {
                self.spent.withdrawals += 1;
                self.reported.remove(&(at, of));
            }
            Choice::Suspect { at, of } => {
                self.reported.insert((at, of));
                if sim.lives[of].running() {
                    self.spent.false_suspicions += 1;
                    self.touched.extend([at, of]);
                } else if self.written_before_gone.get(&of).is_some_and(|links| {
                    links
                        .iter()
                        .any(|(link, first)| sim.net.frame_among_first(*link, *first, at))
                }) {
                    // A real detector reports a gone process a failure timeout after its last
                    // heartbeat; a frame written to `at` before that process went away (by it or by
                    // anyone else: a decision another member relayed) is still unread then only if
                    // its link (or the reader) was slow for that long: a fault at `at`'s side.
                    self.touched.insert(at);
                }
            }
            Choice::Restart { rank, process, peer } => {
                self.spent.restarts += 1;
                sim.next_peer = peer;
                self.pool_used.insert(process);
                // Two processes for one rank: either may lose. A restart of a rank whose process is
                // gone is no fault: the group must admit it, and disturb nobody doing so.
                let old = sim
                    .lives
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.rank.0 == rank && l.running());
                let old: Vec<LifeId> = old.map(|(id, _)| id).collect();
                if !old.is_empty() {
                    self.touched.extend(old);
                    self.touched.insert(sim.lives.len());
                    disturbs = true;
                }
                sim.next_process = Some(pool_process(process));
            }
            Choice::Dial { joiner } => {
                sim.dials_due.get_mut(&joiner).and_then(|due| due.pop_front());
            }
            Choice::DialLate { joiner } => {
                // A slow link: it touches both ends.
                self.spent.late_greetings += 1;
                self.touched.insert(joiner);
                if let Some(Action::DialAddress { port, .. }) =
                    sim.dials_due.get_mut(&joiner).and_then(|due| due.pop_front())
                {
                    self.touched.extend(sim.listener(port));
                }
            }
            Choice::Leave { .. } => self.spent.leaves += 1,
            Choice::Deliver { .. }
            | Choice::Flush { .. }
            | Choice::Multicast { .. }
            | Choice::Exit { .. }
            | Choice::HelperDown => {}
        }
        if let Choice::Crash { node, .. } | Choice::PowerCut { node } | Choice::Exit { node } = choice {
            self.written_before_gone
                .insert(node, sim.net.queued_by_link().into_iter().collect());
        }
        if let Some(action) = action {
            sim.apply(action);
        }
        self.forget_arrived(choice);
        // A joiner still waiting for its admission when any fault happens may be the one it costs (its
        // admission is a view change the fault may disturb).
        if disturbs || self.spent.faults() > faults_before {
            self.touched.extend(self.sim.joiners());
        }
        if !self.scope.separate_flushes {
            self.sim.flush_all();
        }
    }

    /// Brings [`World::written_before_gone`] up to date after `choice`: a delivery takes one segment
    /// off the front of its direction; a crash, a break or a power cut may have dropped some (from the
    /// back: what got through is a prefix).
    fn forget_arrived(&mut self, choice: Choice) {
        if self.written_before_gone.is_empty() {
            return; // nothing gone yet: most states of a search
        }
        let queued: BTreeMap<(ConnKey, LifeId), usize> = self.sim.net.queued_by_link().into_iter().collect();
        for links in self.written_before_gone.values_mut() {
            for (link, first) in links.iter_mut() {
                if matches!(choice, Choice::Deliver { conn, from } if (conn, from) == *link) {
                    *first = first.saturating_sub(1);
                }
                *first = (*first).min(queued.get(link).copied().unwrap_or(0));
            }
            links.retain(|_, first| *first > 0);
        }
        self.written_before_gone.retain(|_, links| !links.is_empty());
    }

    /// The simulator's action for `choice` in this state (a dial: the joiner's next one).
    fn action(&self, choice: Choice) -> Option<Action> {
        Some(match choice {
            Choice::Deliver { conn, from } => Action::DeliverOn { conn, from },
            Choice::Flush { node } => Action::Flush { node },
            Choice::Tick { node } => Action::Tick { node },
            Choice::Multicast { node } => Action::Multicast { node },
            Choice::Crash { node, lost } => Action::Crash {
                node,
                loss: if lost { Loss::All } else { Loss::Nothing },
            },
            Choice::PowerCut { node } => Action::PowerCut { node },
            Choice::Break { conn } => Action::Break { conn },
            Choice::Suspect { at, of } => Action::Suspect { at, of },
            Choice::HeardAgain { at, of } => Action::HeardAgain { at, of },
            Choice::Restart { rank, .. } => Action::Restart { rank: Rank(rank) },
            Choice::Dial { joiner } => self.sim.dials_due.get(&joiner)?.front()?.clone(),
            Choice::DialLate { joiner } => match self.sim.dials_due.get(&joiner)?.front()? {
                &Action::DialAddress { joiner, rank, port } => Action::DialLate { joiner, rank, port },
                _ => return None,
            },
            Choice::Exit { node } => Action::Exit { node },
            Choice::Leave { node } => Action::Leave { node },
            Choice::HelperDown => Action::HelperDown,
        })
    }

    /// How the story would name `choice` now, with its replay token.
    pub fn describe(&self, choice: Choice) -> String {
        let text = match self.action(choice) {
            Some(action) => self.sim.describe(&action),
            None => "nothing to do".to_string(),
        };
        match choice {
            Choice::Restart {
                process, peer: None, ..
            } => format!("{text} as pool process {process}  [{choice}]"),
            Choice::Restart {
                process,
                peer: Some(peer),
                ..
            } => format!(
                "{text} as pool process {process}, asking {} for the roster  [{choice}]",
                self.sim.name(peer)
            ),
            _ => format!("{text}  [{choice}]"),
        }
    }

    /// True if anything the per-state checks read (each life's deliveries, views, incarnation, end
    /// and phase, the lives themselves, what faults touched) differs from `before`.
    pub fn histories_changed(&self, before: &World) -> bool {
        let mark = |world: &World| -> Vec<HistoryMark> {
            let lives = world.sim.lives.iter();
            lives
                .map(|l| {
                    let h = &l.history;
                    (
                        h.deliveries.len(),
                        h.views.len(),
                        h.incarnation,
                        h.joined,
                        h.end as u8,
                        l.phase(),
                    )
                })
                .collect()
        };
        self.touched != before.touched || mark(self) != mark(before)
    }

    /// A fingerprint of everything that decides the future: every life (its endpoint with its core,
    /// its history and application state), the network with what is in flight, the helper, the clock,
    /// the dials due and what the path spent. Not the story or the random stream (which decides
    /// nothing in an explored world).
    pub fn fingerprint(&self) -> u128 {
        let sim = &self.sim;
        let mut hasher = Hasher128::default();
        sim.lives.hash(&mut hasher);
        sim.net.hash(&mut hasher);
        sim.helper.hash(&mut hasher);
        sim.helper_up.hash(&mut hasher);
        sim.now_step.hash(&mut hasher);
        sim.dials_due.hash(&mut hasher);
        self.spent.hash(&mut hasher);
        self.touched.hash(&mut hasher);
        self.reported.hash(&mut hasher);
        self.pool_used.hash(&mut hasher);
        self.written_before_gone.hash(&mut hasher);
        hasher.finish128()
    }
}

/// A 128-bit hash of a state: two independent 64-bit lanes of multiply-rotate mixing (not for
/// adversarial input, only to tell states apart; SipHash was a large part of the search's time).
#[derive(Default)]
struct Hasher128 {
    lanes: [u64; 2],
}

impl Hasher128 {
    const K: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f];

    fn mix(&mut self, word: u64) {
        for (lane, k) in self.lanes.iter_mut().zip(Self::K) {
            *lane = (*lane ^ word).wrapping_mul(k).rotate_left(29).wrapping_add(k);
        }
    }

    fn finish128(&self) -> u128 {
        let [a, b] = self.lanes;
        let a = (a ^ (a >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let b = (b ^ (b >> 29)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        u128::from(a ^ (a >> 31)) | u128::from(b ^ (b >> 32)) << 64
    }
}

impl Hasher for Hasher128 {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.mix(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.mix(u64::from_le_bytes(last) ^ (bytes.len() as u64) << 56);
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.finish128() as u64
    }
}
