//! Embeds the eBPF object built by `cargo xtask build-ebpf`, when present.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    // sqlx::migrate! embeds migrations/ at compile time; a new migration
    // alone must trigger a rebuild.
    println!("cargo::rerun-if-changed=../migrations");
    println!("cargo::rustc-check-cfg=cfg(airlock_ebpf)");
    // Read when the script runs, not when it was compiled: a target
    // directory copied from another checkout keeps its compiled script,
    // which would otherwise embed that checkout's object.
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let object = env::var_os("AIRLOCK_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/airlock.bpf.o"));
    println!("cargo::rerun-if-env-changed=AIRLOCK_EBPF_OBJECT");
    println!("cargo::rerun-if-changed={}", object.display());
    if let Ok(bytes) = fs::read(&object) {
        let out = PathBuf::from(env::var("OUT_DIR")?);
        fs::write(out.join("airlock.bpf.o"), bytes)?;
        println!("cargo::rustc-cfg=airlock_ebpf");
    } else {
        println!(
            "cargo::warning=no eBPF object at {}: building without the transparent path (run `cargo xtask build-ebpf`)",
            object.display()
        );
    }
    Ok(())
}
