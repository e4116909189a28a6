//! The audit writer: one record per request, written in batches off the
//! request path.
//!
//! The request path hands a record to [`AuditSink::record`], which never
//! waits: it puts the record on a bounded channel. [`run_writer`] drains
//! the channel into multi-row inserts (up to 500 rows, or whatever arrived
//! within 50 ms). While the database is down it keeps the pending batch and
//! retries; once the channel is full, new records are counted as dropped
//! and logged. (A durable spool for long outages is the hardening issue's.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::shutdown::Shutdown;
use crate::store::Store;
pub use crate::store::audit::NewRequestEvent as AuditRecord;

const CHANNEL_CAPACITY: usize = 65_536;
const BATCH_MAX: usize = 500;
const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Where the request path sends its records. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
    counters: Arc<AuditCounters>,
}

/// For `airlock status` and the benchmarks.
#[derive(Debug, Default)]
pub struct AuditCounters {
    pub recorded: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

impl AuditSink {
    /// Queues a record; never blocks the request path.
    pub fn record(&self, record: AuditRecord) {
        self.counters.recorded.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(record).is_err() {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(dropped, "audit queue full: records are being dropped");
            }
        }
    }

    pub fn counters(&self) -> &Arc<AuditCounters> {
        &self.counters
    }
}

/// A sink and the receiving end for [`run_writer`].
pub fn channel() -> (AuditSink, mpsc::Receiver<AuditRecord>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    (
        AuditSink {
            tx,
            counters: Arc::default(),
        },
        rx,
    )
}

/// Writes records until shutdown, then flushes what is queued (trying for
/// at most a few seconds if the database is down).
pub async fn run_writer(
    store: Store,
    mut rx: mpsc::Receiver<AuditRecord>,
    counters: Arc<AuditCounters>,
    shutdown: Shutdown,
) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            () = shutdown.wait() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while batch.len() < BATCH_MAX {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(rec) => batch.push(rec),
                    None => break,
                },
                () = &mut window => break,
            }
        }
        write_with_retry(&store, &mut batch, &counters, &shutdown).await;
    }
    // Shutdown: drain what is already queued.
    rx.close();
    while let Some(rec) = rx.recv().await {
        batch.push(rec);
        if batch.len() >= BATCH_MAX {
            write_with_retry(&store, &mut batch, &counters, &shutdown).await;
        }
    }
    write_with_retry(&store, &mut batch, &counters, &shutdown).await;
}

async fn write_with_retry(
    store: &Store,
    batch: &mut Vec<AuditRecord>,
    counters: &AuditCounters,
    shutdown: &Shutdown,
) {
    let mut delay = Duration::from_millis(100);
    let mut attempts_after_shutdown = 0;
    while !batch.is_empty() {
        match store.insert_request_events(batch).await {
            Ok(()) => {
                counters
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, pending = batch.len(), "writing audit records failed; retrying");
                if shutdown.is_fired() {
                    attempts_after_shutdown += 1;
                    if attempts_after_shutdown > 3 {
                        counters
                            .dropped
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        tracing::error!(
                            lost = batch.len(),
                            "audit records lost at shutdown: database unavailable"
                        );
                        batch.clear();
                        return;
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
