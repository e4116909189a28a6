//! Real, local upstream servers for the end-to-end tests.
//!
//! * [`TestCa`]: a throwaway CA (ECDSA P-256) whose certificate is written to
//!   a PEM file (give it to the gateway as `AIRLOCK_UPSTREAM_CA` and to
//!   clients that talk to an upstream directly) and that mints server
//!   certificates.
//! * [`Upstream`]: an HTTPS (or plain HTTP) server on `127.0.0.1:0` (and
//!   optionally `[::1]:0`) that records every request it sees and serves a
//!   fixed set of endpoints (`/echo`, `/sse`, `/chunked`, `/bytes`,
//!   `/status/CODE`, `/redirect`, `/reflect`, `/leak`, `/stall`, `/stall-headers`,
//!   `/reset`, `/ws`, `/switch`).
//!
//! The server runs on its own thread with its own Tokio runtime, so it works
//! the same from plain `#[test]` functions and from `#[tokio::test]`
//! functions, and dropping the [`Upstream`] stops everything it started
//! (listeners, connections, streaming tasks).
//!
//! Its parts: `ca` (the CA and rustls configs), `opts` (what to serve),
//! `conn` (accept, TLS, HTTP/1.1 or h2 by ALPN), `endpoints` (the handler
//! and plain endpoints), `streaming` (SSE, chunks, downloads, trailers,
//! stalls), `leak` (the key handed back), `upgrade` (WebSocket, h2c switch), `body` (response bodies
//! and the byte pattern), `log` (the request log).

mod body;
mod ca;
mod conn;
mod endpoints;
mod leak;
mod log;
mod opts;
mod streaming;
mod upgrade;

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;

// The whole interface, whichever parts a test binary uses.
#[allow(unused_imports)]
pub use body::{pattern, pattern_byte};
#[allow(unused_imports)]
pub use ca::{ServerCert, TestCa};
pub use log::SeenRequest;
pub use opts::{Protocols, UpstreamOpts};

use conn::{Server, accept_loop};
use log::State;

/// How long `/stall`, `/stall-headers` and a WebSocket session may last.
pub const STALL_CAP: Duration = Duration::from_secs(300);
/// Hard cap on the life of one connection.
const CONN_CAP: Duration = Duration::from_secs(330);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 512;
/// Request log entries kept (oldest are dropped beyond this).
pub const MAX_LOGGED_REQUESTS: usize = 10_000;

/// Default SANs of an [`Upstream`]'s certificate; the first one is its
/// [`Upstream::host`].
pub const DEFAULT_NAMES: &[&str] = &["api.test.local", "localhost", "127.0.0.1", "::1"];

/// A running upstream server; stops (listeners, connections, streams) on
/// drop.
pub struct Upstream {
    addr: SocketAddr,
    addr_v6: Option<SocketAddr>,
    tls: bool,
    host: String,
    ca: Arc<TestCa>,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("addr_v6", &self.addr_v6)
            .field("tls", &self.tls)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Binds, starts serving and returns at once (the listeners are bound
    /// before this returns, so connecting right away works). Panics on
    /// setup failure. Callable from sync and async tests alike.
    pub fn start(opts: UpstreamOpts) -> Upstream {
        let ca = opts
            .ca
            .clone()
            .unwrap_or_else(|| Arc::new(TestCa::new_temp()));
        assert!(!opts.names.is_empty(), "UpstreamOpts::names is empty");
        let tls = opts.tls.then(|| {
            let alpn: &[&[u8]] = match opts.protocols {
                Protocols::Auto => &[b"h2", b"http/1.1"],
                Protocols::Http1Only => &[b"http/1.1"],
                Protocols::Http2Only => &[b"h2"],
            };
            TlsAcceptor::from(ca.server_config(&opts.names, alpn))
        });

        let mut listeners = Vec::new();
        let l4 = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = l4.local_addr().expect("local addr");
        listeners.push(l4);
        let mut addr_v6 = None;
        if opts.ipv6 {
            let l6 = StdTcpListener::bind("[::1]:0").expect("bind [::1]:0");
            addr_v6 = Some(l6.local_addr().expect("local addr v6"));
            listeners.push(l6);
        }
        for l in &listeners {
            l.set_nonblocking(true).expect("nonblocking listener");
        }

        let state = Arc::new(State::default());
        let server = Arc::new(Server {
            tls,
            protocols: opts.protocols,
            state: state.clone(),
            conn_limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("upstream-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("upstream-rt")
                    .enable_all()
                    .build()
                    .expect("upstream runtime");
                rt.block_on(async move {
                    for l in listeners {
                        let l = tokio::net::TcpListener::from_std(l).expect("tokio listener");
                        tokio::spawn(accept_loop(l, server.clone()));
                    }
                    // Resolves when the Upstream is dropped (sender dropped).
                    let _ = stop_rx.await;
                });
                // Drops every task: accept loops, connections, producers.
                rt.shutdown_background();
            })
            .expect("spawn upstream thread");

        Upstream {
            addr,
            addr_v6,
            tls: opts.tls,
            host: opts.names[0].clone(),
            ca,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The IPv4 listening address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The IPv4 port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The `[::1]:PORT` address if started `with_ipv6()` (another port).
    pub fn addr_v6(&self) -> Option<SocketAddr> {
        self.addr_v6
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The first certificate name (default `api.test.local`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `SCHEME://HOST:PORT{path}` with [`Upstream::host`]; needs name
    /// resolution, e.g. curl `--resolve` ([`Upstream::curl_resolve`]).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}:{}{}", self.scheme(), self.host, self.port(), path)
    }

    /// `SCHEME://127.0.0.1:PORT{path}`.
    pub fn ip_url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme(), self.addr, path)
    }

    /// `HOST:PORT:127.0.0.1`, the value of curl's `--resolve`.
    pub fn curl_resolve(&self) -> String {
        format!("{}:{}:127.0.0.1", self.host, self.port())
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> &Arc<TestCa> {
        &self.ca
    }

    /// Shorthand for `self.ca().ca_pem_path()`.
    pub fn ca_pem_path(&self) -> &Path {
        self.ca.ca_pem_path()
    }

    /// Snapshot of the request log (oldest first, at most
    /// [`MAX_LOGGED_REQUESTS`]).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.lock().entries.iter().cloned().collect()
    }

    /// Logged requests whose path (without query) starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<SeenRequest> {
        self.state
            .lock()
            .entries
            .iter()
            .filter(|r| r.path_only().starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn last_request(&self) -> Option<SeenRequest> {
        self.state.lock().entries.back().cloned()
    }

    pub fn clear_requests(&self) {
        self.state.lock().entries.clear();
    }

    /// Whether `needle` occurs in any logged request's path, authority or
    /// headers.
    pub fn saw(&self, needle: &str) -> bool {
        self.state.lock().entries.iter().any(|r| r.contains(needle))
    }

    /// Number of connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Polls (blocking this thread, every 10 ms) until at least `n` requests
    /// are logged or `timeout` passes; returns the log either way.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<SeenRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if reqs.len() >= n || Instant::now() >= deadline {
                return reqs;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Async twin of [`Upstream::wait_for_requests`] (does not block the
    /// calling runtime).
    pub async fn wait_for_requests_async(&self, n: usize, timeout: Duration) -> Vec<SeenRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if reqs.len() >= n || Instant::now() >= deadline {
                return reqs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server (same as dropping it).
    pub fn shutdown(self) {}
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
