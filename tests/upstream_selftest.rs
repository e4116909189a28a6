//! Self-test of the test upstream servers (tests/support/upstream/), driven
//! by real clients: system curl (HTTP/2 and HTTP/1.1 over TLS, plain HTTP,
//! h2c) and a tokio-tungstenite WebSocket client over TLS.

#[allow(dead_code)]
#[path = "support/upstream/mod.rs"]
mod upstream;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use upstream::{TestCa, Upstream, UpstreamOpts, pattern};

struct Curl {
    exit: i32,
    status: u16,
    headers: String,
    body: Vec<u8>,
    stderr: String,
}

impl Curl {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?}\nstderr: {}",
                String::from_utf8_lossy(&self.body),
                self.stderr
            )
        })
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().rev().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Runs curl against `up` (trusting its CA, resolving its host name to
/// 127.0.0.1), with `stdin` piped in if given.
fn curl_with(up: &Upstream, args: &[&str], stdin: Option<(u64, u8)>) -> Curl {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("headers");
    let body = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "15", "--cacert"])
        .arg(up.ca_pem_path())
        .arg("--resolve")
        .arg(up.curl_resolve())
        .arg("-D")
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("spawn curl");
    let writer = stdin.map(|(len, byte)| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![byte; 1 << 20];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if pipe.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
        })
    });
    let out = child.wait_with_output().expect("curl output");
    if let Some(w) = writer {
        w.join().unwrap();
    }
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn curl(up: &Upstream, args: &[&str]) -> Curl {
    curl_with(up, args, None)
}

fn ok(c: &Curl) {
    assert_eq!(c.exit, 0, "curl failed: {}", c.stderr);
}

#[test]
fn echo_over_h2_and_http1() {
    let up = Upstream::start(UpstreamOpts::default());
    for (flag, version, alpn) in [
        ("--http2", "HTTP/2.0", "h2"),
        ("--http1.1", "HTTP/1.1", "http/1.1"),
    ] {
        up.clear_requests();
        let url = up.url("/echo/a/b?x=1&y=two");
        let c = curl(
            &up,
            &[
                flag,
                "-X",
                "POST",
                "-H",
                "Authorization: Bearer sk-real-123",
                "-H",
                "X-Multi: one",
                "-H",
                "X-Multi: two",
                "--data-binary",
                "hello world",
                &url,
            ],
        );
        ok(&c);
        assert_eq!(c.status, 200);
        let v = c.json();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/echo/a/b");
        assert_eq!(v["query"], "x=1&y=two");
        assert_eq!(v["version"], version);
        assert_eq!(v["body_len"], 11);
        assert_eq!(v["headers"]["x-multi"], "one, two");
        assert_eq!(v["headers"]["authorization"], "Bearer sk-real-123");
        assert_eq!(v["alpn"], alpn);
        assert_eq!(v["sni"], "api.test.local");

        let reqs = up.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        let r = &reqs[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/echo/a/b?x=1&y=two");
        assert_eq!(r.version, version);
        assert_eq!(r.alpn.as_deref(), Some(alpn));
        assert_eq!(r.sni.as_deref(), Some("api.test.local"));
        assert!(r.tls);
        assert_eq!(r.body_len, 11);
        assert!(r.body_complete);
        assert_eq!(r.header_values("x-multi"), ["one", "two"]);
        assert_eq!(r.header("Authorization"), Some("Bearer sk-real-123"));
        assert!(up.saw("sk-real-123"));
        assert!(!up.saw("PLACEHOLDER"));
    }

    // Plain GET, path exactly /echo, no query.
    let c = curl(&up, &["--http2", &up.url("/echo")]);
    ok(&c);
    let v = c.json();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/echo");
    assert!(v["query"].is_null());
    assert_eq!(v["body_len"], 0);

    // Unknown endpoint.
    let c = curl(&up, &[&up.url("/nope")]);
    assert_eq!(c.status, 404);
}

/// Peak resident set size of this process (the upstream runs in it).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn echo_counts_a_large_streamed_upload() {
    let up = Upstream::start(UpstreamOpts::default());
    let url = up.url("/echo/upload");
    for (flag, len) in [("--http1.1", 512u64 << 20), ("--http2", 64 << 20)] {
        let started = Instant::now();
        // `-T -`: PUT from stdin (chunked on HTTP/1.1: no length known).
        let c = curl_with(&up, &[flag, "-T", "-", &url], Some((len, b'z')));
        ok(&c);
        let v = c.json();
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["body_len"], len);
        eprintln!(
            "{flag}: {} MiB upload in {:?}",
            len >> 20,
            started.elapsed()
        );
        let r = up.last_request().unwrap();
        assert_eq!((r.body_len, r.body_complete), (len, true));
    }
    assert_eq!(
        up.requests_to("/echo/upload")[0].header("transfer-encoding"),
        Some("chunked")
    );
    // Counted, not stored: the 512 MiB never sat in memory.
    let peak = peak_rss_kib();
    assert!(peak < 300 << 10, "peak RSS {peak} KiB");
}

#[test]
fn sse_events_arrive_spaced() {
    let up = Upstream::start(UpstreamOpts::default());
    for flag in ["--http2", "--http1.1"] {
        let started = Instant::now();
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--max-time", "15", flag, "--cacert"])
            .arg(up.ca_pem_path())
            .arg("--resolve")
            .arg(up.curl_resolve())
            .arg(up.url("/sse?n=5&interval_ms=300"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn curl");
        let mut events = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(data) = line.strip_prefix("data: ") {
                events.push((data.to_owned(), started.elapsed()));
            }
        }
        assert!(child.wait().unwrap().success());
        let data: Vec<&str> = events.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(data, ["0", "1", "2", "3", "4"], "{flag}");
        let first = events[0].1;
        let last = events[4].1;
        assert!(
            last - first >= Duration::from_millis(1000),
            "{flag}: events not spaced: {events:?}"
        );
        for w in events.windows(2) {
            assert!(w[1].1 - w[0].1 >= Duration::from_millis(150), "{events:?}");
        }
    }
    let r = up.last_request().unwrap();
    assert_eq!(r.path, "/sse?n=5&interval_ms=300");
}

#[test]
fn sse_headers() {
    let up = Upstream::start(UpstreamOpts::default());
    let c = curl(&up, &["--http1.1", &up.url("/sse?n=2&interval_ms=10")]);
    ok(&c);
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(c.body, b"data: 0\n\ndata: 1\n\n");
}

#[test]
fn chunked_and_bytes() {
    let up = Upstream::start(UpstreamOpts::default());
    let c = curl(&up, &["--http1.1", &up.url("/chunked?n=5&size=1000")]);
    ok(&c);
    assert_eq!(c.status, 200);
    assert_eq!(c.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(c.body, pattern(0, 5000));

    let c = curl(
        &up,
        &["--http2", &up.url("/chunked?n=3&size=7&interval_ms=20")],
    );
    ok(&c);
    assert_eq!(c.body, pattern(0, 21));

    let size = (3 << 20) + 5;
    for flag in ["--http2", "--http1.1"] {
        let c = curl(&up, &[flag, &up.url(&format!("/bytes?size={size}"))]);
        ok(&c);
        assert_eq!(
            c.header("content-length").as_deref(),
            Some(size.to_string().as_str())
        );
        assert_eq!(c.body.len(), size);
        assert!(c.body == pattern(0, size), "/bytes body differs");
    }
    let c = curl(&up, &[&up.url("/bytes?size=0")]);
    ok(&c);
    assert!(c.body.is_empty());
    let c = curl(&up, &[&up.url("/bytes?size=abc")]);
    assert_eq!(c.status, 400);
}

#[test]
fn status_and_redirect() {
    let up = Upstream::start(UpstreamOpts::default());
    for code in [200u16, 201, 204, 404, 418, 429, 500, 503] {
        let c = curl(&up, &["--http2", &up.url(&format!("/status/{code}"))]);
        ok(&c);
        assert_eq!(c.status, code);
        if code == 204 {
            assert!(c.body.is_empty());
        } else {
            assert_eq!(c.json()["status"], code);
        }
    }
    assert_eq!(curl(&up, &[&up.url("/status/99")]).status, 400);

    let c = curl(
        &up,
        &[
            "--http1.1",
            &up.url("/redirect?to=https%3A%2F%2Fexample.invalid%2Fnext%3Fa%3D1"),
        ],
    );
    ok(&c);
    assert_eq!(c.status, 302);
    assert_eq!(
        c.header("location").as_deref(),
        Some("https://example.invalid/next?a=1")
    );
    let c = curl(&up, &[&up.url("/redirect?to=/echo&code=307")]);
    assert_eq!(c.status, 307);
    assert_eq!(c.header("location").as_deref(), Some("/echo"));
}

#[test]
fn stall_and_reset() {
    let up = Upstream::start(UpstreamOpts::default());
    for flag in ["--http2", "--http1.1"] {
        // Headers, then nothing: curl times out (28) after seeing 200.
        let started = Instant::now();
        let c = curl(&up, &[flag, "--max-time", "2", &up.url("/stall")]);
        assert_eq!(c.exit, 28, "{flag}: {}", c.stderr);
        assert_eq!(c.status, 200, "{flag}");
        assert!(c.body.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(1900));

        // Nothing at all.
        let c = curl(&up, &[flag, "--max-time", "1", &up.url("/stall-headers")]);
        assert_eq!(c.exit, 28, "{flag}: {}", c.stderr);
        assert_eq!(c.status, 0);
        assert!(c.headers.is_empty());

        // Connection closed without a response.
        let c = curl(&up, &[flag, &up.url("/reset")]);
        assert_ne!(c.exit, 0, "{flag}");
        assert_ne!(c.exit, 28, "{flag}: should fail fast, not time out");
        assert_eq!(c.status, 0, "{flag}");
        eprintln!("{flag} /reset: curl exit {} {}", c.exit, c.stderr.trim());

        // The server is still fine.
        ok(&curl(&up, &[flag, &up.url("/echo")]));
    }
    let paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/stall",
            "/stall-headers",
            "/reset",
            "/echo",
            "/stall",
            "/stall-headers",
            "/reset",
            "/echo"
        ]
    );
}

#[test]
fn plain_http_and_h2c() {
    let up = Upstream::start(UpstreamOpts::plain_http());
    assert_eq!(up.scheme(), "http");
    let c = curl(&up, &[&up.ip_url("/echo?plain=1")]);
    ok(&c);
    let v = c.json();
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["tls"], false);
    assert!(v["alpn"].is_null());
    let c = curl(&up, &["--http2-prior-knowledge", &up.url("/echo")]);
    ok(&c);
    assert_eq!(c.json()["version"], "HTTP/2.0");
    let r = up.last_request().unwrap();
    assert!(!r.tls);
    assert_eq!(
        r.authority.as_deref(),
        Some(&*format!("api.test.local:{}", up.port()))
    );
}

#[test]
fn protocol_restrictions() {
    let ca = Arc::new(TestCa::new_temp());

    let h1 = Upstream::start(UpstreamOpts::default().http1_only().with_ca(ca.clone()));
    let c = curl(&h1, &["--http2", &h1.url("/echo")]);
    ok(&c);
    assert_eq!(c.json()["version"], "HTTP/1.1");
    assert_eq!(h1.last_request().unwrap().alpn.as_deref(), Some("http/1.1"));

    let h2 = Upstream::start(UpstreamOpts::default().http2_only().with_ca(ca.clone()));
    assert_eq!(h1.ca_pem_path(), h2.ca_pem_path());
    let c = curl(&h2, &["--http2", &h2.url("/echo")]);
    ok(&c);
    assert_eq!(c.json()["version"], "HTTP/2.0");
    let c = curl(&h2, &["--http1.1", &h2.url("/echo")]);
    assert_ne!(
        c.exit, 0,
        "h2-only upstream accepted an http/1.1-only client"
    );
    assert_eq!(h2.requests().len(), 1);
}

#[test]
fn ipv6_listener_and_ip_sans() {
    let up = Upstream::start(UpstreamOpts::default().with_ipv6());
    let v6 = up.addr_v6().expect("v6 addr");
    assert_ne!(v6.port(), 0);
    let c = curl(&up, &["-g", &format!("https://[::1]:{}/echo", v6.port())]);
    ok(&c);
    assert_eq!(c.json()["path"], "/echo");
    assert!(up.last_request().unwrap().peer.is_ipv6());
    // IP SAN 127.0.0.1 and DNS SAN localhost.
    ok(&curl(&up, &[&up.ip_url("/echo")]));
    ok(&curl(
        &up,
        &[&format!("https://localhost:{}/echo", up.port())],
    ));
    // A name not on the certificate is rejected.
    let c = curl(
        &up,
        &[
            "--resolve",
            &format!("other.test.local:{}:127.0.0.1", up.port()),
            &format!("https://other.test.local:{}/echo", up.port()),
        ],
    );
    assert_eq!(c.exit, 60, "{}", c.stderr);
}

#[test]
fn ca_files_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCa::new(dir.path());
    let b = TestCa::new(dir.path());
    assert_ne!(a.ca_pem_path(), b.ca_pem_path());
    assert!(a.ca_pem_path().starts_with(dir.path()));
    let pem = std::fs::read_to_string(a.ca_pem_path()).unwrap();
    assert_eq!(pem, a.ca_pem());
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let leaf = a.mint(&["x.test.local", "10.1.2.3"]);
    assert!(leaf.cert_pem.contains("BEGIN CERTIFICATE"));
    assert!(leaf.key_pem.contains("PRIVATE KEY"));

    let up = Upstream::start(UpstreamOpts::default().with_ca(Arc::new(a)));
    ok(&curl(&up, &[&up.url("/echo")]));
    assert_eq!(up.connection_count(), 1);
    // Dropping stops the server's runtime and returns. (Whether the port
    // refuses afterwards cannot be checked here: tests run in parallel and
    // another test's upstream may be given the freed port at once.)
    let started = std::time::Instant::now();
    drop(up);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn websocket_echo_over_tls_and_plain() {
    use futures_util::{SinkExt, StreamExt};
    use rustls_pki_types::ServerName;
    use tokio_tungstenite::tungstenite::Message;

    let up = Upstream::start(UpstreamOpts::default());
    let tcp = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(up.ca().client_config(&[b"http/1.1"]));
    let tls = connector
        .connect(ServerName::try_from("api.test.local").unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://api.test.local:{}/ws?room=1", up.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let bin = vec![0u8, 1, 2, 255];
    ws.send(Message::binary(bin.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(bin));
    ws.send(Message::Ping(vec![7u8].into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Pong(vec![7u8].into())
    );
    let big = "x".repeat(300_000);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(big));
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}

    let reqs = up.requests_to("/ws");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/ws?room=1");
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(r.header("sec-websocket-key").is_some());
    assert_eq!(r.alpn.as_deref(), Some("http/1.1"));

    // Plain ws:// on a plain-HTTP upstream.
    let plain = Upstream::start(UpstreamOpts::plain_http());
    let tcp = tokio::net::TcpStream::connect(plain.addr()).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(plain.ip_url("/ws").replace("http", "ws"), tcp)
            .await
            .unwrap();
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("plain"));
    ws.close(None).await.unwrap();

    // A non-upgrade request to /ws is refused.
    let c = tokio::task::spawn_blocking(move || curl(&up, &["--http2", &up.url("/ws")]))
        .await
        .unwrap();
    assert_eq!(c.status, 400);
}
