//! The audit trail: one row per request through the gateway and one per
//! configuration change. Rows never hold a body, a secret value or a query
//! value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{Store, StoreError};

/// One audit row as read back.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub agent: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub decision: String,
    pub rule_id: Option<i64>,
    pub secrets: Vec<String>,
    pub status: Option<i32>,
    pub bytes_up: Option<i64>,
    pub bytes_down: Option<i64>,
    pub duration_us: Option<i64>,
    pub detail: Option<String>,
}

/// One request to record; written in batches by [`crate::audit`].
#[derive(Debug, Clone, Default)]
pub struct NewRequestEvent {
    pub at: DateTime<Utc>,
    pub agent: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub decision: String,
    pub rule_id: Option<i64>,
    pub secrets: Vec<String>,
    pub status: Option<i32>,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub duration_us: i64,
    pub detail: Option<String>,
}

/// Which rows to read.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub agent: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Only rows with a larger id (how `--follow` pages forward).
    pub after_id: Option<i64>,
    pub limit: i64,
}

/// One audit row as read back; shared by every query over the table.
pub(crate) fn event_from_row(row: &PgRow) -> Result<AuditEvent, sqlx::Error> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        agent: row.try_get("agent")?,
        method: row.try_get("method")?,
        host: row.try_get("host")?,
        path: row.try_get("path")?,
        decision: row.try_get("decision")?,
        rule_id: row.try_get("rule_id")?,
        secrets: row.try_get("secrets")?,
        status: row.try_get("status")?,
        bytes_up: row.try_get("bytes_up")?,
        bytes_down: row.try_get("bytes_down")?,
        duration_us: row.try_get("duration_us")?,
        detail: row.try_get("detail")?,
    })
}

impl Store {
    /// The newest `limit` matching rows, oldest first; or with `after_id`,
    /// the first `limit` rows after it.
    pub async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let order = if f.after_id.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT * FROM (
                 SELECT id, at, kind, agent, method, host, path, decision, rule_id, secrets,
                        status, bytes_up, bytes_down, duration_us, detail
                 FROM audit_events
                 WHERE ($1::text IS NULL OR agent = $1)
                   AND ($2::timestamptz IS NULL OR at >= $2)
                   AND ($3::bigint IS NULL OR id > $3)
                 ORDER BY id {order} LIMIT $4
             ) page ORDER BY id ASC"
        );
        let rows = sqlx::query(&sql)
            .bind(&f.agent)
            .bind(f.since)
            .bind(f.after_id)
            .bind(f.limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(event_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Writes a batch of request events in one statement.
    pub async fn insert_request_events(
        &self,
        events: &[NewRequestEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO audit_events (at, kind, agent, method, host, path, decision, rule_id, \
             secrets, status, bytes_up, bytes_down, duration_us, detail) ",
        );
        qb.push_values(events, |mut row, e| {
            row.push_bind(e.at)
                .push_bind("request")
                .push_bind(&e.agent)
                .push_bind(&e.method)
                .push_bind(&e.host)
                .push_bind(&e.path)
                .push_bind(&e.decision)
                .push_bind(e.rule_id)
                .push_bind(&e.secrets)
                .push_bind(e.status)
                .push_bind(e.bytes_up)
                .push_bind(e.bytes_down)
                .push_bind(e.duration_us)
                .push_bind(&e.detail);
        });
        qb.build().execute(self.pool()).await?;
        Ok(())
    }

    pub async fn count_audit_events(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(self.pool())
            .await?)
    }
}

/// Records a configuration change in the transaction that makes it, so the
/// trail and the change commit or fail together.
/// `agent` names the agent the change is about, so `airlock audit --agent`
/// shows it beside that agent's requests.
pub(super) async fn record_admin(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    agent: Option<&str>,
    action: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (kind, agent, decision, detail) VALUES ('admin', $1, $2, $3)",
    )
    .bind(agent)
    .bind(action)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
