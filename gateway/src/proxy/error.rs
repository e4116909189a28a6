//! The error funnel: every way a request can fail, which side failed, and
//! the one function that turns it into the agent's answer.
//!
//! Agents get a short JSON body they can act on, e.g.
//! `{"error":"blocked","message":"blocked by rule 3","rule":3}`; a 407
//! carries `Proxy-Authenticate`, a 429 `Retry-After`; a request denied by
//! default names the default that decided and how to ask for access
//! ([`DefaultDenial`]).
//!
//! A refused MCP call (a JSON-RPC request whose body a rule read) is
//! answered the way MCP clients read a refusal: HTTP 200 with a JSON-RPC
//! error per request id ([`ProxyError::JsonRpc`], code [`JSONRPC_REFUSED`],
//! the usual body as its `data`); the MCP SDKs raise it as an error of
//! that call (Python's `McpError`), where a 403 would fail the transport.
//! A refused GraphQL operation is the usual 403 with the usual body: the
//! GraphQL server never ran it, and GraphQL clients raise a non-2xx as an
//! HTTP error with its body, where a 200 with `errors` would read as the
//! server's own answer (docs/policy.md, "GraphQL rules").

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use super::body::ProxyBody;
pub use super::denial::DefaultDenial;
use super::denial::{AskBody, DefaultBody};
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

/// The error that stopped an upstream or gateway step.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A failure upstream or inside the gateway: what was being done, and the
/// error that stopped it, kept as the [`std::error::Error::source`] so a
/// caller can tell an I/O error from a TLS one without reading text. It
/// reads as `context: cause`, the message agents and the audit get.
#[derive(Debug)]
pub struct Failure {
    context: Cow<'static, str>,
    cause: Option<Cause>,
}

impl Failure {
    /// A failure the cause says all about.
    pub fn of(cause: impl Into<Cause>) -> Self {
        Failure::caused("", cause)
    }

    pub fn caused(context: impl Into<Cow<'static, str>>, cause: impl Into<Cause>) -> Self {
        Failure {
            context: context.into(),
            cause: Some(cause.into()),
        }
    }

    /// A failure found by the gateway itself, with no error behind it.
    fn bare(context: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            context: context.into(),
            cause: None,
        }
    }
}

impl From<&'static str> for Failure {
    fn from(context: &'static str) -> Self {
        Failure::bare(context)
    }
}

impl From<String> for Failure {
    fn from(context: String) -> Self {
        Failure::bare(context)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&*self.context, &self.cause) {
            ("", Some(cause)) => write!(f, "{cause}"),
            (context, Some(cause)) => write!(f, "{context}: {cause}"),
            (context, None) => f.write_str(context),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
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
    /// A body rule could not read the body and refuses what it cannot read.
    #[error(
        "refused by rule {rule}, which reads the request body and cannot judge this one: {why} \
         (the rule refuses what it cannot read: on_unreadable=refuse)"
    )]
    BodyUnreadable {
        rule: i64,
        why: crate::policy::body::Unreadable,
    },
    /// A policy refusal of JSON-RPC requests, answered as JSON-RPC errors
    /// to these ids (each message's, in order; `batch`: as an array).
    #[error("{refusal}")]
    JsonRpc {
        refusal: Box<ProxyError>,
        ids: Vec<serde_json::Value>,
        batch: bool,
    },
    /// No allow rule covers it and the default is deny.
    #[error("{0}")]
    DeniedByDefault(DefaultDenial),
    /// `ungranted`: the secret a refused placeholder names, when the
    /// agent is not granted it (an access request can ask for the grant).
    #[error("{reason}")]
    Exfiltration {
        reason: String,
        ungranted: Option<String>,
    },
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
    /// The origin could not be reached or answered wrongly.
    #[error(transparent)]
    Upstream(Failure),
    #[error("{0}")]
    UpstreamTimeout(String),
    /// The gateway cannot serve (audit trail, rules, vault, approvals).
    #[error(transparent)]
    Unavailable(Failure),
    /// An OAuth2 secret the request needs has no access token: its token
    /// endpoint failed, or the grant was revoked (needs reconnection).
    #[error(transparent)]
    Credential(crate::credentials::CredentialError),
}

/// The JSON-RPC error code of a call the gateway refused (in the range
/// JSON-RPC leaves to implementations).
pub const JSONRPC_REFUSED: i64 = -32001;

#[derive(Serialize)]
struct Body<'a> {
    error: Decision,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<i64>,
    /// The secret a credential failure is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    /// True when the operator must give the secret a new grant.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    needs_reconnection: bool,
    /// A denial by default: which default decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<DefaultBody<'a>>,
    /// A denial by default: what to run to allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    ask: Option<AskBody>,
}

impl ProxyError {
    /// An upstream step failed with `cause`.
    pub fn upstream(context: impl Into<Cow<'static, str>>, cause: impl Into<Cause>) -> Self {
        ProxyError::Upstream(Failure::caused(context, cause))
    }

    /// A gateway step failed with `cause`.
    pub fn unavailable(context: impl Into<Cow<'static, str>>, cause: impl Into<Cause>) -> Self {
        ProxyError::Unavailable(Failure::caused(context, cause))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::AuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ProxyError::JsonRpc { .. } => StatusCode::OK,
            ProxyError::UnknownAgent(_)
            | ProxyError::Blocked { .. }
            | ProxyError::BodyUnreadable { .. }
            | ProxyError::DeniedByDefault(_)
            | ProxyError::Exfiltration { .. }
            | ProxyError::ApprovalDenied { .. }
            | ProxyError::ApprovalTimedOut { .. }
            | ProxyError::DestinationRefused(_) => StatusCode::FORBIDDEN,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Upstream(_) | ProxyError::Credential(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short word in the JSON body and the audit trail's decision.
    pub fn decision(&self) -> Decision {
        match self {
            ProxyError::AuthRequired => Decision::AuthRequired,
            ProxyError::UnknownAgent(_) => Decision::UnknownAgent,
            ProxyError::Blocked { .. } | ProxyError::BodyUnreadable { .. } => Decision::Blocked,
            ProxyError::JsonRpc { refusal, .. } => refusal.decision(),
            ProxyError::DeniedByDefault(_) => Decision::DeniedByDefault,
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
            ProxyError::Credential(_) => Decision::CredentialUnavailable,
        }
    }

    /// Which side failed, so the funnel logs only what an operator must
    /// see (a refused agent request is the agent's business).
    pub fn side(&self) -> Side {
        match self {
            ProxyError::JsonRpc { refusal, .. } => refusal.side(),
            ProxyError::AuthRequired
            | ProxyError::UnknownAgent(_)
            | ProxyError::Blocked { .. }
            | ProxyError::BodyUnreadable { .. }
            | ProxyError::DeniedByDefault(_)
            | ProxyError::Exfiltration { .. }
            | ProxyError::RateLimited { .. }
            | ProxyError::ApprovalDenied { .. }
            | ProxyError::ApprovalTimedOut { .. }
            | ProxyError::DestinationRefused(_)
            | ProxyError::BadRequest(_)
            | ProxyError::HeadersTooLarge { .. } => Side::Downstream,
            ProxyError::Upstream(_)
            | ProxyError::UpstreamTimeout(_)
            | ProxyError::Credential(_) => Side::Upstream,
            ProxyError::Unavailable(_) => Side::Internal,
        }
    }

    pub fn rule(&self) -> Option<i64> {
        match self {
            ProxyError::JsonRpc { refusal, .. } => refusal.rule(),
            ProxyError::Blocked { rule }
            | ProxyError::BodyUnreadable { rule, .. }
            | ProxyError::RateLimited { rule, .. }
            | ProxyError::ApprovalDenied { rule, .. }
            | ProxyError::ApprovalTimedOut { rule, .. } => Some(*rule),
            _ => None,
        }
    }

    /// The JSON body of the agent's answer.
    pub(super) fn body(&self) -> Vec<u8> {
        let credential = match self {
            ProxyError::Credential(e) => Some(e),
            _ => None,
        };
        let denial = match self {
            ProxyError::DeniedByDefault(d) => Some(d),
            _ => None,
        };
        serde_json::to_vec(&Body {
            error: self.decision(),
            message: self.to_string(),
            rule: self.rule(),
            secret: credential.map(|e| e.secret()),
            needs_reconnection: credential.is_some_and(|e| e.needs_reconnection()),
            default: denial.map(DefaultDenial::default_body),
            ask: denial.map(DefaultDenial::ask_body),
        })
        .unwrap_or_default()
    }

    /// The JSON-RPC answer to refused requests `ids`: one error each,
    /// with the id it answers.
    fn jsonrpc_body(refusal: &ProxyError, ids: &[serde_json::Value], batch: bool) -> Vec<u8> {
        let data: serde_json::Value =
            serde_json::from_slice(&refusal.body()).unwrap_or(serde_json::Value::Null);
        let errors: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| {
                serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": JSONRPC_REFUSED,
                        "message": format!("airlock: {refusal}"),
                        "data": data,
                    },
                })
            })
            .collect();
        let out = match (batch, errors.as_slice()) {
            (false, [one]) => serde_json::to_vec(one),
            _ => serde_json::to_vec(&errors),
        };
        out.unwrap_or_default()
    }

    /// The agent's answer.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = match &self {
            ProxyError::JsonRpc {
                refusal,
                ids,
                batch,
            } => Self::jsonrpc_body(refusal, ids, *batch),
            _ => self.body(),
        };
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
            secret: None,
            needs_reconnection: false,
            default: None,
            ask: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"blocked","message":"blocked by rule 3","rule":3}"#
        );
    }

    #[test]
    fn a_refused_call_is_a_jsonrpc_error_with_its_id() {
        let e = ProxyError::JsonRpc {
            refusal: Box::new(ProxyError::Blocked { rule: 4 }),
            ids: vec![serde_json::json!(7)],
            batch: false,
        };
        assert_eq!(e.decision(), Decision::Blocked);
        assert_eq!(e.rule(), Some(4));
        let r = e.into_response();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let e = ProxyError::JsonRpc {
            refusal: Box::new(ProxyError::Blocked { rule: 4 }),
            ids: vec![serde_json::json!(7)],
            batch: false,
        };
        let body: serde_json::Value = serde_json::from_slice(&ProxyError::jsonrpc_body(
            &e,
            &[serde_json::json!(7)],
            false,
        ))
        .unwrap();
        assert_eq!(body["id"], 7);
        assert_eq!(body["error"]["code"], JSONRPC_REFUSED);
        assert_eq!(body["error"]["message"], "airlock: blocked by rule 4");
        assert_eq!(body["error"]["data"]["rule"], 4);
        let ids = [serde_json::json!("a"), serde_json::json!(2)];
        let batch: serde_json::Value =
            serde_json::from_slice(&ProxyError::jsonrpc_body(&e, &ids, true)).unwrap();
        assert_eq!(batch.as_array().map(Vec::len), Some(2));
        assert_eq!(batch[0]["id"], "a");
    }

    #[test]
    fn failures_keep_their_cause_and_read_as_before() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = ProxyError::upstream("cannot connect to 192.0.2.1:443", io);
        assert_eq!(e.to_string(), "cannot connect to 192.0.2.1:443: refused");
        let source = std::error::Error::source(&e);
        let io = source.and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        let bare = ProxyError::Unavailable(Failure::of(std::io::Error::other("vault sealed")));
        assert_eq!(bare.to_string(), "vault sealed");
        assert_eq!(ProxyError::Upstream("closed".into()).to_string(), "closed");
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
