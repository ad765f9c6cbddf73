//! `tom-diagram` on a known small trace: the SVG is well-formed (balanced tags, one root), has one lane
//! per life and one delivery mark per delivery; windows keep what they say; bad input exits 2.

use std::path::PathBuf;
use std::process::Command;

use tom::trace::{EventKind, MsgInfo, TraceEvent, TracedMessage};

const DIAGRAM: &str = env!("CARGO_BIN_EXE_tom-diagram");

fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("diagram-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn ev(time_us: u64, rank: u16, inc: u64, kind: EventKind) -> TraceEvent {
    TraceEvent {
        time_us,
        rank,
        inc,
        lamport: time_us,
        kind,
    }
}

fn data(origin: u16, lamport: u64) -> MsgInfo {
    MsgInfo {
        kind: "data".into(),
        view: Some(1),
        data: Some(TracedMessage {
            origin,
            origin_inc: 1,
            view: 1,
            seq: lamport,
            lamport,
        }),
    }
}

fn deliver(position: u64, origin: u16, lamport: u64) -> EventKind {
    EventKind::Deliver {
        position,
        origin,
        origin_inc: 1,
        msg_lamport: lamport,
        payload: format!("m{position} <&>"),
    }
}

/// Two members, then rank 2 crashes and comes back: 3 lives; rank 1 delivers 3 messages, rank 2's first
/// life 2, its second life 1 (from position 2 on): 6 deliveries.
fn write_traces(dir: &std::path::Path) -> Vec<String> {
    let view1 = EventKind::View {
        view: 1,
        members: vec![(1, 1), (2, 1)],
    };
    let start = || EventKind::Start {
        clock: "sim".into(),
        joining: false,
    };
    let one = vec![
        ev(0, 1, 1, start()),
        ev(0, 1, 1, view1.clone()),
        ev(
            1,
            1,
            1,
            EventKind::Send {
                to: 2,
                msg: data(1, 1),
                joiner: false,
            },
        ),
        ev(
            3,
            1,
            1,
            EventKind::Receive {
                from: 2,
                msg: data(2, 2),
            },
        ),
        ev(
            4,
            1,
            1,
            EventKind::Ack {
                out: true,
                peer: 2,
                view: 1,
                acks: vec![1, 1],
            },
        ),
        ev(5, 1, 1, deliver(1, 1, 1)),
        ev(6, 1, 1, deliver(2, 2, 2)),
        ev(8, 1, 1, EventKind::Suspect { suspect: 2, by: 1 }),
        ev(
            9,
            1,
            1,
            EventKind::View {
                view: 2,
                members: vec![(1, 1)],
            },
        ),
        ev(10, 1, 1, EventKind::JoinRequest { joiner: 2 }),
        ev(
            11,
            1,
            1,
            EventKind::View {
                view: 3,
                members: vec![(1, 1), (2, 3)],
            },
        ),
        ev(
            12,
            1,
            1,
            EventKind::Send {
                to: 2,
                msg: data(1, 12),
                joiner: false,
            },
        ),
        ev(14, 1, 1, deliver(3, 1, 12)),
    ];
    let two = vec![
        ev(0, 2, 1, start()),
        ev(0, 2, 1, view1),
        ev(
            2,
            2,
            1,
            EventKind::Receive {
                from: 1,
                msg: data(1, 1),
            },
        ),
        ev(
            2,
            2,
            1,
            EventKind::Send {
                to: 1,
                msg: data(2, 2),
                joiner: false,
            },
        ),
        ev(5, 2, 1, deliver(1, 1, 1)),
        ev(6, 2, 1, deliver(2, 2, 2)),
        ev(7, 2, 1, EventKind::Crash),
        ev(
            9,
            2,
            0,
            EventKind::Start {
                clock: "sim".into(),
                joining: true,
            },
        ),
        ev(11, 2, 3, EventKind::Joined { position: 2 }),
        ev(
            11,
            2,
            3,
            EventKind::View {
                view: 3,
                members: vec![(1, 1), (2, 3)],
            },
        ),
        ev(
            13,
            2,
            3,
            EventKind::Receive {
                from: 1,
                msg: data(1, 12),
            },
        ),
        ev(14, 2, 3, deliver(3, 1, 12)),
    ];
    let mut paths = Vec::new();
    for (name, events) in [("one.trace", one), ("two.trace", two)] {
        let text: String = events.iter().map(|e| e.to_json() + "\n").collect();
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write trace");
        paths.push(path.display().to_string());
    }
    paths
}

/// Checks that every tag is closed in order and there is one root `<svg>`; returns the element names.
fn well_formed(svg: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut roots = 0;
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("unclosed '<'") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
            continue;
        }
        let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
        assert!(!name.is_empty(), "empty tag");
        if stack.is_empty() {
            roots += 1;
            assert_eq!(name, "svg", "the root element is svg");
        }
        names.push(name.clone());
        if !tag.ends_with('/') {
            stack.push(name);
        }
        assert!(
            !rest.is_empty() || stack.is_empty(),
            "document ends inside <{}>",
            stack.join("><")
        );
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1);
    assert!(!svg.contains("<&>"), "text is escaped");
    names
}

fn count(svg: &str, class: &str) -> usize {
    svg.matches(&format!("class=\"{class}\"")).count()
}

#[test]
fn a_small_trace_renders_one_lane_per_life_and_one_mark_per_delivery() {
    let dir = dir("small");
    let traces = write_traces(&dir);
    let out = dir.join("out.svg");
    let status = Command::new(DIAGRAM)
        .arg("-o")
        .arg(&out)
        .args(&traces)
        .status()
        .expect("run tom-diagram");
    assert!(status.success());
    let svg = std::fs::read_to_string(&out).expect("svg written");
    well_formed(&svg);
    assert_eq!(count(&svg, "lane"), 3, "rank 1, rank 2's first and second lives");
    assert_eq!(count(&svg, "deliver"), 6);
    assert_eq!(count(&svg, "msg"), 3, "one arrow per receive");
    assert_eq!(count(&svg, "crash"), 1);
    assert_eq!(count(&svg, "joined"), 1);
    assert_eq!(count(&svg, "view"), 5);
    assert_eq!(count(&svg, "suspect"), 1);
    assert!(svg.contains(">3</text>"), "position labels are drawn");

    // Without -o the same picture goes to stdout.
    let stdout = Command::new(DIAGRAM).args(&traces).output().expect("run tom-diagram");
    assert!(stdout.status.success());
    assert_eq!(String::from_utf8(stdout.stdout).expect("utf-8"), svg);
}

#[test]
fn windows_keep_what_they_say() {
    let dir = dir("window");
    let traces = write_traces(&dir);
    let by_position = Command::new(DIAGRAM)
        .args(["--from", "3", "--to", "3"])
        .args(&traces)
        .output()
        .expect("run");
    assert!(by_position.status.success());
    let svg = String::from_utf8(by_position.stdout).expect("utf-8");
    well_formed(&svg);
    assert_eq!(
        count(&svg, "deliver"),
        2,
        "position 3 at rank 1 and rank 2's second life"
    );
    let by_time = Command::new(DIAGRAM)
        .args(["--time-from", "0", "--time-to", "5"])
        .args(&traces)
        .output()
        .expect("run");
    let svg = String::from_utf8(by_time.stdout).expect("utf-8");
    well_formed(&svg);
    assert_eq!(count(&svg, "deliver"), 2, "steps 0..=5: position 1 twice");
}

#[test]
fn bad_input_exits_2() {
    let dir = dir("bad");
    let garbage = dir.join("garbage.trace");
    std::fs::write(&garbage, "{\"time_us\":1}\nnot json\n").expect("write");
    for args in [
        vec![garbage.display().to_string()],
        vec!["/nonexistent/x.trace".into()],
        vec![],
        vec!["--from".into()],
    ] {
        let output = Command::new(DIAGRAM).args(&args).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
