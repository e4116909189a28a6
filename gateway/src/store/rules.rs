//! Rules: block, hold for approval, rate-limit or allow matching requests.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{Change, Loaded, Store, StoreError, agents, commit_change};
use crate::model::AgentName;
use crate::policy::{BodyCondition, BodySpec, HostPattern, Method, PathGlob, Rate, RuleAction};

/// A rule as stored.
#[derive(Debug, Clone)]
pub struct RuleRecord {
    /// Named in refusals and the audit trail (`blocked by rule 3`).
    pub id: i64,
    /// The evaluation order, which the operator can change.
    pub position: i32,
    /// The hosts it applies to.
    pub host: HostPattern,
    /// The paths it applies to (any reading of the path).
    pub path: PathGlob,
    /// `None`: every method.
    pub method: Option<Method>,
    /// `None`: every agent.
    pub agent: Option<AgentName>,
    /// Block, hold for approval, rate-limit, or allow.
    pub action: RuleAction,
    /// `None`: the head decides; else the body's MCP messages must match.
    pub body: Option<BodyCondition>,
    /// For listings.
    pub created_at: DateTime<Utc>,
}

/// What it takes to create a rule.
#[derive(Debug)]
pub struct NewRule<'a> {
    pub host: &'a HostPattern,
    pub path: &'a PathGlob,
    pub method: Option<&'a Method>,
    pub agent: Option<&'a AgentName>,
    pub action: RuleAction,
    pub body: Option<&'a BodyCondition>,
}

fn rule_from_row(row: &PgRow) -> Result<RuleRecord, StoreError> {
    let id: i64 = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "rules",
        id: id.to_string(),
        reason,
    };
    let action = match (
        row.try_get::<&str, _>("action")?,
        row.try_get::<Option<i32>, _>("rate_count")?,
        row.try_get::<Option<i32>, _>("rate_period_secs")?,
    ) {
        ("block", None, None) => RuleAction::Block,
        ("approve", None, None) => RuleAction::Approve,
        ("allow", None, None) => RuleAction::Allow,
        ("rate", Some(count), Some(period)) => RuleAction::Rate(Rate {
            count: u32::try_from(count).map_err(|e| corrupt(e.to_string()))?,
            period_secs: u32::try_from(period).map_err(|e| corrupt(e.to_string()))?,
        }),
        (action, _, _) => return Err(corrupt(format!("bad action {action:?}"))),
    };
    Ok(RuleRecord {
        id,
        position: row.try_get("position")?,
        host: HostPattern::parse(row.try_get("host_pattern")?)
            .map_err(|e| corrupt(e.to_string()))?,
        path: PathGlob::parse(row.try_get("path_glob")?).map_err(|e| corrupt(e.to_string()))?,
        method: row
            .try_get::<Option<String>, _>("method")?
            .map(Method::try_from)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        agent: row
            .try_get::<Option<String>, _>("agent")?
            .map(AgentName::try_from)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        action,
        body: row
            .try_get::<Option<&str>, _>("body_condition")?
            .map(|text| {
                let spec: BodySpec =
                    serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
                BodyCondition::parse(&spec).map_err(|e| corrupt(e.to_string()))
            })
            .transpose()?,
        created_at: row.try_get("created_at")?,
    })
}

/// The `rate_count` and `rate_period_secs` columns of an action.
fn rate_columns(action: RuleAction) -> (Option<i32>, Option<i32>) {
    match action {
        RuleAction::Rate(rate) => (
            Some(i32::try_from(rate.count).unwrap_or(i32::MAX)),
            Some(i32::try_from(rate.period_secs).unwrap_or(i32::MAX)),
        ),
        RuleAction::Block | RuleAction::Approve | RuleAction::Allow => (None, None),
    }
}

/// Appends a rule inside `tx` and records it in the trail (`rule.add`);
/// the caller announces and commits the change. For changes that make a
/// rule as one part of something larger (allowing an access request), so
/// both commit or neither does.
pub(super) async fn add_rule_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    new: &NewRule<'_>,
) -> Result<i64, StoreError> {
    let id = insert_rule_in(tx, new).await?;
    super::audit::record_admin(
        tx,
        new.agent.map(AgentName::as_str),
        "rule.add",
        &describe(id, new),
    )
    .await?;
    Ok(id)
}

/// The insert itself, last in the order of evaluation.
async fn insert_rule_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    new: &NewRule<'_>,
) -> Result<i64, StoreError> {
    let agent_id = rule_agent_id(tx, new).await?;
    let (count, period) = rate_columns(new.action);
    // Serialises concurrent appends so positions stay distinct.
    sqlx::query("LOCK TABLE rules IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO rules (position, host_pattern, path_glob, method, agent_id, action,
                            rate_count, rate_period_secs, body_condition)
         VALUES ((SELECT coalesce(max(position), 0) + 1 FROM rules),
                 $1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id",
    )
    .bind(new.host.to_string())
    .bind(new.path.as_str())
    .bind(new.method.map(Method::as_str))
    .bind(agent_id)
    .bind(new.action.kind())
    .bind(count)
    .bind(period)
    .bind(body_column(new.body))
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// The `body_condition` column: the condition's complete written form.
fn body_column(body: Option<&BodyCondition>) -> Option<String> {
    body.and_then(|b| serde_json::to_string(&b.spec()).ok())
}

/// A rule in an audit event's detail.
fn describe(id: i64, rule: &NewRule<'_>) -> String {
    let agent = rule.agent.map_or("*", AgentName::as_str);
    let method = rule.method.map_or("*", Method::as_str);
    let body = rule.body.map(|b| format!(" body={b}")).unwrap_or_default();
    format!(
        "rule={id} host={} path={} method={method} agent={agent} action={}{body}",
        rule.host, rule.path, rule.action
    )
}

impl Store {
    pub async fn list_rules(&self) -> Result<Vec<RuleRecord>, StoreError> {
        self.load_rules().await?.strict()
    }

    /// Every row that can be read, and the errors of those that cannot.
    pub async fn load_rules(&self) -> Result<Loaded<RuleRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.position, r.host_pattern, r.path_glob, r.method, a.name AS agent,
                    r.action, r.rate_count, r.rate_period_secs, r.body_condition,
                    r.created_at
             FROM rules r LEFT JOIN agents a ON a.id = r.agent_id
             ORDER BY r.position, r.id",
        )
        .fetch_all(self.pool())
        .await?;
        Loaded::collect(rows.iter().map(rule_from_row))
    }

    /// Appends a rule; returns its id.
    pub async fn insert_rule(&self, new: NewRule<'_>) -> Result<i64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let id = insert_rule_in(&mut tx, &new).await?;
        commit_change(
            tx,
            Change {
                agent: new.agent.map(AgentName::as_str),
                action: "rule.add",
                detail: &describe(id, &new),
                what: "rules",
            },
        )
        .await?;
        Ok(id)
    }

    /// Changes rule `id` in place: same id, same position.
    pub async fn update_rule(&self, id: i64, new: NewRule<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let agent_id = rule_agent_id(&mut tx, &new).await?;
        let (count, period) = rate_columns(new.action);
        let updated = sqlx::query(
            "UPDATE rules SET host_pattern = $2, path_glob = $3, method = $4, agent_id = $5,
                              action = $6, rate_count = $7, rate_period_secs = $8,
                              body_condition = $9
             WHERE id = $1",
        )
        .bind(id)
        .bind(new.host.to_string())
        .bind(new.path.as_str())
        .bind(new.method.map(Method::as_str))
        .bind(agent_id)
        .bind(new.action.kind())
        .bind(count)
        .bind(period)
        .bind(body_column(new.body))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound {
                what: format!("rule {id}"),
            });
        }
        commit_change(
            tx,
            Change {
                agent: new.agent.map(AgentName::as_str),
                action: "rule.edit",
                detail: &describe(id, &new),
                what: "rules",
            },
        )
        .await?;
        Ok(())
    }

    pub async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query("DELETE FROM rules WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound {
                what: format!("rule {id}"),
            });
        }
        commit_change(
            tx,
            Change {
                agent: None,
                action: "rule.rm",
                detail: &format!("rule={id}"),
                what: "rules",
            },
        )
        .await?;
        Ok(())
    }
}

/// The id of the agent a rule is for; `None` for every agent.
async fn rule_agent_id(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    new: &NewRule<'_>,
) -> Result<Option<uuid::Uuid>, StoreError> {
    match new.agent {
        Some(name) => Ok(Some(agents::agent_id(tx, name).await?)),
        None => Ok(None),
    }
}
