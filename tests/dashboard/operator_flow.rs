//! The whole operator flow in a real browser.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::Locator;

use crate::harness::*;
use crate::support;
use crate::support::browser::{self, Browser};
use crate::support::run;
use crate::support::upstream::{Upstream, UpstreamOpts};

/// The whole operator flow in a real browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_in_a_real_browser() {
    if !browser::available() {
        panic!(
            "chromium and chromium-driver are not installed: run `cargo xtask setup` \
             (or apt-get install chromium chromium-driver)"
        );
    }
    let up = Upstream::start(UpstreamOpts::default());
    let daemon = tokio::task::block_in_place(|| daemon_with_upstream(&up));
    tokio::task::block_in_place(|| set_password(&daemon, PASSWORD));
    let base = format!(
        "http://{}",
        tokio::task::block_in_place(|| daemon.status_json())["dashboard_addr"]
            .as_str()
            .expect("dashboard_addr")
    );
    let value = format!("sk-browser-{}", support::random_hex(12));
    let shots = screenshot_dir();
    let b = Browser::start().await;
    let c = &b.client;
    let mut pages_seen = Vec::new();

    // Log in.
    c.goto(&format!("{base}/login")).await.expect("login page");
    b.screenshot(&shots, "01-login").await;
    let home = b.sign_in(PASSWORD).await;
    pages_seen.push(c.source().await.expect("html"));
    // From here on, pages are under the session's address (`/s/KEY/`).
    assert!(home.path().starts_with("/s/"), "{home}");
    let base = home.as_str().trim_end_matches('/').to_owned();

    // Add a secret.
    let host = format!("api.test.local:{}", up.port());
    c.goto(&format!("{base}/secrets")).await.expect("secrets");
    let form = c.form(Locator::Id("add-secret")).await.expect("form");
    form.set_by_name("name", "up").await.expect("name");
    form.set_by_name("host", &host).await.expect("host");
    form.set_by_name("value", &value).await.expect("value");
    form.submit_with(Locator::Css("#add-secret button[type=submit]"))
        .await
        .expect("submit");
    c.wait()
        .for_element(Locator::Css(".flash.ok"))
        .await
        .expect("added");
    b.screenshot(&shots, "03-secrets").await;
    pages_seen.push(c.source().await.expect("html"));

    // Add an agent with that secret; its token is shown once.
    c.goto(&format!("{base}/agents")).await.expect("agents");
    c.find(Locator::Id("agent-name"))
        .await
        .expect("name")
        .send_keys("bot")
        .await
        .expect("type");
    c.find(Locator::Css("input[name=grants][value=up]"))
        .await
        .expect("box")
        .click()
        .await
        .expect("tick");
    c.find(Locator::Css("#add-agent button[type=submit]"))
        .await
        .expect("btn")
        .click()
        .await
        .expect("click");
    let token_field = c
        .wait()
        .for_element(Locator::Id("token"))
        .await
        .expect("the token");
    let token = token_field
        .prop("value")
        .await
        .expect("value")
        .expect("a token");
    assert!(token.starts_with("alk_"), "{token}");
    b.screenshot(&shots, "04-agents").await;
    pages_seen.push(c.source().await.expect("html"));

    // A real client through the proxy appears in the audit page.
    let mut cmd = proxy_curl(&daemon, "bot", &token);
    cmd.arg(up.url("/echo/v1/chat"));
    let out = tokio::task::block_in_place(|| run(&mut cmd, None, HTTP_TIMEOUT));
    assert!(out.stdout.ends_with("200"), "{out:#?}");
    let seen = up.last_request().expect("the upstream saw the request");
    assert!(
        seen.contains(&value),
        "the upstream got the real key: {seen:#?}"
    );
    // Its echo of the key comes back as the placeholder (response scrubbing).
    assert!(
        out.stdout.contains("airlock:up") && !out.stdout.contains(&value),
        "{out:#?}"
    );
    let mut found = false;
    for _ in 0..50 {
        c.goto(&format!("{base}/audit")).await.expect("audit");
        if c.source().await.expect("html").contains("/echo/v1/chat") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(found, "the request never appeared in the audit page");
    b.screenshot(&shots, "07-audit").await;
    pages_seen.push(c.source().await.expect("html"));

    // A rule that holds POSTs, and "test this request".
    c.goto(&format!("{base}/rules")).await.expect("rules");
    let form = c.form(Locator::Id("add-rule")).await.expect("form");
    form.set_by_name("host", &host).await.expect("host");
    form.set_by_name("method", "POST").await.expect("method");
    form.set_by_name("action", "approve").await.expect("action");
    form.submit_with(Locator::Css("#add-rule button[type=submit]"))
        .await
        .expect("submit");
    c.wait()
        .for_element(Locator::Css(".flash.ok"))
        .await
        .expect("rule added");
    let test = c.form(Locator::Id("test-form")).await.expect("test form");
    test.set_by_name("method", "POST").await.expect("method");
    test.set_by_name("url", &up.url("/echo/act"))
        .await
        .expect("url");
    test.submit_with(Locator::Css("#test-form button[type=submit]"))
        .await
        .expect("submit");
    let result = c
        .wait()
        .for_element(Locator::Id("test-result"))
        .await
        .expect("result");
    let text = result.text().await.expect("text");
    assert!(text.contains("approve") && text.contains("up"), "{text}");
    b.screenshot(&shots, "05-rules").await;
    pages_seen.push(c.source().await.expect("html"));

    // A held request waits for a click in the approvals page.
    c.goto(&format!("{base}/approvals"))
        .await
        .expect("approvals");
    // The queue is pushed by server-sent events, not polled: the held
    // request below must appear without any navigation.
    let queue = c.find(Locator::Id("queue")).await.expect("the queue");
    assert_eq!(
        queue.attr("data-live").await.expect("attr").as_deref(),
        Some("approvals/events")
    );
    let mut held = proxy_curl(&daemon, "bot", &token);
    held.args(["-X", "POST", "-d", "{}", &up.url("/echo/act")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = held.spawn().expect("curl");
    let approve = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#queue button.approve"))
        .await
        .expect("the held request appears live");
    assert!(up.requests_to("/echo/act").is_empty(), "held, not sent");
    b.screenshot(&shots, "06-approvals").await;
    pages_seen.push(c.source().await.expect("html"));
    approve.click().await.expect("approve");
    let out = tokio::task::block_in_place(|| child.wait_with_output()).expect("curl finished");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with("200"),
        "curl after approval: {stdout}"
    );
    c.wait()
        .for_element(Locator::Css(".flash.ok"))
        .await
        .expect("decided");
    pages_seen.push(c.source().await.expect("html"));

    // The overview, now with traffic.
    c.goto(&format!("{base}/")).await.expect("overview");
    b.screenshot(&shots, "02-overview").await;
    pages_seen.push(c.source().await.expect("html"));

    for (i, html) in pages_seen.iter().enumerate() {
        assert!(!html.contains(&value), "page {i} contains the secret value");
    }
    let _ = b.client.clone().close().await;
}
