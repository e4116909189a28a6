//! Host builds of the daemon: `cargo build -p airlock`, `cargo test`, and
//! running `airlock serve` in the foreground.

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::cmd;

const PACKAGE: &str = "airlock";
const BINARY: &str = "airlock";

pub fn build_airlock(release: bool) -> Result<()> {
    let mut cargo = cmd::host_cargo();
    cargo
        .current_dir(cmd::workspace_root()?)
        .args(["build", "-p", PACKAGE]);
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo)
}

/// `cargo test --workspace ARGS...`; returns its exit status as ours.
/// What the test binaries reported, added up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test --workspace ARGS`, streaming its output, and adds up
/// the results of every test binary: the last line a reader sees is the
/// whole suite's count, not the last binary's (often doc-tests with 0).
/// The harness keeps its leak-scan evidence in `evidence`.
pub fn test(args: &[String], evidence: &std::path::Path) -> Result<(ExitCode, Totals)> {
    use std::io::{BufRead, BufReader, Write};
    let mut cargo = cmd::host_cargo();
    cargo
        .current_dir(cmd::workspace_root()?)
        .env(crate::leaks::ENV, evidence)
        .args(["test", "--workspace"])
        .args(args)
        .stdout(std::process::Stdio::piped());
    let mut child = cargo
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::display(&cargo)))?;
    let mut totals = Totals::default();
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout().lock();
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test's output")?;
            totals.add_line(&line);
            let _ = writeln!(out, "{line}");
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{}`", cmd::display(&cargo)))?;
    if !status.success() {
        eprintln!("xtask: `{}` failed ({status})", cmd::display(&cargo));
    }
    let code = match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal.
        None => ExitCode::FAILURE,
    };
    Ok((code, totals))
}

/// The host target directory: `$CARGO_TARGET_DIR` if the user set one,
/// else `<workspace>/target`.
fn target_dir() -> Result<PathBuf> {
    let root = cmd::workspace_root()?;
    Ok(
        match env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        },
    )
}

/// Replaces this process with `target/release/airlock serve ARGS...`.
/// Returns only if that could not be started.
pub fn exec_serve(args: &[String]) -> Result<()> {
    let binary = target_dir()?.join("release").join(BINARY);
    let mut command = Command::new(&binary);
    command.arg("serve").args(args);
    exec(command).with_context(|| format!("cannot run {}", binary.display()))
}

#[cfg(unix)]
fn exec(mut command: Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    Err(command.exec().into())
}

#[cfg(not(unix))]
#[allow(clippy::exit)] // stands in for exec(2): the child's status is ours
fn exec(mut command: Command) -> Result<()> {
    let status = command.status()?;
    std::process::exit(status.code().unwrap_or(1));
}

#[cfg(test)]
mod totals_tests {
    use super::Totals;

    #[test]
    fn adds_up_every_binary() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 108 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.91s");
        t.add_line(
            "test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("running 4 tests");
        assert_eq!(
            t,
            Totals {
                passed: 110,
                failed: 3,
                ignored: 1
            }
        );
    }
}
