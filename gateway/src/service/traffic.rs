//! The traffic the dashboard charts, read from the audit trail: requests
//! over time by outcome (the last hour per minute, the last day per hour),
//! the busiest agents and hosts, the refusals by decision and the
//! exfiltration attempts, for the whole gateway or for one agent.
//!
//! Every query is bounded: one time range (an index range scan on
//! `audit_events (at)`, or `(agent, at)` for one agent), `GROUP BY` to a
//! bounded result (at most [`MAX_BUCKETS`] × the decisions there are for a
//! time series, `LIMIT` [`TOP_N`] for a ranking), a statement timeout,
//! and the page runs them once per load, never on a timer. A page costs
//! three scans of the day (its series, which also gives the refusals, the
//! top agents, the top hosts), one of the hour, and an index lookup of
//! the exfiltration attempts. The time series groups by decision word,
//! and the words are sorted into outcomes here ([`Decision::outcome`]), so
//! the one list of words stays in Rust.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Service, ServiceError};
use crate::audit::{Decision, Outcome};
use crate::store::StoreError;

/// Bars in one time series, at most: keeps a chart readable and its query's
/// result small.
pub const MAX_BUCKETS: usize = 60;
/// Rows in a ranking (top agents, top hosts, refusals), at most.
pub const TOP_N: usize = 10;
/// (agent, host) pairs listed under the exfiltration attempts.
pub const TOP_EXFILTRATION: usize = 5;

/// Which stretch of time a series covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Window {
    /// 60 one-minute bars.
    Hour,
    /// 24 one-hour bars.
    Day,
}

impl Window {
    pub fn step(self) -> Duration {
        match self {
            Window::Hour => Duration::minutes(1),
            Window::Day => Duration::hours(1),
        }
    }

    pub fn count(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 24,
        }
    }
}

/// Equal time buckets aligned to their step (whole minutes, whole hours),
/// the last one holding `now`: so a bar is "08:14", not "08:14:37 +1 min",
/// and the same request lands in the same bar on every load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Buckets {
    pub start: DateTime<Utc>,
    pub step: Duration,
    pub count: usize,
}

impl Buckets {
    /// `count` buckets of `step` (a whole number of seconds that divides a
    /// day), the last one holding `now`. `count` is capped at
    /// [`MAX_BUCKETS`].
    pub fn ending_with(now: DateTime<Utc>, step: Duration, count: usize) -> Buckets {
        let count = count.clamp(1, MAX_BUCKETS);
        let floor = now.duration_trunc(step).unwrap_or(now);
        let back = step * (i32::try_from(count).unwrap_or(1) - 1);
        Buckets {
            start: floor - back,
            step,
            count,
        }
    }

    pub fn for_window(window: Window, now: DateTime<Utc>) -> Buckets {
        Buckets::ending_with(now, window.step(), window.count())
    }

    /// The end of the last bucket (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.bucket_start(self.count)
    }

    pub fn bucket_start(&self, i: usize) -> DateTime<Utc> {
        self.start + self.step * i32::try_from(i).unwrap_or(i32::MAX)
    }

    /// The last instant of bucket `i` that PostgreSQL can store (its
    /// timestamps count microseconds): the audit filter's `to` is
    /// inclusive, so a bar's link must not reach into the next bar.
    pub fn bucket_last(&self, i: usize) -> DateTime<Utc> {
        self.bucket_start(i + 1) - Duration::microseconds(1)
    }

    /// Which bucket `t` falls in, if any.
    pub fn index_of(&self, t: DateTime<Utc>) -> Option<usize> {
        if t < self.start || t >= self.end() {
            return None;
        }
        let offset = (t - self.start).num_microseconds()?;
        let step = self.step.num_microseconds()?;
        usize::try_from(offset / step).ok()
    }
}

/// Requests per outcome, in [`Outcome::ALL`]'s order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByOutcome(pub [i64; 3]);

impl ByOutcome {
    fn slot(o: Outcome) -> usize {
        Outcome::ALL.iter().position(|x| *x == o).unwrap_or(2)
    }

    pub fn add(&mut self, decision: &str, n: i64) {
        let outcome = decision
            .parse::<Decision>()
            .map_or(Outcome::Failed, Decision::outcome);
        self.0[Self::slot(outcome)] += n;
    }

    pub fn get(&self, o: Outcome) -> i64 {
        self.0[Self::slot(o)]
    }

    pub fn total(&self) -> i64 {
        self.0.iter().sum()
    }
}

/// Requests over time.
#[derive(Debug, Clone, Serialize)]
pub struct TimeSeries {
    pub window: Window,
    pub buckets: Buckets,
    /// One entry per bucket.
    pub counts: Vec<ByOutcome>,
}

impl TimeSeries {
    pub fn total(&self) -> ByOutcome {
        let mut sum = ByOutcome::default();
        for c in &self.counts {
            for (s, n) in sum.0.iter_mut().zip(c.0) {
                *s += n;
            }
        }
        sum
    }
}

/// One row of a ranking: an agent or a host and its requests.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub name: String,
    pub counts: ByOutcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionCount {
    pub decision: String,
    pub count: i64,
}

/// Who tried to send a credential where.
#[derive(Debug, Clone, Serialize)]
pub struct ExfiltrationPair {
    pub agent: String,
    pub host: String,
    pub count: i64,
}

/// Everything the traffic charts show. Rankings cover the day series'
/// span exactly, so their links can name it.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    /// `None`: the whole gateway.
    pub agent: Option<String>,
    pub hour: TimeSeries,
    pub day: TimeSeries,
    /// Empty for one agent's traffic.
    pub top_agents: Vec<Ranked>,
    pub top_hosts: Vec<Ranked>,
    /// Refused requests by decision, most first.
    pub refusals: Vec<DecisionCount>,
    pub exfiltration: Vec<ExfiltrationPair>,
}

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
const QUERY_TIMEOUT: &str = "SET LOCAL statement_timeout = '3s'";

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

fn store<T>(r: Result<T, sqlx::Error>) -> Result<T, ServiceError> {
    r.map_err(store_err)
}

/// The time series and the refusals: one scan of the day gives both
/// (refusals are the day's decisions summed over its buckets), so the two
/// charts always agree.
fn refusals_of(rows: &[(usize, String, i64)]) -> Vec<DecisionCount> {
    let mut by: Vec<DecisionCount> = Vec::new();
    for (_, decision, n) in rows {
        if !decision.parse::<Decision>().is_ok_and(Decision::is_refusal) {
            continue;
        }
        match by.iter_mut().find(|d| &d.decision == decision) {
            Some(d) => d.count += n,
            None => by.push(DecisionCount {
                decision: decision.clone(),
                count: *n,
            }),
        }
    }
    by.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.decision.cmp(&b.decision))
    });
    by.truncate(TOP_N);
    by
}

fn series_of(window: Window, buckets: Buckets, rows: &[(usize, String, i64)]) -> TimeSeries {
    let mut counts = vec![ByOutcome::default(); buckets.count];
    for (i, decision, n) in rows {
        if let Some(c) = counts.get_mut(*i) {
            c.add(decision, *n);
        }
    }
    TimeSeries {
        window,
        buckets,
        counts,
    }
}

impl Service {
    /// The traffic of the last hour and day, of one agent or of all. The
    /// queries share one read-only snapshot, so the charts of a page agree
    /// with each other even while requests keep arriving.
    pub async fn traffic(&self, agent: Option<&str>) -> Result<Traffic, ServiceError> {
        let now = Utc::now();
        let mut tx = store(self.store.pool().begin().await)?;
        store(
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await,
        )?;
        store(sqlx::query(QUERY_TIMEOUT).execute(&mut *tx).await)?;
        let hour_buckets = Buckets::for_window(Window::Hour, now);
        let hour_rows = series_rows(&mut tx, hour_buckets, agent).await?;
        let day_buckets = Buckets::for_window(Window::Day, now);
        let day_rows = series_rows(&mut tx, day_buckets, agent).await?;
        let span = (day_buckets.start, day_buckets.end());
        let top_agents = match agent {
            Some(_) => Vec::new(),
            None => ranked(&mut tx, "agent", span, None).await?,
        };
        let top_hosts = ranked(&mut tx, "lower(host)", span, agent).await?;
        let exfiltration = exfiltration(&mut tx, span, agent).await?;
        store(tx.commit().await)?;
        Ok(Traffic {
            agent: agent.map(str::to_owned),
            hour: series_of(Window::Hour, hour_buckets, &hour_rows),
            refusals: refusals_of(&day_rows),
            day: series_of(Window::Day, day_buckets, &day_rows),
            top_agents,
            top_hosts,
            exfiltration,
        })
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// (bucket, decision, requests) for every bucket and decision with any.
async fn series_rows(
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
async fn ranked(
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
async fn exfiltration(
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap()
    }

    #[test]
    fn buckets_are_aligned_and_end_with_now() {
        let b = Buckets::for_window(Window::Hour, at(8, 14, 37));
        assert_eq!(b.count, 60);
        assert_eq!(b.start, at(7, 15, 0));
        assert_eq!(b.end(), at(8, 15, 0));
        assert_eq!(b.index_of(at(8, 14, 37)), Some(59));
        assert_eq!(b.index_of(at(7, 15, 0)), Some(0));
        assert_eq!(b.index_of(at(7, 14, 59)), None);
        assert_eq!(b.index_of(at(8, 15, 0)), None);
        assert_eq!(b.bucket_start(1), at(7, 16, 0));
        assert_eq!(
            b.bucket_last(0),
            at(7, 16, 0) - Duration::microseconds(1),
            "a bar's link stops before the next bar"
        );
        let d = Buckets::for_window(Window::Day, at(8, 14, 37));
        assert_eq!(
            (d.start, d.end(), d.count),
            (at(8, 0, 0) - Duration::hours(23), at(9, 0, 0), 24)
        );
    }

    #[test]
    fn bucket_counts_are_capped() {
        let b = Buckets::ending_with(at(8, 0, 0), Duration::seconds(10), 10_000);
        assert_eq!(b.count, MAX_BUCKETS);
        assert_eq!(
            Buckets::ending_with(at(8, 0, 0), Duration::minutes(1), 0).count,
            1
        );
    }

    #[test]
    fn decisions_fold_into_outcomes_and_unknown_words_fail() {
        let mut c = ByOutcome::default();
        c.add("allowed", 2);
        c.add("approved", 1);
        c.add("exfiltration", 4);
        c.add("upstream_error", 1);
        c.add("from_a_newer_peer", 1);
        assert_eq!(c.get(Outcome::Served), 3);
        assert_eq!(c.get(Outcome::Refused), 4);
        assert_eq!(c.get(Outcome::Failed), 2);
        assert_eq!(c.total(), 9);
    }

    #[test]
    fn refusals_are_the_days_refused_decisions_summed() {
        let rows = [
            (0, "blocked".to_owned(), 2),
            (5, "exfiltration".to_owned(), 1),
            (7, "blocked".to_owned(), 3),
            (7, "allowed".to_owned(), 9),
            (8, "from_a_newer_peer".to_owned(), 4),
        ];
        let r: Vec<(String, i64)> = refusals_of(&rows)
            .into_iter()
            .map(|d| (d.decision, d.count))
            .collect();
        assert_eq!(r, [("blocked".into(), 5), ("exfiltration".into(), 1)]);
        let s = series_of(
            Window::Day,
            Buckets::for_window(Window::Day, at(8, 0, 0)),
            &rows,
        );
        assert_eq!(s.total().total(), 19);
        assert_eq!(s.counts[7].get(Outcome::Served), 9);
    }
}
