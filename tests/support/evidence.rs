//! Evidence for the suite-wide leak scan of `cargo xtask test`.
//!
//! With `AIRLOCK_TEST_EVIDENCE=DIR` (the xtask sets it), every secret value
//! a test hands a daemon (`airlock secret add|rotate` on standard input) is
//! recorded in `DIR/secrets`, and each daemon's data directory — its log,
//! the embedded PostgreSQL's files and log, the audit spool, a transcript
//! of every CLI call — is moved under `DIR/data/` when the test ends
//! instead of being removed. After the whole suite the xtask searches all
//! of it for every recorded value (`xtask/src/leaks.rs`). Without the
//! variable nothing is kept.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const ENV: &str = "AIRLOCK_TEST_EVIDENCE";

fn dir() -> Option<PathBuf> {
    std::env::var_os(ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// Records the value given to `airlock ARGS` on standard input when it is
/// a secret's value.
pub fn note_cli_input(args: &[&str], input: &[u8]) {
    let is_secret_value = matches!(args, ["secret", "add" | "rotate", ..]);
    let Some(dir) = dir().filter(|_| is_secret_value) else {
        return;
    };
    let input = String::from_utf8_lossy(input);
    // An OAuth2 secret reads its client secret and refresh token as two
    // lines: each is a value of its own. Any other multi-line input is a
    // value the daemon refuses (and its lines could be ordinary words).
    let oauth2 = args
        .iter()
        .any(|a| matches!(*a, "--oauth2-token-url" | "--refresh-token-stdin"));
    // A GitHub App's private key (PEM) on standard input: each line of
    // its body is recorded (its `-----BEGIN` lines are not secret).
    let pem = args.contains(&"--github-app-id");
    if oauth2 {
        for value in input.lines() {
            record(&dir, value);
        }
    } else if pem {
        for value in input.lines().filter(|l| !l.starts_with("-----")) {
            record(&dir, value);
        }
    } else if !input.trim().contains('\n') {
        record(&dir, &input);
    }
}

/// Records a secret value a test did not pass on the CLI's standard
/// input (an access or refresh token an OAuth2 provider issued).
pub fn note_secret(value: &str) {
    if let Some(dir) = dir() {
        record(&dir, value);
    }
}

fn record(dir: &Path, value: &str) {
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    let _ = fs::create_dir_all(dir);
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("secrets"))
    {
        // One line per value, appended whole (O_APPEND) by parallel tests.
        let _ = f.write_all(format!("{value}\n").as_bytes());
    }
}

/// Moves a finished daemon's data directory (with `transcript` written
/// into it) under the evidence directory; `false` when there is none, and
/// the caller removes the directory as usual.
pub fn keep_data_dir(data_dir: &Path, transcript: &str) -> bool {
    let Some(dir) = dir() else { return false };
    let _ = fs::write(data_dir.join("cli-transcript.log"), transcript);
    let dest = dir.join("data");
    let _ = fs::create_dir_all(&dest);
    let name = data_dir.file_name().unwrap_or_default();
    fs::rename(data_dir, dest.join(name)).is_ok()
}
