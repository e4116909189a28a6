//! Bad input, loopback and metadata addresses, and a bad upstream
//! certificate get the right status, never a bypass.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::support::gw::{CURL_TIMEOUT, Gw};
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::{Daemon, run, wait_until};

#[test]
fn bad_input_gets_the_right_status() {
    let gw = Gw::start_with(
        UpstreamOpts::default(),
        &[("AIRLOCK_UPSTREAM_TIMEOUT", "2")],
    );
    // No token, a wrong token: 407.
    for proxy in [
        format!("http://{}", gw.proxy),
        format!("http://bot:wrong@{}", gw.proxy),
    ] {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
            "--cacert",
            &gw.ca,
            "-x",
            &proxy,
            &gw.up.url("/echo"),
        ]);
        let out = run(&mut cmd, None, CURL_TIMEOUT);
        assert!(out.stdout.contains("407"), "{out:#?}");
    }
    // Raw requests to the proxy.
    let raw = |req: &[u8]| -> String {
        let mut s = TcpStream::connect(&gw.proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let auth = base64_basic(&format!("bot:{}", gw.token));
    assert!(raw(b"CONNECT nonsense HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
    let huge = format!(
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    assert!(
        raw(huge.as_bytes()).starts_with("HTTP/1.1 431"),
        "oversized headers"
    );
    // Content-Length with Transfer-Encoding: hyper frames by the chunked
    // encoding and drops Content-Length (RFC 9112 §6.3), and the request
    // is re-framed on the way out, so the upstream cannot read it another
    // way: exactly one request with an empty body arrives.
    let plain = Upstream::start(UpstreamOpts::plain_http());
    let conflicting = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nProxy-Authorization: Basic {auth}\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        plain.ip_url("/echo/framing"),
        plain.port()
    );
    let answer = raw(conflicting.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = plain.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].body_len, 0);
    // Loopback is refused unless allowed; the gateway's own port always.
    let own = format!(
        "CONNECT {} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n",
        gw.proxy
    );
    assert!(raw(own.as_bytes()).starts_with("HTTP/1.1 403"));
    // Upstream failures.
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/reset")])), 502);
    let out = gw.curl(&[&gw.up.url("/stall-headers")]);
    assert_eq!(Gw::code(&out), 504, "{out:#?}");
    // Still serving everyone else.
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo")])), 200);
}

/// Issue #8, exfiltration matrix: `CONNECT` to the host itself, to
/// link-local addresses and to cloud metadata services (IPv4 and IPv6,
/// also as an IPv4-mapped IPv6 literal or a name that resolves to
/// loopback) is refused with 403 and audited as `destination_refused`,
/// and nothing is dialled.
#[test]
fn loopback_and_metadata_are_refused_by_default() {
    let daemon = Daemon::start();
    let token = daemon.cli_ok(&["agent", "add", "bot"]).trim().to_owned();
    let proxy = daemon.status_json()["proxy_addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let targets = [
        "127.0.0.1:443",
        "127.1.2.3:443",
        "0.0.0.0:443",
        "169.254.169.254:80",
        "169.254.169.254:443",
        "169.254.170.2:80",
        "[::1]:443",
        "[::]:443",
        "[fe80::1]:443",
        "[fe80::a9fe:a9fe]:80",
        "[fd00:ec2::254]:80",
        "[::ffff:169.254.169.254]:80",
        "[::ffff:127.0.0.1]:443",
        "localhost:443",
    ];
    for target in targets {
        let mut s = TcpStream::connect(&proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = base64_basic(&format!("bot:{token}"));
        s.write_all(
            format!("CONNECT {target} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 403"), "{target}: {answer}");
        assert!(answer.contains("destination_refused"), "{target}: {answer}");
    }
    let rows = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let rows: Vec<serde_json::Value> = daemon
            .cli_ok(&["audit", "--json", "--limit", "1000"])
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|r: &serde_json::Value| r["decision"] == "destination_refused")
            .collect();
        (rows.len() >= targets.len()).then_some(rows)
    })
    .expect("every refused CONNECT is audited");
    assert_eq!(rows.len(), targets.len(), "{rows:#?}");
    for row in &rows {
        assert_eq!(row["agent"], "bot", "{row:#}");
        assert_eq!(row["method"], "CONNECT", "{row:#}");
        assert_eq!(row["status"], 403, "{row:#}");
    }
}

#[test]
fn a_bad_upstream_certificate_is_a_502_never_a_bypass() {
    let gw = Gw::start();
    // An upstream whose CA the gateway does not trust.
    let rogue = Upstream::start(UpstreamOpts::default());
    let out = gw.curl(&[&rogue.url("/echo")]);
    assert_eq!(Gw::code(&out), 502, "{out:#?}");
    assert!(out.stdout.contains("upstream_error"), "{out:#?}");
    assert!(rogue.requests().is_empty());
}
