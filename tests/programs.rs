//! The real programs, as a lab runs them: `tom-helper` and four `tom-member` processes sharing one first
//! port on 127.0.0.1, plus their command-line contract (help, bad arguments, `--rejoin` without a group, an unreachable
//! helper). Every process started here is killed and waited for by a guard, also when a test panics.

mod proc_support;

use proc_support::{free_port, run, Processes};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const HELPER: &str = env!("CARGO_BIN_EXE_tom-helper");
const MEMBER: &str = env!("CARGO_BIN_EXE_tom-member");

#[test]
fn four_members_sharing_a_first_port_each_print_joined() {
    let helper_port = free_port();
    let first_port = free_port();
    let mut processes = Processes::default();
    processes.spawn(
        Command::new(HELPER)
            .args(["--size", "4", "--bind", "127.0.0.1"])
            .args(["--port", &helper_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let (lines_tx, lines_rx) = mpsc::channel();
    for _ in 0..4 {
        let member = processes.spawn(
            Command::new(MEMBER)
                .args(["--helper", &format!("127.0.0.1:{helper_port}")])
                .args(["--port", &first_port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let stdout = member.stdout.take().expect("stdout");
        let lines = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    let mut ranks = Vec::new();
    while ranks.len() < 4 {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a JOINED line within 60 s");
        let fields: Vec<&str> = line.split(' ').collect();
        // stdout carries only contract lines: JOINED, then the first VIEW.
        if fields[0] == "VIEW" {
            assert_eq!(line, "VIEW 1,2,3,4");
            continue;
        }
        assert_eq!(fields.len(), 3, "line {line:?}");
        assert_eq!(fields[0], "JOINED", "line {line:?}");
        assert_eq!(fields[2], "4", "line {line:?}");
        ranks.push(fields[1].parse::<u16>().expect("rank"));
    }
    ranks.sort_unstable();
    assert_eq!(ranks, vec![1, 2, 3, 4]);
    while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(500)) {
        assert_eq!(line, "VIEW 1,2,3,4", "nothing but contract lines");
    }
}

#[test]
fn help_is_printed_and_bad_arguments_exit_2_with_usage() {
    for program in [HELPER, MEMBER] {
        let help = run(program, &["--help"]);
        assert!(help.status.success());
        assert!(String::from_utf8_lossy(&help.stdout).contains("usage:"));

        let bad = run(program, &["--bogus", "1"]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("usage:"));
        assert!(bad.stdout.is_empty());
    }
    assert_eq!(run(HELPER, &[]).status.code(), Some(2), "--size is required");
    assert_eq!(run(HELPER, &["--size", "x"]).status.code(), Some(2));
    assert_eq!(run(MEMBER, &[]).status.code(), Some(2), "--helper is required");
}

#[test]
fn rejoin_without_a_reachable_group_fails_with_a_clear_error() {
    assert_eq!(
        run(MEMBER, &["--helper", "127.0.0.1:9", "--rejoin", "0"]).status.code(),
        Some(2),
        "rank 0"
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let output = run(MEMBER, &["--rejoin", "2", "--peer", &addr, "--port", "0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&addr), "names the peer it could not reach: {stderr}");
}

#[test]
fn unreachable_helper_exits_non_zero_naming_the_address() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let output = run(MEMBER, &["--helper", &addr, "--port", "0"]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&addr), "stderr: {stderr}");
    assert!(stderr.contains("retrying"), "retries are logged: {stderr}");
}

#[test]
fn members_without_the_groups_secret_are_refused_and_both_sides_say_why() {
    let dir = proc_support::fresh_log_dir("programs-secret");
    let cookie = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write cookie");
        path.to_string_lossy().into_owned()
    };
    let (right, wrong) = (
        cookie("right.cookie", "right secret\n"),
        cookie("wrong.cookie", "wrong secret\n"),
    );
    let helper_log = dir.join("helper.err");
    let helper_port = free_port();
    let mut processes = Processes::default();
    processes.spawn(
        Command::new(HELPER)
            .args(["--size", "2", "--bind", "127.0.0.1", "--cookie-file", &right])
            .args(["--port", &helper_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&helper_log).expect("helper log")),
    );
    let helper = format!("127.0.0.1:{helper_port}");
    let member = |extra: &[&str]| {
        let mut args = vec!["--helper", &helper, "--port", "0", "--host", "127.0.0.1"];
        args.extend_from_slice(extra);
        run(MEMBER, &args)
    };
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["--cookie-file", &wrong],
            "does not know this group's secret",
            "the caller refused us",
        ),
        (&[], "requires a secret", "requires a secret"),
        (
            &["--cookie-file", &right, "--group", "other"],
            "wrong group",
            "wrong group",
        ),
    ];
    for (extra, member_says, helper_says) in cases {
        let output = member(extra);
        assert_eq!(output.status.code(), Some(1), "{extra:?}");
        assert!(output.stdout.is_empty(), "{extra:?}: never joined");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(member_says), "{extra:?}: {stderr}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&helper_log)
            .unwrap_or_default()
            .contains(helper_says)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "helper never logged {helper_says:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(
        run(HELPER, &["--size", "129"]).status.code(),
        Some(2),
        "more than MEMBERS_MAX"
    );
    let missing = run(MEMBER, &["--helper", &helper, "--cookie-file", "/nonexistent/cookie"]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "an unreadable cookie file is a bad argument"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/cookie"));
}
