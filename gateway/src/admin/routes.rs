//! The API's routes: each handler parses, calls the service, and answers.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::MethodRouter;
use axum::{Json, Router};

use super::StatusInfo;
use super::failure::{ApiResult, Failure, bad_request, body, not_found, query};
use crate::service::access_requests::{AccessQuery, AccessRequest};
use crate::service::audit_search::{AuditPage, AuditSearch};
use crate::service::defaults::{DefaultsView, SetDefault};
use crate::service::insights::Overview;
use crate::service::probe::{ProbeRequest, ProbeResult};
use crate::service::rule_order::Direction;
use crate::service::types::*;
use crate::service::{BusyCgroup, Service};
use crate::store::verify::ChainReport;

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) service: Service,
    status: StatusInfo,
}

/// The `/api/v1` router over `service`, as the admin socket serves it: the
/// shared routes plus the credential routes only root may reach.
pub fn router(service: Service, status: StatusInfo) -> Router {
    super::credentials::socket_only(shared())
        .fallback(not_found)
        .with_state(AppState { service, status })
}

/// The `/api/v1` router as the dashboard serves it over TCP (behind its
/// own authentication): everything but the credential routes, so a leaked
/// API token cannot mint tokens or change the password.
///
/// Unknown `/api/v1/...` paths answer JSON 404 through a catch-all route
/// rather than a fallback, so the dashboard can merge this router beside
/// its pages (a router has one fallback: the pages' HTML 404).
pub fn tcp_router(service: Service, status: StatusInfo) -> Router {
    shared()
        .route(
            super::openapi::OPENAPI_PATH,
            axum::routing::get(super::openapi::openapi_doc),
        )
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .with_state(AppState { service, status })
}

/// Declares the shared routes once: this builds the router *and* the list
/// [`API_ROUTES`] that the OpenAPI test checks the document against, so a
/// route cannot be served without being listed (and then documented).
macro_rules! shared_routes {
    ($($path:literal => { $($method:ident: $handler:ident),+ $(,)? }),+ $(,)?) => {
        /// Every `(method, path)` the shared router serves.
        pub const API_ROUTES: &[(&str, &str)] = &[$($((stringify!($method), $path),)+)+];

        fn shared() -> Router<AppState> {
            Router::new()$(.route($path, MethodRouter::new()$(.$method($handler))+))+
        }
    };
}

shared_routes! {
    "/api/v1/status" => { get: status_handler },
    "/api/v1/overview" => { get: overview },
    "/api/v1/secrets" => { get: list_secrets, post: add_secret },
    "/api/v1/secrets/{name}" => { delete: delete_secret },
    "/api/v1/secrets/{name}/rotate" => { post: rotate_secret },
    "/api/v1/agents" => { get: list_agents, post: add_agent },
    "/api/v1/agents/{name}" => { delete: delete_agent },
    "/api/v1/agents/{name}/grants/{secret}" => { put: grant, delete: revoke },
    "/api/v1/rules" => { get: list_rules, post: add_rule },
    "/api/v1/rules/test" => { post: test_rule },
    "/api/v1/rules/{id}" => { put: update_rule, delete: delete_rule },
    "/api/v1/rules/{id}/move" => { post: move_rule },
    "/api/v1/defaults" => { get: get_defaults, put: set_default },
    "/api/v1/audit" => { get: audit },
    "/api/v1/audit/search" => { get: search_audit },
    "/api/v1/audit/verify" => { get: verify_audit },
    "/api/v1/approvals" => { get: list_approvals },
    "/api/v1/approvals/{id}/approve" => { post: approve },
    "/api/v1/approvals/{id}/deny" => { post: deny },
    "/api/v1/requests" => { get: list_access_requests },
    "/api/v1/requests/{id}/allow" => { post: allow_access_request },
    "/api/v1/requests/{id}/dismiss" => { post: dismiss_access_request },
}

#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "status",
    summary = "The daemon's state",
    responses((status = 200, body = Status), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn status_handler(State(s): State<AppState>) -> ApiResult<Json<Status>> {
    Ok(Json(s.status.report(&s.service).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/secrets",
    tag = "secrets",
    summary = "Every secret, without values",
    responses((status = 200, body = Vec<SecretView>), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn list_secrets(State(s): State<AppState>) -> ApiResult<Json<Vec<SecretView>>> {
    Ok(Json(s.service.list_secrets().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/secrets",
    tag = "secrets",
    summary = "Adds a secret",
    request_body = AddSecret,
    responses((status = 201, body = SecretView), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 409, description = "Already exists", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn add_secret(
    State(s): State<AppState>,
    req: Result<Json<AddSecret>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<SecretView>)> {
    let view = s.service.add_secret(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    post,
    path = "/api/v1/secrets/{name}/rotate",
    tag = "secrets",
    summary = "Replaces a secret's value",
    params(("name" = String, Path, description = "The secret's name")),
    request_body = RotateSecret,
    responses((status = 200, body = SecretView), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn rotate_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Result<Json<RotateSecret>, JsonRejection>,
) -> ApiResult<Json<SecretView>> {
    Ok(Json(s.service.rotate_secret(&name, body(req)?).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/secrets/{name}",
    tag = "secrets",
    summary = "Deletes a secret",
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn delete_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_secret(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    summary = "Every agent",
    responses((status = 200, body = Vec<AgentView>), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn list_agents(State(s): State<AppState>) -> ApiResult<Json<Vec<AgentView>>> {
    Ok(Json(s.service.list_agents().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/agents",
    tag = "agents",
    summary = "Adds an agent; its token is in this answer only",
    request_body = AddAgent,
    responses((status = 201, body = AgentCreated), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 409, description = "Already exists", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn add_agent(
    State(s): State<AppState>,
    req: Result<Json<AddAgent>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<AgentCreated>)> {
    let created = s.service.add_agent(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/agents/{name}",
    tag = "agents",
    summary = "Deletes an agent",
    params(("name" = String, Path, description = "The agent's name"), RemoveAgent),
    responses((status = 204, description = "Deleted; the processes of a cgroup Airlock made were killed"), (status = 404, description = "No such item", body = ApiError), (status = 409, description = "Processes are still in its --cgroup cgroup (pass force=true), or those of Airlock's cgroup cannot be stopped", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn delete_agent(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<RemoveAgent>, QueryRejection>,
) -> ApiResult<StatusCode> {
    let busy = if query(q)?.force {
        BusyCgroup::Keep
    } else {
        BusyCgroup::Refuse
    };
    s.service.delete_agent(&name, busy).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/api/v1/agents/{name}/grants/{secret}",
    tag = "agents",
    summary = "Lets an agent use a secret",
    params(("name" = String, Path, description = "The agent's name"), ("secret" = String, Path, description = "The secret's name")),
    responses((status = 200, body = GrantResult), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn grant(
    State(s): State<AppState>,
    Path((agent, secret)): Path<(String, String)>,
) -> ApiResult<Json<GrantResult>> {
    Ok(Json(s.service.grant(&agent, &secret).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/agents/{name}/grants/{secret}",
    tag = "agents",
    summary = "Takes a secret from an agent",
    params(("name" = String, Path, description = "The agent's name"), ("secret" = String, Path, description = "The secret's name")),
    responses((status = 204, description = "Revoked"), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn revoke(
    State(s): State<AppState>,
    Path((agent, secret)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.service.revoke(&agent, &secret).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/rules",
    tag = "rules",
    summary = "Every rule, in order",
    responses((status = 200, body = Vec<RuleView>), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn list_rules(State(s): State<AppState>) -> ApiResult<Json<Vec<RuleView>>> {
    Ok(Json(s.service.list_rules().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/rules",
    tag = "rules",
    summary = "Appends a rule",
    request_body = AddRule,
    responses((status = 201, body = RuleView), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn add_rule(
    State(s): State<AppState>,
    req: Result<Json<AddRule>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let rule = s.service.add_rule(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[utoipa::path(
    put,
    path = "/api/v1/rules/{id}",
    tag = "rules",
    summary = "Changes a rule in place (its position stays)",
    params(("id" = i64, Path, description = "The rule's id")),
    request_body = AddRule,
    responses((status = 200, body = RuleView), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn update_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<AddRule>, JsonRejection>,
) -> ApiResult<Json<RuleView>> {
    let id = rule_id(&id)?;
    Ok(Json(s.service.update_rule(id, body(req)?).await?))
}

fn rule_id(id: &str) -> Result<i64, Failure> {
    id.parse()
        .map_err(|_| bad_request(format!("rule id {id:?} is not a number")))
}

#[utoipa::path(
    delete,
    path = "/api/v1/rules/{id}",
    tag = "rules",
    summary = "Deletes a rule",
    params(("id" = i64, Path, description = "The rule's id")),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn delete_rule(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.service.delete_rule(rule_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MoveRule {
    direction: Direction,
}

#[utoipa::path(
    get,
    path = "/api/v1/defaults",
    tag = "rules",
    summary = "The default (allow or deny), globally and per agent, as in effect",
    responses((status = 200, body = DefaultsView), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn get_defaults(State(s): State<AppState>) -> Json<DefaultsView> {
    Json(s.service.defaults())
}

#[utoipa::path(
    put,
    path = "/api/v1/defaults",
    tag = "rules",
    summary = "Sets the global default, or an agent's own (`inherit`: follow the global one)",
    request_body = SetDefault,
    responses((status = 200, body = DefaultsView), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such agent", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn set_default(
    State(s): State<AppState>,
    req: Result<Json<SetDefault>, JsonRejection>,
) -> ApiResult<Json<DefaultsView>> {
    Ok(Json(s.service.set_default(body(req)?).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/rules/{id}/move",
    tag = "rules",
    summary = "Swaps a rule with its neighbour",
    params(("id" = i64, Path, description = "The rule's id")),
    request_body = MoveRule,
    responses((status = 204, description = "Moved"), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn move_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<MoveRule>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let id = rule_id(&id)?;
    s.service.move_rule(id, body(req)?.direction).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/rules/test",
    tag = "rules",
    summary = "Which rule and secrets a request would meet",
    request_body = ProbeRequest,
    responses((status = 200, body = ProbeResult), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn test_rule(
    State(s): State<AppState>,
    req: Result<Json<ProbeRequest>, JsonRejection>,
) -> ApiResult<Json<ProbeResult>> {
    Ok(Json(s.service.probe(&body(req)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/overview",
    tag = "status",
    summary = "The overview's figures",
    responses((status = 200, body = Overview), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn overview(State(s): State<AppState>) -> ApiResult<Json<Overview>> {
    Ok(Json(s.service.overview().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/search",
    tag = "audit",
    summary = "A filtered, paged search of the audit trail",
    params(AuditSearch),
    responses((status = 200, body = AuditPage), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn search_audit(
    State(s): State<AppState>,
    q: Result<Query<AuditSearch>, QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    Ok(Json(s.service.search_audit(&query(q)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    summary = "Check the audit trail's hash chain; names the first row that breaks it",
    responses((status = 200, body = ChainReport), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn verify_audit(State(s): State<AppState>) -> ApiResult<Json<ChainReport>> {
    Ok(Json(s.service.verify_audit().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    summary = "The latest audit events",
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditEvent>), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn audit(
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEvent>>> {
    Ok(Json(s.service.audit(query(q)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/approvals",
    tag = "approvals",
    summary = "Held requests",
    params(ApprovalQuery),
    responses((status = 200, body = Vec<ApprovalView>), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn list_approvals(
    State(s): State<AppState>,
    q: Result<Query<ApprovalQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<ApprovalView>>> {
    Ok(Json(s.service.list_approvals(query(q)?).await?))
}

fn approval_id(id: &str) -> Result<i64, Failure> {
    id.parse()
        .map_err(|_| bad_request(format!("approval id {id:?} is not a number")))
}

#[utoipa::path(
    post,
    path = "/api/v1/approvals/{id}/approve",
    tag = "approvals",
    summary = "Lets a held request through",
    params(("id" = i64, Path, description = "The approval's id")),
    responses((status = 200, body = ApprovalView), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn approve(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApprovalView>> {
    Ok(Json(
        s.service.decide_approval(approval_id(&id)?, true).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/approvals/{id}/deny",
    tag = "approvals",
    summary = "Refuses a held request",
    params(("id" = i64, Path, description = "The approval's id")),
    responses((status = 200, body = ApprovalView), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn deny(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ApprovalView>> {
    Ok(Json(
        s.service.decide_approval(approval_id(&id)?, false).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/requests",
    tag = "requests",
    summary = "Access requests: what agents were refused by a default of deny (open ones, or all)",
    params(AccessQuery),
    responses((status = 200, body = Vec<AccessRequest>), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn list_access_requests(
    State(s): State<AppState>,
    q: Result<Query<AccessQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<AccessRequest>>> {
    Ok(Json(s.service.list_access_requests(query(q)?).await?))
}

fn access_request_id(id: &str) -> Result<i64, Failure> {
    id.parse()
        .map_err(|_| bad_request(format!("access request id {id:?} is not a number")))
}

#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/allow",
    tag = "requests",
    summary = "Allows an access request: adds the allow rule (its agent, method, host and path pattern)",
    params(("id" = i64, Path, description = "The access request's id")),
    responses((status = 200, body = AccessRequest), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 409, description = "Already allowed", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn allow_access_request(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AccessRequest>> {
    Ok(Json(
        s.service
            .allow_access_request(access_request_id(&id)?)
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/dismiss",
    tag = "requests",
    summary = "Dismisses an access request: no longer listed, however often the agent is refused",
    params(("id" = i64, Path, description = "The access request's id")),
    responses((status = 200, body = AccessRequest), (status = 400, description = "Bad input: `field` names it", body = ApiError), (status = 404, description = "No such item", body = ApiError), (status = 409, description = "Already allowed", body = ApiError), (status = 401, description = "No or unknown token", body = ApiError))
)]
async fn dismiss_access_request(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AccessRequest>> {
    Ok(Json(
        s.service
            .dismiss_access_request(access_request_id(&id)?)
            .await?,
    ))
}
