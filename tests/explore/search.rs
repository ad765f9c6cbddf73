//! The search: depth first over [`World::choices`], every state checked, states deduplicated by
//! fingerprint, the first violation returned as the path that reaches it.
//!
//! Why depth first with a visited set: memory stays one world per level of the current path (a
//! breadth-first frontier of whole simulated groups would not fit), and the visited set holds 16 bytes
//! a state. Since the budgets are part of the state and every choice consumes something, the graph is
//! finite and acyclic in what it spends, so a state reached twice is explored once, whatever the depth
//! it was first reached at (the depth bound `d` only guards against a scope too large to finish; a run
//! that hit it says so and is not complete).
//!
//! No symmetry reduction: ranks are not interchangeable (the lowest rank coordinates, ties between
//! processes go by identity), and connection numbers name the order connections were made in.

use std::collections::HashSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::properties::{check_quiet, check_state};
use super::scope::Scope;
use super::world::{Choice, World};
use crate::sim::panic_text;

/// The figures of one exploration.
#[derive(Clone, Debug)]
pub struct Report {
    pub scope: Scope,
    /// States reached by taking a choice (with repeats).
    pub generated: u64,
    /// Distinct states (by fingerprint).
    pub unique: u64,
    /// Quiet states, each settled and checked.
    pub quiet: u64,
    /// The longest path taken.
    pub depth_reached: usize,
    /// States not expanded because the path reached the depth bound (0: the search was complete).
    pub cut_at_depth: u64,
    pub seconds: f64,
    /// The first violation found, if any.
    pub counterexample: Option<Counterexample>,
}

impl Report {
    /// True if the whole scope was searched and nothing was found.
    pub fn passed(&self) -> bool {
        self.counterexample.is_none() && self.cut_at_depth == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match (&self.counterexample, self.cut_at_depth) {
            (Some(_), _) => "COUNTEREXAMPLE".to_string(),
            (None, 0) => "complete, no violation".to_string(),
            (None, cut) => format!("INCOMPLETE: {cut} states at the depth bound"),
        };
        write!(
            f,
            "scope {}: {} generated, {} unique, {} quiet, depth {}, {:.1} s: {verdict}",
            self.scope, self.generated, self.unique, self.quiet, self.depth_reached, self.seconds
        )
    }
}

/// A path to a violation, readable and replayable.
#[derive(Clone, Debug)]
pub struct Counterexample {
    pub scope: Scope,
    pub path: Vec<Choice>,
    /// The replay: each step numbered as the simulator words it, then the whole story.
    pub replayed: String,
    /// What the check said (with the simulator's state).
    pub problem: String,
}

impl Counterexample {
    /// The path as replay tokens.
    pub fn tokens(&self) -> String {
        self.path.iter().map(Choice::to_string).collect::<Vec<_>>().join(" ")
    }

    /// The one command that replays it with the whole story.
    pub fn replay_command(&self) -> String {
        format!("make explore SCOPE='{}' REPLAY='{}'", self.scope, self.tokens())
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "counterexample in scope {} ({} steps):", self.scope, self.path.len())?;
        writeln!(f, "{}", self.replayed)?;
        writeln!(f, "replay: {}", self.replay_command())?;
        write!(f, "{}", self.problem)
    }
}

struct Search {
    started: Instant,
    /// When the last progress line was printed (every ten seconds, on standard error).
    progress_at: Instant,
    visited: HashSet<u128>,
    report: Report,
    path: Vec<Choice>,
}

/// Searches every schedule of `scope`.
pub fn explore(scope: Scope) -> Report {
    let started = Instant::now();
    let mut search = Search {
        started,
        progress_at: started,
        visited: HashSet::new(),
        report: Report {
            scope,
            generated: 0,
            unique: 1,
            quiet: 0,
            depth_reached: 0,
            cut_at_depth: 0,
            seconds: 0.0,
            counterexample: None,
        },
        path: Vec::new(),
    };
    let mut world = World::new(scope);
    // The search writes no story; a counterexample is replayed with it.
    world.sim.story_off = true;
    search.visited.insert(world.fingerprint());
    if let Err(problem) = checked(|| check_state(&world)) {
        search.found(problem);
    } else {
        search.visit(&world);
    }
    search.report.seconds = started.elapsed().as_secs_f64();
    search.report
}

impl Search {
    /// Expands `world`; false once a counterexample is found.
    fn visit(&mut self, world: &World) -> bool {
        let choices = world.choices();
        if World::quiet(&choices) {
            self.report.quiet += 1;
            if let Err(problem) = checked(|| check_quiet(world)) {
                self.found(problem);
                return false;
            }
            if choices.is_empty() {
                return true;
            }
        }
        if self.path.len() >= world.scope.depth_max as usize {
            self.report.cut_at_depth += 1;
            return true;
        }
        for choice in choices {
            let mut next = world.clone();
            self.path.push(choice);
            self.report.generated += 1;
            if self.report.generated % 1024 == 0 && self.progress_at.elapsed().as_secs() >= 10 {
                self.progress_at = Instant::now();
                eprintln!(
                    "explore: scope {}: {} generated, {} unique, {} quiet, depth {} so far, {:.0} s",
                    self.report.scope,
                    self.report.generated,
                    self.report.unique,
                    self.report.quiet,
                    self.report.depth_reached,
                    self.started.elapsed().as_secs_f64()
                );
            }
            self.report.depth_reached = self.report.depth_reached.max(self.path.len());
            let outcome = checked(|| {
                next.take(choice);
                if next.histories_changed(world) {
                    check_state(&next);
                }
            });
            if let Err(problem) = outcome {
                self.found(problem);
                return false;
            }
            if self.visited.insert(next.fingerprint()) {
                self.report.unique += 1;
                if !self.visit(&next) {
                    return false;
                }
            }
            self.path.pop();
        }
        true
    }

    fn found(&mut self, problem: String) {
        let (replayed, again) = replay(self.report.scope, &self.path);
        let problem = match again {
            Err(with_story) => with_story,
            Ok(()) => format!("{problem}\n(the replay with the story on passed: the search and the replay differ)"),
        };
        self.report.counterexample = Some(Counterexample {
            scope: self.report.scope,
            path: self.path.clone(),
            replayed,
            problem,
        });
    }
}

/// Runs `f`, turning a panic (a failed check, a broken invariant, a panic inside the library) into
/// its message.
fn checked(f: impl FnOnce()) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| panic_text(panic.as_ref()))
}

/// Replays `path` in `scope` from the formed group, checking every state as the search does; returns
/// the numbered steps and the story, and the first violation if there is one.
pub fn replay(scope: Scope, path: &[Choice]) -> (String, Result<(), String>) {
    let mut world = World::new(scope);
    let mut text = String::new();
    let mut outcome = checked(|| check_state(&world));
    for (i, &choice) in path.iter().enumerate() {
        if outcome.is_err() {
            break;
        }
        if !world.choices().contains(&choice) {
            outcome = Err(format!("step {}: {choice} is not a choice of this state", i + 1));
            break;
        }
        text.push_str(&format!("{:>4}: {}\n", i + 1, world.describe(choice)));
        outcome = checked(|| {
            world.take(choice);
            check_state(&world);
        });
    }
    if outcome.is_ok() && World::quiet(&world.choices()) {
        text.push_str("   (a quiet state: settling and checking it)\n");
        outcome = checked(|| check_quiet(&world));
    }
    text.push_str("--- story ---\n");
    text.push_str(&world.sim.story(usize::MAX));
    (text, outcome)
}
