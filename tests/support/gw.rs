//! [`Gw`]: a daemon with a test upstream, one secret and one agent, and
//! curl through its explicit proxy: the fixture of the gateway tests.

use std::process::Command;
use std::time::Duration;

use super::upstream::{Upstream, UpstreamOpts};
use super::{Daemon, Output, run, wait_until};

pub const CURL_TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon that trusts the test upstream's CA and may reach loopback,
/// with one secret `up` for the upstream's host and one agent `bot`
/// granted it.
pub struct Gw {
    pub daemon: Daemon,
    pub up: Upstream,
    pub token: String,
    pub proxy: String,
    pub ca: String,
    pub value: String,
}

impl Gw {
    pub fn start() -> Gw {
        Gw::start_with(UpstreamOpts::default(), &[])
    }

    pub fn start_with(opts: UpstreamOpts, env: &[(&str, &str)]) -> Gw {
        let up = Upstream::start(opts);
        let mut builder = Daemon::builder()
            .env(
                "AIRLOCK_UPSTREAM_CA",
                up.ca_pem_path().display().to_string(),
            )
            .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8,::1/128")
            .env("AIRLOCK_RESOLVE", "api.test.local=127.0.0.1");
        for (k, v) in env {
            builder = builder.env(k, *v);
        }
        let daemon = builder.start();
        let value = format!("sk-gw-{}", super::random_hex(12));
        let host = format!("api.test.local:{}", up.port());
        daemon
            .cli_stdin(
                &[
                    "secret",
                    "add",
                    "up",
                    "--host",
                    &host,
                    "--header",
                    "Authorization",
                ],
                &value,
            )
            .ok();
        let token = daemon
            .cli_ok(&["agent", "add", "bot", "--grant", "up"])
            .trim()
            .to_owned();
        let status = daemon.status_json();
        Gw {
            proxy: status["proxy_addr"]
                .as_str()
                .expect("proxy_addr")
                .to_owned(),
            ca: status["ca_cert"].as_str().expect("ca_cert").to_owned(),
            daemon,
            up,
            token,
            value,
        }
    }

    /// Restarts the daemon (a clean stop first) and picks up its new proxy
    /// port.
    #[track_caller]
    pub fn restart(&mut self) {
        self.daemon.restart();
        self.proxy = self.daemon.status_json()["proxy_addr"]
            .as_str()
            .expect("proxy_addr")
            .to_owned();
    }

    /// The upstream's host as secrets and rules name it.
    pub fn host(&self) -> String {
        format!("api.test.local:{}", self.up.port())
    }

    /// Adds secret `name` for the upstream's host (`args` say how it is
    /// injected) and grants it to `bot`.
    pub fn add_secret(&self, name: &str, args: &[&str], value: &str) {
        let host = self.host();
        let mut full = vec!["secret", "add", name, "--host", &host];
        full.extend_from_slice(args);
        self.daemon.cli_stdin(&full, value).ok();
        self.daemon.cli_ok(&["agent", "grant", "bot", name]);
    }

    pub fn proxy_url(&self) -> String {
        format!("http://bot:{}@{}", self.token, self.proxy)
    }

    /// curl through the proxy as `bot`; `-w` appends the status code.
    pub fn curl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert", &self.ca, "-x", &self.proxy_url()])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        run(&mut cmd, None, CURL_TIMEOUT)
    }

    /// The status code curl printed last.
    pub fn code(out: &Output) -> u16 {
        out.stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The audit trail as JSON rows, waiting until `n` request rows exist.
    pub fn requests(&self, n: usize) -> Vec<serde_json::Value> {
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let out = self.daemon.cli_ok(&["audit", "--json", "--limit", "1000"]);
            let rows: Vec<serde_json::Value> = out
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|r: &serde_json::Value| r["kind"] == "request")
                .collect();
            (rows.len() >= n).then_some(rows)
        })
        .unwrap_or_else(|| panic!("fewer than {n} request audit rows"))
    }
}
