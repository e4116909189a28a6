//! Both grants end to end: the token injected as `Authorization: Bearer`
//! (the resource server accepts only live tokens of the provider),
//! renewed when it expires, and, for the refresh-token grant, the rotated
//! refresh token persisted so a restarted daemon goes on with it.

use std::thread::sleep;
use std::time::Duration;

use crate::harness::{Agent, Provider, add_oauth2, assert_no_leaks, start_daemon};

const TTL: u64 = 3;

fn past_expiry(ttl: u64) {
    sleep(Duration::from_millis(ttl * 1000 + 700));
}

#[test]
fn client_credentials_are_injected_and_renewed() {
    let p = Provider::start(TTL);
    let d = start_daemon(&p, &[]);
    add_oauth2(&d, &p, "api", None).ok();
    let bot = Agent::add(&d, "bot", &["api"]);
    // `secret add` fetched the first token to check the grant.
    assert_eq!(p.grant_requests("client_credentials"), 1);

    for _ in 0..3 {
        let (code, body) = bot.get(&p, "/v1/things");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""kind":"ClientCredentials""#), "{body}");
    }
    // Cached: no token request per request.
    assert_eq!(p.grant_requests("client_credentials"), 1);

    past_expiry(TTL);
    let (code, body) = bot.get(&p, "/v1/things");
    assert_eq!(code, 200, "{body}");
    assert_eq!(p.grant_requests("client_credentials"), 2);

    let list: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["secret", "list", "--json"])).expect("JSON");
    assert_eq!(list[0]["oauth2"]["status"], "ok", "{list}");
    assert_eq!(list[0]["injection"]["kind"], "oauth2", "{list}");
    assert_no_leaks(&d, &p);
}

#[test]
fn the_refresh_grant_rotates_and_survives_restarts() {
    // Long enough for a restart inside one token's life.
    let ttl = 10;
    let p = Provider::start(ttl);
    let mut d = start_daemon(&p, &[]);
    let first = p.refresh_token();
    add_oauth2(&d, &p, "api", Some(&first)).ok();
    let bot = Agent::add(&d, "bot", &["api"]);
    assert_eq!(p.grant_requests("refresh_token"), 1);

    // A restart reuses the stored, unexpired access token.
    d.restart();
    let bot = Agent::of(&d, "bot", bot.token);
    let (code, body) = bot.get(&p, "/me");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""kind":"AccessToken""#), "{body}");
    assert_eq!(p.grant_requests("refresh_token"), 1);

    // Each renewal rotates the refresh token (the provider revokes the
    // old one); the daemon stored each rotation before using it.
    past_expiry(ttl);
    assert_eq!(bot.get(&p, "/me").0, 200);
    assert_eq!(p.grant_requests("refresh_token"), 2);
    d.restart();
    let bot = Agent::of(&d, "bot", bot.token);
    past_expiry(ttl);
    let (code, body) = bot.get(&p, "/me");
    assert_eq!(
        code, 200,
        "after a restart, with the rotated refresh token: {body}"
    );
    assert_eq!(p.grant_requests("refresh_token"), 3);
    assert_no_leaks(&d, &p);
}
