//! Secrets never reach the logs, the audit trail or the database.

use crate::support::gw::Gw;

#[test]
fn secrets_never_reach_logs_audit_or_database() {
    let gw = Gw::start();
    for _ in 0..3 {
        assert_eq!(
            Gw::code(&gw.curl(&[
                "-H",
                "Authorization: Bearer airlock:up",
                &gw.up.url("/echo?token=1")
            ])),
            200
        );
    }
    let _ = gw.curl(&[
        "-H",
        "X-Key: airlock:up",
        &gw.up.url("/echo").replace("api.test.local", "localhost"),
    ]);
    gw.requests(4);
    let dump = gw.daemon.db().pg_dump();
    for (what, text) in [
        ("daemon log", gw.daemon.log()),
        ("postgres log", gw.daemon.postgres_log()),
        ("pg_dump", dump),
        ("cli output", gw.daemon.transcript()),
    ] {
        assert!(
            !text.contains(&gw.value),
            "the secret value leaked into the {what}"
        );
    }
}
