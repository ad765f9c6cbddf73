//! Drawing a run for `tom-diagram`: the SVG page with its title and summary, one lane per life, an
//! arrow per received data message, one mark per drawn event (details in its tooltip), and the legend.
//! Which events are drawn and in which column is decided in `tom-diagram.rs` (`layout`); this module
//! only turns lanes and their laid-out marks into markup.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use tom::trace::{EventKind, TraceEvent, TracedMessage};

use super::{first_time_us, key_of, layout, Lane, Node};

/// Message colours, by origin rank.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
];

const COL_W: f64 = 17.0;
const LANE_H: f64 = 78.0;
const LEFT: f64 = 170.0;
const TOP: f64 = 78.0;
const LEGEND_H: f64 = 128.0;

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

/// The file name without its directories.
fn short(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The horizontal centre of column `col`.
fn col_x_px(col: usize) -> f64 {
    LEFT + 20.0 + col as f64 * COL_W
}

/// The vertical position of lane `lane`'s line.
fn lane_y_px(lane: usize) -> f64 {
    TOP + 30.0 + lane as f64 * LANE_H
}

/// The whole picture.
pub fn render(lanes: &[Lane], title: &str) -> String {
    let nodes = layout(lanes);
    let sim = lanes.iter().any(|l| l.sim_clock);
    let first = first_time_us(lanes);
    let mut s = String::new();
    page_open(&mut s, &nodes, lanes.len());
    title_and_summary(&mut s, title, lanes.len(), &nodes);
    for (i, lane) in lanes.iter().enumerate() {
        lane_of(&mut s, i, lane, &nodes);
    }
    arrows(&mut s, lanes, &nodes);
    marks(&mut s, &nodes, first, sim);
    legend(&mut s, 20.0, TOP + lanes.len() as f64 * LANE_H + 16.0, sim);
    s.push_str("</svg>\n");
    s
}

/// Opens the `<svg>` element, wide enough for the columns `nodes` use and tall enough for `lanes`
/// lanes and the legend, then the arrowheads and the white background.
fn page_open(s: &mut String, nodes: &[Node], lanes: usize) {
    let cols = nodes.iter().map(|n| n.col + 1).max().unwrap_or(1);
    let width = (LEFT + cols as f64 * COL_W + 60.0).max(980.0);
    let height = TOP + lanes as f64 * LANE_H + LEGEND_H;
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
}

/// The title, and a summary line under it: lives, messages, the positions delivered and views.
fn title_and_summary(s: &mut String, title: &str, lives: usize, nodes: &[Node]) {
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
        lives,
        messages.len(),
        views.len()
    );
}

/// Lane `i`: its labels, its line from its first to its last mark, and a tick at its end when the
/// trace just stops (no crash, exclusion, departure or stop ends it).
fn lane_of(s: &mut String, i: usize, lane: &Lane, nodes: &[Node]) {
    let on_lane: Vec<&Node> = nodes.iter().filter(|n| n.lane == i).collect();
    let start = on_lane.first().map_or(0, |n| n.col);
    let end = on_lane.last().map_or(0, |n| n.col);
    let joined_col = on_lane
        .iter()
        .find(|n| matches!(n.event.kind, EventKind::Joined { .. }))
        .map(|n| n.col);
    lane_labels(s, i, lane);
    let (x0, x1) = (col_x_px(start) - 8.0, col_x_px(end) + 8.0);
    lane_line(s, i, lane, (x0, x1), joined_col);
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
            lane_y_px(i) - 5.0,
            lane_y_px(i) + 5.0
        );
    }
    s.push_str("</g>\n");
}

/// Opens lane `i`'s group with its labels: rank, life (and whether it rejoined) and trace file.
fn lane_labels(s: &mut String, i: usize, lane: &Lane) {
    let y = lane_y_px(i);
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
        y - 4.0,
        colour(lane.rank),
        lane.rank,
        y + 10.0,
        life,
        if lane.joining { " (rejoined)" } else { "" },
        y + 22.0,
        esc(&short(&lane.file))
    );
}

/// Lane `i`'s line from `x0` to `x1`: a rejoined life's is dashed until the column it was admitted in
/// (all of it when it never was), a first life's solid.
fn lane_line(s: &mut String, i: usize, lane: &Lane, (x0, x1): (f64, f64), joined_col: Option<usize>) {
    match joined_col.filter(|_| lane.joining) {
        Some(jc) => {
            let _ = write!(
                s,
                "<line x1=\"{x0:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#999\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>\
                 <line x1=\"{:.1}\" y1=\"{yy:.1}\" x2=\"{x1:.1}\" y2=\"{yy:.1}\" stroke=\"#333\" stroke-width=\"2\"/>",
                col_x_px(jc),
                col_x_px(jc),
                yy = lane_y_px(i)
            );
        }
        None => {
            let dash = if lane.joining { " stroke-dasharray=\"4 3\"" } else { "" };
            let _ = write!(
                s,
                "<line x1=\"{x0:.1}\" y1=\"{yy:.1}\" x2=\"{x1:.1}\" y2=\"{yy:.1}\" stroke=\"#333\" stroke-width=\"2\"{dash}/>",
                yy = lane_y_px(i)
            );
        }
    }
}

/// The message arrows, from each data message's (first) send to each of its receives; drawn before
/// the marks, so under them.
fn arrows(s: &mut String, lanes: &[Lane], nodes: &[Node]) {
    let mut send_at: BTreeMap<(u16, u64, u64), (usize, usize)> = BTreeMap::new();
    for n in nodes {
        if let (EventKind::Send { .. }, Some(k)) = (&n.event.kind, key_of(&n.event.kind)) {
            send_at.entry(k).or_insert((n.lane, n.col));
        }
    }
    s.push_str("<g class=\"arrows\" fill=\"none\">\n");
    for n in nodes {
        if let (EventKind::Receive { from, .. }, Some(k)) = (&n.event.kind, key_of(&n.event.kind)) {
            if let Some(&(lane, col)) = send_at.get(&k) {
                let _ = writeln!(
                    s,
                    "<line class=\"msg\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1.3\" stroke-opacity=\"0.6\" marker-end=\"url(#arrow{})\"><title>message {}.{} (origin {}, life #{}) from rank {from} to rank {}</title></line>",
                    col_x_px(col),
                    lane_y_px(lane),
                    col_x_px(n.col),
                    lane_y_px(n.lane),
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
}

/// Where one mark goes, the event it shows, and its time as the tooltip says it.
struct Mark<'a> {
    cx: f64,
    cy: f64,
    event: &'a TraceEvent,
    t: String,
}

/// One mark per node, in layout order.
fn marks(s: &mut String, nodes: &[Node], first: u64, sim: bool) {
    // Per lane, the column of its last delivery and whether its label went below the lane.
    let mut last_deliver_col: BTreeMap<usize, (usize, bool)> = BTreeMap::new();
    for n in nodes {
        let m = Mark {
            cx: col_x_px(n.col),
            cy: lane_y_px(n.lane),
            event: n.event,
            t: when(n.event, first, sim),
        };
        let (cx, cy, t) = (m.cx, m.cy, &m.t);
        match &n.event.kind {
            EventKind::Send { msg, .. } => send_mark(s, &m, msg.data.expect("only data sends are drawn")),
            EventKind::Receive { .. } => receive_mark(s, &m),
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
                deliver_mark(s, &m, below, (*position, *origin, *msg_lamport), payload);
            }
            EventKind::View { view, members } => view_mark(s, &m, *view, members),
            EventKind::Suspect { suspect, by } => suspect_mark(s, &m, *suspect, *by),
            EventKind::Excluded { view } => cross(
                s,
                cx,
                cy,
                "#c00000",
                "excluded",
                &format!("excluded by view {view} · {t}"),
            ),
            EventKind::Crash => cross(s, cx, cy, "#c00000", "crash", &format!("crashes · {t}")),
            EventKind::Stop => cross(
                s,
                cx,
                cy,
                "#777",
                "stop",
                &format!("the process shut the member down · {t}"),
            ),
            EventKind::Joined { position } => joined_mark(s, &m, *position),
            EventKind::JoinRequest { joiner } => join_request_mark(s, &m, *joiner),
            EventKind::Start { joining, .. } => start_mark(s, &m, *joining),
            EventKind::Leave | EventKind::Left => leave_mark(s, &m, matches!(n.event.kind, EventKind::Leave)),
            EventKind::Ack { .. } => {}
        }
    }
}

/// A multicast: a dot in the origin's colour.
fn send_mark(s: &mut String, m: &Mark, d: TracedMessage) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let _ = writeln!(
        s,
        "<circle class=\"send\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4.5\" fill=\"{}\"><title>rank {} multicasts {}.{} (view {}, seq {}) · {t}</title></circle>",
        colour(d.origin),
        m.event.rank,
        d.lamport,
        d.origin,
        d.view,
        d.seq
    );
}

/// A receive: a small dark dot (the arrow ends there).
fn receive_mark(s: &mut String, m: &Mark) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let _ = writeln!(
        s,
        "<circle class=\"receive\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"1.8\" fill=\"#333\"><title>received · lamport {} · {t}</title></circle>",
        m.event.lamport
    );
}

/// A delivery: a square in the origin's colour, labelled with its position above the lane, or
/// `below` it.
fn deliver_mark(
    s: &mut String,
    m: &Mark,
    below: bool,
    (position, origin, msg_lamport): (u64, u16, u64),
    payload: &str,
) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let ly = if below { cy + 20.0 } else { cy - 11.0 };
    let _ = writeln!(
        s,
        "<g class=\"deliver\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\" fill=\"{}\" stroke=\"#000\" stroke-width=\"0.6\"/>\
         <text x=\"{cx:.1}\" y=\"{ly:.1}\" font-size=\"10\" text-anchor=\"middle\" font-weight=\"bold\">{position}</text>\
         <title>delivers #{position}: {}.{origin} from rank {origin} \"{}\" · {t}</title></g>",
        cx - 4.5,
        cy - 4.5,
        colour(origin),
        msg_lamport,
        esc(payload)
    );
}

/// A view installed: a purple bar labelled `vN`; its members in the tooltip.
fn view_mark(s: &mut String, m: &Mark, view: u64, members: &[(u16, u64)]) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
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

/// A suspicion: an orange triangle labelled `?r`, and whose suspicion it is in the tooltip.
fn suspect_mark(s: &mut String, m: &Mark, suspect: u16, by: u16) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let how = if by == m.event.rank {
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

/// A rejoined life admitted: a green diamond labelled with the position it joined at.
fn joined_mark(s: &mut String, m: &Mark, position: u64) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let _ = writeln!(
        s,
        "<g class=\"joined\"><path d=\"M{cx:.1},{:.1} l7,7 l-7,7 l-7,-7 z\" fill=\"#2a9d3a\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#2a9d3a\" font-weight=\"bold\">joined @{position}</text>\
         <title>admitted as life #{}; the group had delivered {position} messages · {t}</title></g>",
        cy - 7.0,
        cx + 8.0,
        cy + 22.0,
        m.event.inc
    );
}

/// A request to rejoin, seen by a member: a green ring.
fn join_request_mark(s: &mut String, m: &Mark, joiner: u16) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let _ = writeln!(
        s,
        "<g class=\"join-request\"><circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"none\" stroke=\"#2a9d3a\" stroke-width=\"1.5\"/>\
         <title>rank {joiner} asks to rejoin · {t}</title></g>"
    );
}

/// The start of a life: a dark bar labelled `start`, or `restart` for a rejoining process.
fn start_mark(s: &mut String, m: &Mark, joining: bool) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let label = if joining { "restart" } else { "start" };
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

/// A clean departure: a blue bar labelled `leave` (asked for) or `left` (done).
fn leave_mark(s: &mut String, m: &Mark, asked: bool) {
    let (cx, cy, t) = (m.cx, m.cy, &m.t);
    let label = if asked { "leave" } else { "left" };
    let _ = writeln!(
        s,
        "<g class=\"{label}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"14\" fill=\"#1f5fbf\"/>\
         <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#1f5fbf\">{label}</text><title>{label} · {t}</title></g>",
        cx - 3.0,
        cy - 7.0,
        cy + 20.0
    );
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

/// The legend box with its top left corner at (`x0`, `y0`): three columns of three entries.
fn legend(s: &mut String, x0: f64, y0: f64, sim: bool) {
    let _ = writeln!(
        s,
        "<g class=\"legend\" font-size=\"11\"><rect x=\"{x0}\" y=\"{y0}\" width=\"940\" height=\"106\" fill=\"#f7f7f7\" stroke=\"#ccc\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" font-weight=\"bold\">Legend</text>",
        x0 + 10.0,
        y0 + 18.0
    );
    let mut legend = Legend { s, x0, y0 };
    legend.messages_column();
    legend.membership_column();
    legend.lives_column(sim);
    legend.s.push_str("</g>\n");
}

/// The legend being written: where its box is, for placing its entries.
struct Legend<'a> {
    s: &'a mut String,
    x0: f64,
    y0: f64,
}

impl Legend<'_> {
    /// The vertical centre of entry row `i`.
    fn row_y_px(&self, i: usize) -> f64 {
        self.y0 + 40.0 + 22.0 * i as f64
    }

    /// The left edge of entry column `j`.
    fn col_x_px(&self, j: usize) -> f64 {
        self.x0 + 14.0 + 310.0 * j as f64
    }

    /// The entry at row `i`, column `j`: its glyph, then what it means.
    fn item(&mut self, i: usize, j: usize, glyph: String, text: &str) {
        let (x, y) = (self.col_x_px(j) + 28.0, self.row_y_px(i) + 4.0);
        let _ = writeln!(self.s, "{glyph}<text x=\"{x:.1}\" y=\"{y:.1}\">{}</text>", esc(text));
    }

    /// The first column: multicast, message arrow, delivery.
    fn messages_column(&mut self) {
        let (col, row) = (self.col_x_px(0), |i| self.row_y_px(i));
        let multicast = format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"{}\"/>",
            col + 8.0,
            row(0),
            PALETTE[0]
        );
        let message = format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1.3\" marker-end=\"url(#arrow1)\"/>",
            col,
            row(1) - 5.0,
            col + 20.0,
            row(1) + 5.0,
            PALETTE[1]
        );
        let delivery = format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\" fill=\"{}\" stroke=\"#000\" stroke-width=\"0.6\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" font-weight=\"bold\">7</text>",
            col + 4.0,
            row(2) - 4.5,
            PALETTE[2],
            col + 15.0,
            row(2) + 4.0
        );
        self.item(0, 0, multicast, "multicast (colour = origin rank)");
        self.item(1, 0, message, "message, from send to receive");
        self.item(
            2,
            0,
            delivery,
            "delivery; the number is its position in the total order",
        );
    }

    /// The second column: view, suspicion, crash or exclusion.
    fn membership_column(&mut self) {
        let (col, row) = (self.col_x_px(1), |i| self.row_y_px(i));
        let view = format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"4\" height=\"18\" fill=\"#7b3fa0\"/>",
            col + 6.0,
            row(0) - 9.0
        );
        let suspicion = format!(
            "<path d=\"M{:.1},{:.1} l6,10 h-12 z\" fill=\"#f0a000\" stroke=\"#a06000\"/>",
            col + 8.0,
            row(1) - 5.0
        );
        let crash = format!(
            "<path d=\"M{:.1},{:.1} l12,12 m0,-12 l-12,12\" stroke=\"#c00000\" stroke-width=\"3\"/>",
            col + 2.0,
            row(2) - 6.0
        );
        self.item(0, 1, view, "view installed (vN); hover for its members");
        self.item(1, 1, suspicion, "suspicion (?r: rank r suspected)");
        self.item(2, 1, crash, "crash or exclusion (grey: process stopped)");
    }

    /// The third column: rejoined life, restarted process, clean departure (with how times read).
    fn lives_column(&mut self, sim: bool) {
        let (col, row) = (self.col_x_px(2), |i| self.row_y_px(i));
        let admitted = format!(
            "<path d=\"M{:.1},{:.1} l7,7 l-7,7 l-7,-7 z\" fill=\"#2a9d3a\"/>",
            col + 8.0,
            row(0) - 7.0
        );
        let restarted = format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
            col,
            row(1),
            col + 20.0,
            row(1)
        );
        let departure = format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"14\" fill=\"#1f5fbf\"/>",
            col + 5.0,
            row(2) - 7.0
        );
        self.item(0, 2, admitted, "rejoined life admitted at position p");
        self.item(1, 2, restarted, "restarted process, not yet admitted");
        let departure_text = if sim {
            "leave / left cleanly · times: simulation steps"
        } else {
            "leave / left cleanly · times: wall clock"
        };
        self.item(2, 2, departure, departure_text);
    }
}
