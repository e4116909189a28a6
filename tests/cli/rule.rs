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
