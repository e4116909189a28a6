//! Protocol abuse against the real daemon (issue #8, part 4): malformed
//! HTTP/1.1 heads sent byte by byte, request smuggling through conflicting
//! framing, HTTP/2 rapid reset and CONTINUATION floods, and 10,000
//! slowloris connections. Each is refused with the right status (or the
//! connection is cut), never reaches the upstream in a form the gateway
//! did not check, and the gateway goes on serving a well-behaved client
//! whose latency, measured in the same run just before, at most doubles.
//!
//! Every load is bounded in count and in time; every socket is the test
//! process's own and closes with it.

mod support;

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use support::proxied::{self, Proxied};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the gateway may take to answer or cut one abusive request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests per latency sample (the median is taken).
const LATENCY_SAMPLES: usize = 41;
/// The pause between two of them.
const SAMPLE_SPACING: Duration = Duration::from_millis(20);
/// Measurements under abuse before a ratio over the bound fails.
const LATENCY_ATTEMPTS: usize = 3;
/// The worst a well-behaved client's median latency may get under abuse,
/// as a multiple of its median just before.
const MAX_LATENCY_RATIO: f64 = 2.0;

/// The tests here measure latency ratios: they run one at a time, not
/// against each other's floods on the same two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`ONE_AT_A_TIME`] for the rest of the calling test (a test that
/// failed before does not stop the others).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The median time of [`LATENCY_SAMPLES`] well-behaved requests, each on
/// a fresh connection (TCP, `CONNECT`, TLS, `GET`, the whole response):
/// what another agent of the same host goes through. The samples are
/// spread out, so that a burst of load from elsewhere on this shared
/// machine does not decide the median.
async fn median_latency(gw: &Proxied) -> Duration {
    let mut times = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let t0 = Instant::now();
        let status = tokio::time::timeout(ANSWER_TIMEOUT, async {
            let mut tls = gw.tunnel_tls(&[b"http/1.1"]).await?;
            gw.get(&mut tls, "/echo/well-behaved").await
        })
        .await
        .unwrap_or_else(|_| panic!("a well-behaved request took over {ANSWER_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("a well-behaved request failed: {e}"));
        assert_eq!(status, 200, "a well-behaved request was refused");
        times.push(t0.elapsed());
        tokio::time::sleep(SAMPLE_SPACING).await;
    }
    times.sort();
    times[LATENCY_SAMPLES / 2]
}

/// The median latency while the abuse goes on: measured again (up to
/// [`LATENCY_ATTEMPTS`] times, the best kept) while it exceeds the bound,
/// since other builds and tests share this machine's two cores. A gateway
/// that really slows down under the abuse fails every attempt.
async fn latency_under_abuse(gw: &Proxied, before: Duration) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..LATENCY_ATTEMPTS {
        best = best.min(median_latency(gw).await);
        if best.as_secs_f64() <= before.as_secs_f64() * MAX_LATENCY_RATIO {
            break;
        }
    }
    best
}

/// Asserts the latency under abuse is within [`MAX_LATENCY_RATIO`] of the
/// baseline, printing both.
#[track_caller]
fn assert_latency_ratio(what: &str, before: Duration, during: Duration) {
    let ratio = during.as_secs_f64() / before.as_secs_f64();
    eprintln!(
        "{what}: well-behaved median latency {before:?} before, {during:?} during: ratio {ratio:.2}"
    );
    assert!(
        ratio <= MAX_LATENCY_RATIO,
        "{what}: a well-behaved client's median latency went from {before:?} to {during:?} \
         ({ratio:.2}×, more than {MAX_LATENCY_RATIO}×)"
    );
}

/// Writes `bytes`, then reads until the gateway closes the connection;
/// returns everything it sent back.
async fn send_and_drain<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> io::Result<Vec<u8>> {
    // The gateway may answer and close before it read everything.
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A reset after the answer still ends the connection.
                Err(_) if !out.is_empty() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match read {
        Ok(r) => r.map(|()| out),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the gateway kept the connection open for {ANSWER_TIMEOUT:?} after answering {:?}",
                String::from_utf8_lossy(&out)
            ),
        )),
    }
}

/// Writes `bytes` and returns the status of the one response that comes
/// back (the gateway may close the connection after it, or keep it).
async fn send_for_status<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> io::Result<u16> {
    // The gateway may answer and close before it read everything.
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    tokio::time::timeout(ANSWER_TIMEOUT, proxied::read_response(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

/// A malformed request head: what it is, its bytes, the status it gets.
struct Malformed {
    what: &'static str,
    head: Vec<u8>,
    status: u16,
}

/// The same malformations, once as a request inside the tunnel (`line`
/// is the request line, `host` its Host) and once as the `CONNECT` itself.
fn malformed_heads(line: &str, host: &str, extra: &str) -> Vec<Malformed> {
    let head = |fields: &str| format!("{line}\r\nHost: {host}\r\n{extra}{fields}\r\n").into_bytes();
    let many: String = (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        Malformed {
            what: "obs-fold (a header continued on the next line)",
            head: head("X-Folded: a\r\n b\r\n"),
            status: 400,
        },
        Malformed {
            what: "a NUL byte in a header value",
            head: head("X-Nul: a\0b\r\n"),
            status: 400,
        },
        Malformed {
            what: "a bare CR in a header value",
            head: head("X-Cr: a\rb\r\n"),
            status: 400,
        },
        Malformed {
            what: "a space in a header name",
            head: head("Bad Name: x\r\n"),
            status: 400,
        },
        Malformed {
            what: "whitespace before the colon",
            head: head("Transfer-Encoding : chunked\r\n"),
            status: 400,
        },
        Malformed {
            what: "two different Content-Lengths",
            head: head("Content-Length: 5\r\nContent-Length: 6\r\n"),
            status: 400,
        },
        Malformed {
            what: "Transfer-Encoding not ending in chunked, with a Content-Length",
            head: head("Transfer-Encoding: gzip\r\nContent-Length: 3\r\n"),
            status: 400,
        },
        Malformed {
            what: "a 100 KiB header",
            head: head(&format!("X-Big: {}\r\n", "a".repeat(100 * 1024))),
            status: 431,
        },
        Malformed {
            what: "5,000 headers",
            head: head(&many),
            status: 431,
        },
    ]
}

#[test]
fn malformed_http1_heads_are_refused_before_and_inside_the_tunnel() {
    let _serial = one_at_a_time();
    let gw = Proxied::start(&[]);
    let target = gw.target();
    let auth = format!("Proxy-Authorization: {}\r\n", gw.proxy_authorization());
    let rt = support::runtime();
    let before = rt.block_on(median_latency(&gw));
    rt.block_on(async {
        // Before CONNECT: the proxy's own request is malformed.
        for case in malformed_heads(&format!("CONNECT {target} HTTP/1.1"), &target, &auth) {
            let mut tcp = TcpStream::connect(&gw.proxy).await.unwrap();
            let status = send_for_status(&mut tcp, &case.head)
                .await
                .unwrap_or_else(|e| panic!("CONNECT with {}: {e}", case.what));
            assert_eq!(status, case.status, "CONNECT with {}", case.what);
        }
        // Inside the tunnel, after TLS: the request to the upstream is.
        for case in malformed_heads("GET /echo/malformed HTTP/1.1", &target, "") {
            let mut tls = gw.tunnel_tls(&[b"http/1.1"]).await.unwrap();
            let status = send_for_status(&mut tls, &case.head)
                .await
                .unwrap_or_else(|e| panic!("a request with {}: {e}", case.what));
            assert_eq!(status, case.status, "a request with {}", case.what);
        }
    });
    let reached: Vec<_> = gw
        .up
        .requests()
        .into_iter()
        .filter(|r| r.path != "/echo/well-behaved")
        .collect();
    assert!(
        reached.is_empty(),
        "a malformed request reached the upstream: {reached:#?}"
    );
    // Still serving, as fast as before.
    let after = rt.block_on(latency_under_abuse(&gw, before));
    assert_latency_ratio("after malformed heads", before, after);
}

/// Request smuggling: a `Content-Length` that covers a second request
/// hidden after the chunked body's end (CL.TE), and the reverse (TE.CL).
/// The gateway frames by the chunked encoding (RFC 9112 §6.3), re-frames
/// what it forwards and closes the agent's connection after such a
/// message, so the hidden request is never read: the upstream sees exactly
/// the two requests the audit trail shows, each body as the chunked
/// encoding framed it, and nothing else (the decision in
/// docs/architecture.md, kept: the upstream cannot be made to read two).
#[test]
fn conflicting_framing_cannot_smuggle_a_request_past_the_gateway() {
    let _serial = one_at_a_time();
    let gw = Proxied::start(&[]);
    let target = gw.target();
    let hidden = format!("GET /echo/smuggled HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let cl_te_body = format!("0\r\n\r\n{hidden}");
    let cl_te = format!(
        "POST /echo/cl-te HTTP/1.1\r\nHost: {target}\r\nContent-Length: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{cl_te_body}",
        cl_te_body.len()
    );
    // TE.CL: a Content-Length of 4 would end the body inside the chunk,
    // making the rest look like a request to a Content-Length reader.
    let chunk = format!("X{hidden}");
    let te_cl = format!(
        "POST /echo/te-cl HTTP/1.1\r\nHost: {target}\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let rt = support::runtime();
    rt.block_on(async {
        for raw in [&cl_te, &te_cl] {
            let mut tls = gw.tunnel_tls(&[b"http/1.1"]).await.unwrap();
            let mut raw = raw.clone().into_bytes();
            // Then one more request of the agent's own, to see whether the
            // connection is still in step.
            raw.extend_from_slice(
                format!("GET /echo/next HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let answer = send_and_drain(&mut tls, &raw).await.unwrap();
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            // RFC 9112 §6.1: after a message with both, the connection is
            // closed, so nothing after it is read as another request.
            let answers = answer
                .lines()
                .filter(|l| l.starts_with("HTTP/1.1 "))
                .count();
            assert_eq!(answers, 1, "{answer}");
        }
    });
    let seen = gw.up.wait_for_requests(2, Duration::from_secs(10));
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let by_path = |p: &str| seen.iter().filter(|r| r.path == p).collect::<Vec<_>>();
    let cl_te_seen = by_path("/echo/cl-te");
    assert_eq!(cl_te_seen.len(), 1, "{seen:#?}");
    assert_eq!(cl_te_seen[0].body_len, 0, "the chunked encoding frames it");
    let te_cl_seen = by_path("/echo/te-cl");
    assert_eq!(te_cl_seen.len(), 1, "{seen:#?}");
    assert_eq!(te_cl_seen[0].body_len as usize, chunk.len());
    // Every request the upstream saw is one the gateway audited.
    let rows = gw.audit_rows(seen.len());
    let audited: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["path"].as_str())
        .filter(|p| p.starts_with("/echo/"))
        .collect();
    let mut upstream_paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    let mut audited_paths = audited.clone();
    upstream_paths.sort_unstable();
    audited_paths.sort_unstable();
    assert_eq!(
        upstream_paths, audited_paths,
        "the upstream saw requests the gateway did not audit"
    );
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", gw.value).as_str()),
            "{r:#?}"
        );
    }
}

/// HTTP/2 frame types and flags used below.
mod frame {
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /// `ENHANCE_YOUR_CALM`, the error code for a peer that floods.
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    /// One frame: 9-byte header, then the payload.
    pub fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("a small frame");
        let mut out = Vec::with_capacity(9 + payload.len());
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A header block for `GET https://AUTHORITY/PATH`: HPACK static-table
    /// entries for `:method GET` and `:scheme https`, literal values
    /// (never indexed) for `:path` and `:authority`, no Huffman coding.
    pub fn get_block(authority: &str, path: &str) -> Vec<u8> {
        let mut out = vec![0x82, 0x87];
        for (index, value) in [(4u8, path), (1u8, authority)] {
            out.push(index);
            out.push(u8::try_from(value.len()).expect("a short value"));
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// A literal header field with a new name (not indexed), ~`len` bytes.
    pub fn filler_field(n: usize, len: usize) -> Vec<u8> {
        let name = format!("x-flood-{n}");
        let value = "a".repeat(len.min(120));
        let mut out = vec![0x00, u8::try_from(name.len()).expect("short name")];
        out.extend_from_slice(name.as_bytes());
        out.push(u8::try_from(value.len()).expect("short value"));
        out.extend_from_slice(value.as_bytes());
        out
    }
}

/// What the gateway did to a flooding HTTP/2 connection.
#[derive(Debug, Default)]
struct Cutoff {
    /// The GOAWAY error code, if one came.
    goaway: Option<u32>,
    /// RST_STREAM frames the gateway sent.
    resets: usize,
    /// Whether the connection was closed (EOF or reset) before the flood
    /// ran out.
    closed: bool,
}

/// Reads frames from the gateway until it closes the connection or
/// `within` passes, noting GOAWAY and RST_STREAM.
async fn watch_frames<R: AsyncRead + Unpin>(mut r: R, within: Duration) -> Cutoff {
    let mut cut = Cutoff::default();
    let _ = tokio::time::timeout(within, async {
        let mut header = [0u8; 9];
        loop {
            if r.read_exact(&mut header).await.is_err() {
                cut.closed = true;
                return;
            }
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if r.read_exact(&mut payload).await.is_err() {
                cut.closed = true;
                return;
            }
            match header[3] {
                frame::GOAWAY if payload.len() >= 8 => {
                    cut.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
                frame::RST_STREAM => cut.resets += 1,
                _ => {}
            }
        }
    })
    .await;
    cut
}

/// Runs `flood` on a fresh h2 connection (TLS with ALPN h2 inside a
/// tunnel) while a well-behaved client measures its latency; returns
/// what the gateway did to the flood and how many frames went out.
async fn flood_h2<F, Fut>(gw: &Proxied, flood: F) -> (Cutoff, usize)
where
    F: FnOnce(tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>) -> Fut,
    Fut: Future<Output = usize>,
{
    let tls = gw.tunnel_tls(&[b"h2"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (r, w) = tokio::io::split(tls);
    let watcher = tokio::spawn(watch_frames(r, Duration::from_secs(30)));
    let sent = flood(w).await;
    let cut = watcher.await.unwrap();
    (cut, sent)
}

/// Streams one rapid-reset connection tries to open.
const RAPID_RESET_STREAMS: usize = 10_000;

/// One rapid-reset connection with the `h2` crate's own client: HEADERS,
/// then RST_STREAM (dropping a response future resets its stream), over
/// and over. Returns the streams sent and how the connection ended.
async fn rapid_reset(dialer: proxied::Dialer, url: String) -> (usize, Result<(), h2::Error>) {
    let tls = dialer.tunnel_tls(&[b"h2"]).await.expect("an h2 tunnel");
    let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    let started = Instant::now();
    while sent < RAPID_RESET_STREAMS && started.elapsed() < Duration::from_secs(60) {
        client = match client.ready().await {
            Ok(c) => c,
            Err(_) => break,
        };
        let req = http::Request::get(&url).body(()).expect("a request");
        match client.send_request(req, true) {
            Ok((response, _)) => drop(response),
            Err(_) => break,
        }
        sent += 1;
        if sent % 64 == 0 {
            // Let the connection task write the frames out.
            tokio::task::yield_now().await;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(30), conn)
        .await
        .expect("the flooding connection was not closed within 30 s")
        .expect("the h2 connection task");
    (sent, ended)
}

/// Asserts a rapid-reset connection was cut off: GOAWAY
/// (ENHANCE_YOUR_CALM) or closed, long before all its streams.
#[track_caller]
fn assert_cut_off(sent: usize, ended: &Result<(), h2::Error>) {
    let err = ended
        .as_ref()
        .expect_err("the gateway let a rapid-reset flood go on to its end");
    assert!(
        err.is_go_away() || err.is_io(),
        "the flood ended with {err:?}, not GOAWAY or a closed connection"
    );
    if let Some(reason) = err.reason() {
        assert_eq!(reason, h2::Reason::ENHANCE_YOUR_CALM, "{err:?}");
    }
    assert!(
        sent < RAPID_RESET_STREAMS,
        "all {RAPID_RESET_STREAMS} streams were accepted: nothing cut the flood off"
    );
}

/// HTTP/2 rapid reset (CVE-2023-44487). Reset streams do not count
/// against the concurrency limit, so without a limit of its own the
/// gateway would start an upstream request for each. Each flooding
/// connection must get GOAWAY (ENHANCE_YOUR_CALM) or be closed long before
/// 10,000 streams, few of its streams may reach the upstream, and while
/// one flooding connection follows another a well-behaved client's
/// latency at most doubles.
#[test]
fn http2_rapid_reset_is_cut_off() {
    let _serial = one_at_a_time();
    /// Flooding connections, one after another, while the client measures.
    const MAX_ATTACKS: usize = 200;
    /// At most one new flooding connection this often.
    const ATTACK_EVERY: Duration = Duration::from_millis(100);
    let gw = Proxied::start(&[]);
    let url = format!("https://{}/echo/rapid-reset", gw.target());
    let rt = support::runtime();
    rt.block_on(async {
        let before = median_latency(&gw).await;
        let (sent, ended) = rapid_reset(gw.dialer(), url.clone()).await;
        eprintln!("rapid reset: {sent} streams sent; the connection ended with {ended:?}");
        assert_cut_off(sent, &ended);

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attacks = {
            let (dialer, url, stop) = (gw.dialer(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rounds = Vec::new();
                // Paced, so that what is measured is the gateway's cost of
                // a flood, not the test's own CPU (the flooder, the gateway
                // and the client share two cores here).
                let mut every = tokio::time::interval(ATTACK_EVERY);
                while rounds.len() < MAX_ATTACKS && !stop.load(std::sync::atomic::Ordering::Relaxed)
                {
                    every.tick().await;
                    rounds.push(rapid_reset(dialer.clone(), url.clone()).await);
                }
                rounds
            })
        };
        let during = latency_under_abuse(&gw, before).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rounds = attacks.await.expect("the flooding task");
        let streams: usize = rounds.iter().map(|(sent, _)| sent).sum();
        for (sent, ended) in &rounds {
            assert_cut_off(*sent, ended);
        }
        let upstream = gw.up.requests_to("/echo/rapid-reset").len();
        eprintln!(
            "rapid reset: {} more flooding connections ({streams} streams) during the \
             measurement; {upstream} streams in all reached the upstream",
            rounds.len()
        );
        assert!(
            upstream <= (rounds.len() + 1) * 100,
            "{upstream} reset streams became upstream requests"
        );
        assert_latency_ratio("rapid reset", before, during);
    });
}

/// Oversized and overlong HTTP/2 header lists (a 100 KiB value; 5,000
/// fields) over `h2`'s client, which does not check the server's limit
/// itself: each stream is refused (431, or REFUSED_STREAM) and reaches no
/// upstream, and the same connection goes on serving a normal request.
#[test]
fn http2_oversized_header_lists_are_refused() {
    let _serial = one_at_a_time();
    let gw = Proxied::start(&[]);
    let url = format!("https://{}/echo/h2-headers", gw.target());
    let rt = support::runtime();
    rt.block_on(async {
        let tls = gw.tunnel_tls(&[b"h2"]).await.unwrap();
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        let big = http::Request::get(&url)
            .header("x-big", "a".repeat(100 * 1024))
            .body(())
            .unwrap();
        let mut many = http::Request::get(&url);
        for i in 0..5000 {
            many = many.header(format!("x-h{i}"), "v");
        }
        for (what, req) in [
            ("a 100 KiB header", big),
            ("5,000 headers", many.body(()).unwrap()),
        ] {
            let mut client = client.clone().ready().await.unwrap();
            let (response, _) = client.send_request(req, true).unwrap();
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, response)
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer"));
            match answer {
                Ok(resp) => assert_eq!(resp.status(), 431, "{what}"),
                Err(e) => assert_eq!(
                    e.reason(),
                    Some(h2::Reason::REFUSED_STREAM),
                    "{what}: {e:?}"
                ),
            }
        }
        let mut client = client.ready().await.unwrap();
        let ok = http::Request::get(format!("https://{}/echo/h2-after", gw.target()))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(ok, true).unwrap();
        let resp = tokio::time::timeout(ANSWER_TIMEOUT, response)
            .await
            .expect("an answer")
            .expect("a response on the same connection");
        assert_eq!(resp.status(), 200);
    });
    assert!(gw.up.requests_to("/echo/h2-headers").is_empty());
    assert_eq!(gw.up.requests_to("/echo/h2-after").len(), 1);
}

/// CONTINUATION flood (VU#421644): a HEADERS frame without END_HEADERS,
/// then CONTINUATION frames that never end the block, in raw frames,
/// once with empty frames (which cost no header bytes) and once with
/// header fields. The gateway must cut the connection (GOAWAY) after a
/// bounded number of frames and bytes, without buffering the flood.
#[test]
fn http2_continuation_flood_is_cut_off() {
    let _serial = one_at_a_time();
    /// The most the flood sends before giving up.
    const MAX_FRAMES: usize = 100_000;
    let gw = Proxied::start(&[]);
    let pid = gw.pid();
    let rt = support::runtime();
    rt.block_on(async {
        let before = median_latency(&gw).await;
        let rss_before = proxied::rss_kib(pid);
        for fill in [0usize, 1000] {
            let authority = gw.target();
            let (cut, sent) = flood_h2(&gw, |mut w| async move {
                let mut first = frame::PREFACE.to_vec();
                first.extend(frame::encode(frame::SETTINGS, 0, 0, &[]));
                first.extend(frame::encode(
                    frame::HEADERS,
                    frame::END_STREAM,
                    1,
                    &frame::get_block(&authority, "/echo/continuation"),
                ));
                if w.write_all(&first).await.is_err() {
                    return 0;
                }
                let started = Instant::now();
                let mut sent = 0;
                while sent < MAX_FRAMES && started.elapsed() < Duration::from_secs(30) {
                    let mut batch = Vec::new();
                    for _ in 0..16 {
                        let payload = if fill == 0 {
                            Vec::new()
                        } else {
                            frame::filler_field(sent, fill)
                        };
                        batch.extend(frame::encode(frame::CONTINUATION, 0, 1, &payload));
                        sent += 1;
                    }
                    if w.write_all(&batch).await.is_err() {
                        break;
                    }
                }
                sent
            })
            .await;
            eprintln!("CONTINUATION flood ({fill}-byte fields): {sent} frames sent; {cut:?}");
            assert!(
                cut.closed,
                "the gateway kept a CONTINUATION flood's connection open ({sent} frames)"
            );
            assert!(
                matches!(
                    cut.goaway,
                    Some(frame::ENHANCE_YOUR_CALM) | Some(0x9) | Some(0x1)
                ),
                "no GOAWAY (ENHANCE_YOUR_CALM, COMPRESSION_ERROR or PROTOCOL_ERROR) \
                 for a CONTINUATION flood: {cut:?}"
            );
            assert!(
                sent < MAX_FRAMES,
                "all {MAX_FRAMES} CONTINUATION frames were read"
            );
        }
        let grown = proxied::rss_kib(pid).saturating_sub(rss_before);
        assert!(
            grown < 64 * 1024,
            "the daemon grew by {grown} KiB during the floods"
        );
        let during = latency_under_abuse(&gw, before).await;
        assert_latency_ratio("CONTINUATION flood (after)", before, during);
    });
    assert!(gw.up.requests_to("/echo/continuation").is_empty());
}

/// One kind of slow connection, and the gateway's limit that must end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slow {
    /// Connected to the proxy, sends nothing.
    ProxySilent,
    /// A `CONNECT` head, one more byte every few seconds, never finished.
    ProxyTrickle,
    /// `CONNECT` answered, then the first bytes of a TLS record only.
    HandshakeStalled,
    /// TLS established inside the tunnel, then nothing.
    TlsSilent,
    /// TLS established, then a request head one byte at a time.
    TlsTrickle,
}

/// The gateway's header read timeout (also its deadline for a tunnel's
/// first request) and its TLS handshake timeout, as
/// `gateway/src/proxy/session.rs` sets them.
const HEADER_READ_LIMIT: Duration = Duration::from_secs(30);
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// How late after its limit the gateway may close a slow connection on
/// this loaded machine.
const CLOSE_GRACE: Duration = Duration::from_secs(20);
/// How often a trickling connection sends its next byte.
const TRICKLE_EVERY: Duration = Duration::from_secs(3);

impl Slow {
    /// In the order they are opened: the longest limits first, so that
    /// all are still held when the well-behaved client measures.
    const ALL: [(Slow, usize); 5] = [
        (Slow::TlsSilent, 1_500),
        (Slow::TlsTrickle, 1_500),
        (Slow::ProxySilent, 2_500),
        (Slow::ProxyTrickle, 2_500),
        (Slow::HandshakeStalled, 2_000),
    ];

    fn limit(self) -> Duration {
        match self {
            Slow::HandshakeStalled => HANDSHAKE_LIMIT,
            _ => HEADER_READ_LIMIT,
        }
    }
}

/// A slow connection, opened and in its slow state.
enum SlowStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Opens a connection of `kind` and leaves it in its slow state.
async fn open_slow(dialer: &proxied::Dialer, kind: Slow) -> io::Result<SlowStream> {
    Ok(match kind {
        Slow::ProxySilent => SlowStream::Tcp(TcpStream::connect(dialer.proxy()).await?),
        Slow::ProxyTrickle => {
            let mut tcp = TcpStream::connect(dialer.proxy()).await?;
            let head = dialer.connect_request();
            // All but the end of the head.
            tcp.write_all(&head.as_bytes()[..head.len() - 4]).await?;
            tcp.write_all(b"\r\nX-Slow: ").await?;
            SlowStream::Tcp(tcp)
        }
        Slow::HandshakeStalled => {
            let mut tcp = dialer.tunnel().await?;
            // A handshake record header announcing 512 bytes that never come.
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await?;
            SlowStream::Tcp(tcp)
        }
        Slow::TlsSilent => SlowStream::Tls(Box::new(dialer.tunnel_tls(&[b"http/1.1"]).await?)),
        Slow::TlsTrickle => {
            let mut tls = dialer.tunnel_tls(&[b"http/1.1"]).await?;
            tls.write_all(b"GET /echo/slow HTTP/1.1\r\nX-Slow: ")
                .await?;
            tls.flush().await?;
            SlowStream::Tls(Box::new(tls))
        }
    })
}

/// Holds the connection (trickling for the trickle kinds) until the
/// gateway closes it or `until`; returns when it was closed.
async fn hold_slow(stream: SlowStream, kind: Slow, until: Instant) -> Option<Instant> {
    let trickle = matches!(kind, Slow::ProxyTrickle | Slow::TlsTrickle);
    let (mut r, mut w): (
        Box<dyn AsyncRead + Unpin + Send>,
        Box<dyn AsyncWrite + Unpin + Send>,
    ) = match stream {
        SlowStream::Tcp(s) => {
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
        SlowStream::Tls(s) => {
            let (r, w) = tokio::io::split(*s);
            (Box::new(r), Box::new(w))
        }
    };
    let deadline = tokio::time::Instant::from_std(until);
    let mut buf = [0u8; 512];
    let mut next = tokio::time::Instant::now() + TRICKLE_EVERY;
    loop {
        tokio::select! {
            r = r.read(&mut buf) => match r {
                // The gateway may answer (408, an alert) before closing.
                Ok(n) if n > 0 => continue,
                _ => return Some(Instant::now()),
            },
            () = tokio::time::sleep_until(next), if trickle => {
                next += TRICKLE_EVERY;
                if w.write_all(b"a").await.is_err() || w.flush().await.is_err() {
                    return Some(Instant::now());
                }
            }
            () = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

/// Slowloris (issue #8): 10,000 connections through the explicit proxy
/// that send their request heads slowly or not at all, before `CONNECT`
/// and after TLS, plus stalled handshakes. While they are held, a
/// well-behaved client on fresh connections keeps its median latency
/// within 2× of its own just before; then the gateway's timeouts (header
/// read, handshake, first request) close every one of them, and the
/// daemon's file descriptors return to where they were.
#[test]
fn slowloris_connections_are_timed_out_while_others_are_served() {
    let _serial = one_at_a_time();
    let total: usize = Slow::ALL.iter().map(|(_, n)| n).sum();
    // The test's and the daemon's sockets (the daemon inherits it, and
    // raises its soft limit to the hard one itself).
    let limit = proxied::raise_nofile(total as u64 * 2 + 4096);
    assert!(
        limit >= total as u64 + 2048,
        "the open-file limit is {limit}, too low for {total} connections (run as root, or \
         raise the hard limit)"
    );
    let gw = Proxied::start(&[]);
    let pid = gw.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    eprintln!(
        "daemon {}",
        limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or("?")
    );
    let rt = support::runtime();
    rt.block_on(async {
        let before = median_latency(&gw).await;
        let fds_before = proxied::fd_count(pid);
        let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(128));
        let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        // Opening may be slow on a loaded machine; holding is bounded by
        // the longest limit plus the grace, from the moment it opened.
        let mut tasks = Vec::with_capacity(total);
        for (kind, n) in Slow::ALL {
            for _ in 0..n {
                let dialer = gw.dialer();
                let opening = opening.clone();
                let opened = opened.clone();
                let failed = failed.clone();
                tasks.push(tokio::spawn(async move {
                    let permit = opening.acquire_owned().await.expect("semaphore");
                    let stream =
                        tokio::time::timeout(Duration::from_secs(60), open_slow(&dialer, kind))
                            .await
                            .map_err(|_| format!("{kind:?}: opening took over 60 s"))
                            .and_then(|r| r.map_err(|e| format!("{kind:?}: opening failed: {e}")));
                    drop(permit);
                    let stream = stream.inspect_err(|_| {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    })?;
                    let at = Instant::now();
                    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let until = at + kind.limit() + CLOSE_GRACE;
                    let closed = hold_slow(stream, kind, until).await;
                    Ok::<_, String>((kind, at, closed))
                }));
            }
        }
        // Wait (bounded) until all are open, then measure while they are held.
        let open_deadline = Instant::now() + Duration::from_secs(120);
        let settled = || {
            opened.load(std::sync::atomic::Ordering::Relaxed)
                + failed.load(std::sync::atomic::Ordering::Relaxed)
        };
        while settled() < total && Instant::now() < open_deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let open_now = opened.load(std::sync::atomic::Ordering::Relaxed);
        let fds_held = proxied::fd_count(pid);
        let already_closed = tasks.iter().filter(|t| t.is_finished()).count();
        eprintln!(
            "slowloris: {open_now} of {total} opened in {:?}, {already_closed} of them already \
             closed by the gateway; it holds {fds_held} fds ({fds_before} before)",
            started.elapsed()
        );
        assert_eq!(
            open_now,
            total,
            "not every slow connection could be opened ({} failed; the daemon's log says why)",
            failed.load(std::sync::atomic::Ordering::Relaxed)
        );
        assert!(
            fds_held >= fds_before + total * 9 / 10,
            "the daemon holds {fds_held} fds, not the {total} slow connections"
        );
        let during = latency_under_abuse(&gw, before).await;

        let mut late = Vec::new();
        let mut early = Vec::new();
        for task in tasks {
            let (kind, at, closed) = task.await.expect("a slow connection's task").unwrap();
            match closed {
                None => late.push(kind),
                Some(t) if t.duration_since(at) + Duration::from_secs(2) < kind.limit() => {
                    early.push((kind, t.duration_since(at)))
                }
                Some(_) => {}
            }
        }
        assert!(
            late.is_empty(),
            "{} slow connections were still open {CLOSE_GRACE:?} after their limit, e.g. {:?}",
            late.len(),
            &late[..late.len().min(5)]
        );
        assert!(
            early.is_empty(),
            "{} slow connections were closed before the gateway's limit (so by something \
             else), e.g. {:?}",
            early.len(),
            &early[..early.len().min(5)]
        );
        assert_latency_ratio("10,000 slowloris connections", before, during);
        // Nothing leaked: the daemon's descriptors come back down.
        let settled =
            support::wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
                let now = proxied::fd_count(pid);
                (now <= fds_before + 16).then_some(now)
            });
        assert!(
            settled.is_some(),
            "the daemon still holds {} fds ({fds_before} before the slow connections)",
            proxied::fd_count(pid)
        );
    });
    assert!(gw.up.requests_to("/echo/slow").is_empty());
}
