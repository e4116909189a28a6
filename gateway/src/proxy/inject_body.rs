//! Placeholders in request bodies: a JSON or form-encoded body streams
//! upstream through a [`Substituter`], which puts each body secret's
//! value where the agent wrote its placeholder, escaped for the body's
//! encoding, and stops the body at any placeholder that may not resolve.
//!
//! Decisions:
//! - **Which bodies.** `Content-Type: application/json`, `application/
//!   ...+json` and `application/x-www-form-urlencoded`, with no
//!   `Content-Encoding` ([`super::inject::body_encoding`]). Every other
//!   body streams through untouched and unread: a placeholder in it stays
//!   the text `airlock:NAME`, which holds no key, so it is not judged an
//!   exfiltration attempt (there is no way to read an arbitrary binary or
//!   compressed type the way its server will).
//! - **Which placeholders.** Only a body secret's
//!   ([`crate::model::Injection::Body`]) that applies to the request
//!   (host, path, agent, TLS). Any other in a read body is an
//!   exfiltration attempt: the body stops there, before the placeholder,
//!   so the upstream gets an incomplete request (hyper aborts it: a cut
//!   `Content-Length`, or no last chunk) and the agent a 403 that the
//!   audit records as `exfiltration`. An upstream that answered before
//!   reading that far has its answer passed on; the body is still cut.
//! - **Length.** When a body secret applies, the length may change, so
//!   `Content-Length` is dropped: HTTP/1.1 upstreams get the body chunked,
//!   HTTP/2 ones in DATA frames without a declared length. Knowing the
//!   length first would mean holding the whole body. With no body secret
//!   applying, nothing is replaced, so the length and header stay.
//! - **Memory.** O(1) in the body's size: each frame is written out as it
//!   is read, but for a placeholder in progress (see
//!   [`super::substitute`]). The output frames are zeroizing buffers.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;
use http_body::{Body, Frame, SizeHint};

use super::body::BoxError;
use super::body_prefix::Prefixed;
use super::inject::{self, BodyValues, Destination, Position};
use super::substitute::{Refused, Resolve, Substituter, ZBuf};
use crate::model::AgentName;
use crate::snapshot::Snapshot;
use crate::vault::Plaintext;

/// The agent's request body on its way upstream: as it is, or read for
/// placeholders (after what body rules read of it, if any).
pub struct RequestBody {
    inner: Prefixed,
    scan: Option<Box<Scan>>,
}

/// Set when the body stopped at a placeholder that may not resolve: what
/// the pipeline answers 403 with and audits.
pub type Refusal = Arc<OnceLock<BodyRefusal>>;

/// Why a body was stopped.
#[derive(Debug)]
pub struct BodyRefusal {
    /// The refusal's message.
    pub message: String,
    /// The placeholder's secret, when the agent is not granted it (an
    /// access request can ask for the grant).
    pub ungranted: Option<String>,
}

struct Scan {
    subst: Substituter,
    keys: BodyKeys,
    refused: Refusal,
    /// The agent's trailers, sent after what the substituter held back.
    trailers: Option<HeaderMap>,
    finished: bool,
    /// A value may be substituted: the length is not known.
    resized: bool,
}

/// What a body's (or a WebSocket's text messages') placeholders resolve
/// to, and why others do not.
pub struct BodyKeys {
    values: Vec<(String, Plaintext)>,
    why: Why,
}

impl BodyKeys {
    pub fn new(values: BodyValues, why: Why) -> Self {
        BodyKeys {
            values: values.values,
            why,
        }
    }
}

/// What it takes to say why a placeholder does not resolve in a body
/// (only ever computed for a refusal).
pub struct Why {
    pub snap: Arc<Snapshot>,
    pub agent: AgentName,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The canonical path as the agent sent it (placeholders, not values).
    pub path: String,
}

impl Why {
    /// Whether `name` is a secret the agent is not granted.
    fn ungranted(&self, name: &str) -> bool {
        self.snap
            .agent_by_name(&self.agent)
            .is_some_and(|agent| inject::not_granted(&self.snap, agent, name))
    }

    fn reason(&self, name: &str) -> String {
        let Some(agent) = self.snap.agent_by_name(&self.agent) else {
            return format!("agent {} no longer exists", self.agent);
        };
        let dest = Destination {
            host: &self.host,
            port: self.port,
            tls: self.tls,
        };
        let applying = inject::applicable(&self.snap, agent, &dest, &self.path);
        match applying.iter().find(|s| s.name().as_str() == name) {
            Some(secret) => inject::misplaced(secret, Position::Body)
                .unwrap_or_else(|| "it cannot be used here".into()),
            None => inject::why_not(&self.snap, agent, &dest, &applying, name),
        }
    }
}

impl Resolve for BodyKeys {
    fn resolve(&mut self, name: &str) -> Result<&[u8], String> {
        match self.values.iter().find(|(n, _)| n == name) {
            Some((_, value)) => Ok(value.expose()),
            None => Err(self.why.reason(name)),
        }
    }
}

/// The body to send upstream: read for placeholders when `plan` says it
/// is JSON or a form (`Content-Length` dropped from `parts` when a value
/// may go in), as it is otherwise; and the refusal to check once the
/// upstream has answered.
pub fn agent_body(
    inner: Prefixed,
    parts: &mut Parts,
    plan: Option<BodyValues>,
    why: impl FnOnce() -> Why,
) -> (RequestBody, Option<Refusal>) {
    let Some(plan) = plan.filter(|_| !inner.is_end_stream()) else {
        return (RequestBody { inner, scan: None }, None);
    };
    let resized = !plan.values.is_empty();
    if resized {
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    let refused = Refusal::default();
    let scan = Scan {
        subst: Substituter::new(plan.encoding),
        resized,
        keys: BodyKeys::new(plan, why()),
        refused: refused.clone(),
        trailers: None,
        finished: false,
    };
    let body = RequestBody {
        inner,
        scan: Some(Box::new(scan)),
    };
    (body, Some(refused))
}

impl Scan {
    fn refuse(&mut self, refused: Refused) -> BoxError {
        let _ = self.refused.set(BodyRefusal {
            message: refused.to_string(),
            ungranted: self
                .keys
                .why
                .ungranted(&refused.name)
                .then(|| refused.name.clone()),
        });
        self.finished = true;
        Box::new(refused)
    }

    /// The end of the agent's body: what was held back, if anything.
    fn finish(&mut self) -> Result<Option<Bytes>, BoxError> {
        self.finished = true;
        let mut out = ZBuf::with_capacity(0);
        match self.subst.finish(&mut out, &mut self.keys) {
            Ok(()) => Ok((!out.is_empty()).then(|| out.into_bytes())),
            Err(r) => Err(self.refuse(r)),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(scan) = this.scan.as_deref_mut() else {
            return Pin::new(&mut this.inner)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into)));
        };
        loop {
            if scan.finished {
                return Poll::Ready(scan.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => match scan.finish() {
                    Ok(Some(rest)) => return Poll::Ready(Some(Ok(Frame::data(rest)))),
                    Ok(None) => continue,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    scan.trailers = frame.into_trailers().ok();
                    match scan.finish() {
                        Ok(Some(rest)) => return Poll::Ready(Some(Ok(Frame::data(rest)))),
                        Ok(None) => continue,
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
            };
            let mut out = ZBuf::with_capacity(data.len() + 64);
            if let Err(r) = scan.subst.feed(&data, &mut out, &mut scan.keys) {
                return Poll::Ready(Some(Err(scan.refuse(r))));
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.into_bytes()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.scan {
            None => self.inner.is_end_stream(),
            Some(scan) => scan.finished && scan.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.scan {
            Some(scan) if scan.resized => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}
