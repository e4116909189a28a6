//! Start-up of transparent interception, and the fallback between modes:
//! the daemon into its own cgroup, the listeners bound, then eBPF or the
//! nftables table; what runs is handed to the daemon ([`Transparent`]),
//! which serves the listeners.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway_common::Config;
use tokio::net::TcpListener;

use super::agents::AgentMap;
use super::cgroup::{self, Cgroup2};
use super::netns_follow::Follower;
use super::occupancy::MapOccupancy;
use super::redirect::{self, Redirector};
use super::settings::{InterceptSettings, TransparentMode};
use super::state::{State, write_state};
use super::{bpf, netns, nft};
use crate::snapshot::SnapshotHandle;

/// Why the daemon must not start.
#[derive(Debug, thiserror::Error)]
#[error("transparent interception is required (--transparent {mode}) but cannot start: {why}")]
pub struct InterceptError {
    /// The mode that was required (`ebpf`, `nftables`).
    pub mode: &'static str,
    /// What stopped it.
    pub why: StartError,
}

/// Why transparent interception could not start; the messages are the
/// operator's, so each says what failed and, where one exists, the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("it needs root (for cgroups, eBPF or nftables)")]
    NotRoot,
    #[error("{0}")]
    Cgroup2(std::io::Error),
    #[error("cannot create cgroup {}: {source}", .dir.display())]
    CreateCgroup {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot move the daemon into its cgroup {}: {source}", .dir.display())]
    MoveDaemon {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on 127.0.0.1:{port} for the transparent proxy: {source} (choose another \
         port with --transparent-port or AIRLOCK_TRANSPARENT_PORT)"
    )]
    Listen { port: u16, source: std::io::Error },
    #[error("{0}")]
    ListenerAddr(std::io::Error),
    /// eBPF needs the cookie to tell the host's namespace from agents'.
    #[error("cannot read the network namespace cookie of the transparent listener: {0}")]
    NetnsCookie(std::io::Error),
    #[error("this build has no eBPF object (build it with `cargo xtask build-ebpf`)")]
    NoObject,
    #[error("{0}")]
    Bpffs(std::io::Error),
    /// The loader's own error (verifier log, missing hook, EPERM).
    #[error(transparent)]
    Ebpf(#[from] bpf::BpfError),
    #[error(transparent)]
    Nftables(#[from] nft::NftError),
    /// `auto` mode: the steps every mode needs failed.
    #[error("transparent interception could not start: {0}")]
    Prepare(Box<StartError>),
    /// `auto` mode: eBPF failed, and then the fallback did too.
    #[error("eBPF interception could not start ({ebpf}); nor could the nftables fallback ({nft})")]
    NoFallback {
        ebpf: Box<StartError>,
        nft: Box<StartError>,
    },
}

/// What redirects the agents' connections to the listeners.
enum Backend {
    /// Holding the programs keeps the getsockopt program attached.
    Ebpf {
        /// Its `netns` map is taken for the namespace follower.
        loaded: Box<bpf::Loaded>,
    },
    Nftables,
}

impl Backend {
    fn redirector(&self) -> Redirector {
        match self {
            Backend::Ebpf { .. } => Redirector::Ebpf { netns: None },
            Backend::Nftables => Redirector::Nftables,
        }
    }
}

/// A running transparent path: what the daemon needs to serve it. The
/// accepting side is the gateway's (`proxy::transparent`); this module
/// supplies the identity and original destinations it reads.
pub struct Transparent {
    /// Bound on `127.0.0.1:port` and, where the host has it, `[::1]:port`.
    pub listeners: Vec<TcpListener>,
    /// The listeners' port (the kernel's pick when the settings say 0):
    /// one of the gateway's own ports, which agents may never reach.
    pub port: u16,
    /// cgroup id → agent for the accepted connections; kept current by
    /// [`AgentMap::follow`].
    pub agents: Arc<AgentMap>,
    /// How the accepted connections say where they were going.
    pub redirector: Redirector,
    /// Follows agents' own network namespaces ([`Follower::run`]): eBPF
    /// reaches them and hands their listeners to the daemon; the nftables
    /// fallback redirects in the host's namespace only, so there it only
    /// warns about them.
    pub netns: Option<Follower>,
    /// The eBPF programs' refusals, for [`super::events::run`] (eBPF
    /// mode; the nftables table refuses nothing it could report).
    pub events: Option<super::events::KernelEvents>,
    /// The programs' maps, for `/metrics` (eBPF mode; `None` otherwise).
    pub maps: Option<Arc<MapOccupancy>>,
    /// Keeps the redirect in place while held.
    pub attached: Attached,
}

/// Holds what must stay loaded while the listeners accept: the eBPF
/// getsockopt program answers only while its link is held. Drop it after
/// the listeners are closed.
pub struct Attached {
    _backend: Backend,
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
}

/// The outcome of [`start`]: the transparent path if it runs, and the
/// one-line description `airlock status` shows either way.
pub struct Started {
    /// `None`: the explicit proxy only (off, or `auto` found no way).
    pub transparent: Option<Transparent>,
    /// What runs and, for a fallback, why: logged and shown by `status`.
    pub mode: String,
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
    /// The cookie of the daemon's own network namespace.
    host_netns: u64,
}

async fn prepare(settings: &InterceptSettings) -> Result<Prepared, StartError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(StartError::NotRoot);
    }
    let cg = Cgroup2::find().map_err(StartError::Cgroup2)?;
    let parent = cg.path(&settings.agents_cgroup);
    let gateway = cg.path(&settings.gateway_cgroup);
    for dir in [&parent, &gateway] {
        cgroup::ensure(dir).map_err(|source| StartError::CreateCgroup {
            dir: dir.clone(),
            source,
        })?;
    }
    // Before binding: accepted sockets belong to the listener's cgroup,
    // which is where the getsockopt program is attached. In both modes
    // it keeps the daemon's own sockets out of the agents' tree.
    cgroup::move_pid(&gateway, std::process::id()).map_err(|source| StartError::MoveDaemon {
        dir: gateway.clone(),
        source,
    })?;
    let bound_after_ns = redirect::boot_time_ns();
    let (listeners, port) = bind(settings.port).await?;
    let host_netns = listeners
        .first()
        .map(netns::netns_cookie)
        .transpose()
        .map_err(StartError::NetnsCookie)?
        .unwrap_or_default();
    Ok(Prepared {
        cg,
        parent,
        gateway,
        listeners,
        port,
        bound_after_ns,
        host_netns,
    })
}

/// The eBPF programs, loaded or adopted; then this daemon's nft table,
/// if a fallback run left one, is removed.
fn start_ebpf(settings: &InterceptSettings, p: &Prepared) -> Result<(Backend, String), StartError> {
    let object = crate::ebpf::object().ok_or(StartError::NoObject)?;
    cgroup::ensure_bpffs(&settings.pin_dir).map_err(StartError::Bpffs)?;
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
        p.host_netns,
    )?;
    match nft::remove(&settings.nft_table) {
        Ok(true) => tracing::info!(table = %settings.nft_table,
            "removed the nftables fallback's table left by an earlier run"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot remove the nftables fallback's old table"),
    }
    // "network namespaces" tells operators (and `airlock docker`'s tests)
    // that containers are served in this mode, unlike nftables.
    let how = if loaded.adopted {
        "eBPF, adopted pinned programs, agents' network namespaces followed"
    } else {
        "eBPF, agents' network namespaces followed"
    };
    Ok((
        Backend::Ebpf {
            loaded: Box::new(loaded),
        },
        how.to_owned(),
    ))
}

/// The follower of agents' network namespaces (`map`: `None` in the
/// nftables mode, where it only warns about them).
fn follower(p: &Prepared, map: Option<bpf::NetnsMap>) -> Option<Follower> {
    match Follower::new(p.parent.clone(), p.port, map) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow agents' network namespaces: only the \
                host's is served, agents in others are refused (eBPF) or not intercepted \
                (nftables)");
            None
        }
    }
}

/// The nftables table; then this daemon's pinned eBPF programs, if an
/// eBPF run left them, are released.
fn start_nft(settings: &InterceptSettings, p: &Prepared) -> Result<(Backend, String), StartError> {
    let rules = nft::Rules::new(
        &settings.nft_table,
        &p.cg,
        &settings.agents_cgroup,
        &settings.ports,
        p.port,
    )?;
    nft::install(&rules)?;
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
) -> Result<(Transparent, String), StartError> {
    let p = prepare(settings).await.map_err(|e| match settings.mode {
        TransparentMode::Auto => StartError::Prepare(Box::new(e)),
        _ => e,
    })?;
    let (mut backend, how) = match settings.mode {
        TransparentMode::Ebpf => start_ebpf(settings, &p)?,
        TransparentMode::Nftables => start_nft(settings, &p)?,
        _ => match start_ebpf(settings, &p) {
            Ok(started) => started,
            Err(ebpf) => {
                tracing::warn!(
                    "eBPF interception could not start ({ebpf}): falling back to nftables"
                );
                let (backend, how) = match start_nft(settings, &p) {
                    Ok(started) => started,
                    Err(nft) => {
                        return Err(StartError::NoFallback {
                            ebpf: Box::new(ebpf),
                            nft: Box::new(nft),
                        });
                    }
                };
                (
                    backend,
                    format!("{how}, because eBPF interception could not start: {ebpf}"),
                )
            }
        },
    };
    let (netns, events, maps) = match &mut backend {
        Backend::Ebpf { loaded } => (
            loaded.netns.take().and_then(|m| follower(&p, Some(m))),
            loaded.events.take().map(|e| *e),
            loaded.occupancy.take().map(Arc::new),
        ),
        Backend::Nftables => (follower(&p, None), None, None),
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
            redirector: backend.redirector(),
            netns,
            events,
            maps,
            attached: Attached { _backend: backend },
        },
        how,
    ))
}

/// Binds `127.0.0.1:port` and `[::1]:port` (the same port; with 0 the
/// kernel picks it for the first). A host without `::1` gets the IPv4
/// listener only: native-IPv6 agent connections then fail (closed).
async fn bind(port: u16) -> Result<(Vec<TcpListener>, u16), StartError> {
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| StartError::Listen { port, source })?;
    let port = v4.local_addr().map_err(StartError::ListenerAddr)?.port();
    let mut listeners = vec![v4];
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await {
        Ok(v6) => listeners.push(v6),
        Err(e) => tracing::warn!(error = %e, port,
            "cannot listen on [::1] for the transparent proxy: IPv6 agent connections will fail"),
    }
    Ok((listeners, port))
}
