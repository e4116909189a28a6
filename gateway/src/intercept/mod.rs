//! Transparent interception: agents' HTTPS reaches the gateway without any
//! proxy setting, identified by their cgroup.
//!
//! - [`cgroup`]: the cgroup2 and bpffs mounts (from `/proc/self/mountinfo`),
//!   cgroup paths, ids and levels, moving processes.
//! - [`bpf`]: loading the embedded eBPF object (`gateway-ebpf`), attaching
//!   the agent-side programs to the agents' parent cgroup with pinned links
//!   and maps (fail closed across restarts and crashes; adopted, never
//!   duplicated, by the next start), the getsockopt program on the
//!   gateway's own cgroup, [`bpf::release`], listings.
//! - [`agents`]: cgroup id → agent, rebuilt on each configuration change.
//! - [`run`]: `airlock run --agent NAME -- CMD`.
//!
//! Start-up ([`start`]): the daemon moves itself into its own cgroup
//! (`airlock-gateway`, outside the agents' parent, so its own sockets are
//! never redirected and the getsockopt program sees its accepted sockets),
//! binds the transparent listener on `127.0.0.1:PORT` and `[::1]:PORT`,
//! then loads the programs. The accepting side is
//! [`crate::proxy::transparent`].
//!
//! Modes (`--transparent`, `AIRLOCK_TRANSPARENT`): `auto` (the default:
//! eBPF when it loads, otherwise the explicit proxy only, saying why),
//! `off` (the explicit proxy only), `ebpf` (or `--require-ebpf`: the
//! daemon refuses to start without it). The nftables fallback is not
//! implemented.

pub mod agents;
pub mod bpf;
pub mod cgroup;
pub mod run;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway_common::{AF_INET, Config, OrigInfo, SO_AIRLOCK_ORIG_INFO, SOL_IP};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use self::agents::AgentMap;
use self::cgroup::Cgroup2;
use crate::snapshot::SnapshotHandle;

pub const DEFAULT_TRANSPARENT_PORT: u16 = 10256;
pub const DEFAULT_INTERCEPT_PORTS: &[u16] = &[443];
pub const DEFAULT_AGENTS_CGROUP: &str = "airlock.slice";
pub const DEFAULT_GATEWAY_CGROUP: &str = "airlock-gateway";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/airlock";
/// Written by the daemon in its data directory: where its pins and
/// cgroups are, for `airlock stop --release` and `airlock run`.
pub const STATE_FILE: &str = "intercept.json";

/// Whether and how the daemon intercepts agents transparently.
///
/// The default is `auto`: a host that can run eBPF gets transparent
/// interception without asking. Tests that do not exercise it say `off`
/// (tests/support sets it), so parallel test daemons do not share the
/// host's `airlock.slice` and pins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TransparentMode {
    /// The explicit proxy only.
    Off,
    /// eBPF interception when it loads; otherwise the explicit proxy only.
    #[default]
    Auto,
    /// eBPF interception or the daemon does not start.
    Ebpf,
}

/// Command-line flags and environment variables of `airlock serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InterceptArgs {
    /// Transparent interception of agents' cgroups: off, auto (eBPF when it
    /// loads, else the explicit proxy only) or ebpf (required).
    #[arg(long, env = "AIRLOCK_TRANSPARENT", value_enum)]
    pub transparent: Option<TransparentMode>,
    /// Refuse to start unless eBPF interception loads (same as --transparent ebpf).
    #[arg(long)]
    pub require_ebpf: bool,
    /// Port of the transparent listener on 127.0.0.1 and [::1] (default 10256; 0 picks one).
    #[arg(long, env = "AIRLOCK_TRANSPARENT_PORT", value_name = "PORT")]
    pub transparent_port: Option<u16>,
    /// Destination TCP ports intercepted for agents, comma-separated (default 443).
    #[arg(long, env = "AIRLOCK_INTERCEPT_PORTS", value_name = "PORTS")]
    pub intercept_ports: Option<String>,
    /// The agents' parent cgroup, relative to the cgroup2 mount (default airlock.slice).
    #[arg(long, env = "AIRLOCK_AGENTS_CGROUP", value_name = "PATH")]
    pub agents_cgroup: Option<String>,
    /// The gateway's own cgroup, relative to the cgroup2 mount (default airlock-gateway).
    #[arg(long, env = "AIRLOCK_GATEWAY_CGROUP", value_name = "PATH")]
    pub gateway_cgroup: Option<String>,
    /// Where eBPF maps and links are pinned (default /sys/fs/bpf/airlock).
    #[arg(long, env = "AIRLOCK_BPF_PIN_DIR", value_name = "DIR")]
    pub bpf_pin_dir: Option<PathBuf>,
}

/// The `[intercept]` table of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIntercept {
    mode: Option<TransparentMode>,
    require_ebpf: Option<bool>,
    port: Option<u16>,
    ports: Option<Vec<u16>>,
    agents_cgroup: Option<String>,
    gateway_cgroup: Option<String>,
    pin_dir: Option<PathBuf>,
}

/// Resolved interception settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterceptSettings {
    pub mode: TransparentMode,
    pub port: u16,
    pub ports: Vec<u16>,
    pub agents_cgroup: String,
    pub gateway_cgroup: String,
    pub pin_dir: PathBuf,
}

impl Default for InterceptSettings {
    fn default() -> Self {
        InterceptSettings {
            mode: TransparentMode::Auto,
            port: DEFAULT_TRANSPARENT_PORT,
            ports: DEFAULT_INTERCEPT_PORTS.to_vec(),
            agents_cgroup: DEFAULT_AGENTS_CGROUP.into(),
            gateway_cgroup: DEFAULT_GATEWAY_CGROUP.into(),
            pin_dir: DEFAULT_PIN_DIR.into(),
        }
    }
}

fn valid_cgroup(what: &str, path: &str) -> Result<String, String> {
    let rel = cgroup::normalize(path);
    let ok = !rel.is_empty()
        && rel.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
        });
    if ok {
        Ok(rel)
    } else {
        Err(format!(
            "{what} {path:?} must be a cgroup path like airlock.slice, made of letters, digits \
             and -_.@: (no '..' or empty parts)"
        ))
    }
}

impl InterceptSettings {
    pub fn resolve(a: InterceptArgs, f: FileIntercept) -> Result<InterceptSettings, String> {
        let d = InterceptSettings::default();
        let mode = if a.require_ebpf || f.require_ebpf == Some(true) {
            TransparentMode::Ebpf
        } else {
            a.transparent.or(f.mode).unwrap_or(d.mode)
        };
        let ports = match a.intercept_ports {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s.parse::<u16>() {
                    Ok(p) if p > 0 => Ok(p),
                    _ => Err(format!(
                        "intercepted port {s:?} is not a TCP port (1-65535); give a list like 443,8443"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => f.ports.unwrap_or(d.ports),
        };
        if ports.is_empty()
            || ports.len() > gateway_common::MAX_PORTS as usize
            || ports.contains(&0)
        {
            return Err(format!(
                "intercepted ports must be 1 to {} ports from 1-65535",
                gateway_common::MAX_PORTS
            ));
        }
        let agents_cgroup = valid_cgroup(
            "agents' cgroup",
            &a.agents_cgroup
                .or(f.agents_cgroup)
                .unwrap_or(d.agents_cgroup),
        )?;
        let gateway_cgroup = valid_cgroup(
            "gateway cgroup",
            &a.gateway_cgroup
                .or(f.gateway_cgroup)
                .unwrap_or(d.gateway_cgroup),
        )?;
        if gateway_cgroup == agents_cgroup
            || cgroup::is_under(&gateway_cgroup, &agents_cgroup)
            || cgroup::is_under(&agents_cgroup, &gateway_cgroup)
        {
            return Err(format!(
                "the gateway cgroup {gateway_cgroup:?} must be outside the agents' cgroup \
                 {agents_cgroup:?} (and not contain it)"
            ));
        }
        let pin_dir = a.bpf_pin_dir.or(f.pin_dir).unwrap_or(d.pin_dir);
        if !pin_dir.is_absolute() {
            return Err(format!(
                "the BPF pin directory must be absolute, got {}",
                pin_dir.display()
            ));
        }
        let port = a.transparent_port.or(f.port).unwrap_or(d.port);
        if port != 0 && ports.contains(&port) {
            return Err(format!(
                "the transparent listener's port {port} cannot also be an intercepted port"
            ));
        }
        Ok(InterceptSettings {
            mode,
            port,
            ports,
            agents_cgroup,
            gateway_cgroup,
            pin_dir,
        })
    }
}

/// Why the daemon must not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "transparent interception is required (--transparent ebpf / --require-ebpf) but cannot \
     start: {0}"
)]
pub struct InterceptError(pub String);

/// A running transparent path: its listeners and the agent map. Holding
/// it keeps the getsockopt program attached.
pub struct Transparent {
    pub listeners: Vec<TcpListener>,
    pub port: u16,
    pub agents: Arc<AgentMap>,
    _loaded: bpf::Loaded,
}

impl Transparent {
    /// The listeners, for `airlock status`.
    pub fn describe(&self) -> Vec<String> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| format!("transparent proxy on {a}"))
            .collect()
    }

    /// Serves the listeners and keeps the agent map current until
    /// shutdown; the getsockopt program stays attached that long.
    pub fn serve(
        self,
        gw: Arc<crate::proxy::Gateway>,
        shutdown: crate::shutdown::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let Transparent {
            listeners,
            agents,
            _loaded: loaded,
            ..
        } = self;
        tokio::spawn(async move {
            let mut tasks = vec![tokio::spawn(agents.clone().follow(shutdown.clone()))];
            for listener in listeners {
                tasks.push(tokio::spawn(crate::proxy::transparent::run(
                    gw.clone(),
                    agents.clone(),
                    listener,
                    shutdown.clone(),
                )));
            }
            for t in tasks {
                let _ = t.await;
            }
            drop(loaded);
        })
    }
}

/// The outcome of [`start`]: the transparent path if it runs, and the
/// one-line description `airlock status` shows either way.
pub struct Started {
    pub transparent: Option<Transparent>,
    pub mode: String,
}

/// What the daemon leaves in its data directory for the CLI.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    pub cgroup2: PathBuf,
    pub settings: InterceptSettings,
    pub port: u16,
}

/// Starts transparent interception as `settings` say.
pub async fn start(
    settings: &InterceptSettings,
    data_dir: &Path,
    snapshot: Arc<SnapshotHandle>,
) -> Result<Started, InterceptError> {
    if settings.mode == TransparentMode::Off {
        let mode = "explicit proxy only: transparent interception is off (enable it with \
                    --transparent auto or AIRLOCK_TRANSPARENT=auto)"
            .to_owned();
        tracing::info!("{mode}");
        return Ok(Started {
            transparent: None,
            mode,
        });
    }
    match try_start(settings, data_dir, snapshot).await {
        Ok(t) => {
            let mode = format!(
                "transparent (eBPF{}): agents under cgroup {} on ports {:?} → 127.0.0.1:{} \
                 and [::1]:{}; explicit proxy too",
                if t._loaded.adopted {
                    ", adopted pinned programs"
                } else {
                    ""
                },
                settings.agents_cgroup,
                settings.ports,
                t.port,
                t.port
            );
            tracing::info!("{mode}");
            Ok(Started {
                transparent: Some(t),
                mode,
            })
        }
        Err(why) if settings.mode == TransparentMode::Ebpf => Err(InterceptError(why)),
        Err(why) => {
            let mode = format!(
                "explicit proxy only: eBPF interception could not start ({why}); the nftables \
                 fallback is not implemented"
            );
            tracing::warn!("{mode}");
            Ok(Started {
                transparent: None,
                mode,
            })
        }
    }
}

async fn try_start(
    settings: &InterceptSettings,
    data_dir: &Path,
    snapshot: Arc<SnapshotHandle>,
) -> Result<Transparent, String> {
    let object = crate::ebpf::object()
        .ok_or("this build has no eBPF object (build it with `cargo xtask build-ebpf`)")?;
    if !nix::unistd::geteuid().is_root() {
        return Err("loading eBPF programs needs root".into());
    }
    let cg = Cgroup2::find().map_err(|e| e.to_string())?;
    cgroup::ensure_bpffs(&settings.pin_dir).map_err(|e| e.to_string())?;
    let parent = cg.path(&settings.agents_cgroup);
    let gateway = cg.path(&settings.gateway_cgroup);
    for dir in [&parent, &gateway] {
        cgroup::ensure(dir).map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
    }
    // Before binding: accepted sockets belong to the listener's cgroup,
    // which is where the getsockopt program is attached.
    cgroup::move_pid(&gateway, std::process::id()).map_err(|e| {
        format!(
            "cannot move the daemon into its cgroup {}: {e}",
            gateway.display()
        )
    })?;
    let (listeners, port) = bind(settings.port).await?;
    let config = Config {
        listen_port: port,
        agent_level: cg.level(&settings.agents_cgroup) + 1,
        ..Config::default()
    };
    let loaded = bpf::load(
        object,
        &settings.pin_dir,
        &parent,
        &gateway,
        config,
        &settings.ports,
    )?;
    let agents = AgentMap::new(cg.clone(), &settings.agents_cgroup, snapshot);
    let state = State {
        cgroup2: cg.mount.clone(),
        settings: settings.clone(),
        port,
    };
    if let Err(e) = write_state(data_dir, &state) {
        tracing::warn!(error = %e, "cannot record the interception state in the data directory");
    }
    Ok(Transparent {
        listeners,
        port,
        agents,
        _loaded: loaded,
    })
}

/// Binds `127.0.0.1:port` and `[::1]:port` (the same port; with 0 the
/// kernel picks it for the first). A host without `::1` gets the IPv4
/// listener only: native-IPv6 agent connections then fail (closed).
async fn bind(port: u16) -> Result<(Vec<TcpListener>, u16), String> {
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{port} for the transparent proxy: {e} (choose \
                 another port with --transparent-port or AIRLOCK_TRANSPARENT_PORT)"
            )
        })?;
    let port = v4.local_addr().map_err(|e| e.to_string())?.port();
    let mut listeners = vec![v4];
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await {
        Ok(v6) => listeners.push(v6),
        Err(e) => tracing::warn!(error = %e, port,
            "cannot listen on [::1] for the transparent proxy: IPv6 agent connections will fail"),
    }
    Ok((listeners, port))
}

fn write_state(data_dir: &Path, state: &State) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    let tmp = data_dir.join(format!(".{STATE_FILE}.tmp"));
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, data_dir.join(STATE_FILE))
}

/// What the last daemon on `data_dir` recorded, if anything.
pub fn read_state(data_dir: &Path) -> Option<State> {
    let text = std::fs::read(data_dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Ends interception for the daemon of `data_dir`: removes its pinned
/// links and maps (from its recorded state, else the default pin
/// directory). Returns the paths removed.
pub fn release(data_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let pin_dir = read_state(data_dir)
        .map(|s| s.settings.pin_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR));
    let removed = bpf::release(&pin_dir)?;
    let _ = std::fs::remove_file(data_dir.join(STATE_FILE));
    Ok(removed)
}

/// The original destination and the agent identity of a connection
/// accepted on the transparent listener, answered by the getsockopt
/// program (`SO_AIRLOCK_ORIG_INFO`). `ENOENT`/`ENOPROTOOPT` when the
/// connection was not redirected by Airlock.
pub fn original_info(stream: &impl AsRawFd) -> io::Result<OrigInfo> {
    let mut info = OrigInfo::default();
    let mut len = std::mem::size_of::<OrigInfo>() as nix::libc::socklen_t;
    // SAFETY: `info` is a plain `#[repr(C)]` value of exactly `len` bytes
    // that the kernel may overwrite; `len` is a valid socklen_t; the fd is
    // an open socket borrowed for the call.
    let rc = unsafe {
        nix::libc::getsockopt(
            stream.as_raw_fd(),
            SOL_IP,
            SO_AIRLOCK_ORIG_INFO,
            (&mut info as *mut OrigInfo).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<OrigInfo>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the original-destination answer has {len} bytes"),
        ));
    }
    Ok(info)
}

/// The original destination in `info`.
pub fn original_addr(info: &OrigInfo) -> SocketAddr {
    let v6 = Ipv6Addr::from(info.addr);
    match (info.family, v6.to_ipv4_mapped()) {
        (AF_INET, Some(v4)) => SocketAddr::V4(SocketAddrV4::new(v4, info.port)),
        _ => SocketAddr::V6(SocketAddrV6::new(v6, info.port, 0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_resolve_and_refuse_bad_input() {
        let s =
            InterceptSettings::resolve(InterceptArgs::default(), FileIntercept::default()).unwrap();
        assert_eq!(s, InterceptSettings::default());
        let s = InterceptSettings::resolve(
            InterceptArgs {
                transparent: Some(TransparentMode::Auto),
                intercept_ports: Some("443, 18443".into()),
                agents_cgroup: Some("/test.slice/".into()),
                ..Default::default()
            },
            FileIntercept::default(),
        )
        .unwrap();
        assert_eq!(s.ports, vec![443, 18443]);
        assert_eq!(s.agents_cgroup, "test.slice");
        assert_eq!(s.mode, TransparentMode::Auto);
        for bad in [
            InterceptArgs {
                intercept_ports: Some("443,x".into()),
                ..Default::default()
            },
            InterceptArgs {
                intercept_ports: Some("0".into()),
                ..Default::default()
            },
            InterceptArgs {
                agents_cgroup: Some("a/../b".into()),
                ..Default::default()
            },
            InterceptArgs {
                gateway_cgroup: Some("airlock.slice/gw".into()),
                ..Default::default()
            },
            InterceptArgs {
                transparent_port: Some(443),
                ..Default::default()
            },
            InterceptArgs {
                bpf_pin_dir: Some("rel".into()),
                ..Default::default()
            },
        ] {
            assert!(
                InterceptSettings::resolve(bad.clone(), FileIntercept::default()).is_err(),
                "{bad:?}"
            );
        }
        let s = InterceptSettings::resolve(
            InterceptArgs {
                require_ebpf: true,
                ..Default::default()
            },
            FileIntercept::default(),
        )
        .unwrap();
        assert_eq!(s.mode, TransparentMode::Ebpf);
    }

    #[test]
    fn original_addresses() {
        let mut info = OrigInfo {
            addr: gateway_common::mapped_v4([10, 1, 2, 3]),
            port: 443,
            family: AF_INET,
            ..Default::default()
        };
        assert_eq!(original_addr(&info).to_string(), "10.1.2.3:443");
        info.addr = Ipv6Addr::LOCALHOST.octets();
        info.family = gateway_common::AF_INET6;
        assert_eq!(original_addr(&info).to_string(), "[::1]:443");
    }
}
