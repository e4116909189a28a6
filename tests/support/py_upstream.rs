//! A real Python server over TLS on loopback as the upstream of agent
//! `bot`, behind the real daemon: what the MCP (tests/mcp/server.py) and
//! GraphQL (tests/graphql/server.py) rule tests share.
//!
//! A server script takes a config JSON (`cert`, `key`, `token`), answers
//! only requests that carry `Authorization: Bearer <token>` (so an answer
//! proves the gateway injected the credential), prints `{"port": N}` once
//! listening, and lists what it ran at `GET /seen` (no credential), so a
//! test can tell that a refused request never arrived.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::support::gw::CURL_TIMEOUT;
use crate::support::script_server::{Prepared, ScriptServer};
use crate::support::upstream::TestCa;
use crate::support::{Daemon, random_hex, run, wait_until};

/// The Python server, killed (by its PID) when this drops.
pub struct PyServer {
    _server: ScriptServer,
    pub port: u16,
    pub ca: Arc<TestCa>,
}

impl PyServer {
    /// Runs `script`, which serves only with `Authorization: Bearer
    /// {token}`; `missing` says what to install if it never listens.
    pub fn start(script: &Path, token: &str, missing: &str) -> PyServer {
        let prepared = Prepared::new();
        let config = serde_json::json!({
            "cert": prepared.cert_path, "key": prepared.key_path, "token": token,
        });
        let started = prepared.spawn(
            "python3",
            script,
            &config,
            &script.display().to_string(),
            &format!("is {missing} installed? cargo xtask setup"),
        );
        let server = PyServer {
            port: started.port("port"),
            ca: started.ca.clone(),
            _server: started,
        };
        // Listening is not serving: wait for the app to answer.
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            server.seen_now().map(|_| ())
        })
        .expect("the server answers /seen");
        server
    }

    /// By name (`api.test.local`, which the daemon resolves).
    pub fn host(&self) -> String {
        format!("api.test.local:{}", self.port)
    }

    /// By address: what an agent with no resolver entry for the name
    /// connects to (no SNI; the original destination names the host).
    pub fn ip_host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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

    /// What the server ran so far, straight from it (not proxied).
    pub fn seen(&self) -> Vec<String> {
        self.seen_now().expect("the server lists what it ran")
    }
}

/// A daemon that trusts the server's CA, with secret `api` (the server's
/// credential, as a bearer header) granted to agent `bot`.
pub struct Proxied {
    pub server: PyServer,
    pub daemon: Daemon,
    pub proxy_url: String,
    /// The gateway's CA certificate (PEM path), for clients.
    pub ca: String,
}

impl Proxied {
    /// Starts `script` (see [`PyServer::start`]) and a daemon in front.
    pub fn start(script: &Path, missing: &str) -> Proxied {
        let value = format!("api-{}", random_hex(12));
        let server = PyServer::start(script, &value, missing);
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
                    "api",
                    "--host",
                    &host,
                    "--header",
                    "Authorization",
                ],
                &value,
            )
            .ok();
        let token = daemon
            .cli_ok(&["agent", "add", "bot", "--grant", "api"])
            .trim()
            .to_owned();
        let status = daemon.status_json();
        let proxy = status["proxy_addr"].as_str().expect("proxy_addr");
        Proxied {
            proxy_url: format!("http://bot:{token}@{proxy}"),
            ca: status["ca_cert"].as_str().expect("ca_cert").to_owned(),
            server,
            daemon,
        }
    }

    /// `https://api.test.local:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.server.host())
    }

    /// Adds a rule for the server's host and `path`, with `args`.
    pub fn rule(&self, path: &str, args: &[&str]) {
        let host = self.server.host();
        let mut full = vec!["rule", "add", "--host", &host, "--path", path];
        full.extend_from_slice(args);
        self.daemon.cli_ok(&full);
    }

    /// A raw JSON POST of `body` to `path` with curl, through the proxy:
    /// status and body.
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert", &self.ca, "-x", &self.proxy_url])
            .args(["-w", "\n%{http_code}", "-X", "POST", "--data-binary", "@-"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-H", "Accept: application/json, text/event-stream"])
            .arg(self.url(path));
        let out = run(&mut cmd, Some(body), CURL_TIMEOUT);
        let (text, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), text.to_owned())
    }
}
