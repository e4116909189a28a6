//! MCP-aware rules end to end: the real daemon, a real MCP server (the
//! official Python SDK's FastMCP, streamable HTTP over TLS:
//! tests/mcp/server.py) and the SDK's own client (tests/mcp/client.py)
//! through the explicit proxy as agent `bot`; raw bodies (too large, not
//! JSON, a batch) with curl. `cargo xtask setup` installs the SDK.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::gw::CURL_TIMEOUT;
use crate::support::upstream::TestCa;
use crate::support::{Daemon, Output, random_hex, run, wait_until};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/mcp");

/// The Python MCP server, killed (by its PID) when this drops.
struct McpServer {
    child: Child,
    port: u16,
    ca: TestCa,
    _dir: tempfile::TempDir,
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl McpServer {
    /// Serves tools that answer only with `Authorization: Bearer {token}`.
    fn start(token: &str) -> McpServer {
        let ca = TestCa::new_temp();
        let dir = tempfile::tempdir().expect("a server directory");
        let cert = ca.mint(&["127.0.0.1", "api.test.local"]);
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
        std::fs::write(&key_path, &cert.key_pem).expect("write key");
        let config = dir.path().join("config.json");
        let json = serde_json::json!({"cert": cert_path, "key": key_path, "token": token});
        std::fs::write(&config, json.to_string()).expect("write config");
        let mut child = Command::new("python3")
            .arg(Path::new(SCRIPTS).join("server.py"))
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("the server's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the MCP server did not start within 30s (is `mcp` installed? cargo xtask setup)"
            );
        };
        let server = McpServer {
            child,
            port,
            ca,
            _dir: dir,
        };
        // Listening is not serving: wait for the app to answer.
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            server.seen_now().map(|_| ())
        })
        .expect("the MCP server answers /seen");
        server
    }

    fn host(&self) -> String {
        format!("api.test.local:{}", self.port)
    }

    fn url(&self) -> String {
        format!("https://{}/mcp", self.host())
    }

    fn seen_now(&self) -> Option<Vec<String>> {
        let out = run(
            Command::new("curl").args([
                "-sS",
                "--fail",
                "--cacert",
                &self.ca.ca_pem_path().display().to_string(),
                "--resolve",
                &format!("api.test.local:{}:127.0.0.1", self.port),
                &format!("https://{}/seen", self.host()),
            ]),
            None,
            CURL_TIMEOUT,
        );
        serde_json::from_str(&out.stdout).ok()
    }

    /// The tools called so far, straight from the server (not proxied).
    fn seen(&self) -> Vec<String> {
        self.seen_now().expect("the server lists the calls")
    }
}

/// A daemon that trusts the server's CA, with secret `mcp` (the server's
/// credential, as a bearer header) granted to agent `bot`.
struct Fixture {
    server: McpServer,
    daemon: Daemon,
    proxy_url: String,
    ca: String,
}

impl Fixture {
    fn start() -> Fixture {
        let value = format!("mcp-{}", random_hex(12));
        let server = McpServer::start(&value);
        let daemon = Daemon::builder()
            .env(
                "AIRLOCK_UPSTREAM_CA",
                server.ca.ca_pem_path().display().to_string(),
            )
            .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8,::1/128")
            .env("AIRLOCK_RESOLVE", "api.test.local=127.0.0.1")
            .start();
        let host = server.host();
        daemon
            .cli_stdin(
                &[
                    "secret",
                    "add",
                    "mcp",
                    "--host",
                    &host,
                    "--header",
                    "Authorization",
                ],
                &value,
            )
            .ok();
        let token = daemon
            .cli_ok(&["agent", "add", "bot", "--grant", "mcp"])
            .trim()
            .to_owned();
        let status = daemon.status_json();
        let proxy = status["proxy_addr"].as_str().expect("proxy_addr");
        Fixture {
            proxy_url: format!("http://bot:{token}@{proxy}"),
            ca: status["ca_cert"].as_str().expect("ca_cert").to_owned(),
            server,
            daemon,
        }
    }

    fn rule(&self, args: &[&str]) {
        let host = self.server.host();
        let mut full = vec!["rule", "add", "--host", &host, "--path", "/mcp"];
        full.extend_from_slice(args);
        self.daemon.cli_ok(&full);
    }

    fn client_command(&self, tool: &str, args: &serde_json::Value) -> Command {
        let mut cmd = Command::new("python3");
        cmd.arg(PathBuf::from(SCRIPTS).join("client.py"))
            .args([&self.server.url(), &self.proxy_url, &self.ca, tool])
            .arg(args.to_string());
        cmd
    }

    /// One tool call with the SDK's client: its JSON line.
    fn call(&self, tool: &str, args: serde_json::Value) -> serde_json::Value {
        let out = run(&mut self.client_command(tool, &args), None, CURL_TIMEOUT);
        parse_line(&out)
    }

    /// A raw POST of `body` to the MCP endpoint with curl: status and body.
    fn post(&self, body: &[u8]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert", &self.ca, "-x", &self.proxy_url])
            .args(["-w", "\n%{http_code}", "-X", "POST", "--data-binary", "@-"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-H", "Accept: application/json, text/event-stream"])
            .arg(self.server.url());
        let out = run(&mut cmd, Some(body), CURL_TIMEOUT);
        let (text, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), text.to_owned())
    }
}

fn parse_line(out: &Output) -> serde_json::Value {
    out.stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the client printed no result: {out:#?}"))
}

fn tools_call(id: u32, tool: &str, args: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args},
    })
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
    let pending = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let out = fx.daemon.cli_ok(&["approvals", "--json"]);
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|a| a["status"] == "pending")
    });
    let Some(pending) = pending else {
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
    let line: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
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
