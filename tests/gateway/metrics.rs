//! `GET /metrics` on the dashboard listener: behind an API token, the
//! request counter agrees with what was sent (by agent, host, decision and
//! status class), no secret or token is in it, and a real Prometheus
//! scrapes it with a bearer token and can query the counter.

use std::time::Duration;

use crate::support::gw::Gw;
use crate::support::metrics::{get, sample};
use crate::support::prometheus::{self, Prometheus};
use crate::support::wait_until;

#[test]
fn metrics_count_requests_for_an_api_token_and_prometheus_scrapes_them() {
    let gw = Gw::start();
    let host = gw.host();
    gw.daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        &host,
        "--path",
        "/echo/admin/**",
        "--block",
    ]);
    for _ in 0..3 {
        assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/ok")])), 200);
    }
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/admin/x")])), 403);

    let dash = gw.daemon.status_json()["dashboard_addr"]
        .as_str()
        .expect("dashboard_addr")
        .to_owned();
    let url = format!("http://{dash}/metrics");
    let anonymous = get(&url, None);
    assert!(
        anonymous.stdout.starts_with("HTTP/1.1 401"),
        "{anonymous:#?}"
    );
    let wrong = get(&url, Some("not-a-token"));
    assert!(wrong.stdout.starts_with("HTTP/1.1 401"), "{wrong:#?}");

    let token = gw
        .daemon
        .cli_ok(&["admin", "token", "create", "prometheus"])
        .trim()
        .to_owned();
    let allowed = format!(
        r#"airlock_requests_total{{agent="bot",host="{host}",decision="allowed",status="2xx"}}"#
    );
    let blocked = format!(
        r#"airlock_requests_total{{agent="bot",host="{host}",decision="blocked",status="4xx"}}"#
    );
    // The writer counts a batch within its 50 ms window; the blocked
    // request's record can be in the batch after the allowed ones'.
    let text = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let out = get(&url, Some(&token));
        (sample(&out.stdout, &allowed) == Some(3.0) && sample(&out.stdout, &blocked).is_some())
            .then_some(out.stdout)
    })
    .unwrap_or_else(|| panic!("no {allowed} 3 in {}", get(&url, Some(&token)).stdout));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/openmetrics-text"), "{text}");
    assert_eq!(sample(&text, &blocked), Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            r#"airlock_upstream_latency_seconds_count{agent="bot"}"#
        ) == Some(3.0),
        "{text}"
    );
    // Four connections to one name: one leaf minted, three from the cache.
    assert_eq!(
        sample(&text, "airlock_tls_leaf_mints_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "airlock_tls_leaf_cache_hits_total"),
        Some(3.0),
        "{text}"
    );
    assert!(text.contains("airlock_tls_leaf_cache_entries "), "{text}");
    assert_eq!(
        sample(&text, r#"airlock_token_requests_total{outcome="ok"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "airlock_audit_records_lost_total"), Some(0.0));
    assert_eq!(sample(&text, "airlock_approvals_waiting"), Some(0.0));
    assert!(text.contains("airlock_snapshot_generation "), "{text}");
    assert!(
        text.contains(r#"airlock_interception_mode{mode="off"} 1"#),
        "{text}"
    );
    // No eBPF programs, so no map series (tests/transparent/map_metrics.rs).
    assert!(!text.contains("airlock_ebpf_map_"), "{text}");
    for secret in [&gw.value, &gw.token, &token] {
        assert!(!text.contains(secret.as_str()), "a secret is in /metrics");
    }

    if !prometheus::available() {
        eprintln!("SKIPPED: the Prometheus part needs /usr/bin/prometheus (cargo xtask setup)");
        return;
    }
    let prom = Prometheus::start(&dash, "/metrics", &token);
    let query = format!(
        r#"airlock_requests_total{{agent="bot",decision="allowed",host="{host}",status="2xx"}}"#
    );
    let seen = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        let result = prom.query(&query);
        let value = result.first()?["value"][1].as_str()?.to_owned();
        (value == "3").then_some(value)
    });
    assert!(
        seen.is_some(),
        "Prometheus never had the counter: target {:?}, result {:?}, log {}",
        prom.target_health(),
        prom.query(&query),
        prom.log()
    );
    let (health, error) = prom.target_health();
    assert_eq!(health, "up", "{error}");
}
