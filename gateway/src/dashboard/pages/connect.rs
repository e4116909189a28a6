//! "Connect" beside an OAuth2 secret (`dashboard::connect` has the flow
//! and why it is safe): the form that sends the browser to the provider,
//! and the callback it comes back to.

use askama::Template;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use openidconnect::url::Url;
use serde::Deserialize;

use crate::dashboard::DashState;
use crate::dashboard::connect::{CONNECT_COOKIE, CONNECT_LIFETIME, ConnectError, cookie};
use crate::dashboard::render::html;
use crate::dashboard::session::{SessionCtx, cookie as read_cookie};

/// `POST /secrets/NAME/connect`: off to the provider.
pub async fn start(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(name): Path<String>,
) -> Response {
    let started = match state.service.connect_target(&name).await {
        Ok(target) => state
            .connect
            .start(target, session.clone())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match started {
        Ok((url, flow_state)) => {
            // A page that moves on, not a redirect: the dashboard's CSP
            // (`form-action 'self'`) would stop a form's redirect to
            // another site, and this page's `no-referrer` keeps the
            // session's address from the provider.
            let host = Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            let mut resp = html(
                StatusCode::OK,
                &Go {
                    url: &url,
                    host: &host,
                    secret: &name,
                },
            );
            if let Ok(v) = cookie(&flow_state, CONNECT_LIFETIME).parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(message) => {
            state.sessions.set_flash(
                &session,
                false,
                format!("Secret {name} was not connected: {message}"),
            );
            Redirect::to(&session.at("/secrets")).into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "connect_go.html")]
struct Go<'a> {
    url: &'a str,
    host: &'a str,
    secret: &'a str,
}

#[derive(Deserialize)]
pub struct Callback {
    #[serde(default)]
    state: String,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Template)]
#[template(path = "connect_done.html")]
struct Done<'a> {
    ok: bool,
    message: &'a str,
    /// The Secrets page of the session that started the flow, if known.
    back: Option<String>,
}

/// `GET /oauth2/callback`: the provider's answer.
pub async fn callback(
    State(state): State<DashState>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let flow = state
        .connect
        .finish(&q.state, read_cookie(&headers, CONNECT_COOKIE))
        .and_then(|flow| {
            if state.sessions.is_live(&flow.session) {
                Ok(flow)
            } else {
                Err(ConnectError::UnknownState)
            }
        });
    let (status, message, back) = match flow {
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string(), None),
        Ok(flow) => {
            let name = flow.target.secret.to_string();
            let back = Some(flow.session.at("/secrets"));
            let result = match (&q.code, &q.error) {
                (Some(code), None) => {
                    let code = flow.code(code, state.connect.redirect_uri());
                    state
                        .service
                        .connect_secret(&flow.target, &code)
                        .await
                        .map_err(|e| e.to_string())
                }
                _ => Err(ConnectError::Provider(provider_error(&q)).to_string()),
            };
            match result {
                Ok(_) => {
                    tracing::info!(secret = %name, "OAuth2 secret connected from the dashboard");
                    let text = format!("Secret {name} is connected.");
                    state.sessions.set_flash(&flow.session, true, text.clone());
                    (StatusCode::OK, text, back)
                }
                Err(e) => {
                    let text = format!("Secret {name} was not connected: {e}");
                    tracing::warn!(secret = %name, error = %e, "dashboard Connect failed");
                    if let Err(e) = state
                        .service
                        .audit_login(
                            "secret.oauth2.connect_failed",
                            &format!("secret={name} {e}"),
                        )
                        .await
                    {
                        tracing::error!(error = %e, "cannot audit a failed Connect");
                    }
                    (StatusCode::BAD_GATEWAY, text, back)
                }
            }
        }
    };
    let mut resp = html(
        status,
        &Done {
            ok: status.is_success(),
            message: &message,
            back,
        },
    );
    // The state is single-use either way.
    if let Ok(v) = cookie("", std::time::Duration::ZERO).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The provider's `error` and `error_description` (RFC 6749 §4.1.2.1),
/// kept to short printable text: they are the provider's words, shown on
/// a page and written to the audit trail.
fn provider_error(q: &Callback) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect::<String>()
    };
    match (&q.error, &q.error_description) {
        (Some(e), Some(d)) => format!("{} ({})", clean(e), clean(d)),
        (Some(e), None) => clean(e),
        _ => "it sent no authorization code".into(),
    }
}
