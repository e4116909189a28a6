//! [`Provider`]: the OAuth2 server and its resource server, run by Node;
//! [`Setup`]: a daemon that trusts them, with one agent, and curl through
//! its explicit proxy.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub use crate::support::agent::{Agent, CURL_TIMEOUT, split};
use crate::support::upstream::TestCa;
use crate::support::{Daemon, Output, evidence, random_hex, run};

/// The OAuth2 provider and resource server; the Node process is killed
/// (by PID) when this drops, however the test ends.
pub struct Provider {
    child: Child,
    pub token_url: String,
    /// The provider's authorization endpoint (oidc-provider's `/auth`).
    pub authorize_url: String,
    pub api_port: u16,
    pub ca: Arc<TestCa>,
    pub client_id: String,
    pub client_secret: String,
    _dir: tempfile::TempDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts the provider with access tokens living `access_ttl` seconds.
    pub fn start(access_ttl: u64) -> Provider {
        let ca = Arc::new(TestCa::new_temp());
        let dir = tempfile::tempdir().expect("a provider directory");
        let cert = ca.mint(&["127.0.0.1", "api.test.local"]);
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
        std::fs::write(&key_path, &cert.key_pem).expect("write key");
        let client_id = format!("airlock-{}", random_hex(4));
        let client_secret = format!("cs-leakcheck-{}", random_hex(16));
        evidence::note_secret(&client_secret);
        let config = serde_json::json!({
            "cert": cert_path, "key": key_path, "ca": ca.ca_pem_path(),
            "access_ttl": access_ttl, "client_id": client_id, "client_secret": client_secret,
        });
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/node/oauth_server.mjs"
        );
        let mut child = Command::new("node")
            .arg(script)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs (cargo xtask setup installs it and tests/node's packages)");
        let stdout = child.stdout.take().expect("the provider's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // The provider prints notices too: the first JSON line is the one.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!("the OAuth2 provider did not start within 30s");
            }
        };
        Provider {
            child,
            token_url: ready["token_url"].as_str().expect("token_url").to_owned(),
            authorize_url: format!("{}/auth", ready["issuer"].as_str().expect("issuer")),
            api_port: u16::try_from(ready["api_port"].as_u64().expect("api_port")).expect("a port"),
            ca,
            client_id,
            client_secret,
            _dir: dir,
        }
    }

    fn admin(&self, method: &str, path: &str) -> serde_json::Value {
        let url = format!("https://127.0.0.1:{}/__admin/{path}", self.api_port);
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "-X", method, "--cacert"])
            .arg(self.ca.ca_pem_path())
            .arg(&url);
        let out = run(&mut cmd, None, CURL_TIMEOUT);
        assert!(out.success(), "{method} {url}: {}", out.all());
        serde_json::from_str(&out.stdout).expect("admin JSON")
    }

    /// Token requests of one grant type.
    pub fn grant_requests(&self, grant: &str) -> u64 {
        self.admin("GET", "stats")["by_grant"][grant]
            .as_u64()
            .unwrap_or(0)
    }

    /// Every token the provider issued so far; each is recorded for the
    /// suite's leak scan.
    pub fn issued(&self) -> Vec<String> {
        let tokens: Vec<String> = self.admin("GET", "stats")["issued"]
            .as_array()
            .expect("issued")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        for t in &tokens {
            evidence::note_secret(t);
        }
        tokens
    }

    /// A first refresh token, by the authorization-code flow through the
    /// provider's dev login and consent pages.
    pub fn refresh_token(&self) -> String {
        let t = self.admin("POST", "refresh-token")["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned();
        evidence::note_secret(&t);
        t
    }

    /// The query of the last authorization request the provider received.
    pub fn last_authorization(&self) -> serde_json::Value {
        self.admin("GET", "stats")["last_authorization"].clone()
    }

    pub fn revoke_access(&self) {
        self.admin("POST", "revoke-access");
    }

    pub fn revoke_grants(&self) {
        self.admin("POST", "revoke-grants");
    }

    pub fn slow(&self, ms: u64) {
        self.admin("POST", &format!("slow?ms={ms}"));
    }

    /// The resource server's host as a secret names it.
    pub fn api_host(&self) -> String {
        format!("api.test.local:{}", self.api_port)
    }
}

/// The environment a daemon needs to reach and trust the provider.
pub fn daemon_env(p: &Provider) -> Vec<(&'static str, String)> {
    vec![
        (
            "AIRLOCK_UPSTREAM_CA",
            p.ca.ca_pem_path().display().to_string(),
        ),
        ("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8".to_owned()),
        ("AIRLOCK_RESOLVE", "api.test.local=127.0.0.1".to_owned()),
    ]
}

pub fn start_daemon(p: &Provider, extra: &[(&str, String)]) -> Daemon {
    let mut b = Daemon::builder();
    for (k, v) in daemon_env(p).iter().chain(extra) {
        b = b.env(k, v.clone());
    }
    b.start()
}

impl Agent {
    /// GET `path` of the resource server; (status, body).
    pub fn get(&self, p: &Provider, path: &str) -> (u16, String) {
        split(&self.curl(&[&format!("https://{}{path}", p.api_host())]))
    }
}

/// Adds OAuth2 secret `name` for the resource server: the refresh-token
/// grant with `refresh` on the second line, else client credentials.
pub fn add_oauth2(daemon: &Daemon, p: &Provider, name: &str, refresh: Option<&str>) -> Output {
    let host = p.api_host();
    let mut args = vec![
        "secret",
        "add",
        name,
        "--host",
        &host,
        "--oauth2-token-url",
        &p.token_url,
        "--client-id",
        &p.client_id,
        "--scope",
        "api:read",
    ];
    let input = match refresh {
        Some(rt) => {
            args.push("--refresh-token-stdin");
            format!("{}\n{rt}\n", p.client_secret)
        }
        None => {
            args.push("--client-credentials");
            format!("{}\n", p.client_secret)
        }
    };
    daemon.cli_stdin(&args, input)
}

/// No token, refresh token or client secret in the daemon's log, its
/// audit trail, or anything the CLI printed.
pub fn assert_no_leaks(daemon: &Daemon, p: &Provider) {
    assert_no_leaks_with(daemon, p, &daemon.db());
}

/// [`assert_no_leaks`] for a daemon whose database is `db`.
pub fn assert_no_leaks_with(daemon: &Daemon, p: &Provider, db: &crate::support::Db) {
    let mut values = p.issued();
    values.push(p.client_secret.clone());
    let audit = daemon.cli_ok(&["audit", "--json", "--limit", "10000"]);
    let listing = daemon.cli_ok(&["secret", "list", "--json"]);
    let places = [
        ("the daemon's log", daemon.log()),
        ("the audit trail", audit),
        ("secret list", listing),
        ("the CLI transcript", daemon.transcript()),
        (
            "the audit rows",
            db.psql("SELECT string_agg(t::text, ' ') FROM audit_events t"),
        ),
    ];
    for v in values.iter().filter(|v| v.len() >= 12) {
        for (place, text) in &places {
            assert!(
                !text.contains(v.as_str()),
                "a token or secret leaked into {place}"
            );
        }
    }
}
