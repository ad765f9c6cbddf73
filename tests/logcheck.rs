//! `tom-check` as a program: hand-made logs with each kind of violation exit 1 naming it, good logs
//! exit 0, unreadable input exits 2; and a real run (tom-helper and three tom-members on 127.0.0.1,
//! with `--trace`) passes `tom-check` and is drawn by `tom-diagram`. Every process started here is
//! killed and waited for by a guard, also when a test panics.

mod proc_support;

use proc_support::{free_port, Processes};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHECK: &str = env!("CARGO_BIN_EXE_tom-check");
const DIAGRAM: &str = env!("CARGO_BIN_EXE_tom-diagram");
const HELPER: &str = env!("CARGO_BIN_EXE_tom-helper");
const MEMBER: &str = env!("CARGO_BIN_EXE_tom-member");

fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("logcheck-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes each `(name, text)` into `dir` and runs tom-check on them.
fn check(dir: &Path, logs: &[(&str, &str)]) -> Output {
    let paths: Vec<PathBuf> = logs
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write log");
            path
        })
        .collect();
    Command::new(CHECK).args(&paths).output().expect("run tom-check")
}

const A: &str = "JOINED 1 3\nVIEW 1,2,3\nDELIVER 1 1 hello 1\nDELIVER 2 1 hi\nDELIVER 3 2 c\nDELIVER 1 4 d\n";
const B: &str = "JOINED 2 3\nVIEW 1,2,3\nDELIVER 1 1 hello 1\nDELIVER 2 1 hi\nDELIVER 3 2 c\nDELIVER 1 4 d\n";

#[test]
fn good_logs_pass_with_crashes_and_rejoins() {
    let dir = dir("good");
    let crashed = "JOINED 3 3\nVIEW 1,2,3\nDELIVER 1 1 hello 1\nDELIVER 2 1 hi\n";
    let back = "STATE 2\nJOINED 3 3\nVIEW 1,2,3\nDELIVER 3 2 c\nDELIVER 1 4 d\nDELIVER 3 9 e\n";
    let output = check(
        &dir,
        &[("a.out", A), ("b.out", B), ("c.out", crashed), ("c2.out", back)],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("ok: 4 logs, 4 lives (1 rejoined): one global order of 5 messages"),
        "{text}"
    );
}

#[test]
fn each_violation_exits_1_with_its_counterexample() {
    let dir = dir("bad");
    let cases: [(&str, &str, &str); 6] = [
        (
            "swapped",
            "JOINED 3 3\nDELIVER 2 1 hi\nDELIVER 1 1 hello 1\n",
            "agreement / total order violated: position 1",
        ),
        (
            "stranger",
            "JOINED 3 3\nDELIVER 1 1 hello 1\nDELIVER 2 1 hi\nDELIVER 3 2 c\nDELIVER 1 4 d\nDELIVER 9 5 x\n",
            "validity violated",
        ),
        (
            "beyond",
            "STATE 7\nJOINED 3 3\nDELIVER 3 9 z\n",
            "no holes (nothing delivered that the group did not) violated: positions 5..7",
        ),
        (
            "twice",
            "JOINED 3 3\nDELIVER 1 1 hello 1\nDELIVER 2 1 hi\nDELIVER 3 2 c\nDELIVER 1 4 d\nDELIVER 1 4 d\n",
            "integrity (no duplicates) violated",
        ),
        (
            "backwards",
            "JOINED 3 3\nDELIVER 1 1 hello 1\nDELIVER 2 1 hi\nDELIVER 3 2 c\nDELIVER 1 4 d\nDELIVER 1 3 late\n",
            "FIFO per origin violated: origin 1",
        ),
        (
            "relapse",
            "JOINED 3 3\nDELIVER 1 1 hello 1\nDELIVER 2 1 hi\nSTATE 1\nJOINED 3 3\n",
            "rejoin suffix violated",
        ),
    ];
    for (name, log, expected) in cases {
        let output = check(&dir, &[("a.out", A), ("b.out", B), (name, log)]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{name}: {text}");
        assert!(text.starts_with(&format!("VIOLATION: {expected}")), "{name}: {text}");
        assert_eq!(text.lines().count(), 1, "only the first counterexample: {text}");
    }
}

#[test]
fn unreadable_input_exits_2() {
    let dir = dir("unreadable");
    let not_a_log = check(&dir, &[("a.out", A), ("junk.out", "JOINED 1 3\nhello world\n")]);
    assert_eq!(not_a_log.status.code(), Some(2));
    let binary = dir.join("binary.out");
    std::fs::write(&binary, [0xff, 0xfe, b'\n']).expect("write");
    for args in [
        vec![binary.display().to_string()],
        vec!["/nonexistent/member1.out".into()],
        vec![],
    ] {
        let output = Command::new(CHECK).args(&args).output().expect("run tom-check");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

fn delivered(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("DELIVER "))
        .count()
}

#[test]
fn a_real_runs_logs_pass_and_its_traces_are_drawn() {
    let dir = dir("real");
    let helper_port = free_port();
    let first_port = free_port();
    let mut processes = Processes::default();
    let helper = Command::new(HELPER)
        .args(["--size", "3", "--bind", "127.0.0.1", "--port", &helper_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn helper");
    processes.0.push(helper);
    let mut outs = Vec::new();
    let mut traces = Vec::new();
    for i in 1..=3 {
        let out = dir.join(format!("member{i}.out"));
        let trace = dir.join(format!("member{i}.trace"));
        let member = Command::new(MEMBER)
            .args(["--helper", &format!("127.0.0.1:{helper_port}"), "--host", "127.0.0.1"])
            .args(["--port", &first_port.to_string()])
            .arg("--trace")
            .arg(&trace)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).expect("create log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn member");
        processes.0.push(member);
        outs.push(out);
        traces.push(trace);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !outs
        .iter()
        .all(|o| std::fs::read_to_string(o).unwrap_or_default().contains("JOINED"))
    {
        assert!(Instant::now() < deadline, "the group did not form within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, member) in processes.0[1..].iter_mut().enumerate() {
        let stdin = member.stdin.as_mut().expect("stdin");
        for k in 1..=4 {
            writeln!(stdin, "message {k} from process {}", i + 1).expect("write stdin");
        }
        stdin.flush().expect("flush stdin");
    }
    while !outs.iter().all(|o| delivered(o) == 12) {
        assert!(Instant::now() < deadline, "12 deliveries each within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The traces are written as the members run: readable before they stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !traces.iter().all(|t| {
        std::fs::read_to_string(t)
            .unwrap_or_default()
            .matches("\"deliver\"")
            .count()
            == 12
    }) {
        assert!(
            Instant::now() < deadline,
            "running members' traces show their 12 deliveries"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(processes);

    let output = Command::new(CHECK).args(&outs).output().expect("run tom-check");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("one global order of 12 messages"), "{text}");

    let svg_path = dir.join("run.svg");
    let status = Command::new(DIAGRAM)
        .arg("-o")
        .arg(&svg_path)
        .args(&traces)
        .status()
        .expect("run tom-diagram");
    assert!(status.success());
    let svg = std::fs::read_to_string(&svg_path).expect("svg");
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("class=\"lane\"").count(), 3);
    assert_eq!(svg.matches("class=\"deliver\"").count(), 36);
    assert_eq!(
        svg.matches("class=\"msg\"").count(),
        24,
        "each of 12 messages reaches 2 other members"
    );
}
