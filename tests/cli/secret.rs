//! `airlock secret ...`: every kind of injection, rotation, removal, and
//! every kind of bad input. Each test starts from the same six secrets
//! ([`add_every_kind`]).

use crate::support::*;
use crate::{json, refused, refused_one_line, secrets_by_name};

/// Adds one secret of each kind of injection (`echo`'s trailing newline
/// is not the value) and returns what each `secret add` printed: openai,
/// github, xkey, maps, aws, v6.
fn add_every_kind(d: &Daemon) -> [String; 6] {
    let add = |args: &[&str], value: &str| {
        let mut full = vec!["secret", "add"];
        full.extend_from_slice(args);
        d.cli_stdin(&full, format!("{value}\n")).ok().stdout.clone()
    };
    [
        add(
            &[
                "openai",
                "--host",
                "api.openai.com",
                "--header",
                "Authorization",
            ],
            "sk-openai-1",
        ),
        add(
            &[
                "github",
                "--host",
                "api.github.com",
                "--path",
                "/repos/**",
                "--header",
                "Authorization=token {value}",
            ],
            "ghp-1",
        ),
        add(
            &["xkey", "--host", "*.example.com", "--header", "X-Api-Key"],
            "xk-1",
        ),
        add(
            &["maps", "--host", "maps.example.com:8443", "--query", "key"],
            "mk-1",
        ),
        add(
            &[
                "aws",
                "--host",
                "s3.amazonaws.com",
                "--aws-sigv4",
                "us-east-1/s3",
            ],
            "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG",
        ),
        add(
            &[
                "v6",
                "--host",
                "[::1]:8443",
                "--query",
                "k",
                "--value-stdin",
            ],
            "v6-1",
        ),
    ]
}

/// `secret add ARGS...` for a secret that must not be created.
fn add_args(name: &'static str, extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["secret", "add", name];
    v.extend_from_slice(extra);
    v
}

/// A valid value, for the refusals that are about something else.
const V: Option<&[u8]> = Some(b"sk-bad-input-1\n");
/// A valid host and header, for the refusals that are about something else.
const H: [&str; 4] = ["--host", "api.example.com", "--header", "x-key"];

#[test]
fn add_takes_every_kind_of_injection_and_list_never_shows_a_value() {
    let d = Daemon::start();
    let [openai, github, xkey, maps, aws, v6] = add_every_kind(&d);
    assert_eq!(
        openai,
        "added secret openai for api.openai.com/** (header authorization: Bearer {value})\n"
    );
    assert_eq!(
        github,
        "added secret github for api.github.com/repos/** (header authorization: token {value})\n"
    );
    assert_eq!(
        xkey,
        "added secret xkey for *.example.com/** (header x-api-key: {value})\n"
    );
    assert_eq!(
        maps,
        "added secret maps for maps.example.com:8443/** (query ?key=)\n"
    );
    assert_eq!(
        aws,
        "added secret aws for s3.amazonaws.com/** (aws-sigv4 us-east-1/s3)\n"
    );
    assert_eq!(v6, "added secret v6 for [::1]:8443/** (query ?k=)\n");

    let list = d.cli_ok(&["secret", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 7, "{list}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "HOST",
            "PATH",
            "INJECTION",
            "VERSION",
            "UPDATED",
            "STATUS"
        ]
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
}

#[test]
fn rotate_bumps_the_version_and_keeps_the_name_and_its_grants() {
    let d = Daemon::start();
    add_every_kind(&d);
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
}

#[test]
fn rm_also_of_a_granted_secret_takes_the_grant_with_it() {
    let d = Daemon::start();
    add_every_kind(&d);
    d.cli(&["agent", "add", "bot", "--grant", "openai"]).ok();
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
}

/// Bad input: a clear message, and nothing changes.
#[test]
fn add_refuses_bad_names_hosts_paths_and_injections() {
    let d = Daemon::start();
    add_every_kind(&d);
    refused_one_line(
        &d,
        &add_args("github", &H),
        V,
        &["secret github already exists"],
    );
    refused_one_line(
        &d,
        &add_args("Bad_Name", &H),
        V,
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
            V,
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
            V,
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
            V,
            &[needle],
        );
    }
    refused_one_line(
        &d,
        &add_args("new", &["--host", "api.example.com", "--query", "a&b"]),
        V,
        &["query parameter"],
    );
    for target in ["us-east-1", "us-east-1/", "US/s3"] {
        refused_one_line(
            &d,
            &add_args(
                "new",
                &["--host", "s3.amazonaws.com", "--aws-sigv4", target],
            ),
            V,
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
}

/// Values: empty, multi-line, not text, too long, or on the command line.
#[test]
fn values_are_one_line_of_text_from_standard_input_only() {
    let d = Daemon::start();
    add_every_kind(&d);
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
        let message = refused(&d, &add_args("new", &H), Some(input), &[needle]);
        assert!(
            !message.contains("sk-line") && !message.contains("sk-"),
            "{message}"
        );
    }
    refused_one_line(
        &d,
        &add_args("new", &H),
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
}

#[test]
fn clap_refuses_bad_flags_and_commands() {
    let d = Daemon::start();
    add_every_kind(&d);
    refused(
        &d,
        &add_args("new", &["--host", "h.com", "--header", "x", "--bogus"]),
        V,
        &["--bogus"],
    );
    refused(
        &d,
        &add_args("new", &["--host", "h.com"]),
        V,
        &["--header", "--query", "--aws-sigv4"],
    );
    refused(
        &d,
        &add_args("new", &["--host", "h.com", "--header", "x", "--query", "k"]),
        V,
        &["cannot be used with"],
    );
    refused(
        &d,
        &["secret", "add", "new", "--header", "x"],
        V,
        &["--host"],
    );
    refused(&d, &["secret", "list", "--wat"], None, &["--wat"]);
    refused(&d, &["secret", "frob"], None, &["frob"]);
}

/// Rotate and rm of what is not there, or with a bad value.
#[test]
fn rotate_and_rm_refuse_what_is_not_there_or_a_bad_value() {
    let d = Daemon::start();
    add_every_kind(&d);
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
