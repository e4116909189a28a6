//! `cargo xtask setup`: install what building and fuzzing Airlock needs,
//! idempotently.
//!
//! Each step checks first and prints one line; only what is missing is
//! installed. On failure it says what failed and the exact command to retry.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd;

/// Debian packages: LLVM 22 for building bpf-linker, clang, tools for
/// rustup, PostgreSQL for the embedded store, and headless Chromium with
/// its WebDriver for the dashboard's browser tests; nftables for the
/// transparent fallback, git for its smart-HTTP client test, systemd for
/// `systemd-analyze verify` of the units; Python's requests for the system
/// interpreter, because `airlock run` agents are unprivileged users that
/// cannot reach root's pip or pyenv installs; a JDK with Java's system
/// `cacerts`, wget (GnuTLS) and Go for the trust view test's clients,
/// which read trust stores of their own rather than `SSL_CERT_FILE`;
/// Prometheus, which scrapes `/metrics` in its test; rsyslog, which
/// receives the audit trail's syslog lines in theirs (the test runs an
/// rsyslogd of its own on a socket of its own, whatever the system's does);
/// pip for the system interpreter, which installs the MCP SDK where agents
/// can read it ([`agent_python_mcp`]);
/// PyJWT and cryptography for the system interpreter, with which
/// tests/jwt's token endpoint verifies the gateway's RS256 assertions (and
/// openssl, which makes their keys);
/// Docker (dockerd, containerd, runc) and a static busybox for the
/// container tests, whose image is `docker import`ed from host files since
/// no registry is reachable.
const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "clang",
    "curl",
    "ca-certificates",
    "postgresql",
    "nodejs",
    "npm",
    "chromium",
    "chromium-driver",
    "nftables",
    "git",
    "systemd",
    "python3-requests",
    "python3-pip",
    "python3-jwt",
    "python3-cryptography",
    "openssl",
    "openjdk-17-jdk-headless",
    "ca-certificates-java",
    "wget",
    "golang-go",
    "prometheus",
    "rsyslog",
    "docker.io",
    "busybox-static",
];

/// The bpf-linker release that builds against Debian's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// The cargo-fuzz release `cargo xtask fuzz` (and the CI run of the fuzz
/// targets in `cargo xtask test`) drives.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run() -> Result<()> {
    debian_packages()?;
    nightly_toolchain()?;
    // build-std builds `core` for the eBPF target from rust-src; the lint
    // gate runs clippy on the eBPF crate, which needs nightly's clippy (the
    // minimal profile installs neither).
    nightly_component("rust-src")?;
    nightly_component("clippy")?;
    bpf_linker()?;
    cargo_fuzz()?;
    python_requests()?;
    agent_python_mcp()?;
    node_test_client()?;
    Ok(())
}

/// A Python distribution the tests need, at the version they were written
/// against: the one place each version is written, for both the check of
/// what is installed and the `pip install`.
struct Pinned {
    /// The distribution's name on PyPI.
    dist: &'static str,
    /// `None`: any version.
    version: Option<&'static str>,
}

impl Pinned {
    fn requirement(&self) -> String {
        match self.version {
            Some(v) => format!("{}=={v}", self.dist),
            None => self.dist.to_owned(),
        }
    }

    /// Python that fails unless this distribution is installed at its
    /// version.
    fn check(&self) -> String {
        match self.version {
            Some(v) => format!("assert m.version({:?}) == {v:?}", self.dist),
            None => format!("m.version({:?})", self.dist),
        }
    }
}

/// The end-to-end tests drive the gateway with Python's `requests`;
/// WebSocket placements with `websockets` (pinned: its sync client's
/// `proxy=` argument, which tunnels through `HTTPS_PROXY`-style proxies,
/// arrived in 15.0); tests/gateway/mcp.rs with the official MCP SDK
/// (server and client; 1.x, whose `FastMCP` and streamable HTTP client the
/// tests use); tests/gateway/graphql.rs with Strawberry's ASGI app; both
/// servers run under uvicorn.
const PYTHON_TEST_DEPS: &[Pinned] = &[
    Pinned {
        dist: "requests",
        version: None,
    },
    Pinned {
        dist: "websockets",
        version: Some("15.0.1"),
    },
    Pinned {
        dist: "mcp",
        version: Some("1.30.0"),
    },
    Pinned {
        dist: "strawberry-graphql",
        version: Some("0.341.2"),
    },
    Pinned {
        dist: "uvicorn",
        version: Some("0.55.0"),
    },
];

/// The MCP SDK again, for the agents' interpreter ([`agent_python_mcp`]).
const AGENT_PYTHON_DEPS: &[Pinned] = &[Pinned {
    dist: "mcp",
    version: Some("1.30.0"),
}];

/// Installs `deps` with `python`'s pip (into `target` if given, which the
/// check then reads through `PYTHONPATH`) unless they are there already.
fn pip_step(step: &str, python: &Path, deps: &[Pinned], target: Option<&Path>) -> Result<()> {
    begin(step);
    let checks: Vec<String> = deps.iter().map(Pinned::check).collect();
    let mut probe = Command::new(python);
    if let Some(dir) = target {
        probe.env("PYTHONPATH", dir);
    }
    let script = format!("import importlib.metadata as m; {}", checks.join("; "));
    if probe
        .args(["-c", &script])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        done("ok (already installed)");
        return Ok(());
    }
    let mut pip = Command::new(python);
    pip.args(["-m", "pip", "install", "--quiet"]);
    if let Some(dir) = target {
        pip.args(["--upgrade", "--target"]).arg(dir);
    }
    pip.args(deps.iter().map(Pinned::requirement));
    install(step, &mut pip)?;
    match target {
        Some(dir) => println!("setup: {step} ... ok (installed in {})", dir.display()),
        None => println!("setup: {step} ... ok (installed)"),
    }
    Ok(())
}

fn python_requests() -> Result<()> {
    pip_step(
        "python requests, websockets, mcp, strawberry-graphql",
        Path::new("python3"),
        PYTHON_TEST_DEPS,
        None,
    )
}

/// Where [`agent_python_mcp`] installs the SDK: the workspace's `target/`
/// (whatever `CARGO_TARGET_DIR` says), where tests/support/mcp.rs looks.
const AGENT_PYTHON_DIR: &str = "target/agent-python";

/// The MCP SDK for the system interpreter, in [`AGENT_PYTHON_DIR`], for
/// tests/transparent/mcp.rs: its client runs as an `airlock run` agent, an
/// unprivileged user that cannot reach root's pip or pyenv installs (0700
/// `/root`) and whose `python3` is the system one; the test puts this
/// directory on its `PYTHONPATH`. pip installs for the interpreter that runs
/// it, so the compiled parts (pydantic-core) fit that interpreter.
fn agent_python_mcp() -> Result<()> {
    let step = "mcp for the system python3 (agents)";
    let python = Path::new("/usr/bin/python3");
    if !python.is_file() {
        begin(step);
        done("skipped (no /usr/bin/python3; tests/transparent/mcp.rs will say so)");
        return Ok(());
    }
    let dir = cmd::workspace_root()?.join(AGENT_PYTHON_DIR);
    pip_step(step, python, AGENT_PYTHON_DEPS, Some(&dir))
}

/// The end-to-end tests drive the gateway with Node's fetch (undici, for
/// its proxy support) and run a real OAuth2 server (oidc-provider, for
/// tests/oauth), pinned in tests/node/package-lock.json.
fn node_test_client() -> Result<()> {
    let step = "node test packages (undici, oidc-provider)";
    begin(step);
    let dir = cmd::workspace_root()?.join("tests/node");
    let installed = ["undici", "oidc-provider"].iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
    });
    if installed {
        done("ok (already installed)");
        return Ok(());
    }
    install(
        step,
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir),
    )?;
    println!("setup: {step} ... ok (installed)");
    Ok(())
}

/// Prints the start of a step's line; the caller finishes it with `done`.
fn begin(step: &str) {
    print!("setup: {step} ... ");
    // Progress output only; a failed flush is harmless.
    let _ = std::io::stdout().flush();
}

fn done(outcome: &str) {
    println!("{outcome}");
}

/// Runs an installing command; on failure finishes the step's line with
/// FAILED and returns an error carrying the command to retry.
fn install(step: &str, command: &mut Command) -> Result<()> {
    // The command prints its own output; start it on a fresh line.
    println!("installing");
    let failure = match command.status() {
        Ok(status) if status.success() => return Ok(()),
        Ok(status) => status.to_string(),
        Err(err) => format!("cannot start: {err}"),
    };
    bail!(
        "setup: {step} FAILED ({failure})\n  retry with: {}",
        cmd::display(command)
    )
}

fn debian_packages() -> Result<()> {
    let step = "debian packages";
    begin(step);
    let wanted: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| *p != "postgresql" || !postgres_server_present())
        // Node may come from elsewhere than Debian (it does on some images).
        .filter(|p| !matches!(*p, "nodejs" | "npm") || !cmd::on_path(p.trim_end_matches("js")))
        .collect();
    if !cmd::on_path("dpkg-query") || !cmd::on_path("apt-get") {
        done(&format!(
            "skipped (no dpkg-query/apt-get: not Debian?). Install by hand the \
             equivalents of: {}",
            wanted.join(" ")
        ));
        return Ok(());
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|p| !deb_installed(p))
        .collect();
    if missing.is_empty() {
        done("ok (already installed)");
        return Ok(());
    }
    if !is_root() {
        done(&format!(
            "skipped (not root). Install by hand: sudo apt-get update && sudo \
             apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        ));
        return Ok(());
    }
    install(step, Command::new("apt-get").arg("update"))?;
    install(
        step,
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    println!("setup: {step} ... ok (installed {})", missing.join(" "));
    Ok(())
}

fn deb_installed(package: &str) -> bool {
    cmd::probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

/// Whether some PostgreSQL server is installed Debian-style
/// (`/usr/lib/postgresql/<version>/bin/initdb`).
fn postgres_server_present() -> bool {
    postgres_initdb(Path::new("/usr/lib/postgresql")).is_some()
}

fn postgres_initdb(base: &Path) -> Option<PathBuf> {
    fs::read_dir(base)
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("bin").join("initdb"))
        .find(|initdb| initdb.is_file())
}

fn is_root() -> bool {
    cmd::probe(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

fn rustup() -> Result<Command> {
    let mut command = Command::new("rustup");
    // Use the cargo-home rustup even if the caller's PATH lacks it.
    command.env(
        "PATH",
        cmd::path_with(&cmd::cargo_bin_dir().into_iter().collect::<Vec<_>>())?,
    );
    Ok(command)
}

fn nightly_toolchain() -> Result<()> {
    let step = "nightly toolchain";
    begin(step);
    let Some(list) = cmd::probe(rustup()?.args(["toolchain", "list"])) else {
        done("FAILED");
        bail!(
            "setup: {step} FAILED: `rustup toolchain list` did not run; install rustup \
             from https://rustup.rs, then retry `cargo xtask setup`"
        );
    };
    let present = list.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or_default();
        name == "nightly" || name.starts_with("nightly-")
    });
    if present {
        done("ok (already installed)");
        return Ok(());
    }
    install(
        step,
        rustup()?.args(["toolchain", "install", "nightly", "--profile", "minimal"]),
    )?;
    println!("setup: {step} ... ok (installed)");
    Ok(())
}

fn nightly_component(component: &str) -> Result<()> {
    let step = format!("{component} for nightly");
    begin(&step);
    let installed =
        cmd::probe(rustup()?.args(["component", "list", "--toolchain", "nightly", "--installed"]))
            .is_some_and(|list| {
                list.lines().any(|l| {
                    l.trim() == component
                        || l.strip_prefix(component)
                            .is_some_and(|r| r.starts_with('-'))
                })
            });
    if installed {
        done("ok (already installed)");
        return Ok(());
    }
    install(
        &step,
        rustup()?.args(["component", "add", component, "--toolchain", "nightly"]),
    )?;
    println!("setup: {step} ... ok (installed)");
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let step = "bpf-linker";
    begin(step);
    let cargo_bin: Vec<PathBuf> = cmd::cargo_bin_dir().into_iter().collect();
    let version = cmd::probe(
        Command::new("bpf-linker")
            .arg("--version")
            .env("PATH", cmd::path_with(&cargo_bin)?),
    );
    if let Some(version) = version {
        done(&format!("ok (already installed: {})", version.trim()));
        return Ok(());
    }
    print!("(building from source against LLVM 22, about 3 minutes) ");
    let mut path = vec![PathBuf::from(LLVM_BIN)];
    path.extend(cargo_bin);
    install(
        step,
        cmd::host_cargo().env("PATH", cmd::path_with(&path)?).args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ]),
    )?;
    println!("setup: {step} ... ok (installed {BPF_LINKER_VERSION})");
    Ok(())
}

/// cargo-fuzz at the pinned version, from crates.io with its lock file.
pub fn cargo_fuzz() -> Result<()> {
    let step = "cargo-fuzz";
    begin(step);
    let cargo_bin: Vec<PathBuf> = cmd::cargo_bin_dir().into_iter().collect();
    let version = cmd::probe(
        Command::new("cargo-fuzz")
            .arg("--version")
            .env("PATH", cmd::path_with(&cargo_bin)?),
    );
    // Prints `cargo-fuzz 0.13.2`.
    if let Some(version) =
        version.filter(|v| v.split_whitespace().nth(1) == Some(CARGO_FUZZ_VERSION))
    {
        done(&format!("ok (already installed: {})", version.trim()));
        return Ok(());
    }
    install(
        step,
        cmd::host_cargo().args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ]),
    )?;
    println!("setup: {step} ... ok (installed {CARGO_FUZZ_VERSION})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_says_how_to_retry() {
        let mut failing = Command::new("false");
        failing.arg("--flag");
        let err = install("demo", &mut failing).expect_err("`false` fails");
        assert_eq!(
            err.to_string(),
            "setup: demo FAILED (exit status: 1)\n  retry with: false --flag"
        );
    }

    #[test]
    fn finds_a_debian_style_initdb() {
        let base = std::env::temp_dir().join(format!("xtask-pg-{}", std::process::id()));
        let bin = base.join("15").join("bin");
        fs::create_dir_all(&bin).expect("temp dir");
        assert_eq!(postgres_initdb(&base), None);
        fs::write(bin.join("initdb"), b"").expect("temp file");
        assert_eq!(postgres_initdb(&base), Some(bin.join("initdb")));
        fs::remove_dir_all(&base).expect("cleanup");
    }
}
