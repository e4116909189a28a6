//! `airlock doctor`: what works on this host and what does not, before or
//! after `airlock serve`, each line with what to do about it.
//!
//! The checks look at the same settings `serve` would run with (flags,
//! environment, config file) and change nothing on the host: the eBPF
//! programs are loaded into the kernel (the verifier is the only judge of
//! whether they run here) but never attached, ports are bound and released
//! at once, the database is only connected to.
//!
//! A check is `ok` (works), `warn` (works, with a limit the operator should
//! know, or a part that is off) or `fail` (`serve` would not start, or a
//! promise would not hold): the command exits non-zero on any `fail`.

mod database;
mod docker;
mod files;
mod host;
mod intercept;
mod ports;
mod trust;

use serde::Serialize;

use crate::config::Settings;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short and stable (scripts match on it), e.g. `kernel`, `ebpf`.
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in the order a newcomer reads them: the host, how agents
/// would be intercepted (and Docker's part in it), the database, the ports, the files, who trusts
/// the CA.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Whether a daemon holds this data directory now (the checks then
    /// expect its ports to be taken by it).
    pub daemon_running: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// Runs every check for `settings`.
pub async fn run(settings: &Settings) -> Report {
    let data_dir = crate::datadir::DataDir::new(&settings.data_dir);
    let daemon = data_dir.running_daemon();
    let mut checks = host::checks();
    checks.extend(intercept::checks(&settings.intercept, daemon.is_some()));
    checks.push(docker::check());
    checks.push(database::check(&settings.database, daemon.is_some()).await);
    checks.extend(ports::checks(settings, daemon));
    checks.extend(files::checks(&settings.data_dir));
    checks.extend(trust::checks(&settings.data_dir));
    Report {
        daemon_running: daemon.is_some(),
        checks,
    }
}
