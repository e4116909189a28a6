//! A GitHub App end to end: `secret add` mints the first installation
//! token (the issuer verified the app's JWT), requests carry it as
//! `Authorization: Bearer`, it is renewed inside its renewal window
//! before it expires, after it expired, and after the API refused it;
//! thirty requests at expiry make one token request.

use std::thread::sleep;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::harness::{Agent, Issuer, add_github, assert_no_leaks, listed, start_daemon};

const TTL: u64 = 10;

fn expires_at(d: &crate::support::Daemon) -> DateTime<Utc> {
    let s = listed(d, "gh");
    s["oauth2"]["access_expires_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("no expiry listed: {s}"))
}

fn sleep_until(t: DateTime<Utc>) {
    if let Ok(d) = (t - Utc::now()).to_std() {
        sleep(d);
    }
}

#[test]
fn a_github_app_token_is_minted_injected_and_renewed() {
    let i = Issuer::start(TTL);
    let d = start_daemon(&i);
    let key = i.github.key.private_path();
    let out = add_github(&d, &i, "gh", &key, &[]);
    out.ok();
    assert!(out.stdout.contains("github_app"), "{}", out.stdout);
    assert_eq!(
        i.granted("github_app"),
        1,
        "secret add minted the first token"
    );
    let bot = Agent::add(&d, "bot", &["gh"]);

    for _ in 0..3 {
        let (code, body) = bot.api(&i, "/api/repos/o/r");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""grant": "github_app""#), "{body}");
    }
    assert_eq!(i.granted("github_app"), 1, "the token is cached");
    let listing = listed(&d, "gh");
    assert_eq!(listing["injection"]["grant"], "github_app", "{listing}");
    assert_eq!(listing["oauth2"]["status"], "ok", "{listing}");

    // Inside the renewal window (the last 10% of its life), before it
    // expires: the request renews it and goes on.
    let first = expires_at(&d);
    sleep_until(first - chrono::Duration::milliseconds(600));
    let (code, body) = bot.api(&i, "/api/repos/o/r");
    assert_eq!(code, 200, "{body}");
    assert_eq!(i.granted("github_app"), 2, "renewed");
    let renewed_at = i.issued_at()[1];
    let expired_at = first.timestamp_millis() as f64 / 1000.0;
    assert!(
        renewed_at < expired_at,
        "renewed {:.3}s after the first token expired",
        renewed_at - expired_at
    );
    let second = expires_at(&d);
    assert!(second > first, "{second} after {first}");

    // Past expiry: the request waits for the renewal.
    sleep_until(second + chrono::Duration::milliseconds(500));
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    assert_eq!(i.granted("github_app"), 3);

    // The API stops accepting the token: one renewal, one replay.
    i.revoke();
    let (code, body) = bot.api(&i, "/api/x");
    assert_eq!(code, 200, "after a 401 the request is replayed: {body}");
    assert_eq!(i.granted("github_app"), 4);
    assert!(i.refusals().is_empty(), "{:?}", i.refusals());
    assert_no_leaks(&d, &i);
}

#[test]
fn the_private_key_can_come_on_standard_input_and_be_rotated() {
    let i = Issuer::start(30);
    let d = start_daemon(&i);
    let host = i.api_host();
    let api = i.api_url();
    d.cli_stdin(
        &[
            "secret",
            "add",
            "gh",
            "--host",
            &host,
            "--github-app-id",
            &i.github.app_id,
            "--github-installation-id",
            &i.github.installation_id,
            "--github-api-url",
            &api,
        ],
        i.github.key.pem.as_bytes(),
    )
    .ok();
    let bot = Agent::add(&d, "bot", &["gh"]);
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    let key = i.github.key.private_path();
    d.cli(&["secret", "rotate", "gh", "--private-key-file", &key])
        .ok();
    assert_eq!(i.granted("github_app"), 2, "a rotation checks the key too");
    sleep(Duration::from_millis(300));
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    assert_no_leaks(&d, &i);
}

#[test]
fn thirty_requests_at_expiry_mint_one_token() {
    let i = Issuer::start(3);
    let d = start_daemon(&i);
    add_github(&d, &i, "gh", &i.github.key.private_path(), &[]).ok();
    let bot = Agent::add(&d, "bot", &["gh"]);
    sleep(Duration::from_millis(3_700));
    // The shared single flight: one renewal, whatever the grant.
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|_| s.spawn(|| bot.api(&i, "/api/burst").0))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread"))
            .collect()
    });
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    assert_eq!(
        i.granted("github_app"),
        2,
        "one token request for 30 requests"
    );
    assert_no_leaks(&d, &i);
}
