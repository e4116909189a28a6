//! End-to-end tests of the `airlock` command line against a real daemon:
//! every command's happy path, every kind of bad input (a clear message,
//! exit status 1, and nothing changed), the daemon not running, and a leak
//! check over a whole workflow. One module per command group; the
//! refusal checks they share are here.

#[path = "../support/mod.rs"]
mod support;

mod agent;
mod audit;
mod ca;
mod doctor;
mod leaks;
mod no_daemon;
mod rule;
mod secret;

use serde_json::Value;
use support::*;

/// Runs a command that must be refused: exit 1, nothing on standard
/// output, a message on standard error naming each of `needles`, and the
/// configuration and audit trail exactly as before. Returns the message.
#[track_caller]
pub fn refused(d: &Daemon, args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) -> String {
    let before = d.state();
    let out = match stdin {
        Some(input) => d.cli_stdin(args, input),
        None => d.cli(args),
    };
    let message = out.fails_with(needles).to_owned();
    assert_eq!(d.state(), before, "`airlock {args:?}` changed something");
    message
}

/// Like [`refused`], for the daemon's (not clap's) errors: also one line
/// starting `airlock: error:`.
#[track_caller]
pub fn refused_one_line(d: &Daemon, args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) {
    let message = refused(d, args, stdin, needles);
    assert!(message.starts_with("airlock: error: "), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
}

#[track_caller]
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `secret list --json` as name → object.
pub fn secrets_by_name(d: &Daemon) -> std::collections::BTreeMap<String, Value> {
    json(&d.cli_ok(&["secret", "list", "--json"]))
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

pub fn is_token(text: &str) -> bool {
    text.strip_prefix("alk_").is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}
