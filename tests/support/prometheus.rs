//! A real Prometheus server (Debian's `prometheus`, installed by
//! `cargo xtask setup`) scraping one target every second with a bearer
//! token, on a loopback port of its own, with its storage in a temporary
//! directory. Dropping the guard kills it (by PID) and removes the storage.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{run, wait_until};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

pub fn available() -> bool {
    Path::new(PROMETHEUS).exists()
}

pub struct Prometheus {
    child: Child,
    pub addr: String,
    dir: TempDir,
}

impl Prometheus {
    /// Scrapes `http://target/metrics_path` every second, sending
    /// `Authorization: Bearer token` (from a file, as operators do).
    pub fn start(target: &str, metrics_path: &str, token: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("airlock-prometheus-")
            .tempdir()
            .unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: airlock\n    metrics_path: {metrics_path}\n    \
                 authorization:\n      credentials_file: {}\n    \
                 static_configs:\n      - targets: ['{target}']\n",
                token_file.display()
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let p = Prometheus { child, addr, dir };
        let ready = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let out = p.get("/-/ready");
            out.success().then_some(())
        });
        assert!(ready.is_some(), "prometheus never got ready: {}", p.log());
        p
    }

    fn get(&self, path_and_query: &str) -> super::Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sSf", "--max-time", "5"])
            .arg(format!("http://{}{path_and_query}", self.addr));
        run(&mut cmd, None, Duration::from_secs(10))
    }

    /// The result vector of an instant query (`data.result`).
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sSf", "--max-time", "5", "--get", "--data-urlencode"])
            .arg(format!("query={expr}"))
            .arg(format!("http://{}/api/v1/query", self.addr));
        let out = run(&mut cmd, None, Duration::from_secs(10));
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("prometheus answered no JSON ({e}): {out:#?}"));
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The scrape target's health and last error, as Prometheus sees it.
    pub fn target_health(&self) -> (String, String) {
        let out = self.get("/api/v1/targets");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        let t = &v["data"]["activeTargets"][0];
        (
            t["health"].as_str().unwrap_or("").to_owned(),
            t["lastError"].as_str().unwrap_or("").to_owned(),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
