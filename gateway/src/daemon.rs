//! `airlock serve`: brings the daemon up in order, runs until SIGTERM or
//! SIGINT, and takes it down in the reverse order.
//!
//! Start-up: harden the process → lock the data directory → master key →
//! database (embedded or `DATABASE_URL`) and migrations → key check →
//! snapshot and change listener → audit writer → local CA → listeners
//! (explicit proxy, dashboard, then transparent interception, which moves
//! the daemon into its own cgroup first) → the gateway, then each
//! listener's task → admin socket → `READY=1` to systemd.
//! Any failure stops start-up with one clear error and exit status 1.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::admin::{self, StatusInfo};
use crate::config::{Database, Settings};
use crate::datadir::{DataDir, DataDirError};
use crate::intercept::Transparent;
use crate::intercept::redirect::Redirector;
use crate::policy::RateLimiter;
use crate::policy::approvals::Approvals;
use crate::proxy::{self, Gateway, egress::Egress, upstream::Upstreams};
use crate::service::Service;
use crate::shutdown::{self, Shutdown};
use crate::snapshot::SnapshotHandle;
use crate::store::embedded::{EmbeddedError, EmbeddedPostgres};
use crate::store::listen::follow_changes;
use crate::store::vault_keys::KeyCheckError;
use crate::store::{Store, StoreError, Target};
use crate::tls::{CertificateAuthority, LeafCache, TlsError, upstream_client_config};
use crate::vault::{self, KeyError, KeySource, MasterKey, Vault};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyCheck(#[from] KeyCheckError),
    #[error("cannot open the admin socket {path}: {source}")]
    AdminSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot build the OAuth2 token client: {0}")]
    TokenClient(#[from] crate::credentials::EndpointError),
    #[error(transparent)]
    Intercept(#[from] crate::intercept::InterceptError),
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardError),
    #[error(transparent)]
    AuditSpool(#[from] crate::audit::spool::SpoolError),
    #[error(transparent)]
    AuditExport(#[from] crate::audit::export::ExportError),
    #[error(
        "cannot listen on {addr} for the explicit proxy: {source} (is another airlock running? \
         choose another address with --proxy-listen or AIRLOCK_PROXY_LISTEN)"
    )]
    ProxyListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the daemon until a stop signal.
pub async fn serve(settings: Settings) -> Result<(), DaemonError> {
    harden_process();
    let data = DataDir::new(&settings.data_dir);
    let _lock = data.lock_for_daemon()?;
    let key_env = std::env::var(vault::KEY_ENV).ok();
    let (key, key_source) = vault::load_master_key(key_env.as_deref(), data.root())?;
    drop(key_env);
    let vault = Arc::new(Vault::new(&key));
    tracing::info!(key_id = vault.key_id(), source = %key_source, "master key loaded");
    // A generated key is written only once the database is known to hold
    // nothing sealed under another key.
    let new_key = match key_source {
        KeySource::Generated(path) => Some((key, path)),
        KeySource::Environment | KeySource::File(_) => None,
    };

    let mut stop = StopSignals::install()?;
    let (embedded, target) = open_database(&settings, &data).await?;
    let result = run(
        &settings,
        &data,
        (vault, new_key),
        &target,
        &embedded,
        &mut stop,
    )
    .await;
    if let Some(pg) = embedded {
        // Blocking: waits for PostgreSQL's fast shutdown.
        let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
    }
    result
}

/// Everything after the database is up; returns when told to stop. Kept
/// apart so the embedded server is stopped whatever this returns.
async fn run(
    settings: &Settings,
    data: &DataDir,
    (vault, new_key): (Arc<Vault>, Option<(MasterKey, PathBuf)>),
    target: &Target,
    embedded: &Option<EmbeddedPostgres>,
    stop: &mut StopSignals,
) -> Result<(), DaemonError> {
    let store = Store::open(target).await?;
    if let Some((key, path)) = new_key {
        if let Some(theirs) = store.vault_key_ids().await?.into_iter().next() {
            return Err(KeyCheckError::NoKeyGiven { theirs }.into());
        }
        vault::persist_new_key(&key, &path)?;
    }
    store.check_master_key(&vault).await?;
    // Before anything is served: rows sealed before the host, path and
    // injection were bound in are re-sealed (store/secrets.rs).
    store.upgrade_secret_seals(&vault).await?;
    tracing::info!(database = store.target(), "database ready");

    let snapshot = Arc::new(SnapshotHandle::default());
    snapshot.reload(&store).await?;
    let approvals = Arc::new(Approvals::new(
        settings.proxy.approval_timeout,
        Arc::new(store.clone()),
    ));
    let (trigger, shutdown) = shutdown::channel();
    let listener_task = tokio::spawn(follow_changes(
        store.clone(),
        snapshot.clone(),
        approvals.clone(),
        shutdown.clone(),
    ));
    let spool = crate::audit::spool::Spool::open(data.root(), settings.audit.spool_max_bytes)?;
    let (audit, audit_rx) = crate::audit::channel(&settings.audit);
    let audit_state = audit.state().clone();
    let exporter =
        crate::audit::export::Exporter::start(&settings.audit.export, audit_state.export.clone())?;
    let audit_task = tokio::spawn(crate::audit::run_writer(
        store.clone(),
        spool,
        audit_rx,
        audit_state.clone(),
        exporter,
        shutdown.clone(),
    ));

    let ca = Arc::new(CertificateAuthority::load_or_create(data.root())?);
    tracing::info!(ca = %ca.cert_path().display(), "local CA ready");
    // The agents' view of the trust store (systemd drop-ins bind these
    // files); not fatal here: each `airlock run` refreshes them again.
    if let Err(e) = crate::intercept::trust_view::refresh(data.root(), ca.cert_path()) {
        tracing::warn!(error = %e, "cannot write the agents' trust files");
    }
    let listen_error = |source| DaemonError::ProxyListen {
        addr: settings.proxy.listen,
        source,
    };
    let proxy_listener = TcpListener::bind(settings.proxy.listen)
        .await
        .map_err(listen_error)?;
    // The bound address: with port 0 (tests) the kernel picked the port.
    let proxy_addr = proxy_listener.local_addr().map_err(listen_error)?;
    let dashboard_listener = crate::dashboard::bind(&settings.dashboard).await?;
    let dashboard_addr = dashboard_listener.local_addr().map_err(|source| {
        crate::dashboard::DashboardError::Listen {
            addr: settings.dashboard.listen,
            source,
        }
    })?;
    // Moves the daemon into its own cgroup before binding the transparent
    // listener (see `intercept`).
    let intercept =
        crate::intercept::start(&settings.intercept, data.root(), snapshot.clone()).await?;
    let mut own_ports = vec![proxy_addr.port(), dashboard_addr.port()];
    own_ports.extend(intercept.transparent.as_ref().map(|t| t.port));
    let upstream_tls = upstream_client_config(settings.proxy.upstream_ca.as_deref())?;
    // Token endpoints are verified against the upstreams' roots.
    let credentials = Arc::new(crate::credentials::Credentials::new(
        vault.clone(),
        Some(store.clone()),
        crate::credentials::TokenClient::new(&upstream_tls)?,
    ));
    let leaves = Arc::new(LeafCache::with_defaults(ca.clone())?);
    let gateway = Arc::new(Gateway {
        snapshot: snapshot.clone(),
        vault: vault.clone(),
        limiter: RateLimiter::default(),
        approvals: approvals.clone(),
        audit,
        upstreams: Upstreams::new(upstream_tls, settings.proxy.upstream_headers_timeout),
        credentials: credentials.clone(),
        leaves: leaves.clone(),
        egress: Egress {
            allow: settings.proxy.allow_upstreams.clone(),
            resolve: settings.proxy.resolve.clone(),
            own_ports,
        },
        idle_timeout: settings.proxy.idle_timeout,
    });
    let mut listeners = vec![format!("explicit proxy on {proxy_addr}")];
    let ebpf_maps = intercept.transparent.as_ref().and_then(|t| t.maps.clone());
    let transparent_task = intercept.transparent.map(|t| {
        listeners.extend(t.describe());
        serve_transparent(gateway.clone(), t, shutdown.clone())
    });
    let proxy_task = tokio::spawn(proxy::explicit::run(
        gateway,
        proxy_listener,
        shutdown.clone(),
    ));

    let socket_path = data.admin_socket();
    let admin_listener = admin::bind(&socket_path).map_err(|source| DaemonError::AdminSocket {
        path: socket_path.clone(),
        source,
    })?;
    let service = Service::new(
        store.clone(),
        vault.clone(),
        snapshot,
        approvals,
        &settings.intercept.agents_cgroup,
        credentials.clone(),
    );
    let status = StatusInfo {
        audit: audit_state,
        leaves,
        credentials,
        ebpf_maps,
        started_at: Utc::now(),
        data_dir: data.root().display().to_string(),
        mode: intercept.mode,
        listeners: listeners
            .into_iter()
            .chain([
                match &settings.dashboard.public_url {
                    Some(public) => {
                        format!("dashboard on http://{dashboard_addr}/ (public {public}/)")
                    }
                    None => format!("dashboard on http://{dashboard_addr}/"),
                },
                format!("admin API on {}", socket_path.display()),
            ])
            .collect(),
        database_kind: match settings.database {
            Database::Embedded { .. } => "embedded",
            Database::External { .. } => "external",
        },
        postgres_pid: embedded.as_ref().map(EmbeddedPostgres::pid_cell),
        key_id: vault.key_id().to_owned(),
        ca_cert: ca.cert_path().display().to_string(),
        proxy_addr: proxy_addr.to_string(),
        dashboard_addr: Some(dashboard_addr.to_string()),
    };
    crate::dashboard::announce_first_password(&service, data.root(), dashboard_addr).await?;
    let dashboard_app = crate::dashboard::router(
        service.clone(),
        status.clone(),
        shutdown.clone(),
        &settings.dashboard,
        dashboard_addr,
    )?;
    let dashboard_task = tokio::spawn(crate::dashboard::serve(
        dashboard_listener,
        dashboard_app,
        shutdown.clone(),
    ));
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        socket_path.clone(),
        admin::router(service, status),
        shutdown.clone(),
    ));

    tracing::info!(admin = %socket_path.display(), "airlock is ready");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    stop.wait().await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    trigger.fire();
    let _ = proxy_task.await;
    if let Some(task) = transparent_task {
        let _ = task.await;
    }
    let _ = admin_task.await;
    let _ = dashboard_task.await;
    let _ = listener_task.await;
    let _ = audit_task.await;
    store.close().await;
    Ok(())
}

/// Serves the transparent listeners and keeps their agent map current
/// until shutdown, and (eBPF) the listeners opened in agents' own network
/// namespaces as the follower reaches them, each until its namespace is
/// released; the redirect stays attached until every listener is closed.
fn serve_transparent(
    gw: Arc<Gateway>,
    transparent: Transparent,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let Transparent {
        listeners,
        agents,
        redirector,
        netns,
        events,
        attached,
        ..
    } = transparent;
    tokio::spawn(async move {
        let mut tasks = vec![tokio::spawn(agents.clone().follow(shutdown.clone()))];
        let unreached = Arc::new(tokio::sync::Notify::new());
        if let Some(events) = events {
            tasks.push(tokio::spawn(crate::intercept::events::run(
                events,
                agents.clone(),
                gw.audit.clone(),
                unreached.clone(),
                shutdown.clone(),
            )));
        }
        for listener in listeners {
            tasks.push(tokio::spawn(proxy::transparent::run(
                gw.clone(),
                agents.clone(),
                redirector.clone(),
                listener,
                shutdown.clone(),
            )));
        }
        if let Some(follower) = netns {
            let serve = move |served: crate::intercept::netns_follow::Served| {
                let redirector = Redirector::Ebpf {
                    netns: Some(served.diag),
                };
                for listener in served.listeners {
                    tokio::spawn(proxy::transparent::run(
                        gw.clone(),
                        agents.clone(),
                        redirector.clone(),
                        listener,
                        served.stop.clone(),
                    ));
                }
            };
            tasks.push(tokio::spawn(follower.run(
                serve,
                unreached,
                shutdown.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        drop(attached);
    })
}

async fn open_database(
    settings: &Settings,
    data: &DataDir,
) -> Result<(Option<EmbeddedPostgres>, Target), DaemonError> {
    match &settings.database {
        Database::External { url } => Ok((None, Target::from_url(url)?)),
        Database::Embedded { bin_dir, user } => {
            let (pg, target) =
                EmbeddedPostgres::start(data.postgres_dir(), bin_dir.clone(), user.clone()).await?;
            tracing::info!(pid = pg.pid(), socket = %pg.socket_dir().display(), "embedded PostgreSQL running");
            Ok((Some(pg), target))
        }
    }
}

/// SIGTERM (systemd) and SIGINT (Ctrl-C): both stop the daemon in order.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, DaemonError> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).map_err(DaemonError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

/// Keeps secrets out of core dumps and away from ptrace by other users,
/// and makes every file the daemon creates private by default.
fn harden_process() {
    use nix::sys::resource::{Resource, setrlimit};
    use nix::sys::stat::{Mode, umask};
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "cannot disable core dumps");
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot mark the process non-dumpable");
    }
    umask(Mode::from_bits_truncate(0o077));
    raise_open_file_limit();
}

/// Raises the soft limit on open files to the hard one: every agent
/// connection holds one descriptor and most hold two (the upstream), and
/// the usual soft default of 1,024 would refuse connections long before
/// memory or CPU run out. Never lowers it.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

#[cfg(test)]
mod rlimit_tests {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // Lowering the soft limit is always allowed (by one, so that other
        // tests in this process keep their descriptors); raising it back
        // is what the daemon does.
        setrlimit(Resource::RLIMIT_NOFILE, hard - 1, hard).unwrap();
        super::raise_open_file_limit();
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }
}
