//! The group secret's challenge–response, on real sockets against the real acceptor and helper: the same
//! secret is let in; a wrong secret, a secret on one side only, a forged proof and a replayed handshake
//! are refused, with a reason on both sides.

mod net_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_support::{capture_logs, secret, wait_for_log};
use tom::auth::{self, Secret};
use tom::error::Error;
use tom::formation::{Incoming, Listener, ListenerSettings};
use tom::registry::{RegistryServer, RegistrySettings};
use tom::types::{Incarnation, ProcessId, Rank};
use tom::wire::{self, Frame, Hello, Nonce, Proof, Purpose, Register};

const GROUP: &str = "lab";

fn acceptor(secret: Option<Secret>) -> (Listener, crossbeam_channel::Receiver<Incoming>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    Listener::start(
        listener,
        ListenerSettings {
            group: GROUP.into(),
            handshake_timeout_ms: 2_000,
            pending_max: 16,
            hold_timeout_ms: 2_000,
            secret,
        },
    )
    .expect("acceptor")
}

fn status_hello() -> Frame {
    Frame::Hello(Hello {
        group: GROUP.into(),
        rank: Rank(0),
        incarnation: Incarnation(0),
        process: ProcessId(0xbad),
        purpose: Purpose::Status,
        nonce: None,
    })
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn read(stream: &TcpStream) -> Frame {
    tom::runtime::net::read_frame_before(stream, soon(), wire::HANDSHAKE_LEN_MAX).expect("a frame")
}

fn send(stream: &TcpStream, frame: &Frame) {
    tom::runtime::net::write_frame(stream, frame, Duration::from_secs(5)).expect("write");
}

/// Opens a status connection to `addr` with `secret` and returns what the acceptor answered.
fn open_status(addr: SocketAddr, secret: Option<&Secret>) -> Result<Frame, Error> {
    let stream = TcpStream::connect(addr).expect("connect");
    auth::open(&stream, status_hello(), secret, soon(), "the member")?;
    Ok(read(&stream))
}

#[test]
fn the_same_secret_is_welcomed() {
    let (acceptor, incoming) = acceptor(Some(secret("s3cret")));
    let answer = open_status(acceptor.local_addr(), Some(&secret("s3cret"))).expect("handshake");
    assert_eq!(answer, Frame::Welcome);
    let accepted = incoming.recv_timeout(Duration::from_secs(5)).expect("handed on");
    assert_eq!(accepted.hello.purpose, Purpose::Status);
    assert!(accepted.hello.nonce.is_some(), "the hello carried the caller's nonce");
}

#[test]
fn a_wrong_secret_is_refused_on_both_sides() {
    capture_logs();
    let (acceptor, incoming) = acceptor(Some(secret("right")));
    match open_status(acceptor.local_addr(), Some(&secret("wrong"))) {
        Err(Error::Refused(reason)) => assert!(reason.contains("does not know this group's secret"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The caller told the acceptor why it hung up, and the acceptor logged it.
    wait_for_log(&["dropped", "the caller refused us", "wrong secret"]);
    assert!(
        incoming.try_recv().is_err(),
        "a caller with a wrong secret was handed on"
    );
}

#[test]
fn a_forged_proof_is_refused_with_a_reason() {
    capture_logs();
    let (acceptor, incoming) = acceptor(Some(secret("right")));
    let stream = TcpStream::connect(acceptor.local_addr()).expect("connect");
    let mut hello = status_hello();
    if let Frame::Hello(h) = &mut hello {
        h.nonce = Some(Nonce([9; wire::NONCE_LEN]));
    }
    send(&stream, &hello);
    assert!(matches!(read(&stream), Frame::Challenge { .. }));
    send(&stream, &Frame::Proof(Proof([0; wire::PROOF_LEN])));
    match read(&stream) {
        Frame::Refuse { reason } => assert!(reason.contains("wrong secret"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    wait_for_log(&["refused", "wrong secret: the caller's proof does not match"]);
    assert!(incoming.try_recv().is_err());
}

#[test]
fn a_secret_on_one_side_only_is_refused_with_a_reason() {
    let (with_secret, _incoming) = acceptor(Some(secret("right")));
    match open_status(with_secret.local_addr(), None) {
        Ok(Frame::Refuse { reason }) => assert!(reason.contains("requires a secret"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (without_secret, _incoming) = acceptor(None);
    match open_status(without_secret.local_addr(), Some(&secret("right"))) {
        Err(Error::Refused(reason)) => assert!(reason.contains("has no secret"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_replayed_handshake_is_refused() {
    let (acceptor, incoming) = acceptor(Some(secret("right")));
    // A recording relay between a real caller and the acceptor keeps every byte the caller sent.
    let relay = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let relay_addr = relay.local_addr().expect("addr");
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let target = acceptor.local_addr();
    let recording = Arc::clone(&recorded);
    let relay_thread = std::thread::spawn(move || {
        let (mut caller, _) = relay.accept().expect("accept");
        let mut member = TcpStream::connect(target).expect("connect");
        let mut back = member.try_clone().expect("clone");
        let mut caller_back = caller.try_clone().expect("clone");
        let answers = std::thread::spawn(move || {
            let _ = std::io::copy(&mut back, &mut caller_back);
        });
        let mut buf = [0u8; 4096];
        loop {
            match caller.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recording.lock().unwrap().extend_from_slice(&buf[..n]);
                    if member.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = member.shutdown(std::net::Shutdown::Both);
        let _ = answers.join();
    });
    assert_eq!(
        open_status(relay_addr, Some(&secret("right"))).expect("via relay"),
        Frame::Welcome
    );
    incoming
        .recv_timeout(Duration::from_secs(5))
        .expect("the real caller was handed on");
    relay_thread.join().expect("relay");

    // Replaying the caller's hello and proof: the acceptor's nonce is new, so the old proof fails.
    let replayed = recorded.lock().unwrap().clone();
    let stream = TcpStream::connect(acceptor.local_addr()).expect("connect");
    (&stream).write_all(&replayed).expect("replay");
    assert!(matches!(read(&stream), Frame::Challenge { .. }));
    match read(&stream) {
        Frame::Refuse { reason } => assert!(reason.contains("wrong secret"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(incoming.try_recv().is_err(), "a replayed handshake was handed on");
}

#[test]
fn the_helper_checks_the_secret_before_it_gives_a_rank() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut settings = RegistrySettings::new(1, GROUP);
    settings.secret = Some(secret("right"));
    let helper = RegistryServer::start(listener, settings).expect("helper");
    let register = |secret: Option<&Secret>| {
        let stream = TcpStream::connect(helper.local_addr()).expect("connect");
        let opening = Frame::Register(Register {
            group: GROUP.into(),
            host: "127.0.0.1".into(),
            port: 4_000,
            process: ProcessId(0xbad),
            rejoin: None,
            admitted: None,
            nonce: None,
        });
        auth::open(&stream, opening, secret, soon(), "the helper").map(|()| read(&stream))
    };
    assert!(matches!(register(Some(&secret("wrong"))), Err(Error::Refused(_))));
    match register(None) {
        Ok(Frame::Refuse { reason }) => assert!(reason.contains("requires a secret")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(helper.members().is_empty(), "a caller without the secret got a rank");
    match register(Some(&secret("right"))) {
        Ok(Frame::Roster(roster)) => assert_eq!(roster.rank, Rank(1)),
        other => panic!("expected the roster, got {other:?}"),
    }
    helper.stop();
}

#[test]
fn a_secret_file_drops_trailing_white_space_and_refuses_empty_files() {
    let dir = std::env::temp_dir().join(format!("tom-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let with_newline = dir.join("a.cookie");
    std::fs::write(&with_newline, b"abc\n").expect("write");
    let without = dir.join("b.cookie");
    std::fs::write(&without, b"abc").expect("write");
    let empty = dir.join("c.cookie");
    std::fs::write(&empty, b" \n").expect("write");
    let (acceptor, _incoming) = acceptor(Some(Secret::from_file(&with_newline).expect("a")));
    let same = Secret::from_file(&without).expect("b");
    assert_eq!(
        open_status(acceptor.local_addr(), Some(&same)).expect("same"),
        Frame::Welcome
    );
    assert!(matches!(Secret::from_file(&empty), Err(Error::InvalidConfig(_))));
    assert!(matches!(
        Secret::from_file(&dir.join("missing")),
        Err(Error::InvalidConfig(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nonces_do_not_repeat() {
    let nonces: std::collections::BTreeSet<[u8; wire::NONCE_LEN]> =
        (0..10_000).map(|_| auth::fresh_nonce().0).collect();
    assert_eq!(nonces.len(), 10_000);
}

/// A member config for a group with `secret`, asking the helper at `helper` (if any).
fn member_config(helper: Option<SocketAddr>, secret: Option<Secret>) -> tom::Config {
    let config = match helper {
        Some(helper) => tom::Config::new(helper),
        None => tom::Config::without_helper(),
    }
    .group(GROUP)
    .bind_host("127.0.0.1")
    .advertised_host("127.0.0.1")
    .first_port(0)
    .failure_timeout_ms(10_000);
    match secret {
        Some(secret) => config.secret(secret),
        None => config,
    }
}

/// Waits until `member` has delivered `count` messages, returning their payloads.
fn deliveries(member: &tom::Member, count: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut payloads = Vec::new();
    while payloads.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match member.events().recv_timeout(left) {
            Ok(tom::Event::Deliver(d)) => payloads.push(d.payload.as_bytes().to_vec()),
            Ok(_) => {}
            Err(_) => panic!("member {} delivered {} of {count}", member.rank(), payloads.len()),
        }
    }
    payloads
}

#[test]
fn a_group_with_a_secret_forms_and_a_member_rejoins_only_with_the_secret() {
    use tom::{HelperConfig, Member};
    let helper = tom::Helper::start(
        "127.0.0.1:0",
        HelperConfig::new(3).group(GROUP).secret(secret("group secret")),
    )
    .expect("helper");
    let helper_addr = helper.local_addr();
    let joining: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || Member::join(member_config(Some(helper_addr), Some(secret("group secret")))))
        })
        .collect();
    let mut members: Vec<Member> = joining
        .into_iter()
        .map(|j| j.join().expect("thread").expect("join with the secret"))
        .collect();
    members.sort_by_key(|m| m.rank());
    for member in &members {
        member
            .multicast(format!("hello from {}", member.rank()).into_bytes())
            .expect("multicast");
    }
    let orders: Vec<_> = members.iter().map(|m| deliveries(m, 3)).collect();
    assert!(orders.iter().all(|o| o == &orders[0]), "one order");

    let crashed = members.pop().expect("rank 3");
    crashed.shutdown();
    let peer = members[0].local_addr().to_string();
    let timeout = Duration::from_secs(5);
    for wrong in [None, Some(secret("guess"))] {
        let join_timeout_ms = timeout.as_millis() as u64;
        let refused = Member::rejoin(
            member_config(Some(helper_addr), wrong.clone()).join_timeout_ms(join_timeout_ms),
            Rank(3),
        );
        assert!(refused.is_err(), "rejoined through the helper with {wrong:?}");
        let refused = Member::rejoin(
            member_config(None, wrong.clone())
                .peer(&peer)
                .join_timeout_ms(join_timeout_ms),
            Rank(3),
        );
        assert!(refused.is_err(), "rejoined through a peer with {wrong:?}");
    }
    let status = tom::query_status(&peer, GROUP, None, timeout);
    assert!(
        matches!(status, Err(Error::Refused(_))),
        "a status query without the secret: {status:?}"
    );
    let status = tom::query_status(&peer, GROUP, Some(&secret("group secret")), timeout).expect("status");
    assert!(status.contains("view"), "{status}");

    let back = Member::rejoin(
        member_config(None, Some(secret("group secret")))
            .peer(peer)
            .join_timeout_ms(30_000),
        Rank(3),
    )
    .expect("rejoin with the secret");
    assert_eq!(back.join_position(), Some(3));
    members.push(back);
    for member in &members {
        member
            .multicast(format!("again from {}", member.rank()).into_bytes())
            .expect("multicast");
    }
    let orders: Vec<_> = members.iter().map(|m| deliveries(m, 3)).collect();
    assert!(
        orders.iter().all(|o| o == &orders[0]),
        "the returning member delivers the group's order"
    );
    members.iter().for_each(Member::shutdown);
    helper.stop();
}
