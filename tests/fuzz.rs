//! Seeded fuzzing of everything a stranger can reach: the frame decoder, and every handshake (a member's
//! acceptor with and without a secret, the helper with one, and the caller's side against a hostile
//! answering side).
//!
//! A mutation fuzzer that runs on the stable toolchain: it starts from valid frames of every kind
//! (`tests/frame_corpus`) and mutates them (bit flips, byte overwrites, insertions, deletions,
//! truncation, splices of two frames, boundary values written over length prefixes and counts).
//! The properties:
//! - never a panic;
//! - a frame that decodes re-encodes to exactly its input (the encoding is canonical), and `read_frame`
//!   agrees with `decode`;
//! - no unbounded allocation: the process's peak virtual size (VmPeak) grows by less than
//!   [`ALLOCATION_BOUND_BYTES`] over the whole run, whatever lengths the mutants claim;
//! - every fuzzed connection ends (refused or dropped) by its handshake deadline, a stranger is never
//!   handed on by an acceptor with a secret, and the acceptor and the helper still serve a valid caller
//!   afterwards.
//!
//! `make test` runs a short loop; `make fuzz` the same loop for much longer. Every case is derived from
//! its own seed; a failing case prints it, and `FUZZ_SEED=s FUZZ_ITERATIONS=1 cargo test --test fuzz --
//! --nocapture` replays it.

mod frame_corpus;

use std::io::{Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use frame_corpus::{all_frames, encoded, SplitMix64};
use tom::auth::{self, Secret};
use tom::formation::{Acceptor, AcceptorSettings};
use tom::registry::{Helper, Settings};
use tom::runtime::net;
use tom::types::{Incarnation, Rank};
use tom::wire::{self, decode, read_frame, Frame, Hello, Nonce, Proof, Purpose, Register};

/// Decoder cases in `make test`; `FUZZ_ITERATIONS` overrides (`make fuzz` sets millions).
const ITERATIONS_DEFAULT: u64 = 30_000;

/// Decoder cases per fuzzed connection to each handshake target when `FUZZ_ITERATIONS` is set (a
/// connection costs far more); without it, [`CONNECTIONS_DEFAULT`] per target.
const CASES_PER_CONNECTION: u64 = 1_000;
const CONNECTIONS_DEFAULT: u64 = 96;

/// How much the process's peak virtual size may grow over a run. Generous for what the decoder keeps
/// (nothing) and for the threads of the handshake targets, far below what a length taken on trust would
/// cost (a 64 MiB frame body, a 4 GiB length prefix).
const ALLOCATION_BOUND_BYTES: u64 = 512 * 1024 * 1024;

/// The handshake deadline of the fuzzed acceptors and helper: short, so that truncated handshakes end soon.
const HANDSHAKE_TIMEOUT_MS: u64 = 300;

/// How long a fuzzed connection may stay open before the test calls it a hang.
const CONNECTION_BOUND: Duration = Duration::from_secs(10);

/// Fuzzed connections in flight at once.
const CONCURRENT_CONNECTIONS: usize = 16;

const GROUP: &str = "fuzz";

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|text| text.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

/// The seeds of this run: `FUZZ_SEED` (default 1) and the `iterations` after it.
fn seeds(iterations: u64) -> std::ops::Range<u64> {
    let first = env_u64("FUZZ_SEED").unwrap_or(1);
    first..first + iterations
}

fn iterations() -> u64 {
    env_u64("FUZZ_ITERATIONS").unwrap_or(ITERATIONS_DEFAULT)
}

/// Runs one case; on a panic, says which seed and how to replay it before failing.
fn case(test: &str, seed: u64, body: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(body)) {
        eprintln!("fuzz case failed: {test}, seed {seed}");
        eprintln!("replay: FUZZ_SEED={seed} FUZZ_ITERATIONS=1 cargo test --test fuzz {test} -- --nocapture");
        resume_unwind(panic);
    }
}

/// The process's peak virtual size in bytes (VmPeak of /proc/self/status; 0 where unavailable).
fn peak_virtual_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmPeak:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Boundary values for lengths and counts: the ones decoders get wrong.
fn boundary_u32(rng: &mut SplitMix64, len: usize) -> u32 {
    let len = len as u32;
    let values = [
        0,
        1,
        len.wrapping_sub(1),
        len,
        len.wrapping_add(1),
        u32::from(wire::MEMBERS_MAX) + 1,
        wire::HANDSHAKE_LEN_MAX as u32 + 1,
        wire::PAYLOAD_LEN_MAX as u32 + 1,
        wire::FRAME_LEN_MAX as u32,
        0x7FFF_FFFF,
        u32::MAX,
    ];
    values[rng.below(values.len() as u64) as usize]
}

/// One mutant of a frame of `corpus`: one to five mutations of a random kind.
fn mutate(rng: &mut SplitMix64, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = corpus[rng.below(corpus.len() as u64) as usize].clone();
    for _ in 0..=rng.below(5) {
        let len = bytes.len();
        let at = rng.below(len as u64 + 1) as usize;
        match rng.below(8) {
            0 if at < len => bytes[at] ^= 1 << rng.below(8),
            1 if at < len => bytes[at] = rng.next() as u8,
            2 => {
                let run: Vec<u8> = (0..=rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, run);
            }
            3 => {
                let end = (at + 1 + rng.below(16) as usize).min(len);
                bytes.drain(at.min(end)..end);
            }
            4 => bytes.truncate(at),
            5 => {
                let other = &corpus[rng.below(corpus.len() as u64) as usize];
                let from = rng.below(other.len() as u64) as usize;
                bytes.extend_from_slice(&other[from..]);
            }
            6 if at + 4 <= len => {
                let value = boundary_u32(rng, len);
                bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
            _ if len >= wire::LENGTH_PREFIX_LEN => {
                // The length prefix: a boundary value, or the true length after the other mutations.
                let value = if rng.below(2) == 0 {
                    boundary_u32(rng, len)
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

/// The decoder's properties on one input.
fn check_decoder(bytes: &[u8]) {
    if bytes.len() >= wire::LENGTH_PREFIX_LEN {
        let body = &bytes[wire::LENGTH_PREFIX_LEN..];
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
        // Frames back to back, as on a connection, until the first error.
        while let Ok(frame) = read_frame(&mut cursor, len_max) {
            let end = cursor.position() as usize;
            let start = end - encoded(&frame).len();
            assert_eq!(
                decode(&bytes[start + wire::LENGTH_PREFIX_LEN..end]).as_ref(),
                Ok(&frame)
            );
        }
    }
}

#[test]
fn mutated_frames_never_panic_decode_canonically_and_allocate_little() {
    let corpus: Vec<Vec<u8>> = all_frames().iter().map(encoded).collect();
    let peak_before = peak_virtual_bytes();
    for seed in seeds(iterations()) {
        case("mutated_frames", seed, || {
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
            check_decoder(&bytes);
        });
    }
    let grown = peak_virtual_bytes().saturating_sub(peak_before);
    assert!(
        grown < ALLOCATION_BOUND_BYTES,
        "peak virtual size grew by {grown} bytes"
    );
}

#[test]
fn lengths_the_bytes_cannot_back_allocate_nothing_big() {
    let peak_before = peak_virtual_bytes();
    // A 4 GiB length prefix; a frame that claims the largest body, then a string as long, then stops.
    let mut claims = vec![u32::MAX.to_be_bytes().to_vec()];
    let mut refuse = (wire::FRAME_LEN_MAX as u32).to_be_bytes().to_vec();
    refuse.push(3); // a refusal: one string
    refuse.extend_from_slice(&(wire::FRAME_LEN_MAX as u32 - 5).to_be_bytes());
    refuse.extend_from_slice(b"only this");
    claims.push(refuse);
    for _ in 0..100 {
        for bytes in &claims {
            assert!(read_frame(&mut Cursor::new(bytes), wire::FRAME_LEN_MAX).is_err());
        }
    }
    let grown = peak_virtual_bytes().saturating_sub(peak_before);
    assert!(grown < 16 * 1024 * 1024, "peak virtual size grew by {grown} bytes");
}

// ---- handshakes --------------------------------------------------------------------------------------

/// Valid openings of every kind, with and without a nonce, and what may follow them.
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
                    purpose,
                    nonce,
                }));
            }
        }
    }
    for rejoin in [None, Some(Rank(1))] {
        for nonce in [None, nonce] {
            frames.push(Frame::Register(Register {
                group: GROUP.into(),
                host: "127.0.0.1".into(),
                port: 4_000,
                rejoin,
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
    let mut bytes = mutate(rng, corpus);
    if rng.below(2) == 0 {
        bytes.extend(mutate(rng, corpus));
    }
    (bytes, rng.below(3) == 0)
}

/// Sends `bytes` to `addr` and reads until the other side closes; panics if it stays open too long.
fn fuzz_connection(addr: SocketAddr, bytes: &[u8], close_early: bool) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.write_all(bytes);
    if close_early {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let started = Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        assert!(
            started.elapsed() < CONNECTION_BOUND,
            "a fuzzed connection to {addr} is still open after {CONNECTION_BOUND:?}"
        );
    }
}

/// Runs the fuzzed connections of `seeds` against `addr`, several at once.
fn fuzz_target(test: &str, addr: SocketAddr, seeds: std::ops::Range<u64>, corpus: &[Vec<u8>]) {
    let seeds: Vec<u64> = seeds.collect();
    for batch in seeds.chunks(CONCURRENT_CONNECTIONS) {
        std::thread::scope(|scope| {
            for &seed in batch {
                scope.spawn(move || {
                    case(test, seed, || {
                        let mut rng = SplitMix64(seed);
                        let (bytes, close_early) = fuzzed_caller_bytes(&mut rng, corpus);
                        fuzz_connection(addr, &bytes, close_early);
                    })
                });
            }
        });
    }
}

fn secret() -> Secret {
    Secret::new(&b"fuzzing secret"[..]).expect("secret")
}

fn acceptor(secret: Option<Secret>) -> (Acceptor, crossbeam_channel::Receiver<tom::formation::Incoming>) {
    let (acceptor, incoming) = Acceptor::start(
        TcpListener::bind("127.0.0.1:0").expect("bind"),
        AcceptorSettings {
            group: GROUP.into(),
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            pending_max: 256,
            hold_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            secret,
        },
    )
    .expect("acceptor");
    // Rank 2 of 3, formed: every purpose is judged to the end.
    acceptor.set_roster(Rank(2), 3);
    (acceptor, incoming)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

/// A valid status caller is still welcomed (proving the secret if there is one).
fn assert_still_serves(addr: SocketAddr, secret: Option<&Secret>) {
    let stream = TcpStream::connect(addr).expect("connect");
    let hello = Frame::Hello(Hello {
        group: GROUP.into(),
        rank: Rank(0),
        incarnation: Incarnation(0),
        purpose: Purpose::Status,
        nonce: None,
    });
    auth::open(&stream, hello, secret, deadline(), "the acceptor").expect("a valid caller gets through");
    assert_eq!(
        net::read_frame_before(&stream, deadline(), wire::HANDSHAKE_LEN_MAX).expect("welcome"),
        Frame::Welcome
    );
}

fn handshake_seeds() -> std::ops::Range<u64> {
    let connections = env_u64("FUZZ_ITERATIONS").map_or(CONNECTIONS_DEFAULT, |n| (n / CASES_PER_CONNECTION).max(1));
    seeds(connections)
}

#[test]
fn fuzzed_handshakes_at_an_acceptor_with_a_secret_never_get_in() {
    let corpus = handshake_corpus();
    let (acceptor, incoming) = acceptor(Some(secret()));
    fuzz_target(
        "acceptor_with_a_secret",
        acceptor.local_addr(),
        handshake_seeds(),
        &corpus,
    );
    assert!(
        incoming.try_recv().is_err(),
        "a fuzzed caller without the secret got in"
    );
    assert_still_serves(acceptor.local_addr(), Some(&secret()));
    assert!(incoming.recv_timeout(Duration::from_secs(5)).is_ok());
}

#[test]
fn fuzzed_handshakes_at_an_acceptor_without_a_secret_end_in_time() {
    let corpus = handshake_corpus();
    let (acceptor, incoming) = acceptor(None);
    // Without a secret a well-formed hello is welcomed and handed on; the runtime would then close what
    // it does not expect, as this drain does.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain = {
        let (incoming, done) = (incoming.clone(), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = incoming.recv_timeout(Duration::from_millis(50));
            }
        })
    };
    fuzz_target(
        "acceptor_without_a_secret",
        acceptor.local_addr(),
        handshake_seeds(),
        &corpus,
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    drain.join().expect("drain");
    assert_still_serves(acceptor.local_addr(), None);
    assert!(incoming.recv_timeout(Duration::from_secs(5)).is_ok());
}

#[test]
fn fuzzed_registrations_at_a_helper_with_a_secret_get_no_rank() {
    let corpus = handshake_corpus();
    let mut settings = Settings::new(1, GROUP);
    settings.secret = Some(secret());
    settings.handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
    settings.pending_max = 256;
    let helper = Helper::start(TcpListener::bind("127.0.0.1:0").expect("bind"), settings).expect("helper");
    fuzz_target("helper_with_a_secret", helper.local_addr(), handshake_seeds(), &corpus);
    assert!(
        helper.members().is_empty(),
        "a fuzzed caller without the secret got a rank"
    );
    let stream = TcpStream::connect(helper.local_addr()).expect("connect");
    let register = Frame::Register(Register {
        group: GROUP.into(),
        host: "127.0.0.1".into(),
        port: 4_000,
        rejoin: None,
        nonce: None,
    });
    auth::open(&stream, register, Some(&secret()), deadline(), "the helper").expect("registration");
    match net::read_frame_before(&stream, deadline(), wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Roster(roster)) => assert_eq!(roster.rank, Rank(1)),
        other => panic!("expected the roster, got {other:?}"),
    }
    helper.stop();
}

/// What a hostile answering side may send back: challenges, welcomes, refusals, rosters.
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

#[test]
fn a_caller_facing_a_hostile_answer_returns_in_time() {
    let corpus = answer_corpus();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seeds: Vec<u64> = handshake_seeds().collect();
    let answering = {
        let corpus = corpus.clone();
        let seeds = seeds.clone();
        std::thread::spawn(move || {
            for seed in seeds {
                let Ok((stream, _)) = listener.accept() else { return };
                let mut rng = SplitMix64(seed ^ 0xA5A5);
                let _ = net::read_frame_before(&stream, deadline(), wire::HANDSHAKE_LEN_MAX);
                let mut answer = mutate(&mut rng, &corpus);
                if rng.below(2) == 0 {
                    answer.extend(mutate(&mut rng, &corpus));
                }
                let _ = (&stream).write_all(&answer);
                // Half the time the hostile side then goes silent, keeping the connection open.
                if rng.below(2) == 0 {
                    let _ = stream.shutdown(Shutdown::Both);
                } else {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(2 * HANDSHAKE_TIMEOUT_MS));
                        drop(stream);
                    });
                }
            }
        })
    };
    for seed in seeds {
        case("caller_facing_a_hostile_answer", seed, || {
            let secret = (seed % 2 == 0).then(secret);
            let stream = TcpStream::connect(addr).expect("connect");
            let started = Instant::now();
            let until = started + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            let hello = Frame::Hello(Hello {
                group: GROUP.into(),
                rank: Rank(1),
                incarnation: Incarnation(1),
                purpose: Purpose::Form,
                nonce: None,
            });
            if auth::open(&stream, hello, secret.as_ref(), until, "the fuzzed side").is_ok() {
                let _ = net::read_frame_before(&stream, until, wire::HANDSHAKE_LEN_MAX);
            }
            assert!(started.elapsed() < CONNECTION_BOUND, "the caller hung");
        });
    }
    answering.join().expect("answering side");
}
