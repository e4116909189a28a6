//! Logging in and out. The login form has no session yet, so its CSRF
//! token is a double-submit cookie: the form's hidden field must equal the
//! `airlock_login` cookie, which another site can neither read nor set.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::dashboard::DashState;
use crate::dashboard::render::html;
use crate::dashboard::session::{
    LOGIN_COOKIE, SESSION_COOKIE, SESSION_LIFETIME, SessionCtx, cookie, random_token, same_token,
    set_cookie,
};
use crate::service::types::SecretValue;

/// How long the login form may sit open.
const LOGIN_FORM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: Option<String>,
}

fn login_page(status: StatusCode, error: Option<String>) -> Response {
    let csrf = random_token();
    let mut resp = html(status, &LoginPage { csrf: &csrf, error });
    if let Ok(v) = set_cookie(LOGIN_COOKIE, &csrf, LOGIN_FORM_LIFETIME).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn form(State(state): State<DashState>, headers: HeaderMap) -> Response {
    let logged_in = cookie(&headers, SESSION_COOKIE).and_then(|c| state.sessions.get(c));
    if logged_in.is_some() {
        return Redirect::to("/").into_response();
    }
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: SecretValue,
}

pub async fn submit(
    State(state): State<DashState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_token(&form.csrf, expected) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("The login form expired. Please try again.".into()),
        );
    }
    if let Err(wait) = state.logins.check(peer.ip()) {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed logins from your address. Try again in {} seconds.",
                wait.as_secs().max(1)
            )),
        );
    }
    match state.service.verify_admin_password(form.password).await {
        Ok(true) => {}
        Ok(false) => {
            state.logins.record_failure(peer.ip());
            tracing::warn!(client = %peer.ip(), "dashboard login failed: wrong password");
            return login_page(StatusCode::UNAUTHORIZED, Some("Wrong password.".into()));
        }
        Err(e) => {
            tracing::error!(error = %e, "checking the dashboard password failed");
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The password cannot be checked right now (database unavailable).".into()),
            );
        }
    }
    let session = state.sessions.create();
    tracing::info!(client = %peer.ip(), "dashboard login");
    let mut resp = Redirect::to("/").into_response();
    for c in [
        set_cookie(SESSION_COOKIE, &session, SESSION_LIFETIME),
        set_cookie(LOGIN_COOKIE, "", std::time::Duration::ZERO),
    ] {
        if let Ok(v) = c.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

pub async fn logout(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    state.sessions.end(&session);
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
