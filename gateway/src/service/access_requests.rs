//! Access requests (docs/policy.md, "Access requests"): listed, allowed
//! (the allow rule is made and in effect here before the call returns,
//! elsewhere through the rules notification) or dismissed, the same way
//! from the CLI, the API and the dashboard.

use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::{Service, ServiceError};
pub use crate::store::access_requests::{AccessKind, AccessRequest, AccessStatus};

/// Query parameters of `GET /api/v1/requests`.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessQuery {
    /// Also allowed and dismissed ones, not only open.
    #[serde(default)]
    pub all: bool,
}

/// What allowing `r` does, in words: for the CLI and the dashboard.
pub fn asks_for(r: &AccessRequest) -> String {
    match (r.kind, &r.secret) {
        (AccessKind::Grant, Some(secret)) => format!("grant of secret {secret}"),
        _ => "allow rule".to_owned(),
    }
}

/// What allowing `r` did, in words.
pub fn allowed(r: &AccessRequest) -> String {
    match (r.kind, &r.secret, r.rule_id) {
        (AccessKind::Grant, Some(secret), _) => {
            format!("agent {} is granted secret {secret}", r.agent)
        }
        (_, _, Some(rule)) => format!(
            "rule {rule} lets agent {} {} {}{}",
            r.agent, r.method, r.host, r.path_pattern
        ),
        _ => format!(
            "agent {} may {} {}{}",
            r.agent, r.method, r.host, r.path_pattern
        ),
    }
}

impl Service {
    pub async fn list_access_requests(
        &self,
        q: AccessQuery,
    ) -> Result<Vec<AccessRequest>, ServiceError> {
        Ok(self.store.list_access_requests(q.all).await?)
    }

    /// Allows request `id`: an allow rule for its agent, method, host and
    /// suggested paths, or the grant of its secret; the next such request
    /// goes through.
    pub async fn allow_access_request(&self, id: i64) -> Result<AccessRequest, ServiceError> {
        let req = self.store.allow_access_request(id).await?;
        self.refresh().await;
        Ok(req)
    }

    pub async fn dismiss_access_request(&self, id: i64) -> Result<AccessRequest, ServiceError> {
        Ok(self.store.dismiss_access_request(id).await?)
    }
}
