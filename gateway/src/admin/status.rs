//! What `GET /api/v1/status` reports beyond the snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use chrono::{DateTime, Utc};

use crate::service::types::{DatabaseStatus, SnapshotStatus, Status};
use crate::service::{Service, ServiceError};

/// Facts fixed at start, and the embedded server's live pid.
#[derive(Debug, Clone)]
pub struct StatusInfo {
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
            audit_events: service.store().count_audit_events().await?,
        })
    }
}
