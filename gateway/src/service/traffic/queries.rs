//! The traffic charts' SQL: each query one time range of the audit trail,
//! grouped to a bounded result, inside the caller's read-only transaction.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Buckets, ByOutcome, ExfiltrationPair, Ranked, TOP_EXFILTRATION, TOP_N};
use crate::audit::{Decision, Outcome};
use crate::service::ServiceError;
use crate::store::StoreError;

/// The `WHERE` every traffic query shares: requests in `[$1, $2)`, and
/// with `scoped` only agent `$3`'s (a clause of its own rather than
/// `$3 IS NULL OR ...`, so the planner can use `(agent, at)`).
fn range(scoped: bool) -> &'static str {
    if scoped {
        "kind = 'request' AND at >= $1 AND at < $2 AND agent = $3"
    } else {
        "kind = 'request' AND at >= $1 AND at < $2 AND $3::text IS NULL"
    }
}

/// How long one chart query may run. A day of a busy fleet's trail is a
/// few hundred thousand rows, well under a second; past this the page
/// says so instead of holding a database connection.
pub(super) const QUERY_TIMEOUT: &str = "SET LOCAL statement_timeout = '3s'";

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A cancelled query (SQLSTATE 57014) is the timeout above: say what to
/// do; any other failure is the store's.
fn store_err(e: sqlx::Error) -> ServiceError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => {
            ServiceError::Unavailable(
                "charting the traffic took longer than 3 s (a very busy audit trail, or a \
                 slow database); the audit page still searches it"
                    .into(),
            )
        }
        _ => StoreError::from(e).into(),
    }
}

pub(super) fn store<T>(r: Result<T, sqlx::Error>) -> Result<T, ServiceError> {
    r.map_err(store_err)
}

pub(super) type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// (bucket, decision, requests) for every bucket and decision with any.
pub(super) async fn series_rows(
    tx: &mut Tx,
    buckets: Buckets,
    agent: Option<&str>,
) -> Result<Vec<(usize, String, i64)>, ServiceError> {
    let sql = format!(
        "SELECT floor(extract(epoch FROM at - $1)::float8 / $4::float8)::bigint AS bucket,
                decision, count(*) AS n
         FROM audit_events WHERE {}
         GROUP BY 1, 2",
        range(agent.is_some())
    );
    let rows = store(
        sqlx::query(&sql)
            .bind(buckets.start)
            .bind(buckets.end())
            .bind(agent)
            .bind(buckets.step.num_seconds() as f64)
            .fetch_all(&mut **tx)
            .await,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let bucket: i64 = store(r.try_get("bucket"))?;
        if let Ok(i) = usize::try_from(bucket) {
            out.push((i, store(r.try_get("decision"))?, store(r.try_get("n"))?));
        }
    }
    Ok(out)
}

/// The [`TOP_N`] busiest values of `column` (`agent`, `lower(host)`:
/// hosts are compared without case, as the audit filter does).
pub(super) async fn ranked(
    tx: &mut Tx,
    column: &'static str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    agent: Option<&str>,
) -> Result<Vec<Ranked>, ServiceError> {
    let sql = format!(
        "SELECT {column} AS name, count(*) AS n,
                count(*) FILTER (WHERE decision = ANY($4)) AS served,
                count(*) FILTER (WHERE decision = ANY($5)) AS refused
         FROM audit_events WHERE {} AND {column} IS NOT NULL
         GROUP BY 1 ORDER BY n DESC, 1 LIMIT $6",
        range(agent.is_some())
    );
    let rows = store(
        sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .bind(agent)
            .bind(Decision::words(|d| d.outcome() == Outcome::Served))
            .bind(Decision::words(|d| d.outcome() == Outcome::Refused))
            .bind(limit(TOP_N))
            .fetch_all(&mut **tx)
            .await,
    )?;
    rows.iter()
        .map(|r| {
            let (n, served, refused): (i64, i64, i64) =
                (r.try_get("n")?, r.try_get("served")?, r.try_get("refused")?);
            Ok(Ranked {
                name: r.try_get("name")?,
                counts: ByOutcome([served, refused, n - served - refused]),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(store_err)
}

/// Who tried to send a credential where: read through the partial index
/// `audit_events_exfiltration_at`, so it costs the attempts, not the day.
pub(super) async fn exfiltration(
    tx: &mut Tx,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    agent: Option<&str>,
) -> Result<Vec<ExfiltrationPair>, ServiceError> {
    let sql = format!(
        "SELECT agent, lower(host) AS host, count(*) AS n FROM audit_events
         WHERE {} AND decision = 'exfiltration' AND agent IS NOT NULL AND host IS NOT NULL
         GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT $4",
        range(agent.is_some())
    );
    let rows = store(
        sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .bind(agent)
            .bind(limit(TOP_EXFILTRATION))
            .fetch_all(&mut **tx)
            .await,
    )?;
    rows.iter()
        .map(|r| {
            Ok(ExfiltrationPair {
                agent: r.try_get("agent")?,
                host: r.try_get("host")?,
                count: r.try_get("n")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(store_err)
}
