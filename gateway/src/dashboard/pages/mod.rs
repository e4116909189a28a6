//! One module per page. [`public`] is reachable without a session (the
//! login page); everything in [`protected`] runs behind
//! [`super::guard::require_session`].

mod agent;
mod agents;
mod approvals;
mod approvals_live;
mod audit;
mod connect;
mod defaults;
mod login;
mod overview;
mod requests;
mod rules;
mod secrets;
mod traffic;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use super::DashState;
use super::render::error_page;

pub fn public() -> Router<DashState> {
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/login/oidc", get(login::oidc_start))
        .route("/login/oidc/callback", get(login::oidc_callback))
        .route(
            crate::dashboard::connect::CALLBACK_PATH,
            get(connect::callback),
        )
}

pub fn protected() -> Router<DashState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/overview/stats", get(overview::stats))
        .route("/logout", post(login::logout))
        .route("/agents", get(agents::page).post(agents::add))
        .route("/agents/{name}", get(agent::page))
        .route("/agents/{name}/delete", post(agents::delete))
        .route("/agents/{name}/grant", post(agents::grant))
        .route("/agents/{name}/revoke/{secret}", post(agents::revoke))
        .route("/secrets", get(secrets::page).post(secrets::add))
        .route("/secrets/{name}/rotate", post(secrets::rotate))
        .route("/secrets/{name}/connect", post(connect::start))
        .route("/secrets/{name}/delete", post(secrets::delete))
        .route("/rules", get(rules::page).post(rules::add))
        .route("/rules/test", post(rules::test))
        .route("/rules/default", post(defaults::set))
        .route("/rules/{id}/edit", get(rules::edit_form).post(rules::edit))
        .route("/rules/{id}/move", post(rules::move_rule))
        .route("/rules/{id}/delete", post(rules::delete))
        .route("/approvals", get(approvals::page))
        .route("/approvals/events", get(approvals_live::events))
        .route("/approvals/{id}/{verdict}", post(approvals::decide))
        .route("/requests", get(requests::page))
        .route("/requests/{id}/{verdict}", post(requests::decide))
        .route("/audit", get(audit::page))
        .route("/audit/export.csv", get(audit::export_csv))
        .route("/audit/export.json", get(audit::export_json))
}

pub async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "There is no such page in the dashboard.",
    )
}
