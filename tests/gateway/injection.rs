//! Header and query injection: where a placeholder resolves, where a
//! secret applies (host, path, IP literal), and a redirect elsewhere.

use std::process::Command;

use crate::support::gw::{CURL_TIMEOUT, Gw};
use crate::support::run;
use crate::support::upstream::{Upstream, UpstreamOpts};

#[test]
fn injects_the_header_over_http1_and_http2() {
    let gw = Gw::start();
    // The upstream is spoken to in the agent's protocol (it offers both).
    for (version, upstream_version) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2.0")] {
        let out = gw.curl(&[version, &gw.up.url("/echo/v1/chat")]);
        assert_eq!(Gw::code(&out), 200, "{out:#?}");
        let seen = gw.up.last_request().expect("upstream saw the request");
        assert_eq!(seen.version, upstream_version);
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {}", gw.value).as_str())
        );
        assert!(seen.header("proxy-authorization").is_none());
        assert!(seen.header("via").is_none() && seen.header("x-forwarded-for").is_none());
        assert!(!out.stdout.contains(&gw.value) || out.stdout.contains("\"authorization\""));
    }
    let rows = gw.requests(2);
    assert!(
        rows.iter()
            .all(|r| r["agent"] == "bot" && r["status"] == 200),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["secrets"] == serde_json::json!(["up"]))
    );
}

#[test]
fn placeholders_resolve_only_where_the_secret_applies() {
    let gw = Gw::start();
    // The right host, in the secret's own header: injected. (Other
    // headers and query values are refused since issue #15: tests/placement.rs.)
    let out = gw.curl(&[
        "-H",
        "Authorization: Bearer airlock:up",
        &gw.up.url("/echo"),
    ]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.last_request().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {}", gw.value).as_str())
    );

    // Another host (the same server under another name): refused, audited.
    let other = gw.up.url("/echo").replace("api.test.local", "localhost");
    gw.up.clear_requests();
    let out = gw.curl(&["-H", "Authorization: Bearer airlock:up", &other]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert!(out.stdout.contains("exfiltration"), "{out:#?}");
    // A placeholder in the URL path, and a secret that does not exist.
    let out = gw.curl(&[&gw.up.url("/echo/airlock:up")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    let out = gw.curl(&["-H", "Authorization: airlock:nosuch", &gw.up.url("/echo")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    // Plain HTTP never gets a secret.
    let plain = Upstream::start(UpstreamOpts::plain_http());
    let out = gw.curl(&[
        "-H",
        "Authorization: Bearer airlock:up",
        &plain.ip_url("/echo"),
    ]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    let out = gw.curl(&[&plain.ip_url("/echo")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert!(
        plain
            .last_request()
            .unwrap()
            .header("authorization")
            .is_none()
    );

    // An agent that is not granted the secret.
    let other_token = gw
        .daemon
        .cli_ok(&["agent", "add", "other"])
        .trim()
        .to_owned();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}", "--cacert", &gw.ca])
        .args(["-x", &format!("http://other:{other_token}@{}", gw.proxy)])
        .args([
            "-H",
            "Authorization: Bearer airlock:up",
            &gw.up.url("/echo"),
        ]);
    let out = run(&mut cmd, None, CURL_TIMEOUT);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");

    assert!(
        gw.up.requests().is_empty(),
        "a refused request reached the upstream"
    );
    assert!(!plain.saw("airlock:"));
    let rows = gw.requests(7);
    let exfil: Vec<_> = rows
        .iter()
        .filter(|r| r["decision"] == "exfiltration")
        .collect();
    assert_eq!(exfil.len(), 5, "{rows:#?}");
    assert!(
        exfil
            .iter()
            .all(|r| r["status"] == 403 && r["secrets"] == serde_json::json!([])),
        "{rows:#?}"
    );
    assert!(
        exfil.iter().any(|r| r["agent"] == "other"),
        "the ungranted agent's attempt is audited as its own: {rows:#?}"
    );
}

/// Issue #8, exfiltration matrix: the secret's host answers with a redirect
/// to another host. The gateway passes the 3xx to the agent untouched, never
/// follows it itself, and the other host never sees the credential — not
/// when the agent follows the redirect, not when its client re-sends the
/// placeholder (`--location-trusted`). (A real host that echoes the key
/// into its `Location` is the upstream itself, out of scope: SECURITY.md.)
#[test]
fn a_redirect_to_another_host_never_carries_the_credential() {
    let gw = Gw::start();
    let other = Upstream::start(UpstreamOpts::https().with_ca(gw.up.ca().clone()));
    let target = other.ip_url("/echo/landed");
    let redirect = gw.up.url(&format!("/redirect?to={target}"));

    // Without -L: the 302 as the real host sent it; nobody follows it.
    let out = gw.curl(&["-i", &redirect]);
    assert_eq!(Gw::code(&out), 302, "{out:#?}");
    let lower = out.stdout.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("location: {target}\r\n")),
        "{out:#?}"
    );
    assert!(out.stdout.contains(&format!("redirecting to {target}\n")));
    assert!(!out.stdout.contains(&gw.value), "{out:#?}");
    let seen = gw.up.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {}", gw.value).as_str())
    );
    assert!(
        other.requests().is_empty(),
        "the gateway followed the redirect"
    );

    // With -L: the agent follows it through the proxy; nothing is injected
    // at the other host.
    let out = gw.curl(&["-L", &redirect]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let landed = other.requests();
    assert_eq!(landed.len(), 1, "{landed:#?}");
    assert_eq!(landed[0].path, "/echo/landed");
    assert!(landed[0].header("authorization").is_none(), "{landed:#?}");

    // The agent's client re-sends its placeholder to the new host.
    let out = gw.curl(&[
        "-L",
        "--location-trusted",
        "-H",
        "Authorization: Bearer airlock:up",
        &redirect,
    ]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert!(out.stdout.contains("exfiltration"), "{out:#?}");

    assert_eq!(other.requests().len(), 1, "{:#?}", other.requests());
    assert!(!other.saw(&gw.value) && !other.saw("airlock:"));
    assert_eq!(gw.up.requests().len(), 3);
    let rows = gw.requests(5);
    let exfil = rows
        .iter()
        .filter(|r| r["decision"] == "exfiltration")
        .count();
    assert_eq!(exfil, 1, "{rows:#?}");
    assert!(rows.iter().any(|r| r["status"] == 302), "{rows:#?}");
}

#[test]
fn path_globs_scope_a_secret() {
    let gw = Gw::start();
    gw.add_secret(
        "qkey",
        &["--path", "/echo/v1/**", "--query", "api_key"],
        "q-secret-1",
    );
    let out = gw.curl(&[&gw.up.url("/echo/v1/items?api_key=mine&x=1&api_key=again")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.last_request().unwrap();
    assert_eq!(seen.path, "/echo/v1/items?x=1&api_key=q-secret-1");
    let out = gw.curl(&[&gw.up.url("/echo/v2/items")]);
    assert_eq!(Gw::code(&out), 200);
    assert!(!gw.up.last_request().unwrap().path.contains("api_key"));
}

/// Issue #8, exfiltration matrix: the secret's host by its IP address.
/// A secret applies to the name it was added for; the same server reached
/// by IP literal (`CONNECT 127.0.0.1:PORT`) gets no credential injected, a
/// placeholder sent there is refused, and so is a request inside that
/// tunnel whose Host names the secret's host.
#[test]
fn an_ip_literal_for_a_secrets_host_never_gets_the_secret() {
    let gw = Gw::start();
    let by_ip = gw.up.ip_url("/echo/by-ip");
    // No placeholder: forwarded, but without the credential.
    let out = gw.curl(&[&by_ip]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.requests_to("/echo/by-ip");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("authorization").is_none(), "{seen:#?}");
    // A placeholder: refused.
    let out = gw.curl(&["-H", "Authorization: Bearer airlock:up", &by_ip]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert!(out.stdout.contains("exfiltration"), "{out:#?}");
    // The secret's host in Host, inside the tunnel to the IP.
    let host = format!("Host: {}", gw.host());
    for version in ["--http1.1", "--http2"] {
        let out = gw.curl(&[version, "-H", &host, &by_ip]);
        assert_eq!(Gw::code(&out), 403, "{version}: {out:#?}");
        assert!(out.stdout.contains("exfiltration"), "{out:#?}");
    }
    assert_eq!(gw.up.requests().len(), 1, "{:#?}", gw.up.requests());
    assert!(!gw.up.saw(&gw.value) && !gw.up.saw("airlock:"));
    let rows = gw.requests(4);
    let exfil: Vec<_> = rows
        .iter()
        .filter(|r| r["decision"] == "exfiltration")
        .collect();
    assert_eq!(exfil.len(), 3, "{rows:#?}");
    let port = gw.up.port().to_string();
    assert!(
        exfil.iter().all(|r| r["status"] == 403
            && r["host"] == format!("127.0.0.1:{port}")
            && r["secrets"] == serde_json::json!([])),
        "{rows:#?}"
    );
}

/// Issue #8, exfiltration matrix: a placeholder sent to the secret's host
/// but outside its `--path`: 403 `exfiltration`; inside the path it
/// resolves.
#[test]
fn a_placeholder_outside_the_secrets_path_is_refused() {
    let gw = Gw::start();
    gw.add_secret(
        "scoped",
        &["--path", "/echo/v1/**", "--header", "X-Scoped"],
        "scoped-secret-1",
    );
    let out = gw.curl(&["-H", "X-Scoped: airlock:scoped", &gw.up.url("/echo/v1/ok")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(
        gw.up.last_request().unwrap().header("x-scoped"),
        Some("scoped-secret-1")
    );
    for path in ["/echo/v2/elsewhere", "/echo/v10/x", "/echo/x/v1/y"] {
        let out = gw.curl(&["-H", "X-Scoped: airlock:scoped", &gw.up.url(path)]);
        assert_eq!(Gw::code(&out), 403, "{path}: {out:#?}");
        assert!(out.stdout.contains("exfiltration"), "{path}: {out:#?}");
    }
    assert_eq!(gw.up.requests().len(), 1, "{:#?}", gw.up.requests());
    let rows = gw.requests(4);
    let exfil: Vec<_> = rows
        .iter()
        .filter(|r| r["decision"] == "exfiltration")
        .collect();
    assert_eq!(exfil.len(), 3, "{rows:#?}");
    assert!(exfil.iter().all(|r| r["status"] == 403), "{rows:#?}");
}
