//! Shared by the tests that run the real programs as a lab would: a `tom-helper` and N `tom-member`
//! processes on 127.0.0.1, driven through their stdin, watched through their stdout, and hit with
//! signals (`kill -9`, `kill -STOP`, `kill -CONT`).
//!
//! Why a harness: every such test must (a) never leave a process behind, also when it panics — [`Lab`]
//! kills and reaps everything it started on drop; (b) wait for output with a deadline instead of
//! sleeping — each member's stdout is read on a thread into a shared list of lines; (c) explain a
//! failure — each process's stderr goes to a file under `target/tmp/proc/<lab name>/`, and the tail of
//! every log is printed when a test panics.
//!
//! Deadlines only bound hangs: they are generous (a loaded 2-core CI machine is slow, not broken), and
//! no test asserts speed.
#![allow(dead_code)]

#[path = "../../bin/check/history.rs"]
pub mod history;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const HELPER: &str = env!("CARGO_BIN_EXE_tom-helper");
pub const MEMBER: &str = env!("CARGO_BIN_EXE_tom-member");

/// How long anything that must happen may take before the test calls it a hang.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How long the delivered sequences must stay unchanged to count as settled.
const SETTLE: Duration = Duration::from_millis(1_500);

/// Exit code of a `tom-member` that the group excluded (or that lost its quorum).
pub const EXIT_EXCLUDED: i32 = 3;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind probe");
    listener.local_addr().expect("local addr").port()
}

/// A small deterministic generator (xorshift64*) for the random moments and victims of a test. The seed
/// comes from `TOM_TEST_SEED` or the clock, and is printed so that a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock() -> Rng {
        let seed = match std::env::var("TOM_TEST_SEED") {
            Ok(text) => text.parse().expect("TOM_TEST_SEED must be a number"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        println!("seed {seed} (replay with TOM_TEST_SEED={seed})");
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    /// A duration between `low_ms` and `high_ms` milliseconds.
    pub fn millis(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        Duration::from_millis(self.range(low_ms, high_ms))
    }

    /// `count` distinct elements of `items`, in random order.
    pub fn pick<T: Copy>(&mut self, items: &[T], count: usize) -> Vec<T> {
        let mut pool = items.to_vec();
        let mut picked = Vec::new();
        for _ in 0..count {
            let index = self.range(0, pool.len() as u64) as usize;
            picked.push(pool.remove(index));
        }
        picked
    }
}

/// One `DELIVER <origin_rank> <lamport> <payload>` line, taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub origin: u16,
    pub lamport: u64,
    pub payload: &'a str,
}

/// Parses a DELIVER line; `None` for any other line.
pub fn parse_delivery(line: &str) -> Option<Delivery<'_>> {
    let mut fields = line.splitn(4, ' ');
    if fields.next()? != "DELIVER" {
        return None;
    }
    let origin = fields.next()?.parse().ok()?;
    let lamport = fields.next()?.parse().ok()?;
    Some(Delivery {
        origin,
        lamport,
        payload: fields.next().unwrap_or(""),
    })
}

/// One `tom-member` process of a [`Lab`].
pub struct Member {
    /// The rank the group gave it (from its `JOINED` line).
    pub rank: u16,
    /// Its position among the spawned members, which is what per-member arguments are chosen by
    /// (ranks are handed out in arrival order, so they are only known after formation).
    pub spawn_index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    stop_reading: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Member {
    /// Starts `tom-member` with `args`, its stderr going to `log`; `rank` may be 0 until its `JOINED`
    /// line tells it.
    pub fn spawn(args: &[String], log: PathBuf, rank: u16, spawn_index: usize) -> Member {
        let mut child = Command::new(MEMBER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("member log"))
            .spawn()
            .expect("spawn tom-member");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop_reading = Arc::new(AtomicBool::new(false));
        let reader = {
            let (lines, stop_reading) = (lines.clone(), stop_reading.clone());
            std::thread::spawn(move || read_lines(stdout, &lines, &stop_reading))
        };
        Member {
            rank,
            spawn_index,
            child,
            stdin,
            lines,
            stop_reading,
            reader: Some(reader),
            log,
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Its `DELIVER` lines so far, whole.
    pub fn delivers(&self) -> Vec<String> {
        self.lines_starting("DELIVER ")
    }

    /// Its `VIEW` lines so far.
    pub fn views(&self) -> Vec<String> {
        self.lines_starting("VIEW ")
    }

    fn lines_starting(&self, prefix: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().filter(|line| line.starts_with(prefix)).cloned().collect()
    }

    pub fn deliver_count(&self) -> usize {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().filter(|line| line.starts_with("DELIVER ")).count()
    }

    /// Waits until `done` holds for its stdout lines; panics after [`DEADLINE`], naming `what`.
    pub fn wait_until(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            {
                let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                if done(&lines) {
                    return;
                }
                if Instant::now() > deadline {
                    let tail: Vec<&String> = lines.iter().rev().take(5).rev().collect();
                    panic!(
                        "rank {}: no {what} within {DEADLINE:?}; {} stdout lines, the last: {tail:#?}",
                        self.rank,
                        lines.len()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a stdout line equal to `line`.
    pub fn wait_for_line(&self, line: &str) {
        self.wait_until(&format!("line {line:?}"), |lines| lines.iter().any(|l| l == line));
    }

    /// Waits until it has printed at least `count` DELIVER lines.
    pub fn wait_for_delivers(&self, count: usize) {
        self.wait_until(&format!("{count} DELIVER lines"), |lines| {
            lines.iter().filter(|line| line.starts_with("DELIVER ")).count() >= count
        });
    }

    /// Writes one stdin line (the newline is added).
    pub fn write_line(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(&[line, b"\n"].concat()).expect("write to member stdin");
        stdin.flush().expect("flush member stdin");
    }

    /// Closes its stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Takes its stdin, for a writer thread of the caller's own.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Closes the reading end of its stdout: the reader thread stops at the next line it reads and
    /// drops the pipe, so the member's next write after that one fails (see [`Member::stdout_closed`]).
    pub fn close_stdout_after_next_line(&mut self) {
        self.stop_reading.store(true, Ordering::SeqCst);
    }

    /// Whether the pipe of its stdout is closed on our side (the reader thread ended).
    pub fn stdout_closed(&self) -> bool {
        self.reader.as_ref().map_or(true, |reader| reader.is_finished())
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`) through `kill(1)` ([`signal_all`]).
    pub fn signal(&self, name: &str) {
        signal_all(name, &[self.pid().to_string()]);
    }

    /// `kill -9`, then reaps it and collects the rest of its stdout.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.reap();
    }

    /// Waits for the process to end (it was signalled) and collects the rest of its stdout.
    pub fn reap(&mut self) {
        let status = self.child.wait().expect("wait for killed member");
        self.exited(status);
    }

    /// Kills it unless it already ended; keeps the exit status of one that ended by itself.
    pub fn kill_if_running(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Its exit status, once it ended (see [`Member::is_running`]).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Whether the process is still running (a stopped process counts as running).
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(status) => {
                self.exited(status);
                false
            }
            None => true,
        }
    }

    /// Waits up to `bound` for the process to exit; returns its exit code (`None` for a signal), after
    /// collecting the rest of its stdout. Panics if it is still running after `bound`.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let deadline = Instant::now() + bound;
        while self.is_running() {
            assert!(
                Instant::now() < deadline,
                "rank {}: still running after {bound:?}",
                self.rank
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.exit.and_then(|status| status.code())
    }

    fn exited(&mut self, status: ExitStatus) {
        self.exit = Some(status);
        // The pipe's writing end died with the process, so the reader reaches EOF: after the join, every
        // line the member printed is in `lines`.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// The last `count` lines of its stderr log.
    pub fn log_tail(&self, count: usize) -> String {
        tail_of(&self.log, count)
    }

    /// Its whole stderr log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port it listens on, from its log line "listening on 0.0.0.0:PORT".
    pub fn listening_port(&self) -> u16 {
        let log = self.log_text();
        let address = log
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split([';', ' ', '\n']).next())
            .unwrap_or_else(|| panic!("rank {}: no \"listening on\" line in its log", self.rank));
        address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("port in \"listening on\"")
    }
}

/// The last `count` lines of the file at `path` (a process log).
pub fn tail_of(path: &PathBuf, count: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// A helper and its members, all killed and reaped on drop.
pub struct Lab {
    name: String,
    dir: PathBuf,
    helper: Child,
    helper_port: u16,
    helper_log: PathBuf,
    /// The arguments every member got, before its own extra ones (helper, host, port, cookie file).
    member_args: Vec<String>,
    /// Sorted by rank: `members[i].rank == i + 1`.
    members: Vec<Member>,
    /// Processes started by [`Lab::rejoin`] so far, for their log names.
    rejoins: usize,
}

/// Waits until `sample()` gives equal numbers that stay unchanged for [`SETTLE`]: the group has nothing
/// left in flight. `what` names the numbers in the failure message.
pub fn wait_until_stable(what: &str, sample: impl Fn() -> Vec<usize>) {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Vec::new();
    let mut since = Instant::now();
    loop {
        let now = sample();
        if now != last {
            last = now;
            since = Instant::now();
        } else if last.iter().all(|&n| n == last[0]) && since.elapsed() >= SETTLE {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never settled: {last:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills and reaps every child on drop, so a failing test leaves no process behind.
#[derive(Default)]
pub struct Processes(pub Vec<Child>);

impl Processes {
    /// Starts `command` and keeps it.
    pub fn spawn(&mut self, command: &mut Command) -> &mut Child {
        let child = command.spawn().expect("spawn program");
        self.0.push(child);
        self.0.last_mut().expect("just pushed")
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An empty folder for one test's process logs: `target/tmp/proc/<name>/`.
pub fn fresh_log_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("proc").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create log dir");
    dir
}

/// Starts a `tom-helper` for `size` members on a free port of 127.0.0.1, logging into `dir`; returns the
/// process, its port and its log file.
pub fn spawn_helper(size: u16, dir: &std::path::Path) -> (Child, u16, PathBuf) {
    spawn_helper_with(size, dir, &[])
}

/// [`spawn_helper`] with `extra` arguments (e.g. `--cookie-file`).
pub fn spawn_helper_with(size: u16, dir: &std::path::Path, extra: &[String]) -> (Child, u16, PathBuf) {
    let helper_port = free_port();
    let helper_log = dir.join("helper.log");
    let helper = Command::new(HELPER)
        .args([
            "--size",
            &size.to_string(),
            "--bind",
            "127.0.0.1",
            "--port",
            &helper_port.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&helper_log).expect("helper log"))
        .spawn()
        .expect("spawn tom-helper");
    (helper, helper_port, helper_log)
}

impl Lab {
    /// Forms a group of `size` members with the same `args` each (besides helper, host and port).
    pub fn start(name: &str, size: u16, args: &[&str]) -> Lab {
        Lab::start_with(name, size, |_| args.iter().map(|a| a.to_string()).collect())
    }

    /// Forms a group of `size` members, the member spawned `i`-th getting the extra arguments
    /// `args_for(i)`; waits until each printed `JOINED` and the first view.
    pub fn start_with(name: &str, size: u16, args_for: impl Fn(usize) -> Vec<String>) -> Lab {
        Lab::form(name, fresh_log_dir(name), size, &[], args_for)
    }

    /// Forms a group of `size` members with the same `args` each, whose helper and members all hold the
    /// group secret `secret`: it is written to `group.cookie` (mode 600) in the lab's log folder and passed
    /// to every process with `--cookie-file`.
    pub fn start_with_secret(name: &str, size: u16, secret: &str, args: &[&str]) -> Lab {
        let dir = fresh_log_dir(name);
        let cookie = dir.join("group.cookie");
        std::fs::write(&cookie, secret).expect("write the cookie file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        }
        let cookie_args = ["--cookie-file".to_string(), cookie.to_string_lossy().into_owned()];
        Lab::form(name, dir, size, &cookie_args, |_| {
            args.iter().map(|a| a.to_string()).collect()
        })
    }

    /// Starts the helper (with `shared_args` after its own) and the members (with `shared_args`, then
    /// `args_for(spawn_index)`), logging into `dir`; waits until each printed `JOINED` and the first view.
    fn form(
        name: &str,
        dir: PathBuf,
        size: u16,
        shared_args: &[String],
        args_for: impl Fn(usize) -> Vec<String>,
    ) -> Lab {
        let (helper, helper_port, helper_log) = spawn_helper_with(size, &dir, shared_args);
        let first_port = free_port().to_string();
        let helper_addr = format!("127.0.0.1:{helper_port}");
        let mut member_args: Vec<String> = ["--helper", &helper_addr, "--host", "127.0.0.1", "--port", &first_port]
            .iter()
            .map(|a| a.to_string())
            .collect();
        member_args.extend_from_slice(shared_args);
        let mut lab = Lab {
            name: name.to_string(),
            dir,
            helper,
            helper_port,
            helper_log,
            member_args,
            members: Vec::new(),
            rejoins: 0,
        };
        for spawn_index in 0..size as usize {
            let log = lab.dir.join(format!("member{spawn_index}.log"));
            let mut args = lab.member_args.clone();
            args.extend(args_for(spawn_index));
            lab.members.push(Member::spawn(&args, log, 0, spawn_index));
        }
        let first_view = format!("VIEW {}", ranks_text(1..=size));
        for member in &mut lab.members {
            member.wait_until("JOINED line", |lines| lines.iter().any(|l| l.starts_with("JOINED ")));
            let joined = member
                .lines()
                .into_iter()
                .find(|l| l.starts_with("JOINED "))
                .expect("JOINED");
            let fields: Vec<&str> = joined.split(' ').collect();
            assert_eq!(fields.len(), 3, "{joined:?}");
            assert_eq!(fields[2], size.to_string(), "{joined:?}");
            member.rank = fields[1].parse().expect("rank in JOINED");
            member.wait_for_line(&first_view);
        }
        lab.members.sort_by_key(|member| member.rank);
        let ranks: Vec<u16> = lab.members.iter().map(|m| m.rank).collect();
        assert_eq!(ranks, (1..=size).collect::<Vec<_>>(), "ranks 1..=N, each once");
        println!("lab {name}: {size} members formed; logs in {}", lab.dir.display());
        lab
    }

    pub fn member(&self, rank: u16) -> &Member {
        &self.members[rank as usize - 1]
    }

    /// The port the helper listens on (127.0.0.1).
    pub fn helper_port(&self) -> u16 {
        self.helper_port
    }

    /// The helper's whole stderr log.
    pub fn helper_log_text(&self) -> String {
        std::fs::read_to_string(&self.helper_log).unwrap_or_default()
    }

    /// Starts a new life of `rank`, whose process was killed: `tom-member --rejoin RANK` with the lab's
    /// shared arguments and `extra`. Waits until it printed `JOINED`, puts it in the lab in place of the
    /// old life, and returns the old life (with everything it printed).
    pub fn rejoin(&mut self, rank: u16, extra: &[&str]) -> Member {
        assert!(
            !self.member_mut(rank).is_running(),
            "rank {rank} must be dead to rejoin"
        );
        self.rejoins += 1;
        let log = self.dir.join(format!("rejoin{}-rank{rank}.log", self.rejoins));
        let mut args = self.member_args.clone();
        args.extend(["--rejoin".to_string(), rank.to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let spawn_index = self.members.len() + self.rejoins - 1;
        let life = Member::spawn(&args, log, rank, spawn_index);
        life.wait_for_line(&format!("JOINED {rank} {}", self.members.len()));
        std::mem::replace(self.member_mut(rank), life)
    }

    pub fn member_mut(&mut self, rank: u16) -> &mut Member {
        &mut self.members[rank as usize - 1]
    }

    pub fn ranks(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.rank).collect()
    }

    /// `kill -9` of every member of `ranks` at once, as the others see it: all are stopped first, then
    /// killed in one `kill` command, so none can take part in a view change after another one's
    /// connections closed (a kill alone once let a victim that took a few milliseconds to die help
    /// install a view without the first). Then reaps them.
    pub fn kill9_together(&mut self, ranks: &[u16]) {
        let pids: Vec<String> = ranks.iter().map(|&rank| self.member(rank).pid().to_string()).collect();
        // Frozen first, all of them, then killed: a SIGKILL takes effect thread by thread and a process
        // may take a while to die, and a victim still running when another one's connections close could
        // join a view change without it (the survivors then see two faults, not one). Stopped, no victim
        // answers anyone, and the stop itself goes unnoticed (the connections stay open) far longer than
        // it takes.
        signal_all("STOP", &pids);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !pids.iter().all(|pid| process_is_stopped(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        signal_all("KILL", &pids);
        for &rank in ranks {
            let member = self.member_mut(rank);
            let status = member.child.wait().expect("wait for killed member");
            member.exited(status);
        }
    }

    /// Waits until every member of `ranks` printed `VIEW` with exactly `view_ranks`.
    pub fn wait_for_view(&self, ranks: &[u16], view_ranks: &[u16]) {
        let line = format!("VIEW {}", ranks_text(view_ranks.iter().copied()));
        for &rank in ranks {
            self.member(rank).wait_for_line(&line);
        }
    }

    /// Waits until the DELIVER sequences of `ranks` hold at least `count` lines each, are all the same
    /// length, and stay unchanged for a while: the group has nothing left in flight.
    pub fn wait_until_settled(&self, ranks: &[u16], count: usize) {
        for &rank in ranks {
            self.member(rank).wait_for_delivers(count);
        }
        wait_until_stable(&format!("DELIVER counts of ranks {ranks:?}"), || {
            ranks.iter().map(|&rank| self.member(rank).deliver_count()).collect()
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process, so this never waits on a SIGSTOPped member.
        for member in &mut self.members {
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
        let _ = self.helper.kill();
        let _ = self.helper.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- lab {}: helper log tail:\n{}",
                self.name,
                tail_of(&self.helper_log, 10)
            );
            for member in &self.members {
                let lines = member.lines.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!(
                    "--- lab {}: rank {} (spawn {}), {} stdout lines, exit {:?}; stderr tail:\n{}",
                    self.name,
                    member.rank,
                    member.spawn_index,
                    lines.len(),
                    member.exit,
                    member.log_tail(25)
                );
            }
        }
    }
}

fn read_lines(stdout: std::process::ChildStdout, lines: &Mutex<Vec<String>>, stop_reading: &AtomicBool) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    while !stop_reading.load(Ordering::SeqCst) {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else {
            // The process ended in the middle of a line (killed while writing a long DELIVER line):
            // what it wrote of that line is no line of its output, and no delivery to check.
            break;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        lines.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    }
}

/// `1,2,3` for a `VIEW` line.
pub fn ranks_text(ranks: impl IntoIterator<Item = u16>) -> String {
    ranks.into_iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")
}

/// The payload each load writer sends as its `number`-th line: unique in the whole test.
pub fn load_line(rank: u16, number: usize) -> String {
    format!("from {rank} line {number}")
}

/// Writer threads, one per member, feeding stdin lines (see [`load_line`]) until told to stop or until
/// each wrote `limit` lines. All start at the same moment. A line counts as written once the pipe took
/// it; a member that dies ends its writer (the pipe breaks).
pub struct Load {
    stop: Arc<AtomicBool>,
    limited: bool,
    writers: Vec<(u16, Writer)>,
}

/// A writer thread: it returns the lines it wrote and the member's stdin, to be given back.
type Writer = JoinHandle<(Vec<String>, ChildStdin)>;

impl Load {
    /// Starts writing to `ranks`, one line every `pace` (zero: as fast as each pipe takes them).
    pub fn start(lab: &mut Lab, ranks: &[u16], pace: Duration, limit: Option<usize>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let start_together = Arc::new(Barrier::new(ranks.len()));
        let writers = ranks
            .iter()
            .map(|&rank| {
                let mut stdin = lab.member_mut(rank).stdin.take().expect("stdin still open");
                let (stop, start_together) = (stop.clone(), start_together.clone());
                let writer = std::thread::spawn(move || {
                    start_together.wait();
                    let mut written = Vec::new();
                    while !stop.load(Ordering::SeqCst) && limit.map_or(true, |limit| written.len() < limit) {
                        let line = load_line(rank, written.len() + 1);
                        if stdin.write_all(format!("{line}\n").as_bytes()).is_err() {
                            break;
                        }
                        written.push(line);
                        if !pace.is_zero() {
                            std::thread::sleep(pace);
                        }
                    }
                    (written, stdin)
                });
                (rank, writer)
            })
            .collect();
        Load {
            stop,
            limited: limit.is_some(),
            writers,
        }
    }

    /// Stops the writers (or, with a limit, waits until they are done), gives each surviving member its
    /// stdin back, and returns the lines written per rank.
    pub fn finish(mut self, lab: &mut Lab) -> BTreeMap<u16, Vec<String>> {
        if !self.limited {
            self.stop.store(true, Ordering::SeqCst);
        }
        let mut written = BTreeMap::new();
        for (rank, writer) in self.writers.drain(..) {
            let (lines, stdin) = writer.join().expect("writer thread");
            lab.member_mut(rank).stdin = Some(stdin);
            written.insert(rank, lines);
        }
        written
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // No join here: a writer may be blocked on the full pipe of a stopped member. The lab's drop kills
        // the members, which breaks the pipes and ends the writers.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Asserts that `sequences` (rank, DELIVER lines) are all identical, naming the first difference.
pub fn assert_identical(sequences: &[(u16, Vec<String>)]) {
    let (first_rank, first) = &sequences[0];
    for (rank, sequence) in &sequences[1..] {
        assert!(
            first == sequence,
            "ranks {first_rank} and {rank} delivered different sequences ({} and {} lines): {}",
            first.len(),
            sequence.len(),
            first_difference(first, sequence)
        );
    }
}

/// Asserts that `prefix` is a prefix of `whole`.
pub fn assert_prefix(prefix: &[String], whole: &[String], what: &str) {
    assert!(
        prefix.len() <= whole.len() && prefix == &whole[..prefix.len()],
        "{what}: not a prefix ({} lines against {}): {}",
        prefix.len(),
        whole.len(),
        first_difference(prefix, whole)
    );
}

fn first_difference(a: &[String], b: &[String]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(index) => format!(
            "first difference at line {}: {:?} against {:?}",
            index + 1,
            a[index],
            b[index]
        ),
        None => format!("one is {} lines longer", a.len().abs_diff(b.len())),
    }
}

/// Asserts that every line in `written` appears exactly once among the payloads of `delivers`, from the
/// origin rank it was written to.
pub fn assert_each_delivered_once(delivers: &[String], written: &BTreeMap<u16, Vec<String>>) {
    let mut seen: HashMap<&str, (usize, u16)> = HashMap::new();
    for line in delivers {
        let delivery = parse_delivery(line).unwrap_or_else(|| panic!("malformed DELIVER line {line:?}"));
        seen.entry(delivery.payload).or_insert((0, delivery.origin)).0 += 1;
    }
    for (&rank, lines) in written {
        for line in lines {
            match seen.get(line.as_str()) {
                Some(&(1, origin)) => assert_eq!(origin, rank, "{line:?} delivered with origin {origin}"),
                Some(&(times, _)) => panic!("{line:?} delivered {times} times"),
                None => panic!("{line:?}, written to rank {rank}, was never delivered"),
            }
        }
    }
}

/// Asserts that no payload appears twice in `delivers`.
pub fn assert_no_duplicates(delivers: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for line in delivers {
        let payload = parse_delivery(line).map_or(line.as_str(), |d| d.payload);
        assert!(seen.insert(payload), "{payload:?} delivered twice");
    }
}

/// Checks the stdout of every process of a run (first lives, killed lives, rejoined lives) with the rules
/// of `tom-check` (`bin/check/history.rs`): one global order that every life agrees with, no holes, no
/// duplicates, FIFO per origin, rejoin suffixes. Returns the length of the global order.
pub fn assert_logs_pass_check(processes: &[&Member]) -> u64 {
    let logs: Vec<_> = processes
        .iter()
        .map(|process| {
            let name = format!("rank {} (spawn {})", process.rank, process.spawn_index);
            let text: String = process.lines().iter().map(|line| format!("{line}\n")).collect();
            history::parse_log(&name, &text).unwrap_or_else(|error| panic!("{error}"))
        })
        .collect();
    match history::check(&logs) {
        Ok(summary) => {
            println!("tom-check rules: {summary}");
            summary.positions
        }
        Err(violation) => panic!("{violation}"),
    }
}

/// Runs `program` with `args` and no input, to its end; its status and output.
pub fn run(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run program")
}

/// Sends the signal `name` (`KILL`, `STOP`, `CONT`) to every process of `pids` in one `kill(1)` command
/// (the tests may not use `unsafe`), so the signals land microseconds apart.
fn signal_all(name: &str, pids: &[String]) {
    let status = Command::new("kill")
        .args(["-s", name])
        .args(pids)
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pids:?} failed");
}

/// True if the process is stopped (state `T` in `/proc/PID/stat`), or the state cannot be read (not
/// Linux, or gone): then there is nothing to wait for.
fn process_is_stopped(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map_or(true, |state| state == "T" || state == "t"),
        Err(_) => true,
    }
}
