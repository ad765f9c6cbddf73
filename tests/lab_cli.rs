//! The lab as a student meets it (issue 20): the programs' command lines, exit codes and messages, `make
//! sim` replaying a seed byte for byte, and `make stop` ending every process of a `make lab` session —
//! rejoins included — and counting them right.
//!
//! Every test that starts a process kills it on drop; everything listens on 127.0.0.1, on ports picked
//! free (`proc_support::free_port`).

mod proc_support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use proc_support::{free_port, fresh_log_dir, run, Processes, HELPER, MEMBER};

/// How long a step of these tests may take before it counts as a hang.
const PATIENCE: Duration = Duration::from_secs(30);

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `program` with `args` and checks that it refuses them as bad arguments: exit 2, the usage,
/// nothing on stdout, and `expected` in the message.
fn assert_bad_argument(program: &str, args: &[&str], expected: &str) {
    let output = run(program, args);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{program} {args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{program} {args:?}: stdout must stay empty");
    assert!(stderr.contains("usage:"), "{program} {args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{program} {args:?}: expected {expected:?} in {stderr}"
    );
}

/// Waits until `path` holds `text`; panics after [`PATIENCE`].
fn wait_for_text(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let content = fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {} after {PATIENCE:?}:\n{content}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit; kills it and panics after [`PATIENCE`].
fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {PATIENCE:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_misspelt_yes_no_flag_is_an_unknown_argument() {
    for typo in ["--exit-on-eoff", "--verbose"] {
        assert_bad_argument(
            MEMBER,
            &["--helper", "127.0.0.1:9999", typo],
            &format!("unknown argument {typo}"),
        );
        let output = run(MEMBER, &[typo]);
        assert!(
            !stderr_of(&output).contains("needs a value"),
            "{typo}: {}",
            stderr_of(&output)
        );
    }
    assert_bad_argument(MEMBER, &["--exit-on-eoff"], "did you mean --exit-on-eof?");
    assert_bad_argument(HELPER, &["--size", "3", "--verbose"], "unknown argument --verbose");
    assert_bad_argument(MEMBER, &["--exit-on-eof=yes"], "--exit-on-eof takes no value");
    // A flag with its value missing still says so, also when a flag follows in its place.
    assert_bad_argument(MEMBER, &["--helper"], "--helper needs a value");
    assert_bad_argument(MEMBER, &["--helper", "--exit-on-eof"], "--helper needs a value");
    assert_bad_argument(HELPER, &["--size"], "--size needs a value");
}

#[test]
fn flag_equals_value_is_accepted() {
    // Past parsing, a status query to a port where nothing listens is a runtime error: exit 1.
    let nobody = format!("127.0.0.1:{}", free_port());
    let output = run(MEMBER, &[&format!("--status={nobody}"), "--group=lab"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains(&nobody), "{}", stderr_of(&output));

    let dir = fresh_log_dir("lab_cli-equals");
    let port = free_port();
    let log = dir.join("helper.log");
    let mut processes = Processes(Vec::new());
    processes.spawn(
        Command::new(HELPER)
            .args(["--size=2", &format!("--port={port}"), "--bind=127.0.0.1", "--group=lab"])
            .stdin(Stdio::null())
            .stderr(fs::File::create(&log).expect("log")),
    );
    wait_for_text(&log, &format!("listening on 127.0.0.1:{port}"));
}

#[test]
fn every_bad_argument_exits_2_and_runtime_errors_exit_1() {
    for helper in ["localhost", "127.0.0.1:99999", "127.0.0.1:0", ":9999", "127.0.0.1:port"] {
        assert_bad_argument(MEMBER, &["--helper", helper], &format!("--helper {helper:?}"));
    }
    assert_bad_argument(
        MEMBER,
        &["--helper", "no-such-host.invalid:9999"],
        "cannot resolve host",
    );
    assert_bad_argument(MEMBER, &["--helper", "localhost"], "HOST:PORT");
    assert_bad_argument(MEMBER, &["--helper", "127.0.0.1:99999"], "1 to 65535");
    assert_bad_argument(MEMBER, &["--helper", "127.0.0.1:9999", "--host", "0.0.0.0"], "--host");
    assert_bad_argument(MEMBER, &["--status", "localhost"], "--status");
    assert_bad_argument(MEMBER, &["--rejoin", "2", "--peer", "127.0.0.1:70000"], "--peer");
    assert_bad_argument(MEMBER, &["--helper", "127.0.0.1:9999", "--port", "70000"], "--port");
    assert_bad_argument(HELPER, &["--size", "3", "--bind", "no-such-host.invalid"], "--bind");
    assert_bad_argument(HELPER, &["--size", "3", "--port", "70000"], "--port");
    assert_bad_argument(
        HELPER,
        &["--size", "3", "--cookie-file", "/nonexistent/tom.cookie"],
        "cookie file",
    );
    assert_bad_argument(
        MEMBER,
        &["--helper", "127.0.0.1:9999", "--cookie-file", "/nonexistent/tom.cookie"],
        "cookie file",
    );
    // Well-formed arguments that fail while running: exit 1.
    let output = run(MEMBER, &["--status", &format!("127.0.0.1:{}", free_port())]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
}

#[test]
fn a_helper_on_a_port_in_use_says_so_in_its_own_terms() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let output = run(HELPER, &["--size", "2", "--bind", "127.0.0.1", "--port", &port]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
    assert!(!stderr.contains("port span"), "the helper has no port span: {stderr}");
}

#[test]
fn members_say_the_helper_closed_the_connection_before_the_group_formed() {
    let dir = fresh_log_dir("lab_cli-helper-gone");
    let (helper, port, _) = proc_support::spawn_helper(3, &dir);
    let mut processes = Processes(vec![helper]);
    let log = dir.join("member.log");
    processes.spawn(
        Command::new(MEMBER)
            .args(["--helper", &format!("127.0.0.1:{port}"), "--host", "127.0.0.1"])
            .args(["--port", &free_port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log")),
    );
    wait_for_text(&log, "waiting for the group to form");
    let helper = &mut processes.0[0];
    helper.kill().expect("kill the helper");
    helper.wait().expect("reap the helper");
    let code = wait_exit(&mut processes.0[1]);
    let stderr = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the helper closed the connection before the group formed"),
        "{stderr}"
    );
    assert!(!stderr.contains("I/O error"), "{stderr}");
}

/// What `make sim SEED=seed` prints (tests/lab/sim.sh, run by make when make is installed).
fn make_sim(seed: &str) -> Vec<u8> {
    let mut command = if Command::new("make").arg("--version").output().is_ok() {
        let mut make = Command::new("make");
        make.args(["-s", "sim"]);
        make
    } else {
        let mut bash = Command::new("bash");
        bash.arg("tests/lab/sim.sh");
        bash
    };
    let output = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SEED", seed)
        .env("CARGO", std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .stdin(Stdio::null())
        .output()
        .expect("run tests/lab/sim.sh");
    assert!(output.status.success(), "make sim SEED={seed}: {}", stderr_of(&output));
    output.stdout
}

#[test]
fn make_sim_replays_one_seed_byte_for_byte() {
    let first = make_sim("4242");
    let second = make_sim("4242");
    let text = String::from_utf8_lossy(&first);
    let families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split("family ").nth(1))
        .filter_map(|rest| rest.strip_suffix(" seed 4242: passed"))
        .collect();
    assert_eq!(families, ["nofault", "crash", "partition", "rejoin"], "{text}");
    assert!(first == second, "two replays of seed 4242 differ");
}

/// A `make lab` session of its own (own tmux server, records, ports), stopped and cleaned on drop.
struct LabSession {
    dir: PathBuf,
    socket: String,
    port: u16,
    outside: Processes,
}

impl LabSession {
    fn script(&self, name: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(format!("tests/lab/{name}"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("LAB_DIR", &self.dir)
            .env("TMUX_SOCKET", &self.socket)
            .env("SESSION", "tom-lab-test")
            .env_remove("TMUX")
            .env_remove("RUST_LOG");
        command
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// What member `index`'s pane shows.
    fn pane_text(&self, index: usize) -> String {
        let pane = fs::read_to_string(self.dir.join(format!("member{index}.pane"))).unwrap_or_default();
        let output = self.tmux(&["capture-pane", "-p", "-J", "-S", "-200", "-t", pane.trim()]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn wait_for_pane(&self, index: usize, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let shown = self.pane_text(index);
            if shown.contains(text) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "pane of member {index} never showed {text:?}:\n{shown}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn member_pid(&self, index: usize) -> u32 {
        let text = fs::read_to_string(self.dir.join(format!("member{index}.pid"))).unwrap_or_default();
        text.trim().parse().expect("member pid")
    }

    /// The recorded processes (`pids` and `panes`), as `(pid, start time)`.
    fn records(&self) -> Vec<(u32, String)> {
        let mut records = Vec::new();
        for file in ["pids", "panes"] {
            for line in fs::read_to_string(self.dir.join(file)).unwrap_or_default().lines() {
                let mut fields = line.split_whitespace();
                if let (Some(pid), Some(start)) = (fields.next(), fields.next()) {
                    records.push((pid.parse().expect("pid"), start.to_string()));
                }
            }
        }
        records
    }
}

/// The start time of `pid` (field 22 of /proc/PID/stat), if it runs and is not a zombie.
fn running_start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    (fields.first() != Some(&"Z")).then(|| fields[19].to_string())
}

/// The processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || running_start_time(pid).is_none() {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

impl Drop for LabSession {
    fn drop(&mut self) {
        for (pid, start) in self.records() {
            if running_start_time(pid).as_deref() == Some(start.as_str()) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn make_stop_ends_every_process_of_the_lab_and_of_its_rejoins() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("skipped: tmux is not installed (.ci/run installs it)");
        return;
    }
    let dir = fresh_log_dir("lab_cli-lab");
    let lab = LabSession {
        dir: dir.clone(),
        socket: format!("tom-lab-test-{}", std::process::id()),
        port: free_port(),
        outside: Processes(Vec::new()),
    };
    let mut lab = lab;
    let bin = Path::new(MEMBER).parent().expect("bin dir").to_path_buf();
    let started = lab
        .script("lab.sh")
        .env("N", "3")
        .env("PORT", lab.port.to_string())
        .env("MEMBER_PORT", free_port().to_string())
        .env("BIN", &bin)
        .stdin(Stdio::null())
        .output()
        .expect("run lab.sh");
    assert!(started.status.success(), "lab.sh: {}", stderr_of(&started));
    assert!(
        String::from_utf8_lossy(&started.stdout).contains("tests/lab/rejoin.sh RANK"),
        "the lab prints the rejoin command"
    );
    for index in 1..=3 {
        wait_for_text(&dir.join(format!("member{index}.out")), "JOINED");
        // Row 3: each pane shows where its member listens, and how to ask it.
        let shown = lab.wait_for_pane(index, "tom-member --status 127.0.0.1:");
        assert!(shown.contains("listening on"), "{shown}");
    }

    // Row 2: a killed member's pane says how to rejoin and rejoins on Enter; that life is recorded.
    let victim = lab.member_pid(1);
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .expect("kill");
    let shown = lab.wait_for_pane(1, "Enter: rejoin as rank");
    assert!(shown.contains("killed by signal 9"), "{shown}");
    assert!(shown.contains("tests/lab/rejoin.sh"), "{shown}");
    let pane = fs::read_to_string(dir.join("member1.pane")).expect("pane id");
    lab.tmux(&["send-keys", "-t", pane.trim(), "Enter"]);
    wait_for_text(&dir.join("member1.out"), "STATE ");
    let rejoined = lab.member_pid(1);
    assert_ne!(rejoined, victim);

    // Row 1: a member killed in its pane and rejoined from outside tmux with the printed command.
    let victim = lab.member_pid(2);
    let rank = fs::read_to_string(dir.join("member2.out"))
        .expect("member2.out")
        .lines()
        .find_map(|line| {
            line.strip_prefix("JOINED ")
                .map(|rest| rest.split(' ').next().unwrap_or("").to_string())
        })
        .expect("JOINED line");
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .expect("kill");
    lab.wait_for_pane(2, "Enter: rejoin as rank");
    let outside_log = dir.join("outside.log");
    let mut rejoin = lab.script("rejoin.sh");
    rejoin
        .arg(&rank)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&outside_log).expect("log"));
    let outside = lab.outside.spawn(&mut rejoin);
    let outside_pid = outside.id();
    let mut stdout = BufReader::new(outside.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read the rejoin's first line");
    assert!(
        first.starts_with("STATE "),
        "{first:?}; log: {}",
        fs::read_to_string(&outside_log).unwrap_or_default()
    );

    let records = lab.records();
    assert!(
        records.iter().any(|(pid, _)| *pid == rejoined),
        "the pane's rejoin is recorded"
    );
    assert!(
        records.iter().any(|(pid, _)| *pid == outside_pid),
        "the outside rejoin is recorded"
    );
    let pids = fs::read_to_string(dir.join("pids")).expect("pids");
    let alive = pids
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(pid, start)| running_start_time(pid.parse().unwrap_or(0)).as_deref() == Some(*start))
        .count();
    assert_eq!(
        alive, 4,
        "helper, the pane's rejoin, member 3 and the outside rejoin:\n{pids}"
    );

    let stopped = lab
        .script("stop.sh")
        .stdin(Stdio::null())
        .output()
        .expect("run stop.sh");
    let said = String::from_utf8_lossy(&stopped.stdout);
    assert!(stopped.status.success(), "stop.sh: {said} {}", stderr_of(&stopped));
    assert_eq!(said.trim(), "stopped 4 recorded process(es)");
    for (pid, start) in &records {
        assert_ne!(
            running_start_time(*pid).as_ref(),
            Some(start),
            "recorded process {pid} still runs"
        );
    }
    wait_exit(&mut lab.outside.0[0]);
    let left = processes_mentioning(&format!("127.0.0.1:{}", lab.port));
    assert!(left.is_empty(), "left behind: {left:?}");
    let left = processes_mentioning(dir.to_str().expect("utf-8 path"));
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        !lab.tmux(&["has-session", "-t", "tom-lab-test"]).status.success(),
        "the session is gone"
    );
}
