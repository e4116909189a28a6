//! Access requests: what agents were refused by a default of deny, each
//! allowed (the rule is made) or dismissed with one click, through the
//! same service calls as `airlock requests allow|dismiss`.

use askama::Template;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, ago, html, service_error_page, when};
use crate::dashboard::session::SessionCtx;
use crate::service::ServiceError;
use crate::service::access_requests::{
    AccessQuery, AccessRequest, AccessStatus, allowed, asks_for,
};

/// How many decided requests the page lists.
const RECENT: usize = 20;

pub struct RequestRow {
    pub id: i64,
    pub agent: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub count: i64,
    pub first: String,
    pub last: String,
    pub last_ago: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub rule: String,
    /// What Allow does: an allow rule, or a grant of which secret.
    pub asks: String,
}

impl From<&AccessRequest> for RequestRow {
    fn from(r: &AccessRequest) -> Self {
        RequestRow {
            id: r.id,
            agent: r.agent.clone(),
            method: r.method.clone(),
            host: r.host.clone(),
            path: r.path_pattern.clone(),
            count: r.count,
            first: when(&r.first_seen),
            last: when(&r.last_seen),
            last_ago: ago(&r.last_seen),
            status: r.status.as_str(),
            tone: match r.status {
                AccessStatus::Allowed => "ok",
                AccessStatus::Open => "warn",
                AccessStatus::Dismissed => "",
            },
            rule: r.rule_id.map(|id| format!("#{id}")).unwrap_or_default(),
            asks: asks_for(r),
        }
    }
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    chrome: Chrome,
    open: Vec<RequestRow>,
    decided: Vec<RequestRow>,
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    let all = match state
        .service
        .list_access_requests(AccessQuery { all: true })
        .await
    {
        Ok(all) => all,
        Err(e) => return service_error_page(&e),
    };
    let (open, mut decided): (Vec<&AccessRequest>, Vec<&AccessRequest>) =
        all.iter().partition(|r| r.status == AccessStatus::Open);
    decided.sort_by_key(|r| std::cmp::Reverse(r.decided_at));
    html(
        StatusCode::OK,
        &RequestsPage {
            chrome: Chrome::new(&state, &session, "requests"),
            open: open.into_iter().map(RequestRow::from).collect(),
            decided: decided
                .into_iter()
                .take(RECENT)
                .map(RequestRow::from)
                .collect(),
        },
    )
}

pub async fn decide(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path((id, verdict)): Path<(String, String)>,
) -> Response {
    let allow = match verdict.as_str() {
        "allow" => true,
        "dismiss" => false,
        _ => return crate::dashboard::pages::not_found().await,
    };
    let Ok(id) = id.parse::<i64>() else {
        return service_error_page(&ServiceError::Invalid {
            field: "id",
            message: format!("access request id {id:?} is not a number"),
        });
    };
    let decided = if allow {
        state.service.allow_access_request(id).await
    } else {
        state.service.dismiss_access_request(id).await
    };
    let (ok, text) = match decided {
        Ok(r) if allow => (true, format!("Allowed: {}.", allowed(&r))),
        Ok(r) => (
            true,
            format!(
                "Dismissed: agent {}'s {} {}{} is no longer listed.",
                r.agent, r.method, r.host, r.path_pattern
            ),
        ),
        Err(e) => (false, format!("Access request {id}: {e}")),
    };
    state.sessions.set_flash(&session, ok, text);
    Redirect::to(&session.at("/requests")).into_response()
}
