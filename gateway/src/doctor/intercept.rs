//! Which interception mode `serve` would run, and why not the other.

use std::process::Command;

use aya::programs::Program;

use super::{Check, Status};
use crate::intercept::TransparentMode;
use crate::intercept::cgroup::Cgroup2;
use crate::intercept::settings::InterceptSettings;

pub(super) fn checks(settings: &InterceptSettings, daemon_running: bool) -> Vec<Check> {
    let ebpf = ebpf();
    let nft = nftables();
    let verdict = conclusion(settings.mode, &ebpf, &nft, daemon_running);
    let mut checks = vec![ebpf, nft];
    // A mode that was asked for but cannot run is the conclusion's
    // failure, not the sub-check's: the other mode was not needed.
    for c in &mut checks {
        if c.status == Status::Fail {
            c.status = Status::Warn;
        }
    }
    checks.push(verdict);
    checks
}

/// Loads every program of the embedded object into the kernel, which
/// verifies them, and unloads them again: nothing is attached or pinned.
fn ebpf() -> Check {
    const NAME: &str = "ebpf";
    let fix_root = "run as root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN are needed)";
    if !nix::unistd::geteuid().is_root() {
        return Check::fail(NAME, "cannot load eBPF programs without root", fix_root);
    }
    if let Err(e) = Cgroup2::find() {
        return Check::fail(NAME, e.to_string(), "mount cgroup v2 (see `cgroup2`)");
    }
    let Some(object) = crate::ebpf::object() else {
        return Check::fail(
            NAME,
            "this airlock binary was built without its eBPF programs",
            "build with `cargo xtask build-ebpf` before `cargo build`, or use a release build",
        );
    };
    match verify(object) {
        Ok(n) => Check::ok(
            NAME,
            format!("the kernel's verifier accepts all {n} programs"),
        ),
        Err(why) => Check::fail(
            NAME,
            format!("the kernel refuses the eBPF programs: {why}"),
            "see the kernel requirements in docs/architecture.md; the nftables fallback \
             covers host processes",
        ),
    }
}

fn verify(object: &[u8]) -> Result<usize, String> {
    let mut ebpf = aya::Ebpf::load(object).map_err(|e| e.to_string())?;
    let mut loaded = 0;
    for (name, program) in ebpf.programs_mut() {
        let result = match program {
            Program::CgroupSockAddr(p) => p.load(),
            Program::SockOps(p) => p.load(),
            Program::CgroupSockopt(p) => p.load(),
            _ => continue,
        };
        result.map_err(|e| format!("{name}: {e}"))?;
        loaded += 1;
    }
    Ok(loaded)
}

fn nftables() -> Check {
    const NAME: &str = "nftables";
    let fix = "install nftables (`apt install nftables`) for the fallback mode";
    let version = match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(_) | Err(_) => return Check::fail(NAME, "no working `nft` command", fix),
    };
    if !nix::unistd::geteuid().is_root() {
        return Check::ok(NAME, format!("{version} (not tried: not root)"));
    }
    match Command::new("nft").args(["list", "tables"]).output() {
        Ok(out) if out.status.success() => Check::ok(NAME, format!("{version}, usable")),
        Ok(out) => Check::fail(
            NAME,
            format!(
                "{version} cannot list tables: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "check that the kernel has nf_tables",
        ),
        Err(e) => Check::fail(NAME, format!("cannot run nft: {e}"), fix),
    }
}

/// The mode `serve` would run with these settings and these results.
fn conclusion(mode: TransparentMode, ebpf: &Check, nft: &Check, daemon_running: bool) -> Check {
    const NAME: &str = "interception";
    let ok = |c: &Check| c.status == Status::Ok;
    let running = if daemon_running {
        " (the running daemon's own mode: `airlock status`)"
    } else {
        ""
    };
    let containers = "containers with their own network namespace are not intercepted in \
                      this mode";
    match mode {
        TransparentMode::Off => Check::warn(
            NAME,
            format!("off: the explicit proxy only{running}"),
            "enable transparent interception with --transparent auto (AIRLOCK_TRANSPARENT=auto)",
        ),
        TransparentMode::Ebpf | TransparentMode::Auto if ok(ebpf) => Check::ok(
            NAME,
            format!(
                "{}: eBPF (host processes and containers){running}",
                mode.name()
            ),
        ),
        TransparentMode::Ebpf => Check::fail(
            NAME,
            format!("ebpf was asked for but cannot run: {}", ebpf.detail),
            ebpf.fix.clone().unwrap_or_default(),
        ),
        TransparentMode::Auto | TransparentMode::Nftables if ok(nft) => Check::warn(
            NAME,
            if mode == TransparentMode::Auto {
                format!(
                    "auto: nftables, because eBPF cannot run: {}; {containers}{running}",
                    ebpf.detail
                )
            } else {
                format!("nftables, as asked; {containers}{running}")
            },
            "fix eBPF (see `ebpf`) to intercept containers too",
        ),
        TransparentMode::Nftables => Check::fail(
            NAME,
            format!("nftables was asked for but cannot run: {}", nft.detail),
            nft.fix.clone().unwrap_or_default(),
        ),
        TransparentMode::Auto => Check::warn(
            NAME,
            format!(
                "auto: neither mode can run, so only the explicit proxy would (eBPF: {}; \
                 nftables: {})",
                ebpf.detail, nft.detail
            ),
            "fix eBPF (see `ebpf`) or install nftables",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: Status) -> Check {
        Check {
            name: "x",
            status,
            detail: "why".into(),
            fix: Some("fix".into()),
        }
    }

    #[test]
    fn conclusions() {
        let (ok, fail) = (check(Status::Ok), check(Status::Fail));
        let c = conclusion(TransparentMode::Auto, &ok, &fail, false);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("eBPF"));
        let c = conclusion(TransparentMode::Auto, &fail, &ok, false);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("nftables, because eBPF cannot run: why"));
        assert_eq!(
            conclusion(TransparentMode::Ebpf, &fail, &ok, false).status,
            Status::Fail
        );
        assert_eq!(
            conclusion(TransparentMode::Nftables, &ok, &fail, false).status,
            Status::Fail
        );
        assert_eq!(
            conclusion(TransparentMode::Auto, &fail, &fail, false).status,
            Status::Warn
        );
        assert_eq!(
            conclusion(TransparentMode::Off, &ok, &ok, false).status,
            Status::Warn
        );
    }
}
