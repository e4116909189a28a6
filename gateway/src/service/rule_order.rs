//! Reordering rules. Within one action the first matching rule wins (see
//! [`crate::policy::engine`]), so order is policy, and moving a rule is a
//! configuration change like any other: audited, announced, applied at once.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::credentials::record_admin;
use super::{Service, ServiceError};
use crate::store::{CHANGES_CHANNEL, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl Service {
    /// Swaps rule `id` with its neighbour above or below. Moving the first
    /// rule up (or the last down) changes nothing and is not an error.
    pub async fn move_rule(&self, id: i64, direction: Direction) -> Result<(), ServiceError> {
        let mut tx = self.store.pool().begin().await.map_err(StoreError::from)?;
        // Same lock as appending a rule: positions stay distinct.
        sqlx::query("LOCK TABLE rules IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let ordered = sqlx::query("SELECT id, position FROM rules ORDER BY position, id")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>("id")?, r.try_get::<i32, _>("position")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)?;
        let at = ordered
            .iter()
            .position(|(rule, _)| *rule == id)
            .ok_or_else(|| ServiceError::NotFound(format!("rule {id} does not exist")))?;
        let other = match direction {
            Direction::Up => at.checked_sub(1),
            Direction::Down => Some(at + 1).filter(|&i| i < ordered.len()),
        };
        let Some(other) = other else {
            return Ok(());
        };
        let (a, b) = (ordered[at], ordered[other]);
        // Renumber both so that equal positions (possible in old data) still swap.
        let (pa, pb) = if a.1 == b.1 {
            (b.1 + i32::from(direction == Direction::Down), a.1)
        } else {
            (b.1, a.1)
        };
        for (rule, position) in [(a.0, pa), (b.0, pb)] {
            sqlx::query("UPDATE rules SET position = $2 WHERE id = $1")
                .bind(rule)
                .bind(position)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        }
        let dir = match direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        record_admin(&mut tx, "rule.move", &format!("rule={id} {dir}")).await?;
        sqlx::query("SELECT pg_notify($1, 'rules')")
            .bind(CHANGES_CHANNEL)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        self.refresh().await;
        Ok(())
    }
}
