//! MCP-aware rules end to end: the real daemon, a real MCP server (the
//! official Python SDK's FastMCP, streamable HTTP over TLS:
//! tests/mcp/server.py) and the SDK's own client (tests/mcp/client.py)
//! through the explicit proxy as agent `bot`; raw bodies (too large, not
//! JSON, a batch) with curl. `cargo xtask setup` installs the SDK.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::gw::CURL_TIMEOUT;
use crate::support::mcp::{
    SCRIPTS, client_args, parse_line, result_line, tools_call, wait_pending,
};
use crate::support::py_upstream::Proxied;
use crate::support::{Daemon, run};

/// [`Proxied`] with the MCP server in front of the daemon: its endpoint
/// is `/mcp`.
struct Fixture(Proxied);

impl std::ops::Deref for Fixture {
    type Target = Proxied;
    fn deref(&self) -> &Proxied {
        &self.0
    }
}

impl Fixture {
    fn start() -> Fixture {
        let script = Path::new(SCRIPTS).join("server.py");
        Fixture(Proxied::start(&script, "the `mcp` SDK"))
    }

    fn rule(&self, args: &[&str]) {
        self.0.rule("/mcp", args);
    }

    fn client_command(&self, tool: &str, args: &serde_json::Value) -> Command {
        let mut cmd = Command::new("python3");
        cmd.args(client_args(
            &self.url("/mcp"),
            &self.proxy_url,
            &self.ca,
            tool,
            args,
        ));
        cmd
    }

    /// One tool call with the SDK's client: its JSON line.
    fn call(&self, tool: &str, args: serde_json::Value) -> serde_json::Value {
        let out = run(&mut self.client_command(tool, &args), None, CURL_TIMEOUT);
        parse_line(&out)
    }

    /// A raw POST of `body` to the MCP endpoint with curl: status and body.
    fn post(&self, body: &[u8]) -> (u16, String) {
        self.0.post("/mcp", body)
    }
}

#[test]
fn mcp_rules_judge_tool_calls() {
    let fx = Fixture::start();
    fx.rule(&["--mcp-tool", "delete_*", "--block"]);

    // An allowed tool answers: the server saw the injected credential.
    let ok = fx.call("read_file", serde_json::json!({"path": "/tmp/a"}));
    assert_eq!(ok["ok"][0], "contents of /tmp/a", "{ok}");
    assert_eq!(ok["is_error"], false);

    // A blocked tool is a JSON-RPC error the SDK raises as McpError.
    let refused = fx.call("delete_repo", serde_json::json!({"name": "prod"}));
    let err = &refused["mcp_error"];
    assert_eq!(err["code"], -32001, "{refused}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("blocked by rule 1"), "{refused}");
    assert_eq!(fx.server.seen(), ["read_file"]);

    // A batch with one blocked call is refused whole, one error per id.
    let batch = serde_json::json!([
        tools_call(1, "read_file", serde_json::json!({"path": "/b"})),
        tools_call(2, "delete_repo", serde_json::json!({"name": "x"})),
    ]);
    let (code, body) = fx.post(batch.to_string().as_bytes());
    assert_eq!(code, 200, "{body}");
    let errors: serde_json::Value = serde_json::from_str(&body).expect("JSON-RPC errors");
    assert_eq!(errors[0]["id"], 1, "{body}");
    assert_eq!(errors[1]["id"], 2, "{body}");
    assert_eq!(errors[1]["error"]["code"], -32001);
    assert_eq!(fx.server.seen(), ["read_file"]);

    // Unreadable bodies are refused by default (403, the rule named)...
    let big = tools_call(
        3,
        "read_file",
        serde_json::json!({"path": "x".repeat(70 * 1024)}),
    );
    let (code, body) = fx.post(big.to_string().as_bytes());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("larger than the 65536 bytes"), "{body}");
    let (code, body) = fx.post(b"name=delete_repo");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not one well-formed JSON value"), "{body}");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let (code, body) = fx.post(deep.as_bytes());
    assert_eq!(code, 403, "{body}");
    assert_eq!(fx.server.seen(), ["read_file"]);

    // A request no body rule could concern is not judged by its body: the
    // same unreadable body to another path reaches the server (whose
    // /seen takes GET only: 405).
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert", &fx.ca, "-x", &fx.proxy_url])
        .args([
            "-w",
            "\n%{http_code}",
            "-o",
            "/dev/null",
            "--data-binary",
            "@-",
        ])
        .arg(format!("https://{}/seen", fx.server.host()));
    let out = run(&mut cmd, Some(big.to_string().as_bytes()), CURL_TIMEOUT);
    assert_eq!(out.stdout.trim(), "405", "{out:#?}");

    // ...and let through by a rule that allows what it cannot read.
    fx.daemon.cli_ok(&["rule", "rm", "1"]);
    fx.rule(&[
        "--mcp-tool",
        "delete_*",
        "--block",
        "--on-unreadable",
        "allow",
    ]);
    let (code, body) = fx.post(big.to_string().as_bytes());
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("contents of"), "{body}");
    // (The server's own parse error: it got the body.)
    let (code, body) = fx.post(b"name=delete_repo");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("-32700"), "{body}");
    // Readable, the rule still blocks.
    let refused = fx.call("delete_repo", serde_json::json!({"name": "prod"}));
    assert_eq!(refused["mcp_error"]["code"], -32001, "{refused}");
    assert_eq!(fx.server.seen(), ["read_file", "read_file"]);

    // The audit trail names the rule for each refusal.
    let audit = fx.daemon.cli_ok(&["audit", "--json", "--limit", "1000"]);
    let blocked = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "request" && r["decision"] == "blocked")
        .count();
    assert!(blocked >= 6, "{audit}");
}

#[test]
fn an_approval_held_call_shows_the_tool_and_proceeds() {
    let fx = Fixture::start();
    fx.rule(&["--mcp-tool", "pay", "--approve"]);
    // (A placeholder in the body would be refused as out of place for a
    // header secret; the key's name alone is reason to redact it.)
    let args = serde_json::json!({"amount": 5, "to": "bob", "api_token": "tok-plain-123"});
    let child = fx
        .client_command("pay", &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client runs");
    let Some(pending) = wait_pending(&fx.daemon) else {
        let out = child.wait_with_output().ok();
        panic!("the call was not held: {out:?}");
    };
    let detail = pending["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("tools/call pay {"), "{pending}");
    assert!(detail.contains(r#""to":"bob""#), "{pending}");
    assert!(detail.contains(r#""api_token":"[redacted]""#), "{pending}");
    assert!(!detail.contains("tok-plain-123"), "{pending}");
    assert!(fx.server.seen().is_empty());
    let id = pending["id"].as_i64().expect("an id").to_string();
    fx.daemon.cli_ok(&["approve", &id]);
    let out = child.wait_with_output().expect("the client ends");
    let line = result_line(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|| panic!("no result: {out:?}"));
    assert_eq!(line["ok"][0], "paid 5 to bob", "{line}");
    assert_eq!(fx.server.seen(), ["pay"]);
}

#[test]
fn a_malformed_mcp_rule_is_refused_in_one_line() {
    let daemon = Daemon::start();
    for (args, needle) in [
        (&["--mcp-tool", "delete_[x"][..], "tool glob"),
        (&["--mcp-arg", "path=/etc/*"][..], "JSON pointer"),
        (&["--mcp-arg", "/a~2=x"][..], "JSON pointer"),
        (
            &["--mcp-method", "tools/list", "--mcp-tool", "x"][..],
            "tools/call",
        ),
        (&["--on-unreadable", "refuse"][..], "needs --mcp-method"),
        (
            &["--mcp-tool", "x", "--body-limit", "100MiB"][..],
            "body limit",
        ),
        (
            &["--mcp-tool", "x", "--body-limit", "lots"][..],
            "--body-limit",
        ),
    ] {
        let mut full = vec!["rule", "add", "--host", "mcp.example.com", "--block"];
        full.extend_from_slice(args);
        let out = daemon.cli(&full);
        let message = out.fails_with(&[needle]);
        assert_eq!(message.trim().lines().count(), 1, "{args:?}: {message}");
    }
    assert_eq!(daemon.cli_ok(&["rule", "list", "--json"]).trim(), "[]");
    // A good one is stored with its defaults spelled out, and listed.
    let added = daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        "mcp.example.com",
        "--block",
        "--mcp-tool",
        "delete_*",
        "--mcp-arg",
        "/force=true",
        "--body-limit",
        "8KiB",
    ]);
    assert!(
        added.contains("if mcp tools/call tool=delete_* /force=true"),
        "{added}"
    );
    let rules: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["rule", "list", "--json"])).expect("JSON");
    assert_eq!(
        rules[0]["body"],
        serde_json::json!({"mcp_method": "tools/call", "mcp_tool": "delete_*",
            "mcp_args": ["/force=true"], "body_limit": 8192, "on_unreadable": "refuse"})
    );
    let table = daemon.cli_ok(&["rule", "list"]);
    assert!(
        table.lines().next().is_some_and(|h| h.ends_with("BODY")),
        "{table}"
    );
}
