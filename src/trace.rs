//! Traces: one JSON object per line per protocol event of one member, for pictures and post-mortems.
//!
//! What lives here:
//! - [`TraceEvent`] (one line: who, when, the Lamport clock, and an [`EventKind`]) and its JSON form,
//!   written by hand ([`TraceEvent::to_json`]) and read back by a tiny JSON reader
//!   ([`TraceEvent::parse`], [`Json`]) — the crate has no JSON dependency;
//! - [`input_event`] and [`output_event`]: the events a driver derives from the core's
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
//! - reading never panics: a bad line is an [`TraceError`] naming what is wrong.
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
pub struct MessageId {
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

impl MessageId {
    /// `(origin, origin_inc, lamport)`: names the message across the whole run.
    pub fn key(&self) -> (u16, u64, u64) {
        (self.origin, self.origin_inc, self.lamport)
    }
}

/// A protocol message as a trace shows it: its kind, its view, and for data its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgInfo {
    /// [`Message::kind`]: `data`, `prepare`, `decide`, …
    pub kind: String,
    /// The view the message names, if it names one.
    pub view: Option<u64>,
    /// For data messages, which one.
    pub data: Option<MessageId>,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

    /// Reads one line written by [`TraceEvent::to_json`]. Unknown extra fields are ignored.
    pub fn parse(line: &str) -> Result<TraceEvent, TraceError> {
        let json = Json::parse(line)?;
        let obj = Obj(&json);
        let name = obj.str("event")?;
        let kind = match name {
            "start" => EventKind::Start {
                clock: obj.str("clock")?.to_string(),
                joining: obj.bool_or("joining", false)?,
            },
            "send" => EventKind::Send {
                to: obj.rank("to")?,
                msg: obj.msg()?,
                joiner: obj.bool_or("joiner", false)?,
            },
            "receive" => EventKind::Receive {
                from: obj.rank("from")?,
                msg: obj.msg()?,
            },
            "ack" => EventKind::Ack {
                out: match obj.str("dir")? {
                    "out" => true,
                    "in" => false,
                    other => return Err(TraceError::new(format!("ack dir {other:?} is neither out nor in"))),
                },
                peer: obj.rank("peer")?,
                view: obj.num("view")?,
                acks: obj.array("acks")?.iter().map(Json::as_u64).collect::<Result<_, _>>()?,
            },
            "deliver" => EventKind::Deliver {
                position: obj.num("position")?,
                origin: obj.rank("origin")?,
                origin_inc: obj.num("origin_inc")?,
                msg_lamport: obj.num("msg_lamport")?,
                payload: obj.str("payload").unwrap_or("").to_string(),
            },
            "view" => EventKind::View {
                view: obj.num("view")?,
                members: obj
                    .array("members")?
                    .iter()
                    .map(|m| match m {
                        Json::Arr(pair) if pair.len() == 2 => {
                            let rank = u16::try_from(pair[0].as_u64()?)
                                .map_err(|_| TraceError::new("a view member's rank is out of range"))?;
                            Ok((rank, pair[1].as_u64()?))
                        }
                        _ => Err(TraceError::new("a view member is not [rank, incarnation]")),
                    })
                    .collect::<Result<_, _>>()?,
            },
            "suspect" => EventKind::Suspect {
                suspect: obj.rank("suspect")?,
                by: obj.rank("by")?,
            },
            "join_request" => EventKind::JoinRequest {
                joiner: obj.rank("joiner")?,
            },
            "joined" => EventKind::Joined {
                position: obj.num("position")?,
            },
            "excluded" => EventKind::Excluded { view: obj.num("view")? },
            "leave" => EventKind::Leave,
            "left" => EventKind::Left,
            "stop" => EventKind::Stop,
            "crash" => EventKind::Crash,
            other => return Err(TraceError::new(format!("unknown event {other:?}"))),
        };
        Ok(TraceEvent {
            time_us: obj.num("time_us")?,
            rank: obj.rank("rank")?,
            inc: obj.num("inc")?,
            lamport: obj.num("lamport")?,
            kind,
        })
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

fn msg_info(node: &Node, msg: &Message) -> MsgInfo {
    // A decision is drawn with the view it decides, every other message with the view it names.
    let view = match msg {
        Message::Decide { proposal } => Some(proposal.view.id.0),
        other => other.view().map(|view| view.0),
    };
    let data = match msg {
        Message::Data { view, msg, .. } => {
            // The origin's life is the one this member's view lists (the sender, for a data frame).
            let origin_inc = node
                .view()
                .and_then(|v| v.member(msg.origin))
                .or_else(|| (msg.origin == node.me().rank).then(|| node.me()))
                .map_or(0, |m| m.incarnation.0);
            Some(MessageId {
                origin: msg.origin.0,
                origin_inc,
                view: view.0,
                seq: msg.seq,
                lamport: msg.lamport,
            })
        }
        _ => None,
    };
    MsgInfo {
        kind: msg.kind().to_string(),
        view,
        data,
    }
}

/// The event an input stands for, if any (ticks, connections, back-pressure and multicast requests have
/// none: a multicast shows as its `send`s). Call it *before* [`Node::handle`] (it reads the view the input
/// arrives in) and stamp the event with [`TraceEvent::of`] *after* it (the clock the input left).
pub fn input_event(node: &Node, input: &Input) -> Option<EventKind> {
    match input {
        Input::Received {
            from,
            msg: Message::Ack { view, acks },
        } => Some(EventKind::Ack {
            out: false,
            peer: from.0,
            view: view.0,
            acks: acks.clone(),
        }),
        Input::Received {
            from,
            msg: Message::Suspect { rank, .. },
        } => Some(EventKind::Suspect {
            suspect: rank.0,
            by: from.0,
        }),
        Input::Received { from, msg } => Some(EventKind::Receive {
            from: from.0,
            msg: msg_info(node, msg),
        }),
        Input::JoinRequest { rank, .. } => Some(EventKind::JoinRequest { joiner: rank.0 }),
        Input::Suspect(life) => Some(EventKind::Suspect {
            suspect: life.rank.0,
            by: node.me().rank.0,
        }),
        Input::Leave => Some(EventKind::Leave),
        // Multicast requests (shown as their sends), connections, ticks, back-pressure: no event.
        _ => None,
    }
}

/// The event an output stands for. Call it before carrying the output out.
pub fn output_event(node: &Node, output: &Output) -> Option<EventKind> {
    Some(match output {
        Output::Send {
            to,
            msg: Message::Ack { view, acks },
        } => EventKind::Ack {
            out: true,
            peer: to.0,
            view: view.0,
            acks: acks.clone(),
        },
        Output::Send { to, msg } => EventKind::Send {
            to: to.0,
            msg: msg_info(node, msg),
            joiner: false,
        },
        Output::SendToJoiner { rank, msg } => EventKind::Send {
            to: rank.0,
            msg: msg_info(node, msg),
            joiner: true,
        },
        Output::Deliver(d) => {
            let bytes = d.payload.as_bytes();
            let preview = &bytes[..bytes.len().min(PAYLOAD_PREVIEW_MAX)];
            EventKind::Deliver {
                position: d.position,
                origin: d.origin.rank.0,
                origin_inc: d.origin.incarnation.0,
                msg_lamport: d.lamport,
                payload: String::from_utf8_lossy(preview).into_owned(),
            }
        }
        Output::ViewInstalled(view) => EventKind::View {
            view: view.id.0,
            members: view.members.iter().map(|m| (m.rank.0, m.incarnation.0)).collect(),
        },
        Output::Joined { position } => EventKind::Joined { position: *position },
        Output::Excluded { view } => EventKind::Excluded { view: view.0 },
        Output::Left => EventKind::Left,
    })
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

// ---- reading ----------------------------------------------------------------------------------------

/// A trace line that cannot be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError(pub String);

impl TraceError {
    fn new(text: impl Into<String>) -> TraceError {
        TraceError(text.into())
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

/// Reads a whole trace: one event per non-empty line. The first bad line is the error, with its number.
pub fn parse_trace(text: &str) -> Result<Vec<TraceEvent>, TraceError> {
    let mut events = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match TraceEvent::parse(line) {
            Ok(event) => events.push(event),
            // A process killed mid-write leaves a partial last line: not an error.
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(err) => return Err(TraceError::new(format!("line {}: {err}", i + 1))),
        }
    }
    Ok(events)
}

/// A JSON value, as much of JSON as traces need (numbers are unsigned integers or floats).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer.
    Int(u64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, fields in order.
    Obj(Vec<(String, Json)>),
}

/// Nesting deeper than this is refused (a hostile line must not exhaust the stack).
const JSON_DEPTH_MAX: usize = 32;

impl Json {
    /// Parses one complete JSON value (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Json, TraceError> {
        let mut p = JsonParser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = p.value(0)?;
        p.skip_ws();
        if p.at != p.bytes.len() {
            return Err(TraceError::new(format!("trailing characters at byte {}", p.at)));
        }
        Ok(value)
    }

    /// The value of field `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// This value as a non-negative integer.
    pub fn as_u64(&self) -> Result<u64, TraceError> {
        match self {
            Json::Int(n) => Ok(*n),
            other => Err(TraceError::new(format!(
                "expected a non-negative integer, found {other:?}"
            ))),
        }
    }
}

/// Typed access to the fields of a trace object.
struct Obj<'a>(&'a Json);

impl Obj<'_> {
    fn field(&self, key: &str) -> Result<&Json, TraceError> {
        self.0
            .get(key)
            .ok_or_else(|| TraceError::new(format!("field {key:?} missing")))
    }
    fn num(&self, key: &str) -> Result<u64, TraceError> {
        self.field(key)?
            .as_u64()
            .map_err(|e| TraceError::new(format!("field {key:?}: {e}")))
    }
    fn rank(&self, key: &str) -> Result<u16, TraceError> {
        u16::try_from(self.num(key)?).map_err(|_| TraceError::new(format!("field {key:?} is not a rank")))
    }
    fn str(&self, key: &str) -> Result<&str, TraceError> {
        match self.field(key)? {
            Json::Str(s) => Ok(s),
            other => Err(TraceError::new(format!("field {key:?} is not a string: {other:?}"))),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool, TraceError> {
        match self.0.get(key) {
            None => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(other) => Err(TraceError::new(format!("field {key:?} is not a bool: {other:?}"))),
        }
    }
    fn array(&self, key: &str) -> Result<&[Json], TraceError> {
        match self.field(key)? {
            Json::Arr(items) => Ok(items),
            other => Err(TraceError::new(format!("field {key:?} is not an array: {other:?}"))),
        }
    }
    fn opt_num(&self, key: &str) -> Result<Option<u64>, TraceError> {
        match self.0.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(_) => self.num(key).map(Some),
        }
    }
    fn msg(&self) -> Result<MsgInfo, TraceError> {
        let kind = self.str("msg")?.to_string();
        let view = self.opt_num("view")?;
        let data = if kind == "data" {
            Some(MessageId {
                origin: self.rank("origin")?,
                origin_inc: self.num("origin_inc")?,
                view: view.unwrap_or(0),
                seq: self.num("seq")?,
                lamport: self.num("msg_lamport")?,
            })
        } else {
            None
        };
        Ok(MsgInfo { kind, view, data })
    }
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, TraceError> {
        Err(TraceError::new(format!("bad JSON at byte {}: {what}", self.at)))
    }

    fn skip_ws(&mut self) {
        while self.at < self.bytes.len() && matches!(self.bytes[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), TraceError> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.err(&format!("expected {:?}", byte as char))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, TraceError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            self.err("unknown literal")
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, TraceError> {
        if depth > JSON_DEPTH_MAX {
            return self.err("nested too deeply");
        }
        self.skip_ws();
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.skip_ws();
                    let key = self.string()?;
                    self.expect(b':')?;
                    let value = self.value(depth + 1)?;
                    fields.push((key, value));
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.err("unexpected character"),
        }
    }

    fn number(&mut self) -> Result<Json, TraceError> {
        let start = self.at;
        while self.at < self.bytes.len()
            && matches!(self.bytes[self.at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Json::Int(n));
        }
        match text.parse::<f64>() {
            Ok(x) => Ok(Json::Float(x)),
            Err(_) => self.err("bad number"),
        }
    }

    fn string(&mut self) -> Result<String, TraceError> {
        if self.peek() != Some(b'"') {
            return self.err("expected a string");
        }
        self.at += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return self.err("unterminated string");
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(esc) = self.peek() else {
                        return self.err("unterminated escape");
                    };
                    self.at += 1;
                    let ch = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hex = self
                                .bytes
                                .get(self.at..self.at + 4)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            let Some(code) = hex.and_then(|h| u32::from_str_radix(h, 16).ok()) else {
                                return self.err("bad \\u escape");
                            };
                            self.at += 4;
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return self.err("unknown escape"),
                    };
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).or_else(|_| self.err("string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_events() -> Vec<TraceEvent> {
        let kinds = vec![
            EventKind::Start {
                clock: "wall".into(),
                joining: false,
            },
            EventKind::Send {
                to: 3,
                msg: MsgInfo {
                    kind: "data".into(),
                    view: Some(1),
                    data: Some(MessageId {
                        origin: 2,
                        origin_inc: 1,
                        view: 1,
                        seq: 4,
                        lamport: 17,
                    }),
                },
                joiner: false,
            },
            EventKind::Receive {
                from: 1,
                msg: MsgInfo {
                    kind: "decide".into(),
                    view: Some(2),
                    data: None,
                },
            },
            EventKind::Receive {
                from: 1,
                msg: MsgInfo {
                    kind: "join-refused".into(),
                    view: None,
                    data: None,
                },
            },
            EventKind::Ack {
                out: true,
                peer: 1,
                view: 1,
                acks: vec![3, 0, 7],
            },
            EventKind::Deliver {
                position: 9,
                origin: 2,
                origin_inc: 1,
                msg_lamport: 17,
                payload: "say \"hi\"\n\\ é \u{1}".into(),
            },
            EventKind::View {
                view: 2,
                members: vec![(1, 1), (3, 2)],
            },
            EventKind::Suspect { suspect: 3, by: 2 },
            EventKind::JoinRequest { joiner: 3 },
            EventKind::Joined { position: 12 },
            EventKind::Excluded { view: 4 },
            EventKind::Leave,
            EventKind::Left,
            EventKind::Stop,
            EventKind::Crash,
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| TraceEvent {
                time_us: 1_700_000_000_000_000 + i as u64,
                rank: 2,
                inc: 1,
                lamport: 17,
                kind,
            })
            .collect()
    }

    #[test]
    fn every_event_round_trips_through_one_json_line() {
        for event in sample_events() {
            let line = event.to_json();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(TraceEvent::parse(&line), Ok(event), "{line}");
        }
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[]",
            "{\"event\":\"send\"}",
            "{\"time_us\":1,\"rank\":70000,\"inc\":1,\"lamport\":1,\"event\":\"leave\"}",
            "{\"time_us\":-1,\"rank\":1,\"inc\":1,\"lamport\":1,\"event\":\"leave\"}",
            "{\"time_us\":1,\"rank\":1,\"inc\":1,\"lamport\":1,\"event\":\"dance\"}",
            "{\"a\":\"\\u12\"}",
            &"[".repeat(10_000),
            "{\"time_us\":1,\"rank\":1,\"inc\":1,\"lamport\":1,\"event\":\"leave\"} x",
        ] {
            assert!(TraceEvent::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_partial_last_line_is_dropped_but_a_bad_middle_line_is_an_error() {
        let good = sample_events()[11].to_json();
        let text = format!("{good}\n{good}\n{{\"time_us\":1,\"ra");
        assert_eq!(parse_trace(&text).map(|e| e.len()), Ok(2));
        let text = format!("{good}\nnot json\n{good}\n");
        assert!(parse_trace(&text).unwrap_err().0.starts_with("line 2"));
    }

    #[test]
    fn a_sink_writes_lines_on_flush() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Shared::default();
        let sink = TraceSink::from_writer("test".into(), Box::new(buffer.clone()));
        let events = sample_events();
        for event in &events {
            sink.record(event);
        }
        sink.flush();
        let text = String::from_utf8(buffer.0.lock().clone()).unwrap();
        assert_eq!(parse_trace(&text), Ok(events));
    }
}
