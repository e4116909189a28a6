//! A real MCP server and the official SDK's client, for the MCP-rule tests
//! through the explicit proxy (tests/gateway/mcp.rs) and through
//! transparent interception (tests/transparent/mcp.rs): FastMCP over
//! streamable HTTP and TLS (tests/mcp/server.py) and `ClientSession`
//! (tests/mcp/client.py). `cargo xtask setup` installs the SDK, for root's
//! interpreter and, in [`agent_python_path`], for the system one that
//! `airlock run` agents get.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::gw::CURL_TIMEOUT;
use super::upstream::TestCa;
use super::{Output, run, wait_until};

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

/// The Python MCP server, killed (by its PID) when this drops.
pub struct McpServer {
    child: Child,
    pub port: u16,
    pub ca: TestCa,
    _dir: tempfile::TempDir,
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl McpServer {
    /// Serves tools that answer only with `Authorization: Bearer {token}`,
    /// on 127.0.0.1, with a certificate for it and `api.test.local`.
    pub fn start(token: &str) -> McpServer {
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

    /// By name (`api.test.local`, which the daemon resolves).
    pub fn host(&self) -> String {
        format!("api.test.local:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("https://{}/mcp", self.host())
    }

    /// By address: what an agent with no resolver entry for the name
    /// connects to (no SNI; the original destination names the host).
    pub fn ip_host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ip_url(&self) -> String {
        format!("https://{}/mcp", self.ip_host())
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
    pub fn seen(&self) -> Vec<String> {
        self.seen_now().expect("the server lists the calls")
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
