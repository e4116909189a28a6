//! [`Agent`]: an agent of a running daemon, as curl through its explicit
//! proxy sees it (tests/oauth, tests/jwt).

use std::process::Command;
use std::time::Duration;

use super::{Daemon, Output, run};

pub const CURL_TIMEOUT: Duration = Duration::from_secs(40);

/// A daemon's agent: its proxy address and CA, for curl.
pub struct Agent {
    pub proxy: String,
    pub ca: String,
    pub token: String,
}

impl Agent {
    /// Adds agent `name` granted `secrets` on `daemon`.
    pub fn add(daemon: &Daemon, name: &str, secrets: &[&str]) -> Agent {
        let mut args = vec!["agent", "add", name];
        for s in secrets {
            args.extend(["--grant", s]);
        }
        let token = daemon.cli_ok(&args).trim().to_owned();
        Agent::of(daemon, name, token)
    }

    /// The same agent on another daemon sharing the database.
    pub fn of(daemon: &Daemon, name: &str, token: String) -> Agent {
        let status = daemon.status_json();
        Agent {
            proxy: format!(
                "http://{name}:{token}@{}",
                status["proxy_addr"].as_str().expect("proxy_addr")
            ),
            ca: status["ca_cert"].as_str().expect("ca_cert").to_owned(),
            token,
        }
    }

    /// curl through the proxy; `-w` appends the status code.
    pub fn curl(&self, args: &[&str]) -> Output {
        run(&mut self.curl_command(args), None, CURL_TIMEOUT)
    }

    pub fn curl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert", &self.ca, "-x", &self.proxy])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        cmd
    }
}

/// curl's output as (status, body).
pub fn split(out: &Output) -> (u16, String) {
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
