//! One agent's page: what it is (its cgroup, its grants) and its own
//! traffic, charted the way the overview charts everyone's.

use askama::Template;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::traffic::{self, TrafficView};
use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, error_page, html, service_error_page, when};
use crate::dashboard::session::SessionCtx;

#[derive(Template)]
#[template(path = "agent.html")]
struct AgentPage {
    chrome: Chrome,
    name: String,
    cgroup: String,
    grants: Vec<String>,
    created: String,
    traffic: Result<TrafficView, String>,
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(name): Path<String>,
) -> Response {
    let agents = match state.service.list_agents().await {
        Ok(a) => a,
        Err(e) => return service_error_page(&e),
    };
    let Some(agent) = agents.into_iter().find(|a| a.name == name) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "There is no such agent: it may have been deleted. The Agents page lists them all.",
        );
    };
    let traffic = traffic::load(&state, Some(&agent.name)).await;
    html(
        StatusCode::OK,
        &AgentPage {
            chrome: Chrome::new(&state, &session, "agents"),
            created: when(&agent.created_at),
            name: agent.name,
            cgroup: agent.cgroup,
            grants: agent.grants,
            traffic,
        },
    )
}
