//! Chaos check of real processes (issue 17): a `tom-helper` and 3..5 `tom-member` processes on
//! 127.0.0.1, kept under load, hit by faults from a seeded schedule, and judged by `tom-check`.
//!
//! One run (one seed): the seed draws the group size N (3..5), the failure timeout (500..800 ms), which
//! members come back by themselves when excluded (`--rejoin-when-excluded`), each process's pace and
//! payload sizes (mostly short lines, some of 1..16 KiB, a few of 64..256 KiB), and 4..6 fault steps.
//! Each step waits a few failure timeouts under load, then applies one fault chosen from the step's
//! draws and the group's state:
//! - `kill -9` of a member;
//! - `kill -9` and a rejoin right after it (0..F/2 ms later: before anyone suspects the old life),
//!   through the helper or through a live member (`--peer`);
//! - `kill -9` and two processes started for that rank at once: one is admitted, the other gives up
//!   after its join timeout;
//! - SIGSTOP past the failure timeout, then SIGCONT: the member is excluded and exits 3, or, started with
//!   `--rejoin-when-excluded`, comes back as a new life;
//! - a rejoin of a rank that is dead (through the helper or `--peer`);
//! - a rejoin of a rank that is alive: it must be refused (exit non-zero, no `JOINED`) and the group
//!   must not notice (no view change, the live process stays).
//!
//! A fault that would leave fewer than a majority of the N ranks running is never chosen, and after each
//! step the run waits until the group has settled (every running member's last view lists exactly the
//! running ranks). At the end every survivor multicasts marker lines that every survivor must deliver
//! (liveness after the last fault); then the survivors close their stdin one after the other and each
//! must leave cleanly (exit 0, every line written to it delivered), the last one too (a member alone in
//! its view leaves into the empty view). `CHAOS_LEAVE=together` closes every stdin at once instead, and
//! also expects exit 0 from each; `CHAOS_LEAVE=kill-last` kills the last survivor once it delivered its
//! lines. Every process's stdout (the dead ones' too) is then checked with the built `tom-check`:
//! total order, agreement, no holes, integrity, FIFO per origin, rejoin suffixes.
//!
//! Environment: `CHAOS_SEED=n` runs seed n; `CHAOS_SECONDS=s` runs consecutive seeds from
//! `CHAOS_FIRST_SEED` (default 1) until s seconds have passed (`make chaos`); without either, one seed
//! drawn from the clock (what `make test` runs). The schedule is a function of the seed and of what the
//! group did (a member that was unexpectedly excluded changes the choices that follow); each run prints
//! it as it goes. A failing run prints the command that replays it, its schedule, and keeps the logs of
//! every process under `target/chaos/seed-N/` (`pK-rankR.out` is stdout, `.err` stderr); a passing run
//! deletes them. Every process is killed when the run ends, whichever way it ends (also on a panic).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const HELPER: &str = env!("CARGO_BIN_EXE_tom-helper");
const MEMBER: &str = env!("CARGO_BIN_EXE_tom-member");
const CHECK: &str = env!("CARGO_BIN_EXE_tom-check");

/// Marker lines each survivor multicasts after the last fault.
const MARKERS: usize = 3;

/// How much longer the failure timeout is in a debug build (what `make test` runs), with fewer steps to
/// keep the run short: its binaries are several times slower, and with a failure timeout of 500..800 ms
/// members busy with 256 KiB payloads are suspected for silence (healthy ones excluded, quorum lost).
const DEBUG_SLOWDOWN: u64 = if cfg!(debug_assertions) { 3 } else { 1 };

/// The command that replays a seed, with the build profile of this run.
fn replay_command(seed: u64) -> String {
    let release = if cfg!(debug_assertions) { "" } else { " --release" };
    format!("CHAOS_SEED={seed} cargo test{release} --test chaos -- --nocapture")
}

/// A run that takes longer than this has hung somewhere that no narrower deadline caught.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// How long a process that must exit (a clean leave, a refused rejoin past its join timeout) may take
/// beyond what it was told.
const EXIT_SLACK: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------------
// The generator and the plan

/// xorshift64*, seeded through splitmix64 so that neighbouring seeds give unrelated streams.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(z.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The draws of one fault step, made before the run starts; which fault they mean depends on the
/// group's state when the step comes (see [`Run::choose`]).
#[derive(Clone, Debug)]
struct Step {
    /// Load-only time before the fault.
    gap_ms: u64,
    kind: u64,
    target: u64,
    extra: u64,
}

/// Everything a seed decides before the run starts.
#[derive(Clone, Debug)]
struct Plan {
    seed: u64,
    size: u16,
    failure_timeout_ms: u64,
    /// `--rejoin-when-excluded` for the members that form the group, by spawn order.
    founders_rejoin_when_excluded: Vec<bool>,
    steps: Vec<Step>,
}

impl Plan {
    fn new(seed: u64) -> Plan {
        let mut rng = Rng::new(seed, 0);
        let size = rng.between(3, 5) as u16;
        let failure_timeout_ms = rng.between(500, 800) * DEBUG_SLOWDOWN;
        let founders_rejoin_when_excluded = (0..size).map(|_| rng.next() % 2 == 0).collect();
        let count = if DEBUG_SLOWDOWN > 1 {
            rng.between(2, 3)
        } else {
            rng.between(4, 6)
        };
        let steps = (0..count)
            .map(|_| Step {
                gap_ms: rng.between(2 * failure_timeout_ms, 5 * failure_timeout_ms),
                kind: rng.next(),
                target: rng.next(),
                extra: rng.next(),
            })
            .collect();
        Plan {
            seed,
            size,
            failure_timeout_ms,
            founders_rejoin_when_excluded,
            steps,
        }
    }

    fn majority(&self) -> usize {
        self.size as usize / 2 + 1
    }

    /// Join timeout of a rejoin that must be admitted (only bounds a failure).
    fn join_timeout_ms(&self) -> u64 {
        15_000
    }

    /// Join timeout of the two processes started for one rank: the loser waits that long.
    fn double_join_timeout_ms(&self) -> u64 {
        4_000 + 4 * self.failure_timeout_ms
    }

    /// Join timeout of a rejoin of a live rank, which must be refused.
    fn live_join_timeout_ms(&self) -> u64 {
        2_000 + 2 * self.failure_timeout_ms
    }
}

/// How a rejoining process finds the group.
#[derive(Clone, Copy, Debug)]
enum Via {
    Helper,
    /// `--peer` with the listening address of this rank's current process.
    Peer(u16),
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Helper => write!(f, "through the helper"),
            Via::Peer(rank) => write!(f, "through --peer of rank {rank}"),
        }
    }
}

/// One fault, as executed.
#[derive(Clone, Debug)]
enum Fault {
    Kill {
        rank: u16,
    },
    KillRejoin {
        rank: u16,
        delay_ms: u64,
        via: Via,
        auto: bool,
    },
    KillTwoRejoins {
        rank: u16,
        via: [Via; 2],
    },
    Stop {
        rank: u16,
        pause_ms: u64,
    },
    Rejoin {
        rank: u16,
        via: Via,
        auto: bool,
    },
    RejoinLive {
        rank: u16,
        via: Via,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auto = |auto: &bool| if *auto { ", --rejoin-when-excluded" } else { "" };
        match self {
            Fault::Kill { rank } => write!(f, "kill -9 rank {rank}"),
            Fault::KillRejoin {
                rank,
                delay_ms,
                via,
                auto: a,
            } => {
                write!(f, "kill -9 rank {rank}, rejoin it {delay_ms} ms later {via}{}", auto(a))
            }
            Fault::KillTwoRejoins { rank, via } => {
                write!(
                    f,
                    "kill -9 rank {rank}, start two processes for it at once ({}; {})",
                    via[0], via[1]
                )
            }
            Fault::Stop { rank, pause_ms } => write!(f, "SIGSTOP rank {rank} for {pause_ms} ms, then SIGCONT"),
            Fault::Rejoin { rank, via, auto: a } => write!(f, "rejoin dead rank {rank} {via}{}", auto(a)),
            Fault::RejoinLive { rank, via } => write!(f, "rejoin live rank {rank} {via} (must be refused)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// One process

/// What a process's stdout showed so far (payloads are kept by their tag only: they can be 256 KiB).
#[derive(Default)]
struct Seen {
    /// `JOINED` lines: one per life.
    joined: usize,
    /// The rank of the first `JOINED`.
    rank: Option<u16>,
    views: usize,
    last_view: Option<String>,
    /// The tags (first word of the payload) of every delivered message, in order.
    delivered: Vec<String>,
}

/// Commands to a process's writer thread.
enum Order {
    /// Write these marker lines, then stop writing (keep stdin open).
    Markers(Vec<String>),
    /// Close stdin.
    Close,
}

struct Proc {
    index: usize,
    /// Known in advance for a rejoin; from `JOINED` for a founder (0 until then).
    rank: u16,
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<Seen>>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    orders: Option<Sender<Order>>,
    /// Tags of the lines the pipe took, in order.
    written: Arc<Mutex<Vec<String>>>,
    exit: Option<ExitStatus>,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, index: usize, rank: u16, what: String, args: &[String]) -> Result<Proc, String> {
        let name = if rank == 0 {
            format!("p{index}")
        } else {
            format!("p{index}-rank{rank}")
        };
        let out_path = dir.join(format!("{name}.out"));
        let err_path = dir.join(format!("{name}.err"));
        let stderr = File::create(&err_path).map_err(|e| format!("create {}: {e}", err_path.display()))?;
        let mut child = Command::new(MEMBER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn tom-member: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let file = File::create(&out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || read_stdout(stdout, file, &seen))
        };
        Ok(Proc {
            index,
            rank,
            what,
            child,
            stdin,
            seen,
            reader: Some(reader),
            writer: None,
            orders: None,
            written: Arc::default(),
            exit: None,
            out_path,
            err_path,
        })
    }

    fn name(&self) -> String {
        format!("p{} (rank {}, {})", self.index, self.rank, self.what)
    }

    fn joined(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).joined
    }

    fn views(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).views
    }

    fn last_view(&self) -> Option<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).last_view.clone()
    }

    fn delivered(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).delivered.clone()
    }

    fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.ended(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Records the exit and collects the rest of stdout (the reader reaches EOF once the process is gone).
    fn ended(&mut self, status: ExitStatus) {
        self.exit = Some(status);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    fn signal(&self, name: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .map_err(|e| format!("run kill: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -s {name} {} failed", self.child.id()))
        }
    }

    fn kill9(&mut self) -> Result<(), String> {
        self.signal("KILL")?;
        let status = self.child.wait().map_err(|e| format!("wait: {e}"))?;
        self.ended(status);
        Ok(())
    }

    /// Waits up to `bound` for the process to end on its own.
    fn wait_exit(&mut self, bound: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + bound;
        while self.is_running() {
            if Instant::now() > deadline {
                return Err(format!("{} still running after {bound:?}", self.name()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(self.exit.expect("ended"))
    }

    /// The port of the newest "listening on HOST:PORT" line of its log.
    fn listening_port(&self) -> Option<u16> {
        let log = std::fs::read_to_string(&self.err_path).ok()?;
        let rest = log
            .rsplit("listening on ")
            .next()
            .filter(|_| log.contains("listening on "))?;
        let address = rest.split([';', ' ', '\n']).next()?;
        address.rsplit(':').next()?.parse().ok()
    }

    /// Starts its writer thread: lines of seeded sizes at a seeded pace, until told otherwise or the
    /// pipe breaks.
    fn start_load(&mut self, seed: u64) {
        let Some(stdin) = self.stdin.take() else { return };
        let (orders, inbox) = mpsc::channel();
        let (rank, index, written) = (self.rank, self.index, self.written.clone());
        self.orders = Some(orders);
        self.writer = Some(std::thread::spawn(move || {
            write_load(
                stdin,
                Rng::new(seed, 1_000 + index as u64),
                rank,
                index,
                &written,
                &inbox,
            )
        }));
    }

    fn order(&self, order: Order) {
        if let Some(orders) = &self.orders {
            let _ = orders.send(order);
        }
    }

    /// The first line written to it that it did not deliver.
    fn undelivered_own_line(&self) -> Option<String> {
        let delivered: HashSet<String> = self.delivered().into_iter().collect();
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.iter().find(|tag| !delivered.contains(*tag)).cloned()
    }

    fn log_tail(&self, count: usize) -> String {
        let text = std::fs::read_to_string(&self.err_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(count)..].join("\n")
    }
}

/// Copies a process's stdout to its file, byte for byte, and notes what [`Seen`] keeps.
fn read_stdout(stdout: std::process::ChildStdout, file: File, seen: &Mutex<Seen>) {
    let mut reader = BufReader::with_capacity(1 << 20, stdout);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = out.write_all(&line);
        if line.last() != Some(&b'\n') {
            break; // cut by the end of the process: tom-check ignores it
        }
        let text = &line[..line.len() - 1];
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rest) = text.strip_prefix(b"DELIVER ") {
            let payload = rest.splitn(3, |&b| b == b' ').nth(2).unwrap_or(b"");
            let tag = payload.split(|&b| b == b' ').next().unwrap_or(b"");
            seen.delivered.push(String::from_utf8_lossy(tag).into_owned());
        } else if let Some(rest) = text.strip_prefix(b"JOINED ") {
            seen.joined += 1;
            if seen.rank.is_none() {
                seen.rank = String::from_utf8_lossy(rest)
                    .split(' ')
                    .next()
                    .and_then(|r| r.parse().ok());
            }
        } else if text.starts_with(b"VIEW ") {
            seen.views += 1;
            seen.last_view = Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    let _ = out.flush();
}

/// One load line: `l<rank>.<process>.<n>` then a space and filler up to a seeded size.
fn load_line(rng: &mut Rng, tag: &str) -> Vec<u8> {
    let roll = rng.next() % 1_000;
    let size = if roll < 850 {
        rng.between(8, 200)
    } else if roll < 985 {
        rng.between(1_024, 16 * 1_024)
    } else {
        rng.between(64 * 1_024, 256 * 1_024)
    } as usize;
    let mut line = format!("{tag} ").into_bytes();
    let filler = b'a' + (rng.next() % 26) as u8;
    line.resize(line.len().max(size), filler);
    line.push(b'\n');
    line
}

fn write_load(
    mut stdin: ChildStdin,
    mut rng: Rng,
    rank: u16,
    index: usize,
    written: &Mutex<Vec<String>>,
    inbox: &Receiver<Order>,
) {
    let pace_ms = rng.between(15, 45);
    let mut number = 0;
    loop {
        match inbox.try_recv() {
            Ok(Order::Markers(markers)) => {
                for tag in markers {
                    if stdin.write_all(format!("{tag} end\n").as_bytes()).is_err() {
                        return;
                    }
                    written.lock().unwrap_or_else(|e| e.into_inner()).push(tag);
                }
                // Hold stdin open until told to close it.
                let _ = inbox.recv();
                return;
            }
            Ok(Order::Close) | Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {}
        }
        number += 1;
        let tag = format!("l{rank}.{index}.{number}");
        if stdin.write_all(&load_line(&mut rng, &tag)).is_err() {
            return;
        }
        written.lock().unwrap_or_else(|e| e.into_inner()).push(tag);
        std::thread::sleep(Duration::from_millis(rng.between(pace_ms / 2, pace_ms * 3 / 2)));
    }
}

// ---------------------------------------------------------------------------------------------------
// One run

/// A helper and every process of one run; everything still running is killed on drop (also on panic).
struct Run {
    plan: Plan,
    dir: PathBuf,
    started: Instant,
    helper: Option<Child>,
    helper_addr: String,
    first_port: u16,
    procs: Vec<Proc>,
    /// The executed schedule, one line per event.
    story: Arc<Mutex<Vec<String>>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            if proc.exit.is_none() {
                let _ = proc.child.kill();
                if let Ok(status) = proc.child.wait() {
                    proc.ended(status);
                }
            }
            proc.orders = None;
        }
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
        // Every pipe is broken now, so the writers end.
        for proc in &mut self.procs {
            if let Some(writer) = proc.writer.take() {
                let _ = writer.join();
            }
            if let Some(reader) = proc.reader.take() {
                let _ = reader.join();
            }
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a probe: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn ranks_text(ranks: &[u16]) -> String {
    ranks.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")
}

impl Run {
    fn note(&self, text: String) {
        let line = format!("[{:6.2}s] {text}", self.started.elapsed().as_secs_f64());
        println!("chaos seed {}: {line}", self.plan.seed);
        self.story.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    fn check_deadline(&self) -> Result<(), String> {
        if self.started.elapsed() > RUN_DEADLINE {
            Err(format!("the run took longer than {RUN_DEADLINE:?}"))
        } else {
            Ok(())
        }
    }

    fn common_args(&self) -> Vec<String> {
        [
            "--host",
            "127.0.0.1",
            "--port",
            &self.first_port.to_string(),
            "--failure-timeout-ms",
            &self.plan.failure_timeout_ms.to_string(),
            "--exit-on-eof",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    /// Starts the helper and the founders; waits until each printed `JOINED` and the first view.
    fn form(plan: Plan, dir: PathBuf, story: Arc<Mutex<Vec<String>>>) -> Result<Run, String> {
        let helper_port = free_port()?;
        let helper_log = File::create(dir.join("helper.err")).map_err(|e| e.to_string())?;
        let helper = Command::new(HELPER)
            .args([
                "--size",
                &plan.size.to_string(),
                "--bind",
                "127.0.0.1",
                "--port",
                &helper_port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(helper_log)
            .spawn()
            .map_err(|e| format!("spawn tom-helper: {e}"))?;
        let mut run = Run {
            plan,
            dir,
            started: Instant::now(),
            helper: Some(helper),
            helper_addr: format!("127.0.0.1:{helper_port}"),
            first_port: free_port()?,
            procs: Vec::new(),
            story,
        };
        for index in 0..run.plan.size as usize {
            let mut args = run.common_args();
            args.extend(["--helper".to_string(), run.helper_addr.clone()]);
            let auto = run.plan.founders_rejoin_when_excluded[index];
            if auto {
                args.push("--rejoin-when-excluded".to_string());
            }
            let what = format!("founder{}", if auto { ", --rejoin-when-excluded" } else { "" });
            let proc = Proc::spawn(&run.dir, index, 0, what, &args)?;
            run.procs.push(proc);
        }
        let first_view = format!("VIEW {}", ranks_text(&(1..=run.plan.size).collect::<Vec<_>>()));
        let deadline = Instant::now() + Duration::from_secs(60);
        for index in 0..run.procs.len() {
            loop {
                let (rank, view) = {
                    let seen = run.procs[index].seen.lock().unwrap_or_else(|e| e.into_inner());
                    (seen.rank, seen.last_view.clone())
                };
                if let (Some(rank), Some(view)) = (rank, view) {
                    if view != first_view {
                        return Err(format!("p{index}: first view {view:?}, not {first_view:?}"));
                    }
                    run.procs[index].rank = rank;
                    break;
                }
                if !run.procs[index].is_running() || Instant::now() > deadline {
                    return Err(format!(
                        "p{index} did not join the group: {}",
                        run.procs[index].log_tail(10)
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let ranks: BTreeSet<u16> = run.procs.iter().map(|p| p.rank).collect();
        if ranks.len() != run.plan.size as usize {
            return Err(format!("ranks handed out: {ranks:?}"));
        }
        // Name the logs by rank now that the ranks are known.
        for proc in &mut run.procs {
            let out = run.dir.join(format!("p{}-rank{}.out", proc.index, proc.rank));
            let err = run.dir.join(format!("p{}-rank{}.err", proc.index, proc.rank));
            if std::fs::rename(&proc.out_path, &out).is_ok() {
                proc.out_path = out;
            }
            if std::fs::rename(&proc.err_path, &err).is_ok() {
                proc.err_path = err;
            }
        }
        for index in 0..run.procs.len() {
            let seed = run.plan.seed;
            run.procs[index].start_load(seed);
        }
        let auto: Vec<String> = run
            .procs
            .iter()
            .filter(|p| p.what.contains("rejoin-when-excluded"))
            .map(|p| p.rank.to_string())
            .collect();
        run.note(format!(
            "formed: N = {}, --failure-timeout-ms {}, --rejoin-when-excluded on ranks [{}]; logs in {}",
            run.plan.size,
            run.plan.failure_timeout_ms,
            auto.join(","),
            run.dir.display()
        ));
        Ok(run)
    }

    /// The index of the process that currently is `rank` in the group: the newest one of that rank
    /// that is running and printed `JOINED`.
    fn current(&mut self, rank: u16) -> Option<usize> {
        (0..self.procs.len())
            .rev()
            .find(|&i| self.procs[i].rank == rank && self.procs[i].joined() > 0 && self.procs[i].is_running())
    }

    fn alive(&mut self) -> Vec<u16> {
        self.alive_procs().into_iter().map(|(rank, _)| rank).collect()
    }

    /// The running ranks with the index of the process running each, in one look: a process may exit
    /// at any moment (excluded, or ending as it comes back), so asking again later may find none.
    fn alive_procs(&mut self) -> Vec<(u16, usize)> {
        (1..=self.plan.size)
            .filter_map(|rank| self.current(rank).map(|index| (rank, index)))
            .collect()
    }

    /// Waits until every running member's last view lists exactly the running ranks, and stays so for
    /// a moment.
    fn wait_settled(&mut self, what: &str) -> Result<(), String> {
        let bound = Duration::from_secs(30) + Duration::from_millis(20 * self.plan.failure_timeout_ms);
        let deadline = Instant::now() + bound;
        let mut since: Option<Instant> = None;
        loop {
            self.check_deadline()?;
            let alive_procs = self.alive_procs();
            let alive: Vec<u16> = alive_procs.iter().map(|(rank, _)| *rank).collect();
            let want = format!("VIEW {}", ranks_text(&alive));
            let views: Vec<(u16, Option<String>)> = alive_procs
                .iter()
                .map(|&(rank, index)| (rank, self.procs[index].last_view()))
                .collect();
            let settled = !alive.is_empty() && views.iter().all(|(_, view)| view.as_deref() == Some(want.as_str()));
            if settled {
                let since = *since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(300) {
                    return Ok(());
                }
            } else {
                since = None;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{what}: the group did not settle within {bound:?}: running ranks {alive:?}, their last views {views:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The fault a step's draws mean in the group's current state: never one that leaves fewer than a
    /// majority of the ranks running.
    fn choose(&mut self, step: &Step) -> Fault {
        let alive = self.alive();
        let dead: Vec<u16> = (1..=self.plan.size).filter(|r| !alive.contains(r)).collect();
        let may_lose_one = alive.len() > self.plan.majority();
        let mut kinds: Vec<(u64, &str)> = vec![(1, "live")];
        if may_lose_one {
            kinds.extend([(2, "kill"), (3, "kill-rejoin"), (1, "kill-two"), (3, "stop")]);
        }
        if !dead.is_empty() {
            kinds.push((3 * dead.len() as u64, "rejoin"));
        }
        let total: u64 = kinds.iter().map(|(w, _)| w).sum();
        let mut roll = step.kind % total;
        let kind = kinds
            .iter()
            .find(|(w, _)| {
                if roll < *w {
                    true
                } else {
                    roll -= w;
                    false
                }
            })
            .map(|(_, k)| *k)
            .expect("a kind");
        let mut extra = Rng::new(step.extra, 7);
        let via = |victim: u16, extra: &mut Rng| {
            let others: Vec<u16> = alive.iter().copied().filter(|&r| r != victim).collect();
            if others.is_empty() || extra.next() % 2 == 0 {
                Via::Helper
            } else {
                Via::Peer(others[(extra.next() % others.len() as u64) as usize])
            }
        };
        let victim = alive[(step.target % alive.len() as u64) as usize];
        let f = self.plan.failure_timeout_ms;
        match kind {
            "kill" => Fault::Kill { rank: victim },
            "kill-rejoin" => {
                let delay_ms = if extra.next() % 3 == 0 {
                    0
                } else {
                    extra.between(0, f / 2)
                };
                let via = via(victim, &mut extra);
                Fault::KillRejoin {
                    rank: victim,
                    delay_ms,
                    via,
                    auto: extra.next() % 2 == 0,
                }
            }
            "kill-two" => Fault::KillTwoRejoins {
                rank: victim,
                via: [via(victim, &mut extra), via(victim, &mut extra)],
            },
            "stop" => Fault::Stop {
                rank: victim,
                pause_ms: extra.between(5 * f / 2, 9 * f / 2),
            },
            "rejoin" => {
                let rank = dead[(step.target % dead.len() as u64) as usize];
                let via = via(rank, &mut extra);
                Fault::Rejoin {
                    rank,
                    via,
                    auto: extra.next() % 2 == 0,
                }
            }
            _ => Fault::RejoinLive {
                rank: victim,
                via: via(victim, &mut extra),
            },
        }
    }

    /// Starts a `--rejoin RANK` process; returns its index.
    fn start_rejoin(&mut self, rank: u16, via: Via, auto: bool, join_timeout_ms: u64) -> Result<usize, String> {
        let mut args = self.common_args();
        args.extend(["--rejoin".to_string(), rank.to_string()]);
        args.extend(["--join-timeout-ms".to_string(), join_timeout_ms.to_string()]);
        match via {
            Via::Helper => args.extend(["--helper".to_string(), self.helper_addr.clone()]),
            Via::Peer(peer) => {
                let index = self.current(peer).ok_or(format!("peer rank {peer} is not running"))?;
                let port = self.procs[index].listening_port().ok_or(format!(
                    "{}: no \"listening on\" line in its log",
                    self.procs[index].name()
                ))?;
                args.extend(["--peer".to_string(), format!("127.0.0.1:{port}")]);
            }
        }
        if auto {
            args.push("--rejoin-when-excluded".to_string());
        }
        let index = self.procs.len();
        let what = format!("rejoin {via}{}", if auto { ", --rejoin-when-excluded" } else { "" });
        let proc = Proc::spawn(&self.dir, index, rank, what, &args)?;
        self.procs.push(proc);
        Ok(index)
    }

    /// Waits until the process at `index` printed `JOINED` (then starts its load) or ended.
    fn wait_joined_or_ended(&mut self, index: usize, bound: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + bound;
        loop {
            self.check_deadline()?;
            if self.procs[index].joined() > 0 {
                let seed = self.plan.seed;
                self.procs[index].start_load(seed);
                return Ok(true);
            }
            if !self.procs[index].is_running() {
                return Ok(false);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} neither joined nor ended within {bound:?}",
                    self.procs[index].name()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn exit_text(&self, index: usize) -> String {
        match self.procs[index].exit {
            Some(status) => status.to_string(),
            None => "running".to_string(),
        }
    }

    fn kill_rank(&mut self, rank: u16) -> Result<(), String> {
        let index = self.current(rank).ok_or(format!("rank {rank} is not running"))?;
        self.procs[index].kill9()
    }

    /// A rejoin that must be admitted.
    fn rejoin(&mut self, rank: u16, via: Via, auto: bool) -> Result<(), String> {
        let timeout = self.plan.join_timeout_ms();
        let index = self.start_rejoin(rank, via, auto, timeout)?;
        let bound = Duration::from_millis(timeout) + EXIT_SLACK;
        if !self.wait_joined_or_ended(index, bound)? {
            return Err(format!(
                "{} ended ({}) without being admitted; its log:\n{}",
                self.procs[index].name(),
                self.exit_text(index),
                self.procs[index].log_tail(15)
            ));
        }
        self.note(format!("  {} joined", self.procs[index].name()));
        Ok(())
    }

    fn apply(&mut self, fault: &Fault) -> Result<(), String> {
        match *fault {
            Fault::Kill { rank } => self.kill_rank(rank),
            Fault::KillRejoin {
                rank,
                delay_ms,
                via,
                auto,
            } => {
                self.kill_rank(rank)?;
                std::thread::sleep(Duration::from_millis(delay_ms));
                self.rejoin(rank, via, auto)
            }
            Fault::KillTwoRejoins { rank, via } => {
                self.kill_rank(rank)?;
                let timeout = self.plan.double_join_timeout_ms();
                let first = self.start_rejoin(rank, via[0], false, timeout)?;
                let second = self.start_rejoin(rank, via[1], false, timeout)?;
                let bound = Duration::from_millis(timeout) + EXIT_SLACK;
                let a = self.wait_joined_or_ended(first, bound)?;
                let b = self.wait_joined_or_ended(second, bound)?;
                // The one that was not admitted gives up after its join timeout.
                for (index, joined) in [(first, a), (second, b)] {
                    if !joined {
                        continue;
                    }
                    let other = if index == first { second } else { first };
                    if self.procs[other].joined() == 0 {
                        let status = self.procs[other].wait_exit(bound)?;
                        if self.procs[other].joined() > 0 || status.success() {
                            return Err(format!(
                                "{}: ended with {status} after joining",
                                self.procs[other].name()
                            ));
                        }
                    }
                }
                let (a, b) = (self.procs[first].joined() > 0, self.procs[second].joined() > 0);
                self.note(format!(
                    "  p{first} {}, p{second} {}",
                    if a {
                        "joined".to_string()
                    } else {
                        format!("gave up ({})", self.exit_text(first))
                    },
                    if b {
                        "joined".to_string()
                    } else {
                        format!("gave up ({})", self.exit_text(second))
                    },
                ));
                match (a, b) {
                    (true, false) | (false, true) => Ok(()),
                    (false, false) => Err(format!(
                        "neither of the two processes for rank {rank} was admitted; logs:\n{}\n---\n{}",
                        self.procs[first].log_tail(12),
                        self.procs[second].log_tail(12)
                    )),
                    (true, true) => Err(format!(
                        "both processes for rank {rank} joined (p{first}: {}, p{second}: {})",
                        self.exit_text(first),
                        self.exit_text(second)
                    )),
                }
            }
            Fault::Stop { rank, pause_ms } => {
                let index = self.current(rank).ok_or(format!("rank {rank} is not running"))?;
                let lives = self.procs[index].joined();
                self.procs[index].signal("STOP")?;
                std::thread::sleep(Duration::from_millis(pause_ms));
                self.procs[index].signal("CONT")?;
                self.wait_settled("after SIGCONT")?;
                let outcome = if !self.procs[index].is_running() {
                    format!("ended ({})", self.exit_text(index))
                } else if self.procs[index].joined() > lives {
                    "came back as a new life".to_string()
                } else {
                    "stayed in the group".to_string()
                };
                self.note(format!("  {}: {outcome}", self.procs[index].name()));
                Ok(())
            }
            Fault::Rejoin { rank, via, auto } => self.rejoin(rank, via, auto),
            Fault::RejoinLive { rank, via } => {
                let live = self.current(rank).ok_or(format!("rank {rank} is not running"))?;
                let before: Vec<(usize, usize, usize)> = self
                    .alive_procs()
                    .into_iter()
                    .map(|(_, i)| (i, self.procs[i].views(), self.procs[i].joined()))
                    .collect();
                let timeout = self.plan.live_join_timeout_ms();
                let index = self.start_rejoin(rank, via, false, timeout)?;
                let status = self.procs[index].wait_exit(Duration::from_millis(timeout) + EXIT_SLACK)?;
                self.note(format!("  {}: refused, {status}", self.procs[index].name()));
                if status.success() || self.procs[index].joined() > 0 {
                    return Err(format!(
                        "{} was not refused while rank {rank} lives ({status}); its log:\n{}",
                        self.procs[index].name(),
                        self.procs[index].log_tail(15)
                    ));
                }
                if self.current(rank) != Some(live) {
                    return Err(format!(
                        "the live process of rank {rank} is gone after a refused rejoin"
                    ));
                }
                for (i, views, joined) in before {
                    let (now_views, now_joined) = (self.procs[i].views(), self.procs[i].joined());
                    if now_views != views || now_joined != joined {
                        return Err(format!(
                            "{} changed its view during a refused rejoin of live rank {rank}: {} views then, {} now (last {:?})",
                            self.procs[i].name(),
                            views,
                            now_views,
                            self.procs[i].last_view()
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// The end of a run: marker lines from every survivor, delivered by every survivor; then a clean
    /// leave of each, and every line written to a single-life survivor delivered.
    fn finish(&mut self) -> Result<(), String> {
        self.wait_settled("before the final lines")?;
        let alive_procs = self.alive_procs();
        let alive: Vec<u16> = alive_procs.iter().map(|(rank, _)| *rank).collect();
        let survivors: Vec<usize> = alive_procs.into_iter().map(|(_, index)| index).collect();
        let mut markers = Vec::new();
        for &index in &survivors {
            let proc = &self.procs[index];
            let tags: Vec<String> = (1..=MARKERS)
                .map(|k| format!("m{}.{}.{k}", proc.rank, proc.index))
                .collect();
            markers.extend(tags.iter().cloned());
            proc.order(Order::Markers(tags));
        }
        self.note(format!("final lines from ranks {alive:?}"));
        let bound = Duration::from_secs(30) + Duration::from_millis(20 * self.plan.failure_timeout_ms);
        let deadline = Instant::now() + bound;
        for &index in &survivors {
            loop {
                self.check_deadline()?;
                let delivered: HashSet<String> = self.procs[index].delivered().into_iter().collect();
                let missing: Vec<&String> = markers.iter().filter(|m| !delivered.contains(*m)).collect();
                if missing.is_empty() {
                    break;
                }
                if !self.procs[index].is_running() || Instant::now() > deadline {
                    return Err(format!(
                        "liveness: {} ({}) did not deliver {missing:?}, multicast after the last fault",
                        self.procs[index].name(),
                        self.exit_text(index)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // How the survivors end (CHAOS_LEAVE): by default each closes its stdin and must leave cleanly,
        // one after the other, the last one too; `together` closes every stdin at once; `kill-last`
        // kills the last one once it delivered every line written to it.
        let leave = std::env::var("CHAOS_LEAVE").unwrap_or_default();
        let (together, last_leaves) = match leave.as_str() {
            "together" => (true, true),
            "kill-last" => (false, false),
            _ => (false, true),
        };
        self.note(format!(
            "every survivor delivered every final line; closing their stdin {}",
            match (together, last_leaves) {
                (true, _) => "all at once",
                (false, true) => "one after the other",
                _ => "one after the other but the last, which is killed",
            }
        ));
        if together {
            for &index in &survivors {
                self.procs[index].order(Order::Close);
            }
        }
        for (position, &index) in survivors.iter().enumerate() {
            let last = position + 1 == survivors.len();
            if last && !last_leaves {
                self.wait_own_lines_delivered(index)?;
                self.procs[index].kill9()?;
                continue;
            }
            self.procs[index].order(Order::Close);
            let status = self.procs[index].wait_exit(EXIT_SLACK)?;
            if status.code() != Some(0) {
                return Err(format!(
                    "{} exited with {status} after its stdin closed, not 0; its log:\n{}",
                    self.procs[index].name(),
                    self.procs[index].log_tail(15)
                ));
            }
            if let Some(writer) = self.procs[index].writer.take() {
                let _ = writer.join();
            }
            let proc = &self.procs[index];
            if proc.joined() == 1 {
                if let Some(lost) = proc.undelivered_own_line() {
                    return Err(format!(
                        "{} left cleanly, but {lost:?} (of {} lines written to it) was never delivered",
                        proc.name(),
                        proc.written.lock().unwrap_or_else(|e| e.into_inner()).len()
                    ));
                }
            }
        }
        // Whatever still runs (nothing should) is killed before the logs are checked.
        for index in 0..self.procs.len() {
            if self.procs[index].is_running() {
                let name = self.procs[index].name();
                self.procs[index].kill9()?;
                return Err(format!("{name} was still running at the end"));
            }
        }
        Ok(())
    }

    /// Waits until the process at `index` (holding its stdin open, no longer writing) delivered every
    /// line written to it, if it has had one life only.
    fn wait_own_lines_delivered(&mut self, index: usize) -> Result<(), String> {
        let deadline = Instant::now() + EXIT_SLACK;
        while self.procs[index].joined() == 1 {
            let Some(lost) = self.procs[index].undelivered_own_line() else {
                return Ok(());
            };
            if !self.procs[index].is_running() || Instant::now() > deadline {
                return Err(format!(
                    "{} ({}) never delivered {lost:?}, written to it",
                    self.procs[index].name(),
                    self.exit_text(index)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `tom-check` over the stdout of every process of the run.
    fn check_logs(&mut self) -> Result<String, String> {
        for proc in &mut self.procs {
            if let Some(reader) = proc.reader.take() {
                let _ = reader.join();
            }
        }
        let paths: Vec<&PathBuf> = self.procs.iter().map(|p| &p.out_path).collect();
        let output = Command::new(CHECK)
            .args(&paths)
            .output()
            .map_err(|e| format!("run tom-check: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            Ok(text.trim().to_string())
        } else {
            Err(format!(
                "tom-check {} over the {} logs: {}",
                output.status,
                paths.len(),
                text.trim()
            ))
        }
    }

    fn story_of_processes(&self) -> String {
        self.procs
            .iter()
            .map(|p| {
                format!(
                    "  {}: {} lives, {} delivered, {} written, {}; {}",
                    p.name(),
                    p.joined(),
                    p.seen.lock().unwrap_or_else(|e| e.into_inner()).delivered.len(),
                    p.written.lock().unwrap_or_else(|e| e.into_inner()).len(),
                    p.exit.map_or("running".to_string(), |s| s.to_string()),
                    p.out_path.display()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One seed, start to end.
fn run_seed(plan: Plan, dir: PathBuf, story: Arc<Mutex<Vec<String>>>) -> Result<String, String> {
    let mut run = Run::form(plan, dir, story)?;
    let result = (|| {
        let steps = run.plan.steps.clone();
        for (number, step) in steps.iter().enumerate() {
            std::thread::sleep(Duration::from_millis(step.gap_ms));
            let fault = run.choose(step);
            run.note(format!("step {}/{}: {fault}", number + 1, steps.len()));
            run.apply(&fault)?;
            run.wait_settled(&format!("after step {}", number + 1))?;
            let alive = run.alive();
            run.note(format!("  settled: view {alive:?}"));
        }
        run.finish()?;
        run.check_logs()
    })();
    match &result {
        Ok(summary) => run.note(format!("tom-check: {summary}")),
        Err(_) => {
            let processes = run.story_of_processes();
            run.note(format!("processes:\n{processes}"));
        }
    }
    result
}

fn chaos_root() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map_or(tmp.clone(), Path::to_path_buf).join("chaos")
}

/// Runs one seed; on failure, keeps its logs and returns what to print.
fn one_seed(seed: u64) -> Result<Duration, String> {
    let started = Instant::now();
    let plan = Plan::new(seed);
    let dir = chaos_root().join(format!("seed-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    println!(
        "chaos seed {seed}: N = {}, failure timeout {} ms, {} steps",
        plan.size,
        plan.failure_timeout_ms,
        plan.steps.len()
    );
    let story = Arc::new(Mutex::new(Vec::new()));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run_seed(plan.clone(), dir.clone(), story.clone())));
    let failure = match outcome {
        Ok(Ok(_)) => None,
        Ok(Err(reason)) => Some(reason),
        Err(panic) => Some(format!(
            "panic: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    };
    let story = story.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
    match failure {
        None => {
            let _ = std::fs::remove_dir_all(&dir);
            println!("chaos seed {seed}: passed in {:.1} s", started.elapsed().as_secs_f64());
            Ok(started.elapsed())
        }
        Some(reason) => {
            let report = format!(
                "chaos seed {seed} FAILED: {reason}\n\
                 replay: {}\n\
                 plan: {plan:?}\n\
                 schedule:\n{story}\n\
                 logs kept in {} (pK-rankR.out = stdout of process K, .err = its stderr, helper.err)",
                replay_command(seed),
                dir.display()
            );
            let _ = std::fs::write(dir.join("failure.txt"), &report);
            Err(report)
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}"))
    })
}

#[test]
fn chaos_of_real_processes() {
    let summary_path = chaos_root().join("summary.txt");
    let _ = std::fs::create_dir_all(chaos_root());
    let seeds_started = Instant::now();
    let (first, seconds) = match (env_number("CHAOS_SEED"), env_number("CHAOS_SECONDS")) {
        (Some(seed), _) => (seed, None),
        (None, Some(seconds)) => (env_number("CHAOS_FIRST_SEED").unwrap_or(1), Some(seconds)),
        (None, None) => {
            let clock = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_micros() as u64);
            (1 + clock % 1_000_000, None)
        }
    };
    let mut seed = first;
    let mut passed: BTreeMap<u64, Duration> = BTreeMap::new();
    loop {
        match one_seed(seed) {
            Ok(took) => {
                passed.insert(seed, took);
            }
            Err(report) => {
                let covered = if seed > first {
                    format!("seeds {first}..={} passed, ", seed - 1)
                } else {
                    String::new()
                };
                let line = format!(
                    "chaos: {covered}seed {seed} FAILED after {:.0} s; replay: {}",
                    seeds_started.elapsed().as_secs_f64(),
                    replay_command(seed)
                );
                let _ = std::fs::write(&summary_path, format!("{line}\n"));
                panic!("{report}\n{line}");
            }
        }
        seed += 1;
        match seconds {
            Some(seconds) if seeds_started.elapsed() < Duration::from_secs(seconds) => {}
            _ => break,
        }
    }
    let line = format!(
        "chaos: seeds {first}..={} passed ({} runs in {:.0} s)",
        seed - 1,
        passed.len(),
        seeds_started.elapsed().as_secs_f64()
    );
    println!("{line}");
    let _ = std::fs::write(&summary_path, format!("{line}\n"));
}
