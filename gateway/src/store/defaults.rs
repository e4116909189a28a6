//! The default: the global row of `policy_defaults`, and each agent's own
//! (`agents.default_action`). Writes are configuration changes like rules:
//! audited, announced, and so in every gateway's snapshot at once.

use sqlx::Row;

use super::{Change, Store, StoreError, commit_change};
use crate::model::AgentName;
use crate::policy::{DefaultAction, Defaults};

impl Store {
    /// The global settings. The row is made by the migration; without it
    /// (or with a word that is no action) the policy cannot be known, so
    /// this is a corrupt row, which fails the gateway closed.
    pub async fn load_defaults(&self) -> Result<Defaults, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "policy_defaults",
            id: "the global default".into(),
            reason,
        };
        let row = sqlx::query("SELECT action, grants_allow FROM policy_defaults")
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| {
                corrupt("the row is missing: set it with `airlock default allow|deny`".into())
            })?;
        let global = row
            .try_get::<&str, _>("action")?
            .parse::<DefaultAction>()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Defaults {
            global,
            grants_allow: row.try_get("grants_allow")?,
        })
    }

    /// Sets the global default; `grants_allow` `None` keeps it as it is.
    pub async fn set_global_default(
        &self,
        action: DefaultAction,
        grants_allow: Option<bool>,
    ) -> Result<Defaults, StoreError> {
        let mut tx = self.pool().begin().await?;
        // An upsert, so a removed row can be put back the same way.
        let row = sqlx::query(
            "INSERT INTO policy_defaults (action, grants_allow) VALUES ($1, coalesce($2, true))
             ON CONFLICT (singleton) DO UPDATE
                SET action = $1,
                    grants_allow = coalesce($2, policy_defaults.grants_allow),
                    updated_at = now()
             RETURNING grants_allow",
        )
        .bind(action.as_str())
        .bind(grants_allow)
        .fetch_one(&mut *tx)
        .await?;
        let grants_allow: bool = row.try_get("grants_allow")?;
        commit_change(
            tx,
            Change {
                agent: None,
                action: "default.set",
                detail: &format!("default={action} grants_allow={grants_allow}"),
                what: "defaults",
            },
        )
        .await?;
        Ok(Defaults {
            global: action,
            grants_allow,
        })
    }

    /// Sets agent `name`'s own default; `None` makes it follow the global
    /// one again.
    pub async fn set_agent_default(
        &self,
        name: &AgentName,
        action: Option<DefaultAction>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query("UPDATE agents SET default_action = $2 WHERE name = $1")
            .bind(name.as_str())
            .bind(action.map(DefaultAction::as_str))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound {
                what: format!("agent {name}"),
            });
        }
        let shown = action.map_or("global", DefaultAction::as_str);
        commit_change(
            tx,
            Change {
                agent: Some(name.as_str()),
                action: "default.set",
                detail: &format!("agent={name} default={shown}"),
                what: "defaults",
            },
        )
        .await?;
        Ok(())
    }
}
