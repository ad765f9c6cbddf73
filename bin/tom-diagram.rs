//! `tom-diagram [-o OUT.svg] [--from N --to M | --time-from T --time-to T] TRACE...`: draws a run.
//!
//! Reads the traces of one run (`tom-member --trace`, or the simulator's `SIM_TRACE`; see `tom::trace`)
//! and writes a self-contained SVG space-time diagram: one lane per life (a process that starts a new
//! life gets a new lane), an arrow per data message from its send to each receive, a square per delivery
//! labelled with its position in the total order, and visible marks for view changes, suspicions,
//! exclusions, crashes, rejoins and departures, with a legend. Without `-o` the SVG goes to stdout.
//!
//! Layout: columns follow causality, not the clock. Each lane's events keep their order, and a receive
//! is always drawn right of its send; otherwise events of different lanes share columns. Wall-clock
//! time is bursty (a whole run can fit in a few milliseconds), so a clock axis would pile everything
//! up; times are in each mark's tooltip instead. `--from N --to M` keeps the messages delivered at
//! positions N..=M and whatever else happened meanwhile; `--time-from`/`--time-to` keep a time window,
//! in milliseconds since the first event for wall-clock traces, in steps for simulator traces.
//!
//! Exit codes: 0 done, 1 an output error, 2 bad arguments or an unreadable trace.
//!
//! This file reads the options and traces, windows them and lays the marks out in columns; the SVG
//! itself is drawn in `diagram/svg.rs`, and traces are parsed in `diagram/trace_reader.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::ExitCode;

use tom::trace::{EventKind, TraceEvent};

#[path = "diagram/svg.rs"]
mod svg;
#[path = "diagram/trace_reader.rs"]
mod trace_reader;

const USAGE: &str = "\
usage: tom-diagram [-o OUT.svg] [--from N --to M] [--time-from T] [--time-to T] TRACE...

Draws the traces of one run (tom-member --trace FILE, or the simulator's SIM_TRACE)
as an SVG space-time diagram: a lane per member life, arrows for messages, deliveries
labelled with their position in the total order, view changes, suspicions,
exclusions, crashes and rejoins. Without -o the SVG goes to stdout.

  -o OUT.svg        write the SVG there
  --from N --to M   only the messages delivered at positions N..=M (and what happened
                    meanwhile); either bound may be given alone
  --time-from T     only events from T on: milliseconds since the run's first event
  --time-to T       (wall-clock traces) or simulation steps (simulator traces)

Exit codes: 0 done, 1 cannot write the output, 2 bad arguments or unreadable trace.";

struct Options {
    out: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    time_from: Option<u64>,
    time_to: Option<u64>,
    traces: Vec<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        out: None,
        from: None,
        to: None,
        time_from: None,
        time_to: None,
        traces: Vec::new(),
    };
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(String::new());
        }
        if !arg.starts_with('-') {
            o.traces.push(arg);
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("bad {arg} {value:?}"));
        match arg.as_str() {
            "-o" => o.out = Some(value.clone()),
            "--from" => o.from = Some(number()?),
            "--to" => o.to = Some(number()?),
            "--time-from" => o.time_from = Some(number()?),
            "--time-to" => o.time_to = Some(number()?),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if o.traces.is_empty() {
        return Err("give at least one trace file".into());
    }
    Ok(o)
}

/// One life of one process: a lane.
struct Lane {
    file: String,
    rank: u16,
    /// The life's incarnation (the last one seen; 0 if never admitted).
    inc: u64,
    joining: bool,
    sim_clock: bool,
    events: Vec<TraceEvent>,
}

/// Splits each trace into lives at its `start` lines.
fn lanes_of(file: &str, events: Vec<TraceEvent>) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = Vec::new();
    for event in events {
        let starts = matches!(event.kind, EventKind::Start { .. });
        if starts || lanes.is_empty() {
            let (joining, sim_clock) = match &event.kind {
                EventKind::Start { clock, joining } => (*joining, clock == "sim"),
                _ => (false, false),
            };
            lanes.push(Lane {
                file: file.to_string(),
                rank: event.rank,
                inc: 0,
                joining,
                sim_clock,
                events: Vec::new(),
            });
        }
        let lane = lanes.last_mut().expect("pushed above");
        lane.inc = lane.inc.max(event.inc);
        lane.rank = event.rank;
        lane.events.push(event);
    }
    lanes
}

/// The data message an event is about, if any: `(origin, origin_inc, lamport)`.
fn key_of(kind: &EventKind) -> Option<(u16, u64, u64)> {
    match kind {
        EventKind::Send { msg, .. } | EventKind::Receive { msg, .. } => msg.data.map(|d| d.key()),
        EventKind::Deliver {
            origin,
            origin_inc,
            msg_lamport,
            ..
        } => Some((*origin, *origin_inc, *msg_lamport)),
        _ => None,
    }
}

/// True for the events the picture shows (acknowledgements and control messages are not drawn).
fn drawn(kind: &EventKind) -> bool {
    match kind {
        EventKind::Send { msg, .. } | EventKind::Receive { msg, .. } => msg.data.is_some(),
        EventKind::Ack { .. } => false,
        _ => true,
    }
}

/// The time of the run's first event (0 without events): where wall-clock windows and times count from.
fn first_time_us(lanes: &[Lane]) -> u64 {
    lanes
        .iter()
        .flat_map(|l| l.events.first())
        .map(|e| e.time_us)
        .min()
        .unwrap_or(0)
}

/// Keeps what the window asks for.
fn apply_window(lanes: &mut [Lane], o: &Options) {
    let first = first_time_us(lanes);
    let sim = lanes.iter().any(|l| l.sim_clock);
    let scale = if sim { 1 } else { 1000 };
    let mut lo = o.time_from.map_or(0, |t| first + t * scale);
    let mut hi = o.time_to.map_or(u64::MAX, |t| first + t * scale);
    let mut keys: Option<BTreeSet<(u16, u64, u64)>> = None;
    if o.from.is_some() || o.to.is_some() {
        let (from, to) = (o.from.unwrap_or(0), o.to.unwrap_or(u64::MAX));
        let kept: BTreeSet<_> = lanes
            .iter()
            .flat_map(|l| &l.events)
            .filter_map(|e| match &e.kind {
                EventKind::Deliver { position, .. } if (from..=to).contains(position) => key_of(&e.kind),
                _ => None,
            })
            .collect();
        let times: Vec<u64> = lanes
            .iter()
            .flat_map(|l| &l.events)
            .filter(|e| key_of(&e.kind).is_some_and(|k| kept.contains(&k)))
            .map(|e| e.time_us)
            .collect();
        lo = lo.max(times.iter().copied().min().unwrap_or(u64::MAX));
        hi = hi.min(times.iter().copied().max().unwrap_or(0));
        keys = Some(kept);
    }
    for lane in lanes.iter_mut() {
        lane.events.retain(|e| {
            let in_time = (lo..=hi).contains(&e.time_us) || matches!(e.kind, EventKind::Start { .. });
            let in_keys = match (&keys, key_of(&e.kind)) {
                (Some(keys), Some(k)) => keys.contains(&k),
                _ => true,
            };
            in_time && in_keys
        });
    }
}

/// One drawn mark: lane, column, event.
struct Node<'a> {
    lane: usize,
    col: usize,
    event: &'a TraceEvent,
}

/// A lane's events that get a mark, in order: consecutive sends of one message collapse into one mark,
/// and a suspicion is marked once per suspected rank per view (suspicions are gossiped).
fn drawn_events(lane: &Lane) -> Vec<&TraceEvent> {
    let mut q: Vec<&TraceEvent> = Vec::new();
    let mut suspected: BTreeSet<u16> = BTreeSet::new();
    for e in lane.events.iter().filter(|e| drawn(&e.kind)) {
        match e.kind {
            EventKind::View { .. } => suspected.clear(),
            EventKind::Suspect { suspect, .. } if !suspected.insert(suspect) => continue,
            _ => {}
        }
        let same_send = matches!(e.kind, EventKind::Send { .. })
            && q.last()
                .is_some_and(|p| matches!(p.kind, EventKind::Send { .. }) && key_of(&p.kind) == key_of(&e.kind));
        if !same_send {
            q.push(e);
        }
    }
    q
}

/// Assigns columns: per lane in order, a receive right of its send.
fn layout(lanes: &[Lane]) -> Vec<Node<'_>> {
    let queues: Vec<Vec<&TraceEvent>> = lanes.iter().map(drawn_events).collect();
    let sends: BTreeSet<(u16, u64, u64)> = queues
        .iter()
        .flatten()
        .filter(|e| matches!(e.kind, EventKind::Send { .. }))
        .filter_map(|e| key_of(&e.kind))
        .collect();
    let mut send_col: BTreeMap<(u16, u64, u64), usize> = BTreeMap::new();
    let mut next = vec![0usize; lanes.len()];
    let mut lane_col = vec![0usize; lanes.len()];
    let mut nodes = Vec::new();
    loop {
        let mut progressed = false;
        for lane in 0..lanes.len() {
            while let Some(e) = queues[lane].get(next[lane]) {
                let waits_for = match &e.kind {
                    EventKind::Receive { .. } => key_of(&e.kind).filter(|k| sends.contains(k)),
                    _ => None,
                };
                let after_send = match waits_for {
                    Some(k) => match send_col.get(&k) {
                        Some(c) => c + 1,
                        None => break,
                    },
                    None => 0,
                };
                let col = lane_col[lane].max(after_send);
                if let (EventKind::Send { .. }, Some(k)) = (&e.kind, key_of(&e.kind)) {
                    send_col.entry(k).or_insert(col);
                }
                nodes.push(Node { lane, col, event: e });
                lane_col[lane] = col + 1;
                next[lane] += 1;
                progressed = true;
            }
        }
        if next.iter().zip(&queues).all(|(n, q)| *n >= q.len()) {
            break;
        }
        if !progressed {
            // A receive whose send comes later in its own lane (never in a real run): place the earliest
            // waiting event anyway rather than stall.
            let lane = (0..lanes.len())
                .filter(|l| next[*l] < queues[*l].len())
                .min_by_key(|l| queues[*l][next[*l]].time_us)
                .expect("some lane has events left");
            let e = queues[lane][next[lane]];
            nodes.push(Node {
                lane,
                col: lane_col[lane],
                event: e,
            });
            lane_col[lane] += 1;
            next[lane] += 1;
        }
    }
    nodes
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tom-diagram: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut lanes = Vec::new();
    for path in &options.traces {
        let text = match std::fs::read(path).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => {
                eprintln!("tom-diagram: {path}: not UTF-8 text: not a trace");
                return ExitCode::from(2);
            }
            Err(err) => {
                eprintln!("tom-diagram: {path}: {err}");
                return ExitCode::from(2);
            }
        };
        match trace_reader::parse_trace(&text) {
            Ok(events) => lanes.extend(lanes_of(path, events)),
            Err(err) => {
                eprintln!("tom-diagram: {path}: {err}");
                return ExitCode::from(2);
            }
        }
    }
    apply_window(&mut lanes, &options);
    lanes.retain(|l| l.events.iter().any(|e| !matches!(e.kind, EventKind::Start { .. })) || options.from.is_none());
    lanes.sort_by_key(|l| (l.rank, l.events.first().map_or(0, |e| e.time_us)));
    let title = match (options.from, options.to) {
        (None, None) => "tom: a run, member by member".to_string(),
        (from, to) => format!(
            "tom: a run, messages at positions {}..{}",
            from.unwrap_or(1),
            to.map_or("end".to_string(), |t| t.to_string())
        ),
    };
    let svg = svg::render(&lanes, &title);
    let written = match &options.out {
        Some(path) => std::fs::write(path, svg.as_bytes()),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(svg.as_bytes()).and_then(|()| stdout.flush())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tom-diagram: {}: {err}", options.out.as_deref().unwrap_or("stdout"));
            ExitCode::FAILURE
        }
    }
}
