//! `/echo` over HTTP/2 and HTTP/1.1, and a large streamed upload.

use std::time::Instant;

use crate::curl::*;
use crate::upstream::{Upstream, UpstreamOpts};

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
