//! The dashboard: the operator's web pages, and the admin JSON API over TCP
//! for scripts. Served by `airlock serve` on `127.0.0.1:10254` by default.
//!
//! Everything it changes goes through [`crate::service`], the one place
//! that validates and writes; the pages are only another door to it.
//!
//! - [`session`]: who is logged in (in memory), the session and CSRF
//!   tokens, and the cookies that carry them.
//! - [`login_limit`]: failed logins per client address.
//! - [`oidc`]: the optional OpenID Connect login.
//! - [`guard`]: the middleware: security headers, "logged in?" and CSRF
//!   for pages, bearer token (or session + CSRF header) for `/api/v1`.
//! - [`render`]: the page frame every template shares, and error pages.
//! - [`assets`]: the stylesheet and script, compiled in from `web/static`.
//! - [`pages`]: one module per page.
//!
//! Auth: one administrator. The password is set with `airlock admin
//! set-password` or generated and logged once at first start
//! ([`announce_first_password`]); it is kept as an argon2id hash.
//! Optionally also OpenID Connect, for allowed e-mails or a domain. No TLS: the dashboard refuses a non-loopback
//! address unless told `--insecure-public` (for use behind a TLS proxy).

pub mod assets;
pub mod guard;
pub mod login_limit;
pub mod oidc;
pub mod pages;
pub mod render;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
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

/// At first start there is no password: generate one and log it, once.
pub async fn announce_first_password(
    service: &Service,
    addr: SocketAddr,
) -> Result<(), DashboardError> {
    if let Some(password) = service.ensure_admin_password().await? {
        // Logged once, on purpose: the operator needs it to log in the
        // first time. It is only a hash in the database from here on.
        tracing::warn!(
            "dashboard http://{addr}/ : first start, generated the admin password {} \
             (shown only now; change it with `airlock admin set-password`)",
            password.expose()
        );
    }
    Ok(())
}

/// The whole dashboard: login, pages, static files and `/api/v1`.
/// `addr` is the bound address, for OIDC's default redirect URL.
pub fn router(
    service: Service,
    status: StatusInfo,
    shutdown: Shutdown,
    settings: &DashboardSettings,
    addr: SocketAddr,
) -> Result<Router, DashboardError> {
    let oidc = match &settings.oidc {
        Some(o) => Some(Arc::new(Oidc::new(o.clone(), &addr.to_string())?)),
        None => None,
    };
    let state = DashState {
        oidc,
        service: service.clone(),
        status: status.clone(),
        sessions: Arc::new(Sessions::default()),
        logins: Arc::new(LoginLimiter::default()),
        shutdown,
    };
    let api = tcp_router(service, status).layer(from_fn_with_state(state.clone(), guard::api_auth));
    let protected =
        pages::protected().route_layer(from_fn_with_state(state.clone(), guard::require_session));
    Ok(Router::new()
        .merge(pages::public())
        .merge(protected)
        .route("/static/{file}", get(assets::serve))
        .fallback(pages::not_found)
        .with_state(state)
        .merge(api)
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
