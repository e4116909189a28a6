//! The style gate of `cargo xtask test`: `cargo fmt --check` and
//! `cargo clippy --all-targets -- -D warnings`.
//!
//! Each counts as one test, so a formatting slip or a new clippy warning
//! fails CI like a failing test does, and the suite's closing count says
//! so. The eBPF crate and the fuzz targets live outside the host workspace
//! (nightly, other targets): fmt checks them through their own manifests;
//! clippy runs on the host workspace and, with nightly for
//! `bpfel-unknown-none`, on the eBPF crate (`cargo xtask test` has built it
//! just before, so its dependencies are there). The fuzz targets get no
//! clippy run of their own: checking them would build the gateway's whole
//! dependency tree once more under nightly, for a few hundred lines of
//! harness whose library code the host run already covers.

use std::process::Command;

use anyhow::Result;

use crate::cmd;

/// The manifests outside the host workspace whose formatting is checked too.
const OTHER_MANIFESTS: &[&str] = &["gateway-ebpf/Cargo.toml", "fuzz/Cargo.toml"];

/// One gate's result.
pub struct Gate {
    pub name: &'static str,
    pub passed: bool,
}

/// Runs every gate, all of them even when one fails, so one run reports
/// everything that needs fixing.
pub fn run() -> Result<Vec<Gate>> {
    let root = cmd::workspace_root()?;
    let cargo = |args: &[&str]| {
        let mut c = cmd::host_cargo();
        c.current_dir(&root).args(args);
        c
    };
    let mut fmt_ok = passed(&mut cargo(&["fmt", "--all", "--check"]));
    for manifest in OTHER_MANIFESTS {
        fmt_ok &= passed(&mut cargo(&["fmt", "--check", "--manifest-path", manifest]));
    }
    let clippy_ok = passed(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]));
    let mut ebpf_clippy = cmd::nightly_cargo()?;
    // The release profile, as `cargo xtask build-ebpf` builds what ships.
    ebpf_clippy.current_dir(root.join("gateway-ebpf")).args([
        "clippy",
        "--release",
        "--",
        "-D",
        "warnings",
    ]);
    let ebpf_clippy_ok = passed(&mut ebpf_clippy);
    Ok(vec![
        Gate {
            name: "cargo fmt --check",
            passed: fmt_ok,
        },
        Gate {
            name: "cargo clippy --workspace --all-targets -- -D warnings",
            passed: clippy_ok,
        },
        Gate {
            name: "cargo +nightly clippy (gateway-ebpf) -- -D warnings",
            passed: ebpf_clippy_ok,
        },
    ])
}

fn passed(command: &mut Command) -> bool {
    match cmd::run(command) {
        Ok(()) => true,
        Err(err) => {
            eprintln!("xtask: lint: {err:#}");
            false
        }
    }
}
