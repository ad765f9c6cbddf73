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
