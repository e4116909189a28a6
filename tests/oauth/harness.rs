//! [`Provider`]: the OAuth2 server and its resource server, run by Node;
//! [`Setup`]: a daemon that trusts them, with one agent, and curl through
//! its explicit proxy.

pub use crate::support::agent::{Agent, split};
use crate::support::script_server::{Prepared, ScriptServer, assert_absent};
use crate::support::{Daemon, Output, evidence, random_hex};

/// The OAuth2 provider and resource server; the Node process is killed
/// (by PID) when this drops, however the test ends.
pub struct Provider {
    server: ScriptServer,
    pub token_url: String,
    /// The provider's authorization endpoint (oidc-provider's `/auth`).
    pub authorize_url: String,
    pub api_port: u16,
    pub client_id: String,
    pub client_secret: String,
}

impl Provider {
    /// Starts the provider with access tokens living `access_ttl` seconds.
    pub fn start(access_ttl: u64) -> Provider {
        let prepared = Prepared::new();
        let client_id = format!("airlock-{}", random_hex(4));
        let client_secret = format!("cs-leakcheck-{}", random_hex(16));
        evidence::note_secret(&client_secret);
        let config = serde_json::json!({
            "cert": prepared.cert_path, "key": prepared.key_path,
            "ca": prepared.ca.ca_pem_path(),
            "access_ttl": access_ttl, "client_id": client_id, "client_secret": client_secret,
        });
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/node/oauth_server.mjs"
        );
        let server = prepared.spawn(
            "node",
            script.as_ref(),
            &config,
            "the OAuth2 provider",
            "cargo xtask setup installs node and tests/node's packages",
        );
        let issuer = server.ready["issuer"].as_str().expect("issuer").to_owned();
        Provider {
            token_url: server.ready["token_url"]
                .as_str()
                .expect("token_url")
                .to_owned(),
            authorize_url: format!("{issuer}/auth"),
            api_port: server.port("api_port"),
            client_id,
            client_secret,
            server,
        }
    }

    fn admin(&self, method: &str, path: &str) -> serde_json::Value {
        self.server.admin(self.api_port, method, path)
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

/// A daemon that reaches and trusts the provider, with `extra` set.
pub fn start_daemon(p: &Provider, extra: &[(&str, String)]) -> Daemon {
    p.server.start_daemon(extra)
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
    assert_absent(daemon, db, &values, "a token or secret");
}
