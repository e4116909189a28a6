//! Issue #15, items 1, 5 and 8 (upgrades, metadata addresses), against
//! the real daemon through its explicit proxy, with raw clients (an HTTP/2
//! client from the `h2` crate, HTTP/1.1 heads written byte for byte, curl
//! with `--path-as-is`) and the recording test upstream:
//!
//! - one authority: `:authority`, an absolute-form target and every `Host`
//!   must name the tunnel's host and port, and the upstream gets the
//!   session's authority, whatever the agent wrote;
//! - canonical paths: every spelling of a blocked path is blocked (or
//!   refused), and a secret's path scope holds only when every reading of
//!   the path is inside it;
//! - a protocol switch other than WebSocket is never bridged;
//! - metadata services outside link-local, and NAT64 forms, are refused.
//!
//! For every refused request the upstream records nothing and the audit
//! trail names why.

mod support;

use std::time::Duration;

use support::gw::Gw;
use support::proxied::{self, Proxied};
use tokio::io::AsyncWriteExt;

/// How long the gateway may take to answer one request.
const WAIT: Duration = Duration::from_secs(20);

/// Writes `head` on a fresh TLS connection inside the tunnel; the status
/// of the answer.
async fn h1(gw: &Proxied, head: &str) -> u16 {
    let mut tls = gw.tunnel_tls(&[b"http/1.1"]).await.expect("tunnel");
    tls.write_all(head.as_bytes()).await.expect("write");
    let head = tokio::time::timeout(WAIT, proxied::read_head(&mut tls))
        .await
        .expect("an answer in time")
        .expect("a response head");
    proxied::status_of(&head).unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// One HTTP/2 request (with an optional `host` header beside
/// `:authority`) on a fresh connection inside the tunnel; its status.
async fn h2(gw: &Proxied, uri: http::Uri, host: Option<&str>) -> u16 {
    let tls = gw.tunnel_tls(&[b"h2"]).await.expect("tunnel");
    let (client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    let mut req = http::Request::get(uri);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    let (resp, _) = client
        .send_request(req.body(()).expect("request"), true)
        .expect("send");
    tokio::time::timeout(WAIT, resp)
        .await
        .expect("an answer in time")
        .expect("an h2 response")
        .status()
        .as_u16()
}

fn uri_with(authority: &str, path_and_query: &str) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    parts.authority = Some(authority.parse().expect("authority"));
    parts.path_and_query = Some(path_and_query.parse().expect("path"));
    http::Uri::from_parts(parts).expect("uri")
}

/// The audit row of the request to `path` (waits for `n` rows first).
fn audit_row(gw: &Proxied, n: usize, path: &str) -> serde_json::Value {
    let rows = gw.audit_rows(n);
    rows.iter()
        .find(|r| r["path"] == path)
        .cloned()
        .unwrap_or_else(|| panic!("no audit row for {path}: {rows:#?}"))
}

#[test]
fn every_authority_in_a_request_must_be_the_tunnels() {
    let gw = Proxied::start(&[]);
    let target = gw.target();
    let rt = support::runtime();
    rt.block_on(async {
        // HTTP/2: `:authority` is the tunnel's, a `host` header another
        // tenant's. Before the fix the upstream got `:authority
        // evil.tenant` with the credential.
        let status = h2(&gw, uri_with(&target, "/echo/h2-host"), Some("evil.tenant")).await;
        assert_eq!(
            status,
            403,
            "h2 :authority + host: evil.tenant; the upstream saw {:#?}",
            gw.up.requests_to("/echo/h2-host")
        );
        // HTTP/2 `:path` that is not origin form.
        let status = h2(&gw, uri_with(&target, "?h2-no-slash"), None).await;
        assert_eq!(status, 400, "h2 :path without a leading /");
        // HTTP/1.1: absolute form naming the tunnel, Host another tenant.
        let head = format!(
            "GET https://{target}/echo/abs-host HTTP/1.1\r\nHost: evil.tenant\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(h1(&gw, &head).await, 403, "absolute form + Host: evil.tenant");
        // Two Host headers, the second another tenant's; then two equal.
        let head = format!(
            "GET /echo/dup-host-evil HTTP/1.1\r\nHost: {target}\r\nHost: evil.tenant\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(h1(&gw, &head).await, 403, "Host twice, once evil.tenant");
        let head = format!(
            "GET /echo/dup-host-same HTTP/1.1\r\nHost: {target}\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(h1(&gw, &head).await, 400, "Host twice, equal");
        // The tunnel's host in another spelling passes, and the upstream
        // gets the session's spelling, not the agent's.
        let shouting = target.to_ascii_uppercase().replacen(':', ".:", 1);
        let head = format!(
            "GET /echo/host-spelling HTTP/1.1\r\nHost: {shouting}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(h1(&gw, &head).await, 200, "Host: {shouting}");
        let status = h2(&gw, uri_with(&target, "/echo/h2-plain"), None).await;
        assert_eq!(status, 200, "an ordinary h2 request");
        let status = h2(&gw, uri_with(&target, "/echo/h2-same-host"), Some(&shouting)).await;
        assert_eq!(status, 200, "h2 with host: {shouting}");
    });

    let seen = gw.up.requests();
    for r in &seen {
        assert!(!r.contains("evil.tenant"), "the upstream saw {r:#?}");
        let authority = r.authority.as_deref().or(r.header("host"));
        assert_eq!(authority, Some(target.as_str()), "{r:#?}");
        assert!(r.header_values("host").len() <= 1, "{r:#?}");
    }
    let mut paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/echo/h2-plain",
            "/echo/h2-same-host",
            "/echo/host-spelling"
        ],
        "only the requests naming the tunnel's host reached the upstream"
    );
    for (path, decision) in [
        ("/echo/h2-host", "exfiltration"),
        ("/echo/abs-host", "exfiltration"),
        ("/echo/dup-host-evil", "exfiltration"),
        ("/echo/dup-host-same", "bad_request"),
    ] {
        let row = audit_row(&gw, 8, path);
        assert_eq!(row["decision"], decision, "{row:#}");
    }
}

#[test]
fn metadata_addresses_outside_link_local_are_refused() {
    let gw = Proxied::start(&[]);
    let rt = support::runtime();
    rt.block_on(async {
        for dest in [
            "100.100.100.200:80",
            "168.63.129.16:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[2002:a9fe:a9fe::]:80",
        ] {
            let mut tcp = tokio::net::TcpStream::connect(gw.dialer().proxy())
                .await
                .expect("proxy");
            let head = format!(
                "CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\nProxy-Authorization: {}\r\n\r\n",
                gw.proxy_authorization()
            );
            tcp.write_all(head.as_bytes()).await.expect("write");
            let head = tokio::time::timeout(Duration::from_secs(5), proxied::read_head(&mut tcp))
                .await
                .unwrap_or_else(|_| panic!("CONNECT {dest}: no answer within 5 s"))
                .expect("a response head");
            assert_eq!(
                proxied::status_of(&head),
                Some(403),
                "CONNECT {dest}: {head}"
            );
        }
    });
}

#[test]
fn only_websocket_upgrades_are_bridged() {
    let gw = Proxied::start(&[]);
    let target = gw.target();
    let rt = support::runtime();
    rt.block_on(async {
        // An h2c upgrade asked of a server that switches: not bridged.
        let head = format!(
            "GET /switch HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        );
        assert_eq!(h1(&gw, &head).await, 502, "101 to h2c");
        // An upgrade the agent asked for is dropped: the request goes as
        // an ordinary one.
        let head = format!(
            "GET /echo/h2c-asked HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(h1(&gw, &head).await, 200, "h2c asked of an ordinary endpoint");
        // A WebSocket handshake still switches.
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        assert_eq!(h1(&gw, &head).await, 101, "WebSocket");
    });
    let asked = gw.up.requests_to("/echo/h2c-asked");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].header("upgrade"), None, "{:#?}", asked[0]);
    assert_eq!(asked[0].header("http2-settings"), None, "{:#?}", asked[0]);
    let switched = gw.up.requests_to("/switch");
    assert_eq!(switched.len(), 1, "{switched:#?}");
    assert_eq!(switched[0].header("upgrade"), None, "{:#?}", switched[0]);
    let row = audit_row(&gw, 3, "/switch");
    assert_eq!(row["decision"], "upstream_error", "{row:#}");
}

/// A rule blocks `/admin/**` and a secret is scoped to `/echo/v1/**`; curl
/// sends each spelling as written (`--path-as-is`).
#[test]
fn rules_and_scopes_match_every_spelling_of_a_path() {
    let gw = Gw::start();
    let host = gw.host();
    gw.daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        &host,
        "--path",
        "/admin/**",
        "--block",
    ]);
    let scoped = format!("sk-scoped-{}", support::random_hex(8));
    gw.add_secret(
        "scoped",
        &["--path", "/echo/v1/**", "--header", "X-Scoped"],
        &scoped,
    );
    let get = |path: &str, extra: &[&str]| {
        let url = gw.up.url(path);
        let mut args = vec!["--path-as-is", "-o", "/dev/null"];
        args.extend_from_slice(extra);
        args.push(&url);
        Gw::code(&gw.curl(&args))
    };

    for (path, want) in [
        ("/admin/x", 403),
        ("//admin/x", 403),
        ("/%61dmin/x", 403),
        ("/%41dmin/x", 403),
        ("/admin%2fx", 403),
        ("/admin%5Cx", 403),
        ("/admin;p=1/x", 403),
        ("/Admin/x", 403),
        ("/x/../admin/x", 400),
        ("/x/%2e%2e/admin/x", 400),
        ("/x%2F..%2Fadmin/x", 400),
        ("/..;/admin/x", 400),
    ] {
        assert_eq!(get(path, &[]), want, "{path}");
    }
    let reached: Vec<String> = gw
        .up
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p.to_ascii_lowercase().contains("dmin"))
        .collect();
    assert!(
        reached.is_empty(),
        "blocked spellings reached the upstream: {reached:?}"
    );

    // The scope: inside for every reading, the canonical path forwarded.
    let scoped_header = |path: &str| {
        let seen = gw.up.requests();
        let r = seen
            .iter()
            .rev()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("the upstream never saw {path}: {seen:#?}"));
        r.header("x-scoped").map(str::to_owned)
    };
    assert_eq!(get("/echo/v1/%63hat", &[]), 200);
    assert_eq!(
        scoped_header("/echo/v1/chat").as_deref(),
        Some(scoped.as_str())
    );
    assert_eq!(get("/echo/v1/obj%2fkey", &[]), 200);
    assert_eq!(
        scoped_header("/echo/v1/obj%2Fkey").as_deref(),
        Some(scoped.as_str())
    );
    // Outside for some reading: not injected (the upstream's own 404 for
    // `//echo`), its placeholder refused.
    assert_eq!(get("//echo/v1/chat", &[]), 404);
    assert_eq!(scoped_header("//echo/v1/chat"), None);
    assert_eq!(get("/echo/V1/chat", &[]), 200);
    assert_eq!(scoped_header("/echo/V1/chat"), None);
    assert_eq!(
        get("//echo/v1/placeholder", &["-H", "X-Scoped: airlock:scoped"]),
        403
    );
    assert_eq!(get("/echo/v1/../v2", &[]), 400);
    assert_eq!(get("/echo/v1/%2E%2E/v2", &[]), 400);
    assert!(!gw.up.saw("v2"), "{:#?}", gw.up.requests());

    let rows = gw.requests(19);
    let decision = |path: &str| {
        rows.iter()
            .find(|r| r["path"] == path)
            .map(|r| r["decision"].clone())
            .unwrap_or_else(|| panic!("no audit row for {path}"))
    };
    assert_eq!(decision("/%61dmin/x"), "blocked");
    assert_eq!(decision("/x/../admin/x"), "bad_request");
}
