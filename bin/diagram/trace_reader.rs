//! Reading `tom` traces back: one JSON object per line, as `tom::trace` writes them, parsed by a small
//! JSON reader of its own (only as much of JSON as traces need; no dependency). Only `tom-diagram` reads
//! traces, so the reader lives beside it, not in the library.

use std::fmt;

use tom::trace::{EventKind, MsgInfo, TraceEvent, TracedMessage};

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
        match parse_line(line) {
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
            Some(TracedMessage {
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

/// Reads one line written by `TraceEvent::to_json`. Unknown extra fields are ignored.
pub fn parse_line(line: &str) -> Result<TraceEvent, TraceError> {
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
        "ack" => ack_of(&obj)?,
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
                .map(view_member)
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

/// The fields of an `ack` line.
fn ack_of(obj: &Obj) -> Result<EventKind, TraceError> {
    Ok(EventKind::Ack {
        out: match obj.str("dir")? {
            "out" => true,
            "in" => false,
            other => return Err(TraceError::new(format!("ack dir {other:?} is neither out nor in"))),
        },
        peer: obj.rank("peer")?,
        view: obj.num("view")?,
        acks: obj.array("acks")?.iter().map(Json::as_u64).collect::<Result<_, _>>()?,
    })
}

/// One member of a `view` line's `members`: a `[rank, incarnation]` pair.
fn view_member(member: &Json) -> Result<(u16, u64), TraceError> {
    match member {
        Json::Arr(pair) if pair.len() == 2 => {
            let rank = u16::try_from(pair[0].as_u64()?)
                .map_err(|_| TraceError::new("a view member's rank is out of range"))?;
            Ok((rank, pair[1].as_u64()?))
        }
        _ => Err(TraceError::new("a view member is not [rank, incarnation]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tom::trace::TraceSink;

    /// One event of every kind (the message ones from `message_kinds`), a payload that needs escaping
    /// included; the tests index into it, so the order stays.
    fn sample_events() -> Vec<TraceEvent> {
        let mut kinds = vec![EventKind::Start {
            clock: "wall".into(),
            joining: false,
        }];
        kinds.extend(message_kinds());
        kinds.extend([
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
        ]);
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

    /// A data send, a control receive with a view and one without, and an outgoing acknowledgement.
    fn message_kinds() -> Vec<EventKind> {
        vec![
            EventKind::Send {
                to: 3,
                msg: MsgInfo {
                    kind: "data".into(),
                    view: Some(1),
                    data: Some(TracedMessage {
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
        ]
    }

    #[test]
    fn every_event_round_trips_through_one_json_line() {
        for event in sample_events() {
            let line = event.to_json();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(parse_line(&line), Ok(event), "{line}");
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
            assert!(parse_line(bad).is_err(), "{bad:?}");
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
                self.0.lock().unwrap().extend_from_slice(buf);
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
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(parse_trace(&text), Ok(events));
    }
}
