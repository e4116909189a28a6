//! `airlock agent ...`: tokens shown once and stored hashed, grants, and
//! every kind of bad input.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::*;
use crate::{is_token, json, refused, refused_one_line};

#[test]
fn agent_commands_and_their_errors() {
    let d = Daemon::start();
    for name in ["alpha", "beta"] {
        d.cli_stdin(
            &[
                "secret",
                "add",
                name,
                "--host",
                "api.example.com",
                "--header",
                "x-key",
            ],
            format!("sk-{name}\n"),
        )
        .ok();
    }

    // The token: once, alone on standard output; the explanation on stderr.
    let out = d.cli(&["agent", "add", "bot", "--grant", "alpha", "--grant", "beta"]);
    out.ok();
    let token = out.stdout.trim_end_matches('\n').to_owned();
    assert!(is_token(&token), "not a token: {:?}", out.stdout);
    assert_eq!(out.stdout, format!("{token}\n"));
    assert!(
        out.stderr.contains("added agent bot")
            && out.stderr.contains("airlock.slice/agent-bot")
            && out.stderr.contains("granted alpha, beta")
            && out.stderr.contains("shown only this once"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&token));

    // Stored as its SHA-256 only: not in the database, not in any log.
    let stored = d
        .db()
        .psql("SELECT encode(token_hash, 'hex') FROM agents WHERE name = 'bot'");
    assert_eq!(stored, hex::encode(Sha256::digest(token.as_bytes())));
    let dump = d.db().pg_dump();
    assert!(dump.contains(&stored), "the dump has no token hash?");
    assert!(!dump.contains(&token), "the token is in the database");
    assert!(!dump.contains(&hex::encode(token.as_bytes())));
    assert!(!d.log().contains(&token), "the token is in the daemon log");
    assert!(!d.postgres_log().contains(&token));

    let out = d.cli(&["agent", "add", "plain"]);
    let plain_token = out.ok().stdout.trim().to_owned();
    assert!(is_token(&plain_token));
    assert_ne!(plain_token, token);
    assert!(out.stderr.contains("granted no secrets"), "{}", out.stderr);

    let created = json(&d.cli_ok(&["agent", "add", "jay", "--json"]));
    assert!(is_token(created["token"].as_str().unwrap()), "{created:#}");
    assert_eq!(created["agent"]["name"], "jay");
    assert_eq!(created["agent"]["cgroup"], "airlock.slice/agent-jay");
    assert_eq!(created["agent"]["grants"], json("[]"));

    d.cli(&[
        "agent",
        "add",
        "svc",
        "--cgroup",
        "/system.slice/my-agent.service",
    ])
    .ok();

    let list = d.cli_ok(&["agent", "list"]);
    assert!(!list.contains(&token) && !list.contains(&plain_token));
    let lines: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "CGROUP", "GRANTS", "CREATED"]);
    assert_eq!(lines.len(), 5, "{list}");
    assert_eq!(
        lines[1][..3],
        ["bot", "airlock.slice/agent-bot", "alpha,beta"]
    );
    assert_eq!(lines[2][..3], ["jay", "airlock.slice/agent-jay", "-"]);
    assert_eq!(lines[3][..3], ["plain", "airlock.slice/agent-plain", "-"]);
    assert_eq!(
        lines[4][..3],
        ["svc", "/system.slice/my-agent.service", "-"]
    );
    let listed = d.cli_ok(&["agent", "list", "--json"]);
    assert!(
        !listed.contains(&token) && !listed.contains("token"),
        "{listed}"
    );

    // grant / revoke.
    assert_eq!(
        d.cli(&["agent", "grant", "plain", "alpha"]).ok().stdout,
        "granted alpha to plain\n"
    );
    let before = d.state();
    assert_eq!(
        d.cli(&["agent", "grant", "plain", "alpha"]).ok().stdout,
        "plain already had alpha\n"
    );
    assert_eq!(d.state(), before, "a repeated grant changed something");
    assert_eq!(
        d.cli(&["agent", "revoke", "bot", "beta"]).ok().stdout,
        "revoked beta from bot\n"
    );
    let agents = json(&d.cli_ok(&["agent", "list", "--json"]));
    let grants: Vec<(String, Value)> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a["grants"].clone()))
        .collect();
    assert_eq!(
        grants,
        [
            ("bot".to_owned(), json(r#"["alpha"]"#)),
            ("jay".to_owned(), json("[]")),
            ("plain".to_owned(), json(r#"["alpha"]"#)),
            ("svc".to_owned(), json("[]")),
        ]
    );

    // rm.
    assert_eq!(
        d.cli(&["agent", "rm", "jay"]).ok().stdout,
        "removed agent jay\n"
    );
    assert!(!d.cli_ok(&["agent", "list"]).contains("jay"));
    assert_eq!(d.db().psql("SELECT count(*) FROM agents"), "3");

    // Bad input.
    refused_one_line(
        &d,
        &["agent", "add", "bot"],
        None,
        &["agent bot already exists"],
    );
    refused_one_line(&d, &["agent", "add", "Bot"], None, &["agent name", "Bot"]);
    refused_one_line(&d, &["agent", "add", "a/b"], None, &["agent name"]);
    // An unknown secret in --grant: refused, and the agent is not created.
    for grants in [
        &["--grant", "nope"][..],
        &["--grant", "alpha", "--grant", "nope"],
    ] {
        let mut args = vec!["agent", "add", "newbie"];
        args.extend_from_slice(grants);
        refused_one_line(&d, &args, None, &["secret nope does not exist"]);
        assert!(!d.cli_ok(&["agent", "list"]).contains("newbie"));
    }
    refused_one_line(
        &d,
        &["agent", "add", "newbie", "--cgroup", "a/../b"],
        None,
        &["cgroup"],
    );
    refused(
        &d,
        &["agent", "add", "newbie", "--grnat", "alpha"],
        None,
        &["--grnat"],
    );
    refused(&d, &["agent", "add"], None, &["<NAME>"]);
    refused_one_line(
        &d,
        &["agent", "grant", "ghost", "alpha"],
        None,
        &["agent ghost does not exist"],
    );
    refused_one_line(
        &d,
        &["agent", "grant", "bot", "nope"],
        None,
        &["secret nope does not exist"],
    );
    refused_one_line(
        &d,
        &["agent", "revoke", "bot", "beta"],
        None,
        &["grant of secret beta to agent bot does not exist"],
    );
    refused_one_line(
        &d,
        &["agent", "revoke", "ghost", "beta"],
        None,
        &["agent ghost does not exist"],
    );
    refused_one_line(
        &d,
        &["agent", "rm", "ghost"],
        None,
        &["agent ghost does not exist"],
    );
    refused(&d, &["agent", "rm"], None, &["<NAME>"]);
    refused(&d, &["agent", "list", "--all"], None, &["--all"]);
}
