//! Audit paths render as text and export.

use std::time::Duration;

use crate::harness::*;
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::{run, wait_until};

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
