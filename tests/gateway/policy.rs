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
