//! The OpenAPI 3 document of `/api/v1`, generated from the handlers'
//! `#[utoipa::path]` attributes and the types' `ToSchema` derives, so it
//! cannot describe an API other than the one compiled in.
//!
//! Served at [`OPENAPI_PATH`] by the dashboard's TCP router only, behind the
//! same authentication as the rest of `/api/v1` (a bearer token or a
//! session): it is not secret, but nothing over TCP is public except the
//! login page.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{self, MoveRule};
use crate::service::access_requests::AccessRequest;
use crate::service::audit_search::AuditPage;
use crate::service::defaults::{AgentDefaultView, DefaultsView, SetDefault};
use crate::service::insights::{HostCount, Overview};
use crate::service::probe::{ProbeRequest, ProbeResult};
use crate::service::rule_order::Direction;
use crate::service::types::*;
use crate::store::verify::{ChainBreak, ChainReport};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airlock API",
        description = "The credential gateway's configuration API. Errors are \
                       `{\"error\", \"field\"}` with 400, 401, 403, 404, 409, 503 or 500."
    ),
    paths(
        routes::status_handler,
        routes::overview,
        routes::list_secrets,
        routes::add_secret,
        routes::rotate_secret,
        routes::delete_secret,
        routes::list_agents,
        routes::add_agent,
        routes::delete_agent,
        routes::grant,
        routes::revoke,
        routes::list_rules,
        routes::add_rule,
        routes::update_rule,
        routes::delete_rule,
        routes::move_rule,
        routes::get_defaults,
        routes::set_default,
        routes::test_rule,
        routes::audit,
        routes::search_audit,
        routes::verify_audit,
        routes::list_approvals,
        routes::approve,
        routes::deny,
        routes::list_access_requests,
        routes::allow_access_request,
        routes::dismiss_access_request,
        openapi_doc,
    ),
    components(schemas(
        ApiError, Status, DatabaseStatus, SnapshotStatus, Overview, HostCount, SecretView,
        AddSecret, RotateSecret, AgentView, AddAgent, AgentCreated, GrantResult, RuleView,
        AddRule, MoveRule, Direction, ProbeRequest, ProbeResult, AuditEvent, AuditPage,
        ApprovalView, AuditStatus, ChainReport, ChainBreak, DefaultsView, AgentDefaultView,
        SetDefault, AccessRequest,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme the `security` requirement names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(utoipa::openapi::security::Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    summary = "This OpenAPI document",
    responses(
        (status = 200, description = "OpenAPI 3 JSON"),
        (status = 401, description = "No or unknown token", body = ApiError)
    )
)]
pub(super) async fn openapi_doc() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What tests/dashboard/openapi.rs checks over HTTP, without a daemon:
    /// every schema a body refers to is defined (nested types such as an
    /// injection's OAuth2 grant included).
    #[test]
    fn every_referenced_schema_is_defined() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "undefined schema {name}");
        }
    }
}
