//! `cargo xtask build-ebpf`: build `gateway-ebpf` with nightly for
//! `bpfel-unknown-none` and put the object where `gateway/build.rs` embeds it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd;

/// The eBPF crate's binary name (its `[[bin]]`).
const EBPF_BIN: &str = "airlock-ebpf";
const EBPF_TARGET: &str = "bpfel-unknown-none";

/// Where the object goes, relative to the workspace root. This path is the
/// contract with `gateway/build.rs`.
pub const EBPF_OBJECT: &str = "target/ebpf/airlock.bpf.o";

pub fn build(debug: bool) -> Result<()> {
    let root = cmd::workspace_root()?;
    let crate_dir = root.join("gateway-ebpf");
    let mut cargo = cmd::nightly_cargo()?;
    cargo.current_dir(&crate_dir).arg("build");
    if !debug {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo).with_context(
        || "build-ebpf FAILED (missing nightly, rust-src or bpf-linker? run `cargo xtask setup`)",
    )?;

    let profile = if debug { "debug" } else { "release" };
    let built = crate_dir
        .join("target")
        .join(EBPF_TARGET)
        .join(profile)
        .join(EBPF_BIN);
    let dest = root.join(EBPF_OBJECT);
    let changed = install_object(&built, &dest)?;
    println!(
        "build-ebpf: {} {}",
        dest.display(),
        if changed { "updated" } else { "unchanged" }
    );
    Ok(())
}

/// Copies `src` to `dest` unless `dest` already has the same bytes (so the
/// gateway's build script is not rerun for nothing). Writes a temporary file
/// and renames it, so a concurrent build never reads half an object.
fn install_object(src: &Path, dest: &Path) -> Result<bool> {
    let bytes = fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
    if fs::read(dest).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no parent directory", dest.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp: PathBuf = dir.join(".airlock.bpf.o.tmp");
    fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, dest)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
    Ok(true)
}
