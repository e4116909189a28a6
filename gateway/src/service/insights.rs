//! Numbers for the dashboard's overview, read from the audit trail: how
//! busy the gateway is, what it refused, who waits for a person ([`Figures`],
//! which the page polls), and, for `GET /api/v1/overview`, where the
//! traffic goes ([`Overview`]; the page charts that once per load instead).

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

/// The figures the dashboard's overview polls every few seconds: cheap
/// counts of the last hour (the busiest hosts are charted once per page
/// load instead, by [`super::traffic`]).
#[derive(Debug, Clone)]
pub struct Figures {
    pub requests_last_minute: i64,
    pub requests_last_hour: i64,
    pub refused_last_hour: i64,
    pub pending_approvals: i64,
}

/// The overview's figures (`GET /api/v1/overview`).
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
        let f = self.figures().await?;
        Ok(Overview {
            requests_last_minute: f.requests_last_minute,
            requests_last_hour: f.requests_last_hour,
            refused_last_hour: f.refused_last_hour,
            pending_approvals: f.pending_approvals,
            top_hosts: self.top_hosts().await?,
        })
    }

    pub async fn figures(&self) -> Result<Figures, ServiceError> {
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
        Ok(Figures {
            requests_last_minute: row.try_get("last_minute").map_err(StoreError::from)?,
            requests_last_hour: row.try_get("last_hour").map_err(StoreError::from)?,
            refused_last_hour: row.try_get("refused").map_err(StoreError::from)?,
            pending_approvals: pending,
        })
    }

    /// The busiest hosts over the last 24 hours: a scan of the day.
    async fn top_hosts(&self) -> Result<Vec<HostCount>, ServiceError> {
        let hosts = sqlx::query(
            "SELECT host, count(*) AS n FROM audit_events
             WHERE kind = 'request' AND host IS NOT NULL AND at >= now() - interval '1 day'
             GROUP BY host ORDER BY n DESC, host LIMIT $1",
        )
        .bind(TOP_HOSTS)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::from)?;
        hosts
            .iter()
            .map(|r| {
                Ok(HostCount {
                    host: r.try_get("host")?,
                    requests: r.try_get("n")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| StoreError::from(e).into())
    }
}
