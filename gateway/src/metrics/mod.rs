//! `GET /metrics` on the dashboard listener: the Prometheus text format
//! (OpenMetrics), for an API token. Names, labels and bounds are in
//! docs/metrics.md.
//!
//! Two kinds of metric: what requests did ([`RequestMetrics`], counted by
//! the audit writer off the request path), and the state of the daemon
//! read at scrape time from the counters it keeps anyway (the audit
//! writer's, the snapshot's, the approvals waiting, the eBPF maps'
//! entries walked on a blocking thread). A scrape builds a
//! fresh registry over shared handles, so nothing here is global.

mod requests;

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use requests::{AGENT_CAP, HOST_CAP, NO_AGENT, OTHER, RequestMetrics};

use crate::admin::StatusInfo;
use crate::service::Service;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MapLabel {
    map: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SinkLabel {
    sink: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// How `airlock status` describes the interception mode, as one word.
fn mode_word(mode: &str) -> &'static str {
    if mode.contains("(eBPF") {
        "ebpf"
    } else if mode.contains("(nftables") {
        "nftables"
    } else {
        "off"
    }
}

/// The whole scrape.
pub async fn render(status: &StatusInfo, service: &Service) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let audit = &status.audit;
    audit.requests.register(&mut registry);

    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    registry.register(
        "airlock_audit_records_written",
        "Audit records written to the database (directly or replayed from the spool)",
        ConstCounter::new(load(&audit.written)),
    );
    registry.register(
        "airlock_audit_records_spooled",
        "Audit records that went to the on-disk spool while the database was away",
        ConstCounter::new(load(&audit.spooled)),
    );
    registry.register(
        "airlock_audit_records_lost",
        "Audit records lost: the queue was full, or nothing could store them",
        ConstCounter::new(load(&audit.dropped)),
    );
    registry.register(
        "airlock_audit_queue_depth",
        "Audit records waiting for the writer when it last took a batch",
        ConstGauge::new(gauge(load(&audit.queue_depth))),
    );
    registry.register(
        "airlock_audit_spool_bytes",
        "Bytes of audit records waiting in the spool",
        ConstGauge::new(gauge(load(&audit.spool_bytes))),
    );
    registry.register(
        "airlock_audit_stalled",
        "1 while records can be stored neither in the database nor in the spool",
        ConstGauge::new(i64::from(audit.stalled.load(Ordering::Relaxed))),
    );

    register_export(&mut registry, &audit.export);

    let snapshots = service.snapshot();
    registry.register(
        "airlock_snapshot_generation",
        "Generation of the configuration snapshot the request path reads",
        ConstGauge::new(gauge(snapshots.load().generation)),
    );
    registry.register(
        "airlock_snapshot_age_seconds",
        "Seconds since the configuration snapshot was last swapped in",
        ConstGauge::new(snapshots.age().as_secs_f64()),
    );

    // The one database read of a scrape (never on the request path).
    let waiting = match service.store().list_approvals(false).await {
        Ok(list) => gauge(list.len() as u64),
        Err(e) => {
            tracing::warn!(error = %e, "/metrics: cannot count the approvals waiting");
            -1
        }
    };
    registry.register(
        "airlock_approvals_waiting",
        "Requests held for a person's approval (-1: the database did not answer)",
        ConstGauge::new(waiting),
    );

    register_leaves(&mut registry, &status.leaves.stats());
    register_tokens(&mut registry, status.credentials.token_outcomes());

    if let Some(maps) = status.ebpf_maps.clone() {
        // A walk is a syscall per entry: off the async workers.
        match tokio::task::spawn_blocking(move || maps.read()).await {
            Ok(fills) => register_ebpf_maps(&mut registry, &fills),
            Err(e) => tracing::warn!(error = %e, "/metrics: the eBPF map walk failed"),
        }
    }

    let mode = Family::<ModeLabel, Gauge>::default();
    mode.get_or_create(&ModeLabel {
        mode: mode_word(&status.mode),
    })
    .set(1);
    registry.register(
        "airlock_interception_mode",
        "The transparent interception mode (ebpf, nftables or off) this daemon runs",
        mode,
    );
    registry.register(
        "airlock_build",
        "This daemon's version",
        Info::new(VersionLabel {
            version: env!("CARGO_PKG_VERSION"),
        }),
    );

    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The leaf-certificate cache: a mint is a key pair and a signature (the
/// first connection to a name), a hit a connection that needed neither.
fn register_leaves(registry: &mut Registry, leaves: &crate::tls::LeafCacheStats) {
    registry.register(
        "airlock_tls_leaf_mints",
        "Leaf certificates minted for agent-facing TLS (a name's first connection, or after expiry)",
        ConstCounter::new(leaves.mints),
    );
    registry.register(
        "airlock_tls_leaf_cache_hits",
        "Agent TLS handshakes served with a cached leaf certificate",
        ConstCounter::new(leaves.hits),
    );
    registry.register(
        "airlock_tls_leaf_cache_entries",
        "Leaf certificates cached now (approximate: the cache settles lazily)",
        ConstGauge::new(gauge(leaves.entries)),
    );
}

/// The eBPF maps' entries and capacities (eBPF mode only), by map name.
fn register_ebpf_maps(registry: &mut Registry, fills: &[crate::intercept::occupancy::Fill]) {
    let entries = Family::<MapLabel, Gauge>::default();
    let capacity = Family::<MapLabel, Gauge>::default();
    for f in fills {
        let label = MapLabel { map: f.map };
        entries.get_or_create(&label).set(gauge(f.entries));
        capacity.get_or_create(&label).set(i64::from(f.capacity));
    }
    registry.register(
        "airlock_ebpf_map_entries",
        "Entries in each eBPF map now, counted by walking its keys at scrape time (at most \
         its capacity; approximate while the programs change it)",
        entries,
    );
    registry.register(
        "airlock_ebpf_map_capacity",
        "Each eBPF map's max_entries (an LRU map at capacity evicts its least recently used entry)",
        capacity,
    );
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// OAuth2 and signed-JWT token requests by how they ended.
fn register_tokens(registry: &mut Registry, outcomes: &crate::credentials::TokenOutcomes) {
    let family = Family::<OutcomeLabel, Counter>::default();
    for (outcome, count) in [
        ("ok", &outcomes.ok),
        ("refused", &outcomes.refused),
        ("failed", &outcomes.failed),
    ] {
        family
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(count.load(Ordering::Relaxed));
    }
    registry.register(
        "airlock_token_requests",
        "OAuth2 and signed-JWT token requests this daemon sent, by outcome: ok (a token), \
         refused (the provider refused the grant; the secret needs reconnection), failed \
         (to be retried)",
        family,
    );
}

/// The JSON-lines sinks' figures, for the sinks that are on.
fn register_export(registry: &mut Registry, export: &crate::audit::export::ExportCounters) {
    let sinks = export.sinks();
    if sinks.is_empty() {
        return;
    }
    let lines = Family::<SinkLabel, Counter>::default();
    let failed = Family::<SinkLabel, Counter>::default();
    for f in &sinks {
        let label = SinkLabel {
            sink: f.sink.as_str(),
        };
        lines.get_or_create(&label).inc_by(f.lines);
        failed.get_or_create(&label).inc_by(f.failed);
    }
    registry.register(
        "airlock_audit_export_lines",
        "Audit records written as JSON lines, by sink (file, journald, syslog)",
        lines,
    );
    registry.register(
        "airlock_audit_export_failed_lines",
        "Audit JSON lines a sink could not take (disk full, daemon gone), by sink",
        failed,
    );
    registry.register(
        "airlock_audit_export_dropped_lines",
        "Audit JSON lines dropped before any sink: the export thread was behind",
        ConstCounter::new(export.dropped()),
    );
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::mode_word;

    #[test]
    fn modes_are_words() {
        assert_eq!(mode_word("transparent (eBPF): agents under ..."), "ebpf");
        assert_eq!(
            mode_word("transparent (eBPF, adopted pinned programs): ..."),
            "ebpf"
        );
        assert_eq!(
            mode_word("transparent (nftables, table inet airlock): ..."),
            "nftables"
        );
        assert_eq!(
            mode_word("explicit proxy only: transparent interception is off"),
            "off"
        );
    }
}
