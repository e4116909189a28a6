//! Rules: block, rate-limit, hold for a person (and time out), and a
//! corrupt rule failing closed.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::gw::Gw;
use crate::support::upstream::UpstreamOpts;
use crate::support::wait_until;

#[test]
fn rules_block_and_rate_limit() {
    let gw = Gw::start();
    let host = format!("api.test.local:{}", gw.up.port());
    gw.daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        &host,
        "--path",
        "/echo/admin/**",
        "--block",
    ]);
    gw.daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        &host,
        "--path",
        "/echo/limited",
        "--rate",
        "2/min",
    ]);
    let out = gw.curl(&[&gw.up.url("/echo/admin/delete")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert!(out.stdout.contains("\"rule\":1"), "{out:#?}");
    let codes: Vec<u16> = (0..3)
        .map(|_| Gw::code(&gw.curl(&[&gw.up.url("/echo/limited")])))
        .collect();
    assert_eq!(codes, [200, 200, 429]);
    let out = gw.curl(&["-D", "-", &gw.up.url("/echo/limited")]);
    assert!(
        out.stdout.to_lowercase().contains("retry-after:"),
        "{out:#?}"
    );
    assert_eq!(gw.up.requests_to("/echo/admin").len(), 0);
    // A rule removed takes effect at once.
    gw.daemon.cli_ok(&["rule", "rm", "1"]);
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/admin/delete")])), 200);
}

#[test]
fn held_requests_wait_for_a_person() {
    let gw = Gw::start();
    let host = format!("api.test.local:{}", gw.up.port());
    gw.daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        &host,
        "--method",
        "POST",
        "--approve",
    ]);
    for (verb, expect) in [("approve", 200), ("deny", 403)] {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "--cacert",
            &gw.ca,
            "-x",
            &gw.proxy_url(),
        ])
        .args(["-X", "POST", "-d", "{}", &gw.up.url("/echo/act")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let id = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let out = gw.daemon.cli_ok(&["approvals", "--json"]);
            out.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|a| a["status"] == "pending")
                .and_then(|a| a["id"].as_i64())
        })
        .expect("the request shows up as pending");
        assert!(gw.up.requests_to("/echo/act").len() < if verb == "approve" { 1 } else { 2 });
        gw.daemon.cli_ok(&[verb, &id.to_string()]);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.trim_end().ends_with(&expect.to_string()),
            "{verb}: {stdout}"
        );
    }
    assert_eq!(gw.up.requests_to("/echo/act").len(), 1);
    // A decided approval cannot be decided again.
    gw.daemon.cli(&["approve", "1"]).fails_with(&["already"]);
}

#[test]
fn approval_times_out() {
    let gw = Gw::start_with(
        UpstreamOpts::default(),
        &[("AIRLOCK_APPROVAL_TIMEOUT", "1")],
    );
    let host = format!("api.test.local:{}", gw.up.port());
    gw.daemon
        .cli_ok(&["rule", "add", "--host", &host, "--approve"]);
    let out = gw.curl(&[&gw.up.url("/echo")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert!(out.stdout.contains("approval_timeout"), "{out:#?}");
}

#[test]
fn a_corrupt_rule_fails_the_gateway_closed() {
    let gw = Gw::start();
    gw.daemon
        .cli_ok(&["rule", "add", "--host", "*.blocked.test", "--block"]);
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo")])), 200);
    // The rule can no longer be read: it might have been the one that
    // blocks this request, so nothing goes through until it is fixed.
    gw.daemon
        .db()
        .psql("UPDATE rules SET host_pattern = 'not a host!'");
    gw.daemon.cli_ok(&["agent", "add", "trigger-reload"]);
    let out = gw.curl(&[&gw.up.url("/echo")]);
    assert_eq!(Gw::code(&out), 503, "{out:#?}");
    assert!(gw.daemon.cli_ok(&["status"]).contains("NOT IN EFFECT"));
    gw.daemon
        .db()
        .psql("UPDATE rules SET host_pattern = '*.blocked.test'");
    gw.daemon.cli_ok(&["agent", "rm", "trigger-reload"]);
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo")])), 200);
}

/// curl through the proxy as agent `agent` (token `token`).
fn curl_as(gw: &Gw, agent: &str, token: &str, url: &str) -> crate::support::Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert", &gw.ca, "-x"])
        .arg(format!("http://{agent}:{token}@{}", gw.proxy))
        .args(["-w", "\n%{http_code}", url])
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    crate::support::run(&mut cmd, None, crate::support::gw::CURL_TIMEOUT)
}

/// The JSON body of an answer curl printed (the status code is its last line).
fn body_json(out: &crate::support::Output) -> serde_json::Value {
    let body = out.stdout.rsplit_once('\n').map_or("", |(b, _)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {out:#?}"))
}

/// Issue 21, item 1: a default of deny refuses a host no allow rule (nor,
/// by default, a grant) covers, with a JSON body naming the default and
/// the command that allows it; that command lets it through at once; an
/// agent's own default overrides the global one; back to allow.
#[test]
fn default_deny_lets_out_only_what_is_allowed() {
    let gw = Gw::start();
    let port = gw.up.port();
    // `localhost` is a name of the upstream no secret is for: a new host.
    let new_host = |path: &str| format!("https://localhost:{port}{path}");
    assert_eq!(Gw::code(&gw.curl(&[&new_host("/echo/new")])), 200);

    gw.daemon.cli_ok(&["default", "deny"]);
    let out = gw.curl(&[&new_host("/echo/new")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    let body = body_json(&out);
    assert_eq!(body["error"], "denied_by_default", "{body}");
    assert_eq!(body["default"]["scope"], "global", "{body}");
    assert_eq!(body["default"]["action"], "deny", "{body}");
    let ask = body["ask"]["command"].as_str().expect("ask.command");
    assert_eq!(
        ask,
        format!("airlock rule add --host localhost:{port} --agent bot --allow")
    );
    assert!(body["message"].as_str().unwrap().contains(ask), "{body}");
    assert_eq!(
        gw.up.requests_to("/echo/new").len(),
        1,
        "only the first one"
    );
    // The granted secret's host still works: grants allow by default.
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/granted")])), 200);

    // The suggested command, as an operator would paste it: in effect by
    // the time it returns, so the very next request goes through.
    let args: Vec<&str> = ask.split(' ').skip(1).collect();
    gw.daemon.cli_ok(&args);
    assert_eq!(Gw::code(&gw.curl(&[&new_host("/echo/new")])), 200);

    // Grants ignored: only allow rules let requests out.
    gw.daemon.cli_ok(&["default", "deny", "--grants", "ignore"]);
    let out = gw.curl(&[&gw.up.url("/echo/granted")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert_eq!(body_json(&out)["error"], "denied_by_default");

    // Another agent: the allow rule is bot's, so the global deny applies
    // to it, until its own default says allow.
    let token = gw
        .daemon
        .cli_ok(&["agent", "add", "other"])
        .trim()
        .to_owned();
    let out = curl_as(&gw, "other", &token, &new_host("/echo/other"));
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    gw.daemon.cli_ok(&["default", "allow", "--agent", "other"]);
    let out = curl_as(&gw, "other", &token, &new_host("/echo/other"));
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    // ... and its own deny overrides a global allow.
    gw.daemon.cli_ok(&["default", "allow"]);
    gw.daemon.cli_ok(&["default", "deny", "--agent", "other"]);
    let out = curl_as(&gw, "other", &token, &new_host("/echo/other"));
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    let body = body_json(&out);
    assert_eq!(body["default"]["scope"], "agent", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("agent other's own default is deny"),
        "{body}"
    );
    // Back to the global default, which is allow again: everything goes.
    gw.daemon
        .cli_ok(&["default", "inherit", "--agent", "other"]);
    assert_eq!(
        Gw::code(&curl_as(&gw, "other", &token, &new_host("/echo/other"))),
        200
    );
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/granted")])), 200);

    // Audited with their own word; an allowed request names its allow rule.
    let rows = gw.requests(10);
    let denied: Vec<_> = rows
        .iter()
        .filter(|r| r["decision"] == "denied_by_default")
        .collect();
    assert_eq!(denied.len(), 4, "{rows:#?}");
    assert!(denied.iter().all(|r| r["status"] == 403), "{denied:#?}");
    assert!(
        rows.iter()
            .any(|r| r["decision"] == "allowed" && r["rule_id"] == 1 && r["agent"] == "bot"),
        "{rows:#?}"
    );
}

/// A default changed in the database by another gateway (or by SQL and a
/// NOTIFY) reaches this gateway's hot path through LISTEN, quickly.
#[test]
fn a_default_changed_elsewhere_is_in_effect_quickly() {
    let gw = Gw::start();
    let url = format!("https://localhost:{}/echo/x", gw.up.port());
    assert_eq!(Gw::code(&gw.curl(&[&url])), 200);
    let started = std::time::Instant::now();
    gw.daemon.db().psql(
        "UPDATE policy_defaults SET action = 'deny'; \
         SELECT pg_notify('airlock_config', 'defaults')",
    );
    let flipped = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        (Gw::code(&gw.curl(&[&url])) == 403).then(|| started.elapsed())
    })
    .expect("the deny reaches the gateway");
    eprintln!("a NOTIFY'd default was in effect after {flipped:?} (psql and curl included)");
    assert!(flipped < Duration::from_secs(2), "{flipped:?}");
    assert!(
        gw.daemon
            .cli_ok(&["default"])
            .starts_with("global default: deny")
    );

    // A default that cannot be read might be a deny: like a corrupt rule,
    // it fails the gateway closed until an operator sets it again.
    gw.daemon
        .db()
        .psql("DELETE FROM policy_defaults; SELECT pg_notify('airlock_config', 'defaults')");
    let closed = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let out = gw.curl(&[&url]);
        (Gw::code(&out) == 503).then_some(out)
    })
    .expect("a missing default fails closed");
    assert!(closed.stdout.contains("unavailable"), "{closed:#?}");
    let status = gw.daemon.cli_ok(&["status"]);
    assert!(
        status.contains("NOT IN EFFECT") && status.contains("policy_defaults"),
        "{status}"
    );
    gw.daemon.cli_ok(&["default", "allow"]);
    assert_eq!(Gw::code(&gw.curl(&[&url])), 200);
}
