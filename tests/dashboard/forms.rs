//! The forms: CSRF tokens are needed, and bad input re-renders the form.

use std::process::Command;

use crate::harness::*;
use crate::support;
use crate::support::{Daemon, run};

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

    // An MCP rule (added by the CLI) shows its condition, and an edit on
    // the page, which has no body fields, keeps it.
    let added = daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        "mcp.test",
        "--block",
        "--mcp-tool",
        "delete_*",
        "--json",
    ]);
    let mcp_id = serde_json::from_str::<serde_json::Value>(&added).expect("JSON")["id"]
        .as_i64()
        .expect("an id");
    let page = web.get("/rules").body;
    assert!(page.contains("mcp tools/call tool=delete_*"), "{page}");
    let saved = web.post_form(
        &format!("/rules/{mcp_id}/edit"),
        &[("csrf", &csrf), ("host", "mcp2.test"), ("action", "block")],
    );
    assert_eq!(saved.code, 303, "{saved:?}");
    let rules: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["rule", "list", "--json"])).expect("JSON");
    let edited = rules
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == mcp_id))
        .expect("the MCP rule");
    assert_eq!(edited["host"], "mcp2.test");
    assert_eq!(edited["body"]["mcp_tool"], "delete_*", "{edited}");
}

/// The Rules page's default form and its Allow action: the same service
/// call as `airlock default` and `airlock rule add --allow`.
#[test]
fn the_rules_page_sets_the_default_and_adds_allow_rules() {
    let daemon = Daemon::start();
    set_password(&daemon, PASSWORD);
    daemon.cli_ok(&["agent", "add", "bot"]);
    let web = Web::of(&daemon);
    let csrf = web.login_ok(PASSWORD);
    let cli_json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&daemon.cli_ok(args)).expect("JSON")
    };
    let defaults = || cli_json(&["default", "--json"]);

    let set = web.post_form(
        "/rules/default",
        &[("csrf", &csrf), ("agent", ""), ("action", "deny")],
    );
    assert_eq!(set.code, 303, "{set:?}");
    // The checkbox unticked: grants no longer count.
    assert_eq!(defaults()["global"], "deny");
    assert_eq!(defaults()["grants_allow"], false);
    let page = web.get("/rules").body;
    assert!(page.contains("The global default is now deny."), "{page}");
    assert!(page.contains("only allow rules let requests out"), "{page}");
    // "Test a request" says what the gateway would do under it.
    let probe = web.post_form(
        "/rules/test",
        &[
            ("csrf", &csrf),
            ("agent", "bot"),
            ("method", "GET"),
            ("url", "https://new.test/x"),
        ],
    );
    assert!(
        probe
            .body
            .contains("Denied by default: the global default is deny"),
        "{probe:?}"
    );

    let set = web.post_form(
        "/rules/default",
        &[("csrf", &csrf), ("agent", "bot"), ("action", "allow")],
    );
    assert_eq!(set.code, 303, "{set:?}");
    assert_eq!(defaults()["agents"][0]["agent"], "bot");
    assert!(
        web.get("/rules")
            .body
            .contains("The default of agent bot is now allow.")
    );

    // Bad input: the error as the flash, nothing written.
    let before = defaults();
    for (agent, action, needle) in [
        ("ghost", "deny", "agent ghost does not exist"),
        ("", "maybe", "is not allow or deny"),
        ("", "inherit", "inherit is for an agent"),
    ] {
        let bad = web.post_form(
            "/rules/default",
            &[("csrf", &csrf), ("agent", agent), ("action", action)],
        );
        assert_eq!(bad.code, 303, "{bad:?}");
        let page = web.get("/rules").body;
        assert!(page.contains(needle), "{needle}: {page}");
        assert_eq!(defaults(), before);
    }

    let added = web.post_form(
        "/rules",
        &[
            ("csrf", &csrf),
            ("host", "allowed.test"),
            ("action", "allow"),
        ],
    );
    assert_eq!(added.code, 303, "{added:?}");
    let rules = cli_json(&["rule", "list", "--json"]);
    assert_eq!(rules[0]["action"], "allow");
    assert_eq!(rules[0]["host"], "allowed.test");
}

/// The add form's OAuth2 kind: a provider preset (or the two URLs) and a
/// client id; the secret waits for Connect, whose button the page shows.
#[test]
fn the_secrets_form_adds_an_oauth2_secret_to_connect() {
    let daemon = Daemon::start();
    set_password(&daemon, PASSWORD);
    let web = Web::of(&daemon);
    let csrf = web.login_ok(PASSWORD);
    let client_secret = format!("cs-form-{}", support::random_hex(12));
    support::evidence::note_secret(&client_secret);
    let add = |extra: &[(&str, &str)]| {
        let mut f = vec![
            ("csrf", csrf.as_str()),
            ("name", "gmail"),
            ("host", "gmail.googleapis.com"),
            ("kind", "oauth2"),
            ("value", client_secret.as_str()),
        ];
        f.extend_from_slice(extra);
        web.post_form("/secrets", &f)
    };
    // No client id, no provider, an unknown provider: the field says so.
    let missing = add(&[("preset", "google")]);
    assert_eq!(missing.code, 400, "{missing:?}");
    assert!(missing.body.contains("the OAuth client"), "{missing:?}");
    let no_url = add(&[("client_id", "c1")]);
    assert!(no_url.body.contains("authorization URL"), "{no_url:?}");
    let http = add(&[
        ("client_id", "c1"),
        ("authorize_url", "http://idp.example/auth"),
        ("token_url", "https://idp.example/token"),
    ]);
    assert!(http.body.contains("https://"), "{http:?}");
    assert!(
        !http.body.contains(&client_secret),
        "the value is never sent back"
    );
    assert_eq!(daemon.db().psql("SELECT count(*) FROM secrets"), "0");

    let ok = add(&[
        ("preset", "google"),
        ("client_id", "1234.apps.googleusercontent.com"),
        ("scopes", "https://www.googleapis.com/auth/gmail.readonly"),
    ]);
    assert_eq!(ok.code, 303, "{ok:?}");
    let page = web.get("/secrets");
    assert!(page.body.contains("Press Connect"), "{}", page.body);
    assert!(
        page.body.contains(r#"id="connect-gmail""#),
        "the Connect button"
    );
    assert!(page.body.contains(r#"data-status="needs_reconnection""#));
    assert!(
        page.body.contains("/oauth2/callback"),
        "the redirect URI to register"
    );
    let list: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["secret", "list", "--json"])).expect("JSON");
    let grant = &list[0]["injection"];
    assert_eq!(
        grant["authorize_url"],
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert_eq!(
        grant["authorize_params"]["access_type"], "offline",
        "{grant}"
    );
    assert_eq!(grant["grant"], "refresh_token");
    assert!(
        list[0]["oauth2"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not connected yet")),
        "{list}"
    );
}

/// Behind a TLS reverse proxy, the redirect URI a provider is given (and
/// the Secrets page tells the operator to register) is the public origin,
/// not the listener's loopback address; a public URL the dashboard cannot
/// honour stops `airlock serve` with what to give instead.
#[test]
fn connect_uses_the_dashboards_public_url_behind_a_reverse_proxy() {
    const PUBLIC: &str = "https://airlock.example.test";
    let daemon = Daemon::builder()
        .env("AIRLOCK_DASHBOARD_PUBLIC_URL", format!("{PUBLIC}/"))
        .start();
    set_password(&daemon, PASSWORD);
    let client_secret = format!("cs-public-{}", support::random_hex(12));
    support::evidence::note_secret(&client_secret);
    let out = daemon.cli_stdin(
        &[
            "secret",
            "add",
            "gmail",
            "--host",
            "gmail.googleapis.com",
            "--preset",
            "google",
            "--client-id",
            "1234.apps.googleusercontent.com",
            "--scope",
            "https://www.googleapis.com/auth/gmail.readonly",
            "--connect",
        ],
        format!("{client_secret}\n"),
    );
    assert!(out.success(), "{out:#?}");
    let web = Web::of(&daemon);
    let csrf = web.login_ok(PASSWORD);
    let callback = format!("{PUBLIC}/oauth2/callback");
    let page = web.get("/secrets");
    assert!(
        page.body
            .contains(&format!(r#"<code id="redirect-uri">{callback}</code>"#)),
        "{}",
        page.body
    );
    let go = web.post_form("/secrets/gmail/connect", &[("csrf", csrf.as_str())]);
    assert_eq!(go.code, 200, "{go:?}");
    let to = go
        .body
        .split(r#"id="to-provider""#)
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .expect("the link to the provider");
    let url = url::Url::parse(
        &to[..to.find('"').expect("end of href")]
            .replace("&#38;", "&")
            .replace("&amp;", "&"),
    )
    .expect("the provider URL");
    assert_eq!(url.host_str(), Some("accounts.google.com"));
    let redirect = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(redirect.as_deref(), Some(callback.as_str()), "{}", go.body);
    assert!(!go.body.contains(&client_secret));

    for (bad, says) in [
        ("https://airlock.example.test/airlock", "origin only"),
        ("http://airlock.example.test", "must start with https://"),
        (
            "https://admin:pw-in-url@airlock.example.test",
            "origin only",
        ),
    ] {
        let data = support::daemon::temp_data_dir();
        let out = support::daemon::serve_expect_exit(
            data.path(),
            &[("AIRLOCK_DASHBOARD_PUBLIC_URL", bad)],
        );
        assert_ne!(out.code, 0, "{bad}: {out:?}");
        out.fails_with(&[says]);
        assert!(!out.stderr.contains("pw-in-url"), "{out:?}");
    }
}
