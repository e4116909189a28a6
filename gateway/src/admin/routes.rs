//! The API's routes: each handler parses, calls the service, and answers.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

use super::StatusInfo;
use crate::service::audit_search::{AuditPage, AuditSearch};
use crate::service::insights::Overview;
use crate::service::probe::{ProbeRequest, ProbeResult};
use crate::service::rule_order::Direction;
use crate::service::types::*;
use crate::service::{Service, ServiceError};

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
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .with_state(AppState { service, status })
}

fn shared() -> Router<AppState> {
    Router::new()
        .route("/api/v1/status", get(status_handler))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/secrets", get(list_secrets).post(add_secret))
        .route("/api/v1/secrets/{name}", delete(delete_secret))
        .route("/api/v1/secrets/{name}/rotate", post(rotate_secret))
        .route("/api/v1/agents", get(list_agents).post(add_agent))
        .route("/api/v1/agents/{name}", delete(delete_agent))
        .route(
            "/api/v1/agents/{name}/grants/{secret}",
            put(grant).delete(revoke),
        )
        .route("/api/v1/rules", get(list_rules).post(add_rule))
        .route("/api/v1/rules/test", post(test_rule))
        .route("/api/v1/rules/{id}", delete(delete_rule))
        .route("/api/v1/rules/{id}/move", post(move_rule))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/search", get(search_audit))
        .route("/api/v1/approvals", get(list_approvals))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/deny", post(deny))
}

/// An error answer: a status and `{error, field}`.
pub(super) struct Failure(StatusCode, ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        let (status, field) = match &e {
            ServiceError::Invalid { field, .. } => (StatusCode::BAD_REQUEST, Some(*field)),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, None),
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "admin request failed");
        }
        Failure(
            status,
            ApiError {
                error: e.to_string(),
                field: field.map(str::to_owned),
            },
        )
    }
}

fn bad_request(message: String) -> Failure {
    Failure(
        StatusCode::BAD_REQUEST,
        ApiError {
            error: message,
            field: None,
        },
    )
}

/// The body, or a 400 that says what is wrong with it (serde's message
/// names the field and never echoes values).
pub(super) fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, Failure> {
    json.map(|Json(v)| v)
        .map_err(|e| bad_request(format!("invalid request body: {}", e.body_text())))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    q.map(|Query(v)| v)
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))
}

pub(super) type ApiResult<T> = Result<T, Failure>;

async fn not_found() -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        ApiError {
            error: "no such API endpoint".into(),
            field: None,
        },
    )
}

async fn status_handler(State(s): State<AppState>) -> ApiResult<Json<Status>> {
    Ok(Json(s.status.report(&s.service).await?))
}

async fn list_secrets(State(s): State<AppState>) -> ApiResult<Json<Vec<SecretView>>> {
    Ok(Json(s.service.list_secrets().await?))
}

async fn add_secret(
    State(s): State<AppState>,
    req: Result<Json<AddSecret>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<SecretView>)> {
    let view = s.service.add_secret(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn rotate_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Result<Json<RotateSecret>, JsonRejection>,
) -> ApiResult<Json<SecretView>> {
    Ok(Json(s.service.rotate_secret(&name, body(req)?).await?))
}

async fn delete_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_secret(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_agents(State(s): State<AppState>) -> ApiResult<Json<Vec<AgentView>>> {
    Ok(Json(s.service.list_agents().await?))
}

async fn add_agent(
    State(s): State<AppState>,
    req: Result<Json<AddAgent>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<AgentCreated>)> {
    let created = s.service.add_agent(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn delete_agent(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_agent(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant(
    State(s): State<AppState>,
    Path((agent, secret)): Path<(String, String)>,
) -> ApiResult<Json<GrantResult>> {
    Ok(Json(s.service.grant(&agent, &secret).await?))
}

async fn revoke(
    State(s): State<AppState>,
    Path((agent, secret)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.service.revoke(&agent, &secret).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_rules(State(s): State<AppState>) -> ApiResult<Json<Vec<RuleView>>> {
    Ok(Json(s.service.list_rules().await?))
}

async fn add_rule(
    State(s): State<AppState>,
    req: Result<Json<AddRule>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let rule = s.service.add_rule(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

fn rule_id(id: &str) -> Result<i64, Failure> {
    id.parse()
        .map_err(|_| bad_request(format!("rule id {id:?} is not a number")))
}

async fn delete_rule(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.service.delete_rule(rule_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRule {
    direction: Direction,
}

async fn move_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<MoveRule>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let id = rule_id(&id)?;
    s.service.move_rule(id, body(req)?.direction).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_rule(
    State(s): State<AppState>,
    req: Result<Json<ProbeRequest>, JsonRejection>,
) -> ApiResult<Json<ProbeResult>> {
    Ok(Json(s.service.probe(&body(req)?).await?))
}

async fn overview(State(s): State<AppState>) -> ApiResult<Json<Overview>> {
    Ok(Json(s.service.overview().await?))
}

async fn search_audit(
    State(s): State<AppState>,
    q: Result<Query<AuditSearch>, QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    Ok(Json(s.service.search_audit(&query(q)?).await?))
}

async fn audit(
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEvent>>> {
    Ok(Json(s.service.audit(query(q)?).await?))
}

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

async fn approve(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApprovalView>> {
    Ok(Json(
        s.service.decide_approval(approval_id(&id)?, true).await?,
    ))
}

async fn deny(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ApprovalView>> {
    Ok(Json(
        s.service.decide_approval(approval_id(&id)?, false).await?,
    ))
}
