//! MCP-aware rules on the transparent path: the official Python SDK's
//! client (tests/mcp/client.py) inside an agent's cgroup (`airlock run`,
//! no proxy settings, trusting the bundle `airlock run` names in
//! `SSL_CERT_FILE`) against a real FastMCP server on loopback
//! (tests/mcp/server.py), which answers only with the injected credential.
//! The same judging as through the explicit proxy (tests/gateway/mcp.rs):
//! an allowed tool answers; a blocked one is a JSON-RPC error the SDK
//! raises as `McpError`, and never reaches the server; an approval-held
//! one waits for `airlock approve`, then runs.
//!
//! The SDK's client never sends a batch (JSON-RPC batching left MCP in
//! the 2025-06-18 revision), so the batch with a blocked call is sent by
//! curl, also as the agent.
//!
//! The agent is an unprivileged user: its `python3` is the system one,
//! with the SDK from `target/agent-python` (`cargo xtask setup`).

use std::process::Stdio;

use crate::harness::*;
use crate::support;
use crate::support::mcp::{
    McpServer, agent_python_path, client_args, parse_line, result_line, tools_call, wait_pending,
};

#[test]
fn ebpf_mcp_rules_judge_an_agents_tool_calls() {
    rules_judge_tool_calls(Mode::Ebpf);
}

#[test]
fn nftables_mcp_rules_judge_an_agents_tool_calls() {
    rules_judge_tool_calls(Mode::Nftables);
}

#[test]
fn ebpf_an_agents_approval_held_tool_call_proceeds_once_approved() {
    approval_held_call_proceeds(Mode::Ebpf);
}

#[test]
fn nftables_an_agents_approval_held_tool_call_proceeds_once_approved() {
    approval_held_call_proceeds(Mode::Nftables);
}

/// A daemon intercepting the server's port for the test's agent `bot`,
/// which is granted secret `mcp` (the server's credential, a bearer
/// header), with `rule` added for the server's `/mcp`.
struct Fixture {
    // Dropped in this order: the daemon before the isolation it uses.
    daemon: support::Daemon,
    server: McpServer,
    _iso: Isolation,
}

impl Fixture {
    fn start(mode: Mode, rule: &[&str]) -> Fixture {
        let iso = Isolation::new(mode);
        let value = format!("mcp-{}", support::random_hex(12));
        let server = McpServer::start(&value);
        let daemon = start_daemon_for(&iso, server.ca.ca_pem_path(), &[server.port]);
        add_agent(&daemon, &iso, "bot");
        add_secret(&daemon, "mcp", &server.ip_host(), &value, "bot");
        let host = server.ip_host();
        let mut add = vec!["rule", "add", "--host", &host, "--path", "/mcp"];
        add.extend_from_slice(rule);
        daemon.cli_ok(&add);
        Fixture {
            daemon,
            server,
            _iso: iso,
        }
    }

    /// `env PYTHONPATH=… python3 client.py …`, no proxy, the CA from
    /// `SSL_CERT_FILE`: what runs as the agent.
    fn client(&self, tool: &str, args: &serde_json::Value) -> Vec<String> {
        let mut argv = vec![
            "env".to_owned(),
            format!("PYTHONPATH={}", agent_python_path().display()),
            "python3".to_owned(),
        ];
        argv.extend(client_args(&self.server.ip_url(), "", "", tool, args));
        argv
    }

    fn call(&self, tool: &str, args: serde_json::Value) -> serde_json::Value {
        let out = agent_run(&self.daemon, "bot", &as_strs(&self.client(tool, &args)));
        parse_line(&out)
    }
}

fn rules_judge_tool_calls(mode: Mode) {
    require!(mode);
    let fx = Fixture::start(mode, &["--mcp-tool", "delete_*", "--block"]);

    // An allowed tool answers: the server saw the injected credential
    // (it answers 401 without), and the agent is known by its cgroup.
    let ok = fx.call("read_file", serde_json::json!({"path": "/tmp/a"}));
    assert_eq!(
        ok["ok"][0],
        "contents of /tmp/a",
        "{ok}\n{}",
        fx.daemon.log()
    );
    assert_eq!(ok["is_error"], false);
    let rec = wait_audit(&fx.daemon, |e| {
        e["path"] == "/mcp" && e["decision"] == "allowed"
    });
    assert_eq!(rec["agent"], "bot", "{rec:#}");
    assert_eq!(rec["secrets"][0], "mcp", "{rec:#}");

    // A blocked tool is a JSON-RPC error the SDK raises as McpError.
    let refused = fx.call("delete_repo", serde_json::json!({"name": "prod"}));
    let err = &refused["mcp_error"];
    assert_eq!(err["code"], -32001, "{refused}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("blocked by rule 1"), "{refused}");
    assert_eq!(fx.server.seen(), ["read_file"]);
    let rec = wait_audit(&fx.daemon, |e| e["decision"] == "blocked");
    assert_eq!(rec["agent"], "bot", "{rec:#}");

    // A batch with one blocked call is refused whole, one error per id.
    let batch = serde_json::json!([
        tools_call(1, "read_file", serde_json::json!({"path": "/b"})),
        tools_call(2, "delete_repo", serde_json::json!({"name": "x"})),
    ])
    .to_string();
    let url = fx.server.ip_url();
    let out = agent_run(
        &fx.daemon,
        "bot",
        &[
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "-m",
            "20",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
            "-H",
            "Accept: application/json, text/event-stream",
            "--data-binary",
            &batch,
            &url,
        ],
    );
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", ""));
    assert_eq!(code.trim(), "200", "{out:#?}");
    let errors: serde_json::Value = serde_json::from_str(body).expect("JSON-RPC errors");
    assert_eq!(errors[0]["id"], 1, "{body}");
    assert_eq!(errors[1]["id"], 2, "{body}");
    assert_eq!(errors[1]["error"]["code"], -32001, "{body}");
    assert_eq!(fx.server.seen(), ["read_file"]);
}

fn approval_held_call_proceeds(mode: Mode) {
    require!(mode);
    let fx = Fixture::start(mode, &["--mcp-tool", "pay", "--approve"]);
    let args = serde_json::json!({"amount": 5, "to": "bob"});
    // If the test fails before the client ends, the isolation's cleanup
    // kills it with everything else in the agent's cgroup.
    let mut child = agent_command(&fx.daemon, "bot", &as_strs(&fx.client("pay", &args)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("airlock run starts");
    let Some(pending) = wait_pending(&fx.daemon) else {
        let _ = child.kill();
        panic!(
            "the call was not held: {:?}\n{}",
            child.wait_with_output(),
            fx.daemon.log()
        );
    };
    assert_eq!(pending["agent"], "bot", "{pending}");
    let detail = pending["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("tools/call pay {"), "{pending}");
    assert!(fx.server.seen().is_empty());
    let id = pending["id"].as_i64().expect("an id").to_string();
    fx.daemon.cli_ok(&["approve", &id]);
    let out = child.wait_with_output().expect("the client ends");
    let line = result_line(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|| panic!("no result: {out:?}"));
    assert_eq!(line["ok"][0], "paid 5 to bob", "{line}");
    assert_eq!(fx.server.seen(), ["pay"]);
}
