//! Big payloads through a view change, on real processes (a `tom-helper` and three `tom-member`s on
//! 127.0.0.1).
//!
//! The reproduction of the issue: three members multicast 128 KiB lines; one is paused (`kill -STOP`)
//! for longer than the failure timeout, so its acknowledgements stop and the others' windows fill with
//! undelivered messages, and then it is killed with `kill -9`. A view change that moved the whole cut
//! in one `Decide` (two windows of 1,024 messages of 128 KiB: 256 MiB) was refused by the receiving
//! side ("connection to 2 lost (length 268468290 exceeds the maximum of 67108864)"), and both
//! survivors stopped for lack of quorum. Now the view change names the cut by reference and moves the
//! payloads in bounded chunks: both survivors must install a view without the paused member, deliver
//! the cut, keep delivering what they send afterwards, and print histories that pass `tom-check`.

mod proc_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proc_support::{assert_identical, assert_logs_pass_check, parse_delivery, Lab, Member, DEADLINE};
use tom::{formation, runtime, wire};

/// Bytes of one stdin line (the payload), as in the issue.
const LINE_BYTES: usize = 128 * 1024;

/// Failure timeout of every member: long enough for the survivors to fill their windows while the
/// paused member is still only silent, not yet suspected.
const FAILURE_TIMEOUT_MS: u64 = 4_000;

/// How long the paused member stays stopped before it is killed: past the failure timeout.
const PAUSE: Duration = Duration::from_millis(FAILURE_TIMEOUT_MS + 2_000);

/// Lines each member multicasts while all three are running.
const WARMUP_LINES: usize = 16;

/// Lines each member multicasts after the view change, which both survivors must deliver.
const LATER_LINES: usize = 16;

/// The paused member.
const PAUSED: u16 = 2;

/// The survivors.
const SURVIVORS: [u16; 2] = [1, 3];

/// `tom-member`'s window: the runtime's default (the program has no option for it).
fn window() -> usize {
    runtime::RuntimeConfig::new(formation::FormationConfig::new("127.0.0.1:1".to_string())).window
}

/// Lines each survivor multicasts while the paused member is stopped: more than its window, so the
/// window fills (the rest wait in the program's input queue and the pipe).
fn paused_lines() -> usize {
    window() + 64
}

/// The `number`-th line of `rank`: a readable head, padded to [`LINE_BYTES`] with a filler that depends
/// on both, so a payload mixed up with another one shows.
fn big_line(rank: u16, number: usize) -> Vec<u8> {
    let mut line = format!("big {rank} {number} ").into_bytes();
    let filler = b'a' + ((usize::from(rank) * 7 + number) % 26) as u8;
    line.resize(LINE_BYTES, filler);
    line
}

/// `(rank, number)` of a payload made by [`big_line`], after checking that the payload is exactly that.
fn big_line_id(payload: &str) -> Option<(u16, usize)> {
    let mut fields = payload.splitn(4, ' ');
    if fields.next()? != "big" {
        return None;
    }
    let rank = fields.next()?.parse().ok()?;
    let number = fields.next()?.parse().ok()?;
    (payload.as_bytes() == big_line(rank, number).as_slice()).then_some((rank, number))
}

/// A thread that owns one member's stdin and writes the ranges of lines it is sent, counting them.
struct Writer {
    rank: u16,
    ranges: mpsc::Sender<std::ops::Range<usize>>,
    written: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl Writer {
    fn start(member: &mut Member) -> Writer {
        let rank = member.rank;
        let mut stdin = member.take_stdin().expect("stdin still open");
        let (ranges, received) = mpsc::channel::<std::ops::Range<usize>>();
        let written = Arc::new(AtomicUsize::new(0));
        let count = written.clone();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            for range in received {
                for number in range {
                    let mut line = big_line(rank, number);
                    line.push(b'\n');
                    // A killed member breaks its pipe: the writer just ends.
                    if stdin.write_all(&line).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Writer {
            rank,
            ranges,
            written,
            thread,
        }
    }

    /// Queues lines `range` (numbered from 1 across the test).
    fn write(&self, range: std::ops::Range<usize>) {
        self.ranges.send(range).expect("writer thread running");
    }

    fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }

    /// Waits until `count` lines went into the pipe; panics after [`DEADLINE`].
    fn wait_written(&self, count: usize) {
        let deadline = Instant::now() + DEADLINE;
        while self.written() < count {
            assert!(
                Instant::now() < deadline,
                "rank {}: only {} of {count} lines taken by its stdin within {DEADLINE:?}",
                self.rank,
                self.written()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the stdin once everything queued is written (or the member is gone).
    fn finish(self) {
        drop(self.ranges);
        self.thread.join().expect("writer thread");
    }
}

/// Checks every DELIVER line of `member` and returns, per origin rank, the numbers of the lines it
/// delivered, in delivery order.
fn delivered_numbers(member: &Member) -> [Vec<usize>; 4] {
    let mut numbers: [Vec<usize>; 4] = Default::default();
    for line in member.delivers() {
        let delivery = parse_delivery(&line).expect("a DELIVER line");
        let (rank, number) = big_line_id(delivery.payload).unwrap_or_else(|| {
            panic!(
                "rank {}: a payload no writer wrote: {:.60}",
                member.rank, delivery.payload
            )
        });
        assert_eq!(
            rank, delivery.origin,
            "rank {}: line of {rank} delivered as from {}",
            member.rank, delivery.origin
        );
        numbers[usize::from(rank)].push(number);
    }
    numbers
}

/// DELIVER lines printed before the first VIEW line without the paused member.
fn delivers_before_view_change(member: &Member) -> usize {
    let after = format!("VIEW {},{}", SURVIVORS[0], SURVIVORS[1]);
    member
        .lines()
        .iter()
        .take_while(|line| **line != after)
        .filter(|line| line.starts_with("DELIVER "))
        .count()
}

#[test]
fn survivors_of_a_paused_then_killed_member_carry_full_windows_of_big_payloads() {
    let started = Instant::now();
    let timeout = FAILURE_TIMEOUT_MS.to_string();
    let mut lab = Lab::start("big_payloads", 3, &["--failure-timeout-ms", &timeout]);
    let window = window();
    let paused_lines = paused_lines();
    println!(
        "window {window}, lines of {LINE_BYTES} bytes; {paused_lines} lines per survivor while {PAUSED} is \
         stopped ({:.0} MiB per survivor)",
        (paused_lines * LINE_BYTES) as f64 / (1024.0 * 1024.0)
    );

    // All three multicast for a while, and deliver everything.
    let writers: Vec<Writer> = (1..=3).map(|rank| Writer::start(lab.member_mut(rank))).collect();
    for writer in &writers {
        writer.write(1..WARMUP_LINES + 1);
    }
    for rank in 1..=3 {
        lab.member(rank).wait_for_delivers(3 * WARMUP_LINES);
    }

    // Rank 2 stops: its acknowledgements stop, and the survivors' windows fill.
    lab.member(PAUSED).signal("STOP");
    let stopped = Instant::now();
    let paused_range = WARMUP_LINES + 1..WARMUP_LINES + 1 + paused_lines;
    for &rank in &SURVIVORS {
        writers[usize::from(rank) - 1].write(paused_range.clone());
    }
    std::thread::sleep(Duration::from_millis(FAILURE_TIMEOUT_MS * 3 / 4));
    let taken: Vec<usize> = SURVIVORS
        .iter()
        .map(|&r| writers[usize::from(r) - 1].written())
        .collect();
    println!(
        "{:.1?} after the stop: lines taken by the survivors' stdin {taken:?} (warm-up included)",
        stopped.elapsed()
    );
    // The survivors suspect it once it has been silent for the failure timeout, most likely before it is
    // killed; either way they must go on without it.
    let new_view = format!("VIEW {},{}", SURVIVORS[0], SURVIVORS[1]);
    let installed_by_both = |lab: &Lab| SURVIVORS.iter().all(|&r| lab.member(r).views().contains(&new_view));
    let mut installed_while_stopped = None;
    while stopped.elapsed() < PAUSE {
        if installed_while_stopped.is_none() && installed_by_both(&lab) {
            installed_while_stopped = Some(stopped.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.member_mut(PAUSED).kill9();
    println!("rank {PAUSED} killed {:.1?} after it was stopped", stopped.elapsed());
    match installed_while_stopped {
        Some(after) => println!("VIEW {SURVIVORS:?} printed by both survivors {after:.1?} after the stop"),
        None => println!("VIEW {SURVIVORS:?} not yet printed by both survivors when {PAUSED} was killed"),
    }
    lab.wait_for_view(&SURVIVORS, &SURVIVORS);
    let cut = delivers_before_view_change(lab.member(1)) - 3 * WARMUP_LINES;
    println!(
        "the view change delivered {cut} messages ({:.0} MiB of payloads) of the old view",
        (cut * LINE_BYTES) as f64 / (1024.0 * 1024.0)
    );
    assert!(
        cut * LINE_BYTES > wire::FRAME_LEN_MAX,
        "the cut ({cut} messages) is smaller than one frame: the survivors' windows did not fill before the \
         suspicion, so this run did not test big cuts"
    );
    for &rank in &SURVIVORS {
        writers[usize::from(rank) - 1].wait_written(paused_range.end - 1);
    }

    // Everything either survivor sends from now on is delivered by both.
    let later_range = paused_range.end..paused_range.end + LATER_LINES;
    for &rank in &SURVIVORS {
        writers[usize::from(rank) - 1].write(later_range.clone());
    }
    let total = 3 * WARMUP_LINES + 2 * (paused_lines + LATER_LINES);
    lab.wait_until_settled(&SURVIVORS, total);
    for writer in writers {
        writer.finish();
    }

    let sequences: Vec<(u16, Vec<String>)> = SURVIVORS.iter().map(|&r| (r, lab.member(r).delivers())).collect();
    assert_identical(&sequences);
    drop(sequences);
    for &rank in &SURVIVORS {
        let member = lab.member(rank);
        let numbers = delivered_numbers(member);
        assert_eq!(
            numbers[usize::from(PAUSED)],
            (1..=WARMUP_LINES).collect::<Vec<_>>(),
            "rank {rank}: the paused member's lines"
        );
        for &origin in &SURVIVORS {
            assert_eq!(
                numbers[usize::from(origin)],
                (1..later_range.end).collect::<Vec<_>>(),
                "rank {rank}: the lines of rank {origin}, each once and in order"
            );
        }
        let log = member.log_text();
        assert!(
            !log.contains("exceeds the maximum"),
            "rank {rank} refused a frame:\n{}",
            member.log_tail(20)
        );
    }
    for &rank in &SURVIVORS {
        assert!(lab.member_mut(rank).is_running(), "rank {rank} ended");
    }

    let members: Vec<&Member> = (1..=3).map(|rank| lab.member(rank)).collect();
    let positions = assert_logs_pass_check(&members);
    assert_eq!(positions as usize, total);
    println!("done in {:.1?}", started.elapsed());
}
