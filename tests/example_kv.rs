//! `examples/kv_store.rs`, the replicated key-value store that uses only the crate's public API, run
//! as its own process against a real `tom-helper` on 127.0.0.1: its three members join through the
//! helper, write and wait for their own messages, one leaves while another thread reads its events,
//! comes back with state transfer and reads its typed state, and all agree. Both processes are killed
//! and reaped by a guard, also when the test fails.

mod proc_support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proc_support::{fresh_log_dir, spawn_helper, tail_of, Processes};

/// How long the example may run before the test calls it a hang (it takes well under a second).
const DEADLINE: Duration = Duration::from_secs(120);

/// The example's executable, built first: `cargo test` builds examples with the other targets, but
/// `cargo test --test example_kv` alone does not, and an old build must not be run.
fn example() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--profile", "test", "--example", "kv_store"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example kv_store");
    assert!(status.success(), "cargo build --example kv_store: {status}");
    // This test runs from target/<profile>/deps/; examples are in target/<profile>/examples/.
    let deps = std::env::current_exe().expect("this test's path");
    let dir = deps.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let example = dir
        .join("examples")
        .join(format!("kv_store{}", std::env::consts::EXE_SUFFIX));
    assert!(example.exists(), "{} was not built", example.display());
    example
}

#[test]
fn the_key_value_store_example_runs_against_a_real_helper() {
    let example = example();
    let dir = fresh_log_dir("example_kv");
    let mut processes = Processes::default();
    let (helper, helper_port, helper_log) = spawn_helper(3, &dir);
    processes.0.push(helper);
    let run_log = dir.join("kv_store.log");
    let store = processes.spawn(
        Command::new(&example)
            .args(["--helper", &format!("127.0.0.1:{helper_port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&run_log).expect("log file")),
    );
    let mut stdout = store.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = processes.0[1].try_wait().expect("wait for kv_store") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kv_store still running after {DEADLINE:?}; its log:\n{}",
            tail_of(&run_log, 30)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().expect("stdout reader");
    let explain = || {
        format!(
            "stdout:\n{output}\nstderr (tail):\n{}\nhelper log (tail):\n{}",
            tail_of(&run_log, 30),
            tail_of(&helper_log, 10)
        )
    };
    assert!(status.success(), "kv_store exited with {status}\n{}", explain());
    for expected in [
        "rank 1: \"set greeting.1 hello from rank 1\" delivered (own message 1)",
        "rank 3: left cleanly; its reader thread saw: left after 3 deliveries",
        "rank 3: back as 3#",
        "at position 6; its store: {\"colour\": \"green\", \"greeting.1\": \"hello from rank 1\", \
         \"greeting.2\": \"hello from rank 2\"} (6 commands applied)",
        "rank 3: admitted at position 6",
        "every copy: {\"colour\": \"green\", \"greeting.1\": \"hello from rank 1\", \"greeting.2\": \
         \"hello from rank 2\", \"greeting.3\": \"back again\"}",
        "rank 1: left cleanly; its reader thread saw: left after 7 deliveries",
    ] {
        assert!(output.contains(expected), "missing {expected:?}\n{}", explain());
    }
    assert!(output.ends_with("kv_store: OK\n"), "{}", explain());
    // The members went through the real helper: it formed the group, and rank 3 rejoined through it.
    let helper_text = std::fs::read_to_string(&helper_log).unwrap_or_default();
    for expected in ["group \"tom\" formed with 3 members", "rank 3 rejoined as life"] {
        assert!(
            helper_text.contains(expected),
            "missing {expected:?}; helper log:\n{helper_text}"
        );
    }
}
