//! Approvals: the requests held for a person, pushed to the browser as
//! they change ([`super::approvals_live`]), each approved or denied with
//! one click while the agent waits; and the latest decisions. Without
//! JavaScript the page still works: a refresh link reloads it.

use askama::Template;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, ago, html, service_error_page, when};
use crate::dashboard::session::SessionCtx;
use crate::service::ServiceError;
use crate::service::types::{ApprovalQuery, ApprovalView};
use crate::store::approvals::ApprovalStatus;

/// How many decided approvals the page lists.
const RECENT: usize = 20;

pub struct ApprovalRow {
    pub id: i64,
    pub agent: String,
    pub method: String,
    pub host: String,
    pub path: String,
    /// What an MCP call runs (tools, arguments with secrets redacted).
    pub detail: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub requested: String,
    pub waiting: String,
    pub rule: String,
}

impl From<&ApprovalView> for ApprovalRow {
    fn from(a: &ApprovalView) -> Self {
        ApprovalRow {
            id: a.id,
            agent: a.agent.clone(),
            method: a.method.clone(),
            host: a.host.clone(),
            path: a.path.clone(),
            detail: a.detail.clone().unwrap_or_default(),
            tone: match a.status {
                ApprovalStatus::Approved => "ok",
                ApprovalStatus::Pending => "warn",
                ApprovalStatus::Denied | ApprovalStatus::Expired => "bad",
            },
            status: a.status.as_str(),
            requested: when(&a.requested_at),
            waiting: ago(&a.requested_at),
            rule: a.rule_id.map(|r| format!("#{r}")).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    chrome: Chrome,
    pending: Vec<ApprovalRow>,
    recent: Vec<ApprovalRow>,
}

#[derive(Template)]
#[template(path = "approvals_queue.html")]
struct QueueFragment {
    csrf: String,
    pending: Vec<ApprovalRow>,
}

async fn pending(state: &DashState) -> Result<Vec<ApprovalRow>, ServiceError> {
    Ok(state
        .service
        .list_approvals(ApprovalQuery { all: false })
        .await?
        .iter()
        .map(ApprovalRow::from)
        .collect())
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    let (pending, all) = match (
        pending(&state).await,
        state
            .service
            .list_approvals(ApprovalQuery { all: true })
            .await,
    ) {
        (Ok(p), Ok(a)) => (p, a),
        (Err(e), _) | (_, Err(e)) => return service_error_page(&e),
    };
    let recent = all
        .iter()
        .rev()
        .filter(|a| a.status != ApprovalStatus::Pending)
        .take(RECENT)
        .map(ApprovalRow::from)
        .collect();
    html(
        StatusCode::OK,
        &ApprovalsPage {
            chrome: Chrome::new(&state, &session, "approvals"),
            pending,
            recent,
        },
    )
}

/// Why the live queue could not be rendered this time (the stream keeps
/// going and the browser keeps the last queue it showed).
#[derive(Debug, thiserror::Error)]
pub(super) enum QueueError {
    #[error("cannot list the pending approvals: {0}")]
    List(#[from] ServiceError),
    #[error("cannot render the queue: {0}")]
    Render(#[from] askama::Error),
}

/// The queue's HTML fragment, as the live stream sends it.
pub(super) async fn queue_html(state: &DashState, csrf: &str) -> Result<String, QueueError> {
    let pending = pending(state).await?;
    Ok(QueueFragment {
        csrf: csrf.to_owned(),
        pending,
    }
    .render()?)
}

pub async fn decide(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path((id, verdict)): Path<(String, String)>,
) -> Response {
    let approve = match verdict.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return crate::dashboard::pages::not_found().await,
    };
    let Ok(id) = id.parse::<i64>() else {
        return service_error_page(&ServiceError::Invalid {
            field: "id",
            message: format!("approval id {id:?} is not a number"),
        });
    };
    let (ok, text) = match state.service.decide_approval(id, approve).await {
        Ok(a) => (
            true,
            format!(
                "Request {id} ({} {}{}) {}.",
                a.method, a.host, a.path, a.status
            ),
        ),
        Err(e) => (false, format!("Request {id}: {e}")),
    };
    state.sessions.set_flash(&session, ok, text);
    Redirect::to(&session.at("/approvals")).into_response()
}
