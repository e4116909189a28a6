//! Routes that set the dashboard's credentials. Served on the root-only
//! admin socket and nowhere else: whoever holds an API token must not be
//! able to mint another or change the password.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};

use super::failure::{ApiResult, body};
use super::routes::AppState;
use crate::service::credentials::{ApiTokenCreated, ApiTokenView, CreateApiToken, SetPassword};

/// Adds the credential routes to `router`.
pub(super) fn socket_only(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/v1/admin/password", put(set_password))
        .route("/api/v1/admin/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/admin/tokens/{name}", delete(delete_token))
}

async fn set_password(
    State(s): State<AppState>,
    req: Result<Json<SetPassword>, JsonRejection>,
) -> ApiResult<StatusCode> {
    s.service.set_admin_password(body(req)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tokens(State(s): State<AppState>) -> ApiResult<Json<Vec<ApiTokenView>>> {
    Ok(Json(s.service.list_api_tokens().await?))
}

async fn create_token(
    State(s): State<AppState>,
    req: Result<Json<CreateApiToken>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ApiTokenCreated>)> {
    let created = s.service.create_api_token(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn delete_token(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_api_token(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
