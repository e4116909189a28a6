//! The dashboard session against a page an agent serves (issue #15, 4).
//!
//! An agent can serve a "preview" on any loopback port, and cookies ignore
//! ports: a browser that is logged in to the dashboard and opens that page
//! sends it the cookies of `127.0.0.1`. This test logs a real Chromium in
//! to a real daemon, opens pages on two other loopback ports the test
//! serves (plain HTTP, and HTTPS with a certificate Chromium does not trust,
//! `--ignore-certificate-errors` standing in for an operator clicking
//! through the warning), at the paths an agent would guess, under
//! `127.0.0.1` and `localhost`. Whatever cookies those servers receive are
//! then replayed against the dashboard with curl, with every `Host` and
//! `Origin` the attacker could pick: none may read a page or the API, and
//! none may approve or grant. Then the real session cookie itself (read
//! out of the browser) is replayed without the path key it was issued
//! with: refused too. A replay of the real cookie under its own path key
//! must work, which shows the replays could have succeeded.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use fantoccini::Locator;
use support::browser::{self, Browser};
use support::upstream::{Upstream, UpstreamOpts};
use support::{Daemon, run};

const PASSWORD: &str = "correct horse battery staple";
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Paths an agent's server would have the browser load from it: its own
/// page, and every path of the dashboard it can know of.
const PREVIEW_PATHS: &[&str] = &[
    "/",
    "/preview/index.html",
    "/login",
    "/login/oidc",
    "/approvals",
    "/requests",
    "/agents",
    "/api/v1/agents",
    "/api/v1/requests",
    "/s/",
];

/// What a replayed cookie tries to read.
const READS: &[&str] = &[
    "/",
    "/approvals",
    "/requests",
    "/agents",
    "/audit",
    "/api/v1/agents",
    "/api/v1/requests",
];

/// One curl answer: status, `Location`, body.
#[derive(Debug)]
struct Answer {
    code: u16,
    location: String,
    body: String,
}

/// curl against the dashboard at `addr` with exactly these headers.
fn curl(addr: &str, method: &str, path: &str, headers: &[String], form: &[(&str, &str)]) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-w", "\n%{http_code} %{redirect_url}"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for h in headers {
        cmd.args(["-H", h]);
    }
    for (k, v) in form {
        cmd.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    cmd.arg(format!("http://{addr}{path}"));
    let out = run(&mut cmd, None, HTTP_TIMEOUT);
    let (body, tail) = out
        .stdout
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl {path}: {out:#?}"));
    let (code, location) = tail.split_once(' ').unwrap_or((tail, ""));
    Answer {
        code: code.trim().parse().unwrap_or(0),
        location: location.trim().to_owned(),
        body: body.to_owned(),
    }
}

/// The value of the first hidden `csrf` field, if the page has one.
fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// A replay that got in: a page or API answer other than "log in first".
fn got_in(a: &Answer) -> bool {
    let to_login = a.code == 303 && a.location.ends_with("/login");
    !(to_login || a.code == 401)
}

/// Every attempt an attacker holding `cookie` makes against the dashboard:
/// reads with any Host/Origin, then (with any CSRF token a read gave away)
/// approving and granting through the pages and the API. Returns what got
/// in, described.
fn replay(dash: &str, preview_hosts: &[String], cookie: &str, base: &str) -> Vec<String> {
    let mut hosts = vec![dash.to_owned()];
    hosts.extend(preview_hosts.iter().cloned());
    let mut origins: Vec<Option<String>> = vec![None];
    origins.extend(hosts.iter().map(|h| Some(format!("http://{h}"))));
    let mut got = Vec::new();
    let mut csrf = String::from("none");
    for path in READS {
        for host in &hosts {
            for origin in &origins {
                let mut h = vec![format!("Cookie: {cookie}"), format!("Host: {host}")];
                h.extend(origin.iter().map(|o| format!("Origin: {o}")));
                let a = curl(dash, "GET", &format!("{base}{path}"), &h, &[]);
                if got_in(&a) {
                    csrf = csrf_in(&a.body).unwrap_or(csrf);
                    got.push(format!(
                        "read {base}{path} (Host {host}, Origin {origin:?}): {}",
                        a.code
                    ));
                }
            }
        }
    }
    // (method, path, form fields)
    type Write<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let writes: [Write<'_>; 4] = [
        (
            "POST",
            format!("{base}/approvals/1/approve"),
            vec![("csrf", &csrf)],
        ),
        (
            "POST",
            format!("{base}/agents/bot/grant"),
            vec![("csrf", &csrf), ("secret", "up")],
        ),
        ("PUT", format!("{base}/api/v1/agents/bot/grants/up"), vec![]),
        ("POST", format!("{base}/api/v1/approvals/1/approve"), vec![]),
    ];
    for (method, path, form) in &writes {
        let h = vec![
            format!("Cookie: {cookie}"),
            format!("X-CSRF-Token: {csrf}"),
            format!("Origin: http://{dash}"),
        ];
        let a = curl(dash, method, path, &h, form);
        if got_in(&a) {
            got.push(format!("{method} {path}: {} {}", a.code, a.location));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_loopback_port_never_gets_a_usable_session() {
    assert!(
        browser::available(),
        "chromium and chromium-driver are not installed: run `cargo xtask setup`"
    );
    let daemon = tokio::task::block_in_place(|| {
        let d = Daemon::start();
        assert!(d.cli_stdin(&["admin", "set-password"], PASSWORD).success());
        d.cli_ok(&["agent", "add", "bot"]);
        let added = d.cli_stdin(
            &[
                "secret",
                "add",
                "up",
                "--host",
                "api.test.local",
                "--header",
                "x-key",
            ],
            "sk-session-test\n",
        );
        assert!(added.success(), "{added:#?}");
        d
    });
    let dash = tokio::task::block_in_place(|| daemon.status_json())["dashboard_addr"]
        .as_str()
        .expect("dashboard_addr")
        .to_owned();
    // The agent's preview servers.
    let plain = Upstream::start(UpstreamOpts::plain_http());
    let tls = Upstream::start(UpstreamOpts::https());

    let b = Browser::start_with(&["--ignore-certificate-errors"]).await;
    let c = &b.client;
    c.goto(&format!("http://{dash}/login"))
        .await
        .expect("login page");
    let home = b.sign_in(PASSWORD).await;
    let base = home.path().trim_end_matches('/').to_owned();
    let real = c
        .get_named_cookie("airlock_session")
        .await
        .expect("the browser holds the session cookie")
        .value()
        .to_owned();

    // The operator opens the agent's pages.
    let mut preview_hosts = Vec::new();
    for up in [&plain, &tls] {
        let port = up.port();
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            for path in PREVIEW_PATHS {
                let url = format!("{}://{host}{path}", up.scheme());
                c.goto(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            }
            preview_hosts.push(host);
        }
    }
    // The browser is still logged in (nothing above ended the session).
    c.goto(home.as_str()).await.expect("back to the dashboard");
    c.wait()
        .for_element(Locator::Css("nav a.active"))
        .await
        .expect("still logged in");
    let _ = b.client.clone().close().await;

    let seen: Vec<_> = plain.requests().into_iter().chain(tls.requests()).collect();
    assert!(
        seen.len() >= PREVIEW_PATHS.len() * 4,
        "the browser really opened the agent's pages: {} requests",
        seen.len()
    );
    // Every cookie header the agent's servers were sent, whole and split.
    let mut stolen = BTreeSet::new();
    for r in &seen {
        for v in r.header_values("cookie") {
            stolen.insert(v.to_owned());
            stolen.extend(v.split(';').map(|p| p.trim().to_owned()));
        }
    }
    eprintln!("the agent's servers received these cookies: {stolen:?}");

    let before = tokio::task::block_in_place(|| daemon.state());
    let attacker = tokio::task::block_in_place(|| {
        let mut got = Vec::new();
        for cookie in &stolen {
            // The attacker knows the dashboard's paths, not the path key.
            got.extend(replay(&dash, &preview_hosts, cookie, ""));
            got.extend(replay(
                &dash,
                &preview_hosts,
                cookie,
                "/s/AAAAAAAAAAAAAAAAAAAAAA",
            ));
        }
        got
    });
    assert!(
        attacker.is_empty(),
        "a cookie the agent's page received was a usable session:\n{}",
        attacker.join("\n")
    );
    // Even the real cookie is no session without its path key.
    let session = format!("airlock_session={real}");
    let alone = tokio::task::block_in_place(|| {
        let mut got = replay(&dash, &preview_hosts, &session, "/s/AAAAAAAAAAAAAAAAAAAAAA");
        if !base.is_empty() {
            got.extend(replay(&dash, &preview_hosts, &session, ""));
        }
        got
    });
    assert!(
        alone.is_empty(),
        "the session cookie alone was usable:\n{}",
        alone.join("\n")
    );
    assert_eq!(
        tokio::task::block_in_place(|| daemon.state()),
        before,
        "nothing was approved or granted"
    );

    // The harness can tell a usable session: the real cookie under its own
    // path key reads the agents page.
    let page = curl(
        &dash,
        "GET",
        &format!("{base}/agents"),
        &[format!("Cookie: {session}")],
        &[],
    );
    assert_eq!(page.code, 200, "{page:?}");
    assert!(page.body.contains("bot"), "{page:?}");
}
