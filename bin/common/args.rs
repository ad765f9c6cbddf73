//! Command-line parsing shared by the programs: `--flag value` and `--flag=value`, yes/no flags that
//! take no value, and messages that name the flag that is wrong.
//!
//! A program lists its flags once ([`Flag`]); [`parse`] turns the arguments into `(name, value)` pairs
//! in order, or into the message to print before the usage (empty for `--help`). An unknown flag is
//! reported as unknown — also when it is the last argument, or a misspelt yes/no flag — with the known
//! flag it most resembles.
#![allow(dead_code)]

use std::net::ToSocketAddrs;
use std::str::FromStr;

/// One flag a program understands.
pub struct Flag {
    /// Its name, with the leading `--`.
    pub name: &'static str,
    /// Whether it takes a value (`--port 10000`); otherwise it is a yes/no flag (`--exit-on-eof`).
    pub takes_value: bool,
}

/// A flag that takes a value.
pub const fn value(name: &'static str) -> Flag {
    Flag {
        name,
        takes_value: true,
    }
}

/// A yes/no flag: present or absent, no value.
pub const fn switch(name: &'static str) -> Flag {
    Flag {
        name,
        takes_value: false,
    }
}

/// The arguments as `(flag name, value)` pairs, in order; the value is `None` for a yes/no flag. `Err`
/// carries the message to print before the usage, empty for `--help`/`-h`.
pub fn parse(
    args: impl Iterator<Item = String>,
    flags: &[Flag],
) -> Result<Vec<(&'static str, Option<String>)>, String> {
    let mut args = args.peekable();
    let mut parsed = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(String::new());
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let Some(flag) = flags.iter().find(|flag| flag.name == name) else {
            return Err(unknown(name, flags));
        };
        if !flag.takes_value {
            if inline.is_some() {
                return Err(format!("{} takes no value (write just {})", flag.name, flag.name));
            }
            parsed.push((flag.name, None));
            continue;
        }
        let value = match inline {
            Some(value) => value,
            // The next argument is the value, unless it is one of the flags: then this one has none.
            None => match args.peek() {
                Some(next) if !is_flag(next, flags) => args.next().unwrap_or_default(),
                _ => return Err(format!("{} needs a value", flag.name)),
            },
        };
        parsed.push((flag.name, Some(value)));
    }
    Ok(parsed)
}

/// Whether `arg` names one of `flags` (or asks for help), with or without `=value`.
fn is_flag(arg: &str, flags: &[Flag]) -> bool {
    let name = arg.split_once('=').map_or(arg, |(name, _)| name);
    name == "--help" || flags.iter().any(|flag| flag.name == name)
}

/// The message for an argument that is not one of `flags`, with the closest flag when one is close.
fn unknown(arg: &str, flags: &[Flag]) -> String {
    if !arg.starts_with('-') {
        return format!("unexpected argument {arg} (every value follows its flag, as in --port 10000)");
    }
    let closest = flags
        .iter()
        .map(|flag| (edit_distance(arg, flag.name), flag.name))
        .min()
        .filter(|(distance, name)| *distance <= 2.max(name.len() / 4));
    match closest {
        Some((_, name)) => format!("unknown argument {arg} (did you mean {name}?)"),
        None => format!("unknown argument {arg}"),
    }
}

/// Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `value` as a number for `flag`, or the message that says what is wrong.
pub fn number<T: FromStr>(flag: &str, value: &str, what: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("bad {flag} {value:?}: expected {what}"))
}

/// Checks that `value` is `HOST:PORT` with a port 1..=65535 and a host that resolves; `flag` names it
/// in the message. Resolution happens here so that a typo in a host name is a bad argument.
pub fn host_port(flag: &str, value: &str) -> Result<(), String> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!(
            "{flag} {value:?}: expected HOST:PORT (for example 127.0.0.1:9999)"
        ));
    };
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.is_empty() {
        return Err(format!("{flag} {value:?}: the host is missing (expected HOST:PORT)"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => {}
        _ => return Err(format!("{flag} {value:?}: the port must be a number from 1 to 65535")),
    }
    resolvable(flag, value, bare)
}

/// Checks that `host` (an IP address or a host name) has an address; `value` is what the user wrote.
pub fn resolvable(flag: &str, value: &str, host: &str) -> Result<(), String> {
    match (host, 0).to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{flag} {value:?}: host {host:?} has no address")),
        Err(error) => Err(format!("{flag} {value:?}: cannot resolve host {host:?} ({error})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[value("--helper"), value("--port"), switch("--exit-on-eof")];

    fn run(args: &[&str]) -> Result<Vec<(&'static str, Option<String>)>, String> {
        parse(args.iter().map(|arg| arg.to_string()), FLAGS)
    }

    #[test]
    fn values_follow_their_flag_or_an_equals_sign() {
        let parsed = run(&["--helper", "h:1", "--port=7", "--exit-on-eof"]).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("--helper", Some("h:1".to_string())),
                ("--port", Some("7".to_string())),
                ("--exit-on-eof", None)
            ]
        );
    }

    #[test]
    fn a_misspelt_switch_is_unknown_not_missing_its_value() {
        let error = run(&["--exit-on-eoff"]).unwrap_err();
        assert_eq!(error, "unknown argument --exit-on-eoff (did you mean --exit-on-eof?)");
        assert_eq!(run(&["--verbose"]).unwrap_err(), "unknown argument --verbose");
        assert_eq!(run(&["--port"]).unwrap_err(), "--port needs a value");
        assert_eq!(run(&["--port", "--exit-on-eof"]).unwrap_err(), "--port needs a value");
        assert!(run(&["--exit-on-eof=yes"]).unwrap_err().contains("takes no value"));
    }
}
