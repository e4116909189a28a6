//! Agents and their grants.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{Change, Loaded, Store, StoreError, audit, commit_change, notify_change};
use crate::model::{AgentName, SecretName};
use crate::policy::DefaultAction;
use crate::token::TokenHash;

/// An agent as stored, with the names of the secrets it is granted.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    /// The row's key: grants and rules refer to it, so a rename keeps them.
    pub id: Uuid,
    /// What the audit trail, rules and the operator call the agent.
    pub name: AgentName,
    /// SHA-256 of its proxy token: how an explicit-proxy `CONNECT` is
    /// authenticated without the token being stored.
    pub token_hash: TokenHash,
    /// The cgroup whose processes are this agent in transparent mode.
    pub cgroup: String,
    /// The secrets it may have injected; no grant, no credential.
    pub grants: Vec<SecretName>,
    /// Its own default (`airlock default deny --agent NAME`); `None`:
    /// the global one applies.
    pub default: Option<DefaultAction>,
    /// For listings.
    pub created_at: DateTime<Utc>,
}

/// What it takes to create an agent.
#[derive(Debug)]
pub struct NewAgent<'a> {
    pub name: &'a AgentName,
    pub token_hash: TokenHash,
    pub cgroup: &'a str,
    pub grants: &'a [SecretName],
}

const SELECT_AGENTS: &str = "
    SELECT a.id, a.name, a.token_hash, a.cgroup, a.default_action, a.created_at,
           coalesce(array_agg(s.name ORDER BY s.name) FILTER (WHERE s.name IS NOT NULL),
                    '{}') AS grants
    FROM agents a
    LEFT JOIN grants g ON g.agent_id = a.id
    LEFT JOIN secrets s ON s.id = g.secret_id";

fn agent_from_row(row: &PgRow) -> Result<AgentRecord, StoreError> {
    let id: Uuid = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "agents",
        id: id.to_string(),
        reason,
    };
    let name = AgentName::try_from(row.try_get::<String, _>("name")?)
        .map_err(|e| corrupt(e.to_string()))?;
    let token_hash = TokenHash::from_slice(row.try_get("token_hash")?)
        .ok_or_else(|| corrupt("token hash is not 32 bytes".into()))?;
    let grants = row
        .try_get::<Vec<String>, _>("grants")?
        .into_iter()
        .map(SecretName::try_from)
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let default = row
        .try_get::<Option<&str>, _>("default_action")?
        .map(str::parse::<DefaultAction>)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(AgentRecord {
        id,
        name,
        token_hash,
        cgroup: row.try_get("cgroup")?,
        grants,
        default,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.load_agents().await?.strict()
    }

    /// Every row that can be read, and the errors of those that cannot.
    pub async fn load_agents(&self) -> Result<Loaded<AgentRecord>, StoreError> {
        let sql = format!("{SELECT_AGENTS} GROUP BY a.id ORDER BY a.name");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        Loaded::collect(rows.iter().map(agent_from_row))
    }

    pub async fn get_agent(&self, name: &AgentName) -> Result<AgentRecord, StoreError> {
        let sql = format!("{SELECT_AGENTS} WHERE a.name = $1 GROUP BY a.id");
        let row = sqlx::query(&sql)
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("agent {name}"),
            })?;
        agent_from_row(&row)
    }

    /// Creates an agent and its grants in one transaction: a grant of a
    /// missing secret leaves no agent behind.
    pub async fn insert_agent(&self, new: NewAgent<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO agents (id, name, token_hash, cgroup) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(new.name.as_str())
            .bind(new.token_hash.0.as_slice())
            .bind(new.cgroup)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::conflict_as(e, || format!("agent {}", new.name)))?;
        for secret in new.grants {
            insert_grant(&mut tx, id, secret).await?;
        }
        let grants: Vec<&str> = new.grants.iter().map(SecretName::as_str).collect();
        commit_change(
            tx,
            Change {
                agent: Some(new.name.as_str()),
                action: "agent.add",
                detail: &format!(
                    "agent={} cgroup={} grants=[{}]",
                    new.name,
                    new.cgroup,
                    grants.join(",")
                ),
                what: "agents",
            },
        )
        .await?;
        Ok(())
    }

    pub async fn delete_agent(&self, name: &AgentName) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query("DELETE FROM agents WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound {
                what: format!("agent {name}"),
            });
        }
        commit_change(
            tx,
            Change {
                agent: Some(name.as_str()),
                action: "agent.rm",
                detail: &format!("agent={name}"),
                what: "agents",
            },
        )
        .await?;
        Ok(())
    }

    /// Grants `secret` to `agent`; returns false when it already was.
    pub async fn grant(&self, agent: &AgentName, secret: &SecretName) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let agent_id = agent_id(&mut tx, agent).await?;
        let added = insert_grant(&mut tx, agent_id, secret).await?;
        if added {
            audit::record_admin(
                &mut tx,
                Some(agent.as_str()),
                "agent.grant",
                &format!("agent={agent} secret={secret}"),
            )
            .await?;
            notify_change(&mut tx, "grants").await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    pub async fn revoke(&self, agent: &AgentName, secret: &SecretName) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let agent_id = agent_id(&mut tx, agent).await?;
        let secret_id = super::secrets::secret_id(&mut tx, secret).await?;
        let deleted = sqlx::query("DELETE FROM grants WHERE agent_id = $1 AND secret_id = $2")
            .bind(agent_id)
            .bind(secret_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound {
                what: format!("a grant of secret {secret} to agent {agent}"),
            });
        }
        commit_change(
            tx,
            Change {
                agent: Some(agent.as_str()),
                action: "agent.revoke",
                detail: &format!("agent={agent} secret={secret}"),
                what: "grants",
            },
        )
        .await?;
        Ok(())
    }
}

pub(super) async fn agent_id(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    name: &AgentName,
) -> Result<Uuid, StoreError> {
    sqlx::query_scalar("SELECT id FROM agents WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("agent {name}"),
        })
}

/// Grants `secret` to `agent` inside `tx`; false when it already was.
/// The caller audits and announces (for allowing an access request in the
/// same transaction as marking it allowed).
pub(super) async fn grant_secret_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    agent: &AgentName,
    secret: &SecretName,
) -> Result<bool, StoreError> {
    let agent_id = agent_id(tx, agent).await?;
    insert_grant(tx, agent_id, secret).await
}

/// Inserts one grant; false when it already existed.
async fn insert_grant(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    agent_id: Uuid,
    secret: &SecretName,
) -> Result<bool, StoreError> {
    let secret_id = super::secrets::secret_id(tx, secret).await?;
    let added = sqlx::query(
        "INSERT INTO grants (agent_id, secret_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(agent_id)
    .bind(secret_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(added == 1)
}
