//! `airlock audit` (its filters) and `airlock status`, human and JSON,
//! after a run of configuration changes.

use serde_json::Value;

use crate::support::*;
use crate::{json, refused, refused_one_line};

#[test]
fn audit_and_status() {
    let mut d = Daemon::start();
    assert_eq!(d.cli_ok(&["audit"]), "");
    let status = d.cli_ok(&["status"]);
    assert!(status.contains("0 agents, 0 secrets, 0 rules"), "{status}");
    assert!(status.contains("0 events"), "{status}");

    d.cli_stdin(
        &[
            "secret",
            "add",
            "s1",
            "--host",
            "api.example.com",
            "--header",
            "Authorization",
        ],
        "sk-audit-1\n",
    )
    .ok();
    d.cli(&["agent", "add", "bot", "--grant", "s1"]).ok();
    d.cli(&["rule", "add", "--host", "*.evil.com", "--block"])
        .ok();
    d.cli_stdin(&["secret", "rotate", "s1"], "sk-audit-2\n")
        .ok();
    d.cli(&["agent", "grant", "bot", "s1"]).ok(); // already granted: no event
    d.cli(&["agent", "revoke", "bot", "s1"]).ok();
    d.cli(&["agent", "grant", "bot", "s1"]).ok();
    d.cli(&["rule", "rm", "1"]).ok();
    d.cli(&["secret", "rm", "s1"]).ok();
    d.cli(&["agent", "rm", "bot"]).ok();
    let expected = [
        "secret.add",
        "agent.add",
        "rule.add",
        "secret.rotate",
        "agent.revoke",
        "agent.grant",
        "rule.rm",
        "secret.rm",
        "agent.rm",
    ];

    let human = d.cli_ok(&["audit"]);
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{human}");
    for (line, decision) in lines.iter().zip(expected) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words[0].ends_with('Z') && words[0].len() == 24, "{line}");
        assert_eq!(words[1..3], ["admin", decision], "{line}");
    }
    assert!(
        lines[0].contains("secret=s1 host=api.example.com path=/**"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("agent=bot") && lines[1].contains("grants=[s1]"),
        "{}",
        lines[1]
    );
    assert!(lines[3].contains("version=2"), "{}", lines[3]);

    let events: Vec<Value> = d.cli_ok(&["audit", "--json"]).lines().map(json).collect();
    let decisions: Vec<&str> = events
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, expected);
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let times: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // A change about an agent names it; others name none.
    for e in &events {
        assert_eq!(e["kind"], "admin");
        let about_agent = e["decision"].as_str().unwrap().starts_with("agent.");
        if about_agent {
            assert_eq!(e["agent"], "bot", "{e}");
        } else if e["decision"] != "rule.add" {
            assert!(e["agent"].is_null(), "{e}");
        }
    }
    let about_bot = events.iter().filter(|e| e["agent"] == "bot").count();
    assert!(!human.contains("sk-audit"));

    // Filters.
    let count = |args: &[&str]| {
        let mut full = vec!["audit", "--json"];
        full.extend_from_slice(args);
        d.cli_ok(&full).lines().count()
    };
    assert_eq!(count(&["--since", "1h"]), expected.len());
    assert_eq!(count(&["--since", "2999-01-01T00:00:00Z"]), 0);
    assert_eq!(count(&["--since", "2000-01-01T00:00:00Z"]), expected.len());
    // --agent selects the agent's requests and the changes about it.
    assert_eq!(count(&["--agent", "bot"]), about_bot);
    assert!(about_bot >= 3);
    let last3: Vec<String> = d
        .cli_ok(&["audit", "--json", "--limit", "3"])
        .lines()
        .map(|l| json(l)["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(last3, ["rule.rm", "secret.rm", "agent.rm"]);
    let since_human = d.cli_ok(&["audit", "--since", "15m"]);
    assert_eq!(since_human, human);
    refused_one_line(
        &d,
        &["audit", "--since", "yesterday"],
        None,
        &["\"yesterday\"", "RFC 3339"],
    );
    refused_one_line(&d, &["audit", "--since", "1y"], None, &["RFC 3339"]);
    refused_one_line(&d, &["audit", "--limit", "0"], None, &["limit"]);
    refused_one_line(
        &d,
        &["audit", "--agent", "Bad Agent"],
        None,
        &["agent name"],
    );
    refused(&d, &["audit", "--limit", "x"], None, &["--limit"]);
    refused(&d, &["audit", "--bogus"], None, &["--bogus"]);

    // Status, human and JSON, after some configuration.
    d.cli_stdin(
        &[
            "secret",
            "add",
            "keep",
            "--host",
            "api.example.com",
            "--query",
            "k",
        ],
        "sk-keep\n",
    )
    .ok();
    d.cli(&["agent", "add", "keeper", "--grant", "keep"]).ok();
    d.cli(&["rule", "add", "--host", "*", "--approve"]).ok();
    let total_events = d
        .cli_ok(&["audit", "--json", "--limit", "10000"])
        .lines()
        .count();
    let pid = d.pid().unwrap();
    let pg = d.postgres_pid().unwrap();

    let human = d.cli_ok(&["status"]);
    assert!(
        human.starts_with(&format!(
            "airlock {} is running (pid {pid})",
            env!("CARGO_PKG_VERSION")
        )),
        "{human}"
    );
    for needle in [
        format!("data dir    {}", d.data_dir().display()),
        format!("(embedded) (pid {pg})"),
        "1 agents, 1 secrets, 1 rules".to_owned(),
        format!("{total_events} events"),
        format!("admin API on {}", d.data_dir().join("admin.sock").display()),
    ] {
        assert!(human.contains(&needle), "status lacks {needle:?}:\n{human}");
    }

    let s = d.status_json();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["pid"].as_i64(), Some(i64::from(pid)));
    assert_eq!(s["data_dir"], d.data_dir().to_str().unwrap());
    assert_eq!(s["database"]["kind"], "embedded");
    assert_eq!(s["database"]["postgres_pid"].as_i64(), Some(i64::from(pg)));
    assert!(
        s["database"]["target"]
            .as_str()
            .unwrap()
            .contains(&*d.data_dir().join("postgres/run").to_string_lossy()),
        "{s:#}"
    );
    let key_id = s["key_id"].as_str().unwrap();
    assert!(
        key_id.len() == 16 && key_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key_id}"
    );
    assert!(human.contains(&format!("master key  {key_id}")), "{human}");
    assert_eq!(s["snapshot"]["agents"], 1);
    assert_eq!(s["snapshot"]["secrets"], 1);
    assert_eq!(s["snapshot"]["rules"], 1);
    assert!(s["snapshot"]["generation"].as_u64().unwrap() > 0);
    assert_eq!(s["audit_events"].as_u64(), Some(total_events as u64));
    assert!(!s["mode"].as_str().unwrap().is_empty());
    refused(&d, &["status", "--verbose"], None, &["--verbose"]);
}
