//! What the benchmark needs installed, and what it reports about the
//! machine and the versions measured.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::report::Machine;
use super::upstream;
use crate::cmd;

/// The oha release whose flags and JSON this harness uses.
const OHA_VERSION: &str = "1.16.0";

/// `oha` on PATH or in `~/.cargo/bin` (installed with cargo if missing),
/// as a copy under the target directory that any user can run: the
/// transparent routes run it through `airlock run`, as the agent's own
/// unprivileged user, who cannot enter root's `~/.cargo`.
pub fn ensure_oha() -> Result<PathBuf> {
    let found = match find_oha() {
        Some(found) => found,
        None => {
            eprintln!("bench: installing oha {OHA_VERSION} (a few minutes, once)");
            let mut install = cmd::host_cargo();
            install.args(["install", "oha", "--version", OHA_VERSION, "--locked"]);
            cmd::run(&mut install)?;
            find_oha()
                .context("`cargo install oha` succeeded but no oha is on PATH or in ~/.cargo/bin")?
        }
    };
    agent_runnable(&found)
}

/// `bin` copied to `target/bench-tools/` with mode 0755 (once per change).
fn agent_runnable(bin: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = target_dir()?.join("bench-tools");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = bin.file_name().context("a tool path without a file name")?;
    let copy = dir.join(name);
    let same = |a: &Path, b: &Path| -> bool {
        matches!((fs::read(a), fs::read(b)), (Ok(x), Ok(y)) if x == y)
    };
    if !same(bin, &copy) {
        let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
        fs::copy(bin, &tmp).with_context(|| format!("copying {}", bin.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &copy)?;
    }
    Ok(copy)
}

fn find_oha() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = cmd::cargo_bin_dir()
        .map(|d| d.join("oha"))
        .into_iter()
        .collect();
    if let Some(path) = env::var_os("PATH") {
        candidates.extend(env::split_paths(&path).map(|d| d.join("oha")));
    }
    candidates
        .into_iter()
        .find(|c| c.is_file() && cmd::probe(Command::new(c).arg("--version")).is_some())
}

/// Debian packages the benchmark runs, each with a file that shows it is
/// installed: nginx (the upstream), squid with OpenSSL (a peer), bpftool
/// (the eBPF programs' run-time counters).
const APT_PACKAGES: &[(&str, &str)] = &[
    ("nginx-light", "/usr/sbin/nginx"),
    ("squid-openssl", "/usr/sbin/squid"),
    ("bpftool", "/usr/sbin/bpftool"),
];

/// Installs whichever of [`APT_PACKAGES`] is missing (none: no apt call).
pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).is_file())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::on_path("apt-get") {
        bail!(
            "missing {} and there is no apt-get: install them",
            missing.join(", ")
        );
    }
    let install = || {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing);
        c
    };
    if cmd::run(&mut install()).is_err() {
        // A fresh machine may have no package lists yet.
        cmd::run(Command::new("apt-get").arg("update"))?;
        cmd::run(&mut install())?;
    }
    // The packages start system services (nginx on port 80, squid on 3128);
    // the benchmark runs its own instances and leaves those alone.
    Ok(())
}

/// Debian's interpreter (`python3` is in the setup's package list).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// The interpreter for benchmark clients run through `airlock run`: those
/// run as the agent's own user, who cannot enter root's venv (nor a pyenv
/// under `/root`), and need only the standard library. Debian's when there
/// is one, else `venv` (which then works only where root's home is open).
/// Every route of a measurement uses the same one, so ratios compare like
/// with like.
pub fn agent_python(venv: &Path) -> PathBuf {
    let system = Path::new(SYSTEM_PYTHON);
    if system.is_file() {
        system.to_path_buf()
    } else {
        venv.to_path_buf()
    }
}

/// The Python packages of the benchmark's virtual environment, pinned.
const PYTHON_REQUIREMENTS: &[&str] = &["mitmproxy==11.0.2", "matplotlib==3.10.8"];

/// `target/bench-venv`, created with `python3 -m venv` and filled from PyPI
/// on first use; returns its `python`. Redone only when the pins change.
pub fn ensure_venv() -> Result<PathBuf> {
    let venv = target_dir()?.join("bench-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("airlock-bench-requirements.txt");
    let wanted = PYTHON_REQUIREMENTS.join("\n") + "\n";
    if python.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    eprintln!(
        "bench: creating {} with {} (a minute, once)",
        venv.display(),
        PYTHON_REQUIREMENTS.join(" ")
    );
    cmd::run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    cmd::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PYTHON_REQUIREMENTS),
    )?;
    fs::write(&stamp, wanted)?;
    Ok(python)
}

/// The host target directory: `$CARGO_TARGET_DIR` if set, else
/// `<workspace>/target`.
pub fn target_dir() -> Result<PathBuf> {
    let root = cmd::workspace_root()?;
    Ok(
        match env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        },
    )
}

fn first_line(out: Option<String>) -> String {
    out.and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn git_describe(root: &Path) -> String {
    first_line(cmd::probe(
        Command::new("git")
            .current_dir(root)
            .args(["describe", "--always", "--dirty"]),
    ))
}

pub fn machine(loadavg: String) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        loadavg_at_start: loadavg,
    }
}

pub fn versions(oha: &Path, airlock: &Path, python: &Path) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert(
        "mitmproxy".into(),
        first_line(cmd::probe(
            Command::new(python.with_file_name("mitmdump")).arg("--version"),
        )),
    );
    v.insert(
        "python".into(),
        first_line(cmd::probe(Command::new(python).arg("--version"))),
    );
    v.insert(
        "squid".into(),
        first_line(cmd::probe(Command::new("/usr/sbin/squid").arg("-v"))),
    );
    v.insert(
        "bpftool".into(),
        first_line(cmd::probe(
            Command::new("/usr/sbin/bpftool").arg("--version"),
        )),
    );
    v.insert(
        "curl".into(),
        first_line(cmd::probe(Command::new("curl").arg("--version"))),
    );
    v.insert(
        "oha".into(),
        first_line(cmd::probe(Command::new(oha).arg("--version"))),
    );
    v.insert(
        "airlock".into(),
        first_line(cmd::probe(Command::new(airlock).arg("--version"))),
    );
    v.insert(
        "rustc".into(),
        first_line(cmd::probe(Command::new("rustc").arg("--version"))),
    );
    v.insert(
        "openssl".into(),
        first_line(cmd::probe(Command::new("openssl").arg("version"))),
    );
    // nginx prints its version on stderr.
    let nginx = Command::new(upstream::nginx_binary())
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    v.insert(
        "nginx".into(),
        nginx
            .strip_prefix("nginx version: ")
            .unwrap_or(&nginx)
            .to_owned(),
    );
    v
}

/// The `airlock` binary to measure: `given` (`--airlock PATH`), or the
/// workspace's release build, with the eBPF object embedded, built now.
/// `task` names the caller in the timing lines (`bench`, `soak`, ...).
pub fn release_airlock(given: Option<&Path>, task: &str) -> Result<PathBuf> {
    if let Some(path) = given {
        return path
            .canonicalize()
            .with_context(|| format!("no {}", path.display()));
    }
    crate::timed(&format!("{task}: build-ebpf"), || crate::ebpf::build(false))?;
    crate::timed(&format!("{task}: build airlock (release)"), || {
        crate::host::build_airlock(true)
    })?;
    Ok(target_dir()?.join("release").join("airlock"))
}
