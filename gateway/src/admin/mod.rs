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
//! GET    /api/v1/defaults                PUT /api/v1/defaults
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
mod failure;
mod openapi;
mod routes;
mod status;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

pub use openapi::{ApiDoc, OPENAPI_PATH};
pub use routes::{API_ROUTES, router, tcp_router};
pub use status::StatusInfo;

use crate::shutdown::Shutdown;

/// The private directory the socket is bound in before it is moved into
/// place (short: a Unix socket path has at most 107 bytes, and
/// `.admin.d/s` is no longer than `admin.sock`).
const BIND_DIR: &str = ".admin.d";

/// Binds the admin socket at `path`, never accessible to anyone but root.
///
/// `bind(2)` creates the socket file with the process's umask, and a
/// `chmod` after it leaves a moment in which any local user may connect;
/// setting the umask around `bind` would race every other thread (it is
/// process-wide). So the socket is bound in a fresh 0700 directory beside
/// `path`, made 0600 there, and renamed onto `path`: at `path` it only
/// ever exists as 0600. A socket file left by a daemon that died is
/// replaced (the data-directory lock proves it is dead), and so is a
/// private directory left by one.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let private = parent.join(BIND_DIR);
    remove_private_dir(&private)?;
    fs::DirBuilder::new().mode(0o700).create(&private)?;
    let bound = (|| -> io::Result<UnixListener> {
        let staged = private.join("s");
        let listener = UnixListener::bind(&staged)?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o600))?;
        fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let removed = fs::remove_dir(&private);
    let listener = bound?;
    removed?;
    Ok(listener)
}

/// Removes a private bind directory left by a daemon that died (its
/// contents are at most the staged socket).
fn remove_private_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_appears_private_and_replaces_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        // Left by a daemon that died: a socket file and a private directory.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        fs::create_dir(dir.path().join(BIND_DIR)).unwrap();
        fs::write(dir.path().join(BIND_DIR).join("s"), b"").unwrap();

        let _listener = bind(&path).unwrap();
        let mode = fs::symlink_metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert!(!dir.path().join(BIND_DIR).exists());
        tokio::net::UnixStream::connect(&path).await.unwrap();
    }
}
