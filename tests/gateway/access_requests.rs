//! Access requests (issue 21, item 5): a request refused by a default of
//! deny leaves an access request, counted per agent, method, host and
//! suggested path; `airlock requests allow ID` makes the rule that lets
//! the next one through, `dismiss` silences it.

use std::time::Duration;

use crate::support::gw::Gw;
use crate::support::{Output, wait_until};

/// `airlock requests --json [--all]`, as JSON.
fn requests(gw: &Gw, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["requests", "--json"];
    if all {
        args.push("--all");
    }
    serde_json::from_str(&gw.daemon.cli_ok(&args)).expect("requests --json is a JSON array")
}

/// Waits (bounded) until the access request for `method` `host` `path`
/// has counted `count` refusals; the audit writer records them within
/// its batch window.
fn wait_for_count(gw: &Gw, host: &str, path: &str, count: i64) -> serde_json::Value {
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        requests(gw, true).into_iter().find(|r| {
            r["host"] == host && r["path_pattern"] == path && r["count"].as_i64() == Some(count)
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no access request for {host}{path} with count {count}: {:#?}",
            requests(gw, true)
        )
    })
}

fn admin_rows(gw: &Gw, action: &str) -> Vec<serde_json::Value> {
    gw.daemon
        .cli_ok(&["audit", "--json", "--limit", "1000"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "admin" && r["decision"] == action)
        .collect()
}

/// One line on standard error, a non-zero exit.
#[track_caller]
fn one_line_error(out: &Output, says: &str) {
    assert_ne!(out.code, 0, "{out:#?}");
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{out:#?}");
    assert!(err.contains(says), "{out:#?}");
}

#[test]
fn a_refused_agent_asks_and_one_command_lets_it_through() {
    let gw = Gw::start();
    let port = gw.up.port();
    // `localhost` names the upstream, but no secret is for it: a new host.
    let host = format!("localhost:{port}");
    let url = |path: &str| format!("https://{host}{path}");
    gw.daemon.cli_ok(&["default", "deny", "--agent", "bot"]);
    assert_eq!(
        requests(&gw, false),
        Vec::<serde_json::Value>::new(),
        "none yet"
    );

    for path in ["/echo/v1/chat", "/echo/v1/models?page=2"] {
        let out = gw.curl(&[&url(path)]);
        assert_eq!(Gw::code(&out), 403, "{out:#?}");
        assert!(out.stdout.contains("denied_by_default"), "{out:#?}");
    }
    assert!(gw.up.requests_to("/echo/v1/chat").is_empty());
    let req = wait_for_count(&gw, &host, "/echo/**", 2);
    assert_eq!(req["agent"], "bot", "{req}");
    assert_eq!(req["method"], "GET", "{req}");
    assert_eq!(req["status"], "open", "{req}");
    assert!(
        req["first_seen"].as_str() <= req["last_seen"].as_str(),
        "{req}"
    );
    let id_num = req["id"].as_i64().expect("id");
    let id = id_num.to_string();
    let listed = requests(&gw, false);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let table = gw.daemon.cli_ok(&["requests"]);
    for word in [&*id, "bot", "GET", &*host, "/echo/**", "2"] {
        assert!(table.contains(word), "{word}: {table}");
    }

    // Bad IDs: one line, non-zero, nothing written.
    let rules_before = gw.daemon.cli_ok(&["rule", "list", "--json"]);
    one_line_error(
        &gw.daemon.cli(&["requests", "allow", "987654"]),
        "access request 987654 does not exist",
    );
    one_line_error(
        &gw.daemon.cli(&["requests", "dismiss", "987654"]),
        "access request 987654 does not exist",
    );
    one_line_error(
        &gw.daemon.cli(&["requests", "allow", "seven"]),
        "access request id \"seven\" is not a number",
    );
    assert_eq!(gw.daemon.cli_ok(&["rule", "list", "--json"]), rules_before);
    assert_eq!(requests(&gw, false), listed);

    // Allowed: the rule is in effect when the command returns.
    let said = gw.daemon.cli_ok(&["requests", "allow", &id]);
    assert!(said.contains("allowed access request"), "{said}");
    for path in ["/echo/v1/chat", "/echo/elsewhere"] {
        let out = gw.curl(&[&url(path)]);
        assert_eq!(Gw::code(&out), 200, "{path}: {out:#?}");
    }
    // ...for that method only: a POST is a request of its own.
    let out = gw.curl(&["-X", "POST", "-d", "{}", &url("/echo/v1/chat")]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    let post = wait_for_count(&gw, &host, "/echo/**", 1);
    assert_eq!(post["method"], "POST", "{post}");

    // The rule is the agent's, and the request is no longer open.
    let rules: Vec<serde_json::Value> =
        serde_json::from_str(&gw.daemon.cli_ok(&["rule", "list", "--json"])).unwrap();
    let rule = rules.last().expect("a rule");
    assert_eq!(rule["action"], "allow", "{rule}");
    assert_eq!(rule["agent"], "bot", "{rule}");
    assert_eq!(rule["method"], "GET", "{rule}");
    assert_eq!(rule["host"], host, "{rule}");
    assert_eq!(rule["path"], "/echo/**", "{rule}");
    let all = requests(&gw, true);
    let allowed = all
        .iter()
        .find(|r| r["id"].as_i64() == Some(id_num))
        .unwrap();
    assert_eq!(allowed["status"], "allowed", "{allowed}");
    assert_eq!(allowed["rule_id"], rule["id"], "{allowed}");
    assert!(
        requests(&gw, false)
            .iter()
            .all(|r| r["id"].as_i64() != Some(id_num))
    );
    // Allowed once: a second allow is refused and adds nothing.
    one_line_error(
        &gw.daemon.cli(&["requests", "allow", &id]),
        "is already allowed by rule",
    );
    let rules_after: Vec<serde_json::Value> =
        serde_json::from_str(&gw.daemon.cli_ok(&["rule", "list", "--json"])).unwrap();
    assert_eq!(rules_after.len(), rules.len());

    let audited = admin_rows(&gw, "request.allowed");
    assert_eq!(audited.len(), 1, "{audited:#?}");
    assert_eq!(audited[0]["agent"], "bot");
    assert!(
        audited[0]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("request={id} ")),
        "{audited:#?}"
    );
    assert_eq!(admin_rows(&gw, "rule.add").len(), 1);
}

#[test]
fn a_dismissed_request_stays_silent_while_its_count_grows() {
    let gw = Gw::start();
    let host = format!("localhost:{}", gw.up.port());
    let url = format!("https://{host}/echo/quiet");
    gw.daemon.cli_ok(&["default", "deny"]);
    assert_eq!(Gw::code(&gw.curl(&[&url])), 403);
    let req = wait_for_count(&gw, &host, "/echo/**", 1);
    let id = req["id"].as_i64().unwrap().to_string();

    let said = gw.daemon.cli_ok(&["requests", "dismiss", &id]);
    assert!(said.contains("dismissed access request"), "{said}");
    assert_eq!(requests(&gw, false), Vec::<serde_json::Value>::new());
    // Still refused, still counted, never listed again.
    for _ in 0..2 {
        assert_eq!(Gw::code(&gw.curl(&[&url])), 403);
    }
    let req = wait_for_count(&gw, &host, "/echo/**", 3);
    assert_eq!(req["status"], "dismissed", "{req}");
    assert_eq!(requests(&gw, false), Vec::<serde_json::Value>::new());
    assert!(
        gw.daemon
            .cli_ok(&["requests"])
            .contains("no open access requests")
    );
    // Dismissing again changes nothing; allowing it still works.
    gw.daemon.cli_ok(&["requests", "dismiss", &id]);
    assert_eq!(admin_rows(&gw, "request.dismissed").len(), 1);
    gw.daemon.cli_ok(&["requests", "allow", &id]);
    assert_eq!(Gw::code(&gw.curl(&[&url])), 200);
}

#[test]
fn a_placeholder_of_a_secret_not_granted_asks_for_the_grant() {
    let gw = Gw::start();
    let value = format!("sk-extra-{}", crate::support::random_hex(12));
    // A second secret for the upstream, not granted to bot.
    gw.daemon
        .cli_stdin(
            &[
                "secret",
                "add",
                "extra",
                "--host",
                &gw.host(),
                "--header",
                "X-Extra",
            ],
            &value,
        )
        .ok();
    let ask = |path: &str| gw.curl(&["-H", "X-Extra: airlock:extra", &gw.up.url(path)]);
    for path in ["/echo/a", "/elsewhere/b"] {
        let out = ask(path);
        assert_eq!(Gw::code(&out), 403, "{out:#?}");
        assert!(out.stdout.contains("is not granted it"), "{out:#?}");
    }
    // In a JSON body too (refused as the body streams).
    let out = gw.curl(&[
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        r#"{"key":"airlock:extra"}"#,
        &gw.up.url("/echo/body"),
    ]);
    assert_eq!(Gw::code(&out), 403, "{out:#?}");
    assert!(out.stdout.contains("is not granted it"), "{out:#?}");
    // One request per agent and secret, whatever the path or position.
    let req = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        requests(&gw, false)
            .into_iter()
            .find(|r| r["kind"] == "grant" && r["count"].as_i64() == Some(3))
    })
    .unwrap_or_else(|| panic!("no grant request: {:#?}", requests(&gw, true)));
    assert_eq!(req["secret"], "extra", "{req}");
    assert_eq!(req["agent"], "bot", "{req}");
    assert!(
        gw.daemon
            .cli_ok(&["requests"])
            .contains("grant of secret extra")
    );

    let said = gw
        .daemon
        .cli_ok(&["requests", "allow", &req["id"].to_string()]);
    assert!(said.contains("agent bot is granted secret extra"), "{said}");
    let out = ask("/echo/a");
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.last_request().expect("the upstream saw it");
    assert_eq!(seen.header("x-extra"), Some(value.as_str()));
    let granted: Vec<_> = admin_rows(&gw, "agent.grant")
        .into_iter()
        .filter(|r| r["detail"] == "agent=bot secret=extra")
        .collect();
    assert_eq!(granted.len(), 1, "{granted:#?}");
    assert_eq!(admin_rows(&gw, "request.allowed").len(), 1);
    assert_eq!(requests(&gw, false), Vec::<serde_json::Value>::new());
}
