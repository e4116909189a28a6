//! Helpers for spawning commands: workspace paths, clean environments for
//! nested cargo, and errors that say exactly how to retry.

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(Path::to_path_buf).ok_or_else(|| {
        anyhow!(
            "xtask manifest dir {} has no parent",
            manifest_dir.display()
        )
    })
}

/// `$CARGO_HOME/bin`, defaulting to `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("bin"));
    }
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".cargo").join("bin"))
}

/// `PATH` with `dirs` put in front of the current one.
pub fn path_with(dirs: &[PathBuf]) -> Result<OsString> {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut parts: Vec<PathBuf> = dirs.to_vec();
    parts.extend(env::split_paths(&current));
    env::join_paths(parts).context("cannot build PATH")
}

/// Variables that `cargo run` (and rustup's proxy) set for the xtask process.
/// Passed on, they would make a nested cargo build with the wrong toolchain,
/// flags or target directory.
fn is_inherited_build_var(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTUP_TOOLCHAIN",
    ];
    // Keep the user's cargo configuration that is about where things live or
    // how to reach the network, not about how to compile.
    const KEEP_PREFIXES: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    EXACT.contains(&name)
        || (name.starts_with("CARGO_") && !KEEP_PREFIXES.iter().any(|p| name.starts_with(p)))
}

/// A `cargo +nightly` command with none of the build environment inherited
/// from the cargo that started the xtask, and `~/.cargo/bin` first on PATH
/// (so `bpf-linker` and the rustup proxies are found).
pub fn nightly_cargo() -> Result<Command> {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly");
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(is_inherited_build_var) {
            cmd.env_remove(&name);
        }
    }
    cmd.env(
        "PATH",
        path_with(&cargo_bin_dir().into_iter().collect::<Vec<_>>())?,
    );
    Ok(cmd)
}

/// A host `cargo` command. It keeps the toolchain the xtask runs under
/// (`cargo +beta xtask test` tests with beta) and the user's own settings, but
/// drops what `cargo run` set only for the xtask binary itself.
pub fn host_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let run_only = name == "CARGO"
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            );
        if run_only {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A shell-like rendering of `cmd`, with its directory and the variables it
/// sets, that a person can paste to retry. Variables it removes are left out:
/// they come from the cargo that ran the xtask, not from the user's shell.
pub fn display(cmd: &Command) -> String {
    let mut out = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        out.push_str(&format!("cd {} && ", quote(dir.as_os_str())));
    }
    let current_path = env::var("PATH").ok().filter(|p| !p.is_empty());
    for (name, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let mut rendered = quote(value);
        // Show `PATH=/extra/bin:$PATH` rather than the whole expanded PATH.
        if name == "PATH"
            && let (Some(current), Some(value)) = (&current_path, value.to_str())
            && let Some(prefix) = value.strip_suffix(current.as_str())
        {
            rendered = format!("{}\"$PATH\"", quote(OsStr::new(prefix)));
        }
        out.push_str(&format!("{}={rendered} ", name.to_string_lossy()));
    }
    out.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio; fails with the command to retry.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout if it could be started and succeeded;
/// `None` otherwise. For probes like `dpkg-query` or `bpf-linker --version`.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let output = cmd.stderr(std::process::Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `program` can be found on PATH.
pub fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_the_shell_would_split() {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir("/tmp/a b")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "it's"]);
        assert_eq!(
            display(&cmd),
            r"cd '/tmp/a b' && DEBIAN_FRONTEND=noninteractive apt-get install -y 'it'\''s'"
        );
    }

    #[test]
    fn nested_cargo_drops_build_vars_but_keeps_user_config() {
        for dropped in [
            "CARGO",
            "RUSTC",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_MANIFEST_DIR",
        ] {
            assert!(is_inherited_build_var(dropped), "{dropped}");
        }
        for kept in ["CARGO_HOME", "CARGO_NET_OFFLINE", "PATH", "HOME"] {
            assert!(!is_inherited_build_var(kept), "{kept}");
        }
    }
}
