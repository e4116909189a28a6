//! Failures: a token the upstream refuses (401) is renewed; a refresh
//! token the provider revoked marks the secret as needing reconnection
//! (status, audit) and agents get a 502 JSON body saying so, at once and
//! without another token request; a slow token endpoint fails requests
//! within the token timeout, then fast, never hanging them.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::harness::{Agent, Provider, add_oauth2, assert_no_leaks, start_daemon};
use crate::support::metrics::sample;

#[test]
fn a_401_from_the_upstream_renews_the_token() {
    let p = Provider::start(60);
    let d = start_daemon(&p, &[]);
    add_oauth2(&d, &p, "api", Some(&p.refresh_token())).ok();
    let bot = Agent::add(&d, "bot", &["api"]);
    assert_eq!(bot.get(&p, "/a").0, 200);
    let before = p.grant_requests("refresh_token");

    // The provider revokes the access token long before it expires.
    p.revoke_access();
    let (code, body) = bot.get(&p, "/b");
    assert_eq!(code, 200, "renewed and retried once: {body}");
    assert_eq!(p.grant_requests("refresh_token") - before, 1);
    assert_eq!(bot.get(&p, "/c").0, 200);
    assert_eq!(p.grant_requests("refresh_token") - before, 1);
    assert_no_leaks(&d, &p);
}

#[test]
fn a_revoked_grant_needs_reconnection() {
    let ttl = 2;
    let p = Provider::start(ttl);
    let d = start_daemon(&p, &[]);
    add_oauth2(&d, &p, "api", Some(&p.refresh_token())).ok();
    let bot = Agent::add(&d, "bot", &["api"]);
    p.revoke_grants();
    sleep(Duration::from_millis(ttl * 1000 + 700));

    let started = Instant::now();
    let (code, body) = bot.get(&p, "/x");
    assert_eq!(code, 502, "{body}");
    assert!(started.elapsed() < Duration::from_secs(12));
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(json["error"], "credential_unavailable", "{json}");
    assert_eq!(json["secret"], "api", "{json}");
    assert_eq!(json["needs_reconnection"], true, "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.contains("needs reconnection"), "{message}");
    assert!(message.contains("airlock secret rotate api"), "{message}");

    // Marked: status, audit; later requests fail at once with no token
    // request.
    let list: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["secret", "list", "--json"])).expect("JSON");
    assert_eq!(list[0]["oauth2"]["status"], "needs_reconnection", "{list}");
    assert!(d.cli_ok(&["secret", "list"]).contains("needs_reconnection"));
    let audit = d.cli_ok(&["audit", "--json", "--limit", "1000"]);
    assert!(
        audit.contains("secret.oauth2.needs_reconnection"),
        "{audit}"
    );
    // The refusal is counted as such, and each of the daemon's token
    // requests is counted once.
    let text = crate::support::metrics::scrape(&d, "prometheus");
    let count = |outcome: &str| {
        let series = format!(r#"airlock_token_requests_total{{outcome="{outcome}"}}"#);
        sample(&text, &series).unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    assert_eq!(count("refused"), 1.0, "{text}");
    assert_eq!(count("failed"), 0.0, "{text}");
    assert_eq!(
        count("ok") + count("refused"),
        p.grant_requests("refresh_token") as f64,
        "{text}"
    );
    let requests = p.grant_requests("refresh_token");
    let started = Instant::now();
    assert_eq!(bot.get(&p, "/x").0, 502);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(p.grant_requests("refresh_token"), requests);

    // Reconnecting: a new refresh token through `secret rotate`.
    let input = format!("{}\n{}\n", p.client_secret, p.refresh_token());
    d.cli_stdin(&["secret", "rotate", "api", "--refresh-token-stdin"], input)
        .ok();
    let (code, body) = bot.get(&p, "/x");
    assert_eq!(code, 200, "after reconnection: {body}");
    let list: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["secret", "list", "--json"])).expect("JSON");
    assert_eq!(list[0]["oauth2"]["status"], "ok", "{list}");
    assert_no_leaks(&d, &p);
}

#[test]
fn a_slow_token_endpoint_fails_requests_without_hanging_them() {
    let ttl = 2;
    let p = Provider::start(ttl);
    let d = start_daemon(&p, &[]);
    add_oauth2(&d, &p, "api", None).ok();
    let bot = Agent::add(&d, "bot", &["api"]);
    p.slow(30_000);
    sleep(Duration::from_millis(ttl * 1000 + 700));

    let started = Instant::now();
    let (code, body) = bot.get(&p, "/x");
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("did not answer within"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // Remembered for a few seconds: the next request fails at once.
    let started = Instant::now();
    assert_eq!(bot.get(&p, "/x").0, 502);
    assert!(started.elapsed() < Duration::from_secs(3));

    p.slow(0);
    sleep(Duration::from_secs(6));
    assert_eq!(bot.get(&p, "/x").0, 200);
    assert_no_leaks(&d, &p);
}
