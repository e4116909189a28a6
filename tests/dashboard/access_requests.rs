//! Access requests on the dashboard and its API (issue 21, item 5): a
//! refused agent's request is listed, one click on Allow lets the next
//! one through; the API serves them to an operator's token only, never to
//! an agent's.

use std::time::Duration;

use fantoccini::Locator;

use crate::harness::*;
use crate::support::browser::{self, Browser};
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::{Daemon, run, wait_until};

/// A daemon whose agent `bot` is denied by default; returns its token.
fn denied_bot(daemon: &Daemon) -> String {
    let token = daemon.cli_ok(&["agent", "add", "bot"]).trim().to_owned();
    daemon.cli_ok(&["default", "deny", "--agent", "bot"]);
    token
}

/// curl through the proxy as `bot`: the status code.
fn bot_get(daemon: &Daemon, token: &str, url: &str) -> u16 {
    let mut cmd = proxy_curl(daemon, "bot", token);
    cmd.arg(url);
    let out = run(&mut cmd, None, HTTP_TIMEOUT);
    out.stdout
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) for the open access request with `count` refusals.
fn open_request(daemon: &Daemon, count: i64) -> serde_json::Value {
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&daemon.cli_ok(&["requests", "--json"])).ok()?;
        list.into_iter()
            .find(|r| r["count"].as_i64() == Some(count))
    })
    .unwrap_or_else(|| panic!("no open access request with count {count}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_in_the_browser_lets_the_next_request_through() {
    if !browser::available() {
        panic!(
            "chromium and chromium-driver are not installed: run `cargo xtask setup` \
             (or apt-get install chromium chromium-driver)"
        );
    }
    let up = Upstream::start(UpstreamOpts::default());
    let daemon = tokio::task::block_in_place(|| daemon_with_upstream(&up));
    tokio::task::block_in_place(|| set_password(&daemon, PASSWORD));
    let token = tokio::task::block_in_place(|| denied_bot(&daemon));
    // No secret is for this host: only an allow rule lets bot reach it.
    let url = up.url("/echo/v1/chat");
    for _ in 0..2 {
        assert_eq!(
            tokio::task::block_in_place(|| bot_get(&daemon, &token, &url)),
            403
        );
    }
    let req = tokio::task::block_in_place(|| open_request(&daemon, 2));
    let id = req["id"].as_i64().expect("id");

    let base = format!(
        "http://{}",
        tokio::task::block_in_place(|| daemon.status_json())["dashboard_addr"]
            .as_str()
            .expect("dashboard_addr")
    );
    let shots = screenshot_dir();
    let b = Browser::start().await;
    let c = &b.client;
    c.goto(&format!("{base}/login")).await.expect("login page");
    b.sign_in(PASSWORD).await;
    c.find(Locator::Css("nav a[href=requests]"))
        .await
        .expect("the Requests entry in the navigation")
        .click()
        .await
        .expect("open Requests");
    let row = c
        .wait()
        .for_element(Locator::Css(&format!("tr.access-row[data-id=\"{id}\"]")))
        .await
        .expect("the access request is listed");
    let text = row.text().await.expect("row text");
    for word in ["bot", "GET", up.host(), "/echo/**", "2"] {
        assert!(text.contains(word), "{word}: {text}");
    }
    b.screenshot(&shots, "20-access-requests").await;
    row.find(Locator::Css("button.allow"))
        .await
        .expect("the Allow button")
        .click()
        .await
        .expect("click Allow");
    let flash = c
        .wait()
        .for_element(Locator::Css(".flash.ok"))
        .await
        .expect("allowed");
    let said = flash.text().await.expect("flash text");
    assert!(said.contains("Allowed") && said.contains("bot"), "{said}");
    assert!(
        c.find(Locator::Css("tr.access-row")).await.is_err(),
        "no longer open"
    );
    b.screenshot(&shots, "21-access-request-allowed").await;
    let _ = c.clone().close().await;
    drop(b);

    // The rule the click made is in effect: the next request goes through.
    assert_eq!(
        tokio::task::block_in_place(|| bot_get(&daemon, &token, &url)),
        200
    );
    let audit =
        tokio::task::block_in_place(|| daemon.cli_ok(&["audit", "--json", "--limit", "1000"]));
    assert!(
        audit.contains("\"request.allowed\""),
        "the click is audited: {audit}"
    );
}

#[test]
fn only_an_operator_sees_and_decides_access_requests() {
    let up = Upstream::start(UpstreamOpts::default());
    let daemon = daemon_with_upstream(&up);
    set_password(&daemon, PASSWORD);
    let agent_token = denied_bot(&daemon);
    assert_eq!(bot_get(&daemon, &agent_token, &up.url("/echo/x")), 403);
    let req = open_request(&daemon, 1);
    let id = req["id"].as_i64().unwrap();
    let web = Web::of(&daemon);

    // An agent's token is no credential of the API: nothing seen, nothing
    // decided.
    for (method, path) in [
        ("GET", "/api/v1/requests".to_owned()),
        ("POST", format!("/api/v1/requests/{id}/allow")),
        ("POST", format!("/api/v1/requests/{id}/dismiss")),
    ] {
        let a = web.api(method, &path, None, Some(&agent_token));
        assert_eq!(a.code, 401, "{method} {path}: {a:?}");
        assert!(!a.body.contains("/echo/**"), "{a:?}");
        assert_eq!(web.api(method, &path, None, None).code, 401);
    }
    // Nor can the agent reach the API through its own proxy.
    let dash = daemon.status_json()["dashboard_addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let through = bot_get(
        &daemon,
        &agent_token,
        &format!("http://{dash}/api/v1/requests"),
    );
    assert_ne!(through, 200);
    assert_eq!(open_request(&daemon, 1)["status"], "open");

    // An operator's token lists and decides.
    let admin = api_token(&daemon, "ops");
    let list = web.api("GET", "/api/v1/requests", None, Some(&admin));
    assert_eq!(list.code, 200, "{list:?}");
    assert_eq!(list.json()[0]["id"], id, "{list:?}");
    assert_eq!(list.json()[0]["path_pattern"], "/echo/**", "{list:?}");
    let bad = web.api("POST", "/api/v1/requests/x/allow", None, Some(&admin));
    assert_eq!(bad.code, 400, "{bad:?}");
    let missing = web.api("POST", "/api/v1/requests/987654/allow", None, Some(&admin));
    assert_eq!(missing.code, 404, "{missing:?}");
    let dismissed = web.api(
        "POST",
        &format!("/api/v1/requests/{id}/dismiss"),
        None,
        Some(&admin),
    );
    assert_eq!(dismissed.code, 200, "{dismissed:?}");
    assert_eq!(dismissed.json()["status"], "dismissed");
    let list = web.api("GET", "/api/v1/requests", None, Some(&admin));
    assert_eq!(list.json(), serde_json::json!([]), "{list:?}");

    // The dashboard's decision forms need the session's CSRF token.
    web.login_ok(PASSWORD);
    let forged = web.post_form(&format!("/requests/{id}/allow"), &[("csrf", "forged")]);
    assert_eq!(forged.code, 403, "{forged:?}");
    let all = web.api("GET", "/api/v1/requests?all=true", None, Some(&admin));
    assert_eq!(all.json()[0]["status"], "dismissed", "{all:?}");
    assert!(web.get("/requests").body.contains("dismissed"));
}
