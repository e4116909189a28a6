//! The database: the operator's server reachable, or the embedded one's
//! binaries present.

use std::process::Command;
use std::time::Duration;

use super::Check;
use crate::config::Database;
use crate::store::Target;

const NAME: &str = "database";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn check(database: &Database, daemon_running: bool) -> Check {
    match database {
        Database::External { url } => external(url).await,
        Database::Embedded { bin_dir, user } => embedded(bin_dir.as_deref(), user, daemon_running),
    }
}

async fn external(url: &str) -> Check {
    let target = match Target::from_url(url) {
        Ok(t) => t,
        Err(e) => {
            return Check::fail(
                NAME,
                e.to_string(),
                "fix DATABASE_URL: postgres://USER:PASSWORD@HOST:PORT/DATABASE",
            );
        }
    };
    let fix = "check that the server runs and that DATABASE_URL's host, port, user, password \
               and database are right (psql with the same URL tells more)";
    let connect = sqlx::ConnectOptions::connect(&target.options);
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Check::fail(
                NAME,
                format!("cannot connect to {}: {e}", target.display),
                fix,
            );
        }
        Err(_) => {
            return Check::fail(
                NAME,
                format!(
                    "no answer from {} within {} s",
                    target.display,
                    CONNECT_TIMEOUT.as_secs()
                ),
                fix,
            );
        }
    };
    let version: Result<String, _> = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await;
    let _ = sqlx::Connection::close(conn).await;
    match version {
        Ok(v) => Check::ok(NAME, format!("{} answers (PostgreSQL {v})", target.display)),
        Err(e) => Check::fail(
            NAME,
            format!(
                "{} accepted the connection but not a query: {e}",
                target.display
            ),
            fix,
        ),
    }
}

fn embedded(bin_dir: Option<&std::path::Path>, user: &str, daemon_running: bool) -> Check {
    let bin = match crate::store::embedded::find_binaries(bin_dir) {
        Ok(bin) => bin,
        Err(e) => {
            return Check::fail(
                NAME,
                e.to_string(),
                "install PostgreSQL's server (`apt install postgresql`), set \
                 --pg-bin-dir, or use a server of your own with DATABASE_URL",
            );
        }
    };
    let postgres = bin.join("postgres");
    let version = Command::new(&postgres)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| format!("{} (version unknown)", postgres.display()));
    let user_note = match nix::unistd::User::from_name(user) {
        Ok(Some(_)) => format!("run as user {user}"),
        _ => format!("user {user} is created at the first start"),
    };
    let state = if daemon_running {
        "running under the daemon"
    } else {
        "started by `airlock serve`"
    };
    Check::ok(NAME, format!("embedded: {version}, {state}, {user_note}"))
}
