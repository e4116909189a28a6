//! Streams through the proxy: server-sent events, large uploads,
//! WebSocket, gRPC trailers.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::support::gw::Gw;

#[test]
fn server_sent_events_stream_one_by_one() {
    let gw = Gw::start();
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--cacert", &gw.ca, "-x", &gw.proxy_url()])
        .arg(gw.up.url("/sse?n=5&interval_ms=300"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut arrivals = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("data:") {
            arrivals.push(start.elapsed());
        }
    }
    let _ = child.wait();
    assert_eq!(arrivals.len(), 5);
    // The first event arrives long before the last was produced.
    assert!(
        arrivals[4] - arrivals[0] >= Duration::from_millis(900),
        "{arrivals:?}"
    );
}

#[test]
fn large_uploads_stream_with_flat_memory() {
    let gw = Gw::start();
    let pid = gw.daemon.status_json()["pid"].as_i64().unwrap();
    let rss = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = rss();
    const SIZE: u64 = 1024 * 1024 * 1024;
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &gw.ca,
            "-x",
            &gw.proxy_url(),
            "-T",
            "-",
            "-H",
            "Content-Type: application/octet-stream",
        ])
        .arg(gw.up.url("/echo/upload"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..(SIZE >> 20) {
        stdin.write_all(&chunk).unwrap();
    }
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["body_len"], SIZE);
    let grown_kib = rss().saturating_sub(before);
    assert!(
        grown_kib < 64 * 1024,
        "the daemon's peak memory grew by {grown_kib} KiB for a {SIZE}-byte upload"
    );
    let rows = gw.requests(1);
    assert_eq!(rows[0]["bytes_up"], SIZE, "{rows:#?}");
}

#[test]
fn websocket_echo_through_the_proxy() {
    let gw = Gw::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let tls = tunnel_tls(&gw, "api.test.local", vec![b"http/1.1".to_vec()])
            .await
            .unwrap();
        let url = format!("wss://api.test.local:{}/ws", gw.up.port());
        let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
        assert_eq!(resp.status(), 101);
        ws.send(Message::Text("hello through airlock".into()))
            .await
            .unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "hello through airlock");
        ws.close(None).await.unwrap();
    });
    let seen = gw.up.requests_to("/ws");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {}", gw.value).as_str())
    );
}

#[test]
fn grpc_over_http2_keeps_its_trailers() {
    let gw = Gw::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body, trailers) = rt.block_on(async {
        use http_body_util::BodyExt;
        let tls = tunnel_tls(&gw, "api.test.local", vec![b"h2".to_vec()])
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!("https://api.test.local:{}/grpc", gw.up.port()))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"\x00\x00\x00\x00\x02hi",
            )))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (status, collected.to_bytes(), trailers)
    });
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"\x00\x00\x00\x00\x05hello");
    let trailers = trailers.expect("the upstream's trailers reached the client");
    assert_eq!(trailers["grpc-status"], "0");
    let seen = gw.up.last_request().unwrap();
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(seen.header("te"), Some("trailers"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {}", gw.value).as_str())
    );
}
