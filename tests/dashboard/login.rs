//! The first-start password, logging in, its rate limit, and the
//! loopback-only default.

use crate::harness::*;
use crate::support;
use crate::support::Daemon;

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
