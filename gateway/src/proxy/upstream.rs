//! Connections to upstream servers, pooled per (address, TLS name).
//!
//! hyper-util's pooled client keys connections by the URI's authority and
//! resolves that name itself; the gateway must instead dial the address it
//! chose (the agent's original destination, or a checked resolution) while
//! verifying the certificate for the name the agent asked for. So this
//! module keeps its own small pool over hyper's connection API: one shared
//! HTTP/2 connection per key, or idle HTTP/1.1 connections (at most
//! [`MAX_IDLE_PER_KEY`], dropped after [`IDLE_EXPIRY`]).
//!
//! Each HTTP/1.1 connection's dispatcher (hyper's `Connection` future)
//! runs on a task of its own. Driving it from the request's task instead,
//! so a request never wakes another task, was built and measured (issue 19,
//! BENCHMARKS.md "Fewer hand-offs"): it made no difference at 16
//! connections and cost more CPU per request at one, where the spawned
//! dispatcher lets the upstream's TLS and the agent's run on both cores.
//! Not kept.
//!
//! The protocol follows the agent's: an agent speaking HTTP/2 is offered
//! to the upstream as `h2` then `http/1.1` (the upstream picks), an agent
//! speaking HTTP/1.1 is forwarded over HTTP/1.1. Translating every
//! HTTP/1.1 request to HTTP/2 cost a third of the gateway's CPU in the
//! first profile, for no gain to an HTTP/1.1 client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::body::Counted;
use super::error::ProxyError;

/// The body of requests sent upstream, counted: the agent's, or none for
/// a bodiless request sent again (an OAuth2 token renewed after a 401).
pub type UpBody = Counted<AgentBody>;

/// The agent's request body (read for placeholders when it is JSON or
/// a form: [`super::inject_body`]), or an empty one.
pub type AgentBody =
    http_body_util::Either<super::inject_body::RequestBody, http_body_util::Empty<Bytes>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// As many as the agents' concurrent requests to one upstream, within
/// reason: at 64, a burst of 256 agent connections closed 192 upstream
/// connections after each round and opened them again (a TLS handshake,
/// ~250 µs of CPU, per request), which was most of the CPU per request
/// at 256 connections (BENCHMARKS.md, issue 19).
pub const MAX_IDLE_PER_KEY: usize = 512;
pub const IDLE_EXPIRY: Duration = Duration::from_secs(90);

/// Which protocols may be offered to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocols {
    /// HTTP/1.1 only.
    Http1,
    /// `h2` preferred, HTTP/1.1 accepted.
    Http2OrHttp1,
}

/// Which upstream connection a request may use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamKey {
    pub addr: SocketAddr,
    /// The name the certificate must be valid for (and the SNI sent);
    /// `None` for plain HTTP. Shared with the session: a key is made per
    /// request and cloned into its pooled connection's check-in.
    pub tls_name: Option<Arc<ServerName<'static>>>,
    pub protocols: Protocols,
}

enum Idle {
    H2(http2::SendRequest<UpBody>),
    H1(Vec<(http1::SendRequest<UpBody>, Instant)>),
}

struct Inner {
    /// Offers `h2` and `http/1.1`.
    tls: TlsConnector,
    /// Offers `http/1.1` only.
    tls_h1: TlsConnector,
    idle: Mutex<HashMap<UpstreamKey, Idle>>,
    headers_timeout: Duration,
}

/// The upstream connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Upstreams {
    inner: Arc<Inner>,
}

enum Conn {
    H1(http1::SendRequest<UpBody>),
    H2(http2::SendRequest<UpBody>),
}

impl Upstreams {
    /// `tls` offers `h2` and `http/1.1`; an HTTP/1.1-only copy is made.
    pub fn new(tls: Arc<ClientConfig>, headers_timeout: Duration) -> Self {
        let mut h1 = (*tls).clone();
        h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Upstreams {
            inner: Arc::new(Inner {
                tls_h1: TlsConnector::from(Arc::new(h1)),
                tls: TlsConnector::from(tls),
                idle: Mutex::default(),
                headers_timeout,
            }),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<UpstreamKey, Idle>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checkout(&self, key: &UpstreamKey) -> Option<Conn> {
        let mut idle = self.idle();
        match idle.get_mut(key)? {
            Idle::H2(sender) if !sender.is_closed() => Some(Conn::H2(sender.clone())),
            Idle::H2(_) => {
                idle.remove(key);
                None
            }
            Idle::H1(list) => {
                // Not `is_ready()`: a connection checked in as its last
                // response ended may not be ready yet; `send_on` waits.
                while let Some((sender, since)) = list.pop() {
                    if !sender.is_closed() && since.elapsed() < IDLE_EXPIRY {
                        return Some(Conn::H1(sender));
                    }
                }
                None
            }
        }
    }

    fn checkin_h1(&self, key: UpstreamKey, sender: http1::SendRequest<UpBody>) {
        let mut idle = self.idle();
        let entry = idle.entry(key).or_insert_with(|| Idle::H1(Vec::new()));
        if let Idle::H1(list) = entry {
            // Check-ins are pushed in time order and check-outs pop the
            // newest, so the expired ones are a prefix: cut it without
            // visiting the rest (hundreds, under load). Closed ones are
            // skipped at check-out, and swept only when the list is full.
            let now = Instant::now();
            let expired =
                list.partition_point(|(_, since)| now.duration_since(*since) >= IDLE_EXPIRY);
            list.drain(..expired);
            if list.len() >= MAX_IDLE_PER_KEY {
                list.retain(|(s, _)| !s.is_closed());
            }
            if list.len() < MAX_IDLE_PER_KEY {
                list.push((sender, now));
            }
        }
    }

    /// Sends `req` upstream and waits (bounded) for the response headers.
    pub async fn send(
        &self,
        key: &UpstreamKey,
        req: Request<UpBody>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let (conn, fresh) = match self.checkout(key) {
            Some(conn) => (conn, false),
            None => (self.connect(key, false).await?, true),
        };
        match self.send_on(key, conn, req).await {
            Ok(resp) => Ok(resp),
            // A pooled connection the server had already closed: the
            // request was not sent, so it is safe to try a new one.
            Err(SendError::NotSent(req)) if !fresh => {
                let conn = self.connect(key, false).await?;
                self.send_on(key, conn, *req)
                    .await
                    .map_err(SendError::into_proxy)
            }
            Err(e) => Err(e.into_proxy()),
        }
    }

    async fn send_on(
        &self,
        key: &UpstreamKey,
        conn: Conn,
        mut req: Request<UpBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let timeout = self.inner.headers_timeout;
        match conn {
            Conn::H2(mut sender) => {
                prepare_h2(&mut req, key).map_err(SendError::Other)?;
                let fut = sender.try_send_request(req);
                let resp = wait_headers(timeout, fut).await?;
                Ok(resp.map(|body| UpstreamBody::new(body, None)))
            }
            Conn::H1(mut sender) => {
                // A pooled connection is checked in when the previous
                // response's body ended, which may be a moment before
                // hyper's connection task is ready for the next request.
                match tokio::time::timeout(timeout, sender.ready()).await {
                    Ok(Ok(())) => {}
                    // Closed (or stuck) before anything was sent on it.
                    Ok(Err(_)) | Err(_) => return Err(SendError::NotSent(Box::new(req))),
                }
                prepare_h1(&mut req);
                let fut = sender.try_send_request(req);
                let resp = wait_headers(timeout, fut).await?;
                // Back to the pool when the response body ends: no task
                // per request waiting for the connection to become ready.
                let checkin = Checkin {
                    pool: self.clone(),
                    key: key.clone(),
                    sender,
                };
                Ok(resp.map(|body| UpstreamBody::new(body, Some(checkin))))
            }
        }
    }

    /// Opens a new connection; with `upgrades`, an HTTP/1.1 connection that
    /// may switch protocols (WebSocket), never pooled.
    async fn connect(&self, key: &UpstreamKey, upgrades: bool) -> Result<Conn, ProxyError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(key.addr))
            .await
            .map_err(|_| {
                ProxyError::UpstreamTimeout(format!("connecting to {} timed out", key.addr))
            })?
            .map_err(|e| ProxyError::upstream(format!("cannot connect to {}", key.addr), e))?;
        let _ = tcp.set_nodelay(true);
        let Some(name) = &key.tls_name else {
            return handshake_h1(TokioIo::new(tcp), upgrades).await;
        };
        let connector = match (key.protocols, upgrades) {
            (Protocols::Http2OrHttp1, false) => &self.inner.tls,
            _ => &self.inner.tls_h1,
        };
        let tls =
            tokio::time::timeout(TLS_TIMEOUT, connector.connect(ServerName::clone(name), tcp))
                .await
                .map_err(|_| {
                    ProxyError::UpstreamTimeout(format!(
                        "TLS handshake with {} timed out",
                        key.addr
                    ))
                })?
                .map_err(|e| {
                    let context =
                        format!("TLS with upstream {} ({}) failed", name.to_str(), key.addr);
                    ProxyError::upstream(context, e)
                })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let io = TokioIo::new(tls);
        if h2 && !upgrades {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|e| {
                    ProxyError::upstream(format!("HTTP/2 handshake with {} failed", key.addr), e)
                })?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                }
            });
            let mut idle = self.idle();
            idle.insert(key.clone(), Idle::H2(sender.clone()));
            return Ok(Conn::H2(sender));
        }
        handshake_h1(io, upgrades).await
    }

    /// Sends an upgrade request (WebSocket) on a fresh HTTP/1.1 connection.
    pub async fn send_upgrade(
        &self,
        key: &UpstreamKey,
        mut req: Request<UpBody>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let Conn::H1(mut sender) = self.connect(key, true).await? else {
            return Err(ProxyError::Upstream("upgrade needs HTTP/1.1".into()));
        };
        prepare_h1(&mut req);
        let resp = wait_headers(self.inner.headers_timeout, sender.try_send_request(req))
            .await
            .map_err(SendError::into_proxy)?;
        // Never pooled: the connection is the agent's once upgraded.
        Ok(resp.map(|body| UpstreamBody::new(body, None)))
    }
}

async fn handshake_h1<T>(io: TokioIo<T>, upgrades: bool) -> Result<Conn, ProxyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| ProxyError::upstream("HTTP/1.1 handshake failed", e))?;
    tokio::spawn(async move {
        let result = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
        }
    });
    Ok(Conn::H1(sender))
}

/// An HTTP/1.1 connection to return to the pool once its response is read.
struct Checkin {
    pool: Upstreams,
    key: UpstreamKey,
    sender: http1::SendRequest<UpBody>,
}

/// An upstream response body; over a pooled HTTP/1.1 connection it checks
/// the connection back in when the body ends (or, if hyper never polls a
/// body it knows is empty, when it is dropped). A body dropped before its
/// end leaves the connection to close with it.
pub struct UpstreamBody {
    inner: Incoming,
    checkin: Option<Checkin>,
}

impl UpstreamBody {
    fn new(inner: Incoming, checkin: Option<Checkin>) -> Self {
        UpstreamBody { inner, checkin }
    }

    fn check_in(&mut self) {
        if let Some(c) = self.checkin.take() {
            c.pool.checkin_h1(c.key, c.sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.check_in(),
            // The connection is broken: never reuse it.
            Some(Err(_)) => self.checkin = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.check_in();
        }
    }
}

enum SendError {
    NotSent(Box<Request<UpBody>>),
    Other(ProxyError),
}

impl SendError {
    fn into_proxy(self) -> ProxyError {
        match self {
            SendError::NotSent(_) => ProxyError::Upstream("the upstream connection closed".into()),
            SendError::Other(e) => e,
        }
    }
}

async fn wait_headers(
    timeout: Duration,
    fut: impl Future<
        Output = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpBody>>>,
    >,
) -> Result<Response<Incoming>, SendError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(SendError::Other(ProxyError::UpstreamTimeout(format!(
            "the upstream sent no response headers within {}s",
            timeout.as_secs()
        )))),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(mut e)) => match e.take_message() {
            Some(req) => Err(SendError::NotSent(Box::new(req))),
            None => Err(SendError::Other(ProxyError::upstream(
                "the upstream failed",
                e.into_error(),
            ))),
        },
    }
}

/// HTTP/1.1 wants the origin form (`/path?q`). The one `Host` header is
/// the session's authority, written by the pipeline
/// ([`super::target::rewrite`]), never the agent's.
fn prepare_h1(req: &mut Request<UpBody>) {
    *req.version_mut() = Version::HTTP_11;
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = Uri::from(pq);
    }
}

/// HTTP/2 wants `:scheme`, `:authority` and `:path`. The authority is the
/// `Host` the pipeline wrote from the session; the URI is assembled from
/// parts, never by formatting text, where a `:path` that does not start
/// with `/` could have become part of the authority.
fn prepare_h2(req: &mut Request<UpBody>, key: &UpstreamKey) -> Result<(), ProxyError> {
    *req.version_mut() = Version::HTTP_2;
    let host = req
        .headers_mut()
        .remove(http::header::HOST)
        .ok_or_else(|| ProxyError::BadRequest("the request has no host".into()))?;
    let authority = http::uri::Authority::try_from(host.as_bytes())
        .map_err(|_| ProxyError::BadRequest("the request's host is not valid".into()))?;
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if !(pq.as_str().starts_with('/') || pq.as_str() == "*") {
        return Err(ProxyError::BadRequest(
            "the request target is not in origin form".into(),
        ));
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if key.tls_name.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = Some(authority);
    parts.path_and_query = Some(pq);
    *req.uri_mut() = Uri::from_parts(parts)
        .map_err(|_| ProxyError::BadRequest("the request's host is not valid".into()))?;
    Ok(())
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
