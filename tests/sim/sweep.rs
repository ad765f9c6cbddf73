//! Random runs: one seed decides a whole run of one fault family, which is then checked.
//!
//! A run has two phases. The *chaos* phase interleaves frame deliveries (any ready link head), ticks,
//! flushes, a planned workload of multicasts and the family's planned faults. The *liveness* phase stops
//! the faults and lets frames, detector reports, flushes and ticks go on until the group settles; then
//! the checker judges every life's history. A seed whose faults may have cost the group its quorum
//! (only the partition family does that, on purpose) is judged on safety alone.
//!
//! Faults stay sane by construction: a crash, leave, false suspicion or cut is only applied if the lives
//! left healthy form a quorum of every view still in use ([`Driver::can_lose`]); otherwise it is skipped
//! (and the story says so). A member still waiting for its snapshot stops if its sponsor goes first, so
//! it counts as lost with its sponsor (and so on down a chain of sponsors).
//!
//! Knobs drawn per seed widen the world to what real processes and connections do: big payloads under
//! a frame limit (every family); the endpoints' failure timeout and redial interval; how long a dial
//! takes; which port a restarted process binds (a fresh one, its rank's old one, or the lowest free one,
//! so stale addresses reach nothing, a newer process of the rank, or another rank's process); whether a
//! restarted process finds the group through the helper or through a live member; state transfer (in
//! half the runs, in small chunks). Holding cuts silence heartbeats (detectors time out while the held
//! frames wait, to arrive after the heal on the same connection); breaking cuts close connections. The
//! partition family also cuts one link alone (once the group is done with earlier faults); the rejoin
//! family restarts at any moment after a process died, starts two processes for one rank at once, starts
//! a process for a rank that is still alive (refused, it gives up after a join timeout), crashes or
//! removes the sponsor of a returning member before or while it hands the state over, and takes the
//! helper away.

use std::collections::BTreeSet;

use tom::protocol::Phase;
use tom::types::Rank;

use super::check::{End, Expect};
use super::net::{CutMode, DelayProfile, LifeId};
use super::rng::Rng;
use super::{Action, Knobs, Loss, PortMode, Sim};

/// A family of random runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// No faults: N = 2..8, multicasts from everyone, random delays (issue 3).
    NoFault,
    /// Crashes at any moment (mid-multicast, during view changes, several at once) and clean leaves
    /// (issue 5).
    Crash,
    /// False suspicions of live members, partitions that hold or drop, healing later (issue 6).
    Partition,
    /// Crash, restart and rejoin cycles, concurrent rejoins, crashes of joiners (issue 7).
    Rejoin,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 4] = [Family::NoFault, Family::Crash, Family::Partition, Family::Rejoin];

    /// The name `SIM_SCENARIO` uses.
    pub fn name(self) -> &'static str {
        match self {
            Family::NoFault => "nofault",
            Family::Crash => "crash",
            Family::Partition => "partition",
            Family::Rejoin => "rejoin",
        }
    }

    /// The family called `name`.
    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// What the plan does at a given step of the chaos phase.
#[derive(Clone, Copy, Debug, Hash)]
enum Planned {
    Multicast,
    /// A random healthy member crashes (right after a multicast of its own if `mid_multicast`).
    Crash {
        mid_multicast: bool,
    },
    /// Waits for a view change in progress, then crashes a member taking part in it.
    CrashDuringChange,
    /// Two members crash in the same step.
    DoubleCrash,
    Leave,
    /// A detector wrongly suspects a live member.
    FalseSuspicion,
    /// A cut between a random split, healed `duration_steps` later.
    Partition {
        mode: CutMode,
        duration_steps: u64,
        /// Skip the quorum guard: the group may stop (then only safety is checked).
        reckless: bool,
    },
    /// A rank whose newest life is gone comes back.
    Restart,
    /// Two processes start for one rank whose newest life is gone, at the same moment.
    RestartTwice,
    /// A process starts for a rank whose life is alive and healthy: the group refuses it until it gives
    /// up (its join timeout), and nothing of the group changes.
    RejoinLiveRank,
    /// Only the link between two members breaks (both ends' detectors notice): one end is excluded,
    /// never both.
    CutOneLink,
    /// Waits for a view change admitting a new life (or its snapshot in flight), then crashes the
    /// life that sponsors it, or makes it leave.
    CrashSponsor {
        leave: bool,
    },
    /// The helper goes away: restarted processes find the group through a live member, and admitted
    /// ones cannot register their address.
    HelperDown,
}

/// One random run in progress.
pub struct Driver {
    pub sim: Sim,
    family: Family,
    plan: Vec<(u64, Planned)>,
    chaos_steps: u64,
    /// Lives a fault has marked for exclusion (falsely suspected, or on the losing side of a cut).
    doomed: BTreeSet<LifeId>,
    /// The two ends of each link cut alone, with the newest view id when it was cut: the first view
    /// after it that drops either end must keep the other (unless another fault took that one).
    cut_links: Vec<(LifeId, LifeId, u64)>,
    /// Lives some fault other than a lone cut link took (crash, leave, false suspicion, partition).
    taken: BTreeSet<LifeId>,
    /// The two sides of every partition made (lives, as they ran at the cut).
    cuts: Vec<(Vec<LifeId>, Vec<LifeId>)>,
}

impl Driver {
    /// Draws every parameter of the run from `seed`.
    pub fn new(family: Family, seed: u64) -> Driver {
        let mut setup = Rng::new(seed);
        let size = match family {
            Family::NoFault => setup.range(2, 8),
            Family::Crash => setup.range(2, 8),
            Family::Partition => setup.range(3, 7),
            Family::Rejoin => setup.range(3, 6),
        } as u16;
        let delay = DelayProfile {
            max_steps: [0, 1, 3, 10, 30][setup.below(5) as usize],
            slow_percent: [0, 0, 2, 10][setup.below(4) as usize],
        };
        // One run in five sends big payloads (up to 8 KiB) under a 32 KiB frame limit, with the cut's
        // payloads in 8 KiB chunks: a view change then carries far more than one frame may.
        let big_payloads = setup.percent(20);
        let chunk_bytes = if big_payloads {
            8 * 1024
        } else {
            tom::protocol::CARRY_CHUNK_BYTES
        };
        // The world's knobs: state transfer in half the runs (small chunks, so a state takes several),
        // the endpoints' failure timeout and redial interval, how long a dial takes, which port a
        // restarted process binds, and how it finds the group.
        let failure_timeout = setup.range(600, 2_500);
        let knobs = Knobs {
            carry_chunk_bytes: chunk_bytes,
            failure_timeout_steps: failure_timeout,
            // As the runtime: a fifth of the failure timeout.
            redial_interval_steps: failure_timeout / 5,
            state_transfer: setup.percent(50),
            snapshot_chunk_bytes: [8, 24, 64, 512][setup.below(4) as usize],
            data_batch_bytes: 0,
            ..Knobs::default()
        };
        let dial_delay_max_steps = [0, 3, 20, 60][setup.below(4) as usize];
        let port_mode = [PortMode::Fresh, PortMode::SameAsRank, PortMode::LowestFree][setup.below(3) as usize];
        let peer_lookup_percent = [0, 0, 30, 100][setup.below(4) as usize];
        let helper_goes_down = family == Family::Rejoin && setup.percent(15);
        // How many messages one data frame carries: the flushes decide how many wait, this bounds
        // them, from one message per frame (0 bytes: a run of one) to the runtime's default. Drawn
        // from a stream of its own, so the draws above keep their values for a given seed.
        let mut batching = Rng::new(seed ^ 0x0BA7_C4E5);
        let knobs = Knobs {
            data_batch_bytes: if big_payloads {
                // Under the 32 KiB frame limit: a run of big payloads stays below it.
                [0, 2 * 1024, 8 * 1024][batching.below(3) as usize]
            } else {
                [0, 4, 16, 64, tom::protocol::DATA_BATCH_BYTES][batching.below(5) as usize]
            },
            ..knobs
        };
        let mut sim = Sim::with_knobs(size, setup.next_u64(), delay, knobs);
        sim.dial_delay_max_steps = dial_delay_max_steps;
        sim.port_mode = port_mode;
        sim.peer_lookup_percent = peer_lookup_percent;
        if big_payloads {
            sim.payload_pad_max = 8 * 1024;
            sim.frame_limit_bytes = Some(32 * 1024);
        }
        sim.restart_any_moment = family == Family::Rejoin && setup.percent(50);
        sim.seed = seed;
        sim.auto_detect = true;
        sim.detect_delay_max_steps = setup.range(10, 400);
        sim.flush_after_percent = [0, 30, 70, 100][setup.below(4) as usize];
        let chaos_steps = setup.range(300, 2500);
        let mut plan = Vec::new();
        let multicasts = setup.range(size as u64, 8 * size as u64);
        for _ in 0..multicasts {
            plan.push((setup.below(chaos_steps), Planned::Multicast));
        }
        let mut faults = Vec::new();
        match family {
            Family::NoFault => {}
            Family::Crash => {
                let crashes = setup.range(1, size as u64);
                for _ in 0..crashes {
                    let what = match setup.below(5) {
                        0 | 1 => Planned::Crash { mid_multicast: false },
                        2 => Planned::Crash { mid_multicast: true },
                        3 => Planned::CrashDuringChange,
                        _ => Planned::DoubleCrash,
                    };
                    faults.push(what);
                }
                if setup.percent(25) {
                    faults.push(Planned::Leave);
                }
            }
            Family::Partition => {
                for _ in 0..setup.range(0, 2) {
                    faults.push(Planned::FalseSuspicion);
                }
                if setup.percent(30) {
                    faults.push(Planned::CutOneLink);
                }
                for _ in 0..setup.range(1, 2) {
                    let mode = if setup.percent(50) {
                        CutMode::Hold
                    } else {
                        CutMode::Drop
                    };
                    let what = Planned::Partition {
                        mode,
                        duration_steps: setup.range(10, 800),
                        reckless: setup.percent(15),
                    };
                    faults.push(what);
                }
                if setup.percent(30) {
                    faults.push(Planned::Crash {
                        mid_multicast: setup.percent(50),
                    });
                }
            }
            Family::Rejoin => {
                let cycles = setup.range(1, 4);
                for _ in 0..cycles {
                    let what = match setup.below(6) {
                        0 => Planned::CrashDuringChange,
                        1 => Planned::FalseSuspicion,
                        2 if size >= 5 => Planned::DoubleCrash,
                        3 => Planned::Crash { mid_multicast: true },
                        _ => Planned::Crash { mid_multicast: false },
                    };
                    faults.push(what);
                    faults.push(if setup.percent(20) {
                        Planned::RestartTwice
                    } else {
                        Planned::Restart
                    });
                    if setup.percent(30) {
                        faults.push(Planned::Restart);
                    }
                }
                if setup.percent(20) {
                    faults.push(Planned::RejoinLiveRank);
                }
                if setup.percent(25) {
                    faults.push(Planned::CrashSponsor {
                        leave: setup.percent(30),
                    });
                }
                if helper_goes_down {
                    faults.push(Planned::HelperDown);
                }
                if setup.percent(20) {
                    faults.push(Planned::Leave);
                }
            }
        }
        for what in faults {
            plan.push((setup.below(chaos_steps), what));
        }
        // Stable by step: equal steps keep their drawing order.
        plan.sort_by_key(|(step, _)| *step);
        plan.reverse();
        let knobs = sim.knobs().clone();
        sim.note(format!(
            "family {}, seed {seed}: {size} members, delays ≤{} steps ({}% slow), detector ≤{} steps, \
             flush after {}% of inputs, data runs of ≤{} payload bytes, {} chaos steps, {} planned events; failure timeout {} steps, \
             redial every {} steps, dials take ≤{} steps, restarts bind {:?} ports, {}% of lookups through a \
             peer, state transfer {}{}{}",
            family.name(),
            delay.max_steps,
            delay.slow_percent,
            sim.detect_delay_max_steps,
            sim.flush_after_percent,
            knobs.data_batch_bytes,
            chaos_steps,
            plan.len(),
            knobs.failure_timeout_steps,
            knobs.redial_interval_steps,
            sim.dial_delay_max_steps,
            sim.port_mode,
            sim.peer_lookup_percent,
            if knobs.state_transfer {
                format!("on ({}-byte chunks)", knobs.snapshot_chunk_bytes)
            } else {
                "off".to_string()
            },
            if big_payloads {
                ", big payloads under a 32 KiB frame limit"
            } else {
                ""
            },
            if sim.restart_any_moment {
                ", restarts at any moment"
            } else {
                ""
            }
        ));
        Driver {
            sim,
            family,
            plan,
            chaos_steps,
            doomed: BTreeSet::new(),
            cut_links: Vec::new(),
            taken: BTreeSet::new(),
            cuts: Vec::new(),
        }
    }

    /// A driver with no plan over a group a test scripts: the test applies faults through it (for now
    /// [`Driver::cut_link`]) and ends with [`Driver::finish`].
    pub fn scripted(sim: Sim, family: Family) -> Driver {
        Driver {
            sim,
            family,
            plan: Vec::new(),
            chaos_steps: 0,
            doomed: BTreeSet::new(),
            cut_links: Vec::new(),
            taken: BTreeSet::new(),
            cuts: Vec::new(),
        }
    }

    /// Marks `lives` as taken by a fault the script made before handing the world to this driver (a
    /// false suspicion, say): the checks judge them as they would the driver's own.
    pub fn taken_by_script(&mut self, lives: &[LifeId]) {
        self.doomed.extend(lives.iter().copied());
        self.taken.extend(lives.iter().copied());
    }

    /// Runs the chaos phase, then the liveness phase, then the checker. Panics with the story on any
    /// failure.
    pub fn run(&mut self) {
        while self.sim.now_step < self.chaos_steps || !self.plan.is_empty() {
            self.chaos_step();
            if self.sim.now_step > self.chaos_steps * 4 {
                // Planned items waiting for a condition (a view change, a restartable rank) give up.
                self.plan.clear();
            }
        }
        self.finish();
    }

    /// The liveness phase, then the checker (the end of [`Driver::run`], and of a scripted driver).
    pub fn finish(&mut self) {
        self.sim.note("faults stop: liveness phase");
        if self.sim.liveness_waived {
            self.sim.try_settle(20_000);
            self.sim.check(Expect::Safety);
        } else {
            self.sim.settle(200_000);
            self.sim.check(Expect::Settled);
            self.check_cut_links();
            self.check_no_healthy_exclusion();
        }
    }

    /// No life ends excluded unless a fault touched it (PROTOCOL.md §6): it crashed, left, was
    /// suspected falsely, was on the side of a cut without a quorum or at an end of a link cut alone,
    /// a cut separated it from the member that proposed the view excluding it, or it waited for its state from
    /// a sponsor that one of these took. Every fault the sweep makes keeps a healthy quorum, so an
    /// exclusion outside these is the protocol's doing.
    fn check_no_healthy_exclusion(&self) {
        let separated = |a: LifeId, b: LifeId| {
            self.cuts
                .iter()
                .any(|(x, y)| (x.contains(&a) && y.contains(&b)) || (x.contains(&b) && y.contains(&a)))
        };
        let cut_from_author = |life: LifeId| {
            let excluding = self.sim.exclusions.get(&life).and_then(|id| self.sim.views.get(id));
            let author = excluding.and_then(|view| self.sim.authors.get(view));
            author.is_some_and(|a| separated(life, *a))
        };
        let touched = |life: LifeId| {
            self.doomed.contains(&life)
                || cut_from_author(life)
                || std::iter::successors(self.sponsor_of_admission(life), |s| self.sponsor_of_admission(*s))
                    .take(self.sim.lives.len())
                    .any(|sponsor| self.doomed.contains(&sponsor))
        };
        for life in 0..self.sim.lives.len() {
            if self.sim.lives[life].history.end == End::Excluded && !touched(life) {
                self.sim.fail(&format!(
                    "{} was excluded, yet no fault touched it (no crash, leave, false suspicion or cut of it)",
                    self.sim.name(life)
                ));
            }
        }
    }

    /// A link cut alone excludes at most one of its ends: the first view after the cut that drops
    /// either end keeps the other (unless another fault took that one too).
    fn check_cut_links(&self) {
        for (a, b, cut_at_view) in &self.cut_links {
            if self.taken.contains(a) || self.taken.contains(b) {
                continue;
            }
            let process = |l: &LifeId| self.sim.lives[*l].process;
            let lists = |view: &tom::types::View, l: &LifeId| view.members.iter().any(|m| m.process == process(l));
            let first_drop = self
                .sim
                .views
                .range(cut_at_view + 1..)
                .map(|(_, view)| view)
                .find(|view| !lists(view, a) || !lists(view, b));
            if let Some(view) = first_drop.filter(|view| !lists(view, a) && !lists(view, b)) {
                self.sim.fail(&format!(
                    "one cut link excluded both of its ends, {} and {}, at view {}",
                    self.sim.name(*a),
                    self.sim.name(*b),
                    view.id
                ));
            }
        }
    }

    fn chaos_step(&mut self) {
        let sim = &mut self.sim;
        sim.now_step += 1;
        if let Some(action) = sim.take_due() {
            sim.apply(action);
            return;
        }
        if self.plan.last().is_some_and(|(step, _)| *step <= sim.now_step) {
            let (_, what) = self.plan.pop().expect("checked");
            if !self.perform(what) {
                // Not possible now (no view change to crash into, no rank to restart): try later.
                let retry_at = self.sim.now_step + 20;
                let index = self
                    .plan
                    .iter()
                    .position(|(step, _)| *step <= retry_at)
                    .unwrap_or(self.plan.len());
                self.plan.insert(index, (retry_at, what));
            }
            return;
        }
        let sim = &mut self.sim;
        let roll = sim.rng.below(100);
        let running = sim.running();
        if roll < 12 {
            if let Some(node) = sim.rng.pick(&running) {
                sim.apply(Action::Tick { node });
            }
            return;
        }
        if roll < 22 {
            if let Some(node) = sim.rng.pick(&running) {
                sim.apply(Action::Flush { node });
            }
            return;
        }
        if roll == 22 && sim.rng.below(4) == 0 {
            // Now and then an application falls behind on its deliveries, or catches up.
            if let Some(node) = sim.rng.pick(&running) {
                let busy = !sim.busy.contains(&node);
                sim.apply(Action::Busy { node, busy });
            }
            return;
        }
        let ready = sim.net.ready(sim.now_step);
        if let Some((from, to)) = sim.rng.pick(&ready) {
            sim.apply(Action::Deliver { from, to });
        }
    }

    /// Lives that are members and not marked for exclusion.
    fn healthy(&self) -> Vec<LifeId> {
        let members = self.sim.members();
        // A member still waiting for its snapshot from a sponsor that is doomed or no longer a member
        // stops when the sponsor is excluded: doomed too, and so on down a chain of sponsors.
        let mut unhealthy: BTreeSet<LifeId> = self.doomed.clone();
        loop {
            let more: Vec<LifeId> = members
                .iter()
                .copied()
                .filter(|l| !unhealthy.contains(l))
                .filter(|l| {
                    self.sponsor_awaited_by(*l)
                        .is_some_and(|s| unhealthy.contains(&s) || !members.contains(&s))
                })
                .collect();
            if more.is_empty() {
                break;
            }
            unhealthy.extend(more);
        }
        members.into_iter().filter(|l| !unhealthy.contains(l)).collect()
    }

    /// True if the healthy lives minus `lost` still form a quorum of every view in use, from the
    /// oldest view a healthy life is in to the newest view anyone installed.
    fn can_lose(&self, lost: &[LifeId]) -> bool {
        let keep: Vec<LifeId> = self.healthy().into_iter().filter(|l| !lost.contains(l)).collect();
        let Some(oldest) = keep
            .iter()
            .filter_map(|l| self.sim.lives[*l].node()?.view().map(|v| v.id.0))
            .min()
        else {
            return false;
        };
        let ids: Vec<tom::types::MemberId> = keep
            .iter()
            .filter_map(|l| self.sim.lives[*l].node().map(|n| n.me()))
            .collect();
        self.sim.views.range(oldest..).all(|(_, view)| {
            let voters: Vec<Rank> = ids.iter().filter(|m| view.contains(**m)).map(|m| m.rank).collect();
            view.is_quorum(&voters)
        })
    }

    /// Does one planned item; false if it cannot be done yet and should be retried.
    fn perform(&mut self, what: Planned) -> bool {
        match what {
            Planned::Multicast => {
                let candidates: Vec<LifeId> = self
                    .sim
                    .running()
                    .into_iter()
                    .filter(|l| {
                        matches!(
                            self.sim.lives[*l].phase(),
                            Some(Phase::Member | Phase::Changing | Phase::Joining)
                        )
                    })
                    .collect();
                if let Some(node) = self.sim.rng.pick(&candidates) {
                    self.sim.apply(Action::Multicast { node });
                }
                true
            }
            Planned::Crash { mid_multicast } => {
                let Some(node) = self.pick_loss(&[]) else {
                    self.skip("crash");
                    return true;
                };
                if mid_multicast {
                    self.sim.apply(Action::Multicast { node });
                }
                self.crash(node);
                true
            }
            Planned::CrashDuringChange => {
                let changing: Vec<LifeId> = self
                    .healthy()
                    .into_iter()
                    .filter(|l| self.sim.lives[*l].phase() == Some(Phase::Changing))
                    .collect();
                if changing.is_empty() {
                    return false;
                }
                // The proposer is usually the lowest rank taking part: crash it half of the time.
                let node = if self.sim.rng.percent(50) {
                    changing[0]
                } else {
                    self.sim.rng.pick(&changing).expect("not empty")
                };
                if self.can_lose(&[node]) && !self.sponsors_a_newcomer(node) {
                    self.crash(node);
                } else {
                    self.skip("crash during a view change");
                }
                true
            }
            Planned::DoubleCrash => {
                let Some(first) = self.pick_loss(&[]) else {
                    self.skip("double crash");
                    return true;
                };
                let Some(second) = self.pick_loss(&[first]) else {
                    self.skip("double crash");
                    return true;
                };
                self.crash(first);
                self.crash(second);
                true
            }
            Planned::Leave => {
                let Some(node) = self.pick_loss(&[]) else {
                    self.skip("leave");
                    return true;
                };
                self.doomed.insert(node);
                self.taken.insert(node);
                self.sim.apply(Action::Leave { node });
                true
            }
            Planned::FalseSuspicion => {
                let Some(victim) = self.pick_loss(&[]) else {
                    self.skip("false suspicion");
                    return true;
                };
                let others: Vec<LifeId> = self.healthy().into_iter().filter(|l| *l != victim).collect();
                let Some(at) = self.sim.rng.pick(&others) else {
                    return true;
                };
                self.doomed.insert(victim);
                self.taken.insert(victim);
                self.sim.apply(Action::Suspect { at, of: victim });
                // A detector that took a live member for silent hears it again; a suspicion for a
                // writer that could not write (or a closed connection) is never withdrawn.
                if self.sim.rng.percent(50) {
                    let when = self.sim.now_step + self.sim.rng.range(1, 2 * self.sim.detect_delay_max_steps);
                    self.sim.schedule(when, Action::HeardAgain { at, of: victim });
                }
                true
            }
            Planned::Partition {
                mode,
                duration_steps,
                reckless,
            } => {
                self.partition(mode, duration_steps, reckless);
                true
            }
            Planned::Restart | Planned::RestartTwice => {
                let restartable: Vec<u16> = (1..=self.sim.size).filter(|r| self.sim.restartable(Rank(*r))).collect();
                let Some(rank) = self.sim.rng.pick(&restartable) else {
                    return false;
                };
                self.sim.apply(Action::Restart { rank: Rank(rank) });
                if matches!(what, Planned::RestartTwice) {
                    // The second process loses the race or wins it; the loser gives up after a while.
                    let first = self.sim.current(rank);
                    self.sim.apply(Action::Restart { rank: Rank(rank) });
                    let second = self.sim.current(rank);
                    self.give_up_later(first);
                    self.give_up_later(second);
                }
                true
            }
            Planned::RejoinLiveRank => {
                let healthy = self.healthy();
                let Some(victim) = self.sim.rng.pick(&healthy) else {
                    return true;
                };
                let rank = self.sim.lives[victim].rank;
                self.sim.apply(Action::Restart { rank });
                let intruder = self.sim.current(rank.0);
                self.give_up_later(intruder);
                true
            }
            Planned::CrashSponsor { leave } => {
                // A life waits for its snapshot: its sponsor goes, before or while handing it over.
                let waiting: Vec<(LifeId, LifeId)> = self
                    .sim
                    .members()
                    .into_iter()
                    .filter_map(|l| Some((self.sponsor_awaited_by(l)?, l)))
                    .collect();
                let Some((sponsor, _)) = self.sim.rng.pick(&waiting) else {
                    return false;
                };
                if !self.sim.lives[sponsor].running() || self.doomed.contains(&sponsor) {
                    return true;
                }
                let mut lost = vec![sponsor];
                lost.extend(self.awaiting_from(sponsor));
                if !self.can_lose(&lost) {
                    self.skip("crash of a sponsor");
                    return true;
                }
                self.sim.note(format!(
                    "the sponsor {} of {} goes",
                    self.sim.name(sponsor),
                    lost[1..]
                        .iter()
                        .map(|l| self.sim.name(*l))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                self.doomed.extend(lost.iter().copied());
                self.taken.extend(lost.iter().copied());
                if leave {
                    self.sim.apply(Action::Leave { node: sponsor });
                } else {
                    self.crash(sponsor);
                }
                true
            }
            Planned::HelperDown => {
                self.sim.apply(Action::HelperDown);
                true
            }
            Planned::CutOneLink => {
                let healthy = self.healthy();
                if healthy.len() < 3 || self.sim.net.is_cut() {
                    return true;
                }
                if !self.done_with_earlier_faults() {
                    return false;
                }
                let a = self.sim.rng.pick(&healthy).expect("not empty");
                let others: Vec<LifeId> = healthy.iter().copied().filter(|l| *l != a).collect();
                let b = self.sim.rng.pick(&others).expect("not empty");
                self.cut_link(a, b)
            }
        }
    }

    /// Cuts the link between `a` and `b` alone (a breaking cut, healed later), to be judged at the end
    /// by [`Driver::check_cut_links`]. False if it must wait: the group is not done with earlier faults.
    pub fn cut_link(&mut self, a: LifeId, b: LifeId) -> bool {
        if !self.done_with_earlier_faults() {
            return false;
        }
        // Either end may be the one excluded: the rest must keep a quorum without either.
        if !(self.can_lose(&[a]) && self.can_lose(&[b])) {
            self.skip("single-link cut");
            return true;
        }
        let (rank_a, rank_b) = (self.sim.lives[a].rank, self.sim.lives[b].rank);
        self.doomed.extend([a, b]);
        let newest_view = self.sim.views.keys().next_back().copied().unwrap_or(1);
        self.cut_links.push((a, b, newest_view));
        self.sim.apply(Action::Partition {
            side_a: vec![rank_a],
            side_b: vec![rank_b],
            mode: CutMode::Drop,
        });
        let heal_at = self.sim.now_step + self.sim.rng.range(10, 800);
        self.sim.schedule(heal_at, Action::Heal);
        true
    }

    /// True once the group is done with every earlier fault: every member is healthy (no life an earlier
    /// fault marked is still listed), in the newest view, not changing views, suspecting nobody, and no
    /// detector report is still to come. A link cut alone is judged by the first view after it that
    /// drops either end; that view must owe nothing to another fault. Seed 10459 cut a link while a view
    /// change was already accepting a proposal that excluded both ends (an isolated member's suspicions,
    /// from a holding partition just healed): the cut had no part in it.
    fn done_with_earlier_faults(&self) -> bool {
        let members = self.sim.members();
        let newest = self.sim.views.keys().next_back().copied();
        let reports_due = self
            .sim
            .scheduled
            .iter()
            .any(|(_, action)| matches!(action, Action::Suspect { .. } | Action::Silence { .. }));
        members.len() == self.healthy().len()
            && !reports_due
            && members.iter().all(|l| {
                self.sim.lives[*l].node().is_some_and(|node| {
                    node.phase() == Phase::Member
                        && node.status().suspects.is_empty()
                        && node.view().map(|v| v.id.0) == newest
                })
            })
    }

    /// A process started beside another of its rank gives up if not admitted within a join timeout.
    fn give_up_later(&mut self, node: LifeId) {
        let at = self.sim.now_step + self.sim.rng.range(500, 3000);
        self.sim.schedule(at, Action::GiveUp { node });
    }

    /// The life whose snapshot `life` waits for, if it waits for one: the sponsor of the view that
    /// admitted it.
    fn sponsor_awaited_by(&self, life: LifeId) -> Option<LifeId> {
        let l = &self.sim.lives[life];
        if !l.history.is_joiner() || l.history.joined.is_none() || l.node().is_none() {
            return None;
        }
        self.sponsor_of_admission(life)
    }

    /// The life that was to hand `life` its state, if `life` was admitted and never restored it: the
    /// sponsor of the view that admitted it. Read from the views, so it holds for a life that is gone.
    fn sponsor_of_admission(&self, life: LifeId) -> Option<LifeId> {
        let l = &self.sim.lives[life];
        if !self.sim.knobs().state_transfer || l.app.restored {
            return None;
        }
        let admitting = self.sim.views.values().find(|view| {
            view.members
                .iter()
                .any(|m| m.process == l.process && m.incarnation.0 == view.id.0 && view.id.0 > 1)
        })?;
        let sponsor = tom::state_transfer::sponsor(admitting)?;
        self.sim.life_of_process(sponsor.process)
    }

    /// The members waiting for a snapshot from `sponsor`, or from one of them, and so on: they stop if
    /// it goes first.
    fn awaiting_from(&self, sponsor: LifeId) -> Vec<LifeId> {
        let members = self.sim.members();
        let mut stopping: Vec<LifeId> = Vec::new();
        let mut frontier = vec![sponsor];
        while let Some(gone) = frontier.pop() {
            for l in &members {
                if !stopping.contains(l) && self.sponsor_awaited_by(*l) == Some(gone) {
                    stopping.push(*l);
                    frontier.push(*l);
                }
            }
        }
        stopping
    }

    /// True if losing `life` now could stop a newcomer that waits for its state, which no fault plan
    /// weighs: it sponsors a snapshot still awaited, or it is the lowest rank of a view change that
    /// may admit a joiner (the sponsor of the view it decides).
    fn sponsors_a_newcomer(&self, life: LifeId) -> bool {
        if !self.sim.knobs().state_transfer {
            return false;
        }
        if !self.awaiting_from(life).is_empty() {
            return true;
        }
        let members = self.sim.members();
        let lowest = members.iter().copied().min_by_key(|l| self.sim.lives[*l].rank);
        let changing = members
            .iter()
            .any(|l| self.sim.lives[*l].phase() == Some(Phase::Changing));
        lowest == Some(life) && (changing || !self.sim.joiners().is_empty())
    }

    /// A random healthy member whose loss (with `also`) keeps a quorum.
    fn pick_loss(&mut self, also: &[LifeId]) -> Option<LifeId> {
        let candidates: Vec<LifeId> = self
            .healthy()
            .into_iter()
            .filter(|l| !also.contains(l))
            .filter(|l| !self.sponsors_a_newcomer(*l))
            .filter(|l| {
                let mut lost = also.to_vec();
                lost.push(*l);
                self.can_lose(&lost)
            })
            .collect();
        self.sim.rng.pick(&candidates)
    }

    fn crash(&mut self, node: LifeId) {
        self.doomed.insert(node);
        self.taken.insert(node);
        self.sim.apply(Action::Crash {
            node,
            loss: Loss::RandomPrefix,
        });
    }

    fn skip(&mut self, what: &str) {
        self.sim
            .note(format!("planned {what} skipped: it could cost the quorum"));
    }

    /// Splits the running ranks in two; the side without a quorum is doomed. Unless `reckless`, only
    /// splits that leave a healthy quorum are made.
    fn partition(&mut self, mode: CutMode, duration_steps: u64, reckless: bool) {
        if self.sim.net.is_cut() {
            return;
        }
        let running = self.sim.running();
        let mut side_a = Vec::new();
        let mut side_b = Vec::new();
        for life in running {
            if self.sim.rng.percent(50) {
                side_a.push(life);
            } else {
                side_b.push(life);
            }
        }
        if side_a.is_empty() || side_b.is_empty() {
            return;
        }
        // The side that can go on (if any): the one whose loss the other survives.
        let a_survives = self.can_lose(&side_b);
        let b_survives = self.can_lose(&side_a);
        if !(a_survives || b_survives) {
            if !reckless {
                self.skip("partition");
                return;
            }
            self.sim.liveness_waived = true;
            self.sim
                .note("reckless partition: no side may keep a quorum; only safety is checked");
        }
        // A breaking cut closes the connections across; a holding one silences them for long enough that
        // the detectors notice: either way the side without a quorum is excluded.
        {
            let losers = if a_survives { &side_b } else { &side_a };
            self.doomed.extend(losers.iter().copied());
            self.taken.extend(losers.iter().copied());
            if !(a_survives || b_survives) {
                // No side keeps a quorum: every life is cut from one, and any of them may be excluded
                // once the cut heals (PROTOCOL.md §6).
                self.doomed.extend(side_a.iter().chain(&side_b).copied());
            }
        }
        self.cuts.push((side_a.clone(), side_b.clone()));
        let ranks = |sim: &Sim, side: &[LifeId]| side.iter().map(|l| sim.lives[*l].rank).collect();
        let action = Action::Partition {
            side_a: ranks(&self.sim, &side_a),
            side_b: ranks(&self.sim, &side_b),
            mode,
        };
        self.sim.apply(action);
        let heal_at = self.sim.now_step + duration_steps;
        self.sim.schedule(heal_at, Action::Heal);
    }

    /// The family this run belongs to.
    pub fn family(&self) -> Family {
        self.family
    }
}

/// Runs one seed of one family to the end; panics with the story on failure.
pub fn run_seed(family: Family, seed: u64) -> Sim {
    let mut driver = Driver::new(family, seed);
    driver.run();
    driver.sim
}
