//! Shared by the tests that form real groups on 127.0.0.1: a helper on port 0, members as threads,
//! a mesh liveness check, and a logger that keeps log lines so tests can assert on them.
//!
//! Deadlines here are generous for what must succeed (a loaded 2-core machine is slow, not broken) and
//! short for what must be refused.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, Once};
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};
use tom::formation::{self, FormationConfig, Formed};
use tom::registry::{RegistryServer, RegistrySettings};
use tom::types::Rank;
use tom::wire::{self, Frame};
use tom::{Member, Secret};

/// A helper for `size` members of `group` on 127.0.0.1, a port picked by the system, with a short
/// handshake deadline so that silent clients are dropped quickly.
pub fn start_helper(size: u16, group: &str) -> RegistryServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind helper");
    let mut settings = RegistrySettings::new(size, group);
    settings.handshake_timeout_ms = 500;
    RegistryServer::start(listener, settings).expect("start helper")
}

/// A port that was free a moment ago: a first port for members to probe upward from.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind probe");
    listener.local_addr().expect("local addr").port()
}

/// A member config for the helper at `helper`, listening on 127.0.0.1 from `first_port` up.
pub fn member_config(helper: SocketAddr, first_port: u16) -> FormationConfig {
    let mut config = FormationConfig::new(helper.to_string());
    config.bind_host = "127.0.0.1".into();
    config.first_port = first_port;
    config.handshake_timeout_ms = 2_000;
    config.connect_attempts = 20;
    config.connect_retry_interval_ms = 100;
    config.formation_timeout_ms = 30_000;
    config
}

/// Forms a group of `size` members through `helper`, each on its own thread, all probing from one first
/// port; returns them sorted by rank.
pub fn form_group(helper: SocketAddr, size: u16) -> Vec<Formed> {
    let first_port = free_port();
    let threads: Vec<_> = (0..size)
        .map(|_| {
            let config = member_config(helper, first_port);
            std::thread::spawn(move || formation::form(&config))
        })
        .collect();
    let mut formed: Vec<Formed> = threads
        .into_iter()
        .map(|t| t.join().expect("member thread").expect("formation"))
        .collect();
    formed.sort_by_key(|f| f.rank);
    formed
}

/// Asserts ranks 1..=N, identical rosters, and that every connection of the mesh carries a frame both
/// ways: each member writes a heartbeat on every link (and on its self-connection), and the other end
/// reads it.
pub fn check_mesh(group: &[Formed]) {
    let size = group.len() as u16;
    for (i, member) in group.iter().enumerate() {
        assert_eq!(member.rank, Rank(i as u16 + 1));
        assert_eq!(member.size, size);
        assert_eq!(member.roster, group[0].roster);
        assert_eq!(member.links.len(), group.len() - 1, "rank {}", member.rank);
    }
    let mut heartbeat = Vec::new();
    wire::encode(&Frame::Heartbeat, &mut heartbeat);
    for member in group {
        for stream in member.links.values() {
            (&*stream).write_all(&heartbeat).expect("write heartbeat");
        }
        let (dialled, accepted) = &member.self_link;
        (&*dialled).write_all(&heartbeat).expect("write self");
        (&*accepted).write_all(&heartbeat).expect("write self back");
    }
    for member in group {
        for (peer, stream) in &member.links {
            expect_heartbeat(stream, &format!("{} from {peer}", member.rank));
        }
        let (dialled, accepted) = &member.self_link;
        expect_heartbeat(accepted, &format!("{} from itself", member.rank));
        expect_heartbeat(dialled, &format!("{} back from itself", member.rank));
    }
}

fn expect_heartbeat(stream: &TcpStream, what: &str) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let frame = wire::read_frame(&mut &*stream, wire::FRAME_LEN_MAX);
    assert!(matches!(frame, Ok(Frame::Heartbeat)), "heartbeat at {what}: {frame:?}");
    stream.set_read_timeout(None).expect("timeout");
}

/// Keeps every log record (warn and above from the library, all levels of `tom`) for assertions.
struct Capture;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("tom")
    }
    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            if std::env::var_os("TOM_TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary).
pub fn capture_logs() {
    INSTALL.call_once(|| {
        static LOGGER: Capture = Capture;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(LevelFilter::Info);
        }
    });
}

/// Waits up to 10 s for a captured log line containing every one of `parts`.
pub fn wait_for_log(parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = LINES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|line| parts.iter().all(|part| line.contains(part)))
            .cloned();
        if let Some(line) = found {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {parts:?}; lines: {:#?}",
            LINES.lock().unwrap_or_else(|e| e.into_inner())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `work` on its own thread and fails the test if it does not finish within `limit`.
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// A group secret from `text` (every test that proves one makes it so).
pub fn secret(text: &str) -> Secret {
    Secret::new(text.as_bytes()).expect("a non-empty secret")
}

/// A helper for `size` members and a group of them formed on 127.0.0.1, each started with the
/// settings `config` gives for the helper's address; the helper keeps running (rejoins ask it).
pub fn start_group_with(size: u16, config: impl Fn(SocketAddr) -> tom::Config) -> (RegistryServer, Vec<Member>) {
    let helper = start_helper(size, "tom");
    let members = form_group(helper.local_addr(), size)
        .into_iter()
        .map(|formed| Member::start(config(helper.local_addr()), formed).expect("start member"))
        .collect();
    (helper, members)
}
