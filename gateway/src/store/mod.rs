//! The store: PostgreSQL through sqlx.
//!
//! The schema lives only in `migrations/` and is applied on start. Every
//! write that changes configuration also sends `NOTIFY airlock_config` in
//! its transaction, so every daemon on the database (see [`listen`])
//! reloads its snapshot once the change is committed.
//!
//! With no `DATABASE_URL`, [`embedded`] runs a private PostgreSQL in the
//! data directory.

mod access_decisions;
pub mod access_requests;
pub mod agents;
pub mod approvals;
pub mod audit;
mod audit_batch;
pub mod chain;
pub mod defaults;
pub mod embedded;
pub mod listen;
pub mod oauth2;
pub mod rules;
pub mod secrets;
pub mod vault_keys;
pub mod verify;

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The channel every configuration change is announced on.
pub const CHANGES_CHANNEL: &str = "airlock_config";

static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach the database at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error(
        "the database schema (version {found}) is newer than this airlock knows \
         (latest {known}): upgrade airlock, or point it at another database"
    )]
    SchemaNewer { found: i64, known: i64 },
    #[error("applying database migrations failed: {0}")]
    Migrate(String),
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("{what} does not exist")]
    NotFound { what: String },
    /// A decision that cannot be made in the state the item is in (an
    /// access request allowed already).
    #[error("{0}")]
    Decided(String),
    #[error("corrupt row in {table} ({id}): {reason}")]
    Corrupt {
        table: &'static str,
        id: String,
        reason: String,
    },
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e)
    }
}

impl StoreError {
    /// Maps a unique violation to `Conflict` naming `what`; other errors pass.
    fn conflict_as(e: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict { what: what() }
            }
            _ => StoreError::Query(e),
        }
    }
}

/// Rows read leniently: the good ones, and why the others could not be
/// read. The snapshot uses this so that one corrupt row does not freeze the
/// whole configuration; listings use [`Loaded::strict`].
#[derive(Debug)]
pub struct Loaded<T> {
    pub items: Vec<T>,
    pub corrupt: Vec<StoreError>,
}

impl<T> Loaded<T> {
    /// Sorts parsed rows into good ones and corrupt ones; any other error
    /// (the database failed) fails the whole read.
    fn collect(rows: impl Iterator<Item = Result<T, StoreError>>) -> Result<Self, StoreError> {
        let mut loaded = Loaded {
            items: Vec::new(),
            corrupt: Vec::new(),
        };
        for row in rows {
            match row {
                Ok(item) => loaded.items.push(item),
                Err(e @ StoreError::Corrupt { .. }) => loaded.corrupt.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok(loaded)
    }

    /// Every row, or the first corrupt one's error.
    pub fn strict(self) -> Result<Vec<T>, StoreError> {
        match self.corrupt.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.items),
        }
    }
}

/// Where to connect, for messages: never the password.
#[derive(Debug, Clone)]
pub struct Target {
    pub options: PgConnectOptions,
    pub display: String,
}

impl Target {
    /// From a `postgres://` URL given by the operator.
    pub fn from_url(url: &str) -> Result<Target, StoreError> {
        let display = redact_url(url);
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(|e| StoreError::Unreachable {
                target: display.clone(),
                reason: format!("invalid URL: {e}"),
            })?;
        Ok(Target { options, display })
    }
}

/// Replaces the user-info part of a URL with `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A pool of connections to the database, migrated.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    target: String,
}

impl Store {
    /// Connects (failing fast with a clear error) and applies migrations.
    pub async fn open(target: &Target) -> Result<Store, StoreError> {
        // One direct connection first: the pool would report only "timed
        // out", hiding the real cause (refused, no such socket, auth).
        let probe = sqlx::ConnectOptions::connect(&target.options)
            .await
            .map_err(|e| StoreError::Unreachable {
                target: target.display.clone(),
                reason: e.to_string(),
            })?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(target.options.clone())
            .await
            .map_err(|e| StoreError::Unreachable {
                target: target.display.clone(),
                reason: e.to_string(),
            })?;
        let store = Store {
            pool,
            target: target.display.clone(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        match MIGRATOR.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(MigrateError::VersionMissing(found)) => {
                Err(StoreError::SchemaNewer { found, known })
            }
            Err(e) => Err(StoreError::Migrate(e.to_string())),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where this store points, for `airlock status` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One configuration change, as the audit trail and the other daemons
/// learn of it.
pub(super) struct Change<'a> {
    /// The agent the change is about, if any.
    pub agent: Option<&'a str>,
    pub action: &'a str,
    pub detail: &'a str,
    /// Which part of the configuration changed (the notification payload).
    pub what: &'a str,
}

/// Audits, announces and commits a change: the three always go together,
/// so the trail, the other daemons and the data can never disagree.
pub(super) async fn commit_change(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    change: Change<'_>,
) -> Result<(), StoreError> {
    audit::record_admin(&mut tx, change.agent, change.action, change.detail).await?;
    notify_change(&mut tx, change.what).await?;
    tx.commit().await?;
    Ok(())
}

/// Announces a configuration change inside the writing transaction.
pub(super) async fn notify_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    what: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(what)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://user:pw@db:5432/airlock"),
            "postgres://***@db:5432/airlock"
        );
        assert_eq!(redact_url("postgres:///airlock"), "postgres:///airlock");
    }
}
