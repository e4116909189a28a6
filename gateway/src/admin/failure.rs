//! The API's error answers: every failure is a status and
//! `{error, field}` JSON, whether it came from the service, a body or
//! query that did not parse, or a path that names no endpoint.

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::service::ServiceError;
use crate::service::types::ApiError;

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

pub(super) fn bad_request(message: String) -> Failure {
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

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    q.map(|Query(v)| v)
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))
}

pub(super) type ApiResult<T> = Result<T, Failure>;

pub(super) async fn not_found() -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        ApiError {
            error: "no such API endpoint".into(),
            field: None,
        },
    )
}
