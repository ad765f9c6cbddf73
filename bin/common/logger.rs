//! A tiny logger for the programs: every record goes to stderr as one line, at the level `RUST_LOG`
//! names (`error`, `warn`, `info`, `debug`, `trace` or `off`; default `info`).
//!
//! The library only emits records through `log`; installing this is the program's choice, which keeps
//! stdout free for the program's contract lines. A line is written with one call on a locked stderr,
//! so lines from different threads never interleave.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    /// Prefixes every line, so that the logs of several programs in one terminal stay apart.
    program: &'static str,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {:5} {}\n", self.program, record.level(), record.args());
        // A closed stderr must not take the program down: the log line is lost, nothing else.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The level `RUST_LOG` asks for. Only a plain level is understood; for `target=level` lists, the last
/// item's level is taken, and anything else means `info`.
fn level_from_env() -> LevelFilter {
    let value = std::env::var("RUST_LOG").unwrap_or_default();
    let last = value.rsplit(',').next().unwrap_or("");
    let level = last.rsplit('=').next().unwrap_or("").trim();
    level.parse().unwrap_or(LevelFilter::Info)
}

/// Installs the logger for `program`. Call once, first thing in `main`.
pub fn init(program: &'static str) {
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger { program }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level_from_env());
    }
}
