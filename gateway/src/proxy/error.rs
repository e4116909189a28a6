//! The error funnel: every way a request can fail, which side failed, and
//! the one function that turns it into the agent's answer.
//!
//! Agents get a short JSON body they can act on, e.g.
//! `{"error":"blocked","message":"blocked by rule 3","rule":3}`; a 407
//! carries `Proxy-Authenticate`, a 429 `Retry-After`.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use super::body::ProxyBody;
use crate::audit::Decision;

/// Which side of the gateway a failure lies on: who has to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The agent: its request or connection was refused or malformed.
    Downstream,
    /// The origin: it could not be reached, or did not answer in time or
    /// correctly.
    Upstream,
    /// The gateway itself (its audit trail, rules or vault): an operator's
    /// problem, logged.
    Internal,
}

/// Why a request did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Explicit proxy: no token, or an unknown one.
    #[error(
        "proxy authentication required: send Proxy-Authorization with the agent's token (Basic, any user name, token as password; or Bearer)"
    )]
    AuthRequired,
    /// Transparent mode: the connection comes from no known agent.
    #[error("{0}")]
    UnknownAgent(String),
    #[error("blocked by rule {rule}")]
    Blocked { rule: i64 },
    #[error("{reason}")]
    Exfiltration { reason: String },
    #[error("rate limit of rule {rule} reached; retry in {}s", retry_after.as_secs().max(1))]
    RateLimited { rule: i64, retry_after: Duration },
    #[error("approval {approval} was denied")]
    ApprovalDenied { rule: i64, approval: i64 },
    #[error("approval {approval} was not given within {}s", timeout.as_secs())]
    ApprovalTimedOut {
        rule: i64,
        approval: i64,
        timeout: Duration,
    },
    /// The destination itself is not allowed (loopback, metadata, own ports).
    #[error("{0}")]
    DestinationRefused(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request's headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct Body {
    error: Decision,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<i64>,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::AuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ProxyError::UnknownAgent(_)
            | ProxyError::Blocked { .. }
            | ProxyError::Exfiltration { .. }
            | ProxyError::ApprovalDenied { .. }
            | ProxyError::ApprovalTimedOut { .. }
            | ProxyError::DestinationRefused(_) => StatusCode::FORBIDDEN,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short word in the JSON body and the audit trail's decision.
    pub fn decision(&self) -> Decision {
        match self {
            ProxyError::AuthRequired => Decision::AuthRequired,
            ProxyError::UnknownAgent(_) => Decision::UnknownAgent,
            ProxyError::Blocked { .. } => Decision::Blocked,
            ProxyError::Exfiltration { .. } => Decision::Exfiltration,
            ProxyError::RateLimited { .. } => Decision::RateLimited,
            ProxyError::ApprovalDenied { .. } => Decision::ApprovalDenied,
            ProxyError::ApprovalTimedOut { .. } => Decision::ApprovalTimeout,
            ProxyError::DestinationRefused(_) => Decision::DestinationRefused,
            ProxyError::BadRequest(_) => Decision::BadRequest,
            ProxyError::HeadersTooLarge { .. } => Decision::HeadersTooLarge,
            ProxyError::Upstream(_) => Decision::UpstreamError,
            ProxyError::UpstreamTimeout(_) => Decision::UpstreamTimeout,
            ProxyError::Unavailable(_) => Decision::Unavailable,
        }
    }

    /// Which side failed, so the funnel logs only what an operator must
    /// see (a refused agent request is the agent's business).
    pub fn side(&self) -> Side {
        match self {
            ProxyError::AuthRequired
            | ProxyError::UnknownAgent(_)
            | ProxyError::Blocked { .. }
            | ProxyError::Exfiltration { .. }
            | ProxyError::RateLimited { .. }
            | ProxyError::ApprovalDenied { .. }
            | ProxyError::ApprovalTimedOut { .. }
            | ProxyError::DestinationRefused(_)
            | ProxyError::BadRequest(_)
            | ProxyError::HeadersTooLarge { .. } => Side::Downstream,
            ProxyError::Upstream(_) | ProxyError::UpstreamTimeout(_) => Side::Upstream,
            ProxyError::Unavailable(_) => Side::Internal,
        }
    }

    pub fn rule(&self) -> Option<i64> {
        match self {
            ProxyError::Blocked { rule }
            | ProxyError::RateLimited { rule, .. }
            | ProxyError::ApprovalDenied { rule, .. }
            | ProxyError::ApprovalTimedOut { rule, .. } => Some(*rule),
            _ => None,
        }
    }

    /// The agent's answer.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = serde_json::to_vec(&Body {
            error: self.decision(),
            message: self.to_string(),
            rule: self.rule(),
        })
        .unwrap_or_default();
        let mut resp = Response::new(ProxyBody::local(body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            ProxyError::AuthRequired => {
                headers.insert(
                    header::PROXY_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"airlock\""),
                );
            }
            ProxyError::RateLimited { retry_after, .. } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_headers() {
        let r = ProxyError::AuthRequired.into_response();
        assert_eq!(r.status(), 407);
        assert!(r.headers().contains_key("proxy-authenticate"));
        let r = ProxyError::RateLimited {
            rule: 2,
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(ProxyError::Blocked { rule: 1 }.status(), 403);
        assert_eq!(ProxyError::Upstream("x".into()).status(), 502);
        assert_eq!(ProxyError::UpstreamTimeout("x".into()).status(), 504);
    }

    #[test]
    fn the_body_names_the_decision() {
        let body = Body {
            error: ProxyError::Blocked { rule: 3 }.decision(),
            message: "blocked by rule 3".into(),
            rule: Some(3),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"blocked","message":"blocked by rule 3","rule":3}"#
        );
    }

    #[test]
    fn only_the_gateway_and_the_upstream_are_failures() {
        assert_eq!(ProxyError::Blocked { rule: 1 }.side(), Side::Downstream);
        assert_eq!(ProxyError::BadRequest("x".into()).side(), Side::Downstream);
        assert_eq!(ProxyError::Upstream("x".into()).side(), Side::Upstream);
        assert_eq!(
            ProxyError::UpstreamTimeout("x".into()).side(),
            Side::Upstream
        );
        assert_eq!(ProxyError::Unavailable("x".into()).side(), Side::Internal);
    }
}
