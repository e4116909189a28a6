//! The overview: how busy the gateway is, what it refused, who waits for
//! a person, the traffic charts (drawn once per load: their queries scan
//! a day of the trail), and the latest requests. The figures at the top
//! refresh every few seconds (`/overview/stats`, polled by `app.js`).

use askama::Template;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::audit::Row;
use super::traffic::{self, TrafficView};
use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, html, service_error_page};
use crate::dashboard::session::SessionCtx;
use crate::service::audit_search::AuditSearch;
use crate::service::insights::Figures;

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    stats: Figures,
    traffic: Result<TrafficView, String>,
    recent: Vec<Row>,
    agents: usize,
    secrets: usize,
    rules: usize,
    proxy_addr: String,
}

#[derive(Template)]
#[template(path = "overview_stats.html")]
struct StatsFragment {
    stats: Figures,
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    let stats = match state.service.figures().await {
        Ok(s) => s,
        Err(e) => return service_error_page(&e),
    };
    let traffic = traffic::load(&state, None).await;
    let recent = AuditSearch {
        per_page: Some(8),
        ..AuditSearch::default()
    };
    let recent = match state.service.search_audit(&recent).await {
        Ok(p) => p.events.iter().map(Row::from).collect(),
        Err(e) => return service_error_page(&e),
    };
    let snap = state.service.snapshot().load();
    html(
        StatusCode::OK,
        &OverviewPage {
            chrome: Chrome::new(&state, &session, "overview"),
            stats,
            traffic,
            recent,
            agents: snap.agents.len(),
            secrets: snap.secrets.len(),
            rules: snap.rules.len(),
            proxy_addr: state.status.proxy_addr.clone(),
        },
    )
}

pub async fn stats(State(state): State<DashState>) -> Response {
    match state.service.figures().await {
        Ok(stats) => html(StatusCode::OK, &StatsFragment { stats }),
        Err(e) => service_error_page(&e),
    }
}
