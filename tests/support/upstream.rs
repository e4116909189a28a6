//! Real, local upstream servers for the end-to-end tests.
//!
//! * [`TestCa`]: a throwaway CA (ECDSA P-256) whose certificate is written to
//!   a PEM file (give it to the gateway as `AIRLOCK_UPSTREAM_CA` and to
//!   clients that talk to an upstream directly) and that mints server
//!   certificates.
//! * [`Upstream`]: an HTTPS (or plain HTTP) server on `127.0.0.1:0` (and
//!   optionally `[::1]:0`) that records every request it sees and serves a
//!   fixed set of endpoints (`/echo`, `/sse`, `/chunked`, `/bytes`,
//!   `/status/CODE`, `/redirect`, `/reflect`, `/stall`, `/stall-headers`,
//!   `/reset`, `/ws`, `/switch`).
//!
//! The server runs on its own thread with its own Tokio runtime, so it works
//! the same from plain `#[test]` functions and from `#[tokio::test]`
//! functions, and dropping the [`Upstream`] stops everything it started
//! (listeners, connections, streaming tasks).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

/// How long `/stall`, `/stall-headers` and a WebSocket session may last.
pub const STALL_CAP: Duration = Duration::from_secs(300);
/// Hard cap on the life of one connection.
const CONN_CAP: Duration = Duration::from_secs(330);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 512;
/// Request log entries kept (oldest are dropped beyond this).
pub const MAX_LOGGED_REQUESTS: usize = 10_000;
/// Limits on the query parameters of the streaming endpoints.
const MAX_N: u64 = 100_000;
const MAX_CHUNK: u64 = 4 << 20;
const MAX_TOTAL_BYTES: u64 = 64 << 30;
const MAX_INTERVAL_MS: u64 = 60_000;
/// Frame size of `/bytes`.
const STREAM_CHUNK: u64 = 1 << 20;
const WS_MAX_MESSAGE: usize = 16 << 20;

/// Default SANs of an [`Upstream`]'s certificate; the first one is its
/// [`Upstream::host`].
pub const DEFAULT_NAMES: &[&str] = &["api.test.local", "localhost", "127.0.0.1", "::1"];

static CA_FILE_SEQ: AtomicU64 = AtomicU64::new(0);

fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------
// TestCa
// ---------------------------------------------------------------------------

/// A throwaway certificate authority (ECDSA P-256, valid from a day ago for
/// 30 days).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem: String,
    pem_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("pem_path", &self.pem_path)
            .finish_non_exhaustive()
    }
}

/// A server certificate (leaf only; the CA is a root) and its PKCS#8 key.
#[derive(Debug)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: PrivatePkcs8KeyDer<'static>,
}

impl ServerCert {
    /// The chain to serve (just the leaf).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

fn validity(params: &mut rcgen::CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
}

impl TestCa {
    /// Creates a CA and writes its certificate to a new file
    /// `upstream-ca-N.pem` in `dir` (created if missing).
    pub fn new(dir: &Path) -> TestCa {
        Self::build(dir, None)
    }

    /// Like [`TestCa::new`], in a temporary directory owned by the CA.
    pub fn new_temp() -> TestCa {
        let tmp = tempfile::tempdir().expect("upstream CA tempdir");
        let dir = tmp.path().to_path_buf();
        Self::build(&dir, Some(tmp))
    }

    fn build(dir: &Path, tmp: Option<tempfile::TempDir>) -> TestCa {
        use rcgen::{BasicConstraints, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(DnType::CommonName, "Airlock Test Upstream CA");
        dn.push(DnType::OrganizationName, "Airlock tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let pem = issuer.pem();
        std::fs::create_dir_all(dir).expect("create CA dir");
        let seq = CA_FILE_SEQ.fetch_add(1, Ordering::Relaxed);
        let pem_path = dir.join(format!("upstream-ca-{seq}.pem"));
        std::fs::write(&pem_path, &pem).expect("write CA PEM");
        TestCa {
            issuer,
            pem,
            pem_path,
            _tmp: tmp,
        }
    }

    /// The file holding the CA certificate (PEM).
    pub fn ca_pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Mints a server certificate for `names`; each is an IP address SAN if it
    /// parses as one (`127.0.0.1`, `::1`), else a DNS name SAN.
    pub fn mint<S: AsRef<str>>(&self, names: &[S]) -> ServerCert {
        use rcgen::{DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        assert!(!names.is_empty(), "a server certificate needs a name");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("leaf params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// A rustls server config with a fresh certificate for `names`, offering
    /// the given ALPN protocols (e.g. `&[b"h2", b"http/1.1"]`).
    pub fn server_config<S: AsRef<str>>(
        &self,
        names: &[S],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let cert = self.mint(names);
        let mut cfg = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(cert.chain(), cert.key())
            .expect("server cert");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A rustls client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add CA root");
        let mut cfg = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

// ---------------------------------------------------------------------------
// Options and request log
// ---------------------------------------------------------------------------

/// Which HTTP versions an [`Upstream`] speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocols {
    /// TLS: ALPN `h2` and `http/1.1` (the negotiated one is enforced; without
    /// ALPN both are accepted). Plain: HTTP/1.1 and h2c prior knowledge.
    #[default]
    Auto,
    /// TLS: ALPN `http/1.1` only. Plain: HTTP/1.1 only.
    Http1Only,
    /// TLS: ALPN `h2` only (a client offering only `http/1.1` fails the
    /// handshake). Plain: h2c prior knowledge only.
    Http2Only,
}

/// Options of [`Upstream::start`]. `UpstreamOpts::default()` is HTTPS with
/// ALPN h2 + http/1.1, a fresh CA, [`DEFAULT_NAMES`], IPv4 only.
#[derive(Clone, Debug)]
pub struct UpstreamOpts {
    /// CA that signs the server certificate; a fresh one (in its own temp
    /// dir) when `None`.
    pub ca: Option<Arc<TestCa>>,
    /// `false`: serve plain HTTP (no TLS).
    pub tls: bool,
    pub protocols: Protocols,
    /// SANs of the server certificate; the first is [`Upstream::host`].
    pub names: Vec<String>,
    /// Also listen on `[::1]:0`.
    pub ipv6: bool,
}

impl Default for UpstreamOpts {
    fn default() -> Self {
        UpstreamOpts {
            ca: None,
            tls: true,
            protocols: Protocols::Auto,
            names: DEFAULT_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            ipv6: false,
        }
    }
}

impl UpstreamOpts {
    /// HTTPS, ALPN h2 + http/1.1 (same as `default()`).
    pub fn https() -> Self {
        Self::default()
    }

    /// Plain HTTP (HTTP/1.1 and h2c prior knowledge).
    pub fn plain_http() -> Self {
        UpstreamOpts {
            tls: false,
            ..Self::default()
        }
    }

    pub fn http1_only(mut self) -> Self {
        self.protocols = Protocols::Http1Only;
        self
    }

    pub fn http2_only(mut self) -> Self {
        self.protocols = Protocols::Http2Only;
        self
    }

    pub fn with_ca(mut self, ca: Arc<TestCa>) -> Self {
        self.ca = Some(ca);
        self
    }

    pub fn with_names<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.names = names.iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }

    pub fn with_ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }
}

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
    /// Request body bytes read by the endpoint (0 for `/stall*`, `/reset`,
    /// `/ws`, which do not read it).
    pub body_len: u64,
    /// Whether the body was read to its end.
    pub body_complete: bool,
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

    /// Whether `needle` occurs anywhere in the path+query, the authority or
    /// any header name or value (for "the placeholder never arrived").
    pub fn contains(&self, needle: &str) -> bool {
        self.path.contains(needle)
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
struct RequestLog {
    entries: VecDeque<SeenRequest>,
}

#[derive(Default)]
struct State {
    log: Mutex<RequestLog>,
    next_request: AtomicU64,
    connections: AtomicU64,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, RequestLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, req: &Request<Incoming>, conn: &ConnInfo) -> u64 {
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

    fn body_read(&self, id: u64, len: u64, complete: bool) {
        let mut log = self.lock();
        if let Some(r) = log.entries.iter_mut().rev().find(|r| r.id == id) {
            r.body_len = len;
            r.body_complete = complete;
        }
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

// ---------------------------------------------------------------------------
// Upstream
// ---------------------------------------------------------------------------

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

/// The byte at `offset` of the bodies of `/bytes` and `/chunked`
/// (`a`..`z` repeating).
pub fn pattern_byte(offset: u64) -> u8 {
    b'a' + (offset % 26) as u8
}

/// `len` bytes of the `/bytes` / `/chunked` body pattern starting at
/// `offset`; `pattern(0, size)` is the whole body of `/bytes?size=SIZE`.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(offset + i)).collect()
}

fn pattern_slice(offset: u64, len: u64) -> Bytes {
    static BASE: OnceLock<Bytes> = OnceLock::new();
    let base = BASE.get_or_init(|| Bytes::from(pattern(0, (MAX_CHUNK + 26) as usize)));
    let start = (offset % 26) as usize;
    base.slice(start..start + len as usize)
}

// ---------------------------------------------------------------------------
// Server plumbing
// ---------------------------------------------------------------------------

struct Server {
    tls: Option<TlsAcceptor>,
    protocols: Protocols,
    state: Arc<State>,
    conn_limit: Arc<Semaphore>,
}

struct ConnInfo {
    conn_id: u64,
    peer: SocketAddr,
    tls: bool,
    alpn: Option<String>,
    sni: Option<String>,
    /// Set by `/reset`: abort the connection (with an RST).
    kill: Notify,
    reset: Arc<AtomicBool>,
}

async fn accept_loop(listener: tokio::net::TcpListener, server: Arc<Server>) {
    loop {
        let Ok(permit) = server.conn_limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONN_CAP, server.serve(stream, peer)).await;
        });
    }
}

impl Server {
    async fn serve(&self, stream: TcpStream, peer: SocketAddr) {
        let conn_id = self.state.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let reset = Arc::new(AtomicBool::new(false));
        let io = ResetOnDrop {
            inner: stream,
            reset: reset.clone(),
        };
        match &self.tls {
            Some(acceptor) => {
                let tls =
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                let (_, session) = tls.get_ref();
                let info = ConnInfo {
                    conn_id,
                    peer,
                    tls: true,
                    alpn: session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                    sni: session.server_name().map(str::to_owned),
                    kill: Notify::new(),
                    reset,
                };
                self.serve_http(TokioIo::new(tls), Arc::new(info)).await;
            }
            None => {
                let info = ConnInfo {
                    conn_id,
                    peer,
                    tls: false,
                    alpn: None,
                    sni: None,
                    kill: Notify::new(),
                    reset,
                };
                self.serve_http(TokioIo::new(io), Arc::new(info)).await;
            }
        }
    }

    async fn serve_http<I>(&self, io: TokioIo<I>, info: Arc<ConnInfo>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(256 << 10);
        // Enforce what ALPN negotiated, like a real server.
        let builder = match (self.protocols, info.alpn.as_deref()) {
            (Protocols::Http1Only, _) | (_, Some("http/1.1")) => builder.http1_only(),
            (Protocols::Http2Only, _) | (_, Some("h2")) => builder.http2_only(),
            _ => builder,
        };
        let state = self.state.clone();
        let svc_info = info.clone();
        let service =
            hyper::service::service_fn(move |req| handle(req, state.clone(), svc_info.clone()));
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::select! {
            _ = conn => {}
            _ = info.kill.notified() => {}
        }
    }
}

/// The TCP stream under TLS/HTTP; if `/reset` was hit, dropping it sends an
/// RST (zero linger) instead of a FIN.
struct ResetOnDrop {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

type RespBody = BoxBody<Bytes, io::Error>;

fn full(body: impl Into<Bytes>) -> RespBody {
    Full::new(body.into()).map_err(|e| match e {}).boxed()
}

fn empty() -> RespBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A response body fed by a producer task through a small channel (so
/// memory stays flat and the producer stops when the client goes away).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    exact_len: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

fn channel_body(exact_len: Option<u64>) -> (mpsc::Sender<Bytes>, RespBody) {
    let (tx, rx) = mpsc::channel(2);
    (tx, ChannelBody { rx, exact_len }.boxed())
}

/// Sleeps `d`, or returns `false` early if the body's receiver is gone.
async fn pause(tx: &mpsc::Sender<Bytes>, d: Duration) -> bool {
    if d.is_zero() {
        return !tx.is_closed();
    }
    tokio::select! {
        _ = tx.closed() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Reads a request body to its end, counting (not storing) it.
async fn drain(mut body: Incoming) -> (u64, bool) {
    let mut n = 0u64;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                }
            }
            Some(Err(_)) => return (n, false),
            None => return (n, true),
        }
    }
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

fn text(status: StatusCode, msg: impl Into<String>) -> Response<RespBody> {
    let mut msg = msg.into();
    msg.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(msg))
        .expect("response")
}

fn bad_request(msg: String) -> Response<RespBody> {
    text(StatusCode::BAD_REQUEST, msg)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("response")
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(serde_urlencoded::from_str(q.unwrap_or("")).unwrap_or_default())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric parameter in `0..=max`, `default` when absent; the error
    /// is the 400 message.
    fn num(&self, name: &str, default: u64, max: u64) -> Result<u64, String> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(v) if v <= max => Ok(v),
            _ => Err(format!("bad {name}={raw} (0..={max})")),
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    conn: Arc<ConnInfo>,
) -> Result<Response<RespBody>, Infallible> {
    let id = state.record(&req, &conn);
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query());

    // Endpoints that never read the request body.
    match path.as_str() {
        "/stall" => return Ok(stall()),
        "/stall-headers" => {
            tokio::time::sleep(STALL_CAP).await;
            return Ok(text(StatusCode::GATEWAY_TIMEOUT, "stall cap reached"));
        }
        "/reset" => {
            conn.reset.store(true, Ordering::Relaxed);
            conn.kill.notify_one();
            return Ok(std::future::pending::<Response<RespBody>>().await);
        }
        "/ws" => return Ok(websocket(req)),
        "/switch" => return Ok(switch(req)),
        _ => {}
    }

    let (parts, body) = req.into_parts();
    let (body_len, complete) = drain(body).await;
    state.body_read(id, body_len, complete);
    if !complete {
        return Ok(text(StatusCode::BAD_REQUEST, "request body aborted"));
    }

    let resp = match path.as_str() {
        p if p == "/echo" || p.starts_with("/echo/") => echo(&parts, &conn, id, body_len),
        "/sse" => sse(&query).unwrap_or_else(bad_request),
        "/chunked" => chunked(&query).unwrap_or_else(bad_request),
        "/bytes" => bytes_endpoint(&query).unwrap_or_else(bad_request),
        "/redirect" => redirect(&query),
        "/reflect" => reflect(&parts),
        "/grpc" => grpc(),
        p if p.starts_with("/status/") => status(&p["/status/".len()..], &parts.method),
        _ => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    };
    Ok(resp)
}

fn echo(
    parts: &http::request::Parts,
    conn: &ConnInfo,
    id: u64,
    body_len: u64,
) -> Response<RespBody> {
    let headers = joined_headers(&parts.headers);
    let value = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": body_len,
        "version": version_str(parts.version),
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "tls": conn.tls,
        "alpn": conn.alpn,
        "sni": conn.sni,
        "conn_id": conn.conn_id,
        "request_id": id,
    });
    json(StatusCode::OK, &value)
}

fn joined_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

fn sse(q: &Query) -> Result<Response<RespBody>, String> {
    let n = q.num("n", 5, MAX_N)?;
    let interval = Duration::from_millis(q.num("interval_ms", 100, MAX_INTERVAL_MS)?);
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        for i in 0..n {
            if i > 0 && !pause(&tx, interval).await {
                return;
            }
            if tx
                .send(Bytes::from(format!("data: {i}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("response"))
}

/// A gRPC-shaped answer: one length-prefixed message, then trailers
/// (`grpc-status: 0`), which only survive a proxy that passes HTTP/2
/// trailers through.
fn grpc() -> Response<RespBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("echo-ok"));
    let frames = vec![
        Ok::<_, io::Error>(Frame::data(Bytes::from_static(
            b"\x00\x00\x00\x00\x05hello",
        ))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(body)
        .expect("response")
}

fn chunked(q: &Query) -> Result<Response<RespBody>, String> {
    let n = q.num("n", 4, MAX_N)?;
    let size = q.num("size", 16, MAX_CHUNK)?;
    let interval = Duration::from_millis(q.num("interval_ms", 0, MAX_INTERVAL_MS)?);
    if n.saturating_mul(size) > MAX_TOTAL_BYTES {
        return Err("n*size too large".to_owned());
    }
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        for i in 0..n {
            if i > 0 && !pause(&tx, interval).await {
                return;
            }
            if size > 0 && tx.send(pattern_slice(i * size, size)).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .expect("response"))
}

fn bytes_endpoint(q: &Query) -> Result<Response<RespBody>, String> {
    let size = q.num("size", 1024, MAX_TOTAL_BYTES)?;
    let (tx, body) = channel_body(Some(size));
    tokio::spawn(async move {
        let mut off = 0u64;
        while off < size {
            let len = STREAM_CHUNK.min(size - off);
            if tx.send(pattern_slice(off, len)).await.is_err() {
                return;
            }
            off += len;
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .expect("response"))
}

fn status(code: &str, method: &Method) -> Response<RespBody> {
    let Some(code) = code
        .parse::<u16>()
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return text(StatusCode::BAD_REQUEST, format!("bad status code: {code}"));
    };
    let builder = Response::builder().status(code);
    if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED || method == Method::HEAD
    {
        return builder.body(empty()).expect("response");
    }
    builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(format!("{{\"status\":{}}}\n", code.as_u16())))
        .expect("response")
}

fn redirect(q: &Query) -> Response<RespBody> {
    let Some(to) = q.get("to") else {
        return text(StatusCode::BAD_REQUEST, "missing to=");
    };
    let code = match q.get("code").unwrap_or("302") {
        "301" => StatusCode::MOVED_PERMANENTLY,
        "302" => StatusCode::FOUND,
        "303" => StatusCode::SEE_OTHER,
        "307" => StatusCode::TEMPORARY_REDIRECT,
        "308" => StatusCode::PERMANENT_REDIRECT,
        other => return text(StatusCode::BAD_REQUEST, format!("bad code={other}")),
    };
    match Response::builder()
        .status(code)
        .header(header::LOCATION, to)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(format!("redirecting to {to}\n")))
    {
        Ok(r) => r,
        Err(_) => text(StatusCode::BAD_REQUEST, "bad to="),
    }
}

/// The request handed back in the response head, as careless APIs do: a
/// 302 whose `Location` keeps the query (`/echo/landed?QUERY`), each
/// request header as `x-reflect-NAME`, and each query value decoded and
/// re-encoded the ways servers do (`x-query-decoded`, `x-query-lower` with
/// lower-case hex, `x-query-form` with `+` for space). The body says
/// nothing.
fn reflect(parts: &http::request::Parts) -> Response<RespBody> {
    let query = parts.uri.query().unwrap_or("");
    let mut head = HeaderMap::new();
    let mut add = |name: String, value: &[u8]| {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            head.append(n, v);
        }
    };
    add(
        "location".into(),
        format!("/echo/landed?{query}").as_bytes(),
    );
    for (name, value) in &parts.headers {
        add(format!("x-reflect-{name}"), value.as_bytes());
    }
    for pair in query.split('&') {
        let value = pair.split_once('=').map_or("", |(_, v)| v);
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
        let encoded = |space: &str| {
            decoded.iter().fold(String::new(), |mut out, &b| {
                match b {
                    b' ' => out.push_str(space),
                    b if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) => out.push(b as char),
                    b => out.push_str(&format!("%{b:02x}")),
                }
                out
            })
        };
        add("x-query-decoded".into(), &decoded);
        add("x-query-lower".into(), encoded("%20").as_bytes());
        add("x-query-form".into(), encoded("+").as_bytes());
    }
    let mut resp = Response::builder()
        .status(StatusCode::FOUND)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full("reflected\n"))
        .expect("response");
    resp.headers_mut().extend(head);
    resp
}

/// Headers now, body never (until the client leaves or [`STALL_CAP`]).
fn stall() -> Response<RespBody> {
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        let _ = pause(&tx, STALL_CAP).await;
        drop(tx);
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .expect("response")
}

fn websocket(mut req: Request<Incoming>) -> Response<RespBody> {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let upgrade = req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade");
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (upgrade, key) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected an HTTP/1.1 WebSocket upgrade",
        );
    };
    let protocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned());

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, on_upgrade).await {
            Ok(Ok(u)) => u,
            _ => return,
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(WS_MAX_MESSAGE))
            .max_frame_size(Some(WS_MAX_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let _ = tokio::time::timeout(STALL_CAP, ws_echo(ws)).await;
    });

    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        );
    if let Some(p) = protocol.filter(|p| !p.is_empty()) {
        resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp.body(empty()).expect("response")
}

/// `/switch`: a 101 to `h2c` whether or not the client asked to switch
/// (a server that ignores what it was asked), then echoes raw bytes.
fn switch(mut req: Request<Incoming>) -> Response<RespBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(Ok(upgraded)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, on_upgrade).await else {
            return;
        };
        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::time::timeout(STALL_CAP, tokio::io::copy(&mut r, &mut w)).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "h2c")
        .header(header::CONNECTION, "Upgrade")
        .body(empty())
        .expect("response")
}

async fn ws_echo<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // Pings are answered and Close is acknowledged by tungstenite itself on
    // the next read; the loop ends once the stream closes.
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}
