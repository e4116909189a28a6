//! The audit trail: one row per request through the gateway and one per
//! configuration change. Rows never hold a body, a secret value or a query
//! value.

use std::collections::HashSet;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::chain::{self, Entry};
use super::{Store, StoreError};
use crate::audit::Decision;

/// One audit row as read back.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// The row's place in the trail and its hash chain; also how `--follow`
    /// pages forward.
    pub id: i64,
    /// When the request arrived (or the change was made).
    pub at: DateTime<Utc>,
    /// `request` or `admin`: says how to read `decision`.
    pub kind: String,
    /// Whose request, or which agent a change is about; none when the
    /// connection could not be tied to an agent.
    pub agent: Option<String>,
    /// With `host` and `path`, what the request asked for (`CONNECT` for a
    /// connection refused before any request).
    pub method: Option<String>,
    /// Where the request went, as [`crate::proxy::record::display_host`]
    /// names it.
    pub host: Option<String>,
    /// The target with query values removed: they may hold credentials.
    pub path: Option<String>,
    /// For a request, a [`Decision`] word; for an admin row, the action
    /// (`rule.add`). Text, not a `Decision`, because the column holds both.
    pub decision: String,
    /// The rule that decided, so an operator can find why.
    pub rule_id: Option<i64>,
    /// The names (never the values) of the secrets injected.
    pub secrets: Vec<String>,
    /// The status the agent got; none when it got no HTTP answer.
    pub status: Option<i32>,
    /// Bytes of the request body sent upstream (none for admin rows).
    pub bytes_up: Option<i64>,
    /// Bytes of the response body sent back to the agent.
    pub bytes_down: Option<i64>,
    /// From arrival to the last byte back: slow upstreams and long
    /// approval waits show here.
    pub duration_us: Option<i64>,
    /// Why, in words: the error an agent got, the approval's id, what a
    /// change did.
    pub detail: Option<String>,
}

/// One request to record; written in batches by [`crate::audit`], or
/// spooled to disk while the database is away (hence serde). The fields
/// are [`AuditEvent`]'s, filled in by [`crate::proxy::record::AuditGuard`]
/// as the request goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewRequestEvent {
    /// Names the record from the moment it is made, so a replay from the
    /// spool writes it once.
    pub record_id: Uuid,
    /// At the precision the database keeps ([`chain::to_stored_precision`]).
    pub at: DateTime<Utc>,
    /// The agent, once identified; none for a connection tied to no agent.
    pub agent: Option<String>,
    /// What was asked for: method, host and redacted path (see
    /// [`AuditEvent`]).
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    /// Typed, so only a real decision is recorded; stored, spooled and
    /// hashed as its word ([`Decision::as_str`]).
    pub decision: Decision,
    /// The rule that decided, if one did.
    pub rule_id: Option<i64>,
    /// Names of the secrets injected: which credentials a request used.
    pub secrets: Vec<String>,
    /// The agent's status; none when it got no HTTP answer.
    pub status: Option<i32>,
    /// Counted as the bodies stream, so known only when the request ends;
    /// always present for a request, unlike an admin row's.
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub duration_us: i64,
    /// Why, in words (the agent's error message, the approval's id).
    pub detail: Option<String>,
    /// For an exfiltration refusal: the secret the placeholder named, when
    /// the agent is not granted it. Not a column of the trail (the detail
    /// says it in words) nor hashed; spooled, so a replayed refusal still
    /// counts for its access request ([`super::access_requests`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ungranted: Option<String>,
    /// For `/metrics` only: neither stored, spooled nor hashed.
    #[serde(skip)]
    pub latency: Latency,
}

/// Where a forwarded request's time to its response head went, in
/// microseconds: the upstream's share, and the whole (so the gateway's
/// own share is the difference). `None` for requests never forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub upstream_us: Option<u32>,
    pub head_us: Option<u32>,
}

/// The unique index on `audit_events.record_id` (PostgreSQL's name for
/// the `UNIQUE` of migration 20261201000002).
const RECORD_ID_UNIQUE: &str = "audit_events_record_id_key";

/// Whether a batch's records are looked up before it is written.
#[derive(Debug, Clone, Copy)]
enum Present {
    /// None of them is there: the first try of every batch.
    Assumed,
    /// Some may be (the first try failed on one): skip those.
    LookedUp,
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

    /// Appends a batch of request events to the chained trail in one
    /// transaction, with the access requests its refusals by default open
    /// or count ([`super::access_requests`]). Records already written (a replay from the spool after
    /// an insert whose commit was not acknowledged) are skipped, so writing
    /// the same batch twice leaves one row per record.
    ///
    /// The batch is first written as if none of it were there: that is
    /// true of every batch but a retry, and looking each record up costs
    /// the server an index probe per row. A record that is there after all
    /// fails the insert on `record_id`'s unique index, the transaction
    /// rolls back whole (no row, no move of the head), and the batch is
    /// written again without the records present.
    ///
    /// `buf` is where the rows are encoded: the caller keeps it, so its
    /// capacity is reused from one batch to the next.
    pub async fn insert_request_events(
        &self,
        events: &[NewRequestEvent],
        buf: &mut BytesMut,
    ) -> Result<(), StoreError> {
        match self.append_requests(events, buf, Present::Assumed).await {
            Err(StoreError::Query(sqlx::Error::Database(e)))
                if e.is_unique_violation() && e.constraint() == Some(RECORD_ID_UNIQUE) =>
            {
                self.append_requests(events, buf, Present::LookedUp).await
            }
            r => r,
        }
    }

    async fn append_requests(
        &self,
        events: &[NewRequestEvent],
        buf: &mut BytesMut,
        present: Present,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        let present: HashSet<Uuid> = match present {
            Present::Assumed => HashSet::new(),
            Present::LookedUp => {
                let ids: Vec<Uuid> = events.iter().map(|e| e.record_id).collect();
                let found: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT record_id FROM audit_events WHERE record_id = ANY($1)",
                )
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
                found.into_iter().collect()
            }
        };
        let fresh: Vec<&NewRequestEvent> = events
            .iter()
            .filter(|e| !present.contains(&e.record_id))
            .collect();
        let entries: Vec<Entry<'_>> = fresh.iter().map(|e| e.entry()).collect();
        chain::append(&mut tx, buf, &entries).await?;
        // In this transaction, on the records it appends: each refusal is
        // counted once, however often its batch is written (a retry after
        // a record found present rolls back and counts again from zero).
        super::access_requests::record_sightings(&mut tx, &fresh).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn count_audit_events(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(self.pool())
            .await?)
    }
}

impl NewRequestEvent {
    /// A record for a request arriving now, under a fresh record id.
    pub fn begin() -> Self {
        let at = chain::to_stored_precision(Utc::now());
        // A UUIDv7: the arrival's milliseconds, then 74 random bits (rand's
        // thread-local generator: no system call per request). Ids that
        // grow with time are appended at the right edge of `record_id`'s
        // unique index, where random ones would dirty a random leaf page
        // of it per row, and that index is maintained on every request.
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or_default();
        NewRequestEvent {
            record_id: uuid::Builder::from_unix_timestamp_millis(millis, &rand::random())
                .into_uuid(),
            at,
            ..NewRequestEvent::default()
        }
    }

    fn entry(&self) -> Entry<'_> {
        Entry {
            record_id: self.record_id,
            at: self.at,
            kind: "request",
            agent: self.agent.as_deref(),
            method: self.method.as_deref(),
            host: self.host.as_deref(),
            path: self.path.as_deref(),
            decision: self.decision.as_str(),
            rule_id: self.rule_id,
            secrets: &self.secrets,
            status: self.status,
            bytes_up: Some(self.bytes_up),
            bytes_down: Some(self.bytes_down),
            duration_us: Some(self.duration_us),
            detail: self.detail.as_deref(),
        }
    }
}

/// Records a configuration change (or another operator action) in the
/// transaction that makes it, so the trail and the change commit or fail
/// together. `agent` names the agent the change is about, so `airlock
/// audit --agent` shows it beside that agent's requests.
pub(crate) async fn record_admin(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    agent: Option<&str>,
    action: &str,
    detail: &str,
) -> Result<(), StoreError> {
    let entry = Entry {
        record_id: Uuid::new_v4(),
        at: chain::to_stored_precision(Utc::now()),
        kind: "admin",
        agent,
        method: None,
        host: None,
        path: None,
        decision: action,
        rule_id: None,
        secrets: &[],
        status: None,
        bytes_up: None,
        bytes_down: None,
        duration_us: None,
        detail: Some(detail),
    };
    chain::append(tx, &mut BytesMut::new(), &[entry]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_unique_and_grow_with_arrival() {
        let first = NewRequestEvent::begin();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = NewRequestEvent::begin();
        assert_eq!(first.record_id.get_version_num(), 7);
        assert!(first.record_id < later.record_id);
        let many: HashSet<Uuid> = (0..10_000)
            .map(|_| NewRequestEvent::begin().record_id)
            .collect();
        assert_eq!(many.len(), 10_000);
    }
}
