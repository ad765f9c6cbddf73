//! Traces: one JSON object per line per protocol event of one member, for pictures and post-mortems.
//!
//! What lives here:
//! - [`TraceEvent`] (one line: who, when, the Lamport clock, and an [`EventKind`]) and its JSON form,
//!   written by hand ([`TraceEvent::to_json`]); `tom-diagram` reads it back with a tiny JSON reader
//!   of its own (`bin/diagram/trace_reader.rs`) — the crate has no JSON dependency;
//! - [`input_events`] and [`output_events`]: the events a driver derives from the core's
//!   [`Input`]s and [`Output`]s and the [`Node`]'s getters. The core itself knows nothing of traces;
//! - [`TraceSink`]: a shared, line-oriented writer that the runtime flushes once per batch of its
//!   protocol loop, so a running member's trace is readable as it runs (not held until exit).
//!
//! Invariants and conventions:
//! - `time_us` is taken by the driver, never by the core: microseconds since the UNIX epoch in the
//!   threaded runtime ([`wall_clock_us`]), simulation steps in the simulator (its `start` line says
//!   which, `"clock":"wall"` or `"clock":"sim"`);
//! - a data message is named by its origin's rank and incarnation, its view, its per-view `seq`, and its
//!   Lamport time; `(origin, origin_inc, msg_lamport)` names it across the whole run (one origin life
//!   never reuses a Lamport time), which is how a `send` is matched with its `receive`s and `deliver`s;
//! - every trace of one life starts with a `start` line; a process that starts a new life (a member
//!   that rejoins after an exclusion) appends a new `start` line to the same trace;
//! - reading never panics: a bad line is an error naming what is wrong.
//!
//! The line format (fields beyond the first five depend on `event`):
//!
//! ```text
//! {"time_us":1700000000123456,"rank":2,"inc":1,"lamport":17,"event":"send","to":3,"msg":"data","view":1,
//!  "origin":2,"origin_inc":1,"seq":4,"msg_lamport":17}
//! ```
//!
//! | event | fields |
//! |---|---|
//! | `start` | `clock` (`wall`/`sim`), `joining` (bool) |
//! | `send` | `to`, `msg` (message kind), `view`?, `joiner` (bool), data id fields for `data` |
//! | `receive` | `from`, `msg`, `view`?, data id fields for `data` |
//! | `ack` | `dir` (`out`/`in`), `peer`, `view`, `acks` (array) |
//! | `deliver` | `position`, `origin`, `origin_inc`, `msg_lamport`, `payload` (at most 40 bytes, lossy) |
//! | `view` | `view`, `members` (array of `[rank, inc]`) |
//! | `suspect` | `suspect` (rank), `by` (rank: this member's own detector when it is `rank`) |
//! | `join_request` | `joiner` (the rank a restarted process asks for) |
//! | `joined` | `position` (messages the group delivered before this life's first delivery) |
//! | `excluded` | `view` |
//! | `leave`, `left`, `stop`, `crash` | (none) — `leave`: the application asked to leave; `stop`: the process shut the member down; `crash`: the simulator killed it |

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::message::Message;
use crate::protocol::{Input, Node, Output};
use crate::types::Rank;

/// Most payload bytes a `deliver` line carries (a preview for tooltips, not the message).
pub const PAYLOAD_PREVIEW_MAX: usize = 40;

/// Microseconds since the UNIX epoch (0 if the system clock is before it).
pub fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The identity of one data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TracedMessage {
    /// The origin's rank.
    pub origin: u16,
    /// The origin's incarnation (0 if the tracing member did not know it).
    pub origin_inc: u64,
    /// The view it was multicast in.
    pub view: u64,
    /// Its number among the origin's messages of that view.
    pub seq: u64,
    /// Its Lamport time (with `origin`, its place in the total order).
    pub lamport: u64,
}

impl TracedMessage {
    /// `(origin, origin_inc, lamport)`: names the message across the whole run.
    pub fn key(&self) -> (u16, u64, u64) {
        (self.origin, self.origin_inc, self.lamport)
    }
}

/// A protocol message as a trace shows it: its kind, its view, and for data its identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MsgInfo {
    /// [`Message::kind`]: `data`, `prepare`, `decide`, …
    pub kind: String,
    /// The view the message names, if it names one.
    pub view: Option<u64>,
    /// For data messages, which one.
    pub data: Option<TracedMessage>,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A life starts (a founder or a restarted process asking to rejoin).
    Start {
        /// `wall` (runtime) or `sim` (simulator): what `time_us` counts.
        clock: String,
        /// True for a restarted process that still has to be admitted.
        joining: bool,
    },
    /// A message handed to the connection to `to` (acknowledgements are [`EventKind::Ack`]).
    Send {
        /// The destination rank.
        to: u16,
        /// The message.
        msg: MsgInfo,
        /// True if it goes to a restarted process's rejoin connection.
        joiner: bool,
    },
    /// A message taken from the connection of `from` (suspicions are [`EventKind::Suspect`]).
    Receive {
        /// The sending rank.
        from: u16,
        /// The message.
        msg: MsgInfo,
    },
    /// Cumulative acknowledgements sent to or received from `peer`.
    Ack {
        /// True if sent by this member.
        out: bool,
        /// The other end.
        peer: u16,
        /// The view they count in.
        view: u64,
        /// One entry per member of the view.
        acks: Vec<u64>,
    },
    /// A message handed to the application.
    Deliver {
        /// Its position in the group's total order (1 = the first message the group delivered).
        position: u64,
        /// The origin's rank.
        origin: u16,
        /// The origin's incarnation.
        origin_inc: u64,
        /// Its Lamport time.
        msg_lamport: u64,
        /// The first bytes of the payload, lossily decoded.
        payload: String,
    },
    /// A view was installed.
    View {
        /// Its id.
        view: u64,
        /// Its members as `(rank, incarnation)`.
        members: Vec<(u16, u64)>,
    },
    /// `suspect` is suspected: by this member's detector (`by` is its own rank) or as `by` reported.
    Suspect {
        /// The suspected rank.
        suspect: u16,
        /// Who suspects it.
        by: u16,
    },
    /// A restarted process asks, through this member, to come back as `joiner`.
    JoinRequest {
        /// The rank it asks for.
        joiner: u16,
    },
    /// This restarted life was admitted after the group delivered `position` messages.
    Joined {
        /// The join position.
        position: u64,
    },
    /// This life was excluded by `view` (or lost its quorum there).
    Excluded {
        /// The view.
        view: u64,
    },
    /// The application asked to leave.
    Leave,
    /// The clean departure is complete.
    Left,
    /// The process shut the member down (to the group, a crash).
    Stop,
    /// The simulator killed this life.
    Crash,
}

impl EventKind {
    /// The `event` field's value.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Start { .. } => "start",
            EventKind::Send { .. } => "send",
            EventKind::Receive { .. } => "receive",
            EventKind::Ack { .. } => "ack",
            EventKind::Deliver { .. } => "deliver",
            EventKind::View { .. } => "view",
            EventKind::Suspect { .. } => "suspect",
            EventKind::JoinRequest { .. } => "join_request",
            EventKind::Joined { .. } => "joined",
            EventKind::Excluded { .. } => "excluded",
            EventKind::Leave => "leave",
            EventKind::Left => "left",
            EventKind::Stop => "stop",
            EventKind::Crash => "crash",
        }
    }
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceEvent {
    /// When: µs since the UNIX epoch (runtime) or simulation steps (simulator).
    pub time_us: u64,
    /// The tracing member's rank.
    pub rank: u16,
    /// Its incarnation (0 while a restarted process is not yet admitted).
    pub inc: u64,
    /// Its Lamport clock after the event.
    pub lamport: u64,
    /// What happened.
    pub kind: EventKind,
}

impl TraceEvent {
    /// The event stamped with `node`'s identity and clock.
    pub fn of(node: &Node, time_us: u64, kind: EventKind) -> TraceEvent {
        TraceEvent {
            time_us,
            rank: node.me().rank.0,
            inc: node.me().incarnation.0,
            lamport: node.lamport(),
            kind,
        }
    }

    /// One JSON object, without the line ending.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{{\"time_us\":{},\"rank\":{},\"inc\":{},\"lamport\":{},\"event\":\"{}\"",
            self.time_us,
            self.rank,
            self.inc,
            self.lamport,
            self.kind.name()
        );
        match &self.kind {
            EventKind::Start { clock, joining } => {
                s.push_str(",\"clock\":");
                push_json_string(&mut s, clock);
                let _ = write!(s, ",\"joining\":{joining}");
            }
            EventKind::Send { to, msg, joiner } => {
                let _ = write!(s, ",\"to\":{to},\"joiner\":{joiner}");
                push_msg(&mut s, msg);
            }
            EventKind::Receive { from, msg } => {
                let _ = write!(s, ",\"from\":{from}");
                push_msg(&mut s, msg);
            }
            EventKind::Ack { out, peer, view, acks } => {
                let list: Vec<String> = acks.iter().map(u64::to_string).collect();
                let dir = if *out { "out" } else { "in" };
                let _ = write!(
                    s,
                    ",\"dir\":\"{dir}\",\"peer\":{peer},\"view\":{view},\"acks\":[{}]",
                    list.join(",")
                );
            }
            EventKind::Deliver {
                position,
                origin,
                origin_inc,
                msg_lamport,
                payload,
            } => {
                let _ = write!(
                    s,
                    ",\"position\":{position},\"origin\":{origin},\"origin_inc\":{origin_inc},\"msg_lamport\":{msg_lamport},\"payload\":"
                );
                push_json_string(&mut s, payload);
            }
            EventKind::View { view, members } => {
                let list: Vec<String> = members.iter().map(|(r, i)| format!("[{r},{i}]")).collect();
                let _ = write!(s, ",\"view\":{view},\"members\":[{}]", list.join(","));
            }
            EventKind::Suspect { suspect, by } => {
                let _ = write!(s, ",\"suspect\":{suspect},\"by\":{by}");
            }
            EventKind::JoinRequest { joiner } => {
                let _ = write!(s, ",\"joiner\":{joiner}");
            }
            EventKind::Joined { position } => {
                let _ = write!(s, ",\"position\":{position}");
            }
            EventKind::Excluded { view } => {
                let _ = write!(s, ",\"view\":{view}");
            }
            EventKind::Leave | EventKind::Left | EventKind::Stop | EventKind::Crash => {}
        }
        s.push('}');
        s
    }
}

fn push_msg(s: &mut String, msg: &MsgInfo) {
    s.push_str(",\"msg\":");
    push_json_string(s, &msg.kind);
    if let Some(view) = msg.view {
        let _ = write!(s, ",\"view\":{view}");
    }
    if let Some(d) = &msg.data {
        let _ = write!(
            s,
            ",\"origin\":{},\"origin_inc\":{},\"seq\":{},\"msg_lamport\":{}",
            d.origin, d.origin_inc, d.seq, d.lamport
        );
    }
}

/// Appends `text` as a JSON string literal.
pub fn push_json_string(s: &mut String, text: &str) {
    s.push('"');
    for ch in text.chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

// ---- deriving events from the core's inputs and outputs -------------------------------------------

/// What a trace says of a message: one entry, or for a data frame one per message of its run (a
/// diagram draws each multicast's arrows, whichever frame carried it).
fn msg_infos(node: &Node, msg: &Message) -> Vec<MsgInfo> {
    // A decision is drawn with the view it decides, every other message with the view it names.
    let view = match msg {
        Message::Decide { proposal } => Some(proposal.view.id.0),
        other => other.view().map(|view| view.0),
    };
    let kind = msg.kind().to_string();
    match msg {
        Message::Data {
            view: data_view, batch, ..
        } => {
            // The origin's life is the one this member's view lists (the sender, for a data frame).
            let origin = batch.origin();
            let origin_inc = node
                .view()
                .and_then(|v| v.member(origin))
                .or_else(|| (origin == node.me().rank).then(|| node.me()))
                .map_or(0, |m| m.incarnation.0);
            batch
                .msgs()
                .iter()
                .map(|one| MsgInfo {
                    kind: kind.clone(),
                    view,
                    data: Some(TracedMessage {
                        origin: origin.0,
                        origin_inc,
                        view: data_view.0,
                        seq: one.seq,
                        lamport: one.lamport,
                    }),
                })
                .collect()
        }
        _ => vec![MsgInfo { kind, view, data: None }],
    }
}

/// The events an input stands for (ticks, connections, back-pressure and multicast requests have
/// none: a multicast shows as its `send`s). Call it *before* [`Node::handle`] (it reads the view the input
/// arrives in) and stamp the events with [`TraceEvent::of`] *after* it (the clock the input left).
pub fn input_events(node: &Node, input: &Input) -> Vec<EventKind> {
    match input {
        Input::Received {
            from,
            msg: Message::Ack { view, acks },
        } => vec![EventKind::Ack {
            out: false,
            peer: from.0,
            view: view.0,
            acks: acks.clone(),
        }],
        Input::Received {
            from,
            msg: Message::Suspect { rank, .. },
        } => vec![EventKind::Suspect {
            suspect: rank.0,
            by: from.0,
        }],
        Input::Received { from, msg } => msg_infos(node, msg)
            .into_iter()
            .map(|msg| EventKind::Receive { from: from.0, msg })
            .collect(),
        Input::JoinRequest { rank, .. } => vec![EventKind::JoinRequest { joiner: rank.0 }],
        Input::Suspect(life) => vec![EventKind::Suspect {
            suspect: life.rank.0,
            by: node.me().rank.0,
        }],
        Input::Leave => vec![EventKind::Leave],
        // Multicast requests (shown as their sends), connections, ticks, back-pressure: no event.
        _ => Vec::new(),
    }
}

/// The events of sending `msg` to `to`.
fn send_events(node: &Node, to: Rank, msg: &Message, joiner: bool) -> Vec<EventKind> {
    match msg {
        Message::Ack { view, acks } if !joiner => vec![EventKind::Ack {
            out: true,
            peer: to.0,
            view: view.0,
            acks: acks.clone(),
        }],
        _ => msg_infos(node, msg)
            .into_iter()
            .map(|msg| EventKind::Send { to: to.0, msg, joiner })
            .collect(),
    }
}

/// The events an output stands for. Call it before carrying the output out.
pub fn output_events(node: &Node, output: &Output) -> Vec<EventKind> {
    match output {
        Output::Send { to, msg } => send_events(node, *to, msg, false),
        Output::Broadcast { to, msg } => to.iter().flat_map(|to| send_events(node, *to, msg, false)).collect(),
        Output::SendToJoiner { rank, msg } => send_events(node, *rank, msg, true),
        Output::Deliver(d) => {
            let bytes = d.payload.as_bytes();
            let preview = &bytes[..bytes.len().min(PAYLOAD_PREVIEW_MAX)];
            vec![EventKind::Deliver {
                position: d.position,
                origin: d.origin.rank.0,
                origin_inc: d.origin.incarnation.0,
                msg_lamport: d.lamport,
                payload: String::from_utf8_lossy(preview).into_owned(),
            }]
        }
        Output::ViewInstalled(view) => vec![EventKind::View {
            view: view.id.0,
            members: view.members.iter().map(|m| (m.rank.0, m.incarnation.0)).collect(),
        }],
        Output::Joined { position } => vec![EventKind::Joined { position: *position }],
        Output::Excluded { view } => vec![EventKind::Excluded { view: view.0 }],
        Output::Left => vec![EventKind::Left],
    }
}

// ---- writing ----------------------------------------------------------------------------------------

struct SinkInner {
    out: Box<dyn Write + Send>,
    /// Set after the first write error: the trace stops, the member goes on.
    failed: bool,
    name: String,
}

/// Where a member's trace goes: a cloneable handle to one line-oriented writer (a member that starts a
/// new life in the same process appends to the same trace). Lines are buffered until [`TraceSink::flush`],
/// which the runtime calls once per batch of its protocol loop. A write error stops the trace (logged
/// once), never the member.
#[derive(Clone)]
pub struct TraceSink {
    inner: Arc<Mutex<SinkInner>>,
}

impl fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceSink({})", self.inner.lock().name)
    }
}

impl TraceSink {
    /// A trace written to a new (truncated) file at `path`.
    pub fn create(path: &std::path::Path) -> std::io::Result<TraceSink> {
        let file = std::fs::File::create(path)?;
        Ok(TraceSink::from_writer(path.display().to_string(), Box::new(file)))
    }

    /// A trace written to any writer (`name` is for logs and `Debug`).
    pub fn from_writer(name: String, out: Box<dyn Write + Send>) -> TraceSink {
        let out: Box<dyn Write + Send> = Box::new(std::io::BufWriter::with_capacity(64 * 1024, out));
        TraceSink {
            inner: Arc::new(Mutex::new(SinkInner {
                out,
                failed: false,
                name,
            })),
        }
    }

    /// Appends one line (buffered until the next [`TraceSink::flush`]).
    pub fn record(&self, event: &TraceEvent) {
        let mut line = event.to_json();
        line.push('\n');
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        if let Err(err) = inner.out.write_all(line.as_bytes()) {
            log::warn!("trace {}: {err}; tracing stops", inner.name);
            inner.failed = true;
        }
    }

    /// Writes out every buffered line.
    pub fn flush(&self) {
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        if let Err(err) = inner.out.flush() {
            log::warn!("trace {}: {err}; tracing stops", inner.name);
            inner.failed = true;
        }
    }
}
