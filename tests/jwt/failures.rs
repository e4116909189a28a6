//! A token endpoint that fails after the secret was added: each request
//! that needs the secret gets a 502 JSON naming it, fast (a failure is
//! remembered for 5 s, and a token request is bounded at 10 s), and
//! once the endpoint is back the secret works again. A refusal of the
//! app's JWT marks the secret as needing reconnection until it is
//! rotated.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::harness::{
    Agent, Issuer, add_github, add_google, assert_no_leaks, listed, start_daemon,
};

const TTL: u64 = 2;
/// The gateway's wait before it asks a failing endpoint again.
const RETRY: Duration = Duration::from_millis(5_300);

/// A 502 `credential_unavailable` naming `secret`; its JSON.
fn unavailable(bot: &Agent, i: &Issuer, secret: &str) -> serde_json::Value {
    let (code, body) = bot.api(i, "/api/x");
    assert_eq!(code, 502, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["error"], "credential_unavailable", "{v}");
    assert_eq!(v["secret"], secret, "{v}");
    v
}

#[test]
fn a_failing_github_endpoint_fails_requests_fast_with_json_naming_the_secret() {
    let i = Issuer::start(TTL);
    let d = start_daemon(&i);
    add_github(&d, &i, "gh", &i.github.key.private_path(), &[]).ok();
    let bot = Agent::add(&d, "bot", &["gh"]);
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    sleep(Duration::from_secs(TTL) + Duration::from_millis(500));

    for (mode, says) in [
        ("500", "HTTP 500"),
        ("notoken", "no token"),
        ("down", "could not be reached"),
        ("slow", "did not answer within 10s"),
    ] {
        i.fail(mode);
        let v = unavailable(&bot, &i, "gh");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{mode}: {message}");
        assert_ne!(v["needs_reconnection"], true, "{mode}: {v}");
        // Remembered: the next request fails at once, without a token request.
        let start = Instant::now();
        unavailable(&bot, &i, "gh");
        assert!(start.elapsed() < Duration::from_secs(2), "{mode}: not fast");
        sleep(RETRY);
    }
    // The slow answer is still stalled; back to normal.
    i.fail("ok");
    let (code, body) = bot.api(&i, "/api/x");
    assert_eq!(code, 200, "the endpoint is back: {body}");
    assert_eq!(listed(&d, "gh")["oauth2"]["status"], "ok");

    // GitHub refuses the JWT: needs reconnection, no more token requests.
    sleep(Duration::from_secs(TTL) + Duration::from_millis(500));
    i.fail("401");
    let v = unavailable(&bot, &i, "gh");
    assert_eq!(v["needs_reconnection"], true, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("GitHub App secret gh needs reconnection"),
        "{message}"
    );
    assert!(
        message.contains("secret rotate gh --private-key-file"),
        "{message}"
    );
    let s = listed(&d, "gh");
    assert_eq!(s["oauth2"]["status"], "needs_reconnection", "{s}");
    let granted = i.granted("github_app");
    sleep(RETRY);
    unavailable(&bot, &i, "gh");
    assert_eq!(i.granted("github_app"), granted);
    let audit = d.cli_ok(&["audit", "--json", "--limit", "1000"]);
    assert!(
        audit.contains("secret.oauth2.needs_reconnection"),
        "{audit}"
    );

    // Rotating the key (checked by minting a token) reconnects it.
    i.fail("ok");
    d.cli(&[
        "secret",
        "rotate",
        "gh",
        "--private-key-file",
        &i.github.key.private_path(),
    ])
    .ok();
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    assert_no_leaks(&d, &i);
}

#[test]
fn a_refused_service_account_needs_reconnection() {
    let i = Issuer::start(TTL);
    let d = start_daemon(&i);
    add_google(&d, &i, "gcp", &i.google.file).ok();
    let bot = Agent::add(&d, "bot", &["gcp"]);
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    sleep(Duration::from_secs(TTL) + Duration::from_millis(500));
    i.fail("400");
    let v = unavailable(&bot, &i, "gcp");
    assert_eq!(v["needs_reconnection"], true, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("service-account secret gcp needs reconnection"),
        "{message}"
    );
    assert!(message.contains("invalid_grant"), "{message}");
    assert_eq!(listed(&d, "gcp")["oauth2"]["status"], "needs_reconnection");

    // The same key file again, once the account is fixed, reconnects it.
    i.fail("ok");
    let file = i.google.file.display().to_string();
    d.cli(&[
        "secret",
        "rotate",
        "gcp",
        "--google-service-account-file",
        &file,
    ])
    .ok();
    assert_eq!(listed(&d, "gcp")["oauth2"]["status"], "ok");
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    assert_no_leaks(&d, &i);
}
