//! Issue #18, item 5: no key comes back. The upstream (`/leak`, see
//! tests/support/upstream/leak.rs) hands the injected key back in a
//! header, in its body (plain, JSON-escaped, cut into one-byte frames with
//! delays between them, as SSE, 256 MiB of it), in trailers, gzip'd, in
//! a redirect and in WebSocket messages; the agent gets the placeholder
//! every time, never the key.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::support::gw::Gw;

/// The response body, after curl's `-i` heads (the proxy's answer to
/// CONNECT, then the response's) and before its `-w` code.
fn body_of(out: &str) -> &str {
    let body = out.rsplit_once("\r\n\r\n").map_or(out, |(_, b)| b);
    body.rsplit_once('\n').map_or(body, |(b, _)| b)
}

#[test]
fn an_echoed_key_comes_back_as_its_placeholder() {
    let gw = Gw::start();
    for version in ["--http1.1", "--http2"] {
        let out = gw.curl(&["-i", version, &gw.up.url("/leak?how=plain")]);
        assert_eq!(Gw::code(&out), 200, "{out:#?}");
        assert!(!out.stdout.contains(&gw.value), "{out:#?}");
        let head = out.stdout.to_ascii_lowercase();
        assert!(head.contains("x-echo: airlock:up\r\n"), "{out:#?}");
        assert!(
            !head.contains("content-length"),
            "a scrubbed body has no length: {out:#?}"
        );
        assert_eq!(body_of(&out.stdout), "your key is airlock:up\n");
    }

    let out = gw.curl(&[&gw.up.url("/leak?how=json")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert!(!out.stdout.contains(&gw.value), "{out:#?}");
    let body: serde_json::Value = serde_json::from_str(body_of(&out.stdout)).unwrap();
    for field in ["raw", "slashed", "escaped"] {
        assert_eq!(body[field], "airlock:up", "{field}: {out:#?}");
    }

    // One byte per frame, 2 ms apart: every cut of the key, three spellings.
    let out = gw.curl(&[&gw.up.url("/leak?how=split&delay_ms=2")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(
        body_of(&out.stdout),
        "raw airlock:up pct airlock:up json airlock:up\n"
    );

    // A second secret whose value has a `/` and a `+`: JSON writes `\/`,
    // a URL `%2F`. (`X-Api-Key` is what `/leak` echoes when present.)
    let slashy = format!("k/{}+x", crate::support::random_hex(8));
    gw.add_secret("slashy", &["--header", "X-Api-Key"], &slashy);
    for how in ["json", "split&delay_ms=1", "plain"] {
        let out = gw.curl(&["-i", &gw.up.url(&format!("/leak?how={how}"))]);
        assert_eq!(Gw::code(&out), 200, "{out:#?}");
        assert!(
            !out.stdout.contains(&slashy) && !out.stdout.contains(&slashy.replace('/', "\\/")),
            "{how}: {out:#?}"
        );
        assert!(out.stdout.contains("airlock:slashy"), "{how}: {out:#?}");
    }
    let seen = gw.up.last_request().unwrap();
    assert_eq!(seen.header("x-api-key"), Some(slashy.as_str()));
    assert_eq!(seen.header("accept-encoding"), Some("identity"));

    // Where nothing is injected (the same server under another name), the
    // answer is untouched, its length kept.
    let other = gw
        .up
        .url("/leak?how=plain")
        .replace("api.test.local", "localhost");
    let out = gw.curl(&["-i", "-H", "Authorization: Bearer not-a-secret", &other]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("content-length: 25\r\n"),
        "{out:#?}"
    );
    assert_eq!(body_of(&out.stdout), "your key is not-a-secret\n");
}

/// Issue #18: "a redirect from the upstream is passed to the agent, never
/// followed with credentials", here with the key in its `Location`.
#[test]
fn a_websocket_quoting_the_header_key_sends_its_placeholder() {
    // Only a header secret applies: the agent's messages go as they are,
    // the upstream's are scrubbed.
    let gw = Gw::start();
    let url = format!("wss://api.test.local:{}/ws", gw.up.port());
    let got = websocket(&gw, &url, "['authorization?', 'plain', b'bin']");
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].contains("airlock:up") && !got[0].contains(&gw.value),
        "{got:#?}"
    );
    assert_eq!(got[1..], ["plain", "bytes: bin"], "{got:#?}");
    let seen = gw.up.requests_to("/ws");
    assert!(
        seen[0]
            .header("authorization")
            .is_some_and(|a| a.contains(&gw.value)),
        "{seen:#?}"
    );
}

#[test]
fn a_redirect_carrying_the_key_reaches_the_agent_scrubbed_and_unfollowed() {
    let gw = Gw::start();
    let out = gw.curl(&["-i", &gw.up.url("/leak?how=redirect")]);
    assert_eq!(Gw::code(&out), 302, "{out:#?}");
    assert!(!out.stdout.contains(&gw.value), "{out:#?}");
    let head = out.stdout.to_ascii_lowercase();
    assert!(
        head.contains("location: /echo/landed?key=airlock:up\r\n"),
        "{out:#?}"
    );
    assert_eq!(
        body_of(&out.stdout),
        "moved to /echo/landed?key=airlock:up\n"
    );
    assert_eq!(
        gw.up.requests().len(),
        1,
        "the gateway followed the redirect"
    );

    // The agent follows it: its client sends the placeholder in the query,
    // which is not where `up` goes, so it is refused and nothing leaves.
    let out = gw.curl(&["-L", &gw.up.url("/leak?how=redirect")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert!(out.stdout.contains("exfiltration"), "{out:#?}");
    assert!(gw.up.requests_to("/echo/landed").is_empty());
}

#[test]
fn compressed_answers_are_avoided_or_refused() {
    let gw = Gw::start();
    // The agent asks for gzip; the gateway asks for identity, and an
    // upstream that listens answers plain, so it can be scrubbed.
    let out = gw.curl(&["--compressed", &gw.up.url("/leak?how=gzip&if_asked=1")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(body_of(&out.stdout), "compressed echo of airlock:up\n");
    assert_eq!(
        gw.up.last_request().unwrap().header("accept-encoding"),
        Some("identity")
    );
    // One that gzips regardless: its body cannot be scrubbed, so the
    // agent gets a 502 that says why, not the body.
    let out = gw.curl(&["--compressed", &gw.up.url("/leak?how=gzip")]);
    assert_eq!(Gw::code(&out), 502, "{out:#?}");
    assert!(out.stdout.contains("Content-Encoding"), "{out:#?}");
    assert!(!out.stdout.contains(&gw.value), "{out:#?}");
    // Where nothing is injected, gzip passes through as the agent asked.
    let other = gw
        .up
        .url("/leak?how=gzip")
        .replace("api.test.local", "localhost");
    let out = gw.curl(&["--compressed", &other]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(body_of(&out.stdout), "compressed echo of \n");
}

#[test]
fn server_sent_events_quoting_the_key_still_stream_one_by_one() {
    let gw = Gw::start();
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--cacert", &gw.ca, "-x", &gw.proxy_url()])
        .arg(gw.up.url("/leak?how=sse&n=5&interval_ms=300"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut arrivals = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("data:") {
            assert!(!line.contains(&gw.value), "{line}");
            assert!(line.contains("\"key\":\"airlock:up\""), "{line}");
            arrivals.push(start.elapsed());
        }
    }
    let _ = child.wait();
    assert_eq!(arrivals.len(), 5);
    // Each event arrives as it is sent, not held for the next one.
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(200),
            "{arrivals:?}"
        );
    }
}

#[test]
fn trailers_quoting_the_key_are_scrubbed() {
    let gw = Gw::start();
    let rt = crate::support::runtime();
    let trailers = rt.block_on(async {
        use http_body_util::BodyExt;
        let tls = tunnel_tls(&gw, "api.test.local", vec![b"h2".to_vec()])
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!(
            "https://api.test.local:{}/leak?how=trailers",
            gw.up.port()
        ))
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .trailers()
            .cloned()
    });
    let trailers = trailers.expect("the upstream's trailers reached the client");
    assert_eq!(trailers["grpc-message"], "key airlock:up refused");
    assert_eq!(trailers["grpc-status"], "16");
}

/// 256 MiB of the key over and over, in 1 MiB frames that cut keys apart:
/// every key replaced, and the daemon's peak memory barely moves.
#[test]
fn a_large_echo_is_scrubbed_with_flat_memory() {
    const MIB: usize = 256;
    let gw = Gw::start();
    let pid = gw.daemon.status_json()["pid"].as_i64().unwrap();
    let peak_kib = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    let before = peak_kib();
    let mut child = Command::new("curl")
        .args(["-sS", "--cacert", &gw.ca, "-x", &gw.proxy_url()])
        .arg(gw.up.url(&format!("/leak?how=big&mib={MIB}")))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Read as it streams, keeping only a tail to find values across reads.
    let (key, placeholder) = (gw.value.as_bytes(), b"airlock:up.");
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let (mut total, mut replaced) = (0usize, 0usize);
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        let keep = tail.len();
        tail.extend_from_slice(&buf[..n]);
        assert!(
            !tail.windows(key.len()).any(|w| w == key),
            "the key came through"
        );
        // Placeholders that end in this read.
        replaced += tail
            .windows(placeholder.len())
            .enumerate()
            .filter(|(i, w)| *w == placeholder && i + placeholder.len() > keep)
            .count();
        let cut = tail.len().saturating_sub(placeholder.len().max(key.len()));
        tail.drain(..cut);
    }
    assert!(child.wait().unwrap().success());
    let units = MIB * (1 << 20) / (key.len() + 1);
    assert_eq!(replaced, units, "every whole key in the body was replaced");
    assert!(total > 0);
    let grown_kib = peak_kib().saturating_sub(before);
    assert!(
        grown_kib < 64 * 1024,
        "the daemon's peak memory grew by {grown_kib} KiB for a {MIB} MiB echo"
    );
}
