//! The nftables fallback: where eBPF cannot load, one table of the
//! daemon's own (`table inet airlock` unless `--nft-table` names
//! another) redirects the agents' TCP to the intercepted ports to the
//! transparent listener and drops their UDP to those ports (QUIC: the
//! sender gets `EPERM`, as with eBPF, and falls back to TCP).
//!
//! The agents are matched by `socket cgroupv2 level N "<parent>"`: every
//! socket whose cgroup lies under the agents' parent, whatever the depth.
//! The table is written with `nft -f -` in one transaction that replaces
//! any previous version atomically (create empty, delete, create), and
//! it stays when the daemon stops or crashes: the redirect then meets no
//! listener and agents get "connection refused" (fail closed). `airlock
//! stop --release` deletes it.
//!
//! The `nft` command is used rather than libnftnl bindings: the ruleset
//! text is what an operator reads in `nft list ruleset`, and `nft`
//! checks it (and reports a kernel without `nft_socket`, NAT or
//! conntrack) in one place.

use std::io::Write;
use std::process::{Command, Stdio};

use super::cgroup::Cgroup2;

/// The default table name.
pub const DEFAULT_TABLE: &str = "airlock";
/// nft resolves `socket cgroupv2` paths below this directory.
const NFT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Why the nftables rules cannot be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("the nft command is not installed (Debian: apt-get install nftables)")]
    NotInstalled,
    #[error("cannot run nft: {0}")]
    Run(std::io::Error),
    #[error("nft could not {action}: {detail}")]
    Refused {
        action: &'static str,
        detail: String,
    },
    #[error(
        "nft names cgroups relative to {NFT_CGROUP_ROOT}, but cgroup v2 is mounted at {0}: \
         mount it there (or below it) for the nftables fallback"
    )]
    CgroupOutsideRoot(String),
}

/// Whether `name` can be an nft table name of ours: letters, digits, `_`
/// and `-`, starting with a letter, at most 64 bytes.
pub fn valid_table(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What the table redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub table: String,
    /// The agents' parent cgroup as nft names it (relative to
    /// `/sys/fs/cgroup`).
    pub cgroup: String,
    /// The parent's level in the cgroup hierarchy (the root is 0).
    pub level: u32,
    pub ports: Vec<u16>,
    pub listen_port: u16,
}

impl Rules {
    /// The rules for the agents' parent `rel` (relative to the cgroup2
    /// mount `cg`).
    pub fn new(
        table: &str,
        cg: &Cgroup2,
        rel: &str,
        ports: &[u16],
        listen_port: u16,
    ) -> Result<Rules, NftError> {
        let under_root = cg
            .mount
            .strip_prefix(NFT_CGROUP_ROOT)
            .map_err(|_| NftError::CgroupOutsideRoot(cg.mount.display().to_string()))?;
        let cgroup = under_root
            .join(super::cgroup::normalize(rel))
            .display()
            .to_string();
        Ok(Rules {
            table: table.to_owned(),
            cgroup,
            level: cg.level(rel),
            ports: ports.to_vec(),
            listen_port,
        })
    }

    /// The `nft -f` script that replaces the table atomically.
    pub fn script(&self) -> String {
        let Rules {
            table,
            cgroup,
            level,
            listen_port,
            ..
        } = self;
        let ports = self
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let agents = format!("socket cgroupv2 level {level} \"{cgroup}\"");
        format!(
            "table inet {table} {{}}\n\
             delete table inet {table}\n\
             table inet {table} {{\n\
             \tchain agents_tcp {{\n\
             \t\ttype nat hook output priority -100; policy accept;\n\
             \t\tmeta l4proto tcp {agents} tcp dport {{ {ports} }} redirect to :{listen_port}\n\
             \t}}\n\
             \tchain agents_udp {{\n\
             \t\ttype filter hook output priority 0; policy accept;\n\
             \t\tmeta l4proto udp {agents} udp dport {{ {ports} }} drop\n\
             \t}}\n\
             }}\n"
        )
    }
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, NftError> {
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NftError::NotInstalled,
        _ => NftError::Run(e),
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(NftError::Run)?;
    }
    child.wait_with_output().map_err(NftError::Run)
}

/// nft's complaint, on one line.
fn detail(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == '~' || c == ' '))
        .take(3)
        .collect();
    if lines.is_empty() {
        format!("nft exited with {}", out.status)
    } else {
        lines.join(" / ")
    }
}

/// Installs (or atomically replaces) the table.
pub fn install(rules: &Rules) -> Result<(), NftError> {
    let out = nft(&["-f", "-"], Some(&rules.script()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused {
            action: "install the redirect table (the kernel needs nf_tables with nft_socket \
                     cgroupv2, nft_redir, nft_nat and conntrack)",
            detail: detail(&out),
        })
    }
}

/// Whether the table exists.
pub fn exists(table: &str) -> Result<bool, NftError> {
    Ok(nft(&["list", "table", "inet", table], None)?
        .status
        .success())
}

/// Deletes the table; `false` when there was none (or no nft at all:
/// then there can be no table either).
pub fn remove(table: &str) -> Result<bool, NftError> {
    match exists(table) {
        Ok(true) => {}
        Ok(false) | Err(NftError::NotInstalled) => return Ok(false),
        Err(e) => return Err(e),
    }
    let out = nft(&["delete", "table", "inet", table], None)?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(NftError::Refused {
            action: "delete the redirect table",
            detail: detail(&out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn rules_name_the_parent_relative_to_sys_fs_cgroup() {
        let cg = Cgroup2 {
            mount: PathBuf::from("/sys/fs/cgroup/unified"),
            root_depth: 0,
        };
        let r = Rules::new("airlock", &cg, "/airlock.slice/", &[443, 8443], 10256).unwrap();
        assert_eq!(r.cgroup, "unified/airlock.slice");
        assert_eq!(r.level, 1);
        let s = r.script();
        assert!(s.starts_with("table inet airlock {}\ndelete table inet airlock\n"));
        assert!(s.contains(
            "meta l4proto tcp socket cgroupv2 level 1 \"unified/airlock.slice\" tcp dport \
             { 443, 8443 } redirect to :10256"
        ));
        assert!(s.contains("udp dport { 443, 8443 } drop"));

        let elsewhere = Cgroup2 {
            mount: PathBuf::from("/mnt/cg"),
            root_depth: 0,
        };
        let err = Rules::new("airlock", &elsewhere, "a", &[443], 1).unwrap_err();
        assert!(err.to_string().contains("/mnt/cg"), "{err}");
    }

    #[test]
    fn table_names() {
        assert!(valid_table("airlock"));
        assert!(valid_table("airlock-test_1"));
        for bad in ["", "1a", "a b", "a;b", "a\"", &"a".repeat(65)] {
            assert!(!valid_table(bad), "{bad:?}");
        }
    }
}
