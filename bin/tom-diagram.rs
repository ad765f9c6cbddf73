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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use tom::trace::{EventKind, TraceEvent};

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

/// Message colours, by origin rank.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
];

const COL_W: f64 = 17.0;
const LANE_H: f64 = 78.0;
const LEFT: f64 = 170.0;
const TOP: f64 = 78.0;
const LEGEND_H: f64 = 128.0;

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

/// Keeps what the window asks for.
fn apply_window(lanes: &mut [Lane], o: &Options) {
    let first = lanes
        .iter()
        .flat_map(|l| l.events.first())
        .map(|e| e.time_us)
        .min()
        .unwrap_or(0);
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

/// Assigns columns: per lane in order, a receive right of its send.
fn layout(lanes: &[Lane]) -> Vec<Node<'_>> {
    // Per lane, the drawn events (consecutive sends of one message collapse into one mark).
    let mut queues: Vec<Vec<&TraceEvent>> = Vec::new();
    for lane in lanes {
        let mut q: Vec<&TraceEvent> = Vec::new();
        // Suspicions are gossiped: one mark per suspected rank per view is enough.
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
        queues.push(q);
    }
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

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn palette_index(rank: u16) -> usize {
    (rank as usize + PALETTE.len() - 1) % PALETTE.len()
}

fn colour(rank: u16) -> &'static str {
    PALETTE[palette_index(rank)]
}

fn when(e: &TraceEvent, first: u64, sim: bool) -> String {
    if sim {
        format!("step {}", e.time_us)
    } else {
        format!("t+{:.3} ms", e.time_us.saturating_sub(first) as f64 / 1000.0)
    }
}

/// The whole picture.
fn render(lanes: &[Lane], title: &str) -> String {
    let nodes = layout(lanes);
    let cols = nodes.iter().map(|n| n.col + 1).max().unwrap_or(1);
    let sim = lanes.iter().any(|l| l.sim_clock);
    let first = lanes
        .iter()
        .flat_map(|l| l.events.first())
        .map(|e| e.time_us)
        .min()
        .unwrap_or(0);
    let width = (LEFT + cols as f64 * COL_W + 60.0).max(980.0);
    let height = TOP + lanes.len() as f64 * LANE_H + LEGEND_H;
    let x = |col: usize| LEFT + 20.0 + col as f64 * COL_W;
    let y = |lane: usize| TOP + 30.0 + lane as f64 * LANE_H;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Helvetica, Arial, sans-serif\">"
    );
    // One arrowhead per colour (context-stroke markers are too new to rely on).
    s.push_str("<defs>");
    for (i, c) in PALETTE.iter().enumerate() {
        let _ = write!(
            s,
            "<marker id=\"arrow{i}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{c}\"/></marker>"
        );
    }
    s.push_str("</defs>\n");
    s.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");

    // Title and summary.
    let deliveries: Vec<u64> = nodes
        .iter()
        .filter_map(|n| match n.event.kind {
            EventKind::Deliver { position, .. } => Some(position),
            _ => None,
        })
        .collect();
    let messages: BTreeSet<_> = nodes.iter().filter_map(|n| key_of(&n.event.kind)).collect();
    let views: BTreeSet<u64> = nodes
        .iter()
        .filter_map(|n| match n.event.kind {
            EventKind::View { view, .. } => Some(view),
            _ => None,
        })
        .collect();
    let range = match (deliveries.iter().min(), deliveries.iter().max()) {
        (Some(a), Some(b)) => format!("positions {a}..{b}"),
        _ => "no deliveries".to_string(),
    };
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"30\" font-size=\"18\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"52\" font-size=\"12\" fill=\"#444\">{} lives, {} messages, {range}, {} views · columns follow causality (a receive is right of its send), not the clock; hover a mark for details</text>",
        lanes.len(),
        messages.len(),
        views.len()
    );

    // Lanes.
    for (i, lane) in lanes.iter().enumerate() {
        let on_lane: Vec<&Node> = nodes.iter().filter(|n| n.lane == i).collect();
        let start = on_lane.first().map_or(0, |n| n.col);
        let end = on_lane.last().map_or(0, |n| n.col);
        let joined_col = on_lane
            .iter()
            .find(|n| matches!(n.event.kind, EventKind::Joined { .. }))
            .map(|n| n.col);
        let life = if lane.inc == 0 {
            "never admitted".to_string()
        } else {
            format!("life #{}", lane.inc)
        };
        let _ = writeln!(
            s,
            "<g class=\"lane\"><text x=\"16\" y=\"{:.1}\" font-size=\"14\" font-weight=\"bold\" fill=\"{}\">rank {}</text>\
             <text x=\"16\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\">{}{}</text>\
             <text x=\"16\" y=\"{:.1}\" font-size=\"9\" fill=\"#888\">{}</text>",
            y(i) - 4.0,
            colour(lane.rank),
            lane.rank,
            y(i) + 10.0,
            life,
            if lane.joining { " (rejoined)" } else { "" },
            y(i) + 22.0,
            esc(&short(&lane.file))
        );
        let (x0, x1) = (x(start) - 8.0, x(end) + 8.0);
        match joined_col.filter(|_| lane.joining) {
            Some(jc) => {
                let _ = write!(
                    s,
                    "<line x1=\"{x0:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#999\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>\
                     <line x1=\"{:.1}\" y1=\"{yy:.1}\" x2=\"{x1:.1}\" y2=\"{yy:.1}\" stroke=\"#333\" stroke-width=\"2\"/>",
                    x(jc),
                    x(jc),
                    yy = y(i)
                );
            }
            None => {
                let dash = if lane.joining { " stroke-dasharray=\"4 3\"" } else { "" };
                let _ = write!(
                    s,
                    "<line x1=\"{x0:.1}\" y1=\"{yy:.1}\" x2=\"{x1:.1}\" y2=\"{yy:.1}\" stroke=\"#333\" stroke-width=\"2\"{dash}/>",
                    yy = y(i)
                );
            }
        }
        let ended = on_lane.last().is_some_and(|n| {
            matches!(
                n.event.kind,
                EventKind::Crash | EventKind::Excluded { .. } | EventKind::Left | EventKind::Stop
            )
        });
        if !ended {
            let _ = write!(
                s,
                "<line x1=\"{x1:.1}\" y1=\"{:.1}\" x2=\"{x1:.1}\" y2=\"{:.1}\" stroke=\"#333\" stroke-width=\"2\"><title>trace ends (the process was stopped or killed, or is still running)</title></line>",
                y(i) - 5.0,
                y(i) + 5.0
            );
        }
        s.push_str("</g>\n");
    }

    // Message arrows, drawn under the marks.
    let mut send_at: BTreeMap<(u16, u64, u64), (usize, usize)> = BTreeMap::new();
    for n in &nodes {
        if let (EventKind::Send { .. }, Some(k)) = (&n.event.kind, key_of(&n.event.kind)) {
            send_at.entry(k).or_insert((n.lane, n.col));
        }
    }
    s.push_str("<g class=\"arrows\" fill=\"none\">\n");
    for n in &nodes {
        if let (EventKind::Receive { from, .. }, Some(k)) = (&n.event.kind, key_of(&n.event.kind)) {
            if let Some(&(lane, col)) = send_at.get(&k) {
                let _ = writeln!(
                    s,
                    "<line class=\"msg\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1.3\" stroke-opacity=\"0.6\" marker-end=\"url(#arrow{})\"><title>message {}.{} (origin {}, life #{}) from rank {from} to rank {}</title></line>",
                    x(col),
                    y(lane),
                    x(n.col),
                    y(n.lane),
                    colour(k.0),
                    palette_index(k.0),
                    k.2,
                    k.0,
                    k.0,
                    k.1,
                    lanes[n.lane].rank
                );
            }
        }
    }
    s.push_str("</g>\n");

    // Marks.
    let mut last_deliver_col: BTreeMap<usize, (usize, bool)> = BTreeMap::new();
    for n in &nodes {
        let (cx, cy) = (x(n.col), y(n.lane));
        let t = when(n.event, first, sim);
        let e = n.event;
        match &e.kind {
            EventKind::Send { msg, .. } => {
                let d = msg.data.expect("only data sends are drawn");
                let _ = writeln!(
                    s,
                    "<circle class=\"send\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4.5\" fill=\"{}\"><title>rank {} multicasts {}.{} (view {}, seq {}) · {t}</title></circle>",
                    colour(d.origin),
                    e.rank,
                    d.lamport,
                    d.origin,
                    d.view,
                    d.seq
                );
            }
            EventKind::Receive { .. } => {
                let _ = writeln!(
                    s,
                    "<circle class=\"receive\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"1.8\" fill=\"#333\"><title>received · lamport {} · {t}</title></circle>",
                    e.lamport
                );
            }
            EventKind::Deliver {
                position,
                origin,
                msg_lamport,
                payload,
                ..
            } => {
                // Labels of neighbouring deliveries alternate above and below the lane.
                let below = match last_deliver_col.get(&n.lane) {
                    Some(&(col, was_below)) if col + 2 >= n.col => !was_below,
                    _ => false,
                };
                last_deliver_col.insert(n.lane, (n.col, below));
                let ly = if below { cy + 20.0 } else { cy - 11.0 };
                let _ = writeln!(
                    s,
                    "<g class=\"deliver\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\" fill=\"{}\" stroke=\"#000\" stroke-width=\"0.6\"/>\
                     <text x=\"{cx:.1}\" y=\"{ly:.1}\" font-size=\"10\" text-anchor=\"middle\" font-weight=\"bold\">{position}</text>\
                     <title>delivers #{position}: {}.{origin} from rank {origin} \"{}\" · {t}</title></g>",
                    cx - 4.5,
                    cy - 4.5,
                    colour(*origin),
                    msg_lamport,
                    esc(payload)
                );
            }
            EventKind::View { view, members } => {
                let list: Vec<String> = members.iter().map(|(r, i)| format!("{r}#{i}")).collect();
                let _ = writeln!(
                    s,
                    "<g class=\"view\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"4\" height=\"36\" fill=\"#7b3fa0\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#7b3fa0\" font-weight=\"bold\">v{view}</text>\
                     <title>installs view {view}: {} · {t}</title></g>",
                    cx - 2.0,
                    cy - 18.0,
                    cx + 3.0,
                    cy - 20.0,
                    list.join(" ")
                );
            }
            EventKind::Suspect { suspect, by } => {
                let how = if *by == e.rank {
                    "its detector".to_string()
                } else {
                    format!("rank {by} says so")
                };
                let _ = writeln!(
                    s,
                    "<g class=\"suspect\"><path d=\"M{cx:.1},{:.1} l6,10 h-12 z\" fill=\"#f0a000\" stroke=\"#a06000\"/>\
                     <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#a06000\">?{suspect}</text>\
                     <title>suspects rank {suspect} ({how}) · {t}</title></g>",
                    cy + 8.0,
                    cy + 28.0
                );
            }
            EventKind::Excluded { view } => cross(
                &mut s,
                cx,
                cy,
                "#c00000",
                "excluded",
                &format!("excluded by view {view} · {t}"),
            ),
            EventKind::Crash => cross(&mut s, cx, cy, "#c00000", "crash", &format!("crashes · {t}")),
            EventKind::Stop => cross(
                &mut s,
                cx,
                cy,
                "#777",
                "stop",
                &format!("the process shut the member down · {t}"),
            ),
            EventKind::Joined { position } => {
                let _ = writeln!(
                    s,
                    "<g class=\"joined\"><path d=\"M{cx:.1},{:.1} l7,7 l-7,7 l-7,-7 z\" fill=\"#2a9d3a\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#2a9d3a\" font-weight=\"bold\">joined @{position}</text>\
                     <title>admitted as life #{}; the group had delivered {position} messages · {t}</title></g>",
                    cy - 7.0,
                    cx + 8.0,
                    cy + 22.0,
                    e.inc
                );
            }
            EventKind::JoinRequest { joiner } => {
                let _ = writeln!(
                    s,
                    "<g class=\"join-request\"><circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"none\" stroke=\"#2a9d3a\" stroke-width=\"1.5\"/>\
                     <title>rank {joiner} asks to rejoin · {t}</title></g>"
                );
            }
            EventKind::Start { joining, .. } => {
                let label = if *joining { "restart" } else { "start" };
                let _ = writeln!(
                    s,
                    "<g class=\"start\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"3\" height=\"14\" fill=\"#333\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#555\">{label}</text><title>{label} · {t}</title></g>",
                    cx - 1.5,
                    cy - 7.0,
                    cx - 4.0,
                    cy + 18.0
                );
            }
            EventKind::Leave | EventKind::Left => {
                let label = if matches!(e.kind, EventKind::Leave) {
                    "leave"
                } else {
                    "left"
                };
                let _ = writeln!(
                    s,
                    "<g class=\"{label}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"14\" fill=\"#1f5fbf\"/>\
                     <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#1f5fbf\">{label}</text><title>{label} · {t}</title></g>",
                    cx - 3.0,
                    cy - 7.0,
                    cy + 20.0
                );
            }
            EventKind::Ack { .. } => {}
        }
    }

    legend(&mut s, 20.0, TOP + lanes.len() as f64 * LANE_H + 16.0, sim);
    s.push_str("</svg>\n");
    s
}

fn cross(s: &mut String, cx: f64, cy: f64, colour: &str, label: &str, title: &str) {
    let _ = writeln!(
        s,
        "<g class=\"{label}\"><path d=\"M{:.1},{:.1} l12,12 m0,-12 l-12,12\" stroke=\"{colour}\" stroke-width=\"3\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\" font-weight=\"bold\">{label}</text><title>{}</title></g>",
        cx - 6.0,
        cy - 6.0,
        cx + 8.0,
        cy + 20.0,
        esc(title)
    );
}

fn legend(s: &mut String, x0: f64, y0: f64, sim: bool) {
    let _ = writeln!(
        s,
        "<g class=\"legend\" font-size=\"11\"><rect x=\"{x0}\" y=\"{y0}\" width=\"940\" height=\"106\" fill=\"#f7f7f7\" stroke=\"#ccc\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" font-weight=\"bold\">Legend</text>",
        x0 + 10.0,
        y0 + 18.0
    );
    let row = |i: usize| y0 + 40.0 + 22.0 * i as f64;
    let col = |j: usize| x0 + 14.0 + 310.0 * j as f64;
    let mut item = |i: usize, j: usize, glyph: String, text: &str| {
        let _ = writeln!(
            s,
            "{glyph}<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            col(j) + 28.0,
            row(i) + 4.0,
            esc(text)
        );
    };
    item(
        0,
        0,
        format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"{}\"/>",
            col(0) + 8.0,
            row(0),
            PALETTE[0]
        ),
        "multicast (colour = origin rank)",
    );
    item(
        1,
        0,
        format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1.3\" marker-end=\"url(#arrow1)\"/>",
            col(0),
            row(1) - 5.0,
            col(0) + 20.0,
            row(1) + 5.0,
            PALETTE[1]
        ),
        "message, from send to receive",
    );
    item(
        2,
        0,
        format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\" fill=\"{}\" stroke=\"#000\" stroke-width=\"0.6\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" font-weight=\"bold\">7</text>",
            col(0) + 4.0,
            row(2) - 4.5,
            PALETTE[2],
            col(0) + 15.0,
            row(2) + 4.0
        ),
        "delivery; the number is its position in the total order",
    );
    item(
        0,
        1,
        format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"4\" height=\"18\" fill=\"#7b3fa0\"/>",
            col(1) + 6.0,
            row(0) - 9.0
        ),
        "view installed (vN); hover for its members",
    );
    item(
        1,
        1,
        format!(
            "<path d=\"M{:.1},{:.1} l6,10 h-12 z\" fill=\"#f0a000\" stroke=\"#a06000\"/>",
            col(1) + 8.0,
            row(1) - 5.0
        ),
        "suspicion (?r: rank r suspected)",
    );
    item(
        2,
        1,
        format!(
            "<path d=\"M{:.1},{:.1} l12,12 m0,-12 l-12,12\" stroke=\"#c00000\" stroke-width=\"3\"/>",
            col(1) + 2.0,
            row(2) - 6.0
        ),
        "crash or exclusion (grey: process stopped)",
    );
    item(
        0,
        2,
        format!(
            "<path d=\"M{:.1},{:.1} l7,7 l-7,7 l-7,-7 z\" fill=\"#2a9d3a\"/>",
            col(2) + 8.0,
            row(0) - 7.0
        ),
        "rejoined life admitted at position p",
    );
    item(
        1,
        2,
        format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
            col(2),
            row(1),
            col(2) + 20.0,
            row(1)
        ),
        "restarted process, not yet admitted",
    );
    item(
        2,
        2,
        format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"14\" fill=\"#1f5fbf\"/>",
            col(2) + 5.0,
            row(2) - 7.0
        ),
        if sim {
            "leave / left cleanly · times: simulation steps"
        } else {
            "leave / left cleanly · times: wall clock"
        },
    );
    s.push_str("</g>\n");
}

/// The file name without its directories.
fn short(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
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
    let svg = render(&lanes, &title);
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
