//! `tom-member`: one member of a group, for the lab.
//!
//! It forms the group through the helper, prints `JOINED <rank> <size>`, then multicasts every stdin
//! line as one message and prints the group's total order:
//!
//! ```text
//! JOINED <rank> <size>                      once every connection of the mesh is up
//! VIEW <r1,r2,...>                          at formation and at every view change (ascending ranks)
//! DELIVER <origin_rank> <lamport> <payload> each delivered message, in delivery order
//! ```
//!
//! Restarted with `--rejoin RANK` after a crash, it comes back as a new life of RANK: it first prints
//! `STATE <position>` (how many messages the group delivered before its first delivery), then
//! `JOINED <rank> <size>`, then VIEW and DELIVER lines from its join point on.
//!
//! stdout carries only these lines, written by their own thread in batches and flushed whenever no
//! delivery is waiting; logs go to stderr. A payload byte that would break the line (newline, carriage
//! return, backslash, other control bytes, bytes that are not UTF-8) is escaped (`\n`, `\r`, `\\`,
//! `\xHH`). EOF on stdin does not end the member; with `--exit-on-eof` it waits until its own messages
//! are delivered, leaves cleanly and exits 0. Excluded from the group, it exits 3; if its protocol
//! thread fails (a panic: a bug), it says so on stderr and exits 1, and the group sees it crashed.
//!
//! With `--trace FILE` it also writes one JSON line per protocol event to FILE as it happens (see
//! `tom::trace`); `tom-diagram` draws such traces.
//!
//! SIGTERM or SIGINT simply end it (std has no signal handling): its peers see a closed connection, as
//! after a crash.

#[path = "common/args.rs"]
mod args;
#[path = "common/logger.rs"]
mod logger;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crossbeam_channel::Receiver;
use log::{error, info, warn};
use tom::{Config, Error, Event, Events, Member, Rank, RecvError, Secret, ViewId};

const USAGE: &str = "\
usage: tom-member --helper HOST:PORT [--host ADVERTISED_HOST] [--port FIRST_PORT]
                  [--group NAME] [--rejoin RANK] [--peer HOST:PORT]... [--port-span N]
                  [--exit-on-eof] [--rejoin-when-excluded] [--failure-timeout-ms MS]
                  [--join-timeout-ms MS] [--trace FILE] [--cookie-file PATH]
       tom-member --status HOST:PORT [--group NAME] [--cookie-file PATH]

Joins a group formed by tom-helper, multicasts each stdin line as one message and
prints the group's total order:
  JOINED <rank> <size>, VIEW <r1,r2,...>, DELIVER <origin_rank> <lamport> <payload>

  --helper HOST:PORT       the helper's address, required
  --host HOST              host name or IP address the other members dial to reach this one
                           (default: this machine's address on the route to the helper)
  --port FIRST_PORT        first port to try for this member's listener (default 10000);
                           the next free one upward is used
  --port-span N            how many ports to try from FIRST_PORT (default 100)
  --group NAME             group name (default tom)
  --cookie-file PATH       the group's secret (the file's bytes, trailing white space
                           dropped): every connection, to the helper, between members and
                           for --status, proves it by challenge-response (HMAC-SHA-256);
                           the helper and every member need the same file
  --rejoin RANK            come back as RANK after a crash: prints STATE <position>, then
                           JOINED, then the group's order from its join point on
  --peer HOST:PORT         with --rejoin: a live member to ask for the group when the
                           helper is gone (repeatable)
  --join-timeout-ms MS     with --rejoin: give up if not admitted within MS (default 60000)
  --exit-on-eof            at the end of stdin, wait until this member's messages are
                           delivered, leave the group cleanly and exit 0
  --rejoin-when-excluded   when the group excludes this member (it was suspected, e.g. after
                           a pause), come back as a new life of its rank (STATE, JOINED, ...)
                           instead of exiting 3 (default: exit, so a lab run shows it)
  --failure-timeout-ms MS  suspect a peer silent for longer than this (default 1500)
  --trace FILE             write one JSON line per protocol event (send, receive, ack,
                           deliver, view, suspicion, ...) to FILE as it happens; tom-diagram
                           draws such traces
  --status HOST:PORT       do not join: ask the member listening there why its messages are
                           (not) delivered (its hold-back head and whose acks it waits for,
                           view, incarnations, suspects), print the answer and exit
  --help                   this text

A value may also follow its flag after '=' (--port=10000). Every HOST:PORT needs a port
1..65535 and a host that resolves.
Exit codes: 0 after a clean leave, 1 on an error (helper unreachable, ...), 2 on bad
arguments, 3 when excluded from the group. Logs go to stderr (level from RUST_LOG,
default info). SIGTERM/SIGINT simply end it; the other members see a closed
connection, as after a crash.";

/// How long a clean departure (`--exit-on-eof`) may take before the member gives up.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long forming a new group may take: groups are often started by hand, one terminal at a time.
const FORMATION_TIMEOUT_MS: u64 = 600_000;

/// Exit code when the group excluded this member (or it lost its quorum).
const EXIT_EXCLUDED: u8 = 3;

/// What the command line asks for.
struct Options {
    /// Every setting but the join timeout, which differs between a join and a rejoin.
    config: Config,
    /// `--helper`, empty without one.
    helper: String,
    /// `--host`.
    advertised_host: Option<String>,
    group: String,
    secret: Option<Secret>,
    exit_on_eof: bool,
    rejoin: Option<Rank>,
    join_timeout_ms: u64,
    rejoin_when_excluded: bool,
    status: Option<String>,
    trace: Option<String>,
}

/// Every flag `tom-member` understands; the yes/no flags take no value.
const FLAGS: &[args::Flag] = &[
    args::value("--helper"),
    args::value("--host"),
    args::value("--port"),
    args::value("--port-span"),
    args::value("--group"),
    args::value("--cookie-file"),
    args::value("--failure-timeout-ms"),
    args::value("--rejoin"),
    args::value("--peer"),
    args::value("--status"),
    args::value("--trace"),
    args::value("--join-timeout-ms"),
    args::switch("--exit-on-eof"),
    args::switch("--rejoin-when-excluded"),
];

/// Parses the command line; `Err` carries the message to print before the usage (empty for `--help`).
/// Every argument that cannot work is refused here (exit 2), addresses included: a `HOST:PORT` must
/// have a port 1..=65535 and a host that resolves.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut given = Given {
        join_timeout_ms: 60_000,
        ..Given::default()
    };
    for (flag, value) in args::parse(args, FLAGS)? {
        given.take(flag, value.unwrap_or_default())?;
    }
    if given.helper.is_empty() && given.status.is_none() && (given.rejoin.is_none() || given.peers.is_empty()) {
        return Err("--helper HOST:PORT is required (with --rejoin, --peer can stand in for it)".to_string());
    }
    if !given.peers.is_empty() && given.rejoin.is_none() {
        return Err("--peer only makes sense with --rejoin".to_string());
    }
    Ok(given.into_options())
}

/// The flags' values as given, each checked alone; [`parse_args`] checks them together, and
/// [`Given::into_options`] turns them into the [`Options`].
#[derive(Default)]
struct Given {
    helper: String,
    advertised_host: Option<String>,
    first_port: Option<u16>,
    port_span: Option<u16>,
    group: Option<String>,
    secret: Option<Secret>,
    failure_timeout_ms: Option<u64>,
    exit_on_eof: bool,
    rejoin: Option<Rank>,
    peers: Vec<String>,
    join_timeout_ms: u64,
    rejoin_when_excluded: bool,
    status: Option<String>,
    trace: Option<String>,
}

impl Given {
    /// Takes one flag and its value (empty for a yes/no flag), or says why it cannot work.
    fn take(&mut self, flag: &str, value: String) -> Result<(), String> {
        match flag {
            "--exit-on-eof" => self.exit_on_eof = true,
            "--rejoin-when-excluded" => self.rejoin_when_excluded = true,
            "--helper" => {
                args::host_port(flag, &value)?;
                self.helper = value;
            }
            "--host" => {
                if value.is_empty() || value.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
                    return Err(format!(
                        "--host {value:?}: other members cannot dial it (give this machine's name or address)"
                    ));
                }
                self.advertised_host = Some(value);
            }
            "--port" => self.first_port = Some(args::number(flag, &value, "a port 0..=65535")?),
            "--port-span" => self.port_span = Some(args::number::<u16>(flag, &value, "a count of ports")?),
            "--group" => self.group = Some(value),
            "--cookie-file" => self.secret = Some(Secret::from_file(Path::new(&value)).map_err(|e| e.to_string())?),
            "--failure-timeout-ms" => {
                self.failure_timeout_ms = Some(args::number::<u64>(flag, &value, "milliseconds")?);
            }
            "--rejoin" => match value.parse::<u16>() {
                Ok(rank) if rank > 0 => self.rejoin = Some(Rank(rank)),
                _ => return Err(format!("bad --rejoin {value:?}: expected a rank 1..=65535")),
            },
            "--peer" => {
                args::host_port(flag, &value)?;
                self.peers.push(value);
            }
            "--status" => {
                args::host_port(flag, &value)?;
                self.status = Some(value);
            }
            "--trace" => self.trace = Some(value),
            "--join-timeout-ms" => self.join_timeout_ms = args::number(flag, &value, "milliseconds")?,
            _ => return Err(format!("unknown argument {flag}")),
        }
        Ok(())
    }

    /// The options, with every setting but the join timeout in their `Config`.
    fn into_options(self) -> Options {
        let mut config = if self.helper.is_empty() {
            Config::without_helper()
        } else {
            Config::new(&self.helper)
        };
        if let Some(host) = &self.advertised_host {
            config = config.advertised_host(host);
        }
        if let Some(port) = self.first_port {
            config = config.first_port(port);
        }
        // The library refuses 0 ports and a failure timeout of 0; this program always took them as 1.
        if let Some(span) = self.port_span {
            config = config.port_span(span.max(1));
        }
        if let Some(timeout) = self.failure_timeout_ms {
            config = config.failure_timeout_ms(timeout.max(1));
        }
        let group = self.group.unwrap_or_else(|| tom::formation::GROUP_DEFAULT.to_string());
        config = config.group(&group);
        if let Some(secret) = &self.secret {
            config = config.secret(secret.clone());
        }
        for peer in &self.peers {
            config = config.peer(peer);
        }
        Options {
            config,
            helper: self.helper,
            advertised_host: self.advertised_host,
            group,
            secret: self.secret,
            exit_on_eof: self.exit_on_eof,
            rejoin: self.rejoin,
            join_timeout_ms: self.join_timeout_ms,
            rejoin_when_excluded: self.rejoin_when_excluded,
            status: self.status,
            trace: self.trace,
        }
    }
}

/// Appends `payload` to `line` so that it stays one printable line.
fn escape_into(line: &mut Vec<u8>, payload: &[u8]) {
    // The common case, printable ASCII with nothing to escape, is copied as it is (the same bytes the
    // loop below would write, without decoding each character).
    if payload
        .iter()
        .all(|&b| b == b'\t' || ((0x20..0x7f).contains(&b) && b != b'\\'))
    {
        line.extend_from_slice(payload);
        return;
    }
    let mut rest = payload;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(error) => {
                let (good, bad) = rest.split_at(error.valid_up_to());
                let bad_len = error.error_len().unwrap_or(bad.len());
                (std::str::from_utf8(good).unwrap_or_default(), &bad[..bad_len])
            }
        };
        for ch in valid.chars() {
            match ch {
                '\n' => line.extend_from_slice(b"\\n"),
                '\r' => line.extend_from_slice(b"\\r"),
                '\\' => line.extend_from_slice(b"\\\\"),
                c if c.is_control() && c != '\t' => line.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes()),
                c => line.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        for byte in invalid {
            line.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
        rest = &rest[valid.len() + invalid.len()..];
    }
}

/// How a member's events ended.
enum Ended {
    /// The group excluded this member (or it lost its quorum).
    Excluded(ViewId),
    /// The member left the group cleanly.
    Left,
    /// The member's protocol thread failed (a panic), with the panic's message.
    Failed(String),
    /// The events stopped for another reason (the member was shut down).
    Closed,
}

/// Prints events as contract lines, batching writes and flushing whenever nothing more is waiting,
/// until the member's events end.
fn print_events(first_lines: String, events: Events) -> Ended {
    let mut stdout = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut open = write!(stdout, "{first_lines}").and_then(|()| stdout.flush()).is_ok();
    let mut line = Vec::with_capacity(256);
    loop {
        let event = match events.try_recv() {
            Ok(event) => event,
            Err(RecvError::Empty | RecvError::Timeout) => {
                if open && stdout.flush().is_err() {
                    warn!("stdout closed; deliveries are no longer printed");
                    open = false;
                }
                match events.recv() {
                    Ok(event) => event,
                    Err(_) => break,
                }
            }
            Err(RecvError::Ended) => break,
        };
        line.clear();
        match &event {
            Event::Deliver(delivery) => {
                // Into the reused line buffer: no allocation per delivery.
                let _ = write!(line, "DELIVER {} {} ", delivery.origin.rank, delivery.lamport);
                escape_into(&mut line, delivery.payload.as_bytes());
            }
            Event::View(view) => line.extend_from_slice(format!("VIEW {view}").as_bytes()),
            Event::Joined { .. } => {}
            Event::Left => {
                let _ = stdout.flush();
                return Ended::Left;
            }
            Event::Excluded { view } => {
                let _ = stdout.flush();
                return Ended::Excluded(*view);
            }
            Event::Failed { reason } => {
                let _ = stdout.flush();
                return Ended::Failed(reason.clone());
            }
        }
        if open && !line.is_empty() {
            line.push(b'\n');
            // A closed stdout (the reader went away) must not end the member: stop printing only.
            if stdout.write_all(&line).is_err() {
                warn!("stdout closed; deliveries are no longer printed");
                open = false;
            }
        }
    }
    let _ = stdout.flush();
    Ended::Closed
}

/// Joins (or rejoins as `rank`) and returns the member with the lines to print first.
fn start(options: &Options, rank: Option<Rank>) -> Result<(Member, String), Error> {
    let member = match rank {
        None => Member::join(options.config.clone().join_timeout_ms(FORMATION_TIMEOUT_MS))?,
        // A join timeout of 0 gave up at once; 1 ms does the same.
        Some(rank) => Member::rejoin(
            options.config.clone().join_timeout_ms(options.join_timeout_ms.max(1)),
            rank,
        )?,
    };
    let position = member.join_position();
    let listening = member.local_addr();
    let host = match &options.advertised_host {
        Some(host) => host.clone(),
        None if listening.ip().is_unspecified() => "127.0.0.1".to_string(),
        None => listening.ip().to_string(),
    };
    info!(
        "joined as rank {} of {}; listening on {listening} (ask it: tom-member --status {host}:{})",
        member.rank(),
        member.size(),
        listening.port()
    );
    let mut first_lines = String::new();
    if let Some(position) = position {
        first_lines.push_str(&format!("STATE {position}\n"));
    }
    first_lines.push_str(&format!("JOINED {} {}\n", member.rank(), member.size()));
    Ok((member, first_lines))
}

/// What to print when joining (or rejoining as `rank`) failed with `err`.
///
/// A connection closed during formation is the helper's (it was killed or stopped while this member
/// waited for the roster) when the helper no longer accepts connections; a plain "connection closed"
/// would not say whose.
fn join_error_text(options: &Options, rank: Option<Rank>, err: &Error) -> String {
    let helper = &options.helper;
    // Closed, or reset: a helper killed with bytes of ours still unread resets the connection.
    let closed = matches!(err, Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
    ));
    if closed && rank.is_none() && !helper_listening(helper) {
        return format!(
            "the helper closed the connection before the group formed (nothing listens at {helper} any more: \
             start tom-helper again, then the members)"
        );
    }
    err.to_string()
}

/// Whether something accepts connections at `addr` (`HOST:PORT`) right now.
fn helper_listening(addr: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let Ok(addrs) = addr.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Reads stdin on its own thread: each line (bytes, UTF-8 or not, without its line ending) is one
/// message. The channel closes at the end of input.
fn read_lines() -> Receiver<Vec<u8>> {
    let (lines, received) = crossbeam_channel::bounded(1024);
    std::thread::spawn(move || {
        let mut stdin = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) => {
                    warn!("stdin: {err}; no more input");
                    return;
                }
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    received
}

fn main() -> ExitCode {
    logger::init("tom-member");
    let mut options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tom-member: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(addr) = &options.status {
        return print_status(addr, &options);
    }
    if let Some(path) = &options.trace {
        match tom::trace::TraceSink::create(std::path::Path::new(path)) {
            Ok(sink) => options.config = options.config.clone().trace(sink),
            Err(err) => {
                error!("--trace {path}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    run_lives(&options)
}

/// `--status`: asks the member listening at `addr` and prints its answer.
fn print_status(addr: &str, options: &Options) -> ExitCode {
    match tom::query_status(addr, &options.group, options.secret.as_ref(), Duration::from_secs(5)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            error!("status of {addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Joins (or rejoins) and serves the group until the member leaves, fails or is excluded; one turn
/// per life of this process: a member excluded with --rejoin-when-excluded comes back.
fn run_lives(options: &Options) -> ExitCode {
    let lines = read_lines();
    let mut rank = options.rejoin;
    let mut input_open = true;
    loop {
        let (member, first_lines) = match start(options, rank) {
            Ok(started) => started,
            Err(err) => {
                error!("{}", join_error_text(options, rank, &err));
                // A setting the library found unworkable is a bad argument, like those parse_args refuses.
                return match err {
                    Error::InvalidConfig(_) | Error::InvalidSetting { .. } => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        let (outcome, rank_now) = match serve_life(options, member, first_lines, &lines, &mut input_open) {
            Ok(ended) => ended,
            Err(exit) => return exit,
        };
        match outcome {
            Ended::Excluded(view) if options.rejoin_when_excluded => {
                info!("excluded by view {view}; coming back as a new life of rank {rank_now}");
                rank = Some(rank_now);
            }
            Ended::Excluded(view) => {
                error!("excluded from the group (view {view}); delivering nothing more");
                return ExitCode::from(EXIT_EXCLUDED);
            }
            Ended::Left => return ExitCode::SUCCESS,
            Ended::Failed(reason) => {
                error!("this member failed ({reason}); the group sees it as crashed");
                return ExitCode::FAILURE;
            }
            Ended::Closed => return ExitCode::FAILURE,
        }
    }
}

/// One life of `member`: prints its events (from `first_lines` on) on their own thread and multicasts
/// stdin's `lines` until its events end, leaving at the end of input with `--exit-on-eof`. Returns how
/// the life ended and its rank, once the member is shut down; `Err` is the exit code when the
/// departure cannot be started or takes too long. `input_open` carries over to the next life.
fn serve_life(
    options: &Options,
    member: Member,
    first_lines: String,
    lines: &Receiver<Vec<u8>>,
    input_open: &mut bool,
) -> Result<(Ended, Rank), ExitCode> {
    let events = member.events().clone();
    let (ended_tx, ended) = crossbeam_channel::bounded(1);
    let printer = std::thread::spawn(move || {
        let _ = ended_tx.send(print_events(first_lines, events));
    });
    let mut leaving = false;
    let mut leave_deadline = crossbeam_channel::never();
    let outcome = loop {
        if !*input_open && options.exit_on_eof && !leaving {
            info!("end of stdin; leaving once this member's messages are delivered");
            leaving = true;
            leave_deadline = crossbeam_channel::after(LEAVE_TIMEOUT);
            if let Err(err) = member.start_leave() {
                error!("leave: {err}");
                return Err(ExitCode::FAILURE);
            }
        }
        let line_source = if *input_open {
            lines.clone()
        } else {
            crossbeam_channel::never()
        };
        crossbeam_channel::select! {
            recv(line_source) -> line => match line {
                Ok(line) => multicast_line(&member, line),
                Err(_) => {
                    *input_open = false;
                    if !options.exit_on_eof {
                        info!("end of stdin; still a member (use --exit-on-eof to leave at the end of input)");
                    }
                }
            },
            recv(ended) -> outcome => break outcome.unwrap_or(Ended::Closed),
            recv(leave_deadline) -> _ => {
                error!("leave: the group did not complete this member's departure within {LEAVE_TIMEOUT:?}");
                return Err(ExitCode::FAILURE);
            }
        }
    };
    let _ = printer.join();
    let rank_now = member.rank();
    member.shutdown();
    Ok((outcome, rank_now))
}

/// Multicasts one stdin line; a refusal is logged, not fatal (a line too long is skipped).
fn multicast_line(member: &Member, line: Vec<u8>) {
    match member.multicast(line) {
        Ok(_) => {}
        Err(err @ Error::PayloadTooLarge { .. }) => warn!("line not multicast: {err}"),
        Err(err) => info!("multicast refused: {err}"),
    }
}
