//! Exhaustive exploration of small groups (see `tests/explore/mod.rs`).
//!
//! - In `make test`: [`Scope::test_scopes`], every schedule of each, in well under a minute.
//! - `make explore` (this test with `EXPLORE=1`): [`Scope::default_scopes`], or the scopes in
//!   `SCOPE` (`;`-separated, as `n3 m1 c1 t1`), each with its figures.
//! - A counterexample prints its numbered steps and one command that replays it with the whole story:
//!   `make explore SCOPE='…' REPLAY='…'`.

mod explore;
mod sim;

use explore::scope::Scope;
use explore::search::{explore, replay, Report};
use explore::world::Choice;

fn scopes_from_env(default: Vec<Scope>) -> Vec<Scope> {
    match std::env::var("SCOPE") {
        Ok(text) if !text.trim().is_empty() => text
            .split(';')
            .map(|one| Scope::parse(one).unwrap_or_else(|e| panic!("SCOPE={text:?}: {e}")))
            .collect(),
        _ => default,
    }
}

/// Explores each scope; panics with the counterexample or the incomplete scope.
fn explore_all(scopes: Vec<Scope>) -> Vec<Report> {
    // Checks fail by panicking; the search catches them and prints the one it reports.
    std::panic::set_hook(Box::new(|_| {}));
    let mut reports = Vec::new();
    for scope in scopes {
        let report = explore(scope);
        println!("explore: {report}");
        if let Some(counterexample) = &report.counterexample {
            let _ = std::panic::take_hook();
            panic!("explore: {counterexample}");
        }
        reports.push(report);
    }
    let _ = std::panic::take_hook();
    for report in &reports {
        assert!(report.passed(), "explore: {report}");
    }
    reports
}

#[test]
fn every_schedule_of_the_small_scopes_is_safe_and_settles() {
    if std::env::var("EXPLORE").is_ok() || std::env::var("REPLAY").is_ok() {
        return; // make explore runs its own scopes
    }
    explore_all(Scope::test_scopes());
}

#[test]
fn explore_from_env() {
    if std::env::var("EXPLORE").is_err() {
        return;
    }
    if let Ok(tokens) = std::env::var("REPLAY") {
        let scopes = scopes_from_env(Vec::new());
        let [scope] = scopes.as_slice() else {
            panic!("REPLAY needs exactly one SCOPE, as the counterexample's command gives it");
        };
        let path: Vec<Choice> = tokens
            .split_whitespace()
            .map(|t| Choice::parse(t).unwrap_or_else(|e| panic!("REPLAY: {e}")))
            .collect();
        std::panic::set_hook(Box::new(|_| {}));
        let (text, outcome) = replay(*scope, &path);
        let _ = std::panic::take_hook();
        println!("{text}");
        if let Err(problem) = outcome {
            panic!("replay failed: {problem}");
        }
        println!("replay: every check passed");
        return;
    }
    let reports = explore_all(scopes_from_env(Scope::default_scopes()));
    let states: u64 = reports.iter().map(|r| r.unique).sum();
    let seconds: f64 = reports.iter().map(|r| r.seconds).sum();
    println!(
        "explore: {} scopes complete, {states} unique states, {seconds:.1} s",
        reports.len()
    );
}

/// Found by the explorer in `n2 m1 l1 t1`: 1 leaves, its decision for view 2 = [2] is on its way when
/// 1's process exits, and 2's detector reports the gone 1 before that decision arrives; 2 has no
/// quorum of view 1 alone and ends excluded. A real detector reports a gone process a failure timeout
/// after its last heartbeat, so the decision is still unread then only over a slow link: the report
/// touches 2, and its exclusion is allowed (the path replays with every check passing; it failed the
/// healthy-exclusion check before the rule).
#[test]
fn a_detector_report_that_outruns_a_leavers_decision_touches_the_reporter() {
    if std::env::var("EXPLORE").is_ok() || std::env::var("REPLAY").is_ok() {
        return;
    }
    let scope = Scope::parse("n2 m1 l1 t1").expect("valid");
    let path: Vec<Choice> = "m0 d1.0 d1.1 l0 d1.0 d1.0 d1.1 d1.0 d1.1 x0 t1 s1.0"
        .split_whitespace()
        .map(|t| Choice::parse(t).expect("valid"))
        .collect();
    std::panic::set_hook(Box::new(|_| {}));
    let (text, outcome) = replay(scope, &path);
    let _ = std::panic::take_hook();
    assert!(
        text.contains("2 EXCLUDED"),
        "the path no longer reaches the exclusion:\n{text}"
    );
    if let Err(problem) = outcome {
        panic!("{problem}\n{text}");
    }
}
