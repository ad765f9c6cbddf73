//! `tom-check LOG...`: checks a run from the stdout logs of its `tom-member` processes.
//!
//! One file per process (a restarted process writes a new one). The rules (agreement and total order,
//! validity, no holes, integrity, FIFO per origin, rejoin suffixes) and how a log is read are in
//! `bin/check/history.rs`; this program only reads the files and reports. Exit codes: 0 when every rule
//! holds (a summary goes to stdout), 1 with the first counterexample (on stdout), 2 when a file cannot
//! be read or is not a `tom-member` log (or on bad arguments).

use std::process::ExitCode;

#[path = "check/history.rs"]
mod logcheck;

const USAGE: &str = "\
usage: tom-check LOG...

Checks the stdout logs of a run's tom-member processes (one file per process:
JOINED/STATE/VIEW/DELIVER lines): every process delivered a contiguous run of one
global order (a process without STATE from position 1, one with STATE p from p+1),
no message twice, each origin's Lamport times increasing, no position that no
process delivered. A log that stops early (a crashed member) is fine.

Exit codes: 0 all hold, 1 a violation (the first counterexample is printed),
2 unreadable input or bad arguments.";

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.iter().any(|p| p == "--help" || p == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if paths.is_empty() || paths.iter().any(|p| p.starts_with('-')) {
        eprintln!("tom-check: give the log files to check\n{USAGE}");
        return ExitCode::from(2);
    }
    let mut logs = Vec::new();
    for path in &paths {
        let text = match std::fs::read(path).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => {
                eprintln!("tom-check: {path}: not UTF-8 text: not a tom-member log");
                return ExitCode::from(2);
            }
            Err(err) => {
                eprintln!("tom-check: {path}: {err}");
                return ExitCode::from(2);
            }
        };
        match logcheck::parse_log(path, &text) {
            Ok(lives) => logs.push(lives),
            Err(err) => {
                eprintln!("tom-check: {err}");
                return ExitCode::from(2);
            }
        }
    }
    match logcheck::check(&logs) {
        Ok(summary) => {
            println!("ok: {summary}");
            ExitCode::SUCCESS
        }
        Err(violation) => {
            println!("VIOLATION: {violation}");
            ExitCode::from(1)
        }
    }
}
