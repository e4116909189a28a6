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
pub fn test(args: &[String]) -> Result<ExitCode> {
    let mut cargo = cmd::host_cargo();
    cargo
        .current_dir(cmd::workspace_root()?)
        .args(["test", "--workspace"])
        .args(args);
    let status = cargo
        .status()
        .with_context(|| format!("cannot start `{}`", cmd::display(&cargo)))?;
    if !status.success() {
        eprintln!("xtask: `{}` failed ({status})", cmd::display(&cargo));
    }
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal.
        None => ExitCode::FAILURE,
    })
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
fn exec(mut command: Command) -> Result<()> {
    let status = command.status()?;
    std::process::exit(status.code().unwrap_or(1));
}
