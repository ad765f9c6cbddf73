//! `tom-bench --breakdown` runs and reports every hop of a multicast (issue 19). Speed is never
//! asserted here: only that a short, paced run finishes, samples messages and prints each hop.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tom::runtime::hops::HOPS;

const BENCH: &str = env!("CARGO_BIN_EXE_tom-bench");

/// Runs tom-bench with `args`, killing it past a deadline; returns (success, stdout, stderr).
fn run_bench(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(BENCH)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tom-bench");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tom-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tom-bench {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.success(), stdout, stderr)
}

/// The number after `key` in `text` (`"samples":12` or `where the time goes       12 messages`).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[test]
fn breakdown_prints_every_hop_with_sampled_messages() {
    let args = [
        "--members",
        "3",
        "--size",
        "64",
        "--messages",
        "200",
        "--rate",
        "1000",
        "--breakdown",
    ];
    let (ok, stdout, stderr) = run_bench(&args);
    assert!(ok, "tom-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let samples = number_after(&stdout, "where the time goes").expect("a breakdown header");
    assert!(samples > 0, "no message sampled:\n{stdout}");
    for hop in HOPS {
        let line = stdout
            .lines()
            .find(|line| line.trim_start().starts_with(hop))
            .unwrap_or_else(|| panic!("no line for hop {hop:?}:\n{stdout}"));
        assert!(line.contains(" / "), "hop {hop:?} without median / p90: {line}");
    }
}

#[test]
fn breakdown_goes_into_the_json_line() {
    let args = [
        "--members",
        "2",
        "--size",
        "64",
        "--messages",
        "100",
        "--rate",
        "1000",
        "--breakdown",
        "--json",
    ];
    let (ok, stdout, stderr) = run_bench(&args);
    assert!(ok, "tom-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one JSON line:\n{stdout}");
    assert!(number_after(&stdout, "\"samples\":").is_some_and(|n| n > 0), "{stdout}");
    for hop in HOPS {
        assert!(
            stdout.contains(&format!("{{\"hop\":\"{hop}\",\"p50_us\":")),
            "no {hop:?} in {stdout}"
        );
    }
}

#[test]
fn breakdown_needs_peers() {
    let (ok, _, stderr) = run_bench(&["--members", "1", "--size", "64", "--messages", "10", "--breakdown"]);
    assert!(!ok && stderr.contains("--breakdown needs"), "{stderr}");
}
