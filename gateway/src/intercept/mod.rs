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
//! - [`nft`]: the nftables fallback's table (REDIRECT by `socket
//!   cgroupv2`), installed atomically with `nft -f -`.
//! - [`redirect`] and [`diag`]: what an accepted connection says about
//!   itself in either mode: original destination and cgroup id.
//! - [`agents`]: cgroup id → agent, rebuilt on each configuration change.
//! - [`run`]: `airlock run --agent NAME -- CMD`; [`agent_user`]: which
//!   user it runs as (by default the agent's own, created on first run).
//!
//! Start-up ([`start`]): the daemon moves itself into its own cgroup
//! (`airlock-gateway`, outside the agents' parent, so its own sockets are
//! never redirected and the getsockopt program sees its accepted sockets),
//! binds the transparent listener on `127.0.0.1:PORT` and `[::1]:PORT`,
//! then loads the programs. The accepting side is
//! [`crate::proxy::transparent`].
//!
//! Modes (`--transparent`, `AIRLOCK_TRANSPARENT`): `auto` (the default:
//! eBPF when it loads; if it cannot (no BTF, a verifier or attach error,
//! no bpffs), the nftables fallback, saying why; if neither starts, the
//! explicit proxy only, saying why), `off` (the explicit proxy only),
//! `ebpf` (or `--require-ebpf`) and `nftables`: that mechanism or the
//! daemon refuses to start. Whichever mode starts removes the other
//! mode's leftovers of this daemon (its pin directory, its nft table),
//! so switching modes never stacks two redirects.

pub mod agent_user;
pub mod agents;
pub mod bpf;
pub mod cgroup;
pub mod diag;
pub mod nft;
pub mod redirect;
pub mod run;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway_common::Config;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use self::agents::AgentMap;
use self::cgroup::Cgroup2;
use self::redirect::Redirector;
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
    /// eBPF interception when it loads, else the nftables fallback, else
    /// the explicit proxy only.
    #[default]
    Auto,
    /// eBPF interception or the daemon does not start.
    Ebpf,
    /// The nftables fallback (even where eBPF would load) or the daemon
    /// does not start.
    Nftables,
}

impl TransparentMode {
    fn name(self) -> &'static str {
        match self {
            TransparentMode::Off => "off",
            TransparentMode::Auto => "auto",
            TransparentMode::Ebpf => "ebpf",
            TransparentMode::Nftables => "nftables",
        }
    }
}

/// Command-line flags and environment variables of `airlock serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InterceptArgs {
    /// Transparent interception of agents' cgroups: off, auto (eBPF when it
    /// loads, else nftables, else the explicit proxy only), ebpf or
    /// nftables (required).
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
    /// The nftables fallback's table, `inet NAME` (default airlock).
    #[arg(long, env = "AIRLOCK_NFT_TABLE", value_name = "NAME")]
    pub nft_table: Option<String>,
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
    nft_table: Option<String>,
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
    #[serde(default = "default_nft_table")]
    pub nft_table: String,
}

fn default_nft_table() -> String {
    nft::DEFAULT_TABLE.into()
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
            nft_table: default_nft_table(),
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
        let nft_table = a.nft_table.or(f.nft_table).unwrap_or(d.nft_table);
        if !nft::valid_table(&nft_table) {
            return Err(format!(
                "the nft table name {nft_table:?} must start with a letter and hold only \
                 letters, digits, _ and - (at most 64)"
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
            nft_table,
        })
    }
}

/// Why the daemon must not start.
#[derive(Debug, thiserror::Error)]
#[error("transparent interception is required (--transparent {mode}) but cannot start: {why}")]
pub struct InterceptError {
    pub mode: &'static str,
    pub why: String,
}

/// What redirects the agents' connections to the listeners.
enum Backend {
    /// Holding the programs keeps the getsockopt program attached.
    Ebpf {
        _loaded: bpf::Loaded,
    },
    Nftables,
}

impl Backend {
    fn redirector(&self) -> Redirector {
        match self {
            Backend::Ebpf { .. } => Redirector::Ebpf,
            Backend::Nftables => Redirector::Nftables,
        }
    }
}

/// A running transparent path: its listeners and the agent map.
pub struct Transparent {
    pub listeners: Vec<TcpListener>,
    pub port: u16,
    pub agents: Arc<AgentMap>,
    backend: Backend,
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
    /// shutdown; the eBPF getsockopt program stays attached that long.
    pub fn serve(
        self,
        gw: Arc<crate::proxy::Gateway>,
        shutdown: crate::shutdown::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let Transparent {
            listeners,
            agents,
            backend,
            ..
        } = self;
        let redirector = backend.redirector();
        tokio::spawn(async move {
            let mut tasks = vec![tokio::spawn(agents.clone().follow(shutdown.clone()))];
            for listener in listeners {
                tasks.push(tokio::spawn(crate::proxy::transparent::run(
                    gw.clone(),
                    agents.clone(),
                    redirector,
                    listener,
                    shutdown.clone(),
                )));
            }
            for t in tasks {
                let _ = t.await;
            }
            drop(backend);
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
        Ok((t, how)) => {
            let mode = format!(
                "transparent ({how}): agents under cgroup {} on ports {:?} → 127.0.0.1:{} and \
                 [::1]:{}; explicit proxy too",
                settings.agents_cgroup, settings.ports, t.port, t.port
            );
            tracing::info!("{mode}");
            Ok(Started {
                transparent: Some(t),
                mode,
            })
        }
        Err(why) if settings.mode != TransparentMode::Auto => Err(InterceptError {
            mode: settings.mode.name(),
            why,
        }),
        Err(why) => {
            let mode = format!("explicit proxy only: {why}");
            tracing::warn!("{mode}");
            Ok(Started {
                transparent: None,
                mode,
            })
        }
    }
}

/// What every mode needs: the cgroups, the daemon in its own one, the
/// listeners.
struct Prepared {
    cg: Cgroup2,
    parent: PathBuf,
    gateway: PathBuf,
    listeners: Vec<TcpListener>,
    port: u16,
    /// `CLOCK_BOOTTIME` just before the listeners were bound: eBPF records
    /// older than this are an earlier daemon's, flushed at load.
    bound_after_ns: u64,
}

async fn prepare(settings: &InterceptSettings) -> Result<Prepared, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("it needs root (for cgroups, eBPF or nftables)".into());
    }
    let cg = Cgroup2::find().map_err(|e| e.to_string())?;
    let parent = cg.path(&settings.agents_cgroup);
    let gateway = cg.path(&settings.gateway_cgroup);
    for dir in [&parent, &gateway] {
        cgroup::ensure(dir).map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
    }
    // Before binding: accepted sockets belong to the listener's cgroup,
    // which is where the getsockopt program is attached. In both modes
    // it keeps the daemon's own sockets out of the agents' tree.
    cgroup::move_pid(&gateway, std::process::id()).map_err(|e| {
        format!(
            "cannot move the daemon into its cgroup {}: {e}",
            gateway.display()
        )
    })?;
    let bound_after_ns = redirect::boot_time_ns();
    let (listeners, port) = bind(settings.port).await?;
    Ok(Prepared {
        cg,
        parent,
        gateway,
        listeners,
        port,
        bound_after_ns,
    })
}

/// The eBPF programs, loaded or adopted; then this daemon's nft table,
/// if a fallback run left one, is removed.
fn start_ebpf(settings: &InterceptSettings, p: &Prepared) -> Result<(Backend, String), String> {
    let object = crate::ebpf::object()
        .ok_or("this build has no eBPF object (build it with `cargo xtask build-ebpf`)")?;
    cgroup::ensure_bpffs(&settings.pin_dir).map_err(|e| e.to_string())?;
    let config = Config {
        listen_port: p.port,
        agent_level: p.cg.level(&settings.agents_cgroup) + 1,
        ..Config::default()
    };
    let loaded = bpf::load(
        object,
        &settings.pin_dir,
        &p.parent,
        &p.gateway,
        config,
        &settings.ports,
        p.bound_after_ns,
    )?;
    match nft::remove(&settings.nft_table) {
        Ok(true) => tracing::info!(table = %settings.nft_table,
            "removed the nftables fallback's table left by an earlier run"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot remove the nftables fallback's old table"),
    }
    let how = if loaded.adopted {
        "eBPF, adopted pinned programs"
    } else {
        "eBPF"
    };
    Ok((Backend::Ebpf { _loaded: loaded }, how.to_owned()))
}

/// The nftables table; then this daemon's pinned eBPF programs, if an
/// eBPF run left them, are released.
fn start_nft(settings: &InterceptSettings, p: &Prepared) -> Result<(Backend, String), String> {
    let rules = nft::Rules::new(
        &settings.nft_table,
        &p.cg,
        &settings.agents_cgroup,
        &settings.ports,
        p.port,
    )
    .map_err(|e| e.to_string())?;
    nft::install(&rules).map_err(|e| e.to_string())?;
    match bpf::release(&settings.pin_dir) {
        Ok(removed) if !removed.is_empty() => tracing::info!(pin_dir = %settings.pin_dir.display(),
            "released the pinned eBPF programs left by an earlier run"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot release the old pinned eBPF programs"),
    }
    Ok((
        Backend::Nftables,
        format!("nftables, table inet {}", settings.nft_table),
    ))
}

/// Starts the mode `settings` asks for; `Ok` carries how it runs (and,
/// for a fallback, why eBPF did not).
async fn try_start(
    settings: &InterceptSettings,
    data_dir: &Path,
    snapshot: Arc<SnapshotHandle>,
) -> Result<(Transparent, String), String> {
    let p = prepare(settings).await.map_err(|e| match settings.mode {
        TransparentMode::Auto => format!("transparent interception could not start: {e}"),
        _ => e,
    })?;
    let (backend, how) = match settings.mode {
        TransparentMode::Ebpf => start_ebpf(settings, &p)?,
        TransparentMode::Nftables => start_nft(settings, &p)?,
        _ => match start_ebpf(settings, &p) {
            Ok(started) => started,
            Err(ebpf) => {
                tracing::warn!(
                    "eBPF interception could not start ({ebpf}): falling back to nftables"
                );
                let (backend, how) = start_nft(settings, &p).map_err(|nft| {
                    format!(
                        "eBPF interception could not start ({ebpf}); nor could the nftables \
                         fallback ({nft})"
                    )
                })?;
                (
                    backend,
                    format!("{how}, because eBPF interception could not start: {ebpf}"),
                )
            }
        },
    };
    let agents = AgentMap::new(p.cg.clone(), &settings.agents_cgroup, snapshot);
    let state = State {
        cgroup2: p.cg.mount.clone(),
        settings: settings.clone(),
        port: p.port,
    };
    if let Err(e) = write_state(data_dir, &state) {
        tracing::warn!(error = %e, "cannot record the interception state in the data directory");
    }
    Ok((
        Transparent {
            listeners: p.listeners,
            port: p.port,
            agents,
            backend,
        },
        how,
    ))
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
            InterceptArgs {
                nft_table: Some("air lock".into()),
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
}
