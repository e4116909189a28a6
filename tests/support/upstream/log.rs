//! The request log: every request an upstream saw, for the tests to
//! inspect.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Version};
use hyper::body::{Body, Incoming};

use super::MAX_LOGGED_REQUESTS;
use super::conn::ConnInfo;

/// One request as the upstream saw it (recorded when its head arrives;
/// `body_len`/`body_complete` are filled in once the body has been read).
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// 1-based, in arrival order.
    pub id: u64,
    /// 1-based connection number (same value = same connection).
    pub conn_id: u64,
    pub peer: SocketAddr,
    pub method: String,
    /// Path and query, e.g. `/echo/x?a=1`.
    pub path: String,
    /// The URI authority (h2 `:authority`, or an absolute-form h1 target).
    pub authority: Option<String>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Every header in arrival order, names lower-case, values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// Request body bytes read by the endpoint (0 for `/stall*` and
    /// `/reset`, which do not read it; for `/ws`, the messages received).
    pub body_len: u64,
    /// Whether the body was read to its end.
    pub body_complete: bool,
    /// The body's first and last [`super::body::BODY_ENDS`] bytes (the
    /// same bytes twice for a short body).
    pub body_head: Vec<u8>,
    pub body_tail: Vec<u8>,
    pub tls: bool,
    /// Negotiated ALPN protocol (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
    /// SNI the client sent, if any.
    pub sni: Option<String>,
}

impl SeenRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// Whether `needle` occurs anywhere in the path+query, the authority,
    /// any header name or value, or the ends of the body kept (for "the
    /// placeholder never arrived").
    pub fn contains(&self, needle: &str) -> bool {
        let in_body = |b: &[u8]| {
            b.windows(needle.len().max(1))
                .any(|w| w == needle.as_bytes())
        };
        in_body(&self.body_head)
            || in_body(&self.body_tail)
            || self.path.contains(needle)
            || self
                .authority
                .as_deref()
                .is_some_and(|a| a.contains(needle))
            || self
                .headers
                .iter()
                .any(|(n, v)| n.contains(needle) || v.contains(needle))
    }
}

#[derive(Default)]
pub(super) struct RequestLog {
    pub(super) entries: VecDeque<SeenRequest>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) log: Mutex<RequestLog>,
    pub(super) next_request: AtomicU64,
    pub(super) connections: AtomicU64,
}

impl State {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, RequestLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn record(&self, req: &Request<Incoming>, conn: &ConnInfo) -> u64 {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let seen = SeenRequest {
            id,
            conn_id: conn.conn_id,
            peer: conn.peer,
            method: req.method().as_str().to_owned(),
            path: req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or_else(|| "/".to_owned()),
            authority: req.uri().authority().map(|a| a.as_str().to_owned()),
            version: version_str(req.version()).to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body_len: 0,
            body_complete: req.body().is_end_stream(),
            body_head: Vec::new(),
            body_tail: Vec::new(),
            tls: conn.tls,
            alpn: conn.alpn.clone(),
            sni: conn.sni.clone(),
        };
        let mut log = self.lock();
        if log.entries.len() >= MAX_LOGGED_REQUESTS {
            log.entries.pop_front();
        }
        log.entries.push_back(seen);
        id
    }

    /// A WebSocket message request `id`'s connection received: its bytes
    /// count as the request's body, one message after another.
    pub(super) fn message_received(&self, id: u64, data: &[u8]) {
        let mut log = self.lock();
        if let Some(r) = log.entries.iter_mut().rev().find(|r| r.id == id) {
            super::body::keep_ends(&mut r.body_head, &mut r.body_tail, data);
            r.body_len += data.len() as u64;
        }
    }

    pub(super) fn body_read(&self, id: u64, body: super::body::Drained) {
        let mut log = self.lock();
        if let Some(r) = log.entries.iter_mut().rev().find(|r| r.id == id) {
            r.body_len = body.len;
            r.body_complete = body.complete;
            r.body_head = body.head;
            r.body_tail = body.tail;
        }
    }
}

pub(super) fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}
