//! Hostile connections against a running group (real processes): a `tom-helper` and three `tom-member`
//! processes that share a group secret (`--cookie-file`) multicast continuously on 127.0.0.1, while this
//! test process attacks the helper's port and a member's listening port with raw sockets, `tom::wire`
//! and `tom::auth`:
//!
//! - strangers ([`strangers_are_refused_by_the_helper_and_a_member_while_the_group_delivers`]): random
//!   bytes, truncated frames, huge length prefixes, a valid opening or a whole handshake followed by
//!   garbage, a wrong group, a wrong secret (and none, and a forged proof), a recorded handshake replayed;
//! - callers that know the secret
//!   ([`knowing_the_secret_does_not_let_a_caller_speak_for_another_rank_or_an_old_life`]): rank spoofing
//!   (a formation hello for a live rank, a rejoin connection for a live rank that then sends data and
//!   acknowledgements claiming other origins and a join request), and an old incarnation's connection
//!   after the rank was killed and rejoined;
//! - a flood ([`a_thousand_idle_connections_are_capped_and_timed_out_while_the_group_delivers`]): a
//!   thousand connections to each of the member and the helper, opened and left idle.
//!
//! For each attack: the attacker gets a refusal frame or a closed connection (whichever the victim can
//! still send), the victim logs a line naming the attacker's address or connection and why it refused,
//! dropped or held it (a rejoin connection's protocol frames wait, unread by the core, for a view that
//! admits its rank), and the group keeps delivering (every member's count grows after the attack). At the end
//! the members' delivery sequences are identical (a rejoined life's is the group's suffix), every line
//! written was delivered exactly once, nothing an attacker sent was delivered, and every process's stdout
//! passes the `tom-check` rules (`bin/check/history.rs`).
//!
//! Why a file of its own: these are the threat-model tests of README's "A group secret on a shared
//! network" and PROTOCOL.md section 10, run against the programs a lab runs rather than the library's
//! pieces (`tests/bad_input.rs` and `tests/auth.rs` do that). Deadlines only bound hangs; nothing here
//! asserts speed.

mod proc_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proc_support::{
    assert_each_delivered_once, assert_identical, assert_logs_pass_check, ranks_text, wait_until_stable, Lab, Load,
    Member, Rng, DEADLINE,
};
use tom::auth::{self, Secret};
use tom::error::Error;
use tom::message::{Batch, Message, Multicast};
use tom::types::{Incarnation, ProcessId, Rank, ViewId};
use tom::wire::{self, Frame, Hello, Nonce, Proof, Purpose, ReadError, Register};

/// The group's secret, written to the lab's cookie file.
const SECRET: &str = "hostile-test secret 6f2d8c1b94e0";

/// The group every process of the lab belongs to (the programs' default).
const GROUP: &str = tom::formation::GROUP_DEFAULT;

/// Each loaded member gets one stdin line per millisecond (or as fast as its pipe takes them).
const PACE: Duration = Duration::from_millis(1);

/// A killed member's connections close at once; the timeout only matters for a silent one.
const FAILURE_TIMEOUT_MS: &str = "1000";

/// Deliveries every member must add after an attack for the group to count as still delivering.
const PROGRESS: usize = 200;

/// Connections of the flood, per victim.
const FLOOD: usize = 1_000;

/// What an attacker without the secret sends where it would say its data came from: never delivered.
const SPOOFED_PAYLOAD: &str = "spoofed by an attacker";

/// The group's secret, as the attacker that knows it holds it.
fn secret() -> Secret {
    Secret::new(SECRET).expect("secret")
}

/// A handshake deadline for the attacker's own side of a handshake.
fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Who is attacked: the helper, or the member of a rank.
#[derive(Clone, Copy, Debug)]
enum Victim {
    Helper,
    Member(u16),
}

impl Victim {
    fn port(self, lab: &Lab) -> u16 {
        match self {
            Victim::Helper => lab.helper_port(),
            Victim::Member(rank) => lab.member(rank).listening_port(),
        }
    }

    fn log_text(self, lab: &Lab) -> String {
        match self {
            Victim::Helper => lab.helper_log_text(),
            Victim::Member(rank) => lab.member(rank).log_text(),
        }
    }

    /// The frame a caller opens with: a registration for the helper, a status query for a member (the
    /// one connection a caller without a rank may open).
    fn opening(self, group: &str, nonce: Option<Nonce>) -> Frame {
        match self {
            Victim::Helper => Frame::Register(Register {
                group: group.into(),
                host: "127.0.0.1".into(),
                port: 1,
                process: ProcessId(0xbad),
                rejoin: None,
                admitted: None,
                nonce,
            }),
            Victim::Member(_) => Frame::Hello(Hello {
                group: group.into(),
                rank: Rank(0),
                incarnation: Incarnation(0),
                process: ProcessId(0xbad),
                purpose: Purpose::Status,
                nonce,
            }),
        }
    }

    /// How many lines its log has now: a mark for [`Victim::wait_for_log_after`].
    fn log_mark(self, lab: &Lab) -> usize {
        self.log_text(lab).lines().count()
    }

    /// Waits until a line of the victim's log contains every one of `parts`; returns it.
    fn wait_for_log(self, lab: &Lab, parts: &[&str]) -> String {
        self.wait_for_log_after(lab, 0, parts)
    }

    /// Waits until a line of the victim's log after the first `mark` lines contains every one of
    /// `parts`; returns it.
    fn wait_for_log_after(self, lab: &Lab, mark: usize, parts: &[&str]) -> String {
        let what = format!("a line with {parts:?}");
        let mut found =
            self.wait_for_log_lines(lab, mark, &what, 1, |line| parts.iter().all(|part| line.contains(part)));
        found.swap_remove(0)
    }

    /// Waits until at least `count` lines of the victim's log after the first `mark` lines match;
    /// returns them. `what` names them in the failure message.
    fn wait_for_log_lines(
        self,
        lab: &Lab,
        mark: usize,
        what: &str,
        count: usize,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = self.log_text(lab);
            let found: Vec<String> = log
                .lines()
                .skip(mark)
                .filter(|line| matches(line))
                .map(String::from)
                .collect();
            if found.len() >= count {
                return found;
            }
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            assert!(
                Instant::now() < deadline,
                "{self:?} logged {} of {count} times {what}; its last lines (newest first): {tail:#?}",
                found.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What came back on an attacker's connection.
#[derive(Debug)]
enum Answer {
    Frame(Frame),
    Closed,
}

/// One attacker connection: a raw TCP stream to a victim, every read bounded by a deadline.
struct Attacker {
    stream: TcpStream,
    /// Its local address, which is how the victim's log names it.
    name: String,
}

impl Attacker {
    fn connect(port: u16) -> Attacker {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the victim");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let name = stream.local_addr().expect("local addr").to_string();
        Attacker { stream, name }
    }

    fn send(&self, bytes: &[u8]) {
        // The victim may already have closed the connection: what it did is what the test checks.
        let _ = (&self.stream).write_all(bytes);
    }

    fn send_frame(&self, frame: &Frame) {
        self.send(&frame_bytes(frame));
    }

    /// Half-closes the connection: the victim reads end of file after what was sent.
    fn stop_sending(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Opens the connection as a caller would, proving `secret` (see [`auth::open`]).
    fn open(&self, opening: Frame, secret: &Secret) -> tom::error::Result<()> {
        auth::open(&self.stream, opening, Some(secret), soon(), "the victim")
    }

    /// The next frame other than a heartbeat (or a member's greeting), or the connection's end.
    fn next_answer(&self) -> Answer {
        loop {
            match wire::read_frame(&mut &self.stream, wire::FRAME_LEN_MAX) {
                // A member greets every rejoin connection with its directory and its life first.
                Ok(Frame::Heartbeat | Frame::Roster(wire::Roster { from: Some(_), .. })) => {}
                Ok(frame) => return Answer::Frame(frame),
                Err(ReadError::Eof | ReadError::EofMidFrame) => return Answer::Closed,
                Err(ReadError::Io(error)) if is_reset(&error) => return Answer::Closed,
                Err(error) => panic!("{}: no answer from the victim: {error}", self.name),
            }
        }
    }

    /// Expects a refusal, then the connection's end; returns the reason.
    fn expect_refusal(&self) -> String {
        match self.next_answer() {
            Answer::Frame(Frame::Refuse { reason }) => {
                self.expect_closed();
                reason
            }
            other => panic!("{}: expected a refusal, got {other:?}", self.name),
        }
    }

    /// Expects a refusal (then the end), or the end at once: a victim that refuses a connection with
    /// unread bytes in it may reset it before the refusal can be read.
    fn expect_refusal_or_closed(&self) {
        if let Answer::Frame(frame) = self.next_answer() {
            assert!(
                matches!(frame, Frame::Refuse { .. }),
                "{}: expected a refusal or a closed connection, got {frame:?}",
                self.name
            );
            self.expect_closed();
        }
    }

    fn expect_closed(&self) {
        match self.next_answer() {
            Answer::Closed => {}
            Answer::Frame(frame) => panic!("{}: expected the connection to close, got {frame:?}", self.name),
        }
    }

    /// Expects `frame` (heartbeats aside).
    fn expect_frame(&self, what: &str, matches: impl Fn(&Frame) -> bool) -> Frame {
        match self.next_answer() {
            Answer::Frame(frame) if matches(&frame) => frame,
            other => panic!("{}: expected {what}, got {other:?}", self.name),
        }
    }
}

fn is_reset(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    wire::encode(frame, &mut bytes);
    bytes
}

/// A frame body of one byte whose tag names nothing.
const UNKNOWN_TAG_FRAME: [u8; 5] = [0, 0, 0, 1, 0xEE];

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Asserts that every member of `ranks` delivers [`PROGRESS`] more messages from now on.
fn assert_still_delivering(lab: &Lab, ranks: &[u16], after: &str) {
    let counts: Vec<usize> = ranks.iter().map(|&rank| lab.member(rank).deliver_count()).collect();
    for (&rank, &count) in ranks.iter().zip(&counts) {
        lab.member(rank).wait_for_delivers(count + PROGRESS);
    }
    println!("  after {after}: ranks {ranks:?} still deliver (they had delivered {counts:?})");
}

// ---------------------------------------------------------------------------------------------------
// Attacks by strangers: each takes the lab, the victim and the test's random generator.

type Attack = fn(&Lab, Victim, &mut Rng);

const STRANGER_ATTACKS: [(&str, Attack); 7] = [
    ("random bytes", random_garbage),
    ("truncated frames", truncated_frames),
    ("huge length prefixes", huge_length_prefixes),
    ("a valid handshake, then garbage", handshake_then_garbage),
    ("a wrong group", wrong_group),
    ("a wrong secret, none, a forged proof", wrong_secret),
    ("a replayed handshake", replayed_handshake),
];

fn random_garbage(lab: &Lab, victim: Victim, rng: &mut Rng) {
    let attacker = Attacker::connect(victim.port(lab));
    let len = rng.range(1, 512) as usize;
    attacker.send(&random_bytes(rng, len));
    attacker.stop_sending();
    attacker.expect_refusal_or_closed();
    let refused = format!("refused {}", attacker.name);
    let dropped = format!("dropped {}", attacker.name);
    let what = format!("{refused:?} or {dropped:?}");
    victim.wait_for_log_lines(lab, 0, &what, 1, |line| {
        line.contains(&refused) || line.contains(&dropped)
    });
}

fn truncated_frames(lab: &Lab, victim: Victim, rng: &mut Rng) {
    let whole = frame_bytes(&victim.opening(GROUP, Some(auth::fresh_nonce())));
    // The stream ends inside the frame its length prefix announced.
    let attacker = Attacker::connect(victim.port(lab));
    let cut = rng.range(1, whole.len() as u64) as usize;
    attacker.send(&whole[..cut]);
    attacker.stop_sending();
    attacker.expect_closed();
    victim.wait_for_log(
        lab,
        &[&format!("dropped {}", attacker.name), "in the middle of a frame"],
    );
    // A length prefix that matches a body cut short: the fields run out before the frame is complete.
    let attacker = Attacker::connect(victim.port(lab));
    let body = &whole[wire::LENGTH_PREFIX_LEN..];
    let cut = rng.range(1, body.len() as u64) as usize;
    attacker.send(&[&(cut as u32).to_be_bytes()[..], &body[..cut]].concat());
    attacker.expect_refusal_or_closed();
    victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "truncated frame"]);
}

fn huge_length_prefixes(lab: &Lab, victim: Victim, _rng: &mut Rng) {
    for len in [u32::MAX, wire::HANDSHAKE_LEN_MAX as u32 + 1] {
        let attacker = Attacker::connect(victim.port(lab));
        attacker.send(&len.to_be_bytes());
        let reason = attacker.expect_refusal();
        assert!(reason.contains("exceeds the maximum"), "{reason}");
        victim.wait_for_log(
            lab,
            &[&format!("refused {}", attacker.name), &format!("length {len} exceeds")],
        );
    }
}

fn handshake_then_garbage(lab: &Lab, victim: Victim, rng: &mut Rng) {
    // A valid opening, answered with a challenge; garbage where the proof belongs.
    let attacker = Attacker::connect(victim.port(lab));
    attacker.send_frame(&victim.opening(GROUP, Some(auth::fresh_nonce())));
    attacker.expect_frame("a challenge", |f| matches!(f, Frame::Challenge { .. }));
    attacker.send(&UNKNOWN_TAG_FRAME);
    let reason = attacker.expect_refusal();
    assert!(reason.contains("unknown frame tag"), "{reason}");
    victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "unknown frame tag"]);

    // A whole handshake with the secret, then garbage.
    match victim {
        Victim::Helper => {
            // The helper reads nothing after a registration: after formation it refuses a first-timer.
            let attacker = Attacker::connect(victim.port(lab));
            attacker
                .open(victim.opening(GROUP, None), &secret())
                .expect("handshake");
            attacker.send(&random_bytes(rng, 64));
            attacker.expect_refusal_or_closed();
            victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "already formed"]);
        }
        Victim::Member(rank) => {
            // A rejoin connection (the only kind that stays open after its handshake) for a live rank.
            let claimed = if rank == 1 { 2 } else { 1 };
            let garbage = [random_bytes(rng, 64), u32::MAX.to_be_bytes().to_vec()];
            for (bytes, why) in garbage.iter().zip(["", "exceeds the maximum"]) {
                let attacker = open_rejoin_connection(lab, victim, claimed, 1);
                let mark = victim.log_mark(lab);
                attacker.send(bytes);
                attacker.stop_sending();
                attacker.expect_closed();
                victim.wait_for_log_after(
                    lab,
                    mark,
                    &[&format!("of rank {claimed}, asking to rejoin, closed"), why],
                );
            }
        }
    }
}

fn wrong_group(lab: &Lab, victim: Victim, _rng: &mut Rng) {
    let attacker = Attacker::connect(victim.port(lab));
    attacker.send_frame(&victim.opening("another group", None));
    let reason = attacker.expect_refusal();
    assert!(reason.contains("wrong group"), "{reason}");
    victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "wrong group"]);
}

fn wrong_secret(lab: &Lab, victim: Victim, _rng: &mut Rng) {
    // Another secret: the attacker finds the victim's proof wrong, tells it so, and hangs up.
    let attacker = Attacker::connect(victim.port(lab));
    let other = Secret::new("not the group's secret").expect("secret");
    match attacker.open(victim.opening(GROUP, None), &other) {
        Err(Error::Refused(reason)) => assert!(reason.contains("does not know this group's secret"), "{reason}"),
        other => panic!("a handshake with another secret: {other:?}"),
    }
    victim.wait_for_log(lab, &[&format!("dropped {}", attacker.name), "the caller refused us"]);
    // No secret at all.
    let attacker = Attacker::connect(victim.port(lab));
    attacker.send_frame(&victim.opening(GROUP, None));
    let reason = attacker.expect_refusal();
    assert!(reason.contains("requires a secret"), "{reason}");
    victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "requires a secret"]);
    // A forged proof.
    let attacker = Attacker::connect(victim.port(lab));
    attacker.send_frame(&victim.opening(GROUP, Some(auth::fresh_nonce())));
    attacker.expect_frame("a challenge", |f| matches!(f, Frame::Challenge { .. }));
    attacker.send_frame(&Frame::Proof(Proof([0x5a; wire::PROOF_LEN])));
    let reason = attacker.expect_refusal();
    assert!(reason.contains("wrong secret"), "{reason}");
    victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "wrong secret"]);
}

fn replayed_handshake(lab: &Lab, victim: Victim, _rng: &mut Rng) {
    // A legitimate caller, with the secret, goes through a relay that records what it sends.
    let relay = Relay::start(victim.port(lab));
    let legit = Attacker::connect(relay.port);
    legit
        .open(victim.opening(GROUP, None), &secret())
        .expect("the legitimate handshake");
    match victim {
        // The member answers the legitimate status query.
        Victim::Member(_) => {
            legit.expect_frame("a welcome", |f| *f == Frame::Welcome);
            legit.expect_frame("a status report", |f| matches!(f, Frame::StatusReport { .. }));
        }
        // The helper let the legitimate caller prove the secret, then refuses a first-timer.
        Victim::Helper => assert!(legit.expect_refusal().contains("already formed")),
    }
    legit.stop_sending();
    let recorded = relay.recorded();
    // The recording, replayed byte for byte: the victim's challenge carries a fresh nonce, so the
    // recorded proof does not answer it.
    let attacker = Attacker::connect(victim.port(lab));
    attacker.send(&recorded);
    attacker.expect_frame("a challenge", |f| matches!(f, Frame::Challenge { .. }));
    let reason = attacker.expect_refusal();
    assert!(reason.contains("wrong secret"), "{reason}");
    victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "wrong secret"]);
}

/// A TCP relay for one connection to a victim, recording every byte the caller sends.
struct Relay {
    port: u16,
    thread: JoinHandle<Vec<u8>>,
}

impl Relay {
    fn start(victim_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay addr").port();
        let thread = std::thread::spawn(move || {
            let (caller, _) = listener.accept().expect("relay accept");
            let victim = TcpStream::connect(("127.0.0.1", victim_port)).expect("relay connect");
            for stream in [&caller, &victim] {
                stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
            }
            let (mut from_victim, mut to_caller) =
                (victim.try_clone().expect("clone"), caller.try_clone().expect("clone"));
            let back = std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_victim, &mut to_caller);
                let _ = to_caller.shutdown(Shutdown::Write);
            });
            let mut recorded = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                match (&caller).read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        recorded.extend_from_slice(&buffer[..n]);
                        if (&victim).write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = victim.shutdown(Shutdown::Write);
            let _ = back.join();
            recorded
        });
        Relay { port, thread }
    }

    /// Everything the caller sent, once it stopped sending.
    fn recorded(self) -> Vec<u8> {
        self.thread.join().expect("relay thread")
    }
}

// ---------------------------------------------------------------------------------------------------
// Attacks by callers that know the secret.

/// Opens a rejoin connection to `victim` with the secret, claiming `rank` and `incarnation`, and waits
/// for the welcome: the victim now treats it as a restarted process of that rank asking to come back.
fn open_rejoin_connection(lab: &Lab, victim: Victim, rank: u16, incarnation: u64) -> Attacker {
    let mark = victim.log_mark(lab);
    let attacker = Attacker::connect(victim.port(lab));
    let hello = Frame::Hello(Hello {
        group: GROUP.into(),
        rank: Rank(rank),
        incarnation: Incarnation(incarnation),
        process: ProcessId(0xbad),
        purpose: Purpose::Rejoin,
        nonce: None,
    });
    attacker.open(hello, &secret()).expect("rejoin handshake");
    attacker.expect_frame("a welcome", |f| *f == Frame::Welcome);
    victim.wait_for_log_after(lab, mark, &[&format!("connects to rejoin as rank {rank}")]);
    attacker
}

/// A formation hello for `rank` after formation, with the secret: refused.
fn formation_hello_is_refused(lab: &Lab, victim: Victim, rank: u16) {
    let attacker = Attacker::connect(victim.port(lab));
    let hello = Frame::Hello(Hello {
        group: GROUP.into(),
        rank: Rank(rank),
        incarnation: Incarnation(1),
        process: ProcessId(0xbad),
        purpose: Purpose::Form,
        nonce: None,
    });
    attacker.open(hello, &secret()).expect("the secret is right");
    let reason = attacker.expect_refusal();
    assert!(reason.contains("already formed"), "{reason}");
    victim.wait_for_log(lab, &[&format!("refused {}", attacker.name), "already formed"]);
}

/// On a rejoin connection claiming `claimed`: data claiming `claimed` and `other` as origins in `view`,
/// acknowledgements of everything, a join request for `other`; all dropped. Then a join request for
/// `claimed`, which is refused with a reason containing `refusal`.
fn speak_for_others(
    lab: &Lab,
    victim: Victim,
    attacker: &Attacker,
    claimed: u16,
    other: u16,
    view: ViewId,
    refusal: &str,
) {
    let mark = victim.log_mark(lab);
    for (seq, origin) in [claimed, other].into_iter().enumerate() {
        attacker.send_frame(&Frame::Protocol(Message::Data {
            view,
            batch: Batch::new(Multicast {
                origin: Rank(origin),
                seq: seq as u64 + 1,
                lamport: 1,
                payload: SPOOFED_PAYLOAD.into(),
            }),
            acks: vec![u64::MAX; 3],
        }));
    }
    attacker.send_frame(&Frame::Protocol(Message::Ack {
        view,
        acks: vec![u64::MAX; 3],
    }));
    attacker.send_frame(&Frame::Protocol(Message::JoinRequest {
        rank: Rank(other),
        process: ProcessId(0xbad),
    }));
    attacker.send_frame(&Frame::Protocol(Message::JoinRequest {
        rank: Rank(claimed),
        process: ProcessId(0xbad),
    }));
    let answer = attacker.expect_frame("a join refusal", |f| {
        matches!(f, Frame::Protocol(Message::JoinRefused { .. }))
    });
    let Frame::Protocol(Message::JoinRefused { reason }) = answer else {
        unreachable!()
    };
    assert!(reason.contains(refusal), "{reason}");
    // The core never sees them: a data message is held until a view admits the connection's rank (it
    // never will), a join request for another rank is dropped.
    victim.wait_for_log_after(lab, mark, &["data frame on connection", "held until a view"]);
    victim.wait_for_log_after(lab, mark, &["unexpected join-request frame on connection", "dropped"]);
}

// ---------------------------------------------------------------------------------------------------
// The end of every test.

/// Stops the load, waits until the members of `ranks` are quiet and agree, and checks the sequences:
/// identical, each written line delivered once, nothing spoofed delivered, and every process's stdout
/// (`also`: lives no longer in the lab) passes the `tom-check` rules.
fn stop_and_check(mut lab: Lab, load: Load, also: &[&Member]) {
    let written = load.finish(&mut lab);
    let ranks = lab.ranks();
    let position = |member: &Member| state_position(member) + member.deliver_count();
    wait_until_stable("delivered positions", || {
        ranks.iter().map(|&rank| position(lab.member(rank))).collect()
    });
    let whole: Vec<(u16, Vec<String>)> = ranks
        .iter()
        .filter(|&&rank| state_position(lab.member(rank)) == 0)
        .map(|&rank| (rank, lab.member(rank).delivers()))
        .collect();
    assert_identical(&whole);
    let sequence = &whole[0].1;
    assert_each_delivered_once(sequence, &written);
    assert!(
        !sequence.iter().any(|line| line.contains(SPOOFED_PAYLOAD)),
        "an attacker's message was delivered"
    );
    let mut processes: Vec<&Member> = ranks.iter().map(|&rank| lab.member(rank)).collect();
    processes.extend_from_slice(also);
    let positions = assert_logs_pass_check(&processes);
    assert_eq!(
        positions as usize,
        sequence.len(),
        "one global order, which the members delivered whole"
    );
    println!(
        "{} messages delivered; lines written per rank: {:?}",
        sequence.len(),
        written
            .iter()
            .map(|(rank, lines)| (*rank, lines.len()))
            .collect::<Vec<_>>()
    );
}

/// The `STATE` position of a rejoined life, 0 for a member of the first view.
fn state_position(member: &Member) -> usize {
    match member.lines().first().and_then(|line| line.strip_prefix("STATE ")) {
        Some(position) => position.parse().expect("STATE <position>"),
        None => 0,
    }
}

// ---------------------------------------------------------------------------------------------------
// The tests.

/// A group of three whose processes hold the secret [`SECRET`], and the test's random generator.
fn three_with_the_secret(name: &str) -> (Rng, Lab) {
    let rng = Rng::from_env_or_clock();
    let lab = Lab::start_with_secret(name, 3, SECRET, &["--failure-timeout-ms", FAILURE_TIMEOUT_MS]);
    (rng, lab)
}

/// [`three_with_the_secret`], every member loaded, and a member picked at random to attack:
/// (rng, lab, ranks, load, the attacked member's rank).
fn three_under_load(name: &str) -> (Rng, Lab, Vec<u16>, Load, u16) {
    let (mut rng, mut lab) = three_with_the_secret(name);
    let ranks = lab.ranks();
    let load = Load::start(&mut lab, &ranks, PACE, None);
    let member = rng.pick(&ranks, 1)[0];
    (rng, lab, ranks, load, member)
}

#[test]
fn strangers_are_refused_by_the_helper_and_a_member_while_the_group_delivers() {
    let (mut rng, lab, ranks, load, member) = three_under_load("hostile-strangers");
    for victim in [Victim::Helper, Victim::Member(member)] {
        for (what, attack) in STRANGER_ATTACKS {
            println!("{what} against {victim:?}");
            attack(&lab, victim, &mut rng);
            assert_still_delivering(&lab, &ranks, what);
        }
    }
    stop_and_check(lab, load, &[]);
}

#[test]
fn knowing_the_secret_does_not_let_a_caller_speak_for_another_rank_or_an_old_life() {
    let (mut rng, mut lab) = three_with_the_secret("hostile-insiders");
    let ranks = lab.ranks();
    // The attacked member, a live rank the attacker claims, and the rank killed and rejoined.
    let [victim_rank, claimed, killed] = rng.pick(&ranks, 3)[..] else {
        unreachable!()
    };
    let victim = Victim::Member(victim_rank);
    let mut survivors = [victim_rank, claimed];
    survivors.sort_unstable();
    println!("attacking rank {victim_rank}, claiming rank {claimed}; rank {killed} is killed and rejoins");
    let load = Load::start(&mut lab, &survivors, PACE, None);

    println!("rank spoofing at the helper");
    for rejoin in [None, Some(Rank(4))] {
        let attacker = Attacker::connect(lab.helper_port());
        let mut opening = Victim::Helper.opening(GROUP, None);
        if let Frame::Register(register) = &mut opening {
            register.rejoin = rejoin;
        }
        attacker.open(opening, &secret()).expect("the secret is right");
        let why = if rejoin.is_some() {
            "cannot rejoin"
        } else {
            "already formed"
        };
        let reason = attacker.expect_refusal();
        assert!(reason.contains(why), "{reason}");
        Victim::Helper.wait_for_log(&lab, &[&format!("refused {}", attacker.name), why]);
    }
    println!("rank spoofing at rank {victim_rank}");
    formation_hello_is_refused(&lab, victim, claimed);
    let attacker = open_rejoin_connection(&lab, victim, claimed, 1);
    speak_for_others(&lab, victim, &attacker, claimed, killed, ViewId(1), "is alive");
    let mark = victim.log_mark(&lab);
    drop(attacker);
    victim.wait_for_log_after(&lab, mark, &[&format!("of rank {claimed}, asking to rejoin, closed")]);
    assert_still_delivering(&lab, &ranks, "rank spoofing");

    println!("kill -9 rank {killed}, then rejoin it");
    lab.member_mut(killed).kill9();
    lab.wait_for_view(&survivors, &survivors);
    let old_life = lab.rejoin(killed, &["--failure-timeout-ms", FAILURE_TIMEOUT_MS]);
    let every_rank_again = format!("VIEW {}", ranks_text(ranks.iter().copied()));
    lab.member(victim_rank)
        .wait_until("the view that admits the new life", |lines| {
            lines.iter().filter(|line| **line == every_rank_again).count() >= 2
        });
    println!("the old incarnation of rank {killed} at rank {victim_rank}");
    formation_hello_is_refused(&lab, victim, killed);
    let attacker = open_rejoin_connection(&lab, victim, killed, 1);
    speak_for_others(
        &lab,
        victim,
        &attacker,
        killed,
        claimed,
        ViewId(1),
        &format!("rank {killed}"),
    );
    drop(attacker);
    assert_still_delivering(&lab, &ranks, "the old incarnation's connection");

    stop_and_check(lab, load, &[&old_life]);
}

#[test]
fn a_thousand_idle_connections_are_capped_and_timed_out_while_the_group_delivers() {
    let (_, lab, ranks, load, member) = three_under_load("hostile-flood");
    let victims = [Victim::Helper, Victim::Member(member)];
    println!("{FLOOD} idle connections to each of {victims:?}");
    let floods: Vec<Vec<TcpStream>> = victims
        .iter()
        .map(|victim| {
            let port = victim.port(&lab);
            (0..FLOOD)
                .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
                .collect()
        })
        .collect();
    assert_still_delivering(&lab, &ranks, "the flood opened");
    // Beyond the cap on pending handshakes a connection is closed at once; the others when the
    // handshake deadline passes. Either way every one ends, and the victim logs each one and why.
    let mut closed_by_victim = 0;
    for ((victim, streams), silent) in victims
        .iter()
        .zip(&floods)
        .zip(["before registering", "before its hello"])
    {
        for stream in streams {
            stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
            match (&*stream).read(&mut [0u8; 16]) {
                Ok(0) => {}
                Err(error) if is_reset(&error) => {}
                other => panic!("{victim:?}: an idle connection got {other:?} instead of being closed"),
            }
            closed_by_victim += 1;
        }
        let capped = "too many pending handshakes";
        let timed_out = format!("deadline passed {silent}");
        let logged = victim.wait_for_log_lines(&lab, 0, "a flood connection refused or dropped", FLOOD, |line| {
            line.contains("127.0.0.1:") && (line.contains(capped) || line.contains(&timed_out))
        });
        let at_once = logged.iter().filter(|line| line.contains(capped)).count();
        println!(
            "  {victim:?}: {at_once} refused at once ({capped}), {} dropped at the handshake deadline",
            logged.len() - at_once
        );
        assert_eq!(logged.len(), FLOOD, "one line per connection");
        assert!(
            at_once > 0 && at_once < FLOOD,
            "the cap let some wait and closed the rest"
        );
    }
    assert_eq!(closed_by_victim, 2 * FLOOD);
    assert_still_delivering(&lab, &ranks, "the flood timed out");
    drop(floods);

    // The listener serves again: a status query with the secret is answered.
    let address = format!("127.0.0.1:{}", Victim::Member(member).port(&lab));
    let report = tom::runtime::query_status(&address, GROUP, Some(&secret()), Duration::from_secs(10))
        .expect("a status query after the flood");
    println!("status of rank {member} after the flood:\n{report}");
    stop_and_check(lab, load, &[]);
}
