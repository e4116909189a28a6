//! A Google service account end to end: its JSON key file makes a JWT
//! bearer grant (RFC 7523) whose assertion the issuer verifies (key id,
//! issuer, audience = token URI, scope, signature); the access token is
//! injected as `Authorization: Bearer` and renewed.

use std::thread::sleep;
use std::time::Duration;

use crate::harness::{Agent, Issuer, add_google, assert_no_leaks, listed, start_daemon};

const TTL: u64 = 3;

#[test]
fn a_service_account_token_is_minted_injected_and_renewed() {
    let i = Issuer::start(TTL);
    let mut d = start_daemon(&i);
    let out = add_google(&d, &i, "gcp", &i.google.file);
    out.ok();
    assert_eq!(i.granted("jwt_bearer"), 1, "{}", out.all());
    let bot = Agent::add(&d, "bot", &["gcp"]);

    for _ in 0..3 {
        let (code, body) = bot.api(&i, "/api/storage/v1/b");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""grant": "jwt_bearer""#), "{body}");
    }
    assert_eq!(i.granted("jwt_bearer"), 1, "the token is cached");
    let s = listed(&d, "gcp");
    assert_eq!(s["injection"]["grant"], "jwt_bearer", "{s}");
    assert_eq!(s["injection"]["client_id"], i.google.client_email, "{s}");
    assert_eq!(s["injection"]["key_id"], i.google.key_id, "{s}");

    sleep(Duration::from_millis(TTL * 1000 + 700));
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    assert_eq!(i.granted("jwt_bearer"), 2);

    // A restart opens the sealed key and goes on.
    d.restart();
    let bot = Agent::of(&d, "bot", bot.token);
    sleep(Duration::from_millis(TTL * 1000 + 700));
    assert_eq!(bot.api(&i, "/api/x").0, 200);
    assert_eq!(i.granted("jwt_bearer"), 3);
    assert!(i.refusals().is_empty(), "{:?}", i.refusals());
    assert_no_leaks(&d, &i);
}
