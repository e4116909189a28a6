//! Single flight: many requests at expiry make one token request, in one
//! daemon (its per-secret lock) and across two daemons on one database
//! (the token row's lock). Providers that rotate refresh tokens revoke the
//! loser's, so with the refresh-token grant a second request would break
//! the secret: every request must succeed.

use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::harness::{
    Agent, Provider, add_oauth2, assert_no_leaks, assert_no_leaks_with, split, start_daemon,
};
use crate::support::{Output, random_master_key};

const TTL: u64 = 3;

/// Starts `n` curl processes at once, then collects them.
fn burst(agents: &[&Agent], p: &Provider, n: usize) -> Vec<(u16, String)> {
    let url = format!("https://{}/burst", p.api_host());
    let children: Vec<Child> = (0..n)
        .map(|i| {
            let mut cmd = agents[i % agents.len()].curl_command(&[&url]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().expect("curl")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    children
        .into_iter()
        .map(|c| {
            assert!(Instant::now() < deadline, "the burst took over a minute");
            let out = c.wait_with_output().expect("curl output");
            split(&Output {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        })
        .collect()
}

#[test]
fn fifty_requests_at_expiry_make_one_token_request() {
    let p = Provider::start(TTL);
    let d = start_daemon(&p, &[]);
    add_oauth2(&d, &p, "api", Some(&p.refresh_token())).ok();
    let bot = Agent::add(&d, "bot", &["api"]);
    sleep(Duration::from_millis(TTL * 1000 + 700));
    let before = p.grant_requests("refresh_token");

    let answers = burst(&[&bot], &p, 50);
    for (code, body) in &answers {
        assert_eq!(*code, 200, "{body}");
    }
    assert_eq!(p.grant_requests("refresh_token") - before, 1);
    assert_no_leaks(&d, &p);
}

#[test]
fn two_daemons_on_one_database_make_one_token_request() {
    let p = Provider::start(TTL);
    let key = random_master_key();
    let a = start_daemon(&p, &[("SECRET_ENCRYPTION_KEY", key.clone())]);
    let b = start_daemon(
        &p,
        &[
            ("SECRET_ENCRYPTION_KEY", key),
            ("DATABASE_URL", a.db().url()),
        ],
    );
    add_oauth2(&a, &p, "api", Some(&p.refresh_token())).ok();
    let on_a = Agent::add(&a, "bot", &["api"]);
    let on_b = Agent::of(&b, "bot", on_a.token.clone());
    // b follows a's change through LISTEN/NOTIFY.
    crate::support::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        b.cli_ok(&["secret", "list"]).contains("api").then_some(())
    })
    .expect("the second daemon sees the secret");
    sleep(Duration::from_millis(TTL * 1000 + 700));
    let before = p.grant_requests("refresh_token");

    let answers = burst(&[&on_a, &on_b], &p, 20);
    for (code, body) in &answers {
        assert_eq!(*code, 200, "{body}");
    }
    assert_eq!(p.grant_requests("refresh_token") - before, 1);
    assert_no_leaks(&a, &p);
    assert_no_leaks_with(&b, &p, &a.db());
}
