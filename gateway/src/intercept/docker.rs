//! Docker containers as agents: the `docker run` flags that make a
//! container agent NAME (`airlock docker run` / `airlock docker flags`).
//!
//! Identity is the cgroup, as for `airlock run`: the eBPF programs report
//! the connecting task's ancestor at the agent level, so a container whose
//! cgroup is *below* the agent's (`PARENT/agent-NAME/<container id>`) is
//! the agent, whatever network namespace it is in. `--cgroup-parent`
//! says where Docker puts it:
//!
//! - cgroupfs driver: an absolute path, the same in every hierarchy. On a
//!   hybrid host (cgroup v1 controllers, cgroup2 at
//!   `/sys/fs/cgroup/unified`) runc also joins the unified hierarchy at the
//!   same path, so `--cgroup-parent=/PARENT/agent-NAME` puts the
//!   container's processes in `<cgroup2>/PARENT/agent-NAME/<id>` (checked
//!   on Debian's docker.io 20.10 with runc 1.1). Elsewhere, a v1-only
//!   Docker would leave them outside cgroup2's agent cgroup: refused.
//! - systemd driver: a slice name, whose dashes are its path
//!   (`a-b.slice` is `a.slice/a-b.slice`). Only an agent cgroup that *is*
//!   such a slice path maps to one ([`slice_name`]); the default
//!   `PARENT/agent-NAME` is not, and is refused with the two ways out.
//!
//! Trust: the daemon's trust files ([`super::trust_view`]) are bind-mounted
//! read-only over every path of [`PEM_PATHS`] and [`JAVA_PATHS`] (Docker
//! resolves a path that is a symlink in the image inside the image, so
//! `/usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt` shows the
//! bundle too), and the CA variables `airlock run` sets point at the first
//! of them. Nothing is copied into the image; no proxy variable is set.
//!
//! Interception must be eBPF: the nftables fallback matches the socket's
//! cgroup but redirects to the loopback of the namespace the connection is
//! made in, which for a bridge-networked container is its own.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::Command;

use super::cgroup::{self, Cgroup2};
use super::run::CA_VARIABLES;
use super::trust_view::{JAVA_PATHS, PEM_PATHS, TrustFiles};

/// Where runc joins the unified hierarchy on a hybrid (v1 + v2) host.
pub const HYBRID_UNIFIED_MOUNT: &str = "/sys/fs/cgroup/unified";

/// Docker's cgroup driver (`docker info`'s `CgroupDriver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

/// What `docker info` says about cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerInfo {
    pub driver: Driver,
    /// `CgroupVersion`: "1" (v1 or hybrid) or "2".
    pub cgroup_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "the docker command was not found ({0}): install Docker (Debian: apt-get install \
         docker.io) or put docker on PATH"
    )]
    NotInstalled(io::Error),
    #[error(
        "the Docker daemon does not answer (`docker info`: {0}): start it (e.g. systemctl \
         start docker, or dockerd), or point DOCKER_HOST at it"
    )]
    DaemonDown(String),
    #[error("`docker info` said {0:?}, not a cgroup driver and version")]
    BadInfo(String),
    #[error(
        "Docker's cgroup driver is {0:?}: only cgroupfs and systemd are handled; configure \
         dockerd with --exec-opt native.cgroupdriver=cgroupfs"
    )]
    UnknownDriver(String),
    #[error(
        "Docker uses cgroup v1 but this host's cgroup2 is mounted at {mount}, not {HYBRID_UNIFIED_MOUNT}: \
         runc would not put the container in the agent's cgroup2 cgroup, so it would not be \
         intercepted; run Docker on cgroup v2 (or hybrid with cgroup2 at {HYBRID_UNIFIED_MOUNT})"
    )]
    V1Only { mount: String },
    #[error(
        "Docker uses the systemd cgroup driver, and agent {agent}'s cgroup {cgroup} is not a \
         systemd slice path (each component NAME.slice, named after the one above and a dash, \
         e.g. airlock.slice/airlock-bot.slice): give the agent such a cgroup (airlock agent rm \
         {agent}; airlock agent add {agent} --cgroup {suggested}), or configure dockerd with \
         --exec-opt native.cgroupdriver=cgroupfs"
    )]
    NotASlice {
        agent: String,
        cgroup: String,
        suggested: String,
    },
    #[error(
        "transparent interception runs with nftables, which cannot reach containers' own \
         network namespaces: a container as agent needs eBPF interception (start the daemon \
         with --transparent ebpf; `airlock status` says why eBPF did not start). The daemon \
         says: {0}"
    )]
    Nftables(String),
    #[error(
        "transparent interception is not running, so a container would not be intercepted: \
         {0} (start the daemon with --transparent auto or ebpf, as root)"
    )]
    NotTransparent(String),
    #[error(
        "{0} is set by airlock docker: it decides the container's agent identity (leave it out)"
    )]
    Conflict(String),
    #[error("cannot create agent {agent}'s cgroup {path}: {source} (run as root, e.g. with sudo)")]
    CreateCgroup {
        agent: String,
        path: String,
        source: io::Error,
    },
}

/// Asks the Docker daemon for its cgroup driver and version.
pub fn info(docker: &Path) -> Result<DockerInfo, DockerError> {
    let out = Command::new(docker)
        .args(["info", "--format", "{{.CgroupDriver}} {{.CgroupVersion}}"])
        .output()
        .map_err(DockerError::NotInstalled)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(DockerError::DaemonDown(format!("{}: {first}", out.status)));
    }
    parse_info(&String::from_utf8_lossy(&out.stdout))
}

fn parse_info(text: &str) -> Result<DockerInfo, DockerError> {
    let mut words = text.split_whitespace();
    let (Some(driver), Some(version), None) = (words.next(), words.next(), words.next()) else {
        return Err(DockerError::BadInfo(text.trim().to_owned()));
    };
    let driver = match driver {
        "cgroupfs" => Driver::Cgroupfs,
        "systemd" => Driver::Systemd,
        other => return Err(DockerError::UnknownDriver(other.to_owned())),
    };
    Ok(DockerInfo {
        driver,
        cgroup_version: version.to_owned(),
    })
}

/// The daemon's interception mode (`airlock status`'s `mode`) allows
/// containers: eBPF only.
pub fn check_mode(mode: &str) -> Result<(), DockerError> {
    if mode.starts_with("transparent (eBPF") {
        Ok(())
    } else if mode.starts_with("transparent (nftables") {
        Err(DockerError::Nftables(mode.to_owned()))
    } else {
        Err(DockerError::NotTransparent(mode.to_owned()))
    }
}

/// `--cgroup-parent`'s value for the agent cgroup `rel` (relative to the
/// cgroup2 mount `cg`).
pub fn cgroup_parent(
    info: &DockerInfo,
    cg: &Cgroup2,
    agent: &str,
    rel: &str,
) -> Result<String, DockerError> {
    match info.driver {
        Driver::Cgroupfs => {
            if info.cgroup_version == "1" && cg.mount != Path::new(HYBRID_UNIFIED_MOUNT) {
                return Err(DockerError::V1Only {
                    mount: cg.mount.display().to_string(),
                });
            }
            Ok(format!("/{}", cgroup::normalize(rel)))
        }
        Driver::Systemd => slice_name(rel).ok_or_else(|| DockerError::NotASlice {
            agent: agent.to_owned(),
            cgroup: cgroup::normalize(rel),
            suggested: suggested_slice(rel, agent),
        }),
    }
}

/// A slice path for `agent` beside its cgroup `rel`: in the same parent
/// when that is a slice (the agents' parent, `airlock.slice`, is one).
/// Dashes in the name become `_`: a dash would be another level.
fn suggested_slice(rel: &str, agent: &str) -> String {
    let rel = cgroup::normalize(rel);
    let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
    let own = agent.replace('-', "_");
    match slice_name(parent) {
        Some(p) => format!("{parent}/{}-{own}.slice", p.trim_end_matches(".slice")),
        None => format!(
            "airlock.slice/airlock-{own}.slice (with the daemon's agents' parent airlock.slice)"
        ),
    }
}

/// The systemd slice whose cgroup is `rel`, if `rel` is a slice path:
/// `a.slice/a-b.slice/a-b-c.slice` is `a-b-c.slice`. (`-.slice`, the root,
/// is never written.)
pub fn slice_name(rel: &str) -> Option<String> {
    let rel = cgroup::normalize(rel);
    let mut prefix = String::new();
    for part in rel.split('/') {
        let unit = part.strip_suffix(".slice")?;
        let own = if prefix.is_empty() {
            unit
        } else {
            unit.strip_prefix(prefix.as_str())?.strip_prefix('-')?
        };
        // One level per component: a dash would be another level, and
        // systemd escapes a literal one as \x2d.
        if own.is_empty() || own.contains('-') || own.contains('\\') {
            return None;
        }
        prefix = unit.to_owned();
    }
    (!prefix.is_empty()).then(|| format!("{prefix}.slice"))
}

/// Refuses docker arguments that would undo the identity.
pub fn check_args(args: &[OsString]) -> Result<(), DockerError> {
    for a in args {
        let a = a.to_string_lossy();
        if a == "--cgroup-parent" || a.starts_with("--cgroup-parent=") {
            return Err(DockerError::Conflict("--cgroup-parent".to_owned()));
        }
    }
    Ok(())
}

/// Creates the agent's cgroup (cgroupfs) before Docker does, as `airlock
/// run` does, so the daemon claims (marks) it like any agent cgroup.
pub fn ensure_cgroup(cg: &Cgroup2, agent: &str, rel: &str) -> Result<(), DockerError> {
    let dir = cg.path(rel);
    cgroup::ensure(&dir).map_err(|source| DockerError::CreateCgroup {
        agent: agent.to_owned(),
        path: dir.display().to_string(),
        source,
    })
}

/// The flags that make a container the agent: its cgroup parent, the trust
/// files over the image's trust store paths, the CA variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    pub cgroup_parent: String,
    /// (host file, path in the container), read-only.
    pub mounts: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
}

impl Flags {
    pub fn new(cgroup_parent: String, files: &TrustFiles) -> Flags {
        let bundle = files.bundle.display().to_string();
        let java = files.java.display().to_string();
        let mounts = PEM_PATHS
            .iter()
            .map(|p| (bundle.clone(), (*p).to_owned()))
            .chain(JAVA_PATHS.iter().map(|p| (java.clone(), (*p).to_owned())))
            .collect();
        let env = CA_VARIABLES
            .iter()
            .map(|v| ((*v).to_owned(), PEM_PATHS[0].to_owned()))
            .collect();
        Flags {
            cgroup_parent,
            mounts,
            env,
        }
    }

    /// As `docker run` arguments. `--mount`, not `-v`: a missing source is
    /// an error rather than an empty directory made in its place.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![format!("--cgroup-parent={}", self.cgroup_parent)];
        for (src, dst) in &self.mounts {
            a.push(format!(
                "--mount=type=bind,source={src},target={dst},readonly"
            ));
        }
        for (k, v) in &self.env {
            a.push(format!("--env={k}={v}"));
        }
        a
    }

    /// As a docker compose service's keys (YAML, two-space indented under
    /// the service).
    pub fn compose(&self) -> String {
        let mut s = format!("cgroup_parent: {}\nvolumes:\n", self.cgroup_parent);
        for (src, dst) in &self.mounts {
            s.push_str(&format!(
                "  - type: bind\n    source: {src}\n    target: {dst}\n    read_only: true\n"
            ));
        }
        s.push_str("environment:\n");
        for (k, v) in &self.env {
            s.push_str(&format!("  {k}: {v}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cg(mount: &str) -> Cgroup2 {
        Cgroup2 {
            mount: PathBuf::from(mount),
            root_depth: 0,
        }
    }

    fn info(driver: Driver, version: &str) -> DockerInfo {
        DockerInfo {
            driver,
            cgroup_version: version.to_owned(),
        }
    }

    #[test]
    fn docker_info_parses() {
        assert_eq!(
            parse_info("cgroupfs 1\n").unwrap(),
            info(Driver::Cgroupfs, "1")
        );
        assert_eq!(parse_info("systemd 2").unwrap(), info(Driver::Systemd, "2"));
        assert!(matches!(
            parse_info("none 2"),
            Err(DockerError::UnknownDriver(d)) if d == "none"
        ));
        for bad in ["", "cgroupfs", "cgroupfs 2 x"] {
            assert!(
                matches!(parse_info(bad), Err(DockerError::BadInfo(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cgroupfs_parent_is_the_agent_cgroup_as_an_absolute_path() {
        let hybrid = cg(HYBRID_UNIFIED_MOUNT);
        let v2 = cg("/sys/fs/cgroup");
        for (i, c) in [
            (info(Driver::Cgroupfs, "1"), &hybrid),
            (info(Driver::Cgroupfs, "2"), &v2),
            (info(Driver::Cgroupfs, "2"), &hybrid),
        ] {
            assert_eq!(
                cgroup_parent(&i, c, "bot", "airlock.slice/agent-bot/").unwrap(),
                "/airlock.slice/agent-bot"
            );
        }
        // cgroup v1 Docker with cgroup2 somewhere runc does not join.
        let err = cgroup_parent(
            &info(Driver::Cgroupfs, "1"),
            &cg("/mnt/cg2"),
            "bot",
            "airlock.slice/agent-bot",
        )
        .unwrap_err();
        assert!(matches!(err, DockerError::V1Only { .. }), "{err}");
    }

    #[test]
    fn systemd_parent_is_the_slice_of_a_slice_path() {
        let i = info(Driver::Systemd, "2");
        let c = cg("/sys/fs/cgroup");
        assert_eq!(
            cgroup_parent(&i, &c, "bot", "airlock.slice/airlock-bot.slice").unwrap(),
            "airlock-bot.slice"
        );
        assert_eq!(
            slice_name("/a.slice/a-b.slice/a-b-c.slice/").as_deref(),
            Some("a-b-c.slice")
        );
        assert_eq!(
            slice_name("airlock.slice").as_deref(),
            Some("airlock.slice")
        );
        // The default agent cgroup, and other non-slice paths: refused.
        for bad in [
            "airlock.slice/agent-bot",
            "airlock.slice/bot.slice",
            "airlock.slice/airlock-a-b.slice",
            "airlock.slice/airlock-.slice",
            "a-b.slice",
            "a.slice/a-b\\x2dc.slice",
            "",
        ] {
            assert_eq!(slice_name(bad), None, "{bad:?}");
        }
        let err = cgroup_parent(&i, &c, "bot", "airlock.slice/agent-bot").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DockerError::NotASlice { .. }));
        assert!(msg.contains("native.cgroupdriver=cgroupfs"), "{msg}");
        assert!(
            msg.contains("airlock agent add bot --cgroup airlock.slice/airlock-bot.slice"),
            "{msg}"
        );
        let err = cgroup_parent(&i, &c, "my-bot", "airlock.slice/agent-my-bot").unwrap_err();
        let suggested = "airlock.slice/airlock-my_bot.slice";
        assert!(err.to_string().contains(suggested), "{err}");
        assert_eq!(
            slice_name(suggested).as_deref(),
            Some("airlock-my_bot.slice")
        );
    }

    #[test]
    fn only_ebpf_interception_takes_containers() {
        assert!(check_mode("transparent (eBPF): agents under cgroup x").is_ok());
        assert!(check_mode("transparent (eBPF, adopted pinned programs): ...").is_ok());
        assert!(matches!(
            check_mode("transparent (nftables, table inet airlock): ..."),
            Err(DockerError::Nftables(_))
        ));
        assert!(matches!(
            check_mode("explicit proxy only: transparent interception is off"),
            Err(DockerError::NotTransparent(_))
        ));
    }

    #[test]
    fn a_cgroup_parent_of_the_callers_is_refused() {
        let ok: Vec<OsString> = ["--rm", "-it", "img", "sh"].map(Into::into).to_vec();
        assert!(check_args(&ok).is_ok());
        for bad in [
            ["--cgroup-parent", "/x"].as_slice(),
            &["--cgroup-parent=/x"],
        ] {
            let args: Vec<OsString> = bad.iter().map(Into::into).collect();
            assert!(matches!(check_args(&args), Err(DockerError::Conflict(_))));
        }
    }

    #[test]
    fn flags_mount_the_trust_files_over_every_store_path() {
        let files = TrustFiles::in_dir(Path::new("/var/lib/airlock"));
        let f = Flags::new("/airlock.slice/agent-bot".into(), &files);
        let args = f.args();
        assert_eq!(args[0], "--cgroup-parent=/airlock.slice/agent-bot");
        assert!(args.contains(
            &"--mount=type=bind,source=/var/lib/airlock/agent-ca-bundle.pem,target=/etc/ssl/certs/ca-certificates.crt,readonly"
                .to_owned()
        ));
        assert!(args.contains(
            &"--mount=type=bind,source=/var/lib/airlock/agent-cacerts.jks,target=/etc/ssl/certs/java/cacerts,readonly"
                .to_owned()
        ));
        assert_eq!(
            args.iter().filter(|a| a.starts_with("--mount=")).count(),
            PEM_PATHS.len() + JAVA_PATHS.len()
        );
        assert!(
            args.contains(&"--env=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_owned())
        );
        assert!(
            !args
                .iter()
                .any(|a| a.to_ascii_lowercase().contains("proxy"))
        );
        let yaml = f.compose();
        assert!(yaml.starts_with("cgroup_parent: /airlock.slice/agent-bot\n"));
        assert!(yaml.contains("    target: /etc/pki/tls/certs/ca-bundle.crt\n"));
        assert!(yaml.contains("  SSL_CERT_FILE: /etc/ssl/certs/ca-certificates.crt\n"));
    }
}
