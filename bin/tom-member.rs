//! `tom-member`: one member of a group, for the lab.
//!
//! It forms the group through the helper and prints `JOINED <rank> <size>` on stdout once every
//! connection of the mesh is up. stdout carries only such contract lines; logs go to stderr. It then
//! holds its connections until it is killed: SIGTERM or SIGINT simply end it (std has no signal
//! handling), and its peers see a closed connection, as after a crash.

#[path = "common/logger.rs"]
mod logger;

use std::io::Write;
use std::process::ExitCode;

use log::error;
use tom::formation::{self, Config};

const USAGE: &str = "\
usage: tom-member --helper HOST:PORT [--host ADVERTISED_HOST] [--port FIRST_PORT]
                  [--group NAME] [--rejoin RANK] [--port-span N]

Joins a group formed by tom-helper and prints `JOINED <rank> <size>` once connected
to every member.

  --helper HOST:PORT   the helper's address, required
  --host HOST          host name or IP address the other members dial to reach this one
                       (default: this machine's address on the route to the helper)
  --port FIRST_PORT    first port to try for this member's listener (default 10000);
                       the next free one upward is used
  --port-span N        how many ports to try from FIRST_PORT (default 100)
  --group NAME         group name (default tom)
  --rejoin RANK        come back as RANK after a crash (not supported yet)
  --help               this text

Logs go to stderr (level from RUST_LOG, default info). SIGTERM/SIGINT simply end it;
the other members see a closed connection, as after a crash.";

/// Parses the command line into a formation config; `Err` carries the message to print before the
/// usage (empty for `--help`).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config::new(String::new());
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| format!("bad {what} {value:?}");
        match flag.as_str() {
            "--helper" => config.helper = value,
            "--host" => config.advertised_host = Some(value),
            "--port" => config.first_port = value.parse().map_err(|_| number("--port"))?,
            "--port-span" => config.port_span = value.parse().map_err(|_| number("--port-span"))?,
            "--group" => config.group = value,
            "--rejoin" => return Err("--rejoin: not supported yet".to_string()),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if config.helper.is_empty() {
        return Err("--helper HOST:PORT is required".to_string());
    }
    Ok(config)
}

fn main() -> ExitCode {
    logger::init("tom-member");
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tom-member: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let formed = match formation::form(&config) {
        Ok(formed) => formed,
        Err(err) => {
            error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "JOINED {} {}", formed.rank, formed.size)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    // Nothing to multicast yet: read stdin to its end, then hold the connections (`formed` stays alive,
    // since this never returns) until killed.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    let _connections = formed;
    loop {
        std::thread::park();
    }
}
