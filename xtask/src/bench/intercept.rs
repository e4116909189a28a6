//! The benchmark's own transparent-interception state: an agents' parent
//! cgroup, a gateway cgroup, a pin directory and an nft table name, all
//! named `airlock-bench-<id>` so they never touch the host's `airlock.slice`
//! or a test's. Released however the run ends: `airlock stop --release`
//! first (what a user would run), then whatever is left is removed here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};

use super::procs;

pub struct Isolation {
    /// The cgroup2 mount (`/sys/fs/cgroup/unified` on hybrid hosts).
    pub cgroup_root: PathBuf,
    /// Relative to the mount, as `AIRLOCK_AGENTS_CGROUP` takes it.
    pub agents: String,
    pub gateway: String,
    pub pin_dir: PathBuf,
    pub nft_table: String,
}

impl Isolation {
    /// Names for this run, and the clean-up registered before anything
    /// exists, so an error at any later point still removes it all.
    pub fn new(binary: &Path, data_dir: &Path) -> Result<Isolation> {
        let id = format!("{:x}", std::process::id());
        let iso = Isolation {
            cgroup_root: cgroup2_mount()?,
            agents: format!("airlock-bench-{id}.slice"),
            gateway: format!("airlock-bench-{id}-gw"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/airlock-bench-{id}")),
            nft_table: format!("airlock_bench_{id}"),
        };
        let (binary, data_dir) = (binary.to_owned(), data_dir.to_owned());
        let (agents, gateway, pins) = (iso.agents_dir(), iso.gateway_dir(), iso.pin_dir.clone());
        procs::on_cleanup(move || release(&binary, &data_dir, &pins, &[agents, gateway]));
        Ok(iso)
    }

    pub fn agents_dir(&self) -> PathBuf {
        self.cgroup_root.join(&self.agents)
    }

    pub fn gateway_dir(&self) -> PathBuf {
        self.cgroup_root.join(&self.gateway)
    }

    /// The daemon's environment for eBPF interception of `ports`.
    pub fn env(&self, transparent_port: u16, ports: &[u16]) -> Vec<(&'static str, String)> {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        vec![
            ("AIRLOCK_TRANSPARENT", "ebpf".into()),
            ("AIRLOCK_TRANSPARENT_PORT", transparent_port.to_string()),
            ("AIRLOCK_INTERCEPT_PORTS", ports.join(",")),
            ("AIRLOCK_AGENTS_CGROUP", self.agents.clone()),
            ("AIRLOCK_GATEWAY_CGROUP", self.gateway.clone()),
            ("AIRLOCK_BPF_PIN_DIR", self.pin_dir.display().to_string()),
            ("AIRLOCK_NFT_TABLE", self.nft_table.clone()),
        ]
    }
}

/// The cgroup2 mount point, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        // ... mount-point ... - fstype source options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2")
            && let Some(mount) = left.split_whitespace().nth(4)
        {
            return Ok(PathBuf::from(mount));
        }
    }
    bail!("no cgroup2 mount: the transparent scenario needs cgroup v2")
}

fn release(binary: &Path, data_dir: &Path, pins: &Path, cgroups: &[PathBuf]) {
    if data_dir.join("intercept.json").is_file() {
        let _ = Command::new(binary)
            .env("AIRLOCK_DATA_DIR", data_dir)
            .args(["stop", "--release"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    // Unpinning the links detaches the programs.
    if pins.exists()
        && let Err(e) = fs::remove_dir_all(pins)
    {
        eprintln!("bench: warning: removing {}: {e}", pins.display());
    }
    for dir in cgroups {
        remove_cgroup_tree(dir);
    }
    eprintln!("bench: released the benchmark's eBPF pins and cgroups");
}

fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    // Kills whatever is left inside (cgroup.kill, Linux 5.14+), then waits
    // (bounded) for the cgroup to empty before removing it.
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    for _ in 0..100 {
        if fs::remove_dir(dir).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("bench: warning: could not remove cgroup {}", dir.display());
}
