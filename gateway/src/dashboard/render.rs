//! What every page shares: the frame (navigation, CSRF token, the flash
//! message, the interception mode), form errors, error pages, and turning
//! a template into a response. Templates escape everything by default;
//! nothing here marks text as safe.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::DashState;
use super::session::{Flash, SessionCtx};
use crate::service::ServiceError;

/// The frame around every logged-in page.
pub struct Chrome {
    /// Which navigation entry is highlighted.
    pub active: &'static str,
    pub csrf: String,
    /// The session's address, `/s/KEY`: the page's `<base>`, so every
    /// relative link stays inside the session.
    pub base: String,
    pub flash: Option<Flash>,
    /// How agents' traffic reaches the gateway (from `airlock status`).
    pub mode: String,
    pub version: &'static str,
}

impl Chrome {
    pub fn new(state: &DashState, session: &SessionCtx, active: &'static str) -> Chrome {
        Chrome {
            active,
            csrf: session.csrf.clone(),
            base: session.base.clone(),
            flash: state.sessions.take_flash(session),
            mode: short_mode(&state.status.mode),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The mode's first clause ("explicit proxy only: …" → "explicit proxy only").
fn short_mode(mode: &str) -> String {
    mode.split([':', '('])
        .next()
        .unwrap_or(mode)
        .trim()
        .to_owned()
}

/// An error to show beside a form field (or above the form).
#[derive(Debug, Default, Clone)]
pub struct FormErrors {
    field: Option<String>,
    message: Option<String>,
    /// Fields the form shows; an error on any other goes above the form.
    known: &'static [&'static str],
}

impl FormErrors {
    pub fn none(known: &'static [&'static str]) -> Self {
        FormErrors {
            field: None,
            message: None,
            known,
        }
    }

    pub fn from_service(e: &ServiceError, known: &'static [&'static str]) -> Self {
        let field = match e {
            ServiceError::Invalid { field, .. } => Some((*field).to_owned()),
            _ => None,
        };
        if matches!(e, ServiceError::Internal(_)) {
            tracing::error!(error = %e, "dashboard request failed");
        }
        FormErrors {
            field,
            message: Some(e.to_string()),
            known,
        }
    }

    pub fn on(field: &str, message: impl Into<String>, known: &'static [&'static str]) -> Self {
        FormErrors {
            field: Some(field.to_owned()),
            message: Some(message.into()),
            known,
        }
    }

    /// The message for `field`, if the error is about it.
    pub fn at(&self, field: &str) -> Option<&str> {
        (self.field.as_deref() == Some(field))
            .then_some(self.message.as_deref())
            .flatten()
    }

    /// The message when it belongs to no field the form shows.
    pub fn general(&self) -> Option<&str> {
        let shown = self
            .field
            .as_deref()
            .is_some_and(|f| self.known.contains(&f));
        (!shown).then_some(self.message.as_deref()).flatten()
    }

    pub fn any(&self) -> bool {
        self.message.is_some()
    }
}

/// Renders a template, or a plain 500 if that fails (it should not: the
/// templates are checked at compile time).
pub fn html<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a dashboard page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// A standalone error page (no session needed).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    html(
        status,
        &ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message,
        },
    )
}

/// The status a failed request answers with (the admin API's mapping).
pub fn status_of(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::Invalid { .. } => StatusCode::BAD_REQUEST,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A service failure as a page (for requests that have no form to re-render).
pub fn service_error_page(e: &ServiceError) -> Response {
    if matches!(e, ServiceError::Internal(_)) {
        tracing::error!(error = %e, "dashboard request failed");
    }
    error_page(status_of(e), &e.to_string())
}

/// `2026-01-31 12:00:05`, in UTC (the zone is in the column header).
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// "42s ago", "5m ago", "3h ago".
pub fn ago(t: &DateTime<Utc>) -> String {
    let secs = (Utc::now() - *t).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_land_on_their_field_or_above_the_form() {
        const KNOWN: &[&str] = &["name", "host"];
        let e = FormErrors::on("name", "bad name", KNOWN);
        assert_eq!(e.at("name"), Some("bad name"));
        assert_eq!(e.at("host"), None);
        assert_eq!(e.general(), None);
        let e = FormErrors::on("grants", "no such secret", KNOWN);
        assert_eq!(e.general(), Some("no such secret"));
        assert!(!FormErrors::none(KNOWN).any());
    }

    #[test]
    fn modes_are_shortened() {
        assert_eq!(short_mode("eBPF (cgroup /x): attached"), "eBPF");
        assert_eq!(
            short_mode("explicit proxy only: no object"),
            "explicit proxy only"
        );
    }
}
