//! [`Issuer`]: the token endpoint of tests/jwt/issuer.py (GitHub's and
//! Google's shapes, verifying each RS256 assertion with the public key)
//! and the API beside it that accepts only its live tokens; [`Key`]: RSA
//! keys made by openssl for each test, never committed; a daemon that
//! trusts the issuer, and the leak checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use crate::support::agent::{Agent, split};
use crate::support::script_server::{Prepared, ScriptServer, assert_absent};
use crate::support::{Daemon, Output, evidence, random_hex, run};

/// An RSA key pair in files: the private key the gateway gets, the public
/// one the issuer verifies with.
pub struct Key {
    pub private: PathBuf,
    pub public: PathBuf,
    pub pem: String,
}

impl Key {
    /// A fresh key in `dir`: PKCS#1 (`BEGIN RSA PRIVATE KEY`, as GitHub
    /// hands them out) or PKCS#8 (`BEGIN PRIVATE KEY`, as in Google's key
    /// files). Each line of its body joins the leak scan.
    pub fn generate(dir: &Path, name: &str, pkcs1: bool, bits: u32) -> Key {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        let mut keygen = Command::new("openssl");
        if pkcs1 {
            keygen
                .args(["genrsa", "-traditional", "-out"])
                .arg(&private)
                .arg(bits.to_string());
        } else {
            keygen
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
                .arg(format!("rsa_keygen_bits:{bits}"))
                .arg("-out")
                .arg(&private);
        }
        run(&mut keygen, None, Duration::from_secs(60)).ok();
        let mut pubout = Command::new("openssl");
        pubout
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public);
        run(&mut pubout, None, Duration::from_secs(60)).ok();
        let pem = std::fs::read_to_string(&private).expect("the private key");
        for line in body_lines(&pem) {
            evidence::note_secret(line);
        }
        Key {
            private,
            public,
            pem,
        }
    }

    pub fn private_path(&self) -> String {
        self.private.display().to_string()
    }
}

/// The base64 lines of a PEM (its `-----` lines are not secret).
pub fn body_lines(pem: &str) -> impl Iterator<Item = &str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
}

/// The issuer's GitHub App.
pub struct GithubApp {
    pub app_id: String,
    pub installation_id: String,
    pub key: Key,
}

/// The issuer's Google service account, and its JSON key file.
pub struct ServiceAccount {
    pub client_email: String,
    pub key_id: String,
    pub scope: String,
    pub key: Key,
    pub file: PathBuf,
}

/// The Python process, killed (by PID) when this drops.
pub struct Issuer {
    server: ScriptServer,
    pub port: u16,
    pub github: GithubApp,
    pub google: ServiceAccount,
}

impl Issuer {
    /// Starts the issuer with tokens living `ttl` seconds.
    pub fn start(ttl: u64) -> Issuer {
        let prepared = Prepared::new();
        let dir = prepared.dir.path();
        let github = GithubApp {
            app_id: format!("{}", 100_000 + rand_u16()),
            installation_id: format!("{}", 5_000_000 + rand_u16()),
            key: Key::generate(dir, "github-app", true, 2048),
        };
        let google_key = Key::generate(dir, "service-account", false, 2048);
        let client_email = format!(
            "agent-{}@airlock-test.iam.gserviceaccount.com",
            random_hex(3)
        );
        let key_id = random_hex(20);
        let scope = "https://www.googleapis.com/auth/cloud-platform.read-only".to_owned();
        let config = serde_json::json!({
            "cert": prepared.cert_path, "key": prepared.key_path, "token_ttl": ttl,
            "github": {"app_id": github.app_id, "installation_id": github.installation_id,
                       "public_key": github.key.public},
            "google": {"client_email": client_email, "key_id": key_id,
                       "public_key": google_key.public, "scope": scope},
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/jwt/issuer.py");
        // Debian's python3 has PyJWT and cryptography (cargo xtask setup).
        let server = prepared.spawn(
            "/usr/bin/python3",
            script.as_ref(),
            &config,
            "the issuer",
            "cargo xtask setup installs python3-jwt",
        );
        let port = server.port("port");
        let file = server.dir.path().join("service-account.json");
        let key_file = serde_json::json!({
            "type": "service_account",
            "project_id": "airlock-test",
            "private_key_id": key_id,
            "private_key": google_key.pem,
            "client_email": client_email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("https://127.0.0.1:{port}/token"),
        });
        std::fs::write(&file, key_file.to_string()).expect("write the key file");
        Issuer {
            server,
            port,
            github,
            google: ServiceAccount {
                client_email,
                key_id,
                scope,
                key: google_key,
                file,
            },
        }
    }

    /// A directory for the test's own files, removed with the issuer.
    pub fn dir(&self) -> &Path {
        self.server.dir.path()
    }

    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The API's host as a secret names it.
    pub fn api_host(&self) -> String {
        format!("api.test.local:{}", self.port)
    }

    fn admin(&self, method: &str, path: &str) -> serde_json::Value {
        self.server.admin(self.port, method, path)
    }

    /// Token requests the issuer granted for `grant` (`github_app`,
    /// `jwt_bearer`).
    pub fn granted(&self, grant: &str) -> u64 {
        self.admin("GET", "stats")["by_grant"][grant]
            .as_u64()
            .unwrap_or(0)
    }

    /// When each token was issued, in order (Unix seconds).
    pub fn issued_at(&self) -> Vec<f64> {
        self.admin("GET", "stats")["issued_at"]
            .as_array()
            .expect("issued_at")
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect()
    }

    /// Why the issuer refused token requests, in order.
    pub fn refusals(&self) -> Vec<String> {
        self.admin("GET", "stats")["refused"]
            .as_array()
            .expect("refused")
            .iter()
            .map(|r| r["why"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every token issued and assertion received so far; each joins the
    /// leak scan.
    pub fn seen(&self) -> Vec<String> {
        let stats = self.admin("GET", "stats");
        let mut values = Vec::new();
        for list in ["issued", "assertions"] {
            for v in stats[list].as_array().expect(list) {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    evidence::note_secret(v);
                    values.push(v.to_owned());
                }
            }
        }
        values
    }

    /// How the token endpoints answer from now on (see issuer.py).
    pub fn fail(&self, mode: &str) {
        self.admin("POST", &format!("fail?mode={mode}"));
    }

    /// Every token issued so far stops working at the API.
    pub fn revoke(&self) {
        self.admin("POST", "revoke");
    }
}

fn rand_u16() -> u32 {
    u32::from(u16::from_str_radix(&random_hex(2), 16).unwrap_or(7))
}

pub fn start_daemon(issuer: &Issuer) -> Daemon {
    issuer.server.start_daemon(&[])
}

/// `airlock secret add NAME` as a GitHub App of the issuer; `extra`
/// replaces nothing, it is appended (a flag given twice fails in clap).
pub fn add_github(d: &Daemon, i: &Issuer, name: &str, key_file: &str, extra: &[&str]) -> Output {
    let host = i.api_host();
    let api = i.api_url();
    let mut args = vec![
        "secret",
        "add",
        name,
        "--host",
        &host,
        "--github-app-id",
        &i.github.app_id,
        "--github-installation-id",
        &i.github.installation_id,
        "--github-api-url",
        &api,
        "--private-key-file",
        key_file,
    ];
    args.extend_from_slice(extra);
    d.cli(&args)
}

/// `airlock secret add NAME` as the issuer's service account.
pub fn add_google(d: &Daemon, i: &Issuer, name: &str, file: &Path) -> Output {
    let host = i.api_host();
    let file = file.display().to_string();
    d.cli(&[
        "secret",
        "add",
        name,
        "--host",
        &host,
        "--google-service-account-file",
        &file,
        "--scope",
        &i.google.scope,
    ])
}

impl Agent {
    /// GET `path` of the issuer's API; (status, body).
    pub fn api(&self, i: &Issuer, path: &str) -> (u16, String) {
        split(&self.curl(&[&format!("https://{}{path}", i.api_host())]))
    }
}

/// No token, assertion or line of a private key in the daemon's log, its
/// audit trail, its listings, or anything the CLI printed.
pub fn assert_no_leaks(d: &Daemon, i: &Issuer) {
    let mut values = i.seen();
    for key in [&i.github.key, &i.google.key] {
        values.extend(body_lines(&key.pem).map(str::to_owned));
    }
    assert_absent(d, &d.db(), &values, "a token, assertion or key");
}

/// The secret's state as `secret list --json` shows it.
pub fn listed(d: &Daemon, name: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["secret", "list", "--json"])).expect("JSON");
    list.as_array()
        .expect("a list")
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("secret {name} is not listed: {list}"))
}
