//! `/api/v1` over TCP: a token is needed, and every endpoint answers.

use crate::harness::*;
use crate::support;
use crate::support::Daemon;

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
