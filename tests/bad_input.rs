//! Bad input against the helper and against a member: garbage, a truncated frame, a huge length prefix,
//! silence past the deadline, a wrong group or version, a surplus member, a rank out of range, a rank
//! that by the mesh rule should not dial. Each is refused (a refusal frame where the peer can still read
//! one, else a closed connection), logged with the peer's address, and the group still forms.

mod net_support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use net_support::{capture_logs, check_mesh, form_group, member_config, start_helper, wait_for_log};
use tom::formation;
use tom::types::{Incarnation, ProcessId, Rank};
use tom::wire::{self, Frame, Hello, Purpose, ReadError, Register};

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    stream
}

fn send(stream: &TcpStream, bytes: &[u8]) {
    (&*stream).write_all(bytes).expect("send");
}

fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    wire::encode(frame, &mut bytes);
    bytes
}

/// The frame bytes with the protocol version field (after prefix, tag and magic) set to `version`.
fn with_version(mut bytes: Vec<u8>, version: u16) -> Vec<u8> {
    let at = wire::LENGTH_PREFIX_LEN + 1 + wire::MAGIC.len();
    bytes[at..at + 2].copy_from_slice(&version.to_be_bytes());
    bytes
}

fn register(group: &str, port: u16, rejoin: Option<Rank>) -> Vec<u8> {
    frame_bytes(&Frame::Register(Register {
        group: group.into(),
        host: "127.0.0.1".into(),
        port,
        process: ProcessId(0xbad),
        rejoin,
        admitted: None,
        nonce: None,
    }))
}

fn hello(group: &str, rank: u16) -> Vec<u8> {
    frame_bytes(&Frame::Hello(Hello {
        group: group.into(),
        rank: Rank(rank),
        incarnation: Incarnation(1),
        process: ProcessId(0xbad),
        purpose: Purpose::Form,
        nonce: None,
    }))
}

/// Reads the refusal on `stream`, checks the connection closes after it, and returns its reason.
fn expect_refusal(stream: &TcpStream) -> String {
    let reason = match wire::read_frame(&mut &*stream, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Refuse { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    expect_closed(stream);
    reason
}

fn expect_closed(stream: &TcpStream) {
    match wire::read_frame(&mut &*stream, wire::HANDSHAKE_LEN_MAX) {
        Err(ReadError::Eof) => {}
        Err(ReadError::Io(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
}

/// The peer address the other side logs for our connection.
fn me(stream: &TcpStream) -> String {
    stream.local_addr().expect("local addr").to_string()
}

#[test]
fn helper_refuses_bad_clients_and_still_forms_the_group() {
    capture_logs();
    let helper = start_helper(2, "tom");
    let addr = helper.local_addr();

    let garbage = connect(addr);
    send(&garbage, b"GET / HTTP/1.0\r\n\r\n");
    assert!(expect_refusal(&garbage).contains("exceeds the maximum"));
    wait_for_log(&["helper: refused", &me(&garbage), "exceeds"]);

    let huge = connect(addr);
    send(&huge, &[0xFF, 0xFF, 0xFF, 0xFF]);
    assert!(expect_refusal(&huge).contains("exceeds the maximum"));
    wait_for_log(&["helper: refused", &me(&huge)]);

    let noise = connect(addr);
    send(&noise, &[0, 0, 0, 3, 0xAB, 0xCD, 0xEF]);
    assert!(expect_refusal(&noise).contains("unknown frame tag"));
    wait_for_log(&["helper: refused", &me(&noise), "unknown frame tag"]);

    let truncated = connect(addr);
    send(&truncated, &register("tom", 4000, None)[..9]);
    truncated.shutdown(std::net::Shutdown::Write).expect("shutdown");
    expect_closed(&truncated);
    wait_for_log(&["helper: dropped", &me(&truncated), "middle of a frame"]);

    let silent = connect(addr);
    let started = Instant::now();
    expect_closed(&silent);
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_for_log(&["helper: dropped", &me(&silent), "deadline"]);

    let wrong_group = connect(addr);
    send(&wrong_group, &register("other", 4000, None));
    assert!(expect_refusal(&wrong_group).contains("wrong group"));
    wait_for_log(&["helper: refused", &me(&wrong_group), "wrong group"]);

    let newer = wire::PROTOCOL_VERSION + 1;
    let wrong_version = connect(addr);
    send(&wrong_version, &with_version(register("tom", 4000, None), newer));
    let reason = expect_refusal(&wrong_version);
    assert!(
        reason.contains(&format!("version {}", wire::PROTOCOL_VERSION)),
        "{reason}"
    );
    assert!(reason.contains(&format!("version {newer}")), "{reason}");
    wait_for_log(&["helper: refused", &me(&wrong_version), "version mismatch"]);

    let early_rejoin = connect(addr);
    send(&early_rejoin, &register("tom", 4000, Some(Rank(1))));
    assert!(expect_refusal(&early_rejoin).contains("not formed yet"));

    let group = form_group(addr, 2);
    check_mesh(&group);

    let surplus = connect(addr);
    send(&surplus, &register("tom", 4000, None));
    assert!(expect_refusal(&surplus).contains("already formed"));
    wait_for_log(&["helper: refused", &me(&surplus), "already formed"]);

    let out_of_range = connect(addr);
    send(&out_of_range, &register("tom", 4000, Some(Rank(3))));
    assert!(expect_refusal(&out_of_range).contains("1..=2"));

    // A rejoin after formation is no third member: it gets the roster back and moves nothing (the
    // group has not admitted that process)...
    let formed = helper.members();
    let rejoin = connect(addr);
    send(&rejoin, &register("tom", 4242, Some(Rank(2))));
    match wire::read_frame(&mut &rejoin, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Roster(roster)) => {
            assert_eq!((roster.rank, roster.size), (Rank(2), 2));
            assert_eq!(roster.members, formed);
        }
        other => panic!("expected the roster, got {other:?}"),
    }
    assert_eq!(helper.members(), formed);
    // ...until it registers as admitted: then it moves rank 2.
    let admitted = connect(addr);
    let mut frame = register("tom", 4242, Some(Rank(2)));
    let Ok(Frame::Register(mut request)) = wire::decode(&frame[wire::LENGTH_PREFIX_LEN..]) else {
        panic!("a registration")
    };
    request.admitted = Some(Incarnation(3));
    frame = frame_bytes(&Frame::Register(request));
    send(&admitted, &frame);
    match wire::read_frame(&mut &admitted, wire::HANDSHAKE_LEN_MAX) {
        Ok(Frame::Roster(roster)) => {
            assert_eq!(roster.members.len(), 2);
            assert_eq!(
                (roster.members[1].port, roster.members[1].incarnation),
                (4242, Incarnation(3))
            );
        }
        other => panic!("expected the roster, got {other:?}"),
    }
    assert_eq!(helper.members().len(), 2);
    helper.stop();
}

#[test]
fn member_refuses_strangers_and_still_forms_the_group() {
    capture_logs();
    let helper = start_helper(2, "tom");
    let helper_addr = helper.local_addr();
    let mut config = member_config(helper_addr, net_support::free_port());
    config.handshake_timeout_ms = 500;
    let first = std::thread::spawn(move || formation::form(&config));
    // Wait until the first member registered: it is rank 1, listening, and its roster not yet known.
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        if let Some(entry) = helper.members().first() {
            break entry.port;
        }
        assert!(Instant::now() < deadline, "first member never registered");
        std::thread::sleep(Duration::from_millis(10));
    };
    let member: SocketAddr = ([127, 0, 0, 1], port).into();

    let garbage = connect(member);
    send(&garbage, b"\x00\x00\x00\x05hello");
    expect_refusal(&garbage);
    wait_for_log(&["refused", &me(&garbage), "unknown frame tag"]);

    let huge = connect(member);
    send(&huge, &[0x7F, 0xFF, 0xFF, 0xFF]);
    assert!(expect_refusal(&huge).contains("exceeds the maximum"));

    let truncated = connect(member);
    send(&truncated, &hello("tom", 1)[..7]);
    truncated.shutdown(std::net::Shutdown::Write).expect("shutdown");
    expect_closed(&truncated);
    wait_for_log(&["dropped", &me(&truncated), "middle of a frame"]);

    let silent = connect(member);
    expect_closed(&silent);
    wait_for_log(&["dropped", &me(&silent), "deadline"]);

    let wrong_group = connect(member);
    send(&wrong_group, &hello("other", 1));
    assert!(expect_refusal(&wrong_group).contains("wrong group"));
    wait_for_log(&["refused", &me(&wrong_group), "wrong group"]);

    let wrong_version = connect(member);
    send(&wrong_version, &with_version(hello("tom", 1), 0));
    assert!(expect_refusal(&wrong_version).contains("version mismatch"));
    wait_for_log(&["refused", &me(&wrong_version), "version mismatch"]);

    // Sent before the member knows its rank: held, then judged once the roster arrives.
    let out_of_range = connect(member);
    send(&out_of_range, &hello("tom", 9));
    let should_not_dial = connect(member);
    send(&should_not_dial, &hello("tom", 2));

    let mut second = member_config(helper_addr, net_support::free_port());
    second.handshake_timeout_ms = 500;
    let second = formation::form(&second).expect("second member forms");
    let first = first.join().expect("first thread").expect("first member forms");
    check_mesh(&[first, second]);

    assert!(expect_refusal(&out_of_range).contains("out of range"));
    wait_for_log(&["refused", &me(&out_of_range), "rank 9 out of range"]);
    assert!(expect_refusal(&should_not_dial).contains("should not dial"));
    wait_for_log(&["refused", &me(&should_not_dial), "rank 2 should not dial rank 1"]);
    helper.stop();
}

#[test]
fn helper_caps_clients_that_have_not_registered() {
    capture_logs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut settings = tom::registry::RegistrySettings::new(1, "tom");
    settings.pending_max = 2;
    settings.handshake_timeout_ms = 5_000;
    let helper = tom::registry::RegistryServer::start(listener, settings).expect("helper");
    let idle: Vec<TcpStream> = (0..2).map(|_| connect(helper.local_addr())).collect();
    // Give the accept loop time to count both before the third arrives.
    std::thread::sleep(Duration::from_millis(200));
    let third = connect(helper.local_addr());
    expect_closed(&third);
    wait_for_log(&["helper: refused", &me(&third), "too many pending"]);
    drop(idle);
    helper.stop();
}
