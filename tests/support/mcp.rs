//! A real MCP server and the official SDK's client, for the MCP-rule tests
//! through the explicit proxy (tests/gateway/mcp.rs) and through
//! transparent interception (tests/transparent/mcp.rs): FastMCP over
//! streamable HTTP and TLS (tests/mcp/server.py) and `ClientSession`
//! (tests/mcp/client.py). `cargo xtask setup` installs the SDK, for root's
//! interpreter and, in [`agent_python_path`], for the system one that
//! `airlock run` agents get.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::py_upstream::PyServer;
use super::{Output, wait_until};

pub const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/mcp");

/// The SDK installed for the system interpreter, where an agent's
/// unprivileged user can read it (root's pip and pyenv installs are under
/// 0700 `/root`): what `cargo xtask setup` puts in `target/agent-python`.
pub fn agent_python_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/agent-python");
    assert!(
        dir.join("mcp").join("__init__.py").is_file(),
        "{} has no MCP SDK for agents' python3: run cargo xtask setup",
        dir.display()
    );
    dir
}

/// The Python MCP server (tests/mcp/server.py), killed (by its PID) when
/// this drops; its endpoint is `/mcp`.
pub struct McpServer(PyServer);

impl std::ops::Deref for McpServer {
    type Target = PyServer;
    fn deref(&self) -> &PyServer {
        &self.0
    }
}

impl McpServer {
    /// Serves tools that answer only with `Authorization: Bearer {token}`,
    /// on 127.0.0.1, with a certificate for it and `api.test.local`.
    pub fn start(token: &str) -> McpServer {
        let script = Path::new(SCRIPTS).join("server.py");
        McpServer(PyServer::start(&script, token, "the `mcp` SDK"))
    }

    pub fn url(&self) -> String {
        format!("https://{}/mcp", self.host())
    }

    pub fn ip_url(&self) -> String {
        format!("https://{}/mcp", self.ip_host())
    }
}

/// tests/mcp/client.py and its arguments, after the interpreter: one
/// `tool` call with `args`. An empty `proxy` is none (transparent
/// interception); an empty `ca` is the bundle `SSL_CERT_FILE` names (what
/// `airlock run` sets).
pub fn client_args(
    url: &str,
    proxy: &str,
    ca: &str,
    tool: &str,
    args: &serde_json::Value,
) -> Vec<String> {
    vec![
        PathBuf::from(SCRIPTS)
            .join("client.py")
            .display()
            .to_string(),
        url.to_owned(),
        proxy.to_owned(),
        ca.to_owned(),
        tool.to_owned(),
        args.to_string(),
    ]
}

/// The client's result: the last JSON line of its standard output.
pub fn result_line(stdout: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

/// [`result_line`] of a finished client, failing the test without one.
pub fn parse_line(out: &Output) -> serde_json::Value {
    result_line(&out.stdout).unwrap_or_else(|| panic!("the client printed no result: {out:#?}"))
}

pub fn tools_call(id: u32, tool: &str, args: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args},
    })
}

/// The first pending approval, waiting (bounded) for one to appear.
pub fn wait_pending(daemon: &super::Daemon) -> Option<serde_json::Value> {
    wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let out = daemon.cli_ok(&["approvals", "--json"]);
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|a| a["status"] == "pending")
    })
}
