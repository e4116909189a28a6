//! The audit writer: one record per request, written in batches off the
//! request path, and never lost to a database outage.
//!
//! The request path hands a record to [`AuditSink::record`], which never
//! waits: it puts the record on a bounded channel. [`run_writer`] drains
//! the channel into chained multi-row inserts (up to 500 rows, or whatever
//! arrived within 50 ms). When the database cannot take a batch, the batch
//! goes to the [`spool`] on disk (fsync'd), and so does every later batch
//! until the spool has been replayed into the database, oldest first, so
//! the trail's order is the order requests ended.
//!
//! When neither the database nor the spool can take a record (the
//! database is down and the disk is full, or the spool at its bound):
//! with `[audit] required` (the default) the writer holds the records in
//! memory and the gateway answers new requests 503 until they are stored
//! somewhere ([`AuditSink::accepting`]); without it, requests are served
//! and the records that could not be stored are dropped and counted.

mod decision;
pub mod export;
pub mod spool;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

pub use crate::store::audit::NewRequestEvent as AuditRecord;
pub use decision::Decision;
pub use writer::run_writer;

const CHANNEL_CAPACITY: usize = 65_536;

pub const DEFAULT_SPOOL_MAX_MB: u64 = 256;

/// How the trail behaves when it cannot record.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Refuse requests (503) rather than serve ones that cannot be audited.
    pub required: bool,
    /// The spool's size bound.
    pub spool_max_bytes: u64,
    /// Copies of the trail as JSON lines ([`export`]).
    pub export: export::ExportSettings,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            required: true,
            spool_max_bytes: DEFAULT_SPOOL_MAX_MB << 20,
            export: export::ExportSettings::default(),
        }
    }
}

/// Where the request path sends its records. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
    state: Arc<AuditState>,
}

/// Shared by the sink and the writer: counters for `airlock status` and
/// the benchmarks, and whether records can be stored now.
#[derive(Debug, Default)]
pub struct AuditState {
    pub required: bool,
    /// Records handed to the sink.
    pub recorded: AtomicU64,
    /// Rows written to the database (directly or replayed).
    pub written: AtomicU64,
    /// Records that went to the spool (cumulative).
    pub spooled: AtomicU64,
    /// Records lost: the channel was full, or (without `required`) nothing
    /// could store them.
    pub dropped: AtomicU64,
    /// Bytes waiting in the spool now.
    pub spool_bytes: AtomicU64,
    /// Records that neither the database nor the spool could take are held
    /// in memory.
    pub stalled: AtomicBool,
    /// Records waiting in the channel when the writer last took a batch.
    pub queue_depth: AtomicU64,
    /// What `/metrics` says about requests, counted by the writer.
    pub requests: crate::metrics::RequestMetrics,
    /// What the JSON-lines sinks did.
    pub export: Arc<export::ExportCounters>,
}

impl AuditSink {
    /// Queues a record; never blocks the request path.
    pub fn record(&self, record: AuditRecord) {
        self.state.recorded.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(record).is_err() {
            let dropped = self.state.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(dropped, "audit queue full: records are being dropped");
            }
        }
    }

    /// Whether a new request may be served: with `required`, not while
    /// records cannot be stored or the queue has no room for another.
    pub fn accepting(&self) -> bool {
        !self.state.required
            || (!self.state.stalled.load(Ordering::Relaxed) && self.tx.capacity() > 0)
    }

    pub fn state(&self) -> &Arc<AuditState> {
        &self.state
    }
}

/// A sink and the receiving end for [`run_writer`].
pub fn channel(settings: &AuditSettings) -> (AuditSink, mpsc::Receiver<AuditRecord>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let state = Arc::new(AuditState {
        required: settings.required,
        ..AuditState::default()
    });
    (AuditSink { tx, state }, rx)
}
