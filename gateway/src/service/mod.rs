//! The service layer: the one place that validates configuration and
//! writes it. The admin API (and so the CLI) and the dashboard both call
//! it, so a rule is checked the same way whichever door it came through.
//!
//! After each write the local snapshot is reloaded at once; other daemons
//! on the same database follow through `LISTEN/NOTIFY`.

pub mod access_requests;
mod agents;
pub mod audit_search;
pub mod connect;
pub mod credentials;
pub mod defaults;
pub mod insights;
pub mod probe;
pub mod rule_order;
mod rules;
mod secrets;
pub mod traffic;
pub mod types;

pub use agents::BusyCgroup;

use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::model::AgentName;
use crate::policy::approvals::Approvals;
use crate::snapshot::SnapshotHandle;
use crate::store::approvals::ApprovalStatus;
use crate::store::audit::AuditFilter;
use crate::store::{Store, StoreError};
use crate::vault::{Vault, VaultError};
use types::*;

/// What went wrong, in terms an API client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    fn invalid(field: &'static str, message: impl ToString) -> Self {
        ServiceError::Invalid {
            field,
            message: message.to_string(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => {
                ServiceError::NotFound(format!("{what} does not exist"))
            }
            StoreError::Conflict { what } => ServiceError::Conflict(format!(
                "{what} already exists: choose another name, or remove it first"
            )),
            StoreError::Decided(message) => ServiceError::Conflict(message),
            StoreError::Unreachable { .. } => ServiceError::Unavailable(e.to_string()),
            StoreError::Query(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                ServiceError::Unavailable(format!("the database is unavailable: {e}"))
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<VaultError> for ServiceError {
    fn from(e: VaultError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

const DEFAULT_AUDIT_LIMIT: i64 = 100;
const MAX_AUDIT_LIMIT: i64 = 10_000;

/// The configuration service.
#[derive(Clone)]
pub struct Service {
    store: Store,
    vault: Arc<Vault>,
    snapshot: Arc<SnapshotHandle>,
    approvals: Arc<Approvals>,
    /// The agents' parent cgroup: a new agent's cgroup is `PARENT/agent-NAME`.
    agents_cgroup: Arc<str>,
    /// The token client and cache of OAuth2 secrets: a new grant is
    /// checked by fetching its first token.
    credentials: Arc<crate::credentials::Credentials>,
}

impl Service {
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        snapshot: Arc<SnapshotHandle>,
        approvals: Arc<Approvals>,
        agents_cgroup: &str,
        credentials: Arc<crate::credentials::Credentials>,
    ) -> Self {
        Service {
            store,
            vault,
            snapshot,
            approvals,
            agents_cgroup: agents_cgroup.trim_matches('/').into(),
            credentials,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn snapshot(&self) -> &Arc<SnapshotHandle> {
        &self.snapshot
    }

    /// Wakes whenever the set of pending approvals may have changed.
    pub fn approval_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.approvals.subscribe()
    }

    /// Applies a committed change locally without waiting for the
    /// notification round trip.
    async fn refresh(&self) {
        if let Err(e) = self.snapshot.reload(&self.store).await {
            tracing::error!(error = %e, "reloading configuration after a change failed");
        }
    }

    // ---- rules ----

    pub async fn list_rules(&self) -> Result<Vec<RuleView>, ServiceError> {
        Ok(self
            .store
            .list_rules()
            .await?
            .iter()
            .map(RuleView::from)
            .collect())
    }

    pub async fn delete_rule(&self, id: i64) -> Result<(), ServiceError> {
        self.store.delete_rule(id).await?;
        self.refresh().await;
        Ok(())
    }

    // ---- approvals ----

    pub async fn list_approvals(
        &self,
        q: ApprovalQuery,
    ) -> Result<Vec<ApprovalView>, ServiceError> {
        Ok(self.store.list_approvals(q.all).await?)
    }

    /// Approves or denies a pending request. The waiting request is woken
    /// here at once, and on every other daemon through the notification.
    pub async fn decide_approval(
        &self,
        id: i64,
        approve: bool,
    ) -> Result<ApprovalView, ServiceError> {
        let status = if approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        let record = self.store.decide_approval(id, status).await?;
        self.approvals.resolve(id, approve);
        Ok(record)
    }

    // ---- audit ----

    pub async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditEvent>, ServiceError> {
        let since = q
            .since
            .as_deref()
            .map(|s| parse_since(s, Utc::now()))
            .transpose()?;
        let limit = q.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
        if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                format!("limit must be from 1 to {MAX_AUDIT_LIMIT}"),
            ));
        }
        let agent = q
            .agent
            .as_deref()
            .map(AgentName::parse)
            .transpose()
            .map_err(|e| ServiceError::invalid("agent", e))?;
        Ok(self
            .store
            .audit_events(&AuditFilter {
                agent: agent.map(String::from),
                since,
                after_id: q.after_id,
                limit,
            })
            .await?)
    }
}

/// `--since`: an RFC 3339 time, or a duration back from `now` such as
/// `90s`, `15m`, `2h`, `7d`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ServiceError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        ServiceError::invalid(
            "since",
            format!(
                "since {text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) \
                 nor a duration like 90s, 15m, 2h or 7d"
            ),
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => ChronoDuration::try_seconds(n),
        "m" => ChronoDuration::try_minutes(n),
        "h" => ChronoDuration::try_hours(n),
        "d" => ChronoDuration::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(d).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("15m", now).unwrap().to_rfc3339(),
            "2026-01-31T11:45:00+00:00"
        );
        assert_eq!(
            parse_since("2026-01-01T00:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        for bad in ["", "15", "m", "15y", "yesterday"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}
