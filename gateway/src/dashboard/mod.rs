//! The dashboard: the operator's web pages, and the admin JSON API over TCP
//! for scripts. Served by `airlock serve` on `127.0.0.1:10254` by default.
//!
//! Everything it changes goes through [`crate::service`], the one place
//! that validates and writes; the pages are only another door to it.
//!
//! - [`session`]: who is logged in (in memory), the session cookie, the
//!   path key every page address carries with it, and the CSRF tokens.
//! - [`session_path`]: takes the path key off the address before routing.
//! - [`first_password`]: the 0600 file that holds the first-start password.
//! - [`login_limit`]: failed logins per client network.
//! - [`oidc`]: the optional OpenID Connect login.
//! - [`connect`]: an OAuth2 secret's Connect (authorization code + PKCE).
//! - [`pending`]: what those two browser flows remember until their callback.
//! - [`guard`]: the middleware: security headers, "logged in?" and CSRF
//!   for pages, bearer token (or session + CSRF header) for `/api/v1`.
//! - [`render`]: the page frame every template shares, and error pages.
//! - [`chart`]: the traffic charts' geometry (SVG, drawn by the server).
//! - [`assets`]: the stylesheet and script, compiled in from `web/static`.
//! - [`pages`]: one module per page.
//!
//! Auth: one administrator. The password is set with `airlock admin
//! set-password` or generated at first start and written to a 0600 file in
//! the data directory, never to the log ([`announce_first_password`]); it
//! is kept as an argon2id hash. Optionally also OpenID Connect, for allowed
//! e-mails or a domain. No TLS: the dashboard refuses a non-loopback
//! address unless told `--insecure-public` (for use behind a TLS proxy).
//! Why no TLS, and how a session survives a page an agent serves on
//! another loopback port: `docs/dashboard.md`.

pub mod assets;
pub mod chart;
pub mod connect;
pub mod first_password;
pub mod guard;
pub mod login_limit;
pub mod oidc;
pub mod pages;
pub mod pending;
pub mod public_url;
pub mod render;
pub mod session;
pub mod session_path;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::admin::{StatusInfo, tcp_router};
use crate::config::DashboardSettings;
use crate::service::{Service, ServiceError};
use crate::shutdown::Shutdown;
use login_limit::LoginLimiter;
use oidc::Oidc;
use session::Sessions;

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(
        "refusing to serve the dashboard on {0}: it has no TLS, so it listens only on \
         loopback unless you pass --insecure-public (AIRLOCK_INSECURE_PUBLIC=1), e.g. \
         behind a TLS-terminating reverse proxy; or choose a loopback address with \
         --dashboard-listen"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "cannot listen on {addr} for the dashboard: {source} (is another airlock running? \
         choose another address with --dashboard-listen or AIRLOCK_DASHBOARD_LISTEN)"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up the dashboard password: {0}")]
    Password(#[from] ServiceError),
    #[error(
        "cannot write the first-start dashboard password to {path}: {source}; the generated \
         password is not kept: start the daemon again and set one with `airlock admin \
         set-password`"
    )]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Oidc(#[from] oidc::OidcError),
}

/// What every handler shares.
#[derive(Clone)]
pub struct DashState {
    pub service: Service,
    pub status: StatusInfo,
    pub sessions: Arc<Sessions>,
    pub logins: Arc<LoginLimiter>,
    /// OpenID Connect login, when configured.
    pub oidc: Option<Arc<Oidc>>,
    /// OAuth2 secrets' Connect flows.
    pub connect: Arc<connect::Connect>,
    /// Ends long-lived responses (the approvals' event stream), which
    /// graceful shutdown would otherwise wait for forever.
    pub shutdown: Shutdown,
}

/// Binds the dashboard's listener, refusing a non-loopback address unless
/// the operator accepted it.
pub async fn bind(settings: &DashboardSettings) -> Result<TcpListener, DashboardError> {
    if !settings.listen.ip().is_loopback() && !settings.insecure_public {
        return Err(DashboardError::NotLoopback(settings.listen));
    }
    TcpListener::bind(settings.listen)
        .await
        .map_err(|source| DashboardError::Listen {
            addr: settings.listen,
            source,
        })
}

/// At first start there is no password: generate one and write it to a
/// 0600 file in the data directory. The log only says where it is: the
/// journal is readable by the `adm` group, the file by root alone.
pub async fn announce_first_password(
    service: &Service,
    data_dir: &Path,
    addr: SocketAddr,
) -> Result<(), DashboardError> {
    if let Some(password) = service.ensure_admin_password().await? {
        let path = first_password::write(data_dir, &password)
            .map_err(|(path, source)| DashboardError::PasswordFile { path, source })?;
        tracing::warn!(
            file = %path.display(),
            "dashboard http://{addr}/ : first start, generated the admin password; it is in \
             {} (mode 0600, root only; `airlock status` shows where). Change it with \
             `airlock admin set-password`, which removes the file",
            path.display()
        );
    }
    Ok(())
}

/// The whole dashboard: login, pages, static files and `/api/v1`.
/// `addr` is the bound address: without a public URL, the origin of the
/// redirect URIs given to OAuth providers.
pub fn router(
    service: Service,
    status: StatusInfo,
    shutdown: Shutdown,
    settings: &DashboardSettings,
    addr: SocketAddr,
) -> Result<Router, DashboardError> {
    let origin = settings.origin(addr);
    let oidc = match &settings.oidc {
        Some(o) => Some(Arc::new(Oidc::new(o.clone(), &origin)?)),
        None => None,
    };
    let state = DashState {
        oidc,
        connect: Arc::new(connect::Connect::new(&origin)),
        service: service.clone(),
        status: status.clone(),
        sessions: Arc::new(Sessions::default()),
        logins: Arc::new(LoginLimiter::default()),
        shutdown,
    };
    let api = tcp_router(service, status)
        .route("/metrics", get(metrics).with_state(state.clone()))
        .layer(from_fn_with_state(state.clone(), guard::api_auth));
    let protected =
        pages::protected().route_layer(from_fn_with_state(state.clone(), guard::require_session));
    let routes = Router::new()
        .merge(pages::public())
        .merge(protected)
        .route("/static/{file}", get(assets::serve))
        .fallback(pages::not_found)
        .with_state(state)
        .merge(api);
    // The path key comes off the address before the routes see it, so
    // this layer wraps the whole router (a layer on it would run after
    // routing).
    Ok(Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(session_path::strip))
        .layer(axum::middleware::from_fn(guard::security_headers)))
}

/// Serves until shutdown. Client addresses are kept for the login limiter.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}

/// `GET /metrics`: the Prometheus text format, behind the API's
/// authentication (an API token, as scrapers send it).
async fn metrics(State(state): State<DashState>) -> Response {
    match crate::metrics::render(&state.status, &state.service).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "/metrics: cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
