//! A real Python server over TLS on loopback as the upstream of agent
//! `bot`, behind the real daemon: what the MCP (tests/mcp/server.py) and
//! GraphQL (tests/graphql/server.py) rule tests share.
//!
//! A server script takes a config JSON (`cert`, `key`, `token`), answers
//! only requests that carry `Authorization: Bearer <token>` (so an answer
//! proves the gateway injected the credential), prints `{"port": N}` once
//! listening, and lists what it ran at `GET /seen` (no credential), so a
//! test can tell that a refused request never arrived.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::gw::CURL_TIMEOUT;
use crate::support::upstream::TestCa;
use crate::support::{Daemon, random_hex, run, wait_until};

/// The Python server, killed (by its PID) when this drops.
pub(crate) struct PyServer {
    child: Child,
    pub port: u16,
    pub ca: TestCa,
    _dir: tempfile::TempDir,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyServer {
    /// Runs `script`, which serves only with `Authorization: Bearer
    /// {token}`; `missing` says what to install if it never listens.
    pub fn start(script: &Path, token: &str, missing: &str) -> PyServer {
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
            .arg(script)
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
                "{} did not start within 30s (is {missing} installed? cargo xtask setup)",
                script.display()
            );
        };
        let server = PyServer {
            child,
            port,
            ca,
            _dir: dir,
        };
        // Listening is not serving: wait for the app to answer.
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            server.seen_now().map(|_| ())
        })
        .expect("the server answers /seen");
        server
    }

    pub fn host(&self) -> String {
        format!("api.test.local:{}", self.port)
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
pub(crate) struct Proxied {
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
