//! Reading and deciding access requests ([`super::access_requests`]):
//! allowing one adds its allow rule (or grant) and marks it allowed in one
//! transaction; dismissing one silences it. Both are audited.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::access_requests::{AccessKind, AccessRequest, AccessStatus};
use super::agents::grant_secret_in;
use super::audit::record_admin;
use super::rules::{NewRule, add_rule_in};
use super::{Change, Store, StoreError, commit_change};
use crate::model::{AgentName, SecretName};
use crate::policy::{HostPattern, Method, PathGlob, RuleAction};

const SELECT: &str = "SELECT r.id, r.kind, a.name AS agent, sec.name AS secret, r.method, r.host,
                             r.path_pattern, r.count, r.first_seen, r.last_seen, r.status,
                             r.rule_id, r.decided_at
                      FROM access_requests r JOIN agents a ON a.id = r.agent_id
                           LEFT JOIN secrets sec ON sec.id = r.secret_id";

/// A word column the schema limits to `T`'s words.
fn word<T: std::str::FromStr>(row: &PgRow, column: &str) -> Result<T, sqlx::Error>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let word: String = row.try_get(column)?;
    word.parse().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: Box::new(e),
    })
}

fn request_from_row(row: &PgRow) -> Result<AccessRequest, sqlx::Error> {
    Ok(AccessRequest {
        id: row.try_get("id")?,
        kind: word(row, "kind")?,
        agent: row.try_get("agent")?,
        secret: row.try_get("secret")?,
        method: row.try_get("method")?,
        host: row.try_get("host")?,
        path_pattern: row.try_get("path_pattern")?,
        count: row.try_get("count")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        status: word(row, "status")?,
        rule_id: row.try_get("rule_id")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// The rule allowing `req` would add: for its agent only, its method,
/// its host (and port, when not 443), its suggested paths.
struct AllowRule {
    host: HostPattern,
    path: PathGlob,
    method: Method,
    agent: AgentName,
}

impl AllowRule {
    fn of(req: &AccessRequest) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "access_requests",
            id: req.id.to_string(),
            reason,
        };
        Ok(AllowRule {
            host: HostPattern::parse(&req.host).map_err(|e| corrupt(e.to_string()))?,
            path: PathGlob::parse(&req.path_pattern).map_err(|e| corrupt(e.to_string()))?,
            method: Method::parse(&req.method).map_err(|e| corrupt(e.to_string()))?,
            agent: AgentName::parse(&req.agent).map_err(|e| corrupt(e.to_string()))?,
        })
    }

    fn as_new(&self) -> NewRule<'_> {
        NewRule {
            host: &self.host,
            path: &self.path,
            method: Some(&self.method),
            agent: Some(&self.agent),
            action: RuleAction::Allow,
            body: None,
        }
    }
}

/// Grants `req`'s secret to its agent inside `tx`, audited as
/// `agent.grant` like `airlock agent grant` (already granted: nothing to
/// add, and the request is answered all the same).
async fn grant_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    req: &AccessRequest,
) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "access_requests",
        id: req.id.to_string(),
        reason,
    };
    let agent = AgentName::parse(&req.agent).map_err(|e| corrupt(e.to_string()))?;
    let secret = req
        .secret
        .as_deref()
        .ok_or_else(|| corrupt("a grant request names no secret".into()))
        .and_then(|s| SecretName::parse(s).map_err(|e| corrupt(e.to_string())))?;
    if grant_secret_in(tx, &agent, &secret).await? {
        record_admin(
            tx,
            Some(agent.as_str()),
            "agent.grant",
            &format!("agent={agent} secret={secret}"),
        )
        .await?;
    }
    Ok(())
}

/// An access request in an audit event's detail.
fn describe(req: &AccessRequest) -> String {
    let asks = match (&req.rule_id, &req.secret) {
        (Some(rule), _) => format!(" rule={rule}"),
        (None, Some(secret)) => format!(" secret={secret}"),
        (None, None) => String::new(),
    };
    format!(
        "request={} kind={} method={} host={} path={} count={}{asks}",
        req.id, req.kind, req.method, req.host, req.path_pattern, req.count
    )
}

impl Store {
    /// Access requests, most recently refused first: the open ones, or
    /// with `all` every one.
    pub async fn list_access_requests(&self, all: bool) -> Result<Vec<AccessRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE $1 OR r.status = 'open' ORDER BY r.last_seen DESC, r.id DESC"
        ))
        .bind(all)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(request_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Allows access request `id`: adds the allow rule and marks the
    /// request allowed in one transaction, audited as `rule.add` and
    /// `request.allowed`, announced like any rule change. A dismissed
    /// request may still be allowed; an allowed one is a conflict.
    pub async fn allow_access_request(&self, id: i64) -> Result<AccessRequest, StoreError> {
        let mut tx = self.pool().begin().await?;
        let req = locked(&mut tx, id).await?;
        if req.status == AccessStatus::Allowed {
            return Err(StoreError::Decided(format!(
                "access request {id} is already allowed{}",
                req.rule_id
                    .map(|r| format!(" by rule {r}"))
                    .unwrap_or_default()
            )));
        }
        let (rule_id, what) = match req.kind {
            AccessKind::Rule => {
                let rule = AllowRule::of(&req)?;
                (Some(add_rule_in(&mut tx, &rule.as_new()).await?), "rules")
            }
            AccessKind::Grant => {
                grant_in(&mut tx, &req).await?;
                (None, "grants")
            }
        };
        let req = set_status(&mut tx, id, AccessStatus::Allowed, rule_id).await?;
        commit_change(
            tx,
            Change {
                agent: Some(&req.agent),
                action: "request.allowed",
                detail: &describe(&req),
                what,
            },
        )
        .await?;
        Ok(req)
    }

    /// Dismisses access request `id`: it is no longer listed, and later
    /// refusals of the same key do not reopen it. Audited as
    /// `request.dismissed`. Dismissing a dismissed request changes nothing;
    /// an allowed one is a conflict (remove its rule instead).
    pub async fn dismiss_access_request(&self, id: i64) -> Result<AccessRequest, StoreError> {
        let mut tx = self.pool().begin().await?;
        let req = locked(&mut tx, id).await?;
        match req.status {
            AccessStatus::Dismissed => return Ok(req),
            AccessStatus::Allowed => {
                return Err(StoreError::Decided(format!(
                    "access request {id} is already allowed: remove its rule (airlock rule rm) \
                     to take the access back"
                )));
            }
            AccessStatus::Open => {}
        }
        let req = set_status(&mut tx, id, AccessStatus::Dismissed, None).await?;
        // Nothing in the snapshot changes: audited, not announced.
        record_admin(
            &mut tx,
            Some(&req.agent),
            "request.dismissed",
            &describe(&req),
        )
        .await?;
        tx.commit().await?;
        Ok(req)
    }
}

/// Reads request `id` and locks its row until the transaction ends, so
/// two operators deciding at once decide in turn.
async fn locked(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
) -> Result<AccessRequest, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE r.id = $1 FOR UPDATE OF r"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("access request {id}"),
        })?;
    Ok(request_from_row(&row)?)
}

async fn set_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    status: AccessStatus,
    rule_id: Option<i64>,
) -> Result<AccessRequest, StoreError> {
    sqlx::query(
        "UPDATE access_requests SET status = $2, rule_id = coalesce($3, rule_id),
                                    decided_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(rule_id)
    .execute(&mut **tx)
    .await?;
    locked(tx, id).await
}
