//! `tom-helper`: the directory that forms a group of `tom-member` processes.
//!
//! It listens, gives ranks 1..N to the first N members in arrival order, and sends every one of them the
//! full list of (rank, host, port). It keeps running after formation, as the directory a restarted member
//! asks. There is no clean shutdown: SIGTERM or SIGINT simply ends it (std has no signal handling), which
//! the members of a formed group do not notice.

#[path = "common/args.rs"]
mod args;
#[path = "common/logger.rs"]
mod logger;

use std::path::Path;
use std::process::ExitCode;

use log::{error, info};
use tom::auth::Secret;
use tom::registry::{self, RegistrySettings};
use tom::runtime::net;

const USAGE: &str = "\
usage: tom-helper --size N [--port PORT] [--bind ADDR] [--group NAME] [--cookie-file PATH]

Forms a group of N tom-member processes: gives them ranks 1..N in arrival order and
sends each the list of every member's address. Keeps running after formation, so that
a restarted member can find the others.

  --size N            number of members (1..128), required
  --port PORT         port to listen on (default 9999)
  --bind ADDR         address to listen on (default 0.0.0.0, every interface)
  --group NAME        group name; members of another group are refused (default tom)
  --cookie-file PATH  the group's secret (the file's bytes, trailing white space dropped):
                      every member must prove it by challenge-response; without this
                      flag, members must not have one either
  --help              this text

A value may also follow its flag after '=' (--size=3). Exit codes: 1 on an error (the
port is in use, ...), 2 on bad arguments. Logs go to stderr (level from RUST_LOG,
default info). SIGTERM/SIGINT simply end it.";

/// What the command line asks for.
struct Args {
    size: u16,
    port: u16,
    bind: String,
    group: String,
    secret: Option<Secret>,
}

/// Every flag `tom-helper` understands.
const FLAGS: &[args::Flag] = &[
    args::value("--size"),
    args::value("--port"),
    args::value("--bind"),
    args::value("--group"),
    args::value("--cookie-file"),
];

/// Parses the command line; `Err` carries the message to print before the usage (empty for `--help`).
/// Every argument that cannot work is refused here (exit 2): a bind address that does not resolve, a
/// cookie file that cannot be read.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        size: 0,
        port: 9999,
        bind: "0.0.0.0".to_string(),
        group: tom::formation::GROUP_DEFAULT.to_string(),
        secret: None,
    };
    for (flag, value) in args::parse(args, FLAGS)? {
        let value = value.unwrap_or_default();
        match flag {
            "--size" => parsed.size = args::number(flag, &value, "a number of members")?,
            "--port" => parsed.port = args::number(flag, &value, "a port 0..=65535")?,
            "--bind" => {
                args::resolvable(flag, &value, &value)?;
                parsed.bind = value;
            }
            "--group" => parsed.group = value,
            "--cookie-file" => parsed.secret = Some(Secret::from_file(Path::new(&value)).map_err(|e| e.to_string())?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if parsed.size == 0 {
        return Err("--size N (at least 1) is required".to_string());
    }
    if parsed.size > tom::wire::MEMBERS_MAX {
        return Err(format!(
            "--size {}: at most {} members",
            parsed.size,
            tom::wire::MEMBERS_MAX
        ));
    }
    Ok(parsed)
}

/// What to print when the helper cannot listen on `bind:port`. The library's message for a port it
/// could not bind speaks of a port span, which members have and the helper does not.
fn listen_error_text(bind: &str, port: u16, err: &tom::error::Error) -> String {
    let tom::error::Error::PortsExhausted { .. } = err else {
        return format!("cannot listen on {bind}:{port}: {err}");
    };
    // Ask the system again, only to say which of the two refusals it is.
    let why = match std::net::TcpListener::bind((bind, port)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            "the port is reserved (ports below 1024 need root)".to_string()
        }
        _ => "the port is in use (another tom-helper, or an old one still running?)".to_string(),
    };
    format!("cannot listen on {bind}:{port}: {why}; choose another with --port, or end the process that holds it")
}

fn main() -> ExitCode {
    logger::init("tom-helper");
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tom-helper: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut settings = RegistrySettings::new(args.size, args.group.clone());
    settings.secret = args.secret;
    let listener = match net::bind_probing(&args.bind, args.port, 1) {
        Ok(listener) => listener,
        Err(err) => {
            error!("{}", listen_error_text(&args.bind, args.port, &err));
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    info!(
        "helper for group {:?} of {} members listening on {addr}{}",
        args.group,
        args.size,
        if settings.secret.is_some() {
            ", secret required"
        } else {
            ""
        }
    );
    match registry::serve(listener, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("helper failed: {err}");
            ExitCode::FAILURE
        }
    }
}
