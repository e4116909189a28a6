//! Requests held for a person's approval.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{Store, StoreError, notify_change};
use crate::policy::approvals::{ApprovalBackend, ApprovalError, ApprovalOutcome};

/// An approval request as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRecord {
    pub id: i64,
    pub agent: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub rule_id: Option<i64>,
    /// pending, approved, denied or expired.
    pub status: String,
    pub requested_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// What it takes to hold a request.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub agent: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub rule_id: i64,
}

/// The notification payload announcing a decision: `approval:ID:STATUS`.
pub fn decision_payload(id: i64, status: &str) -> String {
    format!("approval:{id}:{status}")
}

/// Parses [`decision_payload`]'s output.
pub fn parse_decision_payload(payload: &str) -> Option<(i64, &str)> {
    let rest = payload.strip_prefix("approval:")?;
    let (id, status) = rest.split_once(':')?;
    Some((id.parse().ok()?, status))
}

fn approval_from_row(row: &PgRow) -> Result<ApprovalRecord, sqlx::Error> {
    Ok(ApprovalRecord {
        id: row.try_get("id")?,
        agent: row.try_get("agent")?,
        method: row.try_get("method")?,
        host: row.try_get("host")?,
        path: row.try_get("path")?,
        rule_id: row.try_get("rule_id")?,
        status: row.try_get("status")?,
        requested_at: row.try_get("requested_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

const COLUMNS: &str = "id, agent, method, host, path, rule_id, status, requested_at, decided_at";

impl Store {
    pub async fn insert_approval(&self, new: NewApproval<'_>) -> Result<i64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO approvals (agent, method, host, path, rule_id)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(new.agent)
        .bind(new.method)
        .bind(new.host)
        .bind(new.path)
        .bind(new.rule_id)
        .fetch_one(&mut *tx)
        .await?;
        notify_change(&mut tx, &decision_payload(id, "pending")).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Moves a pending approval to `status`; `NotFound` if there is no such
    /// pending approval (unknown, or already decided).
    pub async fn decide_approval(
        &self,
        id: i64,
        status: &str,
    ) -> Result<ApprovalRecord, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE approvals SET status = $2, decided_at = now()
             WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(status)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let current: Option<String> =
                sqlx::query_scalar("SELECT status FROM approvals WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(StoreError::NotFound {
                what: match current {
                    Some(s) => format!("a pending approval {id} (it is already {s}) "),
                    None => format!("approval {id}"),
                },
            });
        };
        notify_change(&mut tx, &decision_payload(id, status)).await?;
        tx.commit().await?;
        Ok(approval_from_row(&row)?)
    }

    pub async fn approval_status(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT status FROM approvals WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Pending approvals, oldest first; or with `all`, the latest 200 of any status.
    pub async fn list_approvals(&self, all: bool) -> Result<Vec<ApprovalRecord>, StoreError> {
        let sql = if all {
            format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM approvals ORDER BY id DESC LIMIT 200) a ORDER BY id"
            )
        } else {
            format!("SELECT {COLUMNS} FROM approvals WHERE status = 'pending' ORDER BY id")
        };
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter()
            .map(approval_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }
}

/// The daemon's backend: approvals are rows, visible to every daemon on
/// the database and decided through any of them.
impl ApprovalBackend for Store {
    fn create<'a>(&'a self, new: NewApproval<'a>) -> BoxFuture<'a, Result<i64, ApprovalError>> {
        Box::pin(async move { Ok(self.insert_approval(new).await?) })
    }

    fn decision(&self, id: i64) -> BoxFuture<'_, Result<Option<ApprovalOutcome>, ApprovalError>> {
        Box::pin(async move {
            Ok(match self.approval_status(id).await?.as_deref() {
                Some("approved") => Some(ApprovalOutcome::Approved),
                Some("denied") => Some(ApprovalOutcome::Denied),
                Some("expired") => Some(ApprovalOutcome::TimedOut),
                _ => None,
            })
        })
    }

    fn expire(&self, id: i64) -> BoxFuture<'_, Result<bool, ApprovalError>> {
        Box::pin(async move {
            match self.decide_approval(id, "expired").await {
                Ok(_) => Ok(true),
                Err(StoreError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        assert_eq!(
            parse_decision_payload(&decision_payload(42, "approved")),
            Some((42, "approved"))
        );
        assert_eq!(parse_decision_payload("agents"), None);
        assert_eq!(parse_decision_payload("approval:x:approved"), None);
    }
}
