//! Reading `GET /metrics` on a daemon's dashboard listener: the text as
//! curl got it, and one sample's value.

use std::process::Command;
use std::time::Duration;

use super::daemon::Daemon;
use super::{Output, run};

/// `GET url` with curl, its head included, with a bearer token if given.
pub fn get(url: &str, token: Option<&str>) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-D", "-", url]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    run(&mut cmd, None, Duration::from_secs(15))
}

/// The value of the sample line that starts with `series` (name and
/// labels exactly as encoded).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// One scrape of `daemon`'s `/metrics` with a new admin API token named
/// `name`; panics unless it answers 200.
pub fn scrape(daemon: &Daemon, name: &str) -> String {
    let token = daemon
        .cli_ok(&["admin", "token", "create", name])
        .trim()
        .to_owned();
    let dash = daemon.status_json()["dashboard_addr"]
        .as_str()
        .expect("dashboard_addr")
        .to_owned();
    let out = get(&format!("http://{dash}/metrics"), Some(&token));
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "{out:#?}");
    out.stdout
}
