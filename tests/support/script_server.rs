//! Test servers that are scripts (Node's `oidc-provider`, the Python JWT
//! issuer): each gets a TLS certificate for `127.0.0.1` and
//! `api.test.local` from a fresh test CA and a JSON config file, says it is
//! ready with the first JSON line on its standard output, and answers its
//! test-only `/__admin/` endpoints over the same TLS. The process is killed
//! by PID when the [`ScriptServer`] drops, however the test ends.
//!
//! Also the daemon side every such test needs: the environment that makes
//! a daemon reach and trust the server, and the scan of everything the
//! daemon wrote for the server's secrets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::agent::CURL_TIMEOUT;
use crate::support::upstream::TestCa;
use crate::support::{Daemon, Db, run};

/// How long a script has to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The CA, the directory and the TLS files of a server not started yet:
/// its config (which may need files of its own in [`Prepared::dir`]) is
/// written next.
pub struct Prepared {
    pub ca: Arc<TestCa>,
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Prepared {
    pub fn new() -> Prepared {
        let ca = Arc::new(TestCa::new_temp());
        let dir = tempfile::tempdir().expect("a test server directory");
        let cert = ca.mint(&["127.0.0.1", "api.test.local"]);
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
        std::fs::write(&key_path, &cert.key_pem).expect("write key");
        Prepared {
            ca,
            dir,
            cert_path,
            key_path,
        }
    }

    /// Runs `program script CONFIG` and waits for its ready line; `what`
    /// and `hint` name it in the failure (what to install, what to check).
    pub fn spawn(
        self,
        program: &str,
        script: &Path,
        config: &serde_json::Value,
        what: &str,
        hint: &str,
    ) -> ScriptServer {
        let config_path = self.dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let mut child = Command::new(program)
            .arg(script)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not run ({hint}): {e}"));
        let stdout = child.stdout.take().expect("the server's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Scripts print notices too: the first JSON line is the one.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let Ok(ready) = rx.recv_timeout(READY_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not start within {READY_TIMEOUT:?} ({hint})");
        };
        ScriptServer {
            child,
            ready,
            ca: self.ca,
            dir: self.dir,
        }
    }
}

/// A running script server.
pub struct ScriptServer {
    child: Child,
    /// Its ready line: ports and URLs it chose.
    pub ready: serde_json::Value,
    pub ca: Arc<TestCa>,
    pub dir: tempfile::TempDir,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ScriptServer {
    /// A port the ready line names.
    pub fn port(&self, key: &str) -> u16 {
        let port = self.ready[key].as_u64().unwrap_or_else(|| {
            panic!("the ready line {} has no port {key:?}", self.ready);
        });
        u16::try_from(port).expect("a port")
    }

    /// The JSON answer of `METHOD https://127.0.0.1:PORT/__admin/PATH`.
    pub fn admin(&self, port: u16, method: &str, path: &str) -> serde_json::Value {
        let url = format!("https://127.0.0.1:{port}/__admin/{path}");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "-X", method, "--cacert"])
            .arg(self.ca.ca_pem_path())
            .arg(&url);
        let out = run(&mut cmd, None, CURL_TIMEOUT);
        assert!(out.success(), "{method} {url}: {}", out.all());
        serde_json::from_str(&out.stdout).expect("admin JSON")
    }

    /// The environment a daemon needs to reach and trust the server.
    pub fn daemon_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AIRLOCK_UPSTREAM_CA",
                self.ca.ca_pem_path().display().to_string(),
            ),
            ("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8".to_owned()),
            ("AIRLOCK_RESOLVE", "api.test.local=127.0.0.1".to_owned()),
        ]
    }

    /// A daemon with [`ScriptServer::daemon_env`] and `extra`.
    pub fn start_daemon(&self, extra: &[(&str, String)]) -> Daemon {
        let mut b = Daemon::builder();
        for (k, v) in self.daemon_env().iter().chain(extra) {
            b = b.env(k, v.clone());
        }
        b.start()
    }
}

/// None of `values` (tokens, client secrets, key lines; shorter than 12
/// characters is too common to mean a leak) in the daemon's log, its audit
/// trail and rows in `db`, its secret listing, or anything the CLI
/// printed. `kind` names them in the failure, never the value itself.
pub fn assert_absent(daemon: &Daemon, db: &Db, values: &[String], kind: &str) {
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
            assert!(!text.contains(v.as_str()), "{kind} leaked into {place}");
        }
    }
}
