//! `tom-bench`: throughput and latency of the real runtime, N members as threads of one process over
//! real loopback TCP.
//!
//! ```text
//! tom-bench --members N --size BYTES --messages PER_MEMBER [--rate PER_MEMBER_PER_S] [--json] [--breakdown]
//! ```
//!
//! Every member multicasts `--messages` messages of `--size` bytes, as fast as flow control allows
//! (rate 0 or absent) or paced at `--rate` per second. Reported: delivered messages per second per member
//! (median over members, from the first multicast to that member's last delivery), the latency from
//! `multicast()` to the sender's own delivery (p50, p99, p99.9 in µs, over every member's messages), and
//! the process's peak resident memory, and its thread count sampled when the first member has delivered
//! half of its messages (on Linux; it includes the benchmark's own sender and receiver thread per member,
//! as a `tom-member` process has its own stdin and stdout threads). With `--json`, one JSON line; without,
//! a readable table.
//!
//! `--breakdown` (N >= 2) also reports where the time of a multicast goes, hop by hop (median and p90
//! over sampled messages): multicast() → the protocol thread takes it → the writer thread takes the
//! bytes of its data frame → the `write_all` of them returns → the peer's reader thread has the frame
//! → the peer's protocol thread takes it → it queues its acknowledgement → the origin's protocol
//! thread has the last acknowledgement it needs → it delivers → the application reads the delivery.
//! The runtime stamps these through the hidden `Config::hop_probe` hook (`tom::runtime::hops`), which
//! costs nothing when it is off. Meant for low rates (`--rate 1000`): the stamps name messages by
//! their seq in the first view.
//!
//! The benchmark's own bookkeeping is bounded and resident from the start (a ring of send times, at most
//! 2^20 latency samples per member, evenly spread over longer runs), so the growth of the resident set
//! sampled each second is the runtime's, not the benchmark's.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tom::runtime::hops::{Breakdown, HopProbe, Stage, HOPS};
use tom::{Config, Event, Helper, HelperConfig, Member, RecvError};

const USAGE: &str = "\
usage: tom-bench --members N --size BYTES --messages PER_MEMBER [--rate PER_MEMBER_PER_S] [--json] [--breakdown]

Runs N members as threads of this process over loopback TCP; each multicasts PER_MEMBER
messages of BYTES bytes (as fast as flow control allows, or --rate per second), and reports
delivered messages per second per member (median), multicast-to-own-delivery latency
(p50/p99/p99.9 µs), peak RSS, the resident set each second (to see it stay flat) and the
process's thread count mid-run (Linux).
--breakdown (N >= 2): also the median and p90 of each hop of a multicast, from multicast()
to the delivery read by the application (meant for a low --rate, e.g. 1000).";

/// Slots of the ring of send times (far above any flow-control window).
const SEND_RING: usize = 1 << 16;

/// Most latencies kept per member (8 MiB); longer runs keep an even sample.
const LATENCY_SAMPLES_MAX: usize = 1 << 20;

/// Most stamps `--breakdown` keeps (16 MiB of them); longer runs sample evenly.
const BREAKDOWN_STAMPS_MAX: usize = 1 << 21;

struct Options {
    members: u16,
    size: usize,
    messages: usize,
    rate: u64,
    json: bool,
    breakdown: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut members, mut size, mut messages, mut rate, mut json) = (None, None, None, 0, false);
    let mut breakdown = false;
    while let Some(flag) = args.next() {
        if flag == "--json" {
            json = true;
            continue;
        }
        if flag == "--breakdown" {
            breakdown = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad {flag} {value:?}");
        match flag.as_str() {
            "--members" => members = Some(value.parse::<u16>().map_err(|_| bad())?),
            "--size" => size = Some(value.parse::<usize>().map_err(|_| bad())?),
            "--messages" => messages = Some(value.parse::<usize>().map_err(|_| bad())?),
            "--rate" => rate = value.parse::<u64>().map_err(|_| bad())?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let members = members.filter(|n| *n > 0).ok_or("--members N (N >= 1) is required")?;
    let size = size.ok_or("--size BYTES is required")?;
    let messages = messages
        .filter(|m| *m > 0)
        .ok_or("--messages PER_MEMBER (>= 1) is required")?;
    if !(8..=tom::wire::PAYLOAD_LEN_MAX).contains(&size) {
        return Err(format!(
            "--size must be 8..={} (the first 8 bytes carry the message number)",
            tom::wire::PAYLOAD_LEN_MAX
        ));
    }
    if breakdown && members < 2 {
        return Err("--breakdown needs --members 2 or more (it times the hops to the peers)".into());
    }
    Ok(Options {
        members,
        size,
        messages,
        rate,
        json,
        breakdown,
    })
}

/// The process's peak resident set size, from /proc (0 where unavailable).
fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// One size field of /proc/self/status ("VmHWM:", "VmRSS:") in bytes (0 where unavailable).
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// How often the resident set is sampled, to show whether memory stays flat after warm-up.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Samples the resident set size every [`RSS_SAMPLE_INTERVAL`] until `stop` is set; returns MiB.
fn sample_rss(stop: &AtomicBool) -> Vec<f64> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        samples.push(proc_status_bytes("VmRSS:") as f64 / (1024.0 * 1024.0));
        let until = Instant::now() + RSS_SAMPLE_INTERVAL;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    samples
}

/// The process's threads right now, from /proc/self/task; None where there is no such directory, so
/// that a platform without it reports nothing rather than a wrong count.
fn thread_count() -> Option<usize> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    std::fs::read_dir("/proc/self/task").ok().map(|tasks| tasks.count())
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Outcome {
    delivered_per_s: Vec<f64>,
    latencies_ns: Vec<u64>,
    threads_mid_run: Option<usize>,
}

fn run(options: &Options, probe: Option<&HopProbe>) -> Result<Outcome, Box<dyn std::error::Error>> {
    let members = form_group(options, probe)?;
    let total = options.members as usize * options.messages;
    let bench = Bench {
        options,
        probe,
        total,
        half: total.div_ceil(2),
        threads_mid_run: AtomicUsize::new(0),
        start: Instant::now(),
    };
    let outcome = std::thread::scope(|scope| {
        let mut receivers = Vec::new();
        for member in &members {
            // When each own message was multicast, in ns since `start`, in a ring: flow control keeps at
            // most a window of messages in flight, so a ring far larger than the window never wraps onto
            // a message still waiting. The benchmark's own memory must not hide the runtime's.
            let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..SEND_RING).map(|_| AtomicU64::new(0)).collect());
            let sent = Arc::clone(&sent_at);
            let bench = &bench;
            scope.spawn(move || bench.send_all(member, &sent));
            receivers.push(scope.spawn(move || bench.receive_all(member, &sent_at)));
        }
        let mut delivered_per_s = Vec::new();
        let mut latencies_ns = Vec::new();
        for receiver in receivers {
            let received = receiver.join().expect("receiver");
            if received.delivered < total {
                eprintln!(
                    "tom-bench: a member delivered only {} of {total} messages",
                    received.delivered
                );
            }
            delivered_per_s.push(received.delivered_per_s);
            latencies_ns.extend(received.latencies_ns);
        }
        Outcome {
            delivered_per_s,
            latencies_ns,
            threads_mid_run: Some(bench.threads_mid_run.load(Ordering::Relaxed)).filter(|&threads| threads > 0),
        }
    });
    for member in members {
        member.shutdown();
    }
    Ok(outcome)
}

/// Starts a helper on loopback and joins `options.members` members through it, each from its own
/// thread (formation needs them all at once); the helper is stopped once the group is formed.
fn form_group(options: &Options, probe: Option<&HopProbe>) -> Result<Vec<Member>, Box<dyn std::error::Error>> {
    let helper = Helper::start("127.0.0.1:0", HelperConfig::new(options.members).group("bench"))?;
    let helper_addr = helper.local_addr();
    let members: Vec<Member> = std::thread::scope(|scope| {
        let joining: Vec<_> = (0..options.members)
            .map(|_| {
                let mut config = Config::new(helper_addr)
                    .group("bench")
                    .bind_host("127.0.0.1")
                    .advertised_host("127.0.0.1")
                    .first_port(0)
                    // A saturated 2-core machine is slow, not dead: no false suspicions in a benchmark.
                    .failure_timeout_ms(30_000);
                if let Some(probe) = probe {
                    config = config.hop_probe(probe.clone());
                }
                scope.spawn(move || Member::join(config))
            })
            .collect();
        joining
            .into_iter()
            .map(|j| j.join().expect("joining thread"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    helper.stop();
    Ok(members)
}

/// One timed run, shared by every member's sender and receiver thread.
struct Bench<'a> {
    options: &'a Options,
    probe: Option<&'a HopProbe>,
    /// Deliveries each member waits for: every member's messages.
    total: usize,
    /// The delivery count at which the thread count is sampled.
    half: usize,
    /// Sampled once, by the first member to deliver half of its messages: by then every thread of the
    /// runtime is up and none has ended yet (0 = not sampled).
    threads_mid_run: AtomicUsize,
    start: Instant,
}

/// What one member's receiver saw.
struct Received {
    /// Its deliveries per second, from the start to its last delivery.
    delivered_per_s: f64,
    /// The latencies of its own messages it kept.
    latencies_ns: Vec<u64>,
    delivered: usize,
}

impl Bench<'_> {
    /// How many of a member's messages go by per kept latency: at most LATENCY_SAMPLES_MAX latencies
    /// are kept, every message's or an even sample of them.
    fn latency_every(&self) -> usize {
        self.options.messages.div_ceil(LATENCY_SAMPLES_MAX).max(1)
    }

    /// The sender of `member`: multicasts its messages, paced at `--rate` if one is given, and notes in
    /// `sent` when each message whose latency is kept was multicast.
    fn send_all(&self, member: &Member, sent: &[AtomicU64]) {
        let (options, start) = (self.options, self.start);
        let me = member.rank();
        let every = self.latency_every();
        let interval = (options.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / options.rate));
        let mut payload = vec![0u8; options.size];
        for k in 0..options.messages {
            if let Some(interval) = interval {
                let due = start + interval * k as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            payload[..8].copy_from_slice(&(k as u64).to_be_bytes());
            // Only the messages whose latency is kept need the clock read.
            if k % every == 0 {
                sent[k % SEND_RING].store(start.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
            }
            // The k-th multicast (from 0) is seq k + 1 in the first view.
            if let Some(probe) = self.probe {
                probe.stamp(Stage::Called, me, k as u64 + 1, me);
            }
            // From a slice: the payload is copied once, into the buffer the runtime shares.
            if member.multicast(&payload[..]).is_err() {
                return;
            }
        }
    }

    /// The receiver of `member`: takes deliveries until every member's messages are in (or the events
    /// stop for a minute), keeping the latency of its own messages whose send time `sent_at` holds.
    fn receive_all(&self, member: &Member, sent_at: &[AtomicU64]) -> Received {
        let me = member.rank();
        let every = self.latency_every();
        // Written once up front, so that its pages are resident from the start: a buffer that
        // filled up during the run would look like the runtime's memory growing.
        let mut latencies = vec![u64::MAX; self.options.messages.min(LATENCY_SAMPLES_MAX)];
        latencies.clear();
        let mut delivered = 0usize;
        while delivered < self.total {
            // What is queued already is taken without a deadline (no clock read per event); the
            // wait with a timeout only when nothing is.
            let event = match member.events().try_recv() {
                Err(RecvError::Empty) => member.events().recv_timeout(Duration::from_secs(60)),
                other => other,
            };
            match event {
                Ok(Event::Deliver(d)) => {
                    delivered += 1;
                    if delivered == self.half {
                        self.sample_threads_once();
                    }
                    let k = u64::from_be_bytes(d.payload.as_bytes()[..8].try_into().unwrap_or_default());
                    if let (Some(probe), true) = (self.probe, d.origin.rank == me) {
                        probe.stamp(Stage::Consumed, me, k + 1, me);
                    }
                    if d.origin.rank == me && k as usize % every == 0 {
                        let sent = sent_at[k as usize % SEND_RING].load(Ordering::Relaxed);
                        let now = self.start.elapsed().as_nanos() as u64 + 1;
                        latencies.push(now.saturating_sub(sent));
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        Received {
            delivered_per_s: delivered as f64 / elapsed,
            latencies_ns: latencies,
            delivered,
        }
    }

    /// Samples the thread count if no member has yet (see `threads_mid_run`).
    fn sample_threads_once(&self) {
        if self.threads_mid_run.load(Ordering::Relaxed) == 0 {
            if let Some(threads) = thread_count() {
                let _ = self
                    .threads_mid_run
                    .compare_exchange(0, threads, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tom-bench: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sampling_stopped = AtomicBool::new(false);
    let probe = options
        .breakdown
        .then(|| HopProbe::new(options.members, options.messages as u64, BREAKDOWN_STAMPS_MAX));
    let (result, rss_samples_mib) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_rss(&sampling_stopped));
        let result = run(&options, probe.as_ref());
        sampling_stopped.store(true, Ordering::Relaxed);
        (result, sampler.join().unwrap_or_default())
    });
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("tom-bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    let report = Report::new(outcome, &rss_samples_mib, probe.as_ref());
    if options.json {
        report.print_json(&options);
    } else {
        report.print_table(&options);
    }
    ExitCode::SUCCESS
}

/// What a run measured, as the report gives it.
struct Report {
    /// Delivered messages per second per member, the median over members.
    median_per_s: f64,
    latency_p50_us: f64,
    latency_p99_us: f64,
    latency_p999_us: f64,
    peak_rss_bytes: u64,
    /// The resident set each second, in MiB, comma-separated.
    rss_timeline_mib: String,
    threads_mid_run: Option<usize>,
    /// With `--breakdown`: the hops, and the probe's sampling (slots per member, 1 in every).
    breakdown: Option<(Breakdown, (u64, u64))>,
}

impl Report {
    /// Sums a run up; the peak resident set is read now, after the run.
    fn new(mut outcome: Outcome, rss_samples_mib: &[f64], probe: Option<&HopProbe>) -> Report {
        let rss_timeline_mib = rss_samples_mib
            .iter()
            .map(|mib| format!("{mib:.1}"))
            .collect::<Vec<_>>()
            .join(",");
        outcome.delivered_per_s.sort_by(|a, b| a.total_cmp(b));
        outcome.latencies_ns.sort_unstable();
        let median_per_s = outcome.delivered_per_s[outcome.delivered_per_s.len() / 2];
        let us = |fraction: f64| percentile(&outcome.latencies_ns, fraction) as f64 / 1_000.0;
        let (latency_p50_us, latency_p99_us, latency_p999_us) = (us(0.50), us(0.99), us(0.999));
        let peak_rss_bytes = peak_rss_bytes();
        let breakdown = probe.map(|probe| (probe.breakdown(), probe.sampling()));
        Report {
            median_per_s,
            latency_p50_us,
            latency_p99_us,
            latency_p999_us,
            peak_rss_bytes,
            rss_timeline_mib,
            threads_mid_run: outcome.threads_mid_run,
            breakdown,
        }
    }

    /// The `--json` report: one line.
    fn print_json(&self, options: &Options) {
        let threads_json = self
            .threads_mid_run
            .map_or_else(|| "null".to_string(), |threads| threads.to_string());
        let breakdown_json = self
            .breakdown
            .as_ref()
            .map(|(breakdown, sampling)| format!(",\"breakdown\":{}", breakdown_json(breakdown, *sampling)))
            .unwrap_or_default();
        println!(
            "{{\"members\":{},\"size\":{},\"messages_per_member\":{},\"rate\":{},\"delivered_per_s_median\":{:.0},\"latency_p50_us\":{:.1},\"latency_p99_us\":{:.1},\"latency_p999_us\":{:.1},\"peak_rss_bytes\":{},\"rss_mib_each_second\":[{}],\"threads_mid_run\":{}{}}}",
            options.members,
            options.size,
            options.messages,
            options.rate,
            self.median_per_s,
            self.latency_p50_us,
            self.latency_p99_us,
            self.latency_p999_us,
            self.peak_rss_bytes,
            self.rss_timeline_mib,
            threads_json,
            breakdown_json
        );
    }

    /// The readable report: one line per figure, then the breakdown table if there is one.
    fn print_table(&self, options: &Options) {
        let (median, p50, p99, p999) = (
            self.median_per_s,
            self.latency_p50_us,
            self.latency_p99_us,
            self.latency_p999_us,
        );
        let rss_timeline = &self.rss_timeline_mib;
        println!("members                   {}", options.members);
        println!("payload size              {} B", options.size);
        println!("messages per member       {}", options.messages);
        println!(
            "rate per member           {}",
            if options.rate == 0 {
                "saturated".to_string()
            } else {
                format!("{}/s", options.rate)
            }
        );
        println!("delivered/s per member    {median:.0} (median over members)");
        println!("latency p50 / p99 / p99.9 {p50:.1} / {p99:.1} / {p999:.1} µs (multicast to own delivery)");
        println!(
            "peak RSS                  {:.1} MiB",
            self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
        );
        println!("RSS each second           {rss_timeline} MiB");
        if let Some(threads) = self.threads_mid_run {
            println!(
                "threads mid-run           {threads} ({:.1} per member)",
                threads as f64 / f64::from(options.members)
            );
        }
        if let Some((breakdown, sampling)) = &self.breakdown {
            print_breakdown(breakdown, *sampling);
        }
    }
}

fn us(ns: i64) -> f64 {
    ns as f64 / 1_000.0
}

/// The `--breakdown` table: per hop, median / p90 in µs, between the stages as the last peer reached
/// each (these add up, per message, to the total) and, for the hops to and from the peers, each peer's
/// own chain pooled over peers.
fn print_breakdown(breakdown: &Breakdown, (slots, every): (u64, u64)) {
    println!(
        "where the time goes       {} messages sampled (1 in {every} of each member's, up to {slots} each; {} incomplete left out)",
        breakdown.samples, breakdown.incomplete
    );
    println!("  µs, median / p90                                 last peer            each peer");
    for hop in &breakdown.hops {
        let last = format!("{:.1} / {:.1}", us(hop.last_peer.p50_ns), us(hop.last_peer.p90_ns));
        let each = hop
            .each_peer
            .map(|each| format!("{:.1} / {:.1}", us(each.p50_ns), us(each.p90_ns)))
            .unwrap_or_else(|| "-".into());
        let negative = hop.last_peer.negative + hop.each_peer.map_or(0, |each| each.negative);
        let note = if negative > 0 {
            format!("  ({negative} negative: two threads' stamps crossed)")
        } else {
            String::new()
        };
        println!("  {:<47}  {last:<19}  {each}{note}", hop.name);
    }
    println!("  (medians of the hops need not add up to the median total)");
}

fn breakdown_json(breakdown: &Breakdown, (slots, every): (u64, u64)) -> String {
    let hops = breakdown
        .hops
        .iter()
        .map(|hop| {
            let each = hop
                .each_peer
                .map(|each| {
                    format!(
                        ",\"each_peer_p50_us\":{:.1},\"each_peer_p90_us\":{:.1}",
                        us(each.p50_ns),
                        us(each.p90_ns)
                    )
                })
                .unwrap_or_default();
            format!(
                "{{\"hop\":\"{}\",\"p50_us\":{:.1},\"p90_us\":{:.1}{each}}}",
                hop.name,
                us(hop.last_peer.p50_ns),
                us(hop.last_peer.p90_ns)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    debug_assert_eq!(breakdown.hops.len(), HOPS.len());
    format!(
        "{{\"samples\":{},\"incomplete\":{},\"every\":{every},\"slots_per_member\":{slots},\"hops\":[{hops}]}}",
        breakdown.samples, breakdown.incomplete
    )
}
