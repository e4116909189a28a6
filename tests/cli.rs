//! End-to-end tests of the `airlock` command line against a real daemon:
//! every command's happy path, every kind of bad input (a clear message,
//! exit status 1, and nothing changed), the daemon not running, and a leak
//! check over a whole workflow.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;

/// Runs a command that must be refused: exit 1, nothing on standard
/// output, a message on standard error naming each of `needles`, and the
/// configuration and audit trail exactly as before. Returns the message.
#[track_caller]
fn refused(d: &Daemon, args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) -> String {
    let before = d.state();
    let out = match stdin {
        Some(input) => d.cli_stdin(args, input),
        None => d.cli(args),
    };
    let message = out.fails_with(needles).to_owned();
    assert_eq!(d.state(), before, "`airlock {args:?}` changed something");
    message
}

/// Like [`refused`], for the daemon's (not clap's) errors: also one line
/// starting `airlock: error:`.
#[track_caller]
fn refused_one_line(d: &Daemon, args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) {
    let message = refused(d, args, stdin, needles);
    assert!(message.starts_with("airlock: error: "), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
}

#[track_caller]
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `secret list --json` as name → object.
fn secrets_by_name(d: &Daemon) -> std::collections::BTreeMap<String, Value> {
    json(&d.cli_ok(&["secret", "list", "--json"]))
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

fn is_token(text: &str) -> bool {
    text.strip_prefix("alk_").is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[test]
fn secret_commands_and_their_errors() {
    let d = Daemon::start();
    let add = |args: &[&str], value: &str| {
        let mut full = vec!["secret", "add"];
        full.extend_from_slice(args);
        d.cli_stdin(&full, format!("{value}\n")).ok().stdout.clone()
    };

    // Every kind of injection; `echo`'s trailing newline is not the value.
    assert_eq!(
        add(
            &[
                "openai",
                "--host",
                "api.openai.com",
                "--header",
                "Authorization"
            ],
            "sk-openai-1"
        ),
        "added secret openai for api.openai.com/** (header authorization: Bearer {value})\n"
    );
    assert_eq!(
        add(
            &[
                "github",
                "--host",
                "api.github.com",
                "--path",
                "/repos/**",
                "--header",
                "Authorization=token {value}"
            ],
            "ghp-1"
        ),
        "added secret github for api.github.com/repos/** (header authorization: token {value})\n"
    );
    assert_eq!(
        add(
            &["xkey", "--host", "*.example.com", "--header", "X-Api-Key"],
            "xk-1"
        ),
        "added secret xkey for *.example.com/** (header x-api-key: {value})\n"
    );
    assert_eq!(
        add(
            &["maps", "--host", "maps.example.com:8443", "--query", "key"],
            "mk-1"
        ),
        "added secret maps for maps.example.com:8443/** (query ?key=)\n"
    );
    assert_eq!(
        add(
            &[
                "aws",
                "--host",
                "s3.amazonaws.com",
                "--aws-sigv4",
                "us-east-1/s3"
            ],
            "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG"
        ),
        "added secret aws for s3.amazonaws.com/** (aws-sigv4 us-east-1/s3)\n"
    );
    assert_eq!(
        add(
            &[
                "v6",
                "--host",
                "[::1]:8443",
                "--query",
                "k",
                "--value-stdin"
            ],
            "v6-1"
        ),
        "added secret v6 for [::1]:8443/** (query ?k=)\n"
    );

    let list = d.cli_ok(&["secret", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 7, "{list}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "HOST", "PATH", "INJECTION", "VERSION", "UPDATED"]
    );
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["aws", "github", "maps", "openai", "v6", "xkey"]);
    assert!(lines[4].contains("api.openai.com") && lines[4].contains("Bearer {value}"));
    for value in [
        "sk-openai-1",
        "ghp-1",
        "xk-1",
        "mk-1",
        "AKIDEXAMPLE",
        "v6-1",
    ] {
        assert!(!list.contains(value), "list shows a value: {list}");
    }

    let secrets = secrets_by_name(&d);
    assert_eq!(
        secrets["github"]["injection"],
        json(r#"{"kind":"header","name":"authorization","template":"token {value}"}"#)
    );
    assert_eq!(
        secrets["maps"]["injection"],
        json(r#"{"kind":"query","param":"key"}"#)
    );
    assert_eq!(
        secrets["aws"]["injection"],
        json(r#"{"kind":"aws_sigv4","region":"us-east-1","service":"s3"}"#)
    );
    assert_eq!(secrets["github"]["path"], "/repos/**");
    assert_eq!(secrets["v6"]["host"], "[::1]:8443");
    let key_id = d.status_json()["key_id"].clone();
    for (name, s) in &secrets {
        assert_eq!(s["version"], 1, "{name}");
        assert_eq!(s["key_id"], key_id, "{name}");
        let fields: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert!(
            !fields
                .iter()
                .any(|f| f.contains("value") || f.contains("cipher")),
            "{name} shows {fields:?}"
        );
    }

    // Rotation bumps the version and keeps the name and its grants.
    d.cli(&["agent", "add", "bot", "--grant", "openai"]).ok();
    assert_eq!(
        d.cli_stdin(&["secret", "rotate", "openai"], "sk-openai-2\n")
            .ok()
            .stdout,
        "rotated secret openai (now version 2)\n"
    );
    assert_eq!(
        d.cli_stdin(
            &["secret", "rotate", "openai", "--value-stdin"],
            "sk-openai-3"
        )
        .ok()
        .stdout,
        "rotated secret openai (now version 3)\n"
    );
    let secrets = secrets_by_name(&d);
    assert_eq!(secrets["openai"]["version"], 3);
    assert_eq!(secrets["github"]["version"], 1);
    let agents = json(&d.cli_ok(&["agent", "list", "--json"]));
    assert_eq!(agents[0]["grants"], json(r#"["openai"]"#));

    // Removal, also of a granted secret: the grant goes with it.
    assert_eq!(
        d.cli(&["secret", "rm", "xkey"]).ok().stdout,
        "removed secret xkey\n"
    );
    assert_eq!(
        d.cli(&["secret", "rm", "openai"]).ok().stdout,
        "removed secret openai\n"
    );
    let names: Vec<String> = secrets_by_name(&d).into_keys().collect();
    assert_eq!(names, ["aws", "github", "maps", "v6"]);
    let agents = json(&d.cli_ok(&["agent", "list", "--json"]));
    assert_eq!(agents[0]["grants"], json("[]"));

    // Bad input: a clear message, and nothing changes.
    let add_args = |name: &'static str, extra: &[&'static str]| {
        let mut v = vec!["secret", "add", name];
        v.extend_from_slice(extra);
        v
    };
    let v = Some(&b"sk-bad-input-1\n"[..]);
    let h = ["--host", "api.example.com", "--header", "x-key"];
    refused_one_line(
        &d,
        &add_args("github", &h),
        v,
        &["secret github already exists"],
    );
    refused_one_line(
        &d,
        &add_args("Bad_Name", &h),
        v,
        &["secret name", "Bad_Name"],
    );
    for (host, needle) in [
        ("bad host", "not a host name"),
        // A URL is refused; the message (about a port) is not ideal.
        ("http://api.example.com", "http://api.example.com"),
        ("api.example.com:99999", "port"),
        ("*", "must name the host"),
        ("", "empty"),
    ] {
        refused_one_line(
            &d,
            &add_args("new", &["--host", host, "--header", "x-key"]),
            v,
            &[needle],
        );
    }
    for (path, needle) in [
        ("v1/*", "must start with '/'"),
        ("/[abc", "path glob \"/[abc\" is invalid"),
    ] {
        refused_one_line(
            &d,
            &add_args(
                "new",
                &["--host", "api.example.com", "--path", path, "--header", "x"],
            ),
            v,
            &[needle],
        );
    }
    for (header, needle) in [
        ("bad header", "not a valid HTTP header name"),
        ("Host", "managed by the gateway"),
        ("Proxy-Authorization", "managed by the gateway"),
        ("X-Key=no placeholder", "{value}"),
        ("X-Key={value}{value}", "exactly once"),
    ] {
        refused_one_line(
            &d,
            &add_args("new", &["--host", "api.example.com", "--header", header]),
            v,
            &[needle],
        );
    }
    refused_one_line(
        &d,
        &add_args("new", &["--host", "api.example.com", "--query", "a&b"]),
        v,
        &["query parameter"],
    );
    for target in ["us-east-1", "us-east-1/", "US/s3"] {
        refused_one_line(
            &d,
            &add_args(
                "new",
                &["--host", "s3.amazonaws.com", "--aws-sigv4", target],
            ),
            v,
            &["REGION/SERVICE"],
        );
    }
    refused_one_line(
        &d,
        &add_args(
            "new",
            &["--host", "s3.amazonaws.com", "--aws-sigv4", "us-east-1/s3"],
        ),
        Some(b"AKIDONLY\n"),
        &["ACCESS_KEY_ID:SECRET_ACCESS_KEY"],
    );
    // Values: empty, multi-line, not text, too long.
    for (input, needle) in [
        (&b""[..], "empty"),
        (&b"\n"[..], "empty"),
        (
            &b"sk-line-1\nsk-line-2"[..],
            "line break or control character",
        ),
        (&b"sk-\x1b[31m"[..], "control character"),
        (&b"sk-\xff\xfe"[..], "not UTF-8"),
    ] {
        let message = refused(&d, &add_args("new", &h), Some(input), &[needle]);
        assert!(
            !message.contains("sk-line") && !message.contains("sk-"),
            "{message}"
        );
    }
    refused_one_line(
        &d,
        &add_args("new", &h),
        Some("k".repeat(16 * 1024 + 1).as_bytes()),
        &["longer than"],
    );
    // A value on the command line is refused, and never echoed.
    let message = refused(
        &d,
        &add_args(
            "new",
            &[
                "--host",
                "api.example.com",
                "--header",
                "x",
                "--value",
                "sk-argv-secret-7",
            ],
        ),
        Some(b"sk-from-stdin\n"),
        &["standard input"],
    );
    assert!(!message.contains("sk-argv-secret-7"), "{message}");
    let message = refused(
        &d,
        &["secret", "rotate", "github", "--value", "sk-argv-secret-8"],
        None,
        &["standard input"],
    );
    assert!(!message.contains("sk-argv-secret-8"), "{message}");
    // Flags and commands clap refuses.
    refused(
        &d,
        &add_args("new", &["--host", "h.com", "--header", "x", "--bogus"]),
        v,
        &["--bogus"],
    );
    refused(
        &d,
        &add_args("new", &["--host", "h.com"]),
        v,
        &["--header", "--query", "--aws-sigv4"],
    );
    refused(
        &d,
        &add_args("new", &["--host", "h.com", "--header", "x", "--query", "k"]),
        v,
        &["cannot be used with"],
    );
    refused(
        &d,
        &["secret", "add", "new", "--header", "x"],
        v,
        &["--host"],
    );
    refused(&d, &["secret", "list", "--wat"], None, &["--wat"]);
    refused(&d, &["secret", "frob"], None, &["frob"]);
    // Rotate and rm of what is not there, or with a bad value.
    refused_one_line(
        &d,
        &["secret", "rotate", "nope"],
        Some(b"sk-x\n"),
        &["secret nope does not exist"],
    );
    refused_one_line(&d, &["secret", "rotate", "github"], Some(b""), &["empty"]);
    refused_one_line(
        &d,
        &["secret", "rotate", "aws"],
        Some(b"no-colon\n"),
        &["ACCESS_KEY_ID:SECRET_ACCESS_KEY"],
    );
    refused_one_line(
        &d,
        &["secret", "rm", "nope"],
        None,
        &["secret nope does not exist"],
    );
    refused_one_line(&d, &["secret", "rm", "Nope!"], None, &["secret name"]);
    assert_eq!(secrets_by_name(&d)["github"]["version"], 1);
}

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

#[test]
fn without_a_daemon_every_command_says_how_to_start_it() {
    let dir = temp_data_dir();
    let run_in = |data_dir: &Path, args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = hermetic_command(data_dir);
        cmd.args(args);
        run(&mut cmd, stdin, Duration::from_secs(30))
    };
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["secret", "list"],
        &["secret", "rm", "x"],
        &["agent", "add", "bot"],
        &["agent", "list"],
        &["agent", "grant", "bot", "x"],
        &["rule", "list"],
        &["rule", "add", "--host", "evil.com", "--block"],
        &["rule", "rm", "1"],
        &["audit"],
    ] {
        let out = run_in(dir.path(), args, None);
        let message = out.fails_with(&["airlock is not running", "airlock serve", "--data-dir"]);
        assert_eq!(message.trim_end().lines().count(), 1, "{args:?}: {message}");
    }
    let out = run_in(
        dir.path(),
        &[
            "secret",
            "add",
            "k",
            "--host",
            "api.example.com",
            "--header",
            "x",
        ],
        Some(b"sk-nodaemon\n"),
    );
    assert!(!out.all().contains("sk-nodaemon"));
    out.fails_with(&["airlock is not running", "airlock serve"]);
    // A data directory that does not exist at all.
    run_in(Path::new("/nonexistent/airlock"), &["status"], None)
        .fails_with(&["airlock is not running", "/nonexistent/airlock/admin.sock"]);
    // The CLI created nothing.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Grammar errors are found before the daemon is needed.
    run_in(dir.path(), &["frobnicate"], None).fails_with(&["frobnicate"]);
    run_in(dir.path(), &["status", "--bogus"], None).fails_with(&["--bogus"]);
    run_in(Path::new("relative/dir"), &["status"], None).fails_with(&["absolute path"]);
    let help = run_in(dir.path(), &["--help"], None);
    help.ok();
    for command in ["serve", "status", "secret", "agent", "rule", "audit"] {
        assert!(help.stdout.contains(command), "--help lacks {command}");
    }
    let version = run_in(dir.path(), &["--version"], None);
    assert_eq!(
        version.ok().stdout,
        format!("airlock {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn secret_values_never_leak() {
    let tag = random_hex(8);
    let v = |what: &str| format!("sk-leakcheck-{what}-{tag}");
    let header = v("header");
    let template = v("template");
    let query = v("query");
    let aws_id = format!("AKIDLEAKCHECK{}", tag.to_uppercase());
    let aws_secret = v("aws");
    let rotated = v("rotated");
    let argv = v("argv");
    let multiline = v("multiline");
    let duplicate = v("duplicate");
    let bad_host = v("badhost");
    let mut d = Daemon::builder().env("RUST_LOG", "trace").start();

    let ok = |args: &[&str], value: &str| {
        d.cli_stdin(args, format!("{value}\n")).ok();
    };
    ok(
        &[
            "secret",
            "add",
            "hdr",
            "--host",
            "api.example.com",
            "--header",
            "Authorization",
        ],
        &header,
    );
    ok(
        &[
            "secret",
            "add",
            "tpl",
            "--host",
            "api.example.com",
            "--path",
            "/v2/**",
            "--header",
            "X-Auth=Key {value}",
        ],
        &template,
    );
    ok(
        &[
            "secret",
            "add",
            "qry",
            "--host",
            "maps.example.com",
            "--query",
            "key",
        ],
        &query,
    );
    ok(
        &[
            "secret",
            "add",
            "aws",
            "--host",
            "s3.amazonaws.com",
            "--aws-sigv4",
            "eu-west-1/s3",
        ],
        &format!("{aws_id}:{aws_secret}"),
    );
    ok(&["secret", "rotate", "hdr"], &rotated);
    d.cli(&["agent", "add", "bot", "--grant", "hdr", "--grant", "qry"])
        .ok();
    d.cli(&["agent", "grant", "bot", "aws"]).ok();
    d.cli(&[
        "rule",
        "add",
        "--host",
        "api.example.com",
        "--rate",
        "10/s",
        "--agent",
        "bot",
    ])
    .ok();

    // Refused attempts that carry values.
    d.cli_stdin(
        &[
            "secret",
            "add",
            "argv",
            "--host",
            "api.example.com",
            "--header",
            "x",
            "--value",
            &argv,
        ],
        "",
    )
    .fails_with(&["standard input"]);
    d.cli_stdin(
        &[
            "secret",
            "add",
            "ml",
            "--host",
            "api.example.com",
            "--header",
            "x",
        ],
        format!("{multiline}\r\nX-Injected: 1"),
    )
    .fails_with(&["control character"]);
    d.cli_stdin(
        &[
            "secret",
            "add",
            "hdr",
            "--host",
            "api.example.com",
            "--header",
            "x",
        ],
        format!("{duplicate}\n"),
    )
    .fails_with(&["already exists"]);
    d.cli_stdin(
        &[
            "secret",
            "add",
            "bad",
            "--host",
            "not a host",
            "--header",
            "x",
        ],
        format!("{bad_host}\n"),
    )
    .fails_with(&["not a host name"]);
    d.cli_stdin(&["secret", "rotate", "ghost"], format!("{duplicate}\n"))
        .fails_with(&["does not exist"]);

    // Everything that reads configuration back.
    for args in [
        &["secret", "list"][..],
        &["secret", "list", "--json"],
        &["agent", "list"],
        &["agent", "list", "--json"],
        &["rule", "list", "--json"],
        &["audit"],
        &["audit", "--json"],
        &["status"],
        &["status", "--json"],
    ] {
        d.cli(args).ok();
    }
    // A restart loads every sealed value into the snapshot.
    d.restart();
    d.cli(&["status", "--json"]).ok();
    let dump = d.db().pg_dump();
    assert!(dump.contains("COPY public.secrets"), "unexpected dump");
    assert_eq!(d.stop(), 0);

    let values = [
        header, template, query, aws_id, aws_secret, rotated, argv, multiline, duplicate, bad_host,
    ];
    let transcript = d.transcript();
    let daemon_log = d.log();
    let postgres_log = d.postgres_log();
    assert!(
        daemon_log.contains("DEBUG"),
        "the daemon did not log at trace level"
    );
    for value in &values {
        for (place, text) in [
            ("CLI output", &transcript),
            ("the daemon log", &daemon_log),
            ("the PostgreSQL log", &postgres_log),
            ("pg_dump", &dump),
        ] {
            assert!(!text.contains(value.as_str()), "{value} found in {place}");
        }
        // bytea columns are dumped in hex.
        assert!(
            !dump.contains(&hex::encode(value)),
            "{value} found in pg_dump (hex)"
        );
    }
    // Every file under the data directory: heap, WAL, logs, key file.
    let mut files = vec![d.data_dir().to_owned()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            scanned += bytes.len();
            // Lossy decoding keeps every ASCII run intact.
            let text = String::from_utf8_lossy(&bytes);
            for value in &values {
                assert!(
                    !text.contains(value.as_str()),
                    "{value} found in {}",
                    path.display()
                );
            }
        }
    }
    assert!(scanned > 1_000_000, "scanned only {scanned} bytes");
}

/// `airlock ca install` puts the CA in the system bundle that clients read
/// by default; `uninstall` takes it out. Runs against the real trust store,
/// so a guard uninstalls even when the test fails.
#[test]
fn ca_install_and_uninstall_change_the_system_trust_store() {
    const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
    if !std::path::Path::new("/usr/sbin/update-ca-certificates").exists() {
        eprintln!("skipped: no update-ca-certificates on this system");
        return;
    }
    struct Uninstall<'a>(&'a Daemon);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = self.0.cli(&["ca", "uninstall"]);
        }
    }
    let d = Daemon::start();
    let ca = std::fs::read_to_string(d.data_dir().join("ca.crt")).unwrap();
    // A line from the middle of the base64 body identifies the certificate.
    let body_line = ca.lines().nth(3).unwrap().to_owned();
    let _guard = Uninstall(&d);
    let out = d.cli_ok(&["ca", "install"]);
    assert!(out.contains("installed"), "{out}");
    assert!(
        std::fs::read_to_string(BUNDLE)
            .unwrap()
            .contains(&body_line)
    );
    let out = d.cli_ok(&["ca", "uninstall"]);
    assert!(out.contains("removed"), "{out}");
    assert!(
        !std::fs::read_to_string(BUNDLE)
            .unwrap()
            .contains(&body_line)
    );
    assert!(d.cli_ok(&["ca", "uninstall"]).contains("was not in"));
}
