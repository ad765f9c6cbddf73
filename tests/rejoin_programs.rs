//! Rejoin with real processes (issue 7): `tom-member` lives killed with `kill -9` and restarted with
//! `--rejoin RANK` while every member is fed stdin lines, on 127.0.0.1.
//!
//! What must hold, whatever the moment of the crash: every member alive at the end delivers, from its
//! STATE position on, exactly the group's order (a member that never rejoined starts at position 0); no
//! line is delivered twice; every line written to a member that stayed alive is delivered; and the
//! sequence of a killed life agrees with the global order at its positions. A rejoin that cannot work
//! (the rank is still alive; nobody left to ask) ends with a clear error, not a hang.
//!
//! Why a harness of its own: the shared one (`proc_support`) forms a fixed set of members, while these
//! tests need several lives per rank, each with its own stdout, STATE offset and written lines, and a
//! helper that can be stopped. Its free functions (ports, parsing, deadlines) are reused.

mod proc_support;

use std::collections::{BTreeMap, HashSet};

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proc_support::{free_port, parse_delivery, ranks_text, Member, DEADLINE};

/// One stdin line per member per this much: a steady load that keeps the group busy across every crash.
const PACE: Duration = Duration::from_millis(1);

/// How many lines every life must deliver before the next crash (and before the load stops), so that each
/// life takes part under load.
const DELIVERIES_PER_LIFE: usize = 1_000;

/// The join timeout of the rejoins that must fail; the test only bounds them by [`DEADLINE`].
const SHORT_JOIN_TIMEOUT_MS: &str = "3000";

/// The payload of the `number`-th line written to `life` of `rank`: unique in the whole test.
fn payload(rank: u16, life: usize, number: usize) -> String {
    format!("rank {rank} life {life} line {number}")
}

/// One process: a life of a rank (or a rejoin attempt), with its stdout collected by a reader thread and
/// its stderr in a log file.
struct Life {
    /// Which life of its rank: 0 for the member that formed the group, then 1, 2, ...
    life: usize,
    /// The process (its `rank`: known in advance for a rejoin, from `JOINED` for a first-view member).
    proc: Member,
    /// The load writer and the lines it handed to the pipe, in order.
    feeder: Option<JoinHandle<()>>,
    written: Arc<Mutex<Vec<String>>>,
}

impl Life {
    fn spawn(log: PathBuf, args: &[String], rank: u16, life: usize) -> Life {
        Life {
            life,
            proc: Member::spawn(args, log, rank, life),
            feeder: None,
            written: Arc::default(),
        }
    }

    fn rank(&self) -> u16 {
        self.proc.rank
    }

    fn name(&self) -> String {
        format!("rank {} life {}", self.rank(), self.life)
    }

    fn lines(&self) -> Vec<String> {
        self.proc.lines()
    }

    fn delivers(&self) -> Vec<String> {
        self.proc.delivers()
    }

    fn written(&self) -> Vec<String> {
        self.written.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many messages the group delivered before this life's first delivery: its `STATE` line, or 0
    /// for a member of the first view.
    fn state_position(&self) -> usize {
        match self.lines().first().and_then(|line| line.strip_prefix("STATE ")) {
            Some(position) => position.parse().expect("STATE <position>"),
            None => 0,
        }
    }

    /// The global position just after its last delivery.
    fn end_position(&self) -> usize {
        self.state_position() + self.proc.deliver_count()
    }

    /// How many stdout lines it printed so far: a mark to wait for lines printed after it.
    fn mark(&self) -> usize {
        self.lines().len()
    }

    fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Waits until `done` holds for its stdout lines; panics after [`DEADLINE`], or as soon as its stdout
    /// ended without it (the process exited: waiting longer would only delay the failure), naming `what`.
    fn wait_until(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            // Read before looking at the lines: once the reader ended, the lines are complete.
            let stdout_ended = self.proc.stdout_closed();
            let lines = self.lines();
            if done(&lines) {
                return;
            }
            let tail = &lines[lines.len().saturating_sub(5)..];
            assert!(
                !stdout_ended,
                "{}: stdout ended without {what}; last lines {tail:#?}",
                self.name()
            );
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {DEADLINE:?}; last lines {tail:#?}",
                self.name()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for `line` among the lines printed from `mark` on.
    fn wait_for_line_after(&self, line: &str, mark: usize) {
        self.wait_until(&format!("{line:?} after line {mark}"), |lines| {
            lines.iter().skip(mark).any(|l| l == line)
        });
    }

    /// Waits up to [`DEADLINE`] for the process to exit; returns its exit status.
    fn wait_exit(&mut self) -> ExitStatus {
        self.proc.wait_exit(DEADLINE);
        self.proc.exit_status().expect("exit status")
    }

    fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// The port it listens on, from its log line "listening on 0.0.0.0:PORT".
    fn listening_port(&self) -> u16 {
        self.proc.listening_port()
    }
}

/// A helper and every life started in one test; everything still running is killed and reaped on drop.
struct Group {
    name: String,
    dir: PathBuf,
    size: u16,
    helper: Option<Child>,
    helper_addr: String,
    helper_log: PathBuf,
    /// The first port every member probes upward from.
    first_port: u16,
    /// Every life ever started, in start order.
    lives: Vec<Life>,
    stop_load: Arc<AtomicBool>,
    /// Arguments every member gets, after the common ones.
    extra_args: Vec<String>,
}

impl Group {
    /// Starts a helper and `size` members; waits until each printed `JOINED` and the first view.
    fn form(name: &str, size: u16) -> Group {
        Group::form_with(name, size, &[])
    }

    /// Like [`Group::form`], with `extra_args` for every member (the ones started later too).
    fn form_with(name: &str, size: u16, extra_args: &[&str]) -> Group {
        let dir = proc_support::fresh_log_dir(name);
        let (helper, helper_port, helper_log) = proc_support::spawn_helper(size, &dir);
        let mut group = Group {
            name: name.to_string(),
            dir,
            size,
            helper: Some(helper),
            helper_addr: format!("127.0.0.1:{helper_port}"),
            helper_log,
            first_port: free_port(),
            lives: Vec::new(),
            stop_load: Arc::new(AtomicBool::new(false)),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        for index in 0..size as usize {
            let log = group.dir.join(format!("formed{index}.log"));
            let args = group.member_args(&["--helper", &group.helper_addr.clone()]);
            group.lives.push(Life::spawn(log, &args, 0, 0));
        }
        let first_view = format!("VIEW {}", ranks_text(1..=size));
        for life in &mut group.lives {
            life.wait_until("JOINED line", |lines| lines.iter().any(|l| l.starts_with("JOINED ")));
            let joined = life
                .lines()
                .into_iter()
                .find(|l| l.starts_with("JOINED "))
                .expect("JOINED");
            life.proc.rank = joined
                .split(' ')
                .nth(1)
                .and_then(|rank| rank.parse().ok())
                .expect("JOINED <rank>");
            assert_eq!(joined, format!("JOINED {} {size}", life.rank()));
            life.wait_for_line_after(&first_view, 0);
        }
        let mut ranks: Vec<u16> = group.lives.iter().map(Life::rank).collect();
        ranks.sort_unstable();
        assert_eq!(ranks, (1..=size).collect::<Vec<_>>(), "ranks 1..=N, each once");
        println!("group {name}: {size} members formed; logs in {}", group.dir.display());
        group
    }

    /// A member's arguments: 127.0.0.1, the shared first port, then `extra`.
    fn member_args(&self, extra: &[&str]) -> Vec<String> {
        let common = ["--host", "127.0.0.1", "--port", &self.first_port.to_string()].map(String::from);
        common
            .into_iter()
            .chain(self.extra_args.iter().cloned())
            .chain(extra.iter().map(|arg| arg.to_string()))
            .collect()
    }

    /// The index in `lives` of the newest life of `rank`.
    fn newest(&self, rank: u16) -> usize {
        self.lives
            .iter()
            .rposition(|life| life.rank() == rank)
            .expect("a life of that rank")
    }

    fn current(&self, rank: u16) -> &Life {
        &self.lives[self.newest(rank)]
    }

    /// Starts feeding stdin lines to the life at `index`, one every [`PACE`], until the load stops or
    /// the pipe breaks (the process died). A line counts as written once the pipe took it.
    fn feed(&mut self, index: usize) {
        let life = &mut self.lives[index];
        let mut stdin = life.proc.take_stdin().expect("stdin still open");
        let (rank, life_number, written, stop) = (life.rank(), life.life, life.written.clone(), self.stop_load.clone());
        life.feeder = Some(std::thread::spawn(move || {
            for number in 1.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let line = payload(rank, life_number, number);
                if stdin.write_all(format!("{line}\n").as_bytes()).is_err() {
                    break;
                }
                written.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                std::thread::sleep(PACE);
            }
        }));
    }

    fn feed_everyone(&mut self) {
        for index in 0..self.lives.len() {
            self.feed(index);
        }
    }

    /// `kill -9` the newest lives of `ranks` with one `kill` command (so at the same moment), then reaps
    /// them.
    fn kill9(&mut self, ranks: &[u16]) {
        let indices: Vec<usize> = ranks.iter().map(|&rank| self.newest(rank)).collect();
        self.kill9_lives(&indices);
    }

    /// `kill -9` the lives at `indices` in `lives` at the same moment, then reaps them.
    fn kill9_lives(&mut self, indices: &[usize]) {
        let pids: Vec<String> = indices
            .iter()
            .map(|&index| self.lives[index].proc.pid().to_string())
            .collect();
        let status = Command::new("kill")
            .args(["-s", "KILL"])
            .args(&pids)
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s KILL {pids:?} failed");
        for &index in indices {
            let life = &mut self.lives[index];
            life.proc.reap();
            if let Some(feeder) = life.feeder.take() {
                feeder.join().expect("feeder thread");
            }
            println!("group {}: killed {}", self.name, life.name());
        }
    }

    fn stop_helper(&mut self) {
        let mut helper = self.helper.take().expect("the helper is running");
        let _ = helper.kill();
        let _ = helper.wait();
        println!("group {}: helper stopped", self.name);
    }

    /// Starts a new life of `rank` with `--rejoin RANK` and `finding` (how it finds the group); returns
    /// its index in `lives`.
    fn start_rejoin(&mut self, rank: u16, finding: &[&str]) -> usize {
        let life = self.lives.iter().filter(|life| life.rank() == rank).count();
        let log = self.dir.join(format!("rank{rank}-life{life}.log"));
        let args = self.member_args(&[&["--rejoin", &rank.to_string()], finding].concat());
        self.lives.push(Life::spawn(log, &args, rank, life));
        self.lives.len() - 1
    }

    /// The ranks whose newest life is still running.
    fn alive_ranks(&mut self) -> Vec<u16> {
        let mut ranks: Vec<u16> = Vec::new();
        for rank in 1..=self.size {
            let newest = self.newest(rank);
            if self.lives[newest].is_running() {
                ranks.push(rank);
            }
        }
        ranks
    }

    /// Waits until the newest life of every rank delivered [`DELIVERIES_PER_LIFE`] lines.
    fn let_every_life_deliver(&self) {
        for rank in 1..=self.size {
            self.current(rank).wait_until("deliveries under load", |lines| {
                lines.iter().filter(|line| line.starts_with("DELIVER ")).count() >= DELIVERIES_PER_LIFE
            });
        }
    }

    /// One crash-and-return round: once every life delivered under load, kills `victims` at once, waits
    /// until the survivors installed a view without them, restarts them all with `--rejoin` (`finding`
    /// says how each finds the group), and waits for their `JOINED` and for everyone's view with them.
    fn crash_and_rejoin(&mut self, victims: &[u16], finding: impl Fn(&Group) -> Vec<String>) {
        self.let_every_life_deliver();
        let survivors: Vec<u16> = (1..=self.size).filter(|rank| !victims.contains(rank)).collect();
        let marks: Vec<usize> = survivors.iter().map(|&rank| self.current(rank).mark()).collect();
        self.kill9(victims);
        let view_without = format!("VIEW {}", ranks_text(survivors.iter().copied()));
        for (&rank, &mark) in survivors.iter().zip(&marks) {
            self.current(rank).wait_for_line_after(&view_without, mark);
        }

        let marks: Vec<usize> = survivors.iter().map(|&rank| self.current(rank).mark()).collect();
        let finding = finding(self);
        let finding: Vec<&str> = finding.iter().map(String::as_str).collect();
        // Every victim is restarted before any is waited for: the rejoins overlap.
        let returning: Vec<usize> = victims.iter().map(|&rank| self.start_rejoin(rank, &finding)).collect();
        for &index in &returning {
            let life = &self.lives[index];
            let joined = format!("JOINED {} {}", life.rank(), self.size);
            life.wait_until("JOINED line", |lines| lines.contains(&joined));
            let lines = life.lines();
            assert!(
                lines[0].starts_with("STATE "),
                "{}: first line {:?}, not STATE",
                life.name(),
                lines[0]
            );
            assert_eq!(lines[1], joined, "{}: STATE, then JOINED", life.name());
            println!("group {}: {} joined at {}", self.name, life.name(), lines[0]);
            self.feed(index);
        }
        let full_view = format!("VIEW {}", ranks_text(1..=self.size));
        for (&rank, &mark) in survivors.iter().zip(&marks) {
            self.current(rank).wait_for_line_after(&full_view, mark);
        }
        for &index in &returning {
            self.lives[index].wait_for_line_after(&full_view, 0);
        }
    }

    /// Once every life delivered under load, stops the load and waits until every running life has
    /// delivered up to the same global position and stays there: nothing is left in flight.
    fn stop_load_and_settle(&mut self) {
        self.let_every_life_deliver();
        self.stop_load.store(true, Ordering::SeqCst);
        for life in &mut self.lives {
            if let Some(feeder) = life.feeder.take() {
                feeder.join().expect("feeder thread");
            }
        }
        let alive = self.alive_ranks();
        proc_support::wait_until_stable(&format!("end positions of ranks {alive:?}"), || {
            alive.iter().map(|&rank| self.current(rank).end_position()).collect()
        });
    }

    /// The checks of the module doc, over every life of the test.
    fn check_histories(&mut self) {
        let alive = self.alive_ranks();
        // The global order as the lives printed it: a life's k-th DELIVER line is at STATE + k.
        let mut order: BTreeMap<usize, (String, String)> = BTreeMap::new();
        for life in &self.lives {
            let start = life.state_position();
            for (k, line) in life.delivers().into_iter().enumerate() {
                let position = start + k + 1;
                match order.get(&position) {
                    None => {
                        order.insert(position, (line, life.name()));
                    }
                    Some((first, by)) => assert!(
                        *first == line,
                        "position {position}: {by} delivered {first:?}, {} delivered {line:?}",
                        life.name()
                    ),
                }
            }
            println!("{}: positions {}..={}", life.name(), start + 1, life.end_position());
        }
        let length = order.len();
        assert_eq!(
            order.keys().last().copied().unwrap_or(0),
            length,
            "the global order has a gap"
        );
        for &rank in &alive {
            let life = self.current(rank);
            assert_eq!(
                life.end_position(),
                length,
                "{} stopped short of the group's order",
                life.name()
            );
        }

        let mut payloads = HashSet::new();
        let mut origins = BTreeMap::new();
        for (line, _) in order.values() {
            let delivery = parse_delivery(line).unwrap_or_else(|| panic!("malformed DELIVER line {line:?}"));
            assert!(
                payloads.insert(delivery.payload),
                "{:?} delivered twice",
                delivery.payload
            );
            origins.insert(delivery.payload, delivery.origin);
        }
        // Each life's lines come in the order written, from its rank: all of them if it is still alive,
        // a prefix if it was killed (the pipe may have held lines it never read).
        for life in &mut self.lives {
            let written = life.written();
            let own = format!("rank {} life {} line ", life.rank(), life.life);
            let delivered: Vec<&str> = order
                .values()
                .filter_map(|(line, _)| parse_delivery(line))
                .filter(|delivery| delivery.payload.starts_with(&own))
                .map(|delivery| delivery.payload)
                .collect();
            for payload in &delivered {
                assert_eq!(
                    origins[payload],
                    life.rank(),
                    "{payload:?} delivered with another origin"
                );
            }
            let prefix = &written[..delivered.len().min(written.len())];
            assert_eq!(
                delivered,
                prefix,
                "{}: its lines not delivered in writing order",
                life.name()
            );
            if life.is_running() {
                assert_eq!(
                    delivered.len(),
                    written.len(),
                    "{}: lines written to it never delivered",
                    life.name()
                );
            }
        }
        println!(
            "group {}: {length} messages in the global order; alive ranks {alive:?}",
            self.name
        );
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop_load.store(true, Ordering::SeqCst);
        // A life that ended by itself keeps its exit status for the report below; the others are killed,
        // which breaks their pipes and so ends any feeder blocked on a full one.
        for life in &mut self.lives {
            life.proc.kill_if_running();
        }
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- group {}: helper log tail:\n{}",
                self.name,
                proc_support::tail_of(&self.helper_log, 10)
            );
            for life in &self.lives {
                eprintln!(
                    "--- group {}: {}, {} stdout lines, {}; stderr tail:\n{}",
                    self.name,
                    life.name(),
                    life.mark(),
                    life.proc
                        .exit_status()
                        .map_or("running until the end".to_string(), |status| status.to_string()),
                    life.proc.log_tail(25)
                );
            }
        }
    }
}

/// Through the helper, as a restarted process of a lab would.
fn through_the_helper(group: &Group) -> Vec<String> {
    vec!["--helper".to_string(), group.helper_addr.clone()]
}

#[test]
fn under_load_a_member_killed_three_times_rejoins_each_time_with_the_groups_order() {
    let mut group = Group::form("three_rejoins", 4);
    group.feed_everyone();
    // Rank 1 is the coordinator: its death also moves the coordination, and its return brings it back.
    for _ in 0..3 {
        group.crash_and_rejoin(&[1], through_the_helper);
    }
    group.stop_load_and_settle();
    group.check_histories();
}

#[test]
fn under_load_two_members_killed_at_once_rejoin_concurrently() {
    // Five members, so that the three left are a quorum of the view they replace.
    let mut group = Group::form("two_at_once", 5);
    group.feed_everyone();
    group.crash_and_rejoin(&[2, 4], through_the_helper);
    group.stop_load_and_settle();
    group.check_histories();
}

/// Two ranks come back one after the other while the first one's new process is kept waiting: rank 4's
/// new process asks while its old life is still alive (refused; it keeps asking) and finds only rank
/// 2's dead address; rank 2's new process then finds the old 4 (the helper records the new 4's address
/// only once it is admitted), and is admitted by a view that still lists 4's old life. When the old 4
/// dies and the group admits the new 4, neither new process dialled the other: the new 4, once
/// admitted, learns the new 2's address from the helper and dials it, and what the new 2 sent it
/// before that link was up is kept for it, not lost.
#[test]
fn a_rank_that_rejoins_while_another_ranks_new_process_waits_gets_linked_to_it() {
    // A long failure timeout: only the kills, never silence, change the views here.
    let mut group = Group::form_with("linked_rejoiners", 4, &["--failure-timeout-ms", "5000"]);
    group.feed_everyone();
    group.let_every_life_deliver();
    let marks: Vec<usize> = [1, 3, 4].iter().map(|&rank| group.current(rank).mark()).collect();
    group.kill9(&[2]);
    for (&rank, &mark) in [1, 3, 4].iter().zip(&marks) {
        group.current(rank).wait_for_line_after("VIEW 1,3,4", mark);
    }

    let old_4 = group.newest(4);
    let helper = through_the_helper(&group);
    let waiting: Vec<&str> = helper
        .iter()
        .map(String::as_str)
        .chain(["--join-timeout-ms", "60000"])
        .collect();
    let new_4 = group.start_rejoin(4, &waiting);
    let deadline = Instant::now() + DEADLINE;
    while !group.lives[new_4].log_text().contains("does not admit us yet") {
        assert!(
            Instant::now() < deadline,
            "rank 4's new process was never refused while the old one lived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let helper: Vec<&str> = helper.iter().map(String::as_str).collect();
    let new_2 = group.start_rejoin(2, &helper);
    group.lives[new_2].wait_until("JOINED line", |lines| lines.iter().any(|l| l == "JOINED 2 4"));
    group.feed(new_2);
    // Before the old 4 could suspect rank 2 (it has no connection to it: nobody dialled it).
    group.kill9_lives(&[old_4]);
    group.lives[new_4].wait_until("JOINED line", |lines| lines.iter().any(|l| l == "JOINED 4 4"));
    group.feed(new_4);
    for rank in 1..=4 {
        group.current(rank).wait_until("the view of all four", |lines| {
            lines.iter().any(|l| l == "VIEW 1,2,3,4")
        });
    }
    group.stop_load_and_settle();
    group.check_histories();
    // The only suspicion either new process may have had is of the old 4 it was linked to (the
    // roster names admitted lives only, so the new 2 found the old 4, not the new 4's unadmitted
    // address): never one of a life left unlinked.
    for life in [new_2, new_4] {
        let log = group.lives[life].log_text();
        let suspicions: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("suspecting it") && !line.contains(" 4#1 "))
            .collect();
        assert!(
            suspicions.is_empty(),
            "{}: suspected {suspicions:?}:\n{log}",
            group.lives[life].name()
        );
    }
}

#[test]
fn with_the_helper_gone_members_rejoin_through_a_peer() {
    let mut group = Group::form("through_a_peer", 4);
    group.feed_everyone();
    group.stop_helper();
    // First with the same command line as before plus --peer (the dead helper must not block it)...
    group.crash_and_rejoin(&[4], |group| {
        let peer = format!("127.0.0.1:{}", group.current(1).listening_port());
        [&through_the_helper(group)[..], &["--peer".to_string(), peer]].concat()
    });
    // ...then with --peer alone, naming the life that just came back (on whatever port it found free):
    // its view of the group must be current.
    group.crash_and_rejoin(&[2], |group| {
        vec![
            "--peer".to_string(),
            format!("127.0.0.1:{}", group.current(4).listening_port()),
        ]
    });
    group.stop_load_and_settle();
    group.check_histories();
}

/// Asserts that the life at `index` exits non-zero without printing `JOINED`, with an error log line
/// containing every one of `words`; prints how long it took.
fn assert_fails_clearly(group: &mut Group, index: usize, words: &[&str]) {
    let started = Instant::now();
    let life = &mut group.lives[index];
    let status = life.wait_exit();
    println!("{}: exited with {status} after {:?}", life.name(), started.elapsed());
    assert!(
        !status.success() && status.code().is_some(),
        "{}: exit {status}, expected an error exit",
        life.name()
    );
    assert!(
        !life.lines().iter().any(|line| line.starts_with("JOINED ")),
        "{} joined",
        life.name()
    );
    let log = life.log_text();
    let errors: Vec<&str> = log.lines().filter(|line| line.contains(" ERROR ")).collect();
    assert!(
        errors.iter().any(|line| words.iter().all(|word| line.contains(word))),
        "{}: no error line naming {words:?}; its log:\n{log}",
        life.name()
    );
}

#[test]
fn rejoining_as_a_rank_that_is_still_alive_fails_with_a_clear_error() {
    let mut group = Group::form("still_alive", 3);
    let helper = through_the_helper(&group);
    let index = group.start_rejoin(2, &[&helper[0], &helper[1], "--join-timeout-ms", SHORT_JOIN_TIMEOUT_MS]);
    assert_fails_clearly(&mut group, index, &["alive"]);
    // The group did not notice: its members still run, and none installed another view.
    for life in group.lives.iter_mut().filter(|life| life.life == 0) {
        assert!(life.is_running(), "{} ended", life.name());
        let views = life
            .lines()
            .into_iter()
            .filter(|line| line.starts_with("VIEW "))
            .count();
        assert_eq!(views, 1, "{} installed another view", life.name());
    }
}

/// Issue 16: a refused rejoin leaves every roster as it was. `--rejoin 2` while 2 lives is refused; the
/// helper must not have recorded that process's address for rank 2, nor the members in their
/// directories, so that when 3 later crashes and rejoins through the helper it reaches every member, 2
/// included, and no healthy member is excluded for want of a connection.
#[test]
fn a_refused_rejoin_leaves_the_roster_intact_and_the_next_rejoin_reaches_every_member() {
    let mut group = Group::form("refused_then_rejoin", 4);
    group.feed_everyone();
    group.let_every_life_deliver();
    let helper = through_the_helper(&group);
    let refused = group.start_rejoin(2, &[&helper[0], &helper[1], "--join-timeout-ms", SHORT_JOIN_TIMEOUT_MS]);
    assert_fails_clearly(&mut group, refused, &["alive"]);
    // It never was a life of rank 2: the founder stays rank 2's newest life for the rest of the test.
    assert_eq!(refused, group.lives.len() - 1);
    group.lives.pop();

    group.crash_and_rejoin(&[3], through_the_helper);
    let new_3 = group.newest(3);
    let log = group.lives[new_3].log_text();
    for life in ["1#1", "2#1", "4#1"] {
        assert!(
            log.contains(&format!("answered as life {life} ")),
            "rank 3's new process did not reach {life}:\n{log}"
        );
    }
    group.stop_load_and_settle();
    group.check_histories();
    // Nobody healthy was excluded: the founders of 1, 2 and 4 run on, and every view they installed
    // lists all three.
    for life in group.lives.iter_mut().filter(|life| life.life == 0 && life.rank() != 3) {
        assert!(life.is_running(), "{} ended", life.name());
        for line in life.lines().iter().filter(|line| line.starts_with("VIEW ")) {
            let ranks: Vec<&str> = line["VIEW ".len()..].split(',').collect();
            assert!(
                ["1", "2", "4"].iter().all(|rank| ranks.contains(rank)),
                "{}: {line}",
                life.name()
            );
        }
    }
}

#[test]
fn rejoining_when_the_helper_and_every_member_are_gone_fails_naming_what_it_could_not_reach() {
    let mut group = Group::form("all_gone", 3);
    let peer = format!("127.0.0.1:{}", group.current(1).listening_port());
    group.stop_helper();
    group.kill9(&[1, 2, 3]);
    // A first port of its own: on the shared one it could take the dead peer's port and dial itself.
    let own_port = free_port().to_string();
    let args = [
        "--peer",
        &peer,
        "--port",
        &own_port,
        "--join-timeout-ms",
        SHORT_JOIN_TIMEOUT_MS,
    ];
    let index = group.start_rejoin(2, &args);
    assert_fails_clearly(&mut group, index, &[&peer]);
}

/// Found by the chaos check of real processes (seed 39): a life that came back through a member
/// (`--peer`, no helper) never registered with the helper, so the helper still lists its rank at the
/// dead process's address. A later process rejoining through the helper finds that address dead; it
/// dials the rank again at the address the members that answered list for its newest life, so the two
/// new lives are linked and no healthy member is suspected for having no connection.
#[test]
fn a_rejoin_through_the_helper_reaches_a_life_that_came_back_through_a_peer() {
    let mut group = Group::form("peer_then_helper", 3);
    group.feed_everyone();
    // On a first port of its own: on the shared one it would likely take its dead life's port back,
    // and the helper's stale entry would happen to be right.
    let own_port = free_port().to_string();
    group.crash_and_rejoin(&[3], |group| {
        vec![
            "--peer".to_string(),
            format!("127.0.0.1:{}", group.current(2).listening_port()),
            "--port".to_string(),
            own_port.clone(),
        ]
    });
    group.crash_and_rejoin(&[1], through_the_helper);
    group.stop_load_and_settle();
    for rank in 1..=3 {
        let index = group.newest(rank);
        let log = group.lives[index].log_text();
        let unlinked: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("no connection to rank"))
            .collect();
        assert!(unlinked.is_empty(), "{}: {unlinked:?}", group.lives[index].name());
    }
    group.check_histories();
    let new_1 = group.newest(1);
    let log = group.lives[new_1].log_text();
    // Either while joining (its redial of the ranks it found dead) or once admitted (its dial of a
    // member it has no connection to): both dial the address a member's directory gave, since the
    // helper's entry is the dead one. Which comes first is a race with its admission.
    let through_directory = log.contains("as a member's directory lists it, answered")
        || log
            .lines()
            .any(|line| line.contains("dialled 3#") && line.contains("which it had no connection to"));
    assert!(
        through_directory,
        "the new 1 reached the new 3, but not through a member's directory:\n{log}"
    );
}
