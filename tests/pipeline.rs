//! The request path in process: each phase's outcomes through the real
//! explicit proxy, TLS termination and pipeline, against a real rustls
//! origin on `127.0.0.1:0`, with an in-memory configuration, approvals and
//! audit sink (support/inproc.rs). No root, no PostgreSQL, milliseconds a
//! test; the end-to-end suites drive the same paths through the binary.
//!
//! Each test asserts what the agent got (status, the refusal's `error`)
//! and the audit record's decision.

mod support;

use std::time::Duration;

use airlock::policy::approvals::ApprovalOutcome;
use airlock::policy::{Rate, RuleAction};
use support::inproc::{InProc, RuleSpec};

/// Approvals in these tests are decided at once, or left to time out.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(10);

fn rules() -> Vec<RuleSpec> {
    vec![
        RuleSpec {
            path: "/admin/**",
            action: RuleAction::Block,
        },
        RuleSpec {
            path: "/echo/pay/**",
            action: RuleAction::Approve,
        },
        RuleSpec {
            path: "/echo/limited/**",
            action: RuleAction::Rate(Rate {
                count: 1,
                period_secs: 3600,
            }),
        },
    ]
}

async fn gateway() -> InProc {
    InProc::start(rules(), APPROVAL_TIMEOUT).await
}

#[tokio::test]
async fn allowed_requests_get_the_secret_the_agent_never_sees() {
    let gw = gateway().await;
    // `/reflect` answers with every request header copied into its own
    // response head: the scrub must take the injected value out.
    let answer = gw.fetch("/reflect?x=1").await;
    assert_eq!(answer.status, 302, "{answer:?}");
    let seen = gw.up.last_request().expect("the upstream saw the request");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {}", gw.value).as_str())
    );
    assert!(
        !answer.contains(&gw.value),
        "the agent saw the secret: {answer:?}"
    );
    let record = gw.audit().await;
    assert_eq!(record.decision.as_str(), "allowed");
    assert_eq!(record.secrets, ["up"]);
    assert_eq!(record.status, Some(302));
    assert_eq!(record.agent.as_deref(), Some("bot"));
}

#[tokio::test]
async fn a_bad_token_is_refused_at_connect() {
    let gw = gateway().await;
    let (_, head) = gw.connect(&gw.target(), "not-the-token").await;
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("proxy-authenticate"),
        "{head}"
    );
    assert_eq!(gw.audit().await.decision.as_str(), "auth_required");
    assert!(gw.up.requests().is_empty());
}

#[tokio::test]
async fn an_agent_removed_after_connect_is_refused() {
    let gw = gateway().await;
    let mut agent = gw.agent(&gw.target()).await;
    gw.install(Vec::new(), gw.secrets.clone(), gw.rules.clone());
    let answer = InProc::send(&mut agent, gw.get("/echo/gone")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.kind().as_deref(), Some("unknown_agent"));
    let record = gw.audit().await;
    assert_eq!(record.decision.as_str(), "unknown_agent");
    assert_eq!(record.status, Some(403));
    assert!(gw.up.requests().is_empty());
}

#[tokio::test]
async fn a_destination_egress_forbids_is_refused_at_connect() {
    let gw = gateway().await;
    // Cloud metadata (link-local), and the gateway's own port.
    for target in ["169.254.169.254:80".to_owned(), gw.proxy.to_string()] {
        let (_, head) = gw.connect(&target, &gw.token).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
        let record = gw.audit().await;
        assert_eq!(record.decision.as_str(), "destination_refused", "{target}");
        assert_eq!(record.agent.as_deref(), Some("bot"));
    }
}

#[tokio::test]
async fn a_block_rule_refuses_before_the_vault() {
    let gw = gateway().await;
    // Also a spelling of the same path (the canonical form decides).
    for path in ["/admin/users", "/%61dmin/users"] {
        let answer = gw.fetch(path).await;
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
        assert_eq!(answer.kind().as_deref(), Some("blocked"));
        let record = gw.audit().await;
        assert_eq!(record.decision.as_str(), "blocked");
        assert_eq!(record.rule_id, Some(1));
        assert!(record.secrets.is_empty());
    }
    assert!(gw.up.requests().is_empty());
}

#[tokio::test]
async fn an_approved_request_goes_through() {
    let gw = gateway().await;
    let (request, pending) = gw.held("/echo/pay/now").await;
    assert_eq!(
        (
            pending.method.as_str(),
            pending.path.as_str(),
            pending.rule_id
        ),
        ("GET", "/echo/pay/now", 2)
    );
    assert!(gw.up.requests().is_empty(), "held requests wait");
    assert!(gw.approvals.decide(&gw.gw.approvals, pending.id, true));
    let answer = request.await.expect("the request task");
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = gw.up.last_request().expect("the upstream saw it");
    assert_eq!(seen.path, "/echo/pay/now");
    assert!(seen.contains(&gw.value), "injected after the approval");
    let record = gw.audit().await;
    assert_eq!(record.decision.as_str(), "approved");
    assert_eq!(record.rule_id, Some(2));
    assert_eq!(record.detail, Some(format!("approval {}", pending.id)));
}

#[tokio::test]
async fn a_denied_request_is_refused() {
    let gw = gateway().await;
    let (request, pending) = gw.held("/echo/pay/now").await;
    assert!(gw.approvals.decide(&gw.gw.approvals, pending.id, false));
    let answer = request.await.expect("the request task");
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.kind().as_deref(), Some("approval_denied"));
    assert_eq!(gw.audit().await.decision.as_str(), "approval_denied");
    assert!(gw.up.requests().is_empty());
}

#[tokio::test]
async fn an_unanswered_request_times_out() {
    let gw = InProc::start(rules(), Duration::from_millis(100)).await;
    let answer = gw.fetch("/echo/pay/later").await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.kind().as_deref(), Some("approval_timeout"));
    let record = gw.audit().await;
    assert_eq!(record.decision.as_str(), "approval_timeout");
    assert_eq!(record.rule_id, Some(2));
    let approvals = gw.approvals.list();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].outcome, Some(ApprovalOutcome::TimedOut));
    assert!(!gw.approvals.decide(&gw.gw.approvals, approvals[0].id, true));
    assert!(gw.up.requests().is_empty());
}

#[tokio::test]
async fn a_rate_limit_refuses_past_its_count() {
    let gw = gateway().await;
    let mut agent = gw.agent(&gw.target()).await;
    let first = InProc::send(&mut agent, gw.get("/echo/limited/a")).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(gw.audit().await.decision.as_str(), "allowed");
    let second = InProc::send(&mut agent, gw.get("/echo/limited/b")).await;
    assert_eq!(second.status, 429, "{second:?}");
    assert_eq!(second.kind().as_deref(), Some("rate_limited"));
    assert!(second.headers.contains_key("retry-after"));
    let record = gw.audit().await;
    assert_eq!(record.decision.as_str(), "rate_limited");
    assert_eq!(record.rule_id, Some(3));
    assert_eq!(gw.up.requests().len(), 1);
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502() {
    let gw = gateway().await;
    // A loopback port nothing listens on (egress allows loopback here).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let target = format!("{}:{}", gw.up.host(), closed.port());
    let mut agent = gw.agent(&target).await;
    let req = http::Request::get("/echo/down")
        .header(http::header::HOST, &target)
        .body(Default::default())
        .expect("a request");
    let answer = InProc::send(&mut agent, req).await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(answer.kind().as_deref(), Some("upstream_error"));
    assert_eq!(gw.audit().await.decision.as_str(), "upstream_error");
}

#[tokio::test]
async fn dot_segments_are_a_bad_request() {
    let gw = gateway().await;
    for path in ["/x/../admin/users", "/x/%2e%2e/admin", "/x/..;/admin"] {
        let answer = gw.fetch(path).await;
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        assert_eq!(answer.kind().as_deref(), Some("bad_request"), "{path}");
        assert_eq!(gw.audit().await.decision.as_str(), "bad_request", "{path}");
    }
    assert!(gw.up.requests().is_empty());
}

#[tokio::test]
async fn another_host_in_the_request_is_exfiltration() {
    let gw = gateway().await;
    let mut agent = gw.agent(&gw.target()).await;
    let req = http::Request::get("/echo/x")
        .header(http::header::HOST, "evil.test")
        .body(Default::default())
        .expect("a request");
    let answer = InProc::send(&mut agent, req).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.kind().as_deref(), Some("exfiltration"));
    assert_eq!(gw.audit().await.decision.as_str(), "exfiltration");
    assert!(gw.up.requests().is_empty());
}

#[tokio::test]
async fn headers_too_large_are_a_431() {
    let gw = gateway().await;
    let mut agent = gw.agent(&gw.target()).await;
    let req = http::Request::get("/echo/big")
        .header(http::header::HOST, gw.target())
        .header("x-big", "a".repeat(100 * 1024))
        .body(Default::default())
        .expect("a request");
    let answer = InProc::send(&mut agent, req).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    // hyper refuses a head over its buffer itself, before the pipeline
    // sees a request: nothing is audited for it.
    assert!(
        gw.audit_within(Duration::from_millis(200)).await.is_none(),
        "an audit record for a head hyper refused"
    );
    assert!(gw.up.requests().is_empty());
}

/// The pipeline's own limit, behind hyper's: a head hyper would take is
/// still refused, and audited, when its fields add up past the limit.
#[tokio::test]
async fn the_pipeline_refuses_headers_past_its_limit() {
    let gw = gateway().await;
    let mut agent = gw.pipeline_only().await;
    let req = http::Request::get("/echo/big")
        .header(http::header::HOST, gw.target())
        .header("x-big", "a".repeat(100 * 1024))
        .body(Default::default())
        .expect("a request");
    let answer = InProc::send(&mut agent, req).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert_eq!(answer.kind().as_deref(), Some("headers_too_large"));
    assert_eq!(gw.audit().await.decision.as_str(), "headers_too_large");
    assert!(gw.up.requests().is_empty());
}
