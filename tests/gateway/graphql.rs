//! GraphQL-aware rules end to end: the real daemon, a real GraphQL server
//! (Strawberry under uvicorn, over TLS: tests/graphql/server.py) reached
//! through the explicit proxy as agent `bot`, with curl as the client.
//! `cargo xtask setup` installs Strawberry.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::gw::CURL_TIMEOUT;
use crate::support::py_upstream::Proxied;
use crate::support::run;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/graphql/server.py");

fn start() -> Proxied {
    Proxied::start(Path::new(SCRIPT), "`strawberry-graphql`")
}

/// POSTs `{"query": query, "operationName": name}` to /graphql.
fn gql(up: &Proxied, query: &str, name: Option<&str>) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"query": query, "operationName": name});
    let (code, text) = up.post("/graphql", body.to_string().as_bytes());
    let json = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({"raw": text}));
    (code, json)
}

/// GETs /graphql?query=... (curl encodes it): status and body.
fn gql_get(up: &Proxied, query: &str) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert", &up.ca, "-x", &up.proxy_url])
        .args(["-w", "\n%{http_code}", "-G", "--data-urlencode"])
        .arg(format!("query={query}"))
        .arg(up.url("/graphql"));
    let out = run(&mut cmd, None, CURL_TIMEOUT);
    let (text, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), text.to_owned())
}

/// A refusal's JSON: the gateway's usual 403 body naming the rule.
#[track_caller]
fn assert_refused(code: u16, body: &serde_json::Value, rule: i64, says: &str) {
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["rule"], rule, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{body}");
}

#[test]
fn graphql_rules_block_a_mutation_while_queries_pass() {
    let up = start();
    up.rule("/graphql", &["--graphql", "mutation", "--block"]);

    // A query answers: the server saw the injected credential.
    let (code, body) = gql(&up, r#"{ user(id: "7") { name } }"#, None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["user"]["name"], "user 7", "{body}");

    // A mutation is the usual 403, whatever its alias; it never arrives.
    let (code, body) = gql(&up, r#"mutation { fine: deleteUser(id: "7") }"#, None);
    assert_refused(code, &body, 1, "blocked by rule 1");
    assert_eq!(body["error"], "blocked", "{body}");
    assert_eq!(up.server.seen(), ["user"]);

    // The operation judged is the one operationName runs.
    let both = r#"query Read { viewer { id } } mutation Wipe { deleteUser(id: "1") }"#;
    let (code, body) = gql(&up, both, Some("Read"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["viewer"]["id"], "0", "{body}");
    let (code, body) = gql(&up, both, Some("Wipe"));
    assert_refused(code, &body, 1, "blocked by rule 1");
    // Without one the server would refuse to choose; so does the rule.
    let (code, body) = gql(&up, both, None);
    assert_refused(code, &body, 1, "no single operation");

    // A document in the URL is read too.
    let (code, text) = gql_get(&up, "{ viewer { name } }");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(r#""name":"viewer""#), "{text}");
    let (code, text) = gql_get(&up, r#"mutation { deleteUser(id: "2") }"#);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("blocked by rule 1"), "{text}");

    // What is not a GraphQL request is refused by default.
    let (code, text) = up.post("/graphql", b"mutation { deleteUser(id: \"3\") }");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("not one well-formed JSON value"), "{text}");
    assert_eq!(up.server.seen(), ["user", "viewer", "viewer"]);

    // A field rule matches the field's name, not its alias.
    up.daemon.cli_ok(&["rule", "rm", "1"]);
    up.rule("/graphql", &["--graphql-field", "delete*", "--block"]);
    let (code, body) = gql(&up, r#"mutation { viewer: deleteUser(id: "4") }"#, None);
    assert_refused(code, &body, 2, "blocked by rule 2");
    let (code, body) = gql(&up, "{ deleteUser: viewer { id } }", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(up.server.seen(), ["user", "viewer", "viewer", "viewer"]);
}

/// `{ aaa:n aab:n ... }`: 10,000 distinct aliases, within 64 KiB.
fn alias_bomb() -> String {
    let alias = |i: u32| -> String {
        [i / 676, i / 26 % 26, i % 26]
            .iter()
            .filter_map(|&d| char::from_u32(u32::from(b'a') + d))
            .collect()
    };
    let body: String = (0..10_000).map(|i| format!("{}:n ", alias(i))).collect();
    format!("{{ {body}}}")
}

#[test]
fn a_graphql_bomb_is_refused_unless_the_rule_allows_it() {
    let up = start();
    up.rule("/graphql", &["--graphql", "mutation", "--block"]);
    let bomb = alias_bomb();
    let deep = format!("{{ {}n{} }}", "viewer { ".repeat(3_000), " }".repeat(3_000));
    for doc in [&bomb, &deep] {
        let started = Instant::now();
        let (code, body) = gql(&up, doc, None);
        assert_refused(code, &body, 1, "more than 15000 tokens");
        assert!(started.elapsed() < Duration::from_secs(5), "{body}");
    }
    // The gateway stays responsive.
    let (code, body) = gql(&up, "{ viewer { id } }", None);
    assert_eq!(code, 200, "{body}");

    // A rule that allows what it cannot read passes the bomb over: the
    // server gets it (and answers every alias).
    up.daemon.cli_ok(&["rule", "rm", "1"]);
    up.rule(
        "/graphql",
        &[
            "--graphql",
            "mutation",
            "--block",
            "--on-unreadable",
            "allow",
        ],
    );
    let (code, body) = gql(&up, &bomb, None);
    assert_eq!(code, 200, "{body}");
    let answered = body["data"].as_object().map_or(0, serde_json::Map::len);
    assert_eq!(answered, 10_000);
    // Readable, the rule still blocks.
    let (code, body) = gql(&up, r#"mutation { deleteUser(id: "5") }"#, None);
    assert_refused(code, &body, 2, "blocked by rule 2");
    assert_eq!(up.server.seen(), ["viewer"]);
}
