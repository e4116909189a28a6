//! `airlock rule ...`: every action, their order, and every kind of bad
//! input.

use crate::support::*;
use crate::{json, refused, refused_one_line};

#[test]
fn rule_commands_and_their_errors() {
    let d = Daemon::start();
    d.cli(&["agent", "add", "bot"]).ok();
    d.cli(&["agent", "add", "other"]).ok();

    let add = |args: &[&str]| {
        let mut full = vec!["rule", "add"];
        full.extend_from_slice(args);
        d.cli_ok(&full)
    };
    assert_eq!(
        add(&["--host", "*.evil.com", "--block"]),
        "added rule 1: * *.evil.com/** for every agent → block\n"
    );
    assert_eq!(
        add(&[
            "--host",
            "api.openai.com",
            "--path",
            "/v1/**",
            "--method",
            "post",
            "--agent",
            "bot",
            "--rate",
            "60/min"
        ]),
        "added rule 2: POST api.openai.com/v1/** for agent bot → rate 60/min\n"
    );
    assert_eq!(
        add(&["--host", "*", "--method", "DELETE", "--approve"]),
        "added rule 3: DELETE */** for every agent → approve\n"
    );
    assert_eq!(
        add(&["--host", "[::1]:8443", "--path", "/admin/*", "--block"]),
        "added rule 4: * [::1]:8443/admin/* for every agent → block\n"
    );
    let r5 = json(&add(&[
        "--host",
        "10.0.0.1",
        "--rate",
        "100/15min",
        "--agent",
        "other",
        "--json",
    ]));
    assert_eq!(r5["id"], 5);
    assert_eq!(r5["host"], "10.0.0.1");
    assert_eq!(r5["path"], "/**");
    assert_eq!(r5["agent"], "other");
    assert!(r5["method"].is_null());
    assert_eq!(r5["action"], "rate");
    assert_eq!(r5["count"], 100);
    assert_eq!(r5["period_secs"], 900);

    let list = d.cli_ok(&["rule", "list"]);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["ID", "HOST", "PATH", "METHOD", "AGENT", "ACTION"],
            vec!["1", "*.evil.com", "/**", "*", "*", "block"],
            vec![
                "2",
                "api.openai.com",
                "/v1/**",
                "POST",
                "bot",
                "rate",
                "60/min"
            ],
            vec!["3", "*", "/**", "DELETE", "*", "approve"],
            vec!["4", "[::1]:8443", "/admin/*", "*", "*", "block"],
            vec!["5", "10.0.0.1", "/**", "*", "other", "rate", "100/15min"],
        ]
    );
    let rules = json(&d.cli_ok(&["rule", "list", "--json"]));
    let positions: Vec<i64> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(rules[1]["method"], "POST");
    assert_eq!(rules[1]["agent"], "bot");

    assert_eq!(d.cli(&["rule", "rm", "3"]).ok().stdout, "removed rule 3\n");
    // Removing an agent removes its rules.
    d.cli(&["agent", "rm", "bot"]).ok();
    let ids: Vec<i64> = json(&d.cli_ok(&["rule", "list", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 4, 5]);

    // Bad input.
    let block = |host: &'static str| vec!["rule", "add", "--host", host, "--block"];
    for (host, needle) in [
        ("bad host", "not a host name"),
        ("*.", "not a host name"),
        ("http://evil.com", "http://evil.com"),
        ("evil.com:0", "port"),
        ("[::1", "not a host name"),
    ] {
        refused_one_line(&d, &block(host), None, &["host pattern", needle]);
    }
    for (path, needle) in [
        ("v1/*", "must start with '/'"),
        ("/[abc", "path glob \"/[abc\" is invalid"),
    ] {
        refused_one_line(
            &d,
            &[
                "rule", "add", "--host", "evil.com", "--path", path, "--block",
            ],
            None,
            &[needle],
        );
    }
    for rate in ["10/week", "0/s", "abc", "10", "10/", "2000000/s", "10/8day"] {
        refused_one_line(
            &d,
            &["rule", "add", "--host", "evil.com", "--rate", rate],
            None,
            &[&format!("rate {rate:?}"), "N/PERIOD"],
        );
    }
    refused_one_line(
        &d,
        &[
            "rule", "add", "--host", "evil.com", "--method", "GE T", "--block",
        ],
        None,
        &["not an HTTP method"],
    );
    refused_one_line(
        &d,
        &[
            "rule", "add", "--host", "evil.com", "--agent", "ghost", "--block",
        ],
        None,
        &["agent ghost does not exist"],
    );
    refused_one_line(
        &d,
        &[
            "rule", "add", "--host", "evil.com", "--agent", "Ghost!", "--block",
        ],
        None,
        &["agent name"],
    );
    refused(
        &d,
        &["rule", "add", "--host", "evil.com"],
        None,
        &["--block", "--rate", "--approve"],
    );
    refused(
        &d,
        &["rule", "add", "--host", "evil.com", "--block", "--approve"],
        None,
        &["cannot be used with"],
    );
    refused(&d, &["rule", "add", "--block"], None, &["--host"]);
    refused(
        &d,
        &["rule", "add", "--host", "evil.com", "--block", "--deny"],
        None,
        &["--deny"],
    );
    refused_one_line(
        &d,
        &["rule", "rm", "abc"],
        None,
        &["\"abc\" is not a number"],
    );
    refused_one_line(
        &d,
        &["rule", "rm", "99999"],
        None,
        &["rule 99999 does not exist"],
    );
    refused_one_line(&d, &["rule", "rm", "3"], None, &["rule 3 does not exist"]);
}

/// `airlock rule add --allow` and `airlock default`: setting, showing
/// (also in `status`), and every kind of bad input refused in one line
/// with nothing written.
#[test]
fn allow_rules_and_the_default() {
    let d = Daemon::start();
    d.cli(&["agent", "add", "bot"]).ok();
    assert_eq!(
        d.cli_ok(&[
            "rule",
            "add",
            "--host",
            "api.github.com",
            "--agent",
            "bot",
            "--allow"
        ]),
        "added rule 1: * api.github.com/** for agent bot → allow\n"
    );
    let rule = json(&d.cli_ok(&["rule", "list", "--json"]))[0].clone();
    assert_eq!(rule["action"], "allow");
    assert!(
        d.cli_ok(&["rule", "list"])
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("allow")
    );

    // A fresh install allows by default, grants counting under deny.
    let shown = d.cli_ok(&["default"]);
    assert_eq!(
        shown,
        "global default: allow (under deny a granted secret also lets its requests out)\n"
    );
    assert_eq!(
        d.cli_ok(&["default", "deny", "--grants", "ignore"]),
        "global default: deny (under deny only allow rules let requests out)\n"
    );
    assert_eq!(
        d.cli_ok(&["default", "allow", "--agent", "bot"]),
        "agent bot: default allow\n"
    );
    let view = json(&d.cli_ok(&["default", "--json"]));
    assert_eq!(view["global"], "deny");
    assert_eq!(view["grants_allow"], false);
    assert_eq!(view["agents"][0]["agent"], "bot");
    assert_eq!(view["agents"][0]["default"], "allow");
    assert_eq!(d.status_json()["defaults"], view);
    let status = d.cli_ok(&["status"]);
    assert!(
        status.contains("  default     deny (under deny only allow rules let requests out); agents' own: bot allow"),
        "{status}"
    );
    // `--grants` left out keeps it as it was.
    d.cli_ok(&["default", "deny"]);
    assert_eq!(
        json(&d.cli_ok(&["default", "--json"]))["grants_allow"],
        false
    );
    assert_eq!(
        d.cli_ok(&["default", "inherit", "--agent", "bot"]),
        "agent bot follows the global default: deny (under deny only allow rules let requests out)\n"
    );
    assert_eq!(
        json(&d.cli_ok(&["default", "--json"]))["agents"],
        json("[]")
    );
    // Each change is audited.
    let audit = d.cli_ok(&["audit", "--json", "--limit", "100"]);
    let sets = audit.lines().filter(|l| l.contains("default.set")).count();
    assert_eq!(sets, 4, "{audit}");

    // Bad input: one line, exit 1, nothing changed (the default included).
    let before = d.cli_ok(&["default", "--json"]);
    refused_one_line(
        &d,
        &["default", "deny", "--agent", "ghost"],
        None,
        &["agent ghost does not exist"],
    );
    refused_one_line(
        &d,
        &["default", "maybe"],
        None,
        &["default \"maybe\" is not allow or deny"],
    );
    refused_one_line(
        &d,
        &["default", "block", "--agent", "bot"],
        None,
        &["default \"block\" is not allow or deny"],
    );
    refused_one_line(
        &d,
        &["default", "inherit"],
        None,
        &["inherit is for an agent"],
    );
    refused_one_line(
        &d,
        &["default", "deny", "--grants", "sometimes"],
        None,
        &["--grants \"sometimes\"", "allow", "ignore"],
    );
    refused_one_line(
        &d,
        &["default", "deny", "--agent", "Bad Name!"],
        None,
        &["agent name"],
    );
    refused(
        &d,
        &["default", "deny", "--agent", "bot", "--grants", "ignore"],
        None,
        &["cannot be used with"],
    );
    refused(&d, &["default", "--agent", "bot"], None, &["allow|deny"]);
    refused(
        &d,
        &["rule", "add", "--host", "evil.com", "--allow", "--block"],
        None,
        &["cannot be used with"],
    );
    assert_eq!(d.cli_ok(&["default", "--json"]), before);
}

#[test]
fn graphql_rules_and_their_errors() {
    let d = Daemon::start();
    fn add<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["rule", "add", "--host", "api.example.com", "--block"];
        full.extend_from_slice(extra);
        full
    }
    for (extra, needle) in [
        (
            &["--graphql", "Mutation"][..],
            "query, mutation or subscription",
        ),
        (
            &["--graphql", "delete"][..],
            "query, mutation or subscription",
        ),
        (&["--graphql-field", "user.name"][..], "GraphQL field name"),
        (&["--graphql-field", "1user"][..], "GraphQL field name"),
        (&["--graphql-field", "del[ete"][..], "GraphQL field name"),
        (&["--graphql", "query", "--mcp-tool", "x"][..], "not both"),
        (
            &["--graphql", "query", "--body-limit", "5MiB"][..],
            "body limit",
        ),
        (
            &["--graphql", "query", "--on-unreadable", "maybe"][..],
            "refuse or allow",
        ),
        (&["--on-unreadable", "allow"][..], "--graphql"),
    ] {
        refused_one_line(&d, &add(extra), None, &[needle]);
    }
    assert_eq!(d.cli_ok(&["rule", "list", "--json"]).trim(), "[]");

    let added = d.cli_ok(&add(&["--path", "/graphql", "--graphql", "mutation"]));
    assert!(
        added.contains("if graphql mutation (reads 65536 bytes, unreadable: refuse)"),
        "{added}"
    );
    let added = d.cli_ok(&add(&[
        "--graphql",
        "query",
        "--graphql-field",
        "admin*",
        "--on-unreadable",
        "allow",
    ]));
    assert!(added.contains("if graphql query field=admin*"), "{added}");
    let rules = json(&d.cli_ok(&["rule", "list", "--json"]));
    assert_eq!(
        rules[1]["body"],
        serde_json::json!({"graphql_operation": "query", "graphql_field": "admin*",
            "body_limit": 65536, "on_unreadable": "allow"})
    );
}
