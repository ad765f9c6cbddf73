//! The one history checker: the stdout logs of a run's `tom-member` processes (what `tom-check` runs),
//! the process tests' logs, and the simulator's histories turned into the same lives. It lives beside
//! `tom-check`, outside the library: it is tooling, included where it is needed with `#[path]`.
//!
//! What lives here: [`parse_log`] reads one process's stdout (the lab contract's `JOINED`, `STATE`,
//! `VIEW` and `DELIVER` lines) into its [`LogLife`]s, and [`check`] checks the logs of one run together.
//! Pure functions of text: no files, no processes, so every rule is unit-tested on hand-made logs.
//!
//! # Reading a log
//! A log is one process: its first life starts at `JOINED` (position 0: its first delivery is position
//! 1), and each later life (a member that came back with `--rejoin-when-excluded`) at `STATE p` followed
//! by `JOINED` (its first delivery is position p + 1); a restarted process (`--rejoin`) writes a new log
//! that starts with `STATE p`. A life's `DELIVER` lines are therefore consecutive positions of the
//! group's order. A last line without its line ending was cut by a crash mid-write and is ignored; any
//! other line that is not one of the four kinds, a `DELIVER` or `VIEW` before `JOINED`, or a `STATE`
//! not followed by `JOINED`, makes the log unreadable ([`LogError`]).
//!
//! # What is checked ([`Property`]), in order, on every life of every log
//! - **agreement and total order**: every life's deliveries are a contiguous run of *one* global
//!   sequence: two lives that deliver the same position deliver the same message (origin, Lamport
//!   time, payload);
//! - **validity of origins**: a delivered message comes from a rank of the group (1..=N of `JOINED`);
//! - **no holes** ("no member delivered what the group did not"): every position from 1 to the highest
//!   one any life delivered is delivered by some life. A life that stops early (a crash) is fine: it
//!   delivered a prefix of its run. A hole means a life claims positions the logs of the run do not
//!   account for: a `STATE` past what the group delivered, or a missing log (give `tom-check` every log
//!   of the run);
//! - **integrity**: no message (origin, Lamport time) appears at two positions (in particular, no life
//!   delivers one twice);
//! - **FIFO per origin**: along the global sequence, the Lamport times of each origin rank strictly
//!   increase. Within one origin life this is FIFO order; across lives of a rank it still holds, because
//!   the view that admits a new life raises every member's clock above every message delivered before;
//! - **rejoin suffix**: a rejoined life (`STATE p`) delivers the global order from position p + 1 on —
//!   by construction its first delivery *is* position p + 1, so this is agreement at those positions;
//!   additionally `STATE p` must not lie below the start of an earlier life of the same log.

use std::collections::BTreeMap;
use std::fmt;

/// One delivered message as a log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The log line number (1-based).
    pub line: usize,
    /// The origin's rank.
    pub origin: u16,
    /// Its Lamport time.
    pub lamport: u64,
    /// The payload as printed (escaped).
    pub payload: String,
}

/// One life of one process, as its log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLife {
    /// `FILE` for a first life, `FILE (life k)` for later ones.
    pub name: String,
    /// Its rank (from `JOINED`).
    pub rank: u16,
    /// The group size N (from `JOINED`).
    pub size: u16,
    /// `STATE p` if the life rejoined: its first delivery is position p + 1.
    pub state: Option<u64>,
    /// Its `VIEW` lines, as rank lists.
    pub views: Vec<Vec<u16>>,
    /// Its deliveries, in order.
    pub deliveries: Vec<Logged>,
}

impl LogLife {
    /// Position of the life's `i`-th delivery (0-based).
    pub fn position(&self, i: usize) -> u64 {
        self.state.unwrap_or(0) + i as u64 + 1
    }
}

/// A log that cannot be read as a `tom-member` stdout log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogError(pub String);

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogError {}

/// The properties [`check`] checks (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// Two lives deliver different messages at one position.
    Agreement,
    /// A message from a rank that is not in the group.
    Validity,
    /// A position no life delivered, below one that some life delivered.
    NoHoles,
    /// One message at two positions.
    Integrity,
    /// An origin's Lamport times do not increase along the order.
    Fifo,
    /// A rejoined life's `STATE` does not fit its process's history.
    Rejoin,
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Property::Agreement => "agreement / total order",
            Property::Validity => "validity",
            Property::NoHoles => "no holes (nothing delivered that the group did not)",
            Property::Integrity => "integrity (no duplicates)",
            Property::Fifo => "FIFO per origin",
            Property::Rejoin => "rejoin suffix",
        })
    }
}

/// The first counterexample found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property fails.
    pub property: Property,
    /// The counterexample, naming files, lines and positions.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.property, self.detail)
    }
}

/// What a passing check saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Logs checked.
    pub logs: usize,
    /// Lives found in them.
    pub lives: usize,
    /// Length of the global sequence.
    pub positions: u64,
    /// Lives that rejoined (`STATE`).
    pub rejoined: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} logs, {} lives ({} rejoined): one global order of {} messages; agreement, validity, no holes, \
             integrity, FIFO per origin and rejoin suffixes hold",
            self.logs, self.lives, self.rejoined, self.positions
        )
    }
}

/// Reads one process's stdout log (`name` is how reports refer to it).
pub fn parse_log(name: &str, text: &str) -> Result<Vec<LogLife>, LogError> {
    let mut reader = LogReader {
        name,
        lives: Vec::new(),
        pending_state: None,
    };
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let number = i + 1;
        if i + 1 == lines.len() {
            // After the last '\n': empty, or a line cut by a crash mid-write.
            break;
        }
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        if let Some((state_line, _)) = reader.pending_state {
            if word != "JOINED" {
                return Err(bad(
                    reader.name,
                    number,
                    format!("STATE on line {state_line} is not followed by JOINED"),
                ));
            }
        }
        match word {
            "JOINED" => reader.joined(number, line, rest)?,
            "STATE" => match parse_num::<u64>(Some(rest)) {
                Some(position) => reader.pending_state = Some((number, position)),
                None => return Err(bad(reader.name, number, format!("bad STATE line {line:?}"))),
            },
            "VIEW" => reader.view(number, line, rest)?,
            "DELIVER" => reader.deliver(number, line, rest)?,
            _ => {
                return Err(bad(
                    reader.name,
                    number,
                    format!("not a tom-member stdout line: {line:?}"),
                ))
            }
        }
    }
    // A STATE still pending: the process was cut before JOINED; it delivered nothing, nothing to check.
    Ok(reader.lives)
}

/// One log being read: the lives so far, and a `STATE` line waiting for its `JOINED`.
struct LogReader<'a> {
    name: &'a str,
    lives: Vec<LogLife>,
    /// The line number and position of a `STATE` not yet followed by `JOINED`.
    pending_state: Option<(usize, u64)>,
}

/// The error for line `line` of log `name`.
fn bad(name: &str, line: usize, what: String) -> LogError {
    LogError(format!("{name}:{line}: {what}"))
}

impl LogReader<'_> {
    /// `JOINED <rank> <size>` (`rest` after the word, on line `number`): starts a life.
    fn joined(&mut self, number: usize, line: &str, rest: &str) -> Result<(), LogError> {
        let mut parts = rest.split(' ');
        let rank = parse_num::<u16>(parts.next()).filter(|r| *r > 0);
        let size = parse_num::<u16>(parts.next());
        let (Some(rank), Some(size), None) = (rank, size, parts.next()) else {
            return Err(bad(self.name, number, format!("bad JOINED line {line:?}")));
        };
        if rank > size {
            return Err(bad(
                self.name,
                number,
                format!("rank {rank} is outside a group of {size}"),
            ));
        }
        let state = self.pending_state.take().map(|(_, p)| p);
        if state.is_none() && !self.lives.is_empty() {
            return Err(bad(
                self.name,
                number,
                "a later life's JOINED without STATE".to_string(),
            ));
        }
        let life_name = if self.lives.is_empty() {
            self.name.to_string()
        } else {
            format!("{} (life {})", self.name, self.lives.len() + 1)
        };
        self.lives.push(LogLife {
            name: life_name,
            rank,
            size,
            state,
            views: Vec::new(),
            deliveries: Vec::new(),
        });
        Ok(())
    }

    /// `VIEW <r1,r2,...>`: a view of the current life.
    fn view(&mut self, number: usize, line: &str, rest: &str) -> Result<(), LogError> {
        let Some(life) = self.lives.last_mut() else {
            return Err(bad(self.name, number, "VIEW before JOINED".to_string()));
        };
        let ranks: Option<Vec<u16>> = rest.split(',').map(|r| parse_num::<u16>(Some(r))).collect();
        match ranks {
            Some(ranks) if !ranks.is_empty() => life.views.push(ranks),
            _ => return Err(bad(self.name, number, format!("bad VIEW line {line:?}"))),
        }
        Ok(())
    }

    /// `DELIVER <origin> <lamport> <payload>`: a delivery of the current life.
    fn deliver(&mut self, number: usize, line: &str, rest: &str) -> Result<(), LogError> {
        let Some(life) = self.lives.last_mut() else {
            return Err(bad(self.name, number, "DELIVER before JOINED".to_string()));
        };
        let mut parts = rest.splitn(3, ' ');
        let origin = parse_num::<u16>(parts.next());
        let lamport = parse_num::<u64>(parts.next());
        let (Some(origin), Some(lamport)) = (origin, lamport) else {
            return Err(bad(self.name, number, format!("bad DELIVER line {line:?}")));
        };
        let payload = parts.next().unwrap_or("").to_string();
        life.deliveries.push(Logged {
            line: number,
            origin,
            lamport,
            payload,
        });
        Ok(())
    }
}

fn parse_num<T: std::str::FromStr>(text: Option<&str>) -> Option<T> {
    let text = text?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Where a message was seen first.
struct Seen<'a> {
    life: &'a LogLife,
    index: usize,
}

impl Seen<'_> {
    fn at(&self) -> String {
        format!("{}:{}", self.life.name, self.life.deliveries[self.index].line)
    }
    fn msg(&self) -> &Logged {
        &self.life.deliveries[self.index]
    }
}

fn describe(d: &Logged) -> String {
    format!("(origin {}, lamport {}, {:?})", d.origin, d.lamport, d.payload)
}

/// Checks the logs of one run (each inner `Vec` one process's lives, as [`parse_log`] returns them).
pub fn check(logs: &[Vec<LogLife>]) -> Result<Summary, Violation> {
    let lives: Vec<&LogLife> = logs.iter().flatten().collect();
    check_rejoins(logs)?;
    let global = global_order(&lives)?;
    check_validity(&lives)?;
    check_no_holes(&global)?;
    check_integrity_and_fifo(&global)?;
    Ok(Summary {
        logs: logs.len(),
        lives: lives.len(),
        positions: global.len() as u64,
        rejoined: lives.iter().filter(|l| l.state.is_some()).count(),
    })
}

/// The failed check: `property` does not hold, as `detail` shows.
fn fail<T>(property: Property, detail: String) -> Result<T, Violation> {
    Err(Violation { property, detail })
}

/// Rejoin: a later life of one process starts no earlier than its earlier life got to.
fn check_rejoins(logs: &[Vec<LogLife>]) -> Result<(), Violation> {
    for log in logs {
        for pair in log.windows(2) {
            let reached = pair[0].state.unwrap_or(0) + pair[0].deliveries.len() as u64;
            if let Some(state) = pair[1].state.filter(|s| *s < reached) {
                return fail(
                    Property::Rejoin,
                    format!(
                        "{} starts at STATE {state}, but its earlier life had delivered up to position {reached}",
                        pair[1].name
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Agreement: one message per position. The global sequence, each position with where it was seen
/// first (lives in order).
fn global_order<'a>(lives: &[&'a LogLife]) -> Result<BTreeMap<u64, Seen<'a>>, Violation> {
    let mut global: BTreeMap<u64, Seen> = BTreeMap::new();
    for &life in lives {
        for (index, d) in life.deliveries.iter().enumerate() {
            let position = life.position(index);
            match global.get(&position) {
                Some(seen) => {
                    let first = seen.msg();
                    if (first.origin, first.lamport, &first.payload) != (d.origin, d.lamport, &d.payload) {
                        return fail(
                            Property::Agreement,
                            format!(
                                "position {position}: {}:{} delivers {} but {} delivers {}",
                                life.name,
                                d.line,
                                describe(d),
                                seen.at(),
                                describe(first)
                            ),
                        );
                    }
                }
                None => {
                    global.insert(position, Seen { life, index });
                }
            }
        }
    }
    Ok(global)
}

/// Validity: origins are ranks of the group.
fn check_validity(lives: &[&LogLife]) -> Result<(), Violation> {
    for life in lives {
        if let Some(d) = life.deliveries.iter().find(|d| d.origin == 0 || d.origin > life.size) {
            return fail(
                Property::Validity,
                format!(
                    "{}:{} delivers a message from rank {}, not a member of a group of {}",
                    life.name, d.line, d.origin, life.size
                ),
            );
        }
    }
    Ok(())
}

/// No holes: 1..=max all delivered by someone.
fn check_no_holes(global: &BTreeMap<u64, Seen>) -> Result<(), Violation> {
    for (expected, (position, seen)) in (1u64..).zip(global) {
        if *position != expected {
            return fail(
                Property::NoHoles,
                format!(
                    "positions {expected}..{} are delivered by no log, yet {} delivers position {position}; the group \
                     did not deliver what that life claims (or a log of the run is missing)",
                    position - 1,
                    seen.at()
                ),
            );
        }
    }
    Ok(())
}

/// Integrity: no message at two positions; FIFO: per origin, Lamport times increase. One pass along
/// the global sequence, so the first counterexample of either is the one reported.
fn check_integrity_and_fifo(global: &BTreeMap<u64, Seen>) -> Result<(), Violation> {
    let mut placed: BTreeMap<(u16, u64), (u64, String)> = BTreeMap::new();
    let mut last_of_origin: BTreeMap<u16, (u64, u64, String)> = BTreeMap::new();
    for (position, seen) in global {
        let d = seen.msg();
        if let Some((earlier, at)) = placed.get(&(d.origin, d.lamport)) {
            return fail(
                Property::Integrity,
                format!(
                    "message {} is at position {earlier} ({at}) and again at position {position} ({})",
                    describe(d),
                    seen.at()
                ),
            );
        }
        placed.insert((d.origin, d.lamport), (*position, seen.at()));
        if let Some((lamport, earlier, at)) = last_of_origin.get(&d.origin) {
            if d.lamport <= *lamport {
                return fail(
                    Property::Fifo,
                    format!(
                        "origin {}: lamport {} at position {position} ({}) after lamport {lamport} at position {earlier} ({at})",
                        d.origin,
                        d.lamport,
                        seen.at()
                    ),
                );
            }
        }
        last_of_origin.insert(d.origin, (d.lamport, *position, seen.at()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str, text: &str) -> Vec<LogLife> {
        parse_log(name, text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn run(logs: &[(&str, &str)]) -> Result<Summary, Violation> {
        let parsed: Vec<Vec<LogLife>> = logs.iter().map(|(n, t)| log(n, t)).collect();
        check(&parsed)
    }

    const A: &str = "JOINED 1 3\nVIEW 1,2,3\nDELIVER 1 1 a\nDELIVER 2 1 b\nDELIVER 3 2 c d\n";
    const B: &str = "JOINED 2 3\nVIEW 1,2,3\nDELIVER 1 1 a\nDELIVER 2 1 b\nDELIVER 3 2 c d\n";

    #[test]
    fn agreeing_logs_pass_and_prefixes_are_fine() {
        let crashed = "JOINED 3 3\nVIEW 1,2,3\nDELIVER 1 1 a\nDELIVER 2 1 b";
        let summary = run(&[("a", A), ("b", B), ("c", crashed)]).unwrap();
        assert_eq!((summary.lives, summary.positions), (3, 3));
    }

    #[test]
    fn a_rejoined_life_continues_at_its_state() {
        let back = "STATE 2\nJOINED 3 3\nVIEW 1,2,3\nDELIVER 3 2 c d\nDELIVER 3 9 e\n";
        let summary = run(&[("a", A), ("b", B), ("c2", back)]).unwrap();
        assert_eq!((summary.rejoined, summary.positions), (1, 4));
        let wrong = "STATE 1\nJOINED 3 3\nDELIVER 3 2 c d\n";
        assert_eq!(
            run(&[("a", A), ("c2", wrong)]).unwrap_err().property,
            Property::Agreement
        );
    }

    #[test]
    fn each_violation_is_named() {
        let swapped = "JOINED 2 3\nDELIVER 2 1 b\nDELIVER 1 1 a\n";
        assert_eq!(
            run(&[("a", A), ("s", swapped)]).unwrap_err().property,
            Property::Agreement
        );
        let stranger = "JOINED 2 3\nDELIVER 7 1 x\n";
        assert_eq!(run(&[("s", stranger)]).unwrap_err().property, Property::Validity);
        let far = "STATE 5\nJOINED 3 3\nDELIVER 3 9 z\n";
        assert_eq!(run(&[("a", A), ("f", far)]).unwrap_err().property, Property::NoHoles);
        let twice = "JOINED 1 3\nDELIVER 1 1 a\nDELIVER 1 1 a\n";
        assert_eq!(run(&[("t", twice)]).unwrap_err().property, Property::Integrity);
        let backwards = "JOINED 1 3\nDELIVER 1 5 a\nDELIVER 1 3 b\n";
        assert_eq!(run(&[("w", backwards)]).unwrap_err().property, Property::Fifo);
        let relapse = "JOINED 1 3\nDELIVER 1 1 a\nDELIVER 2 1 b\nSTATE 1\nJOINED 1 3\n";
        assert_eq!(run(&[("r", relapse)]).unwrap_err().property, Property::Rejoin);
    }

    #[test]
    fn unreadable_logs_are_errors() {
        for bad in [
            "DELIVER 1 1 a\n",
            "JOINED x 3\n",
            "JOINED 4 3\n",
            "hello\n",
            "JOINED 1 3\nDELIVER 1\n",
            "JOINED 1 3\nVIEW 1,,2\n",
            "STATE 3\nVIEW 1,2\n",
            "JOINED 1 3\nJOINED 1 3\n",
        ] {
            assert!(parse_log("x", bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_log("x", "").unwrap(), vec![]);
        assert_eq!(
            parse_log("x", "JOINED 1 3\nDELIVER 1 2 cut mid-wr").unwrap()[0].deliveries,
            vec![]
        );
    }
}
