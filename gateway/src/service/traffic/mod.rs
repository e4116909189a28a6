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

mod buckets;
mod queries;

pub use buckets::{Buckets, Window};

use chrono::Utc;
use serde::Serialize;

use super::{Service, ServiceError};
use crate::audit::{Decision, Outcome};
use queries::{QUERY_TIMEOUT, exfiltration, ranked, series_rows, store};

/// Bars in one time series, at most: keeps a chart readable and its query's
/// result small.
pub const MAX_BUCKETS: usize = 60;
/// Rows in a ranking (top agents, top hosts, refusals), at most.
pub const TOP_N: usize = 10;
/// (agent, host) pairs listed under the exfiltration attempts.
pub const TOP_EXFILTRATION: usize = 5;

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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone};

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap()
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
