//! The request counters and latency histograms, fed by the audit writer.
//!
//! Every request already ends in one audit record, handed to the writer
//! task without waiting; the writer counts each batch it takes. So the
//! request path pays nothing for metrics (no lock, no allocation, not one
//! atomic more), and the counters agree with the audit trail by
//! construction. A record the queue had no room for is counted in
//! `airlock_audit_records_lost_total` instead.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::AuditRecord;

/// Distinct hosts named in the labels; the rest fold into [`OTHER`], so a
/// misbehaving agent calling a million hosts cannot grow the scrape.
pub const HOST_CAP: usize = 200;
/// Distinct agents named; agents come from the configuration, so this is
/// only a guard against a fleet larger than dashboards can show.
pub const AGENT_CAP: usize = 500;
/// The label value of every host (or agent) beyond the cap.
pub const OTHER: &str = "other";
/// The agent label of a connection tied to no agent.
pub const NO_AGENT: &str = "none";

/// Label values are shared with [`Seen`]'s sets, so counting a record
/// allocates nothing once its agent and host have been seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    agent: Arc<str>,
    host: Arc<str>,
    decision: &'static str,
    /// `2xx` … `5xx`, or `none` when the agent got no HTTP answer.
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentLabel {
    agent: Arc<str>,
}

/// Label values handed out so far, to bound cardinality.
#[derive(Debug)]
struct Seen {
    hosts: HashSet<Arc<str>>,
    agents: HashSet<Arc<str>>,
    /// [`OTHER`], made once.
    other: Arc<str>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            hosts: HashSet::new(),
            agents: HashSet::new(),
            other: OTHER.into(),
        }
    }
}

impl Seen {
    /// `value` as a label: the set's own copy, a new one while the set is
    /// below `cap`, else [`OTHER`].
    fn fold(set: &mut HashSet<Arc<str>>, cap: usize, other: &Arc<str>, value: &str) -> Arc<str> {
        if let Some(seen) = set.get(value) {
            return seen.clone();
        }
        if set.len() < cap {
            let value: Arc<str> = value.into();
            set.insert(value.clone());
            return value;
        }
        other.clone()
    }
}

/// What `/metrics` reports about requests.
#[derive(Debug)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    /// Forwarded requests: the upstream's time to its response head.
    upstream: Family<AgentLabel, Histogram>,
    /// Forwarded requests: the time to the response head that was the
    /// gateway's own (everything but the upstream's share).
    added: Family<AgentLabel, Histogram>,
    /// Only the writer task takes it, once per batch.
    seen: Mutex<Seen>,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s in ×2 steps: the gateway's own share is tens of
    // microseconds, an upstream's up to seconds.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            requests: Family::default(),
            upstream: Family::new_with_constructor(latency_histogram),
            added: Family::new_with_constructor(latency_histogram),
            seen: Mutex::default(),
        }
    }
}

fn status_class(status: Option<i32>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

impl RequestMetrics {
    /// Counts a batch of records (the writer, as it takes them).
    pub fn observe(&self, records: &[AuditRecord]) {
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            // A panic elsewhere while counting loses nothing but labels.
            Err(poisoned) => poisoned.into_inner(),
        };
        let seen = &mut *seen;
        for r in records {
            let agent = Seen::fold(
                &mut seen.agents,
                AGENT_CAP,
                &seen.other,
                r.agent.as_deref().unwrap_or(NO_AGENT),
            );
            let host = Seen::fold(
                &mut seen.hosts,
                HOST_CAP,
                &seen.other,
                r.host.as_deref().unwrap_or(""),
            );
            let labels = RequestLabels {
                agent: agent.clone(),
                host,
                decision: r.decision.as_str(),
                status: status_class(r.status),
            };
            self.requests.get_or_create(&labels).inc();
            if let (Some(upstream), Some(head)) = (r.latency.upstream_us, r.latency.head_us) {
                let agent = AgentLabel { agent };
                let added = head.saturating_sub(upstream);
                self.upstream
                    .get_or_create(&agent)
                    .observe(f64::from(upstream) / 1e6);
                self.added
                    .get_or_create(&agent)
                    .observe(f64::from(added) / 1e6);
            }
        }
    }

    /// Adds these metrics (shared handles, not copies) to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "airlock_requests",
            "Requests and refused connections, by agent, host, decision and status class",
            self.requests.clone(),
        );
        registry.register(
            "airlock_upstream_latency_seconds",
            "Forwarded requests: the upstream's time to its response head",
            self.upstream.clone(),
        );
        registry.register(
            "airlock_gateway_added_latency_seconds",
            "Forwarded requests: the gateway's own share of the time to the response head",
            self.added.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;
    use crate::store::audit::Latency;

    fn record(agent: &str, host: &str, status: Option<i32>) -> AuditRecord {
        AuditRecord {
            agent: Some(agent.into()),
            host: Some(host.into()),
            status,
            decision: Decision::Allowed,
            latency: Latency {
                upstream_us: Some(1_000),
                head_us: Some(1_250),
            },
            ..AuditRecord::default()
        }
    }

    fn scrape(m: &RequestMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn counts_by_labels_and_folds_hosts_beyond_the_cap() {
        let m = RequestMetrics::default();
        let mut batch = vec![record("bot", "api.example.com", Some(200)); 3];
        batch.push(record("bot", "api.example.com", Some(503)));
        batch.extend((0..HOST_CAP + 5).map(|i| record("bot", &format!("h{i}.test"), None)));
        m.observe(&batch);
        let text = scrape(&m);
        assert!(text.contains(
            r#"airlock_requests_total{agent="bot",host="api.example.com",decision="allowed",status="2xx"} 3"#
        ), "{text}");
        assert!(text.contains(r#"host="api.example.com",decision="allowed",status="5xx"} 1"#));
        // Two hosts of the batch were already named (api.example.com and
        // HOST_CAP - 1 of the h*), the rest are `other`.
        assert!(
            text.contains(r#"host="other",decision="allowed",status="none"} 6"#),
            "{text}"
        );
        let hosts = text.matches("airlock_requests_total{").count();
        assert_eq!(hosts, HOST_CAP + 2, "{text}");
        // 250 µs of the 1.25 ms were the gateway's.
        assert!(text.contains(r#"airlock_gateway_added_latency_seconds_sum{agent="bot"}"#));
    }
}
