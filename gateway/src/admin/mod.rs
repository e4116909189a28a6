//! The admin API: JSON over HTTP/1.1 on a Unix socket in the data
//! directory (`admin.sock`, mode 0600: only root may connect). The CLI is
//! its client ([`client`]); the dashboard serves the same routes.
//!
//! ```text
//! GET    /api/v1/status
//! GET    /api/v1/secrets                 POST /api/v1/secrets
//! POST   /api/v1/secrets/{name}/rotate   DELETE /api/v1/secrets/{name}
//! GET    /api/v1/agents                  POST /api/v1/agents
//! DELETE /api/v1/agents/{name}
//! PUT    /api/v1/agents/{name}/grants/{secret}
//! DELETE /api/v1/agents/{name}/grants/{secret}
//! GET    /api/v1/rules                   POST /api/v1/rules
//! DELETE /api/v1/rules/{id}
//! GET    /api/v1/audit?agent=&since=&after_id=&limit=
//! GET    /api/v1/approvals?all=          POST /api/v1/approvals/{id}/approve|deny
//! GET    /api/v1/overview                GET /api/v1/audit/search?agent=&host=&decision=&status=&from=&to=&page=&per_page=
//! POST   /api/v1/rules/{id}/move         POST /api/v1/rules/test
//! PUT    /api/v1/rules/{id}
//! ```
//!
//! Only on the admin socket (never over TCP), because they mint credentials:
//!
//! ```text
//! PUT    /api/v1/admin/password          GET|POST /api/v1/admin/tokens
//! DELETE /api/v1/admin/tokens/{name}
//! ```
//!
//! The dashboard serves the rest over TCP with [`tcp_router`] behind its
//! own authentication, plus the OpenAPI document ([`OPENAPI_PATH`]).
//!
//! Errors are `{"error": "...", "field": "..."}` with 400, 404, 409, 503 or 500.

pub mod client;
mod credentials;
mod openapi;
mod routes;
mod status;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

pub use openapi::{ApiDoc, OPENAPI_PATH};
pub use routes::{API_ROUTES, router, tcp_router};
pub use status::StatusInfo;

use crate::shutdown::Shutdown;

/// Binds the admin socket with mode 0600. A socket file left by a daemon
/// that died is replaced (the data-directory lock proves it is dead).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the API until shutdown, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    app: axum::Router,
    shutdown: Shutdown,
) -> io::Result<()> {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await;
    let _ = fs::remove_file(&path);
    result
}
