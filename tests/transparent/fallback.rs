//! Without eBPF, `auto` falls back to nftables and `ebpf` refuses to
//! start.

use std::path::Path;

use crate::harness::*;
use crate::support;
use crate::support::Daemon;
use crate::support::upstream::{Upstream, UpstreamOpts};

#[test]
fn without_ebpf_auto_falls_back_to_nftables_and_ebpf_mode_refuses_to_start() {
    require!(Mode::Ebpf);
    require!(Mode::Nftables);
    let iso = Isolation::new(Mode::Nftables);
    let up = Upstream::start(UpstreamOpts::https());
    // A pin directory on no BPF file system: eBPF cannot be set up.
    let not_bpffs = format!("/tmp/airlock-test-not-bpffs-{}", support::random_hex(4));
    let mut env: Vec<(&str, String)> = iso.env(&[up.port()]);
    env.retain(|(k, _)| !matches!(*k, "AIRLOCK_TRANSPARENT" | "AIRLOCK_BPF_PIN_DIR"));
    env.push(("AIRLOCK_BPF_PIN_DIR", not_bpffs.clone()));
    let dir = support::temp_data_dir();
    let mut refused: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    refused.push(("AIRLOCK_TRANSPARENT", "ebpf"));
    let out = support::serve_expect_exit(dir.path(), &refused);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("transparent interception is required")
            && out.stderr.contains("no BPF file system"),
        "{out:#?}"
    );
    assert_eq!(iso.nft_tables(), 0, "ebpf mode must not fall back");

    let mut builder = Daemon::builder()
        .env("AIRLOCK_TRANSPARENT", "auto")
        .env(
            "AIRLOCK_UPSTREAM_CA",
            up.ca_pem_path().display().to_string(),
        )
        .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8");
    for (k, v) in &env {
        builder = builder.env(k, v.clone());
    }
    let daemon = builder.start();
    let status = daemon.status_json();
    let mode = status["mode"].as_str().unwrap_or_default();
    assert!(
        mode.starts_with(&format!(
            "transparent (nftables, table inet {}",
            iso.nft_table
        )) && mode.contains("because eBPF interception could not start")
            && mode.contains("no BPF file system"),
        "{status:#}"
    );
    assert!(daemon.log().contains("falling back to nftables"));
    assert!(!Path::new(&not_bpffs).exists());
    iso.assert_installed();

    // The fallback intercepts for real.
    add_agent(&daemon, &iso, "bot");
    let value = format!("sk-fallback-{}", support::random_hex(12));
    add_secret(
        &daemon,
        "up",
        &format!("{}:{}", up.host(), up.port()),
        &value,
        "bot",
    );
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(
            up.host(),
            up.port(),
            "127.0.0.1",
            "/echo/fallback",
        )),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/fallback");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
}
