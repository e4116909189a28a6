//! The request path. Every request that reaches the gateway, through the
//! explicit proxy or the transparent listener, goes through these phases
//! in this order, each a function below:
//!
//! 1. [`identify`]: the agent (from its token or its cgroup, resolved when
//!    the connection was accepted) must still exist.
//! 2. [`check_destination`]: every authority the request carries (an
//!    absolute-form target, `:authority`, each `Host`) names the host and
//!    port the connection was opened for, and there is one `Host` at most
//!    ([`super::target`]).
//! 3. [`read_target`]: the target is origin form (`/...`, or `OPTIONS *`)
//!    and its path is read once into its canonical form and the other
//!    ways servers may read it ([`crate::policy::canonical`]); dot
//!    segments and broken escapes are refused.
//! 4. [`decide`]: policy: block, deny by default, hold for approval,
//!    rate-limit, or allow; a rule applies when any reading of the path
//!    matches. Blocked and denied requests never touch the vault. When a
//!    rule with a body condition could apply (by the head alone), the
//!    start of the body is read first ([`super::body_prefix`]) and sent on
//!    unchanged; otherwise the body is not touched. A refused JSON-RPC
//!    call is answered as a JSON-RPC error ([`ProxyError::JsonRpc`]).
//! 5. [`prepare`]: the request as it will go upstream: the canonical path
//!    in origin form, one `Host` built from the session (never the
//!    agent's), hop-by-hop headers removed, and an `Upgrade` kept only for
//!    WebSocket.
//! 6. inject ([`super::inject`]): every placeholder must sit in its
//!    secret's position; add credentials (a secret's path scope must hold
//!    for every reading of the path).
//! 7. [`forward`]: send upstream, stream the answer back, its head,
//!    body and trailers scrubbed of every injected value
//!    ([`Forwarded::scrub`]); a protocol switch other than the WebSocket
//!    the agent asked for is a 502. A redirect is the agent's to follow:
//!    the upstream client never follows one.
//! 8. audit ([`super::record`]): always, through the guard created first.
//!
//! Errors from any phase go through one funnel ([`ProxyError`]) that picks
//! the status and body and notes the outcome on the audit record.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::body::{Counted, ProxyBody};
use super::body_prefix::{self, Prefixed};
use super::error::{DefaultDenial, Failure, ProxyError, Side};
use super::headers::{is_websocket_switch, strip_hop_by_hop, wants_websocket};
use super::inject::{self, Destination};
use super::inject_oauth2;
use super::record::AuditGuard;
use super::scrub::Scrubber;
use super::scrub_body::{BodyScrub, Scrubbed};
use super::target::{self, AuthorityError, SessionHost, TargetError};
use super::upstream::{AgentBody, Protocols, UpstreamBody, UpstreamKey};
use super::ws_frame::FrameError;
use super::{Gateway, Session, Transport};
use super::{inject_body, ws_relay};
use crate::audit::Decision;
use crate::policy::approvals::ApprovalOutcome;
use crate::policy::engine::{self, Permit, RateOutcome, RequestFacts, Verdict};
use crate::policy::{BodyRead, PathForms};
use crate::snapshot::Snapshot;
use crate::store::agents::AgentRecord;
use crate::store::approvals::NewApproval;

/// Serves one request; never fails (errors become answers).
pub async fn serve_request(
    gw: &Arc<Gateway>,
    session: &Session,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let mut audit = AuditGuard::start(
        gw.audit.clone(),
        Some(session.agent.as_str()),
        req.method().as_str(),
        super::record::display_host(&session.host, session.port),
        req.uri(),
    );
    match run_phases(gw, session, req, &mut audit).await {
        Ok(Forwarded::Stream(resp)) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, ProxyBody::Upstream(body, Some(Box::new(audit))))
        }
        Ok(Forwarded::Upgrade {
            response,
            agent,
            upstream,
            relay,
        }) => {
            tokio::spawn(bridge(agent, upstream, audit, relay));
            response.map(|()| ProxyBody::empty())
        }
        Err(e) => refuse(e, audit),
    }
}

/// The funnel: one log line for gateway-side failures, the audit outcome,
/// the agent's answer.
pub fn refuse(e: ProxyError, mut audit: AuditGuard) -> Response<ProxyBody> {
    if e.side() != Side::Downstream {
        tracing::warn!(error = %e, "request failed");
    }
    audit.decision(e.decision(), e.rule());
    audit.status(e.status().as_u16());
    audit.detail(e.to_string());
    if let ProxyError::Exfiltration {
        ungranted: Some(secret),
        ..
    } = &e
    {
        audit.ungranted(secret);
    }
    e.into_response()
}

enum Forwarded {
    Stream(Response<Scrubbed<Counted<UpstreamBody>>>),
    /// A protocol switch (WebSocket): the 101 for the agent, and the two
    /// connections to join once it is sent.
    Upgrade {
        response: Response<()>,
        agent: OnUpgrade,
        upstream: OnUpgrade,
        /// How the frames are read once bridged; set once the upgrade is
        /// forwarded.
        relay: WsRelay,
    },
}

/// What a bridged WebSocket does to its messages ([`super::ws_relay`]).
/// With neither, the two connections are joined byte for byte.
#[derive(Default)]
struct WsRelay {
    /// What the agent's text messages' placeholders resolve to.
    keys: Option<inject_body::BodyKeys>,
    /// The values injected into the upgrade, scrubbed from the
    /// upstream's messages.
    scrub: Option<Box<BodyScrub>>,
}

async fn run_phases(
    gw: &Arc<Gateway>,
    session: &Session,
    mut req: Request<Incoming>,
    audit: &mut AuditGuard,
) -> Result<Forwarded, ProxyError> {
    super::headers::check_size(req.headers(), super::headers::MAX_HEADER_BYTES)?;
    if !gw.audit.accepting(audit.has_slot()) {
        let why = if audit.has_slot() {
            "the audit trail cannot record requests right now (the database is unreachable and \
             the audit spool cannot be written), so none is served until it can; see `airlock \
             status`"
        } else {
            "the audit queue is full (the database is not keeping up with the requests), so no \
             more are served until it has room; retry shortly"
        };
        return Err(ProxyError::Unavailable(why.into()));
    }
    let snap = gw.snapshot.load();
    if !snap.policy_intact() {
        return Err(ProxyError::Unavailable(
            "a rule (or the default) in the database cannot be read, so no request is allowed \
             until an operator fixes or removes it (see `airlock status`)"
                .into(),
        ));
    }
    let agent = identify(&snap, session)?;
    check_destination(&req, session)?;
    // Taken before the target borrows the request; dropped unused when
    // the request is refused.
    let upgrade = (req.version() == Version::HTTP_11 && wants_websocket(req.headers()))
        .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let path = read_target(&parts)?;

    let mut facts = RequestFacts {
        agent: &agent.name,
        method: parts.method.as_str(),
        host: &session.host,
        port: session.port,
        path: &path,
        body: None,
    };
    // Read only when a body rule could concern the request by its head.
    let (body, read) = match engine::body_limit(&snap.rules, &facts) {
        None => (Prefixed::unread(body), None),
        Some(limit) => {
            let (body, read) =
                body_prefix::read(body, &parts.headers, limit, gw.idle_timeout).await?;
            (body, Some(read.with_url_query(parts.uri.query())))
        }
    };
    facts.body = read.as_ref();
    let cleared = match decide(gw, &snap, agent, session, &facts, audit).await {
        Ok(cleared) => cleared,
        Err(e) => {
            if read.as_ref().is_some_and(|r| !r.complete) {
                body_prefix::drain(body, &parts.headers).await;
            }
            return Err(as_jsonrpc(e, read.as_ref()));
        }
    };
    let fresh = match cleared {
        Cleared::Now => None,
        Cleared::AfterApproval(fresh) => Some(fresh),
    };
    let (snap, agent) = match &fresh {
        None => (&snap, agent),
        // The wait may have taken minutes: the agent as it is now.
        Some(fresh) => (fresh, identify(fresh, session)?),
    };

    // `None` when the path was canonical already: no copy of it is made.
    let canonical = match path.into_canonical() {
        std::borrow::Cow::Owned(c) => Some(c),
        std::borrow::Cow::Borrowed(_) => None,
    };
    prepare(&mut parts, session, canonical.as_deref(), upgrade.is_some())?;
    let dest = Destination {
        host: &session.host,
        port: session.port,
        tls: session.transport == Transport::Tls,
    };
    let applying = inject::check(&parts, &dest, agent, snap).map_err(inject_refused)?;
    // A bodiless request with an OAuth2 token can be sent again if the
    // upstream refuses the token: its head is kept, before injection.
    let replay = (inject_oauth2::needs_tokens(&applying)
        && upgrade.is_none()
        && http_body::Body::is_end_stream(&body))
    .then(|| head_copy(&parts));
    // The path as the agent sent it, for a refusal in the body.
    let agent_path = (upgrade.is_some() || inject::body_encoding(&parts.headers).is_some())
        .then(|| parts.uri.path().to_owned());
    let mut injected = inject_credentials(gw, &mut parts, &dest, applying).await?;
    audit.secrets(std::mem::take(&mut injected.secrets));

    let why = || inject_body::Why {
        snap: snap.clone(),
        agent: agent.name.clone(),
        host: session.host.clone(),
        port: session.port,
        tls: dest.tls,
        path: agent_path.clone().unwrap_or_default(),
    };
    let ws_values = upgrade.as_ref().and_then(|_| injected.body.take());
    let (body, refused) = inject_body::agent_body(body, &mut parts, injected.body.take(), why);
    let sent = forward(
        gw,
        session,
        Request::from_parts(parts, AgentBody::Left(body)),
        upgrade,
        audit,
    )
    .await;
    // A body stopped at a misplaced placeholder fails the upstream
    // request (or was answered early): either way the agent gets the 403.
    if let Some(r) = refused.as_ref().and_then(|r| r.get()) {
        return Err(ProxyError::Exfiltration {
            reason: r.message.clone(),
            ungranted: r.ungranted.clone(),
        });
    }
    let mut forwarded = sent?;
    if let (Forwarded::Upgrade { relay, .. }, Some(values)) = (&mut forwarded, ws_values) {
        relay.keys = Some(inject_body::BodyKeys::new(values, why()));
    }
    if forwarded.status() == StatusCode::UNAUTHORIZED && !injected.oauth2.is_empty() {
        // The provider revoked or expired the token early: renew it, and
        // send the request once more if it has no body; else the agent
        // gets the 401 and the next request has a new token.
        for (secret, token) in &injected.oauth2 {
            gw.credentials.rejected(secret, token);
        }
        if let Some(mut parts) = replay {
            let applying = inject::check(&parts, &dest, agent, snap).map_err(inject_refused)?;
            let again = inject_credentials(gw, &mut parts, &dest, applying).await?;
            let empty = AgentBody::Right(http_body_util::Empty::new());
            forwarded =
                forward(gw, session, Request::from_parts(parts, empty), None, audit).await?;
            if forwarded.status() == StatusCode::UNAUTHORIZED {
                for (secret, token) in &again.oauth2 {
                    gw.credentials.rejected(secret, token);
                }
                return Err(ProxyError::Upstream(Failure::from(format!(
                    "the upstream refused a freshly renewed OAuth2 access token of secret(s) {} \
                     (401): check the secret's scopes and the client's permissions at the provider",
                    again.secrets.join(", ")
                ))));
            }
            injected.scrub.extend(again.scrub);
        }
    }
    // What was injected never comes back; the plaintexts are zeroized
    // when the scrubber drops: here, or with the response body.
    forwarded.scrub(injected.scrub)
}

/// The request head as it was before injection, for a replay.
fn head_copy(parts: &http::request::Parts) -> http::request::Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

fn inject_refused(e: inject::InjectError) -> ProxyError {
    match e {
        inject::InjectError::Exfiltration {
            ref name,
            ungranted,
            ..
        } => ProxyError::Exfiltration {
            ungranted: ungranted.then(|| name.clone()),
            reason: e.to_string(),
        },
        other => ProxyError::Unavailable(Failure::of(other)),
    }
}

/// Phase 6, once the placeholders are checked ([`inject::check`]: nothing
/// opened before): the OAuth2 tokens had (cached, or renewed
/// single-flight), then every applying secret injected.
async fn inject_credentials<'s>(
    gw: &Arc<Gateway>,
    parts: &mut http::request::Parts,
    dest: &Destination<'_>,
    applying: inject::Applying<'s>,
) -> Result<inject::Injected<'s>, ProxyError> {
    let tokens = if inject_oauth2::needs_tokens(&applying) {
        inject_oauth2::obtain(&gw.credentials, &applying)
            .await
            .map_err(ProxyError::Credential)?
    } else {
        inject_oauth2::Tokens::default()
    };
    let injected = applying
        .apply(parts, dest, &gw.vault, &tokens)
        .map_err(inject_refused)?;
    if !injected.scrub.is_empty() {
        // A compressed body cannot be scrubbed as it streams: ask for
        // none. (No `Accept-Encoding` would allow any coding, RFC 9110.)
        parts.headers.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
    }
    Ok(injected)
}

impl Forwarded {
    fn status(&self) -> StatusCode {
        match self {
            Forwarded::Stream(resp) => resp.status(),
            Forwarded::Upgrade { response, .. } => response.status(),
        }
    }

    /// Phase 7's last step: the response loses every injected value
    /// ([`super::scrub`]): its head at once, its body and trailers as they
    /// stream ([`super::scrub_body`]). A body that will be scrubbed loses
    /// its `Content-Length` (a placeholder is rarely the value's length;
    /// HTTP/1.1 agents get it chunked); one that is empty (`HEAD`, 204,
    /// 304) keeps it. A body with a `Content-Encoding` although identity
    /// was asked for cannot be scrubbed, so it is refused rather than
    /// passed on. After a 101, the upstream's WebSocket messages are
    /// scrubbed as they are relayed ([`super::ws_relay`]).
    fn scrub(mut self, scrubber: Scrubber<'_>) -> Result<Forwarded, ProxyError> {
        if scrubber.is_empty() {
            return Ok(self);
        }
        scrubber.response_head(self.headers_mut());
        let resp = match &mut self {
            Forwarded::Stream(resp) => resp,
            Forwarded::Upgrade { relay, .. } => {
                relay.scrub = Some(Box::new(BodyScrub::new(scrubber.into_owned())));
                return Ok(self);
            }
        };
        if http_body::Body::is_end_stream(resp.body()) {
            return Ok(self);
        }
        if let Some(coding) = resp
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .filter(|c| !c.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
        {
            return Err(ProxyError::Upstream(Failure::from(format!(
                "the upstream answered with Content-Encoding {:?} although asked for identity; \
                 a compressed body cannot be scrubbed of the injected secret, so it is not \
                 passed on (ask the API for an uncompressed answer)",
                String::from_utf8_lossy(coding.as_bytes())
            ))));
        }
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        resp.body_mut().scrub_with(scrubber.into_owned());
        Ok(self)
    }

    fn headers_mut(&mut self) -> &mut http::HeaderMap {
        match self {
            Forwarded::Stream(resp) => resp.headers_mut(),
            Forwarded::Upgrade { response, .. } => response.headers_mut(),
        }
    }
}

/// Phase 1: the session's agent, as the current snapshot knows it.
fn identify<'s>(snap: &'s Snapshot, session: &Session) -> Result<&'s AgentRecord, ProxyError> {
    snap.agent_by_name(&session.agent).ok_or_else(|| {
        ProxyError::UnknownAgent(format!("agent {} no longer exists", session.agent))
    })
}

fn session_host(session: &Session) -> SessionHost<'_> {
    SessionHost {
        host: &session.host,
        port: session.port,
        transport: session.transport,
    }
}

/// Phase 2: every authority in the request names the connection's server.
/// Without this an agent could open TLS to one host and address another
/// in the request (a Host-routed upstream would serve the other tenant),
/// and have the first one's credentials injected.
fn check_destination(req: &Request<Incoming>, session: &Session) -> Result<(), ProxyError> {
    target::check_authorities(req.uri(), req.headers(), &session_host(session)).map_err(|e| match e
    {
        AuthorityError::Mismatch { .. } => ProxyError::Exfiltration {
            reason: e.to_string(),
            ungranted: None,
        },
        _ => ProxyError::BadRequest(e.to_string()),
    })
}

/// Phase 3: the target, origin form, its path read once (see
/// [`crate::policy::canonical`]).
fn read_target(parts: &http::request::Parts) -> Result<PathForms<'_>, ProxyError> {
    target::read_target(&parts.method, &parts.uri)
        .map_err(|e| ProxyError::BadRequest(e.to_string()))
}

/// A policy refusal of a body read as JSON-RPC requests is answered as
/// JSON-RPC errors to their ids (see [`super::error`]); anything else, or
/// a body with no request in it, as usual.
fn as_jsonrpc(e: ProxyError, read: Option<&BodyRead>) -> ProxyError {
    // Only a body an MCP rule had read: a GraphQL refusal is the usual 403.
    let Some(messages) = read.and_then(BodyRead::jsonrpc_if_read) else {
        return e;
    };
    let ids: Vec<serde_json::Value> = messages.ids().cloned().collect();
    let policy = e.rule().is_some() || matches!(e, ProxyError::DeniedByDefault(_));
    if ids.is_empty() || !policy {
        return e;
    }
    ProxyError::JsonRpc {
        refusal: Box::new(e),
        ids,
        batch: messages.batch,
    }
}

/// Phase 5: the request as the upstream gets it: origin form with the
/// canonical path (`canonical`, or the path as it is when `None`), the
/// session's authority as the one `Host`, no hop-by-hop headers; with
/// `websocket`, the `Upgrade` the handshake needs.
fn prepare(
    parts: &mut http::request::Parts,
    session: &Session,
    canonical: Option<&str>,
    websocket: bool,
) -> Result<(), ProxyError> {
    strip_hop_by_hop(&mut parts.headers, websocket);
    if websocket {
        // No extension, so the agent's text frames can be read and
        // re-framed (permessage-deflate would hide them): see ws_relay.
        parts.headers.remove(http::header::SEC_WEBSOCKET_EXTENSIONS);
    }
    let authority = http::HeaderValue::try_from(target::outgoing_authority(&session_host(session)))
        .map_err(|_| ProxyError::BadRequest(format!("{} is not a valid host", session.host)))?;
    target::rewrite(parts, canonical, authority)
        .map_err(|e: TargetError| ProxyError::BadRequest(e.to_string()))
}

/// How a request passed policy; a refusal is the phase's error instead.
enum Cleared {
    /// Judged on the snapshot the request started with.
    Now,
    /// A person approved it. The wait may have taken minutes, so the rest
    /// of the request reads this snapshot, loaded after the decision.
    AfterApproval(Arc<Snapshot>),
}

/// Phase 4: policy. Refusals (blocked, denied by default, rate-limited,
/// approval denied or timed out) are errors; a request that may go on
/// says on which snapshot.
async fn decide(
    gw: &Arc<Gateway>,
    snap: &Snapshot,
    agent: &AgentRecord,
    session: &Session,
    facts: &RequestFacts<'_>,
    audit: &mut AuditGuard,
) -> Result<Cleared, ProxyError> {
    let charge = |snap: &Snapshot, rule: i64| match engine::charge(
        &snap.rules,
        &gw.limiter,
        rule,
        facts.agent,
    ) {
        RateOutcome::Allowed => Ok(()),
        RateOutcome::Limited { rule, retry_after } => {
            Err(ProxyError::RateLimited { rule, retry_after })
        }
    };
    // Asked only under deny with no allow rule: would one of the agent's
    // secrets be injected into this request? (The same test injection
    // makes, so a grant lets out exactly what it would carry a key to.)
    let granted = || {
        let dest = Destination {
            host: facts.host,
            port: facts.port,
            tls: session.transport == Transport::Tls,
        };
        !inject::applicable(snap, agent, &dest, facts.path.canonical()).is_empty()
    };
    match engine::evaluate(&snap.rules, &snap.default_for(agent), facts, granted) {
        Verdict::Allow { by } => {
            if let Permit::Rule(rule) = by {
                audit.decision(Decision::Allowed, Some(rule));
            }
            Ok(Cleared::Now)
        }
        Verdict::Block { rule } => Err(ProxyError::Blocked { rule }),
        Verdict::Unreadable { rule, why } => Err(ProxyError::BodyUnreadable { rule, why }),
        Verdict::Denied { scope } => Err(ProxyError::DeniedByDefault(DefaultDenial {
            scope,
            agent: agent.name.clone(),
            host: facts.host.to_owned(),
            port: facts.port,
        })),
        Verdict::Rate { rule } => {
            charge(snap, rule)?;
            Ok(Cleared::Now)
        }
        Verdict::Approve { rule, rate } => {
            let detail = facts.body.and_then(super::approval_detail::describe);
            let (approval, outcome) = gw
                .approvals
                .hold(NewApproval {
                    agent: facts.agent.as_str(),
                    method: facts.method,
                    host: facts.host,
                    path: facts.path.canonical(),
                    rule_id: rule,
                    detail: detail.as_deref(),
                })
                .await
                .map_err(|e| ProxyError::unavailable("cannot record the approval request", e))?;
            match outcome {
                ApprovalOutcome::Approved => {
                    audit.decision(Decision::Approved, Some(rule));
                    audit.detail(format!("approval {approval}"));
                    let snap = gw.snapshot.load();
                    if let Some(rate) = rate {
                        charge(&snap, rate)?;
                    }
                    Ok(Cleared::AfterApproval(snap))
                }
                ApprovalOutcome::Denied => Err(ProxyError::ApprovalDenied { rule, approval }),
                ApprovalOutcome::TimedOut => Err(ProxyError::ApprovalTimedOut {
                    rule,
                    approval,
                    timeout: gw.approvals.timeout(),
                }),
            }
        }
    }
}

/// Phase 7: send upstream; the response streams back as it arrives. A
/// 101 is bridged only when the agent asked for a WebSocket and the
/// upstream switched to one: any other switch (`h2c`, or one the agent
/// never asked for) would carry later traffic past policy and audit.
async fn forward(
    gw: &Arc<Gateway>,
    session: &Session,
    req: Request<AgentBody>,
    upgrade: Option<OnUpgrade>,
    audit: &mut AuditGuard,
) -> Result<Forwarded, ProxyError> {
    let key = UpstreamKey {
        addr: session.addr.get(),
        tls_name: session.tls_name.clone(),
        protocols: if req.version() == Version::HTTP_2 {
            Protocols::Http2OrHttp1
        } else {
            Protocols::Http1
        },
    };
    let req = req.map(|body| Counted::new(body, audit.up_counter()));
    let sent = Instant::now();
    let mut resp = match &upgrade {
        Some(_) => gw.upstreams.send_upgrade(&key, req).await?,
        None => gw.upstreams.send(&key, req).await?,
    };
    audit.head(sent.elapsed());
    audit.status(resp.status().as_u16());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(agent) = upgrade.filter(|_| is_websocket_switch(resp.headers())) else {
            return Err(ProxyError::Upstream(
                "the upstream switched protocols without being asked for a WebSocket; only \
                 WebSocket upgrades are forwarded"
                    .into(),
            ));
        };
        let upstream = hyper::upgrade::on(&mut resp);
        let (mut parts, _body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, true);
        return Ok(Forwarded::Upgrade {
            response: Response::from_parts(parts, ()),
            agent,
            upstream,
            relay: WsRelay::default(),
        });
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    parts.version = Version::HTTP_11;
    let body = Counted::new(body, audit.down_counter()).with_idle_timeout(gw.idle_timeout);
    Ok(Forwarded::Stream(Response::from_parts(
        parts,
        Scrubbed::passthrough(body),
    )))
}

/// Joins an upgraded agent connection to the upgraded upstream one until
/// either side closes; then audits. A WebSocket whose request had values
/// injected is relayed frame by frame ([`super::ws_relay`]): the agent's
/// placeholders resolved (one that may not resolve ends both connections,
/// audited as exfiltration), the upstream's messages scrubbed.
async fn bridge(agent: OnUpgrade, upstream: OnUpgrade, mut audit: AuditGuard, relay: WsRelay) {
    let (agent, upstream) = match tokio::try_join!(agent, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "protocol upgrade failed");
            return;
        }
    };
    let mut agent = TokioIo::new(agent);
    let mut upstream = TokioIo::new(upstream);
    let WsRelay {
        mut keys,
        mut scrub,
    } = relay;
    if keys.is_none() && scrub.is_none() {
        match tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
            Ok((up, down)) => {
                audit.up_counter().add(up);
                audit.down_counter().add(down);
            }
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended"),
        }
        return;
    }
    let (mut agent_r, mut agent_w) = tokio::io::split(agent);
    let (mut up_r, mut up_w) = tokio::io::split(upstream);
    let (mut up_bytes, mut down_bytes) = (0, 0);
    let (sent, received) = {
        let up = async {
            let r = match keys.as_mut() {
                Some(keys) => {
                    ws_relay::agent_to_upstream(&mut agent_r, &mut up_w, keys, &mut up_bytes).await
                }
                None => copy_counted(&mut agent_r, &mut up_w, &mut up_bytes).await,
            };
            if r.is_ok() {
                let _ = up_w.shutdown().await;
            }
            r
        };
        let down = async {
            let r = match scrub.as_deref_mut() {
                Some(scrub) => {
                    ws_relay::upstream_to_agent(&mut up_r, &mut agent_w, scrub, &mut down_bytes)
                        .await
                        .map_err(ws_relay::RelayError::from)
                }
                None => copy_counted(&mut up_r, &mut agent_w, &mut down_bytes).await,
            };
            if r.is_ok() {
                let _ = agent_w.shutdown().await;
            }
            r
        };
        tokio::pin!(up, down);
        let (mut sent, mut received) = (None, None);
        // A refusal, a protocol error or a broken stream on either side
        // ends both at once; a clean close of one waits for the other.
        while sent.is_none() || received.is_none() {
            let stop = tokio::select! {
                r = &mut up, if sent.is_none() => sent.insert(r).is_err(),
                r = &mut down, if received.is_none() => received.insert(r).is_err(),
            };
            if stop {
                break;
            }
        }
        (sent, received)
    };
    audit.up_counter().add(up_bytes);
    audit.down_counter().add(down_bytes);
    for ended in [sent, received].into_iter().flatten() {
        match ended {
            Err(ws_relay::RelayError::Refused(r)) => {
                audit.decision(Decision::Exfiltration, None);
                audit.detail(r.to_string());
            }
            Err(ws_relay::RelayError::Frame(FrameError::Io(e))) => {
                tracing::debug!(error = %e, "WebSocket ended");
            }
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket ended");
                audit.detail(e.to_string());
            }
            Ok(()) => {}
        }
    }
}

/// One direction of a bridge whose frames need no reading.
async fn copy_counted<R, W>(
    r: &mut R,
    w: &mut W,
    count: &mut u64,
) -> Result<(), ws_relay::RelayError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    *count = tokio::io::copy(r, w).await?;
    Ok(())
}
