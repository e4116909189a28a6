//! A daemon with one HTTPS upstream behind the explicit proxy, for tests
//! that speak to the gateway byte by byte (protocol abuse) or in bulk
//! (soak): secret `up` injected as `Authorization` for the upstream's host,
//! agent `bot` granted it, and async clients for the `CONNECT` tunnel, TLS
//! inside it (any ALPN) and one well-formed request.
//!
//! Also the process figures those tests watch ([`fd_count`], [`rss_kib`])
//! and [`raise_nofile`] for tests that hold thousands of sockets.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Daemon;
use super::gw::Gw;
use super::upstream::{Upstream, UpstreamOpts};

/// Longest response head these clients read.
const MAX_HEAD: usize = 64 * 1024;

pub struct Proxied {
    pub daemon: Daemon,
    pub up: Upstream,
    /// The proxy's `host:port`.
    pub proxy: String,
    pub token: String,
    /// The secret's real value (what the upstream must receive).
    pub value: String,
    dialer: Dialer,
}

/// Opens connections through the proxy as `bot`; cheap to clone into
/// many tasks.
#[derive(Clone)]
pub struct Dialer {
    proxy: String,
    connect: Arc<str>,
    host: String,
    tls: Arc<rustls::ClientConfig>,
    ca: PathBuf,
}

impl Proxied {
    /// Starts the upstream and the daemon (with `env` added) and
    /// configures the secret and the agent.
    #[track_caller]
    pub fn start(env: &[(&str, &str)]) -> Proxied {
        // The gateway tests' fixture, driven here with raw clients.
        let Gw {
            daemon,
            up,
            token,
            proxy,
            ca,
            value,
        } = Gw::start_with(UpstreamOpts::https(), env);
        let ca = PathBuf::from(ca);
        let tls = airlock_client_config(&ca, &[b"http/1.1"]);
        let mut gw = Proxied {
            dialer: Dialer {
                proxy: proxy.clone(),
                connect: Arc::from(""),
                host: up.host().to_owned(),
                tls,
                ca,
            },
            daemon,
            up,
            proxy,
            token,
            value,
        };
        gw.dialer.connect = Arc::from(gw.connect_request());
        gw
    }

    pub fn dialer(&self) -> Dialer {
        self.dialer.clone()
    }

    /// `api.test.local:PORT`: the upstream as the secret names it.
    pub fn target(&self) -> String {
        format!("{}:{}", self.up.host(), self.up.port())
    }

    /// The daemon's pid.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let pid = self.daemon.status_json()["pid"].as_i64().expect("pid");
        i32::try_from(pid).expect("pid fits in i32")
    }

    /// The `Proxy-Authorization` value for `bot`.
    pub fn proxy_authorization(&self) -> String {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("bot:{}", self.token));
        format!("Basic {basic}")
    }

    /// The `CONNECT` request for the upstream, as `bot`.
    pub fn connect_request(&self) -> String {
        let target = self.target();
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n",
            self.proxy_authorization()
        )
    }

    /// A TCP connection to the proxy whose `CONNECT` was answered 200.
    pub async fn tunnel(&self) -> io::Result<TcpStream> {
        self.dialer.tunnel().await
    }

    /// TLS to the upstream's name inside a tunnel (see [`Dialer::tunnel_tls`]).
    pub async fn tunnel_tls(&self, alpn: &[&[u8]]) -> io::Result<TlsStream<TcpStream>> {
        self.dialer.tunnel_tls(alpn).await
    }

    /// One well-formed `GET path` (HTTP/1.1, keep-alive) on `stream`;
    /// returns the status code once the whole response has been read.
    pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        path: &str,
    ) -> io::Result<u16> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.target());
        stream.write_all(req.as_bytes()).await?;
        read_response(stream).await
    }

    /// The audit trail's request rows, once at least `n` exist (bounded wait).
    #[track_caller]
    pub fn audit_rows(&self, n: usize) -> Vec<serde_json::Value> {
        super::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            let out = self.daemon.cli_ok(&["audit", "--json", "--limit", "10000"]);
            let rows: Vec<serde_json::Value> = out
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|r: &serde_json::Value| r["kind"] == "request")
                .collect();
            (rows.len() >= n).then_some(rows)
        })
        .unwrap_or_else(|| panic!("fewer than {n} request audit rows"))
    }
}

impl Dialer {
    /// The proxy's `host:port`.
    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// The `CONNECT` request for the upstream, as `bot`.
    pub fn connect_request(&self) -> &str {
        &self.connect
    }

    /// A TCP connection to the proxy whose `CONNECT` was answered 200.
    pub async fn tunnel(&self) -> io::Result<TcpStream> {
        let mut tcp = TcpStream::connect(&self.proxy).await?;
        tcp.set_nodelay(true)?;
        tcp.write_all(self.connect.as_bytes()).await?;
        let head = read_head(&mut tcp).await?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(io::Error::other(format!("CONNECT answered {head:?}")));
        }
        Ok(tcp)
    }

    /// TLS to the upstream's name inside a tunnel, trusting only
    /// Airlock's CA, offering `alpn`.
    pub async fn tunnel_tls(&self, alpn: &[&[u8]]) -> io::Result<TlsStream<TcpStream>> {
        let tcp = self.tunnel().await?;
        let config = if alpn == [b"http/1.1".as_slice()] {
            self.tls.clone()
        } else {
            airlock_client_config(&self.ca, alpn)
        };
        let name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| io::Error::other(e.to_string()))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }
}

/// A rustls client trusting only the CA in `ca_pem`, offering `alpn`.
pub fn airlock_client_config(
    ca_pem: &std::path::Path,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem).expect("reading Airlock's CA");
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("adding the CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Reads a response head (through the blank line) without reading past it.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("the response head is too long"));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the connection closed after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            ));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Reads one whole response with a `Content-Length` or chunked body;
/// returns its status.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<u16> {
    let head = read_head(stream).await?;
    let status = status_of(&head)
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {head:?}")))?;
    let lower = head.to_ascii_lowercase();
    let header = |name: &str| {
        lower
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .map(str::to_owned)
    };
    if let Some(len) = header("content-length:") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::other("a bad Content-Length"))?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
    } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream).await?;
    }
    Ok(status)
}

async fn read_chunked<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if stream.read(&mut byte).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            line.push(byte[0]);
        }
        let size = std::str::from_utf8(&line[..line.len() - 2])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| io::Error::other("a bad chunk size"))?;
        // The chunk and its CRLF; the last chunk's CRLF ends the body (no
        // trailers from the test upstream).
        let mut chunk = vec![0u8; size + 2];
        stream.read_exact(&mut chunk).await?;
        if size == 0 {
            return Ok(());
        }
    }
}

/// The status code of a response head.
pub fn status_of(head: &str) -> Option<u16> {
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's open-file limit towards `want` (soft and hard;
/// the hard limit can only rise as root) and returns the soft limit now
/// in effect. Daemons started afterwards inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= want {
        return soft;
    }
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    let target = want.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        target
    } else {
        soft
    }
}
