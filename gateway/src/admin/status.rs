//! What `GET /api/v1/status` reports beyond the snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use chrono::{DateTime, Utc};

use crate::audit::AuditState;
use crate::service::defaults::DefaultsView;
use crate::service::types::{AuditStatus, DatabaseStatus, SnapshotStatus, Status};
use crate::service::{Service, ServiceError};

/// Facts fixed at start, and the embedded server's live pid.
#[derive(Clone)]
pub struct StatusInfo {
    /// The audit writer's live counters.
    pub audit: Arc<AuditState>,
    /// The request path's leaf-certificate cache, for its counters.
    pub leaves: Arc<crate::tls::LeafCache>,
    /// The OAuth2 and signed-JWT token requests' counters.
    pub credentials: Arc<crate::credentials::Credentials>,
    /// The eBPF programs' maps, for their occupancy in `/metrics`; `None`
    /// unless the eBPF mode runs.
    pub ebpf_maps: Option<Arc<crate::intercept::occupancy::MapOccupancy>>,
    pub started_at: DateTime<Utc>,
    pub data_dir: String,
    pub mode: String,
    pub listeners: Vec<String>,
    pub database_kind: &'static str,
    pub postgres_pid: Option<Arc<AtomicI32>>,
    pub key_id: String,
    pub ca_cert: String,
    pub proxy_addr: String,
    /// The dashboard's bound address (with port 0 the kernel picks it).
    pub dashboard_addr: Option<String>,
}

impl StatusInfo {
    pub async fn report(&self, service: &Service) -> Result<Status, ServiceError> {
        let snap = service.snapshot().load();
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            started_at: self.started_at,
            data_dir: self.data_dir.clone(),
            mode: self.mode.clone(),
            listeners: self.listeners.clone(),
            database: DatabaseStatus {
                kind: self.database_kind.to_owned(),
                target: service.store().target().to_owned(),
                postgres_pid: self
                    .postgres_pid
                    .as_ref()
                    .map(|p| p.load(Ordering::SeqCst))
                    .filter(|&p| p > 0),
            },
            key_id: self.key_id.clone(),
            ca_cert: self.ca_cert.clone(),
            proxy_addr: self.proxy_addr.clone(),
            dashboard_addr: self.dashboard_addr.clone(),
            snapshot: SnapshotStatus {
                generation: snap.generation,
                loaded_at: snap.loaded_at,
                agents: snap.agents.len(),
                secrets: snap.secrets.len(),
                rules: snap.rules.len(),
                corrupt: snap.corrupt.clone(),
            },
            defaults: Some(DefaultsView::of(&snap)),
            // `None` while the database is away: status must still answer
            // then, since that is when an operator asks.
            audit_events: tokio::time::timeout(
                std::time::Duration::from_secs(1),
                service.store().count_audit_events(),
            )
            .await
            .ok()
            .and_then(Result::ok),
            audit: AuditStatus::of(&self.audit),
        })
    }
}

impl AuditStatus {
    fn of(a: &AuditState) -> AuditStatus {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        AuditStatus {
            required: a.required,
            stalled: a.stalled.load(Ordering::Relaxed),
            recorded: n(&a.recorded),
            written: n(&a.written),
            spooled: n(&a.spooled),
            spool_bytes: n(&a.spool_bytes),
            dropped: n(&a.dropped),
        }
    }
}
