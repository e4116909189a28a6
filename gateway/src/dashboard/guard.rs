//! The dashboard's middleware: who may do what.
//!
//! - Pages need a session: its cookie and, in the address, its path key
//!   (see [`super::session`]); without both, the browser goes to the login
//!   page. Every state-changing page request (any method but GET and
//!   HEAD) must carry the session's CSRF token in its form, else 403.
//! - `/api/v1` takes `Authorization: Bearer TOKEN` (an API token), or a
//!   session (under its path key, `/s/KEY/api/v1/...`) plus the CSRF token
//!   in `X-CSRF-Token` for anything but GET and HEAD; else 401 with a JSON
//!   body that says how to authenticate.
//! - Every response gets headers that keep pages out of frames, caches and
//!   other sites' scripts.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::DashState;
use super::render::error_page;
use super::session::{SESSION_COOKIE, SessionCtx, cookie, same_token};
use super::session_path::PathKey;
use crate::service::types::ApiError;

/// Largest form body read (secret values are at most 16 KiB).
const MAX_FORM_BYTES: usize = 256 * 1024;
/// The form field and the API header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The session named by the request's cookie, if it is live and the
/// address carried the path key issued with it.
pub fn session_of(state: &DashState, req: &Request) -> Option<SessionCtx> {
    let path_key = req.extensions().get::<PathKey>().map(|k| k.0.as_str());
    cookie(req.headers(), SESSION_COOKIE).and_then(|c| state.sessions.get(c, path_key))
}

/// Pages: a live session, and for state changes the CSRF token in the form.
pub async fn require_session(State(state): State<DashState>, req: Request, next: Next) -> Response {
    let Some(session) = session_of(&state, &req) else {
        return Redirect::to("/login").into_response();
    };
    let mut req = if is_safe(req.method()) {
        req
    } else {
        match check_form_csrf(req, &session).await {
            Ok(req) => req,
            Err(resp) => return resp,
        }
    };
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// Reads the (bounded) form body, checks its `csrf` field, and puts the
/// body back for the handler.
async fn check_form_csrf(req: Request, session: &SessionCtx) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| error_page(StatusCode::PAYLOAD_TOO_LARGE, "That form is too large."))?;
    let presented = form_urlencoded_field(&bytes, CSRF_FIELD);
    if !presented.is_some_and(|t| same_token(&t, &session.csrf)) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from the dashboard (missing or wrong \
             CSRF token). Go back, reload the page and try again.",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn api_error(status: StatusCode, message: &str) -> Response {
    let mut resp = (
        status,
        Json(ApiError {
            error: message.to_owned(),
            field: None,
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"airlock\""),
        );
    }
    resp
}

/// `/api/v1`: an API token, or a session (plus CSRF header for changes).
pub async fn api_auth(State(state): State<DashState>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    if let Some(token) = bearer {
        return match state.service.verify_api_token(&token).await {
            Ok(Some(_name)) => next.run(req).await,
            Ok(None) => api_error(
                StatusCode::UNAUTHORIZED,
                "unknown API token: create one with `airlock admin token create NAME`",
            ),
            Err(e) => {
                tracing::error!(error = %e, "checking an API token failed");
                api_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot check the token now",
                )
            }
        };
    }
    let Some(session) = session_of(&state, &req) else {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer TOKEN` (create a token \
             with `airlock admin token create NAME`) or log in to the dashboard",
        );
    };
    if !is_safe(req.method()) {
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same_token(presented, &session.csrf) {
            return api_error(
                StatusCode::FORBIDDEN,
                "missing or wrong X-CSRF-Token header (needed with a session cookie)",
            );
        }
    }
    next.run(req).await
}

/// Headers for every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    // Scripts and styles only from our own /static: an injected tag would
    // not run even if escaping ever failed.
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'self'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    // Pages show tokens once; no cache may keep them.
    set(h, header::CACHE_CONTROL, "no-store");
    resp
}
