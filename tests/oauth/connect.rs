//! The dashboard's Connect (issue #18, item 2) in a real browser: an
//! OAuth2 secret added with `--connect` has no refresh token, requests
//! with it fail with "not connected yet"; headless Chromium logs in to the
//! dashboard, presses Connect, goes through the provider's own login and
//! consent pages (oidc-provider's devInteractions), and comes back to the
//! dashboard's callback, which exchanges the code with its PKCE verifier
//! and seals the tokens. From then on the agent's requests carry a live
//! access token, renewed with the refresh token Connect obtained.

use std::time::Duration;

use fantoccini::Locator;

use crate::harness::{Agent, Provider, assert_no_leaks, start_daemon};
use crate::support::browser::{self, Browser};
use crate::support::{Daemon, run};

const PASSWORD: &str = "correct horse battery staple";
const TTL: u64 = 3;

fn screenshot_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots")
}

fn add_connectable(d: &Daemon, p: &Provider) {
    let host = p.api_host();
    let out = d.cli_stdin(
        &[
            "secret",
            "add",
            "api",
            "--host",
            &host,
            "--oauth2-token-url",
            &p.token_url,
            "--oauth2-authorize-url",
            &p.authorize_url,
            "--client-id",
            &p.client_id,
            "--scope",
            "openid",
            "--scope",
            "offline_access",
            "--scope",
            "api:read",
            // oidc-provider, like Google, issues a refresh token for
            // offline access only after the consent screen.
            "--authorize-param",
            "prompt=consent",
            "--connect",
        ],
        format!("{}\n", p.client_secret),
    );
    assert!(out.success(), "{out:#?}");
}

/// Clicks through the provider's pages: its login form (any name and
/// password), then its consent form, until the browser is back on the
/// dashboard.
async fn through_the_provider(b: &Browser, dashboard: &str) {
    let c = &b.client;
    let shots = screenshot_dir();
    for step in 0..4 {
        let url = c.current_url().await.expect("the address");
        if url.as_str().starts_with(dashboard) {
            return;
        }
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("button[type=submit]"))
            .await
            .expect("a provider page with a form");
        if let Ok(login) = c.find(Locator::Css("input[name=login]")).await {
            login.send_keys("agent-owner").await.expect("login");
            c.find(Locator::Css("input[name=password]"))
                .await
                .expect("password field")
                .send_keys("any")
                .await
                .expect("password");
            b.screenshot(&shots, "31-connect-provider-login").await;
        } else {
            b.screenshot(&shots, "32-connect-provider-consent").await;
        }
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("submit")
            .click()
            .await
            .expect("submitting the provider's form");
        // Wait for the page to change before looking again.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.current_url().await.expect("address") == url && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(step < 3, "still at the provider after three forms: {url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_runs_the_code_flow_with_pkce_in_a_browser_and_the_agent_gets_tokens() {
    assert!(
        browser::available(),
        "chromium and chromium-driver are not installed: run `cargo xtask setup`"
    );
    let p = tokio::task::block_in_place(|| Provider::start(TTL));
    let d = tokio::task::block_in_place(|| start_daemon(&p, &[]));
    let (bot, dashboard) = tokio::task::block_in_place(|| {
        let out = d.cli_stdin(&["admin", "set-password"], PASSWORD);
        assert!(out.success(), "{out:#?}");
        add_connectable(&d, &p);
        let bot = Agent::add(&d, "bot", &["api"]);
        // Not connected yet: a clear 502, and no token request was made.
        let (code, body) = bot.get(&p, "/me");
        assert_eq!(code, 502, "{body}");
        assert!(body.contains("not connected yet"), "{body}");
        assert_eq!(p.grant_requests("authorization_code"), 0);
        let dashboard = format!(
            "http://{}",
            d.status_json()["dashboard_addr"].as_str().expect("addr")
        );
        (bot, dashboard)
    });

    // The provider's pages are served with the test CA, which the
    // browser does not know: as an operator's browser would trust a real
    // provider's certificate, this one is told to go on.
    let b = Browser::start_with(&["--ignore-certificate-errors"]).await;
    let c = &b.client;
    let shots = screenshot_dir();
    c.goto(&format!("{dashboard}/login")).await.expect("login");
    let home = b.sign_in(PASSWORD).await;
    let base = home.as_str().trim_end_matches('/').to_owned();
    c.goto(&format!("{base}/secrets")).await.expect("secrets");
    let state = c
        .find(Locator::Css(".oauth2-state[data-secret=api]"))
        .await
        .expect("the secret's OAuth2 state");
    assert_eq!(
        state.attr("data-status").await.expect("attr").as_deref(),
        Some("needs_reconnection")
    );
    let page = c.source().await.expect("html");
    assert!(
        page.contains(&format!("{dashboard}/oauth2/callback")),
        "the page names the redirect URI to register"
    );
    b.screenshot(&shots, "30-connect-before").await;
    c.find(Locator::Id("connect-api"))
        .await
        .expect("the Connect button")
        .click()
        .await
        .expect("pressing Connect");
    // The dashboard's page moves on to the provider.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c
        .current_url()
        .await
        .expect("address")
        .as_str()
        .starts_with(&dashboard)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "Connect did not lead to the provider"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    through_the_provider(&b, &dashboard).await;

    // Back on the dashboard: the callback's page, then the Secrets page.
    let result = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("connect-result"))
        .await
        .expect("the callback's page");
    let text = result.text().await.expect("text");
    b.screenshot(&shots, "33-connect-callback").await;
    assert!(text.contains("Secret api is connected"), "{text}");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(
            ".oauth2-state[data-secret=api][data-status=ok]",
        ))
        .await
        .expect("the Secrets page shows it connected");
    b.screenshot(&shots, "34-connect-after").await;

    // The authorization request used PKCE (S256) and a fresh state, and
    // sent the browser back to the dashboard's callback.
    let auth = tokio::task::block_in_place(|| p.last_authorization());
    assert_eq!(auth["code_challenge_method"], "S256", "{auth}");
    assert_eq!(
        auth["code_challenge"].as_str().map(str::len),
        Some(43),
        "{auth}"
    );
    assert!(
        auth["state"].as_str().is_some_and(|s| s.len() >= 43),
        "{auth}"
    );
    assert_eq!(
        auth["redirect_uri"].as_str(),
        Some(format!("{dashboard}/oauth2/callback").as_str())
    );
    assert_eq!(auth["prompt"], "consent", "the grant's own parameter");

    tokio::task::block_in_place(|| {
        assert_eq!(p.grant_requests("authorization_code"), 1);
        // The agent's request now carries a live access token.
        let (code, body) = bot.get(&p, "/me");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""kind":"AccessToken""#), "{body}");
        // And the refresh token Connect obtained renews it.
        std::thread::sleep(Duration::from_millis(TTL * 1000 + 700));
        let (code, body) = bot.get(&p, "/me");
        assert_eq!(code, 200, "{body}");
        assert!(p.grant_requests("refresh_token") >= 1);

        let audit = d.cli_ok(&["audit", "--json", "--limit", "1000"]);
        assert!(audit.contains("secret.oauth2.connected"), "{audit}");

        // The state worked once: the same callback again is refused.
        let replay = format!(
            "{dashboard}/oauth2/callback?state={}&code=replayed",
            auth["state"].as_str().expect("state")
        );
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "-w", "\n%{http_code}", &replay]);
        let out = run(&mut curl, None, Duration::from_secs(30));
        assert!(out.stdout.trim_end().ends_with("400"), "{}", out.all());
        assert!(
            out.stdout.contains("expired, was already used"),
            "{}",
            out.all()
        );
        assert_no_leaks(&d, &p);
    });
}
