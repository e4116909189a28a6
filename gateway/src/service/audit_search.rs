//! Searching the audit trail the way the dashboard does: by kind, agent,
//! host (a part of it, or exactly), decision or outcome, status and time
//! range, a page at a time (newest first), or everything that matches for
//! an export. The traffic charts link here with the exact filters that
//! reproduce each figure (`kind=request`, `host_match=exact`, `outcome=`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::types::AuditEvent;
use super::{Service, ServiceError, parse_since};
use crate::audit::{Decision, Outcome};
use crate::model::AgentName;
use crate::store::StoreError;

pub const DEFAULT_PER_PAGE: i64 = 50;
const MAX_PER_PAGE: i64 = 500;
/// Rows in one export: enough for a day of a busy agent, bounded so one
/// click cannot make the daemon build an unbounded response.
pub const MAX_EXPORT_ROWS: i64 = 10_000;
const MAX_FILTER_LEN: usize = 255;

/// The filter as typed (query parameters of the audit page, the export and
/// `GET /api/v1/audit/search`). Empty strings mean "any".
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditSearch {
    /// `request` or `admin` (a configuration change).
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    /// A part of the host, any case (the whole host with `host_match=exact`).
    #[serde(default)]
    pub host: Option<String>,
    /// `contains` (the default) or `exact`.
    #[serde(default)]
    pub host_match: Option<String>,
    #[serde(default)]
    pub decision: Option<String>,
    /// `served`, `refused` or `failed`: requests whose decision has that
    /// outcome (see `Decision::outcome`).
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// RFC 3339, `YYYY-MM-DDTHH:MM` (UTC, as a browser's datetime field
    /// sends it), or a duration back from now (`15m`, `2h`, `7d`).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub page: Option<i64>,
    #[serde(default)]
    pub per_page: Option<i64>,
}

/// One page of matches.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// How many rows match in all.
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// The filter, validated.
#[derive(Debug, Default)]
struct Filter {
    kind: Option<&'static str>,
    agent: Option<String>,
    host: Option<String>,
    /// The whole host, not a part of it.
    exact_host: bool,
    decision: Option<String>,
    outcome: Option<Outcome>,
    status: Option<i32>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

fn parse_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, ServiceError> {
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M") {
        return Ok(t.and_utc());
    }
    parse_since(text, Utc::now()).map_err(|_| {
        invalid(
            field,
            format!(
                "{field} {text:?} is neither a time (2026-01-31T12:00 or RFC 3339) \
                 nor a duration like 15m, 2h or 7d"
            ),
        )
    })
}

impl AuditSearch {
    fn validate(&self) -> Result<Filter, ServiceError> {
        let kind = match given(&self.kind) {
            None => None,
            Some("request") => Some("request"),
            Some("admin") => Some("admin"),
            Some(other) => {
                return Err(invalid(
                    "kind",
                    format!("kind {other:?} is neither request nor admin"),
                ));
            }
        };
        let exact_host = match given(&self.host_match) {
            None | Some("contains") => false,
            Some("exact") => true,
            Some(other) => {
                return Err(invalid(
                    "host_match",
                    format!("host_match {other:?} is neither contains nor exact"),
                ));
            }
        };
        let outcome = given(&self.outcome)
            .map(str::parse::<Outcome>)
            .transpose()
            .map_err(|e| invalid("outcome", e.to_string()))?;
        let agent = given(&self.agent)
            .map(|a| AgentName::parse(a).map(String::from))
            .transpose()
            .map_err(|e| invalid("agent", e.to_string()))?;
        let host = given(&self.host).map(str::to_ascii_lowercase);
        if host.as_ref().is_some_and(|h| h.len() > MAX_FILTER_LEN) {
            return Err(invalid("host", "the host filter is too long"));
        }
        let decision = given(&self.decision).map(str::to_owned);
        if decision.as_ref().is_some_and(|d| {
            d.len() > 40
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
        }) {
            return Err(invalid(
                "decision",
                format!(
                    "a decision is a word like {}, {} or {}",
                    Decision::Allowed,
                    Decision::Blocked,
                    Decision::ApprovalDenied
                ),
            ));
        }
        let status = given(&self.status)
            .map(|s| s.parse::<i32>().ok().filter(|n| (100..=599).contains(n)))
            .map(|s| s.ok_or_else(|| invalid("status", "status must be an HTTP status, 100-599")))
            .transpose()?;
        let from = given(&self.from)
            .map(|t| parse_time("from", t))
            .transpose()?;
        let to = given(&self.to).map(|t| parse_time("to", t)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(invalid("to", "the end of the range is before its start"));
        }
        Ok(Filter {
            kind,
            agent,
            host,
            exact_host,
            decision,
            outcome,
            status,
            from,
            to,
        })
    }

    fn paging(&self) -> Result<(i64, i64), ServiceError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=1_000_000).contains(&page) {
            return Err(invalid("page", "page must be 1 or more"));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(invalid(
                "per_page",
                format!("per_page must be from 1 to {MAX_PER_PAGE}"),
            ));
        }
        Ok((page, per_page))
    }
}

/// `LIKE` treats `%`, `_` and `\` specially; a typed host is literal.
/// Without the `%` around it, the pattern matches the whole host only.
fn like_pattern(text: &str, exact: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    if !exact {
        out.push('%');
    }
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    if !exact {
        out.push('%');
    }
    out
}

impl Filter {
    fn host_pattern(&self) -> Option<String> {
        self.host
            .as_deref()
            .map(|h| like_pattern(h, self.exact_host))
    }

    /// The outcome as `$8`/`$9`: the decision words to test, and whether a
    /// match must be in them or outside them. `failed` is "neither served
    /// nor refused", so a word this version does not know counts there,
    /// as it does in the charts.
    fn outcome_words(&self) -> (Option<Vec<&'static str>>, bool) {
        match self.outcome {
            None => (None, true),
            Some(Outcome::Failed) => (
                Some(Decision::words(|d| d.outcome() != Outcome::Failed)),
                false,
            ),
            Some(o) => (Some(Decision::words(|d| d.outcome() == o)), true),
        }
    }
}

/// An outcome is a property of requests: it implies `kind = 'request'`.
const WHERE: &str = "WHERE ($1::text IS NULL OR agent = $1)
       AND ($2::text IS NULL OR lower(host) LIKE $2)
       AND ($3::text IS NULL OR decision = $3)
       AND ($4::int IS NULL OR status = $4)
       AND ($5::timestamptz IS NULL OR at >= $5)
       AND ($6::timestamptz IS NULL OR at <= $6)
       AND ($7::text IS NULL OR kind = $7)
       AND ($8::text[] IS NULL OR (kind = 'request' AND (decision = ANY($8)) = $9))";

fn bind_filter<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    f: &'q Filter,
    host: &'q Option<String>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let (words, inside) = f.outcome_words();
    q.bind(&f.agent)
        .bind(host)
        .bind(&f.decision)
        .bind(f.status)
        .bind(f.from)
        .bind(f.to)
        .bind(f.kind)
        .bind(words)
        .bind(inside)
}

impl Service {
    /// One page of matching audit rows, newest first.
    /// Walks the audit trail's hash chain (see [`crate::store::chain`]).
    pub async fn verify_audit(&self) -> Result<crate::store::verify::ChainReport, ServiceError> {
        Ok(self.store.verify_audit_chain().await?)
    }

    pub async fn search_audit(&self, q: &AuditSearch) -> Result<AuditPage, ServiceError> {
        let filter = q.validate()?;
        let (page, per_page) = q.paging()?;
        let host = filter.host_pattern();
        let total: i64 = bind_filter(
            sqlx::query(&format!("SELECT count(*) AS n FROM audit_events {WHERE}")),
            &filter,
            &host,
        )
        .fetch_one(self.store.pool())
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::from)?;
        let events = self
            .select(&filter, &host, per_page, (page - 1) * per_page)
            .await?;
        Ok(AuditPage {
            events,
            total,
            page,
            per_page,
        })
    }

    /// Every matching row (at most [`MAX_EXPORT_ROWS`]), newest first.
    pub async fn export_audit(&self, q: &AuditSearch) -> Result<Vec<AuditEvent>, ServiceError> {
        let filter = q.validate()?;
        let host = filter.host_pattern();
        self.select(&filter, &host, MAX_EXPORT_ROWS, 0).await
    }

    async fn select(
        &self,
        filter: &Filter,
        host: &Option<String>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditEvent>, ServiceError> {
        let sql = format!(
            "SELECT id, at, kind, agent, method, host, path, decision, rule_id, secrets,
                    status, bytes_up, bytes_down, duration_us, detail
             FROM audit_events {WHERE} ORDER BY id DESC LIMIT $10 OFFSET $11"
        );
        let rows = bind_filter(sqlx::query(&sql), filter, host)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.store.pool())
            .await
            .map_err(StoreError::from)?;
        rows.iter()
            .map(crate::store::audit::event_from_row)
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::from(e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated() {
        let ok = AuditSearch {
            agent: Some("bot".into()),
            host: Some("API.example".into()),
            status: Some("403".into()),
            from: Some("2026-01-31T12:00".into()),
            to: Some("".into()),
            ..AuditSearch::default()
        };
        let f = ok.validate().unwrap();
        assert_eq!(f.host.as_deref(), Some("api.example"));
        assert_eq!(f.status, Some(403));
        assert!(f.to.is_none());
        for (field, bad) in [
            (
                "agent",
                AuditSearch {
                    agent: Some("<b>".into()),
                    ..AuditSearch::default()
                },
            ),
            (
                "status",
                AuditSearch {
                    status: Some("99".into()),
                    ..AuditSearch::default()
                },
            ),
            (
                "from",
                AuditSearch {
                    from: Some("yesterday".into()),
                    ..AuditSearch::default()
                },
            ),
            (
                "decision",
                AuditSearch {
                    decision: Some("a b".into()),
                    ..AuditSearch::default()
                },
            ),
        ] {
            match bad.validate() {
                Err(ServiceError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn like_patterns_are_literal() {
        assert_eq!(like_pattern("a_b%", false), "%a\\_b\\%%");
        assert_eq!(like_pattern("a_b%", true), "a\\_b\\%");
    }

    #[test]
    fn kind_outcome_and_exact_host_are_validated() {
        let q = AuditSearch {
            kind: Some("request".into()),
            host: Some("API.example:443".into()),
            host_match: Some("exact".into()),
            outcome: Some("failed".into()),
            ..AuditSearch::default()
        };
        let f = q.validate().unwrap();
        assert_eq!(f.kind, Some("request"));
        assert_eq!(f.host_pattern().as_deref(), Some("api.example:443"));
        // `failed` is "not in served or refused".
        let (words, inside) = f.outcome_words();
        let words = words.unwrap();
        assert!(!inside);
        assert!(words.contains(&"allowed") && words.contains(&"exfiltration"));
        assert!(!words.contains(&"upstream_error"));
        let served = AuditSearch {
            outcome: Some("served".into()),
            ..AuditSearch::default()
        };
        assert_eq!(
            served.validate().unwrap().outcome_words(),
            (Some(vec!["allowed", "approved"]), true)
        );
        for (field, bad) in [
            (
                "kind",
                AuditSearch {
                    kind: Some("requests".into()),
                    ..AuditSearch::default()
                },
            ),
            (
                "host_match",
                AuditSearch {
                    host_match: Some("prefix".into()),
                    ..AuditSearch::default()
                },
            ),
            (
                "outcome",
                AuditSearch {
                    outcome: Some("ok".into()),
                    ..AuditSearch::default()
                },
            ),
        ] {
            match bad.validate() {
                Err(ServiceError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
