//! Access requests (docs/policy.md, "Access requests"): listed, allowed
//! (the allow rule is made and in effect here before the call returns,
//! elsewhere through the rules notification) or dismissed, the same way
//! from the CLI, the API and the dashboard.

use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::{Service, ServiceError};
pub use crate::store::access_requests::{AccessRequest, AccessStatus};

/// Query parameters of `GET /api/v1/requests`.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessQuery {
    /// Also allowed and dismissed ones, not only open.
    #[serde(default)]
    pub all: bool,
}

impl Service {
    pub async fn list_access_requests(
        &self,
        q: AccessQuery,
    ) -> Result<Vec<AccessRequest>, ServiceError> {
        Ok(self.store.list_access_requests(q.all).await?)
    }

    /// Allows request `id` with an allow rule for its agent, method, host
    /// and suggested paths; the next such request goes through.
    pub async fn allow_access_request(&self, id: i64) -> Result<AccessRequest, ServiceError> {
        let req = self.store.allow_access_request(id).await?;
        self.refresh().await;
        Ok(req)
    }

    pub async fn dismiss_access_request(&self, id: i64) -> Result<AccessRequest, ServiceError> {
        Ok(self.store.dismiss_access_request(id).await?)
    }
}
