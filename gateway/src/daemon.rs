//! `airlock serve`: brings the daemon up in order, runs until SIGTERM or
//! SIGINT, and takes it down in the reverse order.
//!
//! Start-up: harden the process → lock the data directory → master key →
//! database (embedded or `DATABASE_URL`) and migrations → key check →
//! snapshot and change listener → admin socket → `READY=1` to systemd.
//! Any failure stops start-up with one clear error and exit status 1.

use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::{self, StatusInfo};
use crate::config::{Database, Settings};
use crate::datadir::{DataDir, DataDirError};
use crate::policy::RateLimiter;
use crate::policy::approvals::Approvals;
use crate::proxy::{self, Gateway, egress::Egress, upstream::Upstreams};
use crate::service::Service;
use crate::shutdown;
use crate::snapshot::SnapshotHandle;
use crate::store::embedded::{EmbeddedError, EmbeddedPostgres};
use crate::store::listen::follow_changes;
use crate::store::vault_keys::KeyCheckError;
use crate::store::{Store, StoreError, Target};
use crate::tls::{CertificateAuthority, LeafCache, TlsError, upstream_client_config};
use crate::vault::{self, KeyError, Vault};

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
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
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
    drop(key);
    tracing::info!(key_id = vault.key_id(), source = %key_source, "master key loaded");

    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    let (embedded, target) = open_database(&settings, &data).await?;
    let result = run(
        &settings,
        &data,
        vault,
        &target,
        &embedded,
        &mut sigterm,
        &mut sigint,
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
    vault: Arc<Vault>,
    target: &Target,
    embedded: &Option<EmbeddedPostgres>,
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) -> Result<(), DaemonError> {
    let store = Store::open(target).await?;
    store.check_master_key(&vault).await?;
    tracing::info!(database = store.target(), "database ready");

    let snapshot = Arc::new(SnapshotHandle::default());
    snapshot.reload(&store).await?;
    let approvals = Arc::new(Approvals::new(settings.proxy.approval_timeout));
    let (trigger, shutdown) = shutdown::channel();
    let listener_task = tokio::spawn(follow_changes(
        store.clone(),
        snapshot.clone(),
        approvals.clone(),
        shutdown.clone(),
    ));
    let (audit, audit_rx) = crate::audit::channel();
    let audit_task = tokio::spawn(crate::audit::run_writer(
        store.clone(),
        audit_rx,
        audit.counters().clone(),
        shutdown.clone(),
    ));

    let ca = Arc::new(CertificateAuthority::load_or_create(data.root())?);
    tracing::info!(ca = %ca.cert_path().display(), "local CA ready");
    let listen_error = |source| DaemonError::ProxyListen {
        addr: settings.proxy.listen,
        source,
    };
    let proxy_listener = TcpListener::bind(settings.proxy.listen)
        .await
        .map_err(listen_error)?;
    // The bound address: with port 0 (tests) the kernel picked the port.
    let proxy_addr = proxy_listener.local_addr().map_err(listen_error)?;
    let gateway = Arc::new(Gateway {
        snapshot: snapshot.clone(),
        vault: vault.clone(),
        store: store.clone(),
        limiter: RateLimiter::default(),
        approvals: approvals.clone(),
        audit,
        upstreams: Upstreams::new(
            upstream_client_config(settings.proxy.upstream_ca.as_deref())?,
            settings.proxy.upstream_headers_timeout,
        ),
        leaves: LeafCache::with_defaults(ca.clone())?,
        egress: Egress {
            allow: settings.proxy.allow_upstreams.clone(),
            resolve: settings.proxy.resolve.clone(),
            own_ports: vec![proxy_addr.port()],
        },
        idle_timeout: settings.proxy.idle_timeout,
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
    let service = Service::new(store.clone(), vault.clone(), snapshot, approvals);
    let status = StatusInfo {
        started_at: Utc::now(),
        data_dir: data.root().display().to_string(),
        mode: transparent_mode(),
        listeners: vec![
            format!("explicit proxy on {proxy_addr}"),
            format!("admin API on {}", socket_path.display()),
        ],
        database_kind: match settings.database {
            Database::Embedded { .. } => "embedded",
            Database::External { .. } => "external",
        },
        postgres_pid: embedded.as_ref().map(EmbeddedPostgres::pid_cell),
        key_id: vault.key_id().to_owned(),
        ca_cert: ca.cert_path().display().to_string(),
        proxy_addr: proxy_addr.to_string(),
    };
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        socket_path.clone(),
        admin::router(service, status),
        shutdown.clone(),
    ));

    tracing::info!(admin = %socket_path.display(), "airlock is ready");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    trigger.fire();
    let _ = proxy_task.await;
    let _ = admin_task.await;
    let _ = listener_task.await;
    let _ = audit_task.await;
    store.close().await;
    Ok(())
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

/// What `airlock status` says about the transparent path in this build.
fn transparent_mode() -> String {
    match crate::ebpf::object() {
        Some(obj) => format!(
            "explicit proxy only: transparent interception is not enabled yet (eBPF object embedded, {} bytes)",
            obj.len()
        ),
        None => "explicit proxy only: this build has no eBPF object (run `cargo xtask build-ebpf`)"
            .into(),
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
}
