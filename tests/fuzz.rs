//! Seeded fuzzing of everything a stranger can reach: the frame decoder, and every handshake (a member's
//! acceptor with and without a secret, the helper with and without one, and the caller's side against a
//! hostile answering side).
//!
//! It lives apart from `tests/wire.rs` and `tests/auth.rs`, which check chosen inputs, because it runs
//! the same properties over as many generated inputs as it is given: a short loop in `make test`, a long
//! one under `make fuzz`. It is a mutation fuzzer that runs on the stable toolchain with no extra tools:
//! it starts from valid frames of every kind (`tests/frame_corpus`) and mutates them (bit flips, byte
//! overwrites, inserted and deleted runs, truncation, garbage appended, splices of two frames, boundary
//! values written over the length prefix and over the counts and lengths inside). The properties:
//! - never a panic, in the test's thread or in any of the library's threads (a panic hook counts those:
//!   a handshake thread that panics would otherwise just end, and its caller see a closed connection);
//! - a frame that decodes re-encodes to exactly its input (the encoding is canonical); `read_frame`
//!   agrees with `decode` frame by frame, and says the same whether the bytes arrive at once or a few at
//!   a time with interruptions;
//! - no unbounded allocation: the peak virtual size (VmPeak) and peak resident size (VmHWM) grow by
//!   less than a stated bound over the decoder loop, whatever lengths the mutants claim (the loop runs
//!   in a process of its own, where those peaks are still low enough to show a large allocation);
//! - every fuzzed connection ends (refused or dropped) within its handshake deadline (plus scheduling
//!   slack), a stranger is never handed on by an acceptor with a secret nor given a rank by a helper
//!   with one, and after every batch of connections the target still serves a valid caller;
//! - a caller facing mutated challenges, welcomes, rosters and refusals returns `Ok` or `Err` by its
//!   deadline.
//!
//! Every case is derived from its own seed: `FUZZ_SEED` is the first (default 1), `FUZZ_ITERATIONS` the
//! number of decoder cases (default [`ITERATIONS_DEFAULT`]; each handshake target gets one connection per
//! [`CASES_PER_CONNECTION`] of them). A failing case prints the one command that replays it, e.g.
//! `FUZZ_SEED=123 FUZZ_ITERATIONS=1 cargo test --test fuzz mutated_frames -- --nocapture`.

mod frame_corpus;
mod net_support;

use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use frame_corpus::{all_frames, encoded, SplitMix64};
use net_support::secret;
use tom::auth::{self, Secret};
use tom::formation::{Incoming, Listener, ListenerSettings};
use tom::registry::{RegistryServer, RegistrySettings};
use tom::runtime::net;
use tom::types::{Incarnation, ProcessId, Rank};
use tom::wire::{self, decode, read_frame, Frame, Hello, Nonce, Proof, Purpose, ReadError, Register, WireError};

/// Decoder cases in `make test`; `FUZZ_ITERATIONS` overrides (`make fuzz` sets millions).
const ITERATIONS_DEFAULT: u64 = 100_000;

/// Decoder cases per fuzzed connection to each handshake target (a connection costs far more).
const CASES_PER_CONNECTION: u64 = 1_000;

/// How much the peak virtual size may grow over the decoder loop, run in a process of its own. The
/// decoder keeps nothing and holds at most one payload ([`wire::PAYLOAD_LEN_MAX`]) at a time; a length
/// taken on trust would cost the largest frame body (64 MiB) or 4 GiB.
const PEAK_VIRTUAL_GROWTH_MAX: u64 = 32 * 1024 * 1024;

/// How much the peak resident size may grow over the decoder loop.
const PEAK_RESIDENT_GROWTH_MAX: u64 = 32 * 1024 * 1024;

/// Decoder cases between two looks at the peak sizes.
const MEMORY_CHECK_EVERY: u64 = 64;

/// The handshake deadline of the fuzzed acceptors and helpers: short, so that truncated handshakes end soon.
const HANDSHAKE_TIMEOUT_MS: u64 = 300;

/// A fuzzed connection must end within its handshake deadline, one more for the refusal to be written,
/// and this much for a loaded 2-core machine to schedule the threads involved.
const SCHEDULING_SLACK: Duration = Duration::from_secs(2);

/// Fuzzed connections in flight at once.
const CONCURRENT_CONNECTIONS: usize = 32;

const GROUP: &str = "fuzz";

// ---- seeds, failures, memory ----------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|text| {
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

fn iterations() -> u64 {
    env_u64("FUZZ_ITERATIONS").unwrap_or(ITERATIONS_DEFAULT)
}

/// The seeds of this run's first `count` cases, from `FUZZ_SEED` (default 1).
fn seeds(count: u64) -> Range<u64> {
    let first = env_u64("FUZZ_SEED").unwrap_or(1);
    first..first.saturating_add(count)
}

/// The seeds of the fuzzed connections to one handshake target.
fn connection_seeds() -> Range<u64> {
    seeds(iterations().div_ceil(CASES_PER_CONNECTION).max(1))
}

/// The command that replays `count` cases of `test` from `seed`.
fn replay(test: &str, seed: u64, count: u64, per_case: u64) -> String {
    format!(
        "FUZZ_SEED={seed} FUZZ_ITERATIONS={} cargo test --test fuzz {test} -- --nocapture",
        count * per_case
    )
}

/// Runs one case; on a panic, says which seed and how to replay it before failing.
fn case(test: &str, seed: u64, per_case: u64, body: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(body)) {
        eprintln!("fuzz case failed: {test}, seed {seed}");
        eprintln!("replay: {}", replay(test, seed, 1, per_case));
        resume_unwind(panic);
    }
}

/// The tests of this binary run one at a time even under a plain `cargo test`: the deadlines assume the
/// CPU is not shared with another fuzz loop.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `test` should run its body here: in a process of its own. The peak sizes of
/// /proc/self/status never go down, so an allocation shows as growth only in a process where nothing
/// larger came before (the handshake tests' threads raise the peak by far more than any bound here).
/// Called from the test harness's process, it runs `test` alone in a fresh process of this binary,
/// passes its output on, fails if it failed, and returns `false`.
fn in_own_process(test: &str) -> bool {
    const OWN_PROCESS: &str = "FUZZ_OWN_PROCESS";
    if std::env::var(OWN_PROCESS).is_ok_and(|running| running == test) {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS, test)
        // One malloc arena: a thread's own arena is reserved as a transient 128 MiB mapping, which would
        // lift the peak virtual size by more than the bounds here before the first case.
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .expect("run the test in its own process");
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "{test} failed in its own process (its output is above)"
    );
    false
}

/// Panics so far in the library's own threads (every one is named `tom-…`).
static LIBRARY_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Installs (once) a panic hook that counts the library threads' panics, then reports as usual.
fn watch_library_threads() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with("tom-"))
            {
                LIBRARY_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            report(info);
        }));
    });
}

/// Peak sizes of this process, in bytes, from /proc/self/status (0 where unavailable).
#[derive(Clone, Copy, Debug)]
struct Peaks {
    /// VmPeak: the largest the address space has been.
    virtual_bytes: u64,
    /// VmHWM: the most memory that has been resident.
    resident_bytes: u64,
}

fn peaks() -> Peaks {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Peaks {
        virtual_bytes: field("VmPeak:"),
        resident_bytes: field("VmHWM:"),
    }
}

/// Asserts that the peaks grew by less than the bounds since `before`; returns the growth.
fn assert_grew_little(before: Peaks, virtual_max: u64, resident_max: u64, what: &str) -> (u64, u64) {
    let after = peaks();
    let grown_virtual = after.virtual_bytes.saturating_sub(before.virtual_bytes);
    let grown_resident = after.resident_bytes.saturating_sub(before.resident_bytes);
    assert!(
        grown_virtual < virtual_max,
        "{what}: peak virtual size grew by {grown_virtual} bytes (bound {virtual_max}); {before:?} -> {after:?}"
    );
    assert!(
        grown_resident < resident_max,
        "{what}: peak resident size grew by {grown_resident} bytes (bound {resident_max}); {before:?} -> {after:?}"
    );
    (grown_virtual, grown_resident)
}

// ---- mutation -----------------------------------------------------------------------------------------

/// Boundary values for lengths and counts, around `len` (the input's length) and `value` (what the
/// overwritten field held): the ones decoders get wrong.
fn boundary_u32(rng: &mut SplitMix64, len: usize, value: u32) -> u32 {
    let len = len as u32;
    let values = [
        0,
        1,
        len.wrapping_sub(1),
        len,
        len.wrapping_add(1),
        value.wrapping_sub(1),
        value.wrapping_add(1),
        u32::from(wire::MEMBERS_MAX),
        u32::from(wire::MEMBERS_MAX) + 1,
        wire::HANDSHAKE_LEN_MAX as u32,
        wire::HANDSHAKE_LEN_MAX as u32 + 1,
        wire::PAYLOAD_LEN_MAX as u32,
        wire::PAYLOAD_LEN_MAX as u32 + 1,
        wire::FRAME_LEN_MAX as u32,
        wire::FRAME_LEN_MAX as u32 + 1,
        0x7FFF_FFFF,
        0x8000_0000,
        u32::MAX,
    ];
    values[rng.below(values.len() as u64) as usize]
}

fn random_bytes(rng: &mut SplitMix64, max: u64) -> Vec<u8> {
    (0..=rng.below(max)).map(|_| rng.next() as u8).collect()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// One mutant of a frame of `corpus`: one to five mutations of random kinds.
fn mutate(rng: &mut SplitMix64, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = corpus[rng.below(corpus.len() as u64) as usize].clone();
    for _ in 0..=rng.below(5) {
        let len = bytes.len();
        let at = rng.below(len as u64 + 1) as usize;
        match rng.below(10) {
            0 if at < len => bytes[at] ^= 1 << rng.below(8),
            1 if at < len => bytes[at] = rng.next() as u8,
            2 => {
                let run = random_bytes(rng, 16);
                bytes.splice(at..at, run);
            }
            3 => {
                let end = (at + 1 + rng.below(16) as usize).min(len);
                bytes.drain(at.min(end)..end);
            }
            4 => bytes.truncate(at),
            5 => bytes.extend(random_bytes(rng, 64)),
            6 => {
                // A splice: this frame up to `at`, another from some point on.
                let other = &corpus[rng.below(corpus.len() as u64) as usize];
                let from = rng.below(other.len() as u64) as usize;
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
            }
            7 if at + 4 <= len => {
                let value = boundary_u32(rng, len, u32_at(&bytes, at));
                bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
            8 => {
                // A count or a length: a u32 that the input could hold, replaced by a boundary value.
                let fields: Vec<usize> = (0..len.saturating_sub(3))
                    .filter(|&i| (u32_at(&bytes, i) as usize) <= len)
                    .collect();
                if !fields.is_empty() {
                    let at = fields[rng.below(fields.len() as u64) as usize];
                    let value = boundary_u32(rng, len, u32_at(&bytes, at));
                    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
                }
            }
            _ if len >= wire::LENGTH_PREFIX_LEN => {
                // The length prefix: a boundary value, or the true length after the other mutations.
                let value = if rng.below(2) == 0 {
                    boundary_u32(rng, len, u32_at(&bytes, 0))
                } else {
                    (len - wire::LENGTH_PREFIX_LEN) as u32
                };
                bytes[..wire::LENGTH_PREFIX_LEN].copy_from_slice(&value.to_be_bytes());
            }
            _ => {}
        }
    }
    bytes
}

// ---- the decoder --------------------------------------------------------------------------------------

/// What `read_frame` returned, comparable.
#[derive(Debug, PartialEq)]
enum Outcome {
    Frame(Frame),
    Eof,
    EofMidFrame,
    Wire(WireError),
}

fn outcome(result: Result<Frame, ReadError>) -> Outcome {
    match result {
        Ok(frame) => Outcome::Frame(frame),
        Err(ReadError::Eof) => Outcome::Eof,
        Err(ReadError::EofMidFrame) => Outcome::EofMidFrame,
        Err(ReadError::Wire(error)) => Outcome::Wire(error),
        Err(ReadError::Io(error)) => panic!("an in-memory read failed: {error}"),
    }
}

/// A stream that hands out at most `chunk` bytes per read, and is interrupted before every other read:
/// the reader must not care how the bytes arrive.
struct Trickle<'a> {
    bytes: &'a [u8],
    chunk: usize,
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.chunk).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// What reading one frame from `rest` must return, as far as it is determined by `decode`.
fn check_one_read(rest: &[u8], len_max: usize, read: &Outcome) {
    if rest.is_empty() {
        assert_eq!(read, &Outcome::Eof);
        return;
    }
    if rest.len() < wire::LENGTH_PREFIX_LEN {
        assert_eq!(read, &Outcome::EofMidFrame);
        return;
    }
    let len = u32_at(rest, 0) as usize;
    if len > len_max {
        let too_long = WireError::TooLong {
            len: len as u64,
            max: len_max as u64,
        };
        assert_eq!(read, &Outcome::Wire(too_long));
    } else if let Some(body) = rest.get(wire::LENGTH_PREFIX_LEN..wire::LENGTH_PREFIX_LEN + len) {
        // The whole body is there: exactly what decode says of it.
        let decoded = match decode(body) {
            Ok(frame) => Outcome::Frame(frame),
            Err(error) => Outcome::Wire(error),
        };
        assert_eq!(read, &decoded, "read_frame and decode disagree");
    } else {
        // The stream ends inside the body: never a frame.
        assert!(
            matches!(read, Outcome::EofMidFrame | Outcome::Wire(_)),
            "a cut body read as {read:?}"
        );
    }
}

/// The decoder's properties on one input: `decode` is canonical, and `read_frame`, over frames back to
/// back, agrees with it under both limits, whether the bytes come at once or `chunk` at a time.
fn check_decoder(bytes: &[u8], chunk: usize) {
    if let Some(body) = bytes.get(wire::LENGTH_PREFIX_LEN..) {
        if let Ok(frame) = decode(body) {
            assert_eq!(
                &encoded(&frame)[wire::LENGTH_PREFIX_LEN..],
                body,
                "non-canonical: {frame:?}"
            );
        }
    }
    for len_max in [wire::HANDSHAKE_LEN_MAX, wire::FRAME_LEN_MAX] {
        let mut cursor = Cursor::new(bytes);
        let mut trickle = Trickle {
            bytes,
            chunk,
            interrupt: false,
        };
        loop {
            let start = cursor.position() as usize;
            let read = outcome(read_frame(&mut cursor, len_max));
            assert_eq!(outcome(read_frame(&mut trickle, len_max)), read, "trickled");
            check_one_read(&bytes[start..], len_max, &read);
            let Outcome::Frame(frame) = read else { break };
            let end = start + encoded(&frame).len();
            assert_eq!(cursor.position() as usize, end, "read_frame read past its frame");
            assert_eq!(&bytes[end..], trickle.bytes, "trickled reads read past the frame");
        }
    }
}

#[test]
fn mutated_frames_never_panic_decode_canonically_and_allocate_little() {
    let _serial = one_at_a_time();
    if !in_own_process("mutated_frames_never_panic_decode_canonically_and_allocate_little") {
        return;
    }
    let corpus: Vec<Vec<u8>> = all_frames().iter().map(encoded).collect();
    // Every valid frame once before measuring, so that the allocator's own start-up is not counted.
    for bytes in &corpus {
        check_decoder(bytes, usize::MAX);
    }
    let before = peaks();
    let started = Instant::now();
    let all = seeds(iterations());
    let mut unchecked_from = all.start;
    for seed in all.clone() {
        case("mutated_frames", seed, 1, || {
            let mut rng = SplitMix64(seed);
            let bytes = if seed % 16 == 0 {
                // Now and then pure noise, with a plausible length prefix.
                let len = rng.below(256) as usize;
                let mut noise: Vec<u8> = (0..len + wire::LENGTH_PREFIX_LEN).map(|_| rng.next() as u8).collect();
                noise[..wire::LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
                noise
            } else {
                mutate(&mut rng, &corpus)
            };
            check_decoder(&bytes, 1 + rng.below(7) as usize);
        });
        // The peaks every few cases, so that a failure names a short run of seeds.
        if (seed - all.start) % MEMORY_CHECK_EVERY == MEMORY_CHECK_EVERY - 1 || seed + 1 == all.end {
            let cases = seed - unchecked_from + 1;
            let what = format!(
                "decoder cases {unchecked_from}..={seed} (replay: {})",
                replay("mutated_frames", unchecked_from, cases, 1)
            );
            assert_grew_little(before, PEAK_VIRTUAL_GROWTH_MAX, PEAK_RESIDENT_GROWTH_MAX, &what);
            unchecked_from = seed + 1;
        }
    }
    let (grown_virtual, grown_resident) = assert_grew_little(before, u64::MAX, u64::MAX, "decoder");
    eprintln!(
        "decoder: {} cases in {:.1?}; VmPeak grew by {grown_virtual} bytes, VmHWM by {grown_resident}",
        all.end - all.start,
        started.elapsed()
    );
}

/// A frame body that starts with `head` and claims `len` bytes, of which only `head` arrives.
fn claim(len: u32, head: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(head);
    bytes
}

#[test]
fn lengths_the_bytes_cannot_back_allocate_nothing_big() {
    let _serial = one_at_a_time();
    if !in_own_process("lengths_the_bytes_cannot_back_allocate_nothing_big") {
        return;
    }
    let frame_max = wire::FRAME_LEN_MAX as u32;
    let huge = u32::MAX.to_be_bytes();
    let mut data = vec![7, 1]; // a Data message: view, origin, seq, lamport, then the payload's length
    data.extend_from_slice(&[0; 8 + 2 + 8 + 8]);
    let mut decide = vec![7, 10]; // a Decide: view id, no members, then the carried messages' count
    decide.extend_from_slice(&[0; 8 + 4]);
    let mut roster = vec![6, 0, 1, 0, 3]; // a roster: rank, size, then the members' count
                                          // A snapshot chunk: view, position, offset 0 of a state as long as can be, then the chunk's length.
    let snapshot = [&[8][..], &[0; 24], &u64::MAX.to_be_bytes()].concat();
    let streams = [
        // A 4 GiB length prefix.
        claim(u32::MAX, &[]),
        // The largest body, then a string, a snapshot and a payload as long as allowed, that never come.
        claim(frame_max, &[&[3][..], &(frame_max - 5).to_be_bytes()].concat()),
        claim(frame_max, &[&snapshot[..], &(frame_max - 37).to_be_bytes()].concat()),
        claim(
            frame_max,
            &[&data[..], &(wire::PAYLOAD_LEN_MAX as u32).to_be_bytes()].concat(),
        ),
        // Lists as long as the claimed body could hold, whose items never come.
        claim(frame_max, &[&decide[..], &(frame_max / 32).to_be_bytes()].concat()),
        claim(
            frame_max,
            &[&roster[..], &u32::from(wire::MEMBERS_MAX).to_be_bytes()].concat(),
        ),
    ];
    // Small whole frames whose counts and lengths claim 4 GiB.
    let small_bodies = [
        [&[3][..], &huge].concat(),
        [&snapshot[..], &huge].concat(),
        [&data[..], &huge].concat(),
        [&decide[..], &huge].concat(),
        {
            roster.extend_from_slice(&huge);
            roster
        },
    ];
    let attempt = || {
        for bytes in &streams {
            for len_max in [wire::HANDSHAKE_LEN_MAX, wire::FRAME_LEN_MAX] {
                assert!(read_frame(&mut Cursor::new(bytes), len_max).is_err());
            }
        }
        for body in &small_bodies {
            assert!(decode(body).is_err());
            let bytes = claim(body.len() as u32, body);
            assert!(read_frame(&mut Cursor::new(&bytes), wire::HANDSHAKE_LEN_MAX).is_err());
        }
    };
    // Valid frames first, so that the allocator's own start-up in this thread is not counted.
    for bytes in all_frames().iter().map(encoded) {
        assert!(read_frame(&mut Cursor::new(&bytes), wire::FRAME_LEN_MAX).is_ok());
    }
    let before = peaks();
    for _ in 0..100 {
        attempt();
    }
    let (grown_virtual, grown_resident) =
        assert_grew_little(before, 16 * 1024 * 1024, 8 * 1024 * 1024, "claimed lengths");
    eprintln!("claimed lengths: VmPeak grew by {grown_virtual} bytes, VmHWM by {grown_resident}");
}

// ---- handshakes: the answering side -------------------------------------------------------------------

/// Valid openings of every kind, with and without a nonce, and what may follow them; all name [`GROUP`],
/// so that mutants get past the group check into the secret's handshake and the judging.
fn handshake_corpus() -> Vec<Vec<u8>> {
    let nonce = Some(Nonce([0x5A; wire::NONCE_LEN]));
    let mut frames = Vec::new();
    for purpose in [Purpose::Form, Purpose::Rejoin, Purpose::Status] {
        for nonce in [None, nonce] {
            for rank in [0, 1, 2, 3, 200] {
                frames.push(Frame::Hello(Hello {
                    group: GROUP.into(),
                    rank: Rank(rank),
                    incarnation: Incarnation(u64::from(purpose == Purpose::Form)),
                    process: ProcessId(u64::from(rank) * 0x0101_0101),
                    purpose,
                    nonce,
                }));
            }
        }
    }
    for (rejoin, admitted) in [
        (None, None),
        (Some(Rank(1)), None),
        (Some(Rank(2)), None),
        (Some(Rank(1)), Some(Incarnation(2))),
    ] {
        for nonce in [None, nonce] {
            frames.push(Frame::Register(Register {
                group: GROUP.into(),
                host: "127.0.0.1".into(),
                port: 4_000,
                process: ProcessId(0xF00D),
                rejoin,
                admitted,
                nonce,
            }));
        }
    }
    frames.push(Frame::Proof(Proof([7; wire::PROOF_LEN])));
    frames.push(Frame::Heartbeat);
    frames.iter().map(encoded).collect()
}

/// What a fuzzed caller sends: one or two mutants (an opening, then perhaps a proof or garbage), and
/// whether it then closes its side early.
fn fuzzed_caller_bytes(rng: &mut SplitMix64, corpus: &[Vec<u8>]) -> (Vec<u8>, bool) {
    // A quarter of the openings arrive intact, so that what follows them reaches the secret's handshake.
    let mut bytes = if rng.below(4) == 0 {
        corpus[rng.below(corpus.len() as u64) as usize].clone()
    } else {
        mutate(rng, corpus)
    };
    if rng.below(2) == 0 {
        bytes.extend(mutate(rng, corpus));
    }
    (bytes, rng.below(3) == 0)
}

/// How long a fuzzed connection may stay open: its deadline, the refusal's write, scheduling slack.
fn connection_bound() -> Duration {
    Duration::from_millis(2 * HANDSHAKE_TIMEOUT_MS) + SCHEDULING_SLACK
}

/// Sends `bytes` to `addr` and reads until the other side closes; panics if it stays open too long.
/// Returns how long it stayed open.
fn fuzz_connection(addr: SocketAddr, bytes: &[u8], close_early: bool) -> Duration {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return started.elapsed();
    };
    let _ = stream.write_all(bytes);
    if close_early {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return started.elapsed(),
        }
        assert!(
            started.elapsed() < connection_bound(),
            "a fuzzed connection to {addr} is still open after {:?}",
            connection_bound()
        );
    }
}

/// Runs the fuzzed connections of `seeds` against `addr`, [`CONCURRENT_CONNECTIONS`] at a time. After
/// every batch no library thread has panicked and `still_serves` (a valid caller) gets through.
fn fuzz_target(test: &str, addr: SocketAddr, corpus: &[Vec<u8>], still_serves: impl Fn()) {
    watch_library_threads();
    let panics_before = LIBRARY_PANICS.load(Ordering::SeqCst);
    let longest_ms = AtomicU64::new(0);
    let seeds: Vec<u64> = connection_seeds().collect();
    let started = Instant::now();
    for batch in seeds.chunks(CONCURRENT_CONNECTIONS) {
        std::thread::scope(|scope| {
            for &seed in batch {
                let longest_ms = &longest_ms;
                scope.spawn(move || {
                    case(test, seed, CASES_PER_CONNECTION, || {
                        let mut rng = SplitMix64(seed);
                        let (bytes, close_early) = fuzzed_caller_bytes(&mut rng, corpus);
                        let open = fuzz_connection(addr, &bytes, close_early);
                        longest_ms.fetch_max(open.as_millis() as u64, Ordering::Relaxed);
                    })
                });
            }
        });
        let batch_replay = replay(test, batch[0], batch.len() as u64, CASES_PER_CONNECTION);
        assert_eq!(
            LIBRARY_PANICS.load(Ordering::SeqCst),
            panics_before,
            "a library thread panicked while serving seeds {}..={}; replay: {batch_replay}",
            batch[0],
            batch[batch.len() - 1]
        );
        if let Err(panic) = catch_unwind(AssertUnwindSafe(&still_serves)) {
            eprintln!("{test}: a valid caller was not served after seeds {batch:?}; replay: {batch_replay}");
            resume_unwind(panic);
        }
    }
    eprintln!(
        "{test}: {} connections in {:.1?}, the longest open {} ms",
        seeds.len(),
        started.elapsed(),
        longest_ms.load(Ordering::Relaxed)
    );
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn acceptor(secret: Option<Secret>) -> (Listener, Receiver<Incoming>) {
    let (acceptor, incoming) = Listener::start(
        TcpListener::bind("127.0.0.1:0").expect("bind"),
        ListenerSettings {
            group: GROUP.into(),
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            pending_max: 256,
            hold_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            secret,
        },
    )
    .expect("acceptor");
    // Rank 2 of 3, forming: every purpose is judged to the end.
    acceptor.set_roster(Rank(2), 3);
    (acceptor, incoming)
}

/// A valid status caller is welcomed (proving the secret if there is one).
fn status_caller_is_welcomed(addr: SocketAddr, secret: Option<&Secret>) {
    let stream = TcpStream::connect(addr).expect("connect");
    let hello = Frame::Hello(Hello {
        group: GROUP.into(),
        rank: Rank(0),
        incarnation: Incarnation(0),
        process: ProcessId(0),
        purpose: Purpose::Status,
        nonce: None,
    });
    auth::open(&stream, hello, secret, deadline(), "the acceptor").expect("a valid caller gets through");
    assert_eq!(
        net::read_frame_before(&stream, deadline(), wire::HANDSHAKE_LEN_MAX).expect("welcome"),
        Frame::Welcome
    );
}

#[test]
fn fuzzed_handshakes_at_an_acceptor_with_a_secret_never_get_in() {
    let _serial = one_at_a_time();
    let (acceptor, incoming) = acceptor(Some(secret("fuzzing secret")));
    let addr = acceptor.local_addr();
    fuzz_target("acceptor_with_a_secret", addr, &handshake_corpus(), || {
        assert!(
            incoming.try_recv().is_err(),
            "a fuzzed caller without the secret got in"
        );
        status_caller_is_welcomed(addr, Some(&secret("fuzzing secret")));
        let valid = incoming.recv_timeout(Duration::from_secs(5)).expect("the valid caller");
        assert_eq!(valid.hello.purpose, Purpose::Status);
    });
}

#[test]
fn fuzzed_handshakes_at_an_acceptor_without_a_secret_end_in_time() {
    let _serial = one_at_a_time();
    let (acceptor, incoming) = acceptor(None);
    // Without a secret a well-formed hello is welcomed and handed on; the runtime then closes what it
    // does not expect, as this drain does.
    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let (incoming, done) = (incoming.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let _ = incoming.recv_timeout(Duration::from_millis(20));
            }
        })
    };
    let addr = acceptor.local_addr();
    fuzz_target("acceptor_without_a_secret", addr, &handshake_corpus(), || {
        status_caller_is_welcomed(addr, None)
    });
    done.store(true, Ordering::Relaxed);
    drain.join().expect("drain");
}

fn helper(size: u16, secret: Option<Secret>) -> RegistryServer {
    let mut settings = RegistrySettings::new(size, GROUP);
    settings.secret = secret;
    settings.handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
    settings.pending_max = 256;
    RegistryServer::start(TcpListener::bind("127.0.0.1:0").expect("bind"), settings).expect("helper")
}

/// Registers with the helper at `addr` (as a rejoin of `rejoin` if given) and returns its answer.
fn register(addr: SocketAddr, rejoin: Option<Rank>, secret: Option<&Secret>) -> Frame {
    let stream = TcpStream::connect(addr).expect("connect");
    let register = Frame::Register(Register {
        group: GROUP.into(),
        host: "127.0.0.1".into(),
        port: 4_000,
        process: ProcessId(0xBEEF),
        rejoin,
        admitted: None,
        nonce: None,
    });
    auth::open(&stream, register, secret, deadline(), "the helper").expect("registration");
    net::read_frame_before(&stream, deadline(), wire::HANDSHAKE_LEN_MAX).expect("the helper's answer")
}

#[test]
fn fuzzed_registrations_at_a_helper_with_a_secret_get_no_rank() {
    let _serial = one_at_a_time();
    let helper = helper(1, Some(secret("fuzzing secret")));
    let addr = helper.local_addr();
    fuzz_target("helper_with_a_secret", addr, &handshake_corpus(), || {
        assert!(
            helper.members().is_empty(),
            "a fuzzed caller without the secret got a rank"
        );
        // A rejoin passes the secret's handshake and is judged (refused: nothing is formed yet), so the
        // whole path is served without forming the group.
        match register(addr, Some(Rank(1)), Some(&secret("fuzzing secret"))) {
            Frame::Refuse { reason } => assert!(reason.contains("cannot rejoin"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
    // And the group still forms.
    match register(addr, None, Some(&secret("fuzzing secret"))) {
        Frame::Roster(roster) => assert_eq!((roster.rank, roster.size), (Rank(1), 1)),
        other => panic!("expected the roster, got {other:?}"),
    }
    helper.stop();
}

#[test]
fn fuzzed_registrations_at_a_helper_without_a_secret_end_in_time() {
    let _serial = one_at_a_time();
    // A group of one: the first well-formed registration forms it, so none waits for others; the later
    // ones are refused or, as rejoins of rank 1, move it.
    let helper = helper(1, None);
    let addr = helper.local_addr();
    fuzz_target("helper_without_a_secret", addr, &handshake_corpus(), || {
        match register(addr, Some(Rank(1)), None) {
            Frame::Roster(roster) => assert_eq!((roster.rank, roster.size), (Rank(1), 1)),
            Frame::Refuse { reason } => assert!(reason.contains("cannot rejoin"), "{reason}"),
            other => panic!("expected a roster or a refusal, got {other:?}"),
        }
        assert!(helper.members().len() <= 1, "a group of one has {:?}", helper.members());
    });
    helper.stop();
}

// ---- handshakes: the calling side ---------------------------------------------------------------------

/// What a hostile answering side may send back: challenges, welcomes, refusals, rosters, proofs.
fn answer_corpus() -> Vec<Vec<u8>> {
    all_frames()
        .into_iter()
        .filter(|frame| {
            matches!(
                frame,
                Frame::Challenge { .. } | Frame::Welcome | Frame::Refuse { .. } | Frame::Roster(_) | Frame::Proof(_)
            )
        })
        .map(|frame| encoded(&frame))
        .collect()
}

/// One caller-side case, derived from its seed alike by the caller and the answering side.
struct CallerCase {
    /// The caller (and the answering side) hold the secret.
    secret: bool,
    /// The caller registers with a helper rather than saying hello to a member.
    register: bool,
    /// The answering side completes the secret's handshake honestly, then sends its mutants.
    honest_challenge: bool,
}

impl CallerCase {
    fn of(seed: u64) -> CallerCase {
        let mut rng = SplitMix64(seed ^ 0xC411_E125);
        CallerCase {
            secret: rng.below(2) == 0,
            register: rng.below(3) == 0,
            honest_challenge: rng.below(2) == 0,
        }
    }
}

/// The answering side of every caller-side case, in seed order: reads the opening, perhaps answers
/// the secret's challenge honestly, then sends one or two mutants and closes or goes silent.
fn hostile_answers(listener: TcpListener, seeds: Vec<u64>) {
    let corpus = answer_corpus();
    for seed in seeds {
        let Ok((stream, _)) = listener.accept() else { return };
        let case = CallerCase::of(seed);
        let mut rng = SplitMix64(seed);
        let Ok(opening) = net::read_frame_before(&stream, deadline(), wire::HANDSHAKE_LEN_MAX) else {
            continue;
        };
        if case.secret
            && case.honest_challenge
            && auth::answer(&stream, &opening, Some(&secret("fuzzing secret")), deadline()).is_err()
        {
            continue;
        }
        let mut answer = mutate(&mut rng, &corpus);
        if rng.below(2) == 0 {
            answer.extend(mutate(&mut rng, &corpus));
        }
        let _ = (&stream).write_all(&answer);
        if rng.below(2) == 0 {
            let _ = stream.shutdown(Shutdown::Both);
        } else {
            // Silent, with the connection open past the caller's deadline.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2 * HANDSHAKE_TIMEOUT_MS));
                drop(stream);
            });
        }
    }
}

#[test]
fn a_caller_facing_a_hostile_answer_returns_in_time() {
    let _serial = one_at_a_time();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seeds: Vec<u64> = connection_seeds().collect();
    let answering = {
        let seeds = seeds.clone();
        std::thread::spawn(move || hostile_answers(listener, seeds))
    };
    let mut longest = Duration::ZERO;
    for &seed in &seeds {
        case("caller_facing_a_hostile_answer", seed, CASES_PER_CONNECTION, || {
            let case = CallerCase::of(seed);
            let secret = case.secret.then(|| secret("fuzzing secret"));
            let opening = if case.register {
                Frame::Register(Register {
                    group: GROUP.into(),
                    host: "127.0.0.1".into(),
                    port: 4_000,
                    process: ProcessId(1),
                    rejoin: None,
                    admitted: None,
                    nonce: None,
                })
            } else {
                Frame::Hello(Hello {
                    group: GROUP.into(),
                    rank: Rank(1),
                    incarnation: Incarnation(1),
                    process: ProcessId(1),
                    purpose: Purpose::Form,
                    nonce: None,
                })
            };
            let stream = TcpStream::connect(addr).expect("connect");
            let started = Instant::now();
            let until = started + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            if auth::open(&stream, opening, secret.as_ref(), until, "the fuzzed side").is_ok() {
                // The welcome or the roster.
                let _ = net::read_frame_before(&stream, until, wire::HANDSHAKE_LEN_MAX);
            }
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(HANDSHAKE_TIMEOUT_MS) + SCHEDULING_SLACK,
                "the caller returned only after {took:?}"
            );
            longest = longest.max(took);
        });
    }
    answering.join().expect("answering side");
    eprintln!(
        "caller_facing_a_hostile_answer: {} connections, the longest {} ms",
        seeds.len(),
        longest.as_millis()
    );
}
