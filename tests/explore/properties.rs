//! What must hold in every explored state, and from every quiet one.
//!
//! - **Every state** ([`check_state`]): the history rules of `bin/check/history.rs` and the
//!   simulator's own (one order position by position, no holes, integrity, no duplicates, FIFO per
//!   origin, uniform agreement at every install), through [`Sim::check`]; the core's
//!   `check_invariants` already ran after every endpoint call; one process per life; and no life
//!   excluded unless a fault touched it ([`World::touched`]).
//! - **Every quiet state** ([`check_quiet`]), one where nothing is left to choose but flushes (every
//!   frame delivered, every budget spent, every detector report made, every stopped process gone): the
//!   faults are over, so a fair run from here (cuts healed, ticks, every frame delivered, every gone
//!   life a view lists reported by the detectors, as real ones would a failure timeout later) must
//!   settle the group, one view listing exactly the running members with everything a survivor
//!   multicast delivered everywhere, unless the faults cost the newest view its quorum. Since the
//!   explored graph is finite and every path from a state whose fault budget is spent ends in a quiet
//!   state, this covers every such state.
//!
//! A violation panics through [`Sim::fail`] with the story; the search catches it and names the path.

use std::collections::BTreeMap;

use tom::protocol::Phase;

use super::world::World;
use crate::sim::check::{End, Expect};
use crate::sim::{Action, Sim};

/// Steps a settling run may take from a quiet state.
pub const SETTLE_STEPS: u64 = 5_000;

/// The checks of every state (see the module documentation).
pub fn check_state(world: &World) {
    let sim = &world.sim;
    sim.check(Expect::Safety);
    one_process_per_life(sim);
    no_healthy_exclusion(world);
}

/// The checks of a quiet state: it settles (or lost its quorum), and the settled group passes every
/// check of a finished run.
pub fn check_quiet(world: &World) {
    let mut after = world.clone();
    after
        .sim
        .note("explorer: the faults are over; a fair run from here must settle the group");
    // A real detector reports every gone process a member's view lists, also one a view lists only
    // after the faults (a joiner admitted after it lost power).
    after.sim.start_detecting();
    // Time passes by rounds of ticks, as it does in the search (a tick is a step of the clock).
    after.sim.clock_by_rounds();
    let mut settled = after.sim.try_settle(SETTLE_STEPS);
    if !settled {
        // A process asking for a rank whose member still runs may never be admitted: its join timeout
        // ends it (a joiner whose rank has no member waits on, as the simulator's give-up says).
        for joiner in after.sim.joiners() {
            after.sim.apply(Action::GiveUp { node: joiner });
        }
        settled = after.sim.try_settle(SETTLE_STEPS);
    }
    check_state(&after);
    if settled {
        after.sim.check(Expect::Settled);
        return;
    }
    if quorum_lost(&after.sim) {
        return;
    }
    let why = after
        .sim
        .settled()
        .err()
        .unwrap_or_else(|| "(settled only after the deadline)".to_string());
    after.sim.fail(&format!(
        "liveness: a quorum of the newest view runs, yet the group did not settle within {SETTLE_STEPS} \
         fair steps after the faults: {why}"
    ));
}

/// No two lives of one rank hold one incarnation, and every running life's core is the process the
/// simulator started for it.
fn one_process_per_life(sim: &Sim) {
    let mut seen: BTreeMap<(u16, u64), usize> = BTreeMap::new();
    for (id, life) in sim.lives.iter().enumerate() {
        if let Some(node) = life.node() {
            if node.me().process != life.process {
                sim.fail(&format!(
                    "{} runs process {:?} but its core is {}",
                    sim.name(id),
                    life.process,
                    node.me()
                ));
            }
        }
        let Some(incarnation) = life.history.incarnation else {
            continue;
        };
        if let Some(other) = seen.insert((life.rank.0, incarnation), id) {
            sim.fail(&format!(
                "one life, two processes: {} and {} both hold incarnation {incarnation} of rank {}",
                sim.name(other),
                sim.name(id),
                life.rank
            ));
        }
    }
}

/// A life that ends excluded must have been touched by a fault, or faults touched at least half of
/// the last view it installed (so its quorum may be gone, and stopping is what the quorum rule asks).
fn no_healthy_exclusion(world: &World) {
    let sim = &world.sim;
    for (id, life) in sim.lives.iter().enumerate() {
        let excluded = life.history.end == End::Excluded || life.phase() == Some(Phase::Excluded);
        if !excluded || world.touched.contains(&id) {
            continue;
        }
        let view = life.history.views.last();
        let touched_in_view = view.map_or(0, |v| {
            v.members
                .iter()
                .filter(|m| {
                    sim.life_of_process(m.process)
                        .is_some_and(|l| world.touched.contains(&l))
                })
                .count()
        });
        let size = view.map_or(0, |v| v.members.len());
        if 2 * touched_in_view < size {
            sim.fail(&format!(
                "{} was excluded, yet no fault touched it (no crash, break or false suspicion of it, no \
                 second process of its rank, no fault while it joined) and faults touched only \
                 {touched_in_view} of the {size} members of its last view",
                sim.name(id)
            ));
        }
    }
}

/// True if the newest view any running member holds has no majority of its lives still running (the
/// group may then stop, as the quorum rule says).
fn quorum_lost(sim: &Sim) -> bool {
    let newest = sim
        .lives
        .iter()
        .filter(|l| l.running())
        .filter_map(|l| l.node().and_then(|n| n.view()))
        .max_by_key(|v| v.id);
    let Some(view) = newest else { return true };
    let running = view
        .members
        .iter()
        .filter(|m| {
            sim.life_of_process(m.process).is_some_and(|id| {
                let life = &sim.lives[id];
                life.running() && !life.endpoint.as_ref().is_some_and(|e| e.is_finished())
            })
        })
        .count();
    2 * running <= view.members.len()
}
