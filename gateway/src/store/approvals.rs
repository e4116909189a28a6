//! Requests held for a person's approval.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{Store, StoreError, notify_change};
use crate::model::word_enum;
use crate::policy::approvals::{ApprovalBackend, ApprovalError, ApprovalOutcome};

word_enum! {
    /// Where an approval request stands; the `status` column and the
    /// notification payload hold its word.
    pub enum ApprovalStatus as "approval status" {
        /// Held: a request waits for a person.
        Pending => "pending",
        Approved => "approved",
        Denied => "denied",
        /// Nobody decided within the timeout; the request was refused.
        Expired => "expired",
    }
}

/// An approval request as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRecord {
    pub id: i64,
    pub agent: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub rule_id: Option<i64>,
    /// What the request carries that its target does not say: for an MCP
    /// call, its tools and arguments, secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[schema(value_type = String, example = "pending")]
    pub status: ApprovalStatus,
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
    /// See [`ApprovalRecord::detail`].
    pub detail: Option<&'a str>,
}

/// The notification payload announcing a decision: `approval:ID:STATUS`.
pub fn decision_payload(id: i64, status: ApprovalStatus) -> String {
    format!("approval:{id}:{status}")
}

/// Parses [`decision_payload`]'s output.
pub fn parse_decision_payload(payload: &str) -> Option<(i64, ApprovalStatus)> {
    let rest = payload.strip_prefix("approval:")?;
    let (id, status) = rest.split_once(':')?;
    Some((id.parse().ok()?, status.parse().ok()?))
}

/// The `status` column, which the schema limits to the four words.
fn status_from_row(row: &PgRow) -> Result<ApprovalStatus, sqlx::Error> {
    let word: String = row.try_get("status")?;
    word.parse().map_err(|e| sqlx::Error::ColumnDecode {
        index: "status".into(),
        source: Box::new(e),
    })
}

fn approval_from_row(row: &PgRow) -> Result<ApprovalRecord, sqlx::Error> {
    Ok(ApprovalRecord {
        id: row.try_get("id")?,
        agent: row.try_get("agent")?,
        method: row.try_get("method")?,
        host: row.try_get("host")?,
        path: row.try_get("path")?,
        rule_id: row.try_get("rule_id")?,
        detail: row.try_get("detail")?,
        status: status_from_row(row)?,
        requested_at: row.try_get("requested_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

const COLUMNS: &str =
    "id, agent, method, host, path, rule_id, detail, status, requested_at, decided_at";

impl Store {
    pub async fn insert_approval(&self, new: NewApproval<'_>) -> Result<i64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO approvals (agent, method, host, path, rule_id, detail)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(new.agent)
        .bind(new.method)
        .bind(new.host)
        .bind(new.path)
        .bind(new.rule_id)
        .bind(new.detail)
        .fetch_one(&mut *tx)
        .await?;
        notify_change(&mut tx, &decision_payload(id, ApprovalStatus::Pending)).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Moves a pending approval to `status`; `NotFound` if there is no such
    /// pending approval (unknown, or already decided).
    pub async fn decide_approval(
        &self,
        id: i64,
        status: ApprovalStatus,
    ) -> Result<ApprovalRecord, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE approvals SET status = $2, decided_at = now()
             WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(status.as_str())
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

    pub async fn approval_status(&self, id: i64) -> Result<Option<ApprovalStatus>, StoreError> {
        let row = sqlx::query("SELECT status FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(status_from_row).transpose()?)
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
            Ok(match self.approval_status(id).await? {
                Some(ApprovalStatus::Approved) => Some(ApprovalOutcome::Approved),
                Some(ApprovalStatus::Denied) => Some(ApprovalOutcome::Denied),
                Some(ApprovalStatus::Expired) => Some(ApprovalOutcome::TimedOut),
                Some(ApprovalStatus::Pending) | None => None,
            })
        })
    }

    fn expire(&self, id: i64) -> BoxFuture<'_, Result<bool, ApprovalError>> {
        Box::pin(async move {
            match self.decide_approval(id, ApprovalStatus::Expired).await {
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
            parse_decision_payload(&decision_payload(42, ApprovalStatus::Approved)),
            Some((42, ApprovalStatus::Approved))
        );
        for &status in ApprovalStatus::ALL {
            assert_eq!(
                parse_decision_payload(&decision_payload(7, status)),
                Some((7, status))
            );
        }
        assert_eq!(parse_decision_payload("agents"), None);
        assert_eq!(parse_decision_payload("approval:x:approved"), None);
        assert_eq!(parse_decision_payload("approval:1:maybe"), None);
    }

    #[test]
    fn statuses_round_trip_as_their_words() {
        for &s in ApprovalStatus::ALL {
            assert_eq!(s.as_str().parse::<ApprovalStatus>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<ApprovalStatus>(&json).unwrap(), s);
        }
        let words: Vec<&str> = ApprovalStatus::ALL.iter().map(|s| s.as_str()).collect();
        // The schema's CHECK and the stored rows use these.
        assert_eq!(words, ["pending", "approved", "denied", "expired"]);
    }
}
