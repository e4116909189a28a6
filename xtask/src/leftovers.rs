//! After the suite: nothing of the tests may be left on the host. The
//! tests name everything they create `airlock-test-…` (cgroups, pin
//! directories, data directories) or `airlock_test_…` (nft tables), and
//! clean up with guards even when they fail; this checks that they did.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// One thing a test left behind, said plainly.
pub fn find() -> Vec<String> {
    let mut left = Vec::new();
    for mount in cgroup2_mounts() {
        left.extend(named_entries(&mount, "airlock-test-", "cgroup"));
    }
    left.extend(named_entries(
        &PathBuf::from("/sys/fs/bpf"),
        "airlock-test-",
        "bpf pin directory",
    ));
    left.extend(nft_tables());
    left.extend(processes());
    left.extend(test_mounts());
    left
}

fn cgroup2_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(at))
        })
        .collect()
}

fn named_entries(dir: &PathBuf, prefix: &str, what: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| format!("{what} {}", e.path().display()))
        .collect()
}

fn nft_tables() -> Vec<String> {
    let Ok(out) = Command::new("nft").args(["list", "tables"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("airlock_test_"))
        .map(|l| format!("nft {}", l.trim()))
        .collect()
}

/// Daemons, PostgreSQL servers and clients still running on a test's
/// directories.
fn processes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let raw = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            let ours =
                cmdline.contains("/tmp/airlock-test-") || cmdline.contains("/tmp/airlock-pg-");
            ours.then(|| format!("process {pid}: {}", cmdline.trim()))
        })
        .collect()
}

fn test_mounts() -> Vec<String> {
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/tmp/airlock-test-"))
        .map(|l| format!("mount {l}"))
        .collect()
}
