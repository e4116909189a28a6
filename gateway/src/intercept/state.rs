//! The state file: where the daemon's pins, cgroups and nft table are,
//! for `airlock stop --release` and `airlock run`, and the release itself.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::settings::InterceptSettings;
use super::{bpf, nft};

/// Written by the daemon in its data directory: where its pins and
/// cgroups are, for `airlock stop --release` and `airlock run`.
pub const STATE_FILE: &str = "intercept.json";

/// What the daemon leaves in its data directory for the CLI.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// The cgroup2 mount the daemon found: agents' cgroups are under it.
    pub cgroup2: PathBuf,
    /// The settings it ran with: the pin directory and nft table to
    /// release, the agents' parent cgroup.
    pub settings: InterceptSettings,
    /// The transparent listener's port (the kernel's pick with port 0).
    pub port: u16,
}

pub(super) fn write_state(data_dir: &Path, state: &State) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    crate::datadir::write_atomically(&data_dir.join(STATE_FILE), &json, 0o644)
}

/// What the last daemon on `data_dir` recorded, if anything.
pub fn read_state(data_dir: &Path) -> Option<State> {
    let text = std::fs::read(data_dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// What [`release`] removed.
#[derive(Debug, Default)]
pub struct Released {
    /// Pinned eBPF links and maps (and their directory).
    pub pins: Vec<PathBuf>,
    /// The nftables table, if there was one.
    pub nft_table: Option<String>,
}

impl Released {
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty() && self.nft_table.is_none()
    }
}

/// Ends interception for the daemon of `data_dir`: removes its pinned
/// links and maps and its nftables table (from its recorded state, else
/// the defaults).
pub fn release(data_dir: &Path) -> io::Result<Released> {
    let settings = read_state(data_dir).map(|s| s.settings).unwrap_or_default();
    let pins = bpf::release(&settings.pin_dir)?;
    let nft_table = nft::remove(&settings.nft_table)
        .map_err(io::Error::other)?
        .then_some(settings.nft_table);
    let _ = std::fs::remove_file(data_dir.join(STATE_FILE));
    Ok(Released { pins, nft_table })
}
