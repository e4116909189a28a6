//! What the dashboard tests share: a client of the dashboard's pages and
//! API ([`Web`]), the dashboard's credentials, and a daemon with an
//! upstream and its explicit proxy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::upstream::Upstream;
use crate::support::{Daemon, run};

pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots")
}

/// The dashboard of one daemon, spoken to with curl and a cookie jar.
///
/// A session's pages live under its path key (`/s/KEY/agents`); once
/// logged in, [`Web::get`] and [`Web::post_form`] put `/agents` there, as
/// the browser's `<base>` does. Login, static files and the API keep
/// their own paths.
pub(crate) struct Web {
    pub(crate) base: String,
    pub(crate) jar: tempfile::TempDir,
    /// `/s/KEY` of the last session this jar was given (kept after logout,
    /// so the old address can be shown to be dead).
    pub(crate) home: std::sync::Mutex<String>,
}

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) code: u16,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.code, self.body))
    }
}

impl Web {
    pub(crate) fn of(daemon: &Daemon) -> Web {
        let addr = daemon.status_json()["dashboard_addr"]
            .as_str()
            .expect("status reports dashboard_addr")
            .to_owned();
        Web {
            base: format!("http://{addr}"),
            jar: tempfile::tempdir().expect("cookie jar dir"),
            home: Default::default(),
        }
    }

    /// The address of `path`: under the session's path key for pages.
    pub(crate) fn url(&self, path: &str) -> String {
        let own = ["/login", "/static/", "/api/", "/s/"];
        if own.iter().any(|p| path.starts_with(p)) {
            format!("{}{path}", self.base)
        } else {
            format!("{}{}{path}", self.base, self.home())
        }
    }

    pub(crate) fn home(&self) -> String {
        self.home.lock().expect("home").clone()
    }

    /// Learns the session's path key from the jar: the session cookie's
    /// `Path` is `/s/KEY/`.
    pub(crate) fn learn_home(&self) {
        let jar = std::fs::read_to_string(self.jar.path().join("cookies")).unwrap_or_default();
        let path = jar.lines().find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 7 && f[5] == "airlock_session" && !f[6].is_empty()).then(|| f[2])
        });
        if let Some(p) = path {
            *self.home.lock().expect("home") = p.trim_end_matches('/').to_owned();
        }
    }

    /// curl with this client's cookies; never follows redirects.
    pub(crate) fn curl(&self, args: &[&str]) -> Answer {
        let jar = self.jar.path().join("cookies");
        let jar = jar.to_str().expect("utf-8 path");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-b", jar, "-c", jar, "-w", "\n%{http_code}"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        let out = run(&mut cmd, None, HTTP_TIMEOUT);
        self.learn_home();
        let (body, code) = out
            .stdout
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("curl {args:?}: {out:#?}"));
        Answer {
            code: code.trim().parse().unwrap_or(0),
            body: body.to_owned(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Answer {
        self.curl(&[&self.url(path)])
    }

    /// A form POST with these fields (URL-encoded by curl).
    pub(crate) fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut args = vec![];
        let encoded: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for f in &encoded {
            args.push("--data-urlencode");
            args.push(f.as_str());
        }
        let url = self.url(path);
        args.push(&url);
        self.curl(&args)
    }

    /// An API call with a bearer token (or none).
    pub(crate) fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["-X", method, "-H", "Content-Type: application/json"];
        if let Some(a) = &auth {
            args.extend(["-H", a.as_str()]);
        }
        if let Some(b) = body {
            args.extend(["--data-binary", b]);
        }
        args.push(&url);
        Web {
            base: self.base.clone(),
            jar: tempfile::tempdir().expect("jar"),
            home: Default::default(),
        }
        .curl(&args)
    }

    /// The value of the first hidden `csrf` field in a page.
    pub(crate) fn csrf_in(html: &str) -> String {
        let start = html
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in: {html}"))
            + "name=\"csrf\" value=\"".len();
        let end = html[start..].find('"').expect("closing quote") + start;
        html[start..end].to_owned()
    }

    /// Logs in; returns the session's CSRF token.
    pub(crate) fn login(&self, password: &str) -> Answer {
        let form = self.get("/login");
        assert_eq!(form.code, 200, "{form:?}");
        let csrf = Web::csrf_in(&form.body);
        self.post_form("/login", &[("csrf", &csrf), ("password", password)])
    }

    pub(crate) fn login_ok(&self, password: &str) -> String {
        let answer = self.login(password);
        assert_eq!(answer.code, 303, "login: {answer:?}");
        let home = self.get("/");
        assert_eq!(home.code, 200, "{home:?}");
        Web::csrf_in(&home.body)
    }
}

/// The password the daemon generated at first start, from its 0600 file
/// (the log only names the file).
pub(crate) fn first_password(daemon: &Daemon) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = daemon.data_dir().join("dashboard-password");
    let log = daemon.log();
    assert!(
        log.contains(&format!("it is in {}", file.display())),
        "the log names the password file: {log}"
    );
    let mode = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{} is root only", file.display());
    let password = std::fs::read_to_string(&file)
        .expect("the password file")
        .trim_end()
        .to_owned();
    assert!(password.len() >= 20, "a generated password: {password:?}");
    assert!(!log.contains(&password), "the log holds no password: {log}");
    password
}

pub(crate) fn set_password(daemon: &Daemon, password: &str) {
    let out = daemon.cli_stdin(&["admin", "set-password"], password);
    assert!(out.success(), "{out:#?}");
}

pub(crate) fn api_token(daemon: &Daemon, name: &str) -> String {
    daemon
        .cli_ok(&["admin", "token", "create", name])
        .trim()
        .to_owned()
}

/// A daemon that trusts the test upstream and may reach loopback.
pub(crate) fn daemon_with_upstream(up: &Upstream) -> Daemon {
    Daemon::builder()
        .env(
            "AIRLOCK_UPSTREAM_CA",
            up.ca_pem_path().display().to_string(),
        )
        .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8")
        .env("AIRLOCK_RESOLVE", "api.test.local=127.0.0.1")
        .start()
}

/// curl through the explicit proxy as `agent`.
pub(crate) fn proxy_curl(daemon: &Daemon, agent: &str, token: &str) -> Command {
    let status = daemon.status_json();
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-w",
        "\n%{http_code}",
        "--cacert",
        status["ca_cert"].as_str().expect("ca_cert"),
        "-x",
        &format!(
            "http://{agent}:{token}@{}",
            status["proxy_addr"].as_str().expect("proxy")
        ),
    ])
    .env_clear()
    .env("PATH", "/usr/bin:/bin");
    cmd
}
