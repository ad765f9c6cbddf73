//! A group on real separate hosts: network namespaces this test creates, each with its own network
//! stack and address, joined by veth pairs into a bridge (a switch). The helper and each member run in a
//! host of their own. Then one host's cable is cut — its link goes down, so no reset arrives, only
//! silence, as on a real network. The others must exclude it by heartbeat timeout and go on; the cut
//! member must stop (it cannot reach a quorum) without ever delivering anything divergent, also after
//! the link comes back.
//!
//! Needs root and `ip` (iproute2). Without them it says so and skips. Everything it creates — hosts,
//! links, processes — is removed when it ends, also when it fails. Addresses are private and exist only
//! inside the test's namespaces.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HELPER: &str = env!("CARGO_BIN_EXE_tom-helper");
const MEMBER: &str = env!("CARGO_BIN_EXE_tom-member");
const MEMBERS: usize = 4;
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `ip` with `args`; true on success.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespaces and links of one test run, removed on drop.
struct Network {
    prefix: String,
    hosts: Vec<String>,
    switch: String,
}

impl Network {
    /// A switch and `count` hosts `h0..h{count-1}` with addresses 10.77.0.(10+i)/24.
    fn build(count: usize) -> Network {
        let prefix = format!("tom{}", std::process::id() % 100_000);
        let switch = format!("{prefix}-sw");
        let mut network = Network {
            prefix: prefix.clone(),
            hosts: Vec::new(),
            switch: switch.clone(),
        };
        assert!(ip(&["netns", "add", &switch]), "create the switch namespace");
        assert!(ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]));
        assert!(ip(&["-n", &switch, "link", "set", "br0", "up"]));
        for i in 0..count {
            let host = format!("{prefix}-h{i}");
            assert!(ip(&["netns", "add", &host]), "create host {host}");
            network.hosts.push(host.clone());
            let (inside, outside) = (format!("{prefix}h{i}"), format!("{prefix}s{i}"));
            assert!(ip(&["link", "add", &inside, "type", "veth", "peer", "name", &outside]));
            assert!(ip(&["link", "set", &inside, "netns", &host]));
            assert!(ip(&["link", "set", &outside, "netns", &switch]));
            assert!(ip(&["-n", &host, "link", "set", &inside, "name", "eth0"]));
            assert!(ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{}/24", Network::address(i)),
                "dev",
                "eth0"
            ]));
            assert!(ip(&["-n", &host, "link", "set", "eth0", "up"]));
            assert!(ip(&["-n", &host, "link", "set", "lo", "up"]));
            assert!(ip(&["-n", &switch, "link", "set", &outside, "master", "br0"]));
            assert!(ip(&["-n", &switch, "link", "set", &outside, "up"]));
        }
        network
    }

    fn address(host: usize) -> String {
        format!("10.77.0.{}", 10 + host)
    }

    /// Cuts (or mends) host `i`'s cable at the switch: no reset, only silence.
    fn set_cable(&self, host: usize, up: bool) {
        let port = format!("{}s{host}", self.prefix);
        assert!(ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" }
        ]));
    }

    /// A command that runs `program` inside host `i`.
    fn command(&self, host: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.hosts[host], program]);
        command
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            ip(&["netns", "del", host]);
        }
        ip(&["netns", "del", &self.switch]);
    }
}

/// A started program: its stdout lines as they come, its stdin, killed and reaped on drop.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn start(mut command: Command) -> Process {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Process {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn say(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// Waits until a line satisfies `wanted`.
    fn wait_for(&self, what: &str, wanted: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !wanted(&self.lines()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; output: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn deliveries(&self) -> Vec<String> {
        self.lines().into_iter().filter(|l| l.starts_with("DELIVER ")).collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn can_run() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        return Err("not root".into());
    }
    if !Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success()) {
        return Err("`ip` (iproute2) is missing".into());
    }
    // Namespaces may be forbidden even to root (some containers): try one.
    let probe = format!("tomprobe{}", std::process::id() % 100_000);
    if !ip(&["netns", "add", &probe]) {
        return Err("cannot create network namespaces here".into());
    }
    ip(&["netns", "del", &probe]);
    Ok(())
}

#[test]
fn a_host_cut_off_by_a_dead_link_is_excluded_and_stops_without_diverging() {
    if let Err(why) = can_run() {
        eprintln!("SKIPPED a_host_cut_off_by_a_dead_link_is_excluded_and_stops_without_diverging: {why}");
        return;
    }
    let network = Network::build(MEMBERS + 1);
    let helper_addr = format!("{}:9999", Network::address(0));
    let mut helper = network.command(0, HELPER);
    helper.args([
        "--size",
        &MEMBERS.to_string(),
        "--bind",
        &Network::address(0),
        "--port",
        "9999",
    ]);
    let _helper = Process::start(helper);
    let mut members: Vec<Process> = (1..=MEMBERS)
        .map(|host| {
            let mut member = network.command(host, MEMBER);
            member.args(["--helper", &helper_addr, "--failure-timeout-ms", "1000"]);
            Process::start(member)
        })
        .collect();
    for member in &members {
        member.wait_for("JOINED and the first view", |lines| {
            lines.iter().any(|l| l == "VIEW 1,2,3,4")
        });
    }
    let rank_of = |p: &Process| -> String { p.lines()[0].split(' ').nth(1).unwrap_or_default().to_string() };
    let cut = MEMBERS - 1; // the process on the last host
    let cut_rank = rank_of(&members[cut]);
    for (i, member) in members.iter_mut().enumerate() {
        member.say(&format!("before {i}"));
    }
    for member in &members {
        member.wait_for("the first messages", |lines| {
            lines.iter().filter(|l| l.starts_with("DELIVER")).count() == MEMBERS
        });
    }

    network.set_cable(MEMBERS, false);
    let others: Vec<usize> = (0..MEMBERS).filter(|i| *i != cut).collect();
    let survivors_view = {
        let mut ranks: Vec<String> = others.iter().map(|i| rank_of(&members[*i])).collect();
        ranks.sort();
        format!("VIEW {}", ranks.join(","))
    };
    for &i in &others {
        members[i].wait_for(&survivors_view, |lines| lines.contains(&survivors_view));
    }
    for &i in &others {
        members[i].say(&format!("during {i}"));
    }
    for &i in &others {
        members[i].wait_for("messages after the cut", |lines| {
            lines.iter().filter(|l| l.starts_with("DELIVER")).count() == MEMBERS + others.len()
        });
    }
    // The cut member hears nobody: it suspects them all, has no quorum, and stops (exit 3).
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = members[cut].child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the cut member (rank {cut_rank}) did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(3), "the cut member stops as excluded");
    network.set_cable(MEMBERS, true);

    for &i in &others {
        members[i].say(&format!("after {i}"));
    }
    let total = MEMBERS + 2 * others.len();
    for &i in &others {
        members[i].wait_for("messages after the cable is back", |lines| {
            lines.iter().filter(|l| l.starts_with("DELIVER")).count() == total
        });
    }
    let reference = members[others[0]].deliveries();
    for &i in &others {
        assert_eq!(members[i].deliveries(), reference, "survivors agree");
    }
    let cut_sequence = members[cut].deliveries();
    assert_eq!(
        cut_sequence[..],
        reference[..cut_sequence.len()],
        "the cut member delivered a prefix, nothing divergent"
    );
}
