//! `tom-helper`: the directory that forms a group of `tom-member` processes.
//!
//! It listens, gives ranks 1..N to the first N members in arrival order, and sends every one of them the
//! full list of (rank, host, port). It keeps running after formation, as the directory a restarted member
//! asks. There is no clean shutdown: SIGTERM or SIGINT simply ends it (std has no signal handling), which
//! the members of a formed group do not notice.

#[path = "common/logger.rs"]
mod logger;

use std::path::Path;
use std::process::ExitCode;

use log::{error, info};
use tom::auth::Secret;
use tom::registry::{self, Settings};
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

Logs go to stderr (level from RUST_LOG, default info). SIGTERM/SIGINT simply end it.";

/// What the command line asks for.
struct Args {
    size: u16,
    port: u16,
    bind: String,
    group: String,
    cookie_file: Option<String>,
}

/// Parses the command line; `Err` carries the message to print before the usage (empty for `--help`).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        size: 0,
        port: 9999,
        bind: "0.0.0.0".to_string(),
        group: tom::formation::GROUP_DEFAULT.to_string(),
        cookie_file: None,
    };
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size" => parsed.size = value.parse().map_err(|_| format!("bad --size {value:?}"))?,
            "--port" => parsed.port = value.parse().map_err(|_| format!("bad --port {value:?}"))?,
            "--bind" => parsed.bind = value,
            "--group" => parsed.group = value,
            "--cookie-file" => parsed.cookie_file = Some(value),
            _ => return Err(format!("unknown argument {flag:?}")),
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
    let mut settings = Settings::new(args.size, args.group.clone());
    if let Some(path) = &args.cookie_file {
        match Secret::from_file(Path::new(path)) {
            Ok(secret) => settings.secret = Some(secret),
            Err(err) => {
                error!("{err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let listener = match net::bind_probing(&args.bind, args.port, 1) {
        Ok(listener) => listener,
        Err(err) => {
            error!("cannot listen on {}:{}: {err}", args.bind, args.port);
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
