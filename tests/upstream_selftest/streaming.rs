//! Streaming endpoints: SSE, chunks, sized downloads, stalls and resets.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::curl::*;
use crate::upstream::{Upstream, UpstreamOpts, pattern};

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
