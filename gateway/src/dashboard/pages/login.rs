//! Logging in and out. The login form has no session yet, so its CSRF
//! token is a double-submit cookie: the form's hidden field must equal the
//! `airlock_login` cookie, which another site can neither read nor set.

use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use axum::Form;

use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::dashboard::DashState;
use crate::dashboard::guard::session_of;
use crate::dashboard::oidc::{OIDC_COOKIE, OidcError, PENDING_LIFETIME};
use crate::dashboard::render::html;
use crate::dashboard::session::{
    LOGIN_COOKIE, SessionCtx, cookie, random_token, same_token, session_cookie, set_cookie,
};
use crate::service::types::SecretValue;

/// How long the login form may sit open.
const LOGIN_FORM_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: Option<String>,
    /// Shows "Sign in with <host>" when OpenID Connect is configured.
    oidc_host: Option<String>,
}

fn login_page(state: &DashState, status: StatusCode, error: Option<String>) -> Response {
    let csrf = random_token();
    let oidc_host = state.oidc.as_ref().map(|o| o.issuer_host());
    let mut resp = html(
        status,
        &LoginPage {
            csrf: &csrf,
            error,
            oidc_host,
        },
    );
    if let Ok(v) = set_cookie(LOGIN_COOKIE, &csrf, LOGIN_FORM_LIFETIME).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The login form. Only under a session's own address (`/s/KEY/login`)
/// does the browser send the session cookie, so only there is "already
/// logged in" known.
pub async fn form(State(state): State<DashState>, req: axum::extract::Request) -> Response {
    if let Some(session) = session_of(&state, &req) {
        return Redirect::to(&session.at("/")).into_response();
    }
    login_page(&state, StatusCode::OK, None)
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
            &state,
            StatusCode::FORBIDDEN,
            Some("The login form expired. Please try again.".into()),
        );
    }
    if let Err(wait) = state.logins.check(peer.ip()) {
        return too_many_logins(&state, wait);
    }
    match state.service.verify_admin_password(form.password).await {
        Ok(true) => {}
        Ok(false) => {
            state.logins.record_failure(peer.ip());
            tracing::warn!(client = %peer.ip(), "dashboard login failed: wrong password");
            return login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                Some("Wrong password.".into()),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "checking the dashboard password failed");
            return login_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The password cannot be checked right now (database unavailable).".into()),
            );
        }
    }
    let session = state.sessions.create();
    tracing::info!(client = %peer.ip(), "dashboard login");
    let mut resp = Redirect::to(&format!("{}/", session.base)).into_response();
    for c in [
        session.set_cookie(),
        set_cookie(LOGIN_COOKIE, "", Duration::ZERO),
    ] {
        if let Ok(v) = c.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// "Sign in with ...": off to the issuer.
pub async fn oidc_start(State(state): State<DashState>) -> Response {
    let Some(oidc) = state.oidc.clone() else {
        return pages_not_found();
    };
    match oidc.start().await {
        Ok((url, login_state)) => {
            let mut resp = Redirect::to(&url).into_response();
            if let Ok(v) = oidc_cookie(&login_state, PENDING_LIFETIME).parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            tracing::error!(issuer = oidc.issuer(), error = %e, "OpenID Connect login cannot start");
            login_page(&state, StatusCode::BAD_GATEWAY, Some(e.to_string()))
        }
    }
}

#[derive(Deserialize)]
pub struct OidcCallback {
    #[serde(default)]
    state: String,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The issuer sends the browser back here with a code (or an error).
pub async fn oidc_callback(
    State(state): State<DashState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<OidcCallback>,
) -> Response {
    let Some(oidc) = state.oidc.clone() else {
        return pages_not_found();
    };
    if let Err(wait) = state.logins.check(peer.ip()) {
        return too_many_logins(&state, wait);
    }
    let result = match (&q.code, &q.error) {
        (Some(code), None) => {
            oidc.finish(&q.state, cookie(&headers, OIDC_COOKIE), code)
                .await
        }
        _ => Err(OidcError::Issuer(
            q.error_description
                .clone()
                .or(q.error.clone())
                .unwrap_or_else(|| "no authorization code".into()),
        )),
    };
    let mut resp = match result {
        Ok(email) => {
            audit(
                &state,
                "dashboard.login_oidc",
                &format!("email={email} client={}", peer.ip()),
            )
            .await;
            tracing::info!(client = %peer.ip(), %email, "dashboard login (OpenID Connect)");
            let session = state.sessions.create();
            // A page, not a redirect: the browser arrived from the issuer's
            // site, and a redirect in that chain would not carry the
            // SameSite=Strict session cookie to the overview.
            let mut resp = html(
                StatusCode::OK,
                &Continue {
                    base: &session.base,
                },
            );
            if let Ok(v) = session.set_cookie().parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            state.logins.record_failure(peer.ip());
            let action = match e {
                OidcError::NotAllowed(_) | OidcError::Unverified(_) => "dashboard.login_refused",
                _ => "dashboard.login_failed",
            };
            audit(&state, action, &format!("{e} client={}", peer.ip())).await;
            tracing::warn!(client = %peer.ip(), error = %e, "dashboard login (OpenID Connect) refused");
            let status = match e {
                OidcError::Discovery(_) | OidcError::Exchange(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::FORBIDDEN,
            };
            login_page(&state, status, Some(format!("Login refused: {e}.")))
        }
    };
    // The state is single-use either way.
    if let Ok(v) = oidc_cookie("", Duration::ZERO).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Template)]
#[template(path = "login_continue.html")]
struct Continue<'a> {
    /// The new session's address, `/s/KEY`.
    base: &'a str,
}

/// Lax, unlike the other cookies: it must come back with the issuer's
/// cross-site redirect to the callback. It only names a pending login.
fn oidc_cookie(value: &str, max_age: Duration) -> String {
    format!(
        "{OIDC_COOKIE}={value}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    )
}

/// The audit trail must not block a login on a database hiccup; the log
/// line is the fallback.
async fn audit(state: &DashState, action: &str, detail: &str) {
    if let Err(e) = state.service.audit_login(action, detail).await {
        tracing::error!(error = %e, action, detail, "cannot audit a dashboard login");
    }
}

fn pages_not_found() -> Response {
    crate::dashboard::render::error_page(
        StatusCode::NOT_FOUND,
        "OpenID Connect login is not configured.",
    )
}

pub async fn logout(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    state.sessions.end(&session);
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = session_cookie(&session.base, "", Duration::ZERO).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The answer to an address that failed too many logins, for the password
/// form and the OpenID Connect callback alike.
fn too_many_logins(state: &DashState, wait: Duration) -> Response {
    login_page(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        Some(format!(
            "Too many failed logins from your address. Try again in {} seconds.",
            wait.as_secs().max(1)
        )),
    )
}
