//! The kernel and the file systems transparent interception stands on.

use std::path::Path;

use super::Check;
use crate::intercept::cgroup::Cgroup2;

/// The oldest kernel with every helper and hook the eBPF programs use
/// (`bpf_get_netns_cookie` in sock_ops and sockopt programs among them).
const MIN_KERNEL: (u32, u32) = (5, 15);

pub(super) fn checks() -> Vec<Check> {
    vec![privileges(), kernel(), btf(), cgroup2(), bpffs()]
}

fn privileges() -> Check {
    if nix::unistd::geteuid().is_root() {
        Check::ok("root", "running as root")
    } else {
        Check::warn(
            "root",
            "not running as root: the kernel checks below are partial, and `airlock serve` \
             needs root for transparent interception and the embedded PostgreSQL's user",
            "run `sudo airlock doctor` for the full picture",
        )
    }
}

/// `"6.18.0-1-amd64"` → `(6, 18)`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel() -> Check {
    let release = match nix::sys::utsname::uname() {
        Ok(u) => u.release().to_string_lossy().into_owned(),
        Err(e) => {
            return Check::fail(
                "kernel",
                format!("cannot read the kernel's release: {e}"),
                "check that /proc and uname(2) are available",
            );
        }
    };
    match parse_release(&release) {
        Some(v) if v >= MIN_KERNEL => Check::ok("kernel", format!("Linux {release}")),
        Some(_) => Check::warn(
            "kernel",
            format!(
                "Linux {release}: eBPF interception needs {}.{} or newer; the nftables \
                 fallback (host processes only) or the explicit proxy remain",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
            "upgrade the kernel for transparent interception of containers",
        ),
        None => Check::warn(
            "kernel",
            format!("cannot tell the version of kernel {release:?}"),
            "check `uname -r`",
        ),
    }
}

fn btf() -> Check {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    if path.exists() {
        Check::ok("btf", format!("{} present", path.display()))
    } else {
        Check::warn(
            "btf",
            "the kernel exports no BTF (/sys/kernel/btf/vmlinux): the programs still load \
             here if the verifier accepts them (see `ebpf`), but kernel debugging tools will \
             not name their types",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )
    }
}

fn cgroup2() -> Check {
    match Cgroup2::find() {
        Ok(cg) if cg.mount == Path::new("/sys/fs/cgroup") => Check::ok(
            "cgroup2",
            "cgroup v2 is the unified hierarchy at /sys/fs/cgroup",
        ),
        Ok(cg) => Check::ok(
            "cgroup2",
            format!(
                "cgroup v2 at {} beside v1 controllers (hybrid): agents are placed and \
                 identified in the v2 tree",
                cg.mount.display()
            ),
        ),
        Err(e) => Check::fail(
            "cgroup2",
            e.to_string(),
            "mount cgroup2 (e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`) or boot with \
             systemd.unified_cgroup_hierarchy=1; until then only the explicit proxy works",
        ),
    }
}

fn bpffs() -> Check {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split(' ').nth(2) == Some("bpf")))
        .unwrap_or(false);
    if mounted {
        Check::ok(
            "bpffs",
            "a BPF file system is mounted (for pinned programs)",
        )
    } else {
        Check::ok(
            "bpffs",
            "no BPF file system is mounted yet: `airlock serve` mounts one at /sys/fs/bpf",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::parse_release;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("4.19.0+"), Some((4, 19)));
        assert_eq!(parse_release("weird"), None);
    }
}
