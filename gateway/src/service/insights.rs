//! Numbers for the dashboard's overview, read from the audit trail: how
//! busy the gateway is, what it refused, who waits for a person, and where
//! the traffic goes.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Service, ServiceError};
use crate::audit::Decision;
use crate::store::StoreError;

/// How many top hosts the overview lists.
const TOP_HOSTS: i64 = 8;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostCount {
    pub host: String,
    pub requests: i64,
}

/// The overview's figures.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overview {
    /// Requests in the last 60 seconds.
    pub requests_last_minute: i64,
    /// Requests in the last hour.
    pub requests_last_hour: i64,
    /// Refused requests (see [`Decision::is_refusal`]) in the last hour.
    pub refused_last_hour: i64,
    /// Requests held and waiting for a person now.
    pub pending_approvals: i64,
    /// The busiest hosts over the last 24 hours.
    pub top_hosts: Vec<HostCount>,
}

impl Service {
    pub async fn overview(&self) -> Result<Overview, ServiceError> {
        let pool = self.store.pool();
        let refused = Decision::words(Decision::is_refusal);
        let row = sqlx::query(
            "SELECT
                 count(*) FILTER (WHERE at >= now() - interval '1 minute') AS last_minute,
                 count(*) AS last_hour,
                 count(*) FILTER (WHERE decision = ANY($1)) AS refused
             FROM audit_events
             WHERE kind = 'request' AND at >= now() - interval '1 hour'",
        )
        .bind(&refused)
        .fetch_one(pool)
        .await
        .map_err(StoreError::from)?;
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM approvals WHERE status = 'pending'")
                .fetch_one(pool)
                .await
                .map_err(StoreError::from)?;
        let hosts = sqlx::query(
            "SELECT host, count(*) AS n FROM audit_events
             WHERE kind = 'request' AND host IS NOT NULL AND at >= now() - interval '1 day'
             GROUP BY host ORDER BY n DESC, host LIMIT $1",
        )
        .bind(TOP_HOSTS)
        .fetch_all(pool)
        .await
        .map_err(StoreError::from)?;
        let top_hosts = hosts
            .iter()
            .map(|r| {
                Ok(HostCount {
                    host: r.try_get("host")?,
                    requests: r.try_get("n")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)?;
        Ok(Overview {
            requests_last_minute: row.try_get("last_minute").map_err(StoreError::from)?,
            requests_last_hour: row.try_get("last_hour").map_err(StoreError::from)?,
            refused_last_hour: row.try_get("refused").map_err(StoreError::from)?,
            pending_approvals: pending,
            top_hosts,
        })
    }
}
