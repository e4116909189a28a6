//! End-to-end tests of the dashboard: the real daemon, its pages and its
//! `/api/v1` over TCP (driven with curl), and a real browser (headless
//! Chromium through chromedriver) doing what an operator does.
//!
//! Screenshots of every page go to `target/dashboard-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;
use support::browser::{self, Browser};
use support::upstream::{Upstream, UpstreamOpts};
use support::{Daemon, run, wait_until};

const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots")
}

/// The dashboard of one daemon, spoken to with curl and a cookie jar.
///
/// A session's pages live under its path key (`/s/KEY/agents`); once
/// logged in, [`Web::get`] and [`Web::post_form`] put `/agents` there, as
/// the browser's `<base>` does. Login, static files and the API keep
/// their own paths.
struct Web {
    base: String,
    jar: tempfile::TempDir,
    /// `/s/KEY` of the last session this jar was given (kept after logout,
    /// so the old address can be shown to be dead).
    home: std::sync::Mutex<String>,
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    code: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.code, self.body))
    }
}

impl Web {
    fn of(daemon: &Daemon) -> Web {
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
    fn url(&self, path: &str) -> String {
        let own = ["/login", "/static/", "/api/", "/s/"];
        if own.iter().any(|p| path.starts_with(p)) {
            format!("{}{path}", self.base)
        } else {
            format!("{}{}{path}", self.base, self.home())
        }
    }

    fn home(&self) -> String {
        self.home.lock().expect("home").clone()
    }

    /// Learns the session's path key from the jar: the session cookie's
    /// `Path` is `/s/KEY/`.
    fn learn_home(&self) {
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
    fn curl(&self, args: &[&str]) -> Answer {
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

    fn get(&self, path: &str) -> Answer {
        self.curl(&[&self.url(path)])
    }

    /// A form POST with these fields (URL-encoded by curl).
    fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
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
    fn api(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Answer {
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
    fn csrf_in(html: &str) -> String {
        let start = html
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in: {html}"))
            + "name=\"csrf\" value=\"".len();
        let end = html[start..].find('"').expect("closing quote") + start;
        html[start..end].to_owned()
    }

    /// Logs in; returns the session's CSRF token.
    fn login(&self, password: &str) -> Answer {
        let form = self.get("/login");
        assert_eq!(form.code, 200, "{form:?}");
        let csrf = Web::csrf_in(&form.body);
        self.post_form("/login", &[("csrf", &csrf), ("password", password)])
    }

    fn login_ok(&self, password: &str) -> String {
        let answer = self.login(password);
        assert_eq!(answer.code, 303, "login: {answer:?}");
        let home = self.get("/");
        assert_eq!(home.code, 200, "{home:?}");
        Web::csrf_in(&home.body)
    }
}

/// The password the daemon generated at first start, from its 0600 file
/// (the log only names the file).
fn first_password(daemon: &Daemon) -> String {
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

fn set_password(daemon: &Daemon, password: &str) {
    let out = daemon.cli_stdin(&["admin", "set-password"], password);
    assert!(out.success(), "{out:#?}");
}

fn api_token(daemon: &Daemon, name: &str) -> String {
    daemon
        .cli_ok(&["admin", "token", "create", name])
        .trim()
        .to_owned()
}

#[test]
fn first_start_password_login_and_rate_limit() {
    let daemon = Daemon::start();
    let web = Web::of(&daemon);
    assert!(
        daemon
            .cli_ok(&["status"])
            .contains("dashboard   http://127.0.0.1:"),
        "status names the dashboard"
    );
    // Pages need a session.
    let home = web.get("/");
    assert_eq!(home.code, 303, "{home:?}");
    // The generated password is in its file (0600, never in the log),
    // and works; `airlock status` says where it is.
    let generated = first_password(&daemon);
    web.login_ok(&generated);
    assert_eq!(
        daemon.log().matches("generated the admin password").count(),
        1
    );
    let status = daemon.cli_ok(&["status"]);
    assert!(
        status.contains("first-start dashboard password is in")
            && status.contains("dashboard-password"),
        "{status}"
    );
    // set-password replaces it; the old one stops working.
    daemon
        .cli_stdin(&["admin", "set-password"], "short")
        .fails_with(&["10"]);
    set_password(&daemon, PASSWORD);
    assert!(
        !daemon.data_dir().join("dashboard-password").exists(),
        "set-password removes the first-start password's file"
    );
    assert!(!daemon.cli_ok(&["status"]).contains("first-start"));
    let other = Web::of(&daemon);
    assert_eq!(other.login(&generated).code, 401);
    other.login_ok(PASSWORD);
    // The login form's CSRF cookie must match its field.
    let fresh = Web::of(&daemon);
    fresh.get("/login");
    let forged = fresh.post_form("/login", &[("csrf", "forged"), ("password", PASSWORD)]);
    assert_eq!(forged.code, 403, "{forged:?}");
    // Five failures a minute per address, then 429 even for the right one.
    // (One failure from 127.0.0.1 is already counted: the old password.)
    let limited = Web::of(&daemon);
    for _ in 0..3 {
        assert_eq!(limited.login("wrong password").code, 401);
    }
    let last = limited.login("wrong password");
    assert_eq!(last.code, 401);
    let blocked = limited.login(PASSWORD);
    assert_eq!(blocked.code, 429, "{blocked:?}");
    assert!(blocked.body.contains("Too many failed logins"));
    // Logging out ends the session.
    let csrf = Web::csrf_in(&web.get("/").body);
    assert_eq!(web.post_form("/logout", &[("csrf", &csrf)]).code, 303);
    assert_eq!(web.get("/").code, 303);
    assert!(
        !daemon.log().contains(PASSWORD),
        "the password is never logged"
    );
}

#[test]
fn non_loopback_needs_insecure_public() {
    let dir = support::temp_data_dir();
    let out = support::serve_expect_exit(dir.path(), &[("AIRLOCK_DASHBOARD_LISTEN", "0.0.0.0:0")]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("--insecure-public"), "{out:#?}");
}

#[test]
fn api_over_tcp_needs_a_token_and_serves_every_endpoint() {
    let daemon = Daemon::start();
    let web = Web::of(&daemon);
    let token = api_token(&daemon, "ci");
    let t = Some(token.as_str());
    let value = format!("sk-api-{}", support::random_hex(12));

    // Authentication.
    for (who, tok) in [("no token", None), ("wrong token", Some("alk_nope"))] {
        let a = web.api("GET", "/api/v1/secrets", None, tok);
        assert_eq!(a.code, 401, "{who}: {a:?}");
        assert!(
            a.json()["error"].as_str().unwrap().contains("token"),
            "{a:?}"
        );
    }
    // Credential routes exist only on the admin socket.
    assert_eq!(web.api("GET", "/api/v1/admin/tokens", None, t).code, 404);
    assert_eq!(
        web.api(
            "PUT",
            "/api/v1/admin/password",
            Some(r#"{"password":"0123456789ab"}"#),
            t
        )
        .code,
        404
    );

    // Every endpoint, in the order an operator would use them.
    let status = web.api("GET", "/api/v1/status", None, t);
    assert_eq!(status.code, 200);
    assert!(status.json()["dashboard_addr"].is_string());
    assert_eq!(web.api("GET", "/api/v1/overview", None, t).code, 200);
    let secret = format!(
        r#"{{"name":"up","host":"api.test.local","path":"/v1/**","injection":{{"kind":"header","name":"authorization","template":"Bearer {{value}}"}},"value":"{value}"}}"#
    );
    let added = web.api("POST", "/api/v1/secrets", Some(&secret), t);
    assert_eq!(added.code, 201, "{added:?}");
    let dup = web.api("POST", "/api/v1/secrets", Some(&secret), t);
    assert_eq!(dup.code, 409, "{dup:?}");
    let bad = secret.replace("api.test.local", "bad host!");
    let bad = web.api("POST", "/api/v1/secrets", Some(&bad), t);
    assert_eq!(bad.code, 400, "{bad:?}");
    assert_eq!(bad.json()["field"], "host");
    let rotated = web.api(
        "POST",
        "/api/v1/secrets/up/rotate",
        Some(&format!(r#"{{"value":"{value}-2"}}"#)),
        t,
    );
    assert_eq!(rotated.code, 200, "{rotated:?}");
    assert_eq!(rotated.json()["version"], 2);
    assert_eq!(web.api("GET", "/api/v1/secrets", None, t).code, 200);

    let agent = web.api("POST", "/api/v1/agents", Some(r#"{"name":"bot"}"#), t);
    assert_eq!(agent.code, 201, "{agent:?}");
    assert!(agent.json()["token"].as_str().unwrap().starts_with("alk_"));
    let bad = web.api("POST", "/api/v1/agents", Some(r#"{"name":"Bad Name"}"#), t);
    assert_eq!(
        (bad.code, bad.json()["field"].clone()),
        (400, "name".into())
    );
    assert_eq!(
        web.api("PUT", "/api/v1/agents/bot/grants/up", None, t).code,
        200
    );
    assert_eq!(web.api("GET", "/api/v1/agents", None, t).code, 200);

    let rule = |body: &str| web.api("POST", "/api/v1/rules", Some(body), t);
    let first = rule(r#"{"host":"api.test.local","path":"/admin/**","action":"block"}"#);
    assert_eq!(first.code, 201, "{first:?}");
    let second = rule(r#"{"host":"*","method":"POST","action":"approve"}"#);
    assert_eq!(second.code, 201, "{second:?}");
    let bad = rule(r#"{"host":"api.test.local","action":"rate","count":0,"period_secs":1}"#);
    assert_eq!(
        (bad.code, bad.json()["field"].clone()),
        (400, "rate".into())
    );
    let (a, b) = (
        first.json()["id"].as_i64().unwrap(),
        second.json()["id"].as_i64().unwrap(),
    );
    let moved = web.api(
        "POST",
        &format!("/api/v1/rules/{b}/move"),
        Some(r#"{"direction":"up"}"#),
        t,
    );
    assert_eq!(moved.code, 204, "{moved:?}");
    let rules = web.api("GET", "/api/v1/rules", None, t).json();
    assert_eq!(rules[0]["id"].as_i64(), Some(b), "{rules}");
    assert_eq!(rules[1]["id"].as_i64(), Some(a));

    // Editing in place: validated like an add, position kept, audited.
    let edit = |id: i64, body: &str| web.api("PUT", &format!("/api/v1/rules/{id}"), Some(body), t);
    let bad = edit(a, r#"{"host":"bad host!","action":"block"}"#);
    assert_eq!(
        (bad.code, bad.json()["field"].clone()),
        (400, "host".into())
    );
    let bad = edit(
        a,
        r#"{"host":"api.test.local","agent":"nobody","action":"block"}"#,
    );
    assert_eq!(bad.code, 404, "{bad:?}");
    assert_eq!(
        edit(999_999, r#"{"host":"x.test","action":"block"}"#).code,
        404
    );
    assert_eq!(edit(a, "not json").code, 400);
    let edited = edit(
        a,
        r#"{"host":"api.test.local","path":"/v1/**","method":"GET","agent":"bot","action":"rate","count":5,"period_secs":60}"#,
    );
    assert_eq!(edited.code, 200, "{edited:?}");
    let e = edited.json();
    assert_eq!(
        (e["id"].as_i64(), e["path"].as_str()),
        (Some(a), Some("/v1/**"))
    );
    assert_eq!(
        (e["method"].as_str(), e["agent"].as_str()),
        (Some("GET"), Some("bot"))
    );
    assert_eq!(
        (e["action"].as_str(), e["count"].as_i64()),
        (Some("rate"), Some(5))
    );
    let rules = web.api("GET", "/api/v1/rules", None, t).json();
    assert_eq!(
        rules[1]["id"].as_i64(),
        Some(a),
        "the position stays: {rules}"
    );
    let trail = web
        .api("GET", "/api/v1/audit/search?decision=rule.edit", None, t)
        .json();
    assert_eq!(trail["total"], 1, "{trail}");
    let detail = trail["events"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("rule={a}")) && detail.contains("action=rate 5/"),
        "{detail}"
    );
    // Back to what the probes below expect.
    let restored = edit(
        a,
        r#"{"host":"api.test.local","path":"/admin/**","action":"block"}"#,
    );
    assert_eq!(restored.code, 200, "{restored:?}");

    let probe = |body: &str| web.api("POST", "/api/v1/rules/test", Some(body), t);
    let p = probe(r#"{"agent":"bot","method":"GET","url":"https://api.test.local/v1/chat"}"#);
    assert_eq!(p.code, 200, "{p:?}");
    assert_eq!(p.json()["decision"], "allow");
    assert_eq!(p.json()["secrets"], serde_json::json!(["up"]));
    let p = probe(r#"{"agent":"bot","method":"GET","url":"https://api.test.local/admin/x"}"#);
    assert_eq!(p.json()["decision"], "block");
    assert_eq!(p.json()["secrets"], serde_json::json!([]));
    let p = probe(r#"{"agent":"bot","method":"POST","url":"https://api.test.local/v1/x"}"#);
    assert_eq!(p.json()["decision"], "approve");
    let p = probe(r#"{"agent":"bot","method":"GET","url":"not a url"}"#);
    assert_eq!((p.code, p.json()["field"].clone()), (400, "url".into()));

    assert_eq!(web.api("GET", "/api/v1/audit?limit=5", None, t).code, 200);
    let search = web.api(
        "GET",
        "/api/v1/audit/search?decision=rule.add&per_page=1",
        None,
        t,
    );
    assert_eq!(search.code, 200, "{search:?}");
    assert_eq!(search.json()["total"], 2);
    assert_eq!(search.json()["events"].as_array().unwrap().len(), 1);
    let bad = web.api("GET", "/api/v1/audit/search?status=abc", None, t);
    assert_eq!(
        (bad.code, bad.json()["field"].clone()),
        (400, "status".into())
    );
    assert_eq!(
        web.api("GET", "/api/v1/approvals?all=true", None, t).code,
        200
    );
    assert_eq!(
        web.api("POST", "/api/v1/approvals/999/approve", None, t)
            .code,
        404
    );
    assert_eq!(
        web.api("POST", "/api/v1/approvals/x/deny", None, t).code,
        400
    );

    assert_eq!(
        web.api("DELETE", &format!("/api/v1/rules/{a}"), None, t)
            .code,
        204
    );
    assert_eq!(
        web.api("DELETE", "/api/v1/agents/bot/grants/up", None, t)
            .code,
        204
    );
    assert_eq!(web.api("DELETE", "/api/v1/agents/bot", None, t).code, 204);
    assert_eq!(web.api("DELETE", "/api/v1/secrets/up", None, t).code, 204);
    assert_eq!(web.api("DELETE", "/api/v1/secrets/up", None, t).code, 404);
    assert_eq!(web.api("GET", "/api/v1/nope", None, t).code, 404);

    // A removed token stops working at once.
    daemon.cli_ok(&["admin", "token", "rm", "ci"]);
    assert_eq!(web.api("GET", "/api/v1/status", None, t).code, 401);
    assert!(!daemon.log().contains(&value), "the value is never logged");
    assert!(
        !daemon.log().contains(&token),
        "the API token is never logged"
    );
}

#[test]
fn openapi_document_describes_every_route() {
    let daemon = Daemon::start();
    let web = Web::of(&daemon);
    let token = api_token(&daemon, "docs");
    // Behind the same authentication as the rest of /api/v1.
    assert_eq!(
        web.api("GET", airlock::admin::OPENAPI_PATH, None, None)
            .code,
        401
    );
    let doc = web.api("GET", airlock::admin::OPENAPI_PATH, None, Some(&token));
    assert_eq!(doc.code, 200, "{doc:?}");
    let doc = doc.json();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "not OpenAPI 3: {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    // The routes come from the router's own declaration, so a route added
    // there without a #[utoipa::path] fails here.
    let mut expected: Vec<(String, String)> = airlock::admin::API_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.push(("get".into(), airlock::admin::OPENAPI_PATH.into()));
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if let Some(op) = item.get(method) {
                assert!(
                    op["responses"].is_object(),
                    "{method} {path} has no responses"
                );
                documented.push((method.to_owned(), path.clone()));
            }
        }
    }
    expected.sort();
    documented.sort();
    assert_eq!(
        documented, expected,
        "documented operations differ from the routes"
    );
    // Every schema a body refers to is defined.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for piece in text.split("\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "undefined schema {name}");
    }
    // A secret value is write-only in the document too.
    assert_eq!(
        doc["components"]["schemas"]["AddSecret"]["properties"]["value"]["writeOnly"],
        true
    );
}

#[test]
fn forms_need_csrf_and_bad_input_rerenders() {
    let daemon = Daemon::start();
    set_password(&daemon, PASSWORD);
    let web = Web::of(&daemon);
    let csrf = web.login_ok(PASSWORD);
    let value = format!("sk-form-{}", support::random_hex(12));
    let fields = |csrf: &'static str| {
        move |host: &str| -> Vec<(String, String)> {
            let mut f = vec![
                ("name", "typed-name"),
                ("host", host),
                ("kind", "header"),
                ("target", "authorization"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>();
            if !csrf.is_empty() {
                f.push(("csrf".into(), csrf.into()));
            }
            f
        }
    };
    let post = |mut f: Vec<(String, String)>, csrf: Option<&str>| {
        f.push(("value".into(), value.clone()));
        if let Some(c) = csrf {
            f.push(("csrf".into(), c.into()));
        }
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        web.post_form("/secrets", &refs)
    };
    let before = daemon.state();
    // No CSRF token, or a wrong one: 403, nothing changes.
    let missing = post(fields("")("api.test.local"), None);
    assert_eq!(missing.code, 403, "{missing:?}");
    let wrong = post(fields("")("api.test.local"), Some("not-the-token"));
    assert_eq!(wrong.code, 403);
    // The API with a session cookie wants the token in a header.
    let jar = web.jar.path().join("cookies");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-b"])
        .arg(&jar)
        .args([
            "-X",
            "DELETE",
            &format!("{}{}/api/v1/secrets/x", web.base, web.home()),
        ]);
    assert_eq!(run(&mut cmd, None, HTTP_TIMEOUT).stdout, "403");
    assert_eq!(daemon.state(), before);

    // Bad input: the page comes back with the error beside the field and
    // what was typed, except the value.
    let bad = post(fields("")("not a host!"), Some(&csrf));
    assert_eq!(bad.code, 400, "{bad:?}");
    assert!(bad.body.contains("field-error"), "{}", bad.body);
    assert!(bad.body.contains("value=\"typed-name\""));
    assert!(bad.body.contains("value=\"not a host!\""));
    assert!(!bad.body.contains(&value), "the value is never sent back");
    assert_eq!(daemon.state(), before);

    // Escaping: a hostile name is text, never markup.
    let hostile = web.post_form(
        "/agents",
        &[("csrf", &csrf), ("name", "<script>alert(1)</script>")],
    );
    assert_eq!(hostile.code, 400);
    assert!(!hostile.body.contains("<script>alert"), "{}", hostile.body);
    assert!(hostile.body.contains("&#60;script&#62;") || hostile.body.contains("&lt;script&gt;"));

    // Good input: added, and the value is nowhere on the page.
    let good = post(fields("")("api.test.local"), Some(&csrf));
    assert_eq!(good.code, 303, "{good:?}");
    let page = web.get("/secrets");
    assert!(page.body.contains("typed-name") && page.body.contains("added"));
    assert!(!page.body.contains(&value));

    // The approvals page streams its queue (server-sent events) and keeps a
    // plain refresh link for browsers without JavaScript.
    let approvals = web.get("/approvals");
    assert!(
        approvals.body.contains("data-live=\"approvals/events\"")
            && approvals.body.contains("href=\"approvals\""),
        "{}",
        approvals.body
    );
    let events = web.url("/approvals/events");
    let stream = web.curl(&["-N", "--max-time", "2", &events]);
    assert_eq!(stream.code, 200, "{stream:?}");
    assert!(
        stream.body.contains("event: queue") && stream.body.contains("Nothing is waiting"),
        "{stream:?}"
    );
    assert_eq!(Web::of(&daemon).get("/approvals/events").code, 303);

    // A rule edited in place from the rules page.
    let added = web.post_form(
        "/rules",
        &[("csrf", &csrf), ("host", "edit.test"), ("action", "block")],
    );
    assert_eq!(added.code, 303, "{added:?}");
    let rules = web.get("/rules").body;
    let id: String = rules
        .split("rules/")
        .filter_map(|s| s.split_once("/edit").map(|(id, _)| id))
        .find(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .expect("an edit link")
        .to_owned();
    let form = web.get(&format!("/rules/{id}/edit"));
    assert_eq!(form.code, 200, "{form:?}");
    assert!(
        form.body.contains(&format!("Edit rule {id}")) && form.body.contains("value=\"edit.test\"")
    );
    let bad = web.post_form(
        &format!("/rules/{id}/edit"),
        &[
            ("csrf", &csrf),
            ("host", "bad host!"),
            ("path", "/typed/**"),
            ("action", "block"),
        ],
    );
    assert_eq!(bad.code, 400, "{bad:?}");
    assert!(bad.body.contains("field-error") && bad.body.contains("value=\"/typed/**\""));
    assert!(
        bad.body.contains(&format!("action=\"rules/{id}/edit\"")),
        "still the edit form"
    );
    let saved = web.post_form(
        &format!("/rules/{id}/edit"),
        &[
            ("csrf", &csrf),
            ("host", "edit.test"),
            ("path", "/v2/**"),
            ("method", "DELETE"),
            ("action", "rate"),
            ("rate", "10/min"),
        ],
    );
    assert_eq!(saved.code, 303, "{saved:?}");
    let page = web.get("/rules").body;
    assert!(
        page.contains(&format!("Rule {id} saved.")) && page.contains("/v2/**"),
        "{page}"
    );
    assert!(
        page.contains("rate 10/min") && page.contains("DELETE"),
        "{page}"
    );
    assert_eq!(web.get("/rules/999999/edit").code, 404);
}

/// A daemon that trusts the test upstream and may reach loopback.
fn daemon_with_upstream(up: &Upstream) -> Daemon {
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
fn proxy_curl(daemon: &Daemon, agent: &str, token: &str) -> Command {
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

#[test]
fn audit_paths_render_as_text_and_export() {
    let up = Upstream::start(UpstreamOpts::default());
    let daemon = daemon_with_upstream(&up);
    set_password(&daemon, PASSWORD);
    let token = daemon.cli_ok(&["agent", "add", "bot"]).trim().to_owned();
    let mut cmd = proxy_curl(&daemon, "bot", &token);
    cmd.arg(up.url("/echo/v1/items"));
    let out = run(&mut cmd, None, HTTP_TIMEOUT);
    assert!(out.stdout.ends_with("200"), "{out:#?}");
    // The gateway refuses a raw `<` in a request path (400), so a hostile
    // path is put in the trail directly, as a peer gateway could have.
    daemon.db().psql(
        "INSERT INTO audit_events (kind, agent, method, host, path, decision, status) \
         VALUES ('request', 'evil', 'GET', 'x.test', '/<script>alert(1)</script>', 'blocked', 403)",
    );
    let web = Web::of(&daemon);
    web.login_ok(PASSWORD);
    let page = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let p = web.get("/audit");
        p.body.contains("/echo/v1/items").then_some(p)
    })
    .expect("the request shows up in the audit page");
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        page.body
    );
    let filtered = web.get("/audit?host=api.test&decision=allowed&status=200&from=1h");
    assert!(filtered.body.contains("/echo/v1/items") && !filtered.body.contains("x.test"));
    let csv = web.get("/audit/export.csv?agent=bot");
    assert_eq!(csv.code, 200);
    assert!(csv.body.starts_with("id,at,kind,agent"), "{}", csv.body);
    assert!(csv.body.contains("/echo/v1/items"), "{}", csv.body);
    let json = web.get("/audit/export.json?agent=bot");
    let rows: serde_json::Value = serde_json::from_str(&json.body).expect("JSON export");
    // The request and the agent.add change (admin rows name the agent too).
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    let bad = web.get("/audit?status=9999");
    assert_eq!(bad.code, 400);
    assert!(bad.body.contains("100-599"));
}

/// The whole operator flow in a real browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_in_a_real_browser() {
    if !browser::available() {
        panic!(
            "chromium and chromium-driver are not installed: run `cargo xtask setup` \
             (or apt-get install chromium chromium-driver)"
        );
    }
    let up = Upstream::start(UpstreamOpts::default());
    let daemon = tokio::task::block_in_place(|| daemon_with_upstream(&up));
    tokio::task::block_in_place(|| set_password(&daemon, PASSWORD));
    let base = format!(
        "http://{}",
        tokio::task::block_in_place(|| daemon.status_json())["dashboard_addr"]
            .as_str()
            .expect("dashboard_addr")
    );
    let value = format!("sk-browser-{}", support::random_hex(12));
    let shots = screenshot_dir();
    let b = Browser::start().await;
    let c = &b.client;
    let mut pages_seen = Vec::new();

    // Log in.
    c.goto(&format!("{base}/login")).await.expect("login page");
    b.screenshot(&shots, "01-login").await;
    let home = b.sign_in(PASSWORD).await;
    pages_seen.push(c.source().await.expect("html"));
    // From here on, pages are under the session's address (`/s/KEY/`).
    assert!(home.path().starts_with("/s/"), "{home}");
    let base = home.as_str().trim_end_matches('/').to_owned();

    // Add a secret.
    let host = format!("api.test.local:{}", up.port());
    c.goto(&format!("{base}/secrets")).await.expect("secrets");
    let form = c.form(Locator::Id("add-secret")).await.expect("form");
    form.set_by_name("name", "up").await.expect("name");
    form.set_by_name("host", &host).await.expect("host");
    form.set_by_name("value", &value).await.expect("value");
    form.submit_with(Locator::Css("#add-secret button[type=submit]"))
        .await
        .expect("submit");
    c.wait()
        .for_element(Locator::Css(".flash.ok"))
        .await
        .expect("added");
    b.screenshot(&shots, "03-secrets").await;
    pages_seen.push(c.source().await.expect("html"));

    // Add an agent with that secret; its token is shown once.
    c.goto(&format!("{base}/agents")).await.expect("agents");
    c.find(Locator::Id("agent-name"))
        .await
        .expect("name")
        .send_keys("bot")
        .await
        .expect("type");
    c.find(Locator::Css("input[name=grants][value=up]"))
        .await
        .expect("box")
        .click()
        .await
        .expect("tick");
    c.find(Locator::Css("#add-agent button[type=submit]"))
        .await
        .expect("btn")
        .click()
        .await
        .expect("click");
    let token_field = c
        .wait()
        .for_element(Locator::Id("token"))
        .await
        .expect("the token");
    let token = token_field
        .prop("value")
        .await
        .expect("value")
        .expect("a token");
    assert!(token.starts_with("alk_"), "{token}");
    b.screenshot(&shots, "04-agents").await;
    pages_seen.push(c.source().await.expect("html"));

    // A real client through the proxy appears in the audit page.
    let mut cmd = proxy_curl(&daemon, "bot", &token);
    cmd.arg(up.url("/echo/v1/chat"));
    let out = tokio::task::block_in_place(|| run(&mut cmd, None, HTTP_TIMEOUT));
    assert!(out.stdout.ends_with("200"), "{out:#?}");
    assert!(
        out.stdout.contains(&value),
        "the upstream got the real key: {out:#?}"
    );
    let mut found = false;
    for _ in 0..50 {
        c.goto(&format!("{base}/audit")).await.expect("audit");
        if c.source().await.expect("html").contains("/echo/v1/chat") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(found, "the request never appeared in the audit page");
    b.screenshot(&shots, "07-audit").await;
    pages_seen.push(c.source().await.expect("html"));

    // A rule that holds POSTs, and "test this request".
    c.goto(&format!("{base}/rules")).await.expect("rules");
    let form = c.form(Locator::Id("add-rule")).await.expect("form");
    form.set_by_name("host", &host).await.expect("host");
    form.set_by_name("method", "POST").await.expect("method");
    form.set_by_name("action", "approve").await.expect("action");
    form.submit_with(Locator::Css("#add-rule button[type=submit]"))
        .await
        .expect("submit");
    c.wait()
        .for_element(Locator::Css(".flash.ok"))
        .await
        .expect("rule added");
    let test = c.form(Locator::Id("test-form")).await.expect("test form");
    test.set_by_name("method", "POST").await.expect("method");
    test.set_by_name("url", &up.url("/echo/act"))
        .await
        .expect("url");
    test.submit_with(Locator::Css("#test-form button[type=submit]"))
        .await
        .expect("submit");
    let result = c
        .wait()
        .for_element(Locator::Id("test-result"))
        .await
        .expect("result");
    let text = result.text().await.expect("text");
    assert!(text.contains("approve") && text.contains("up"), "{text}");
    b.screenshot(&shots, "05-rules").await;
    pages_seen.push(c.source().await.expect("html"));

    // A held request waits for a click in the approvals page.
    c.goto(&format!("{base}/approvals"))
        .await
        .expect("approvals");
    // The queue is pushed by server-sent events, not polled: the held
    // request below must appear without any navigation.
    let queue = c.find(Locator::Id("queue")).await.expect("the queue");
    assert_eq!(
        queue.attr("data-live").await.expect("attr").as_deref(),
        Some("approvals/events")
    );
    let mut held = proxy_curl(&daemon, "bot", &token);
    held.args(["-X", "POST", "-d", "{}", &up.url("/echo/act")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = held.spawn().expect("curl");
    let approve = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#queue button.approve"))
        .await
        .expect("the held request appears live");
    assert!(up.requests_to("/echo/act").is_empty(), "held, not sent");
    b.screenshot(&shots, "06-approvals").await;
    pages_seen.push(c.source().await.expect("html"));
    approve.click().await.expect("approve");
    let out = tokio::task::block_in_place(|| child.wait_with_output()).expect("curl finished");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with("200"),
        "curl after approval: {stdout}"
    );
    c.wait()
        .for_element(Locator::Css(".flash.ok"))
        .await
        .expect("decided");
    pages_seen.push(c.source().await.expect("html"));

    // The overview, now with traffic.
    c.goto(&format!("{base}/")).await.expect("overview");
    b.screenshot(&shots, "02-overview").await;
    pages_seen.push(c.source().await.expect("html"));

    for (i, html) in pages_seen.iter().enumerate() {
        assert!(!html.contains(&value), "page {i} contains the secret value");
    }
    let _ = b.client.clone().close().await;
}

/// A fake OpenID Connect issuer on loopback (plain HTTP: the crate accepts
/// an `http://` issuer, and TLS is not what this test is about). It signs
/// ID tokens with an Ed25519 key made by rcgen, for the e-mail the test
/// chooses, with the nonce of the last `/authorize`.
mod fake_issuer {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{Form, Query, State};
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    use openidconnect::core::{
        CoreEdDsaPrivateSigningKey, CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    };
    use openidconnect::{
        Audience, EmptyAdditionalClaims, EndUserEmail, IssuerUrl, JsonWebKeyId, Nonce,
        PrivateSigningKey, StandardClaims, SubjectIdentifier,
    };

    pub struct Issuer {
        pub url: String,
        state: Arc<Mutex<Shared>>,
        _runtime: tokio::runtime::Runtime,
    }

    struct Shared {
        url: String,
        key: CoreEdDsaPrivateSigningKey,
        nonce: Option<String>,
        email: String,
        tamper: bool,
    }

    impl Issuer {
        pub fn start() -> Issuer {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind the issuer");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .expect("Ed25519 key")
                .serialize_pem();
            let key = CoreEdDsaPrivateSigningKey::from_ed25519_pem(
                &pem,
                Some(JsonWebKeyId::new("k1".into())),
            )
            .expect("key");
            let state = Arc::new(Mutex::new(Shared {
                url: url.clone(),
                key,
                nonce: None,
                email: String::new(),
                tamper: false,
            }));
            let app = Router::new()
                .route("/.well-known/openid-configuration", get(discovery))
                .route("/jwks", get(jwks))
                .route("/authorize", get(authorize))
                .route("/token", post(token))
                .with_state(state.clone());
            runtime.spawn(async move { axum::serve(listener, app).await });
            Issuer {
                url,
                state,
                _runtime: runtime,
            }
        }

        /// The next ID token is for `email`, its signature broken if `tamper`.
        pub fn next_login(&self, email: &str, tamper: bool) {
            let mut s = self.state.lock().expect("lock");
            s.email = email.to_owned();
            s.tamper = tamper;
        }
    }

    type St = State<Arc<Mutex<Shared>>>;

    async fn discovery(State(s): St) -> Response {
        let url = s.lock().expect("lock").url.clone();
        axum::Json(serde_json::json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        }))
        .into_response()
    }

    async fn jwks(State(s): St) -> Response {
        let key = s.lock().expect("lock").key.as_verification_key();
        axum::Json(serde_json::json!({ "keys": [key] })).into_response()
    }

    /// Logs the user in at once and sends the browser back.
    async fn authorize(State(s): St, Query(q): Query<HashMap<String, String>>) -> Response {
        assert_eq!(
            q.get("code_challenge_method").map(String::as_str),
            Some("S256")
        );
        s.lock().expect("lock").nonce = q.get("nonce").cloned();
        let back = format!(
            "{}?code=the-code&state={}",
            q["redirect_uri"],
            q.get("state").map(String::as_str).unwrap_or_default()
        );
        Redirect::to(&back).into_response()
    }

    async fn token(State(s): St, Form(f): Form<HashMap<String, String>>) -> Response {
        assert_eq!(f.get("code").map(String::as_str), Some("the-code"));
        assert!(f.contains_key("code_verifier"), "PKCE: {f:?}");
        let s = s.lock().expect("lock");
        let now = chrono::Utc::now();
        let claims = CoreIdTokenClaims::new(
            IssuerUrl::new(s.url.clone()).expect("issuer"),
            vec![Audience::new("airlock".into())],
            now + chrono::Duration::minutes(5),
            now,
            StandardClaims::new(SubjectIdentifier::new("user-1".into()))
                .set_email(Some(EndUserEmail::new(s.email.clone())))
                .set_email_verified(Some(true)),
            EmptyAdditionalClaims {},
        )
        .set_nonce(s.nonce.clone().map(Nonce::new));
        let token = CoreIdToken::new(claims, &s.key, CoreJwsSigningAlgorithm::EdDsa, None, None)
            .expect("sign");
        let mut jwt = serde_json::to_value(&token)
            .expect("jwt")
            .as_str()
            .expect("compact JWT")
            .to_owned();
        if s.tamper {
            // Flip the signature's first character: still base64url, no
            // longer the signature.
            let at = jwt.rfind('.').expect("three parts") + 1;
            let c = if jwt[at..].starts_with('A') { "B" } else { "A" };
            jwt.replace_range(at..at + 1, c);
        }
        axum::Json(serde_json::json!({
            "access_token": "at",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": jwt,
        }))
        .into_response()
    }
}

#[test]
fn openid_connect_login_for_allowed_emails_only() {
    let issuer = fake_issuer::Issuer::start();
    let daemon = Daemon::builder()
        .env("AIRLOCK_OIDC_ISSUER", issuer.url.clone())
        .env("AIRLOCK_OIDC_CLIENT_ID", "airlock")
        .env("AIRLOCK_OIDC_CLIENT_SECRET", "client-secret-value")
        .env("AIRLOCK_OIDC_ALLOWED_EMAILS", "alice@example.com")
        .env("AIRLOCK_OIDC_ALLOWED_DOMAIN", "corp.example")
        .start();
    let host = issuer.url.trim_start_matches("http://").to_owned();
    let login_via_issuer = |email: &str, tamper: bool| {
        issuer.next_login(email, tamper);
        let web = Web::of(&daemon);
        let form = web.get("/login");
        assert!(
            form.body.contains(&format!("Sign in with {host}")),
            "{form:?}"
        );
        // Dashboard -> issuer -> callback, cookies kept across the hops.
        let url = format!("{}/login/oidc", web.base);
        let end = web.curl(&["-L", &url]);
        (web, end)
    };

    // An allowed address (listed) and one of the allowed domain get in.
    for email in ["alice@example.com", "bob@corp.example"] {
        let (web, end) = login_via_issuer(email, false);
        assert_eq!(end.code, 200, "{email}: {end:?}");
        let home = web.get("/");
        assert_eq!(home.code, 200, "{email} is logged in: {home:?}");
    }

    // Anyone else is refused, with a clear page and no session.
    let (web, end) = login_via_issuer("eve@example.org", false);
    assert_eq!(end.code, 403, "{end:?}");
    assert!(
        end.body.contains("eve@example.org is not allowed"),
        "{end:?}"
    );
    assert_eq!(web.get("/").code, 303, "no session for eve");

    // A token whose signature does not verify is refused.
    let (web, end) = login_via_issuer("alice@example.com", true);
    assert_eq!(end.code, 403, "{end:?}");
    assert!(end.body.contains("ID token is invalid"), "{end:?}");
    assert_eq!(web.get("/").code, 303, "no session for a forged token");

    // A callback with a state this browser did not start is refused.
    let stray = Web::of(&daemon).get("/login/oidc/callback?code=the-code&state=forged");
    assert_eq!(stray.code, 403, "{stray:?}");

    // Every attempt is in the audit trail; the secret is never logged.
    let audit = daemon.db().psql(
        "SELECT decision || ' ' || coalesce(detail, '') FROM audit_events \
         WHERE kind = 'admin' AND decision LIKE 'dashboard.login%' ORDER BY id",
    );
    assert_eq!(audit.matches("dashboard.login_oidc").count(), 2, "{audit}");
    assert!(
        audit.contains("dashboard.login_refused eve@example.org is not allowed"),
        "{audit}"
    );
    assert!(audit.contains("dashboard.login_failed"), "{audit}");
    assert!(!daemon.log().contains("client-secret-value"));
}
