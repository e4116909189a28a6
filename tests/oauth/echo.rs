//! Issue #18, item 5, for OAuth2: the access token the gateway injected
//! never comes back to the agent, even from a resource server that echoes
//! it in a header and in its JSON body; renewed tokens included.

use std::thread::sleep;
use std::time::Duration;

use crate::harness::{Agent, Provider, add_oauth2, assert_no_leaks, start_daemon};

#[test]
fn an_echoed_access_token_comes_back_as_the_placeholder() {
    let ttl = 3;
    let p = Provider::start(ttl);
    let d = start_daemon(&p, &[]);
    add_oauth2(&d, &p, "api", None).ok();
    let bot = Agent::add(&d, "bot", &["api"]);
    for round in 0..2 {
        if round == 1 {
            // Past the first token's life: the renewed one is scrubbed too.
            sleep(Duration::from_millis(ttl * 1000 + 700));
        }
        let out = bot.curl(&["-i", &format!("https://{}/echo-token", p.api_host())]);
        assert!(out.stdout.ends_with("200"), "{out:#?}");
        let lower = out.stdout.to_ascii_lowercase();
        assert!(lower.contains("x-echo-token: airlock:api\r\n"), "{out:#?}");
        assert!(out.stdout.contains(r#""token":"airlock:api""#), "{out:#?}");
        for token in p.issued().iter().filter(|t| t.len() >= 12) {
            assert!(
                !out.stdout.contains(token.as_str()),
                "an access token came back"
            );
        }
    }
    assert_eq!(p.grant_requests("client_credentials"), 2);
    assert_no_leaks(&d, &p);
}
