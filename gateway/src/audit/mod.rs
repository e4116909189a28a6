//! The audit writer: one record per request, written in batches off the
//! request path, and never lost to a database outage.
//!
//! Each request takes a place in a bounded queue as it arrives
//! ([`AuditSink::reserve`], a [`Slot`]) and puts its record there when it
//! ends, never waiting; with `[audit] required` a request that finds no
//! place free is refused (503) before it is served, so a request that was
//! served always has room for its record, however many end at once. [`run_writer`] drains
//! the channel into chained batches (whatever arrived within 50 ms, up to
//! 4,096 rows), each written as one binary `COPY` ([`crate::store`]'s
//! `audit_batch`). When the database cannot take a batch, the batch
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
pub use decision::{Decision, Outcome};
pub use writer::run_writer;

const CHANNEL_CAPACITY: usize = 65_536;
/// The share of the queue kept for requests that reserve a place: records
/// without one (the kernel's refusals, which an agent can cause as fast as
/// it can call `connect`) may fill at most the rest, so a flood of them
/// cannot leave a well-behaved agent's requests without a place, answered
/// 503 under `required`.
const RESERVED_SHARE: usize = 4;

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
    /// Places [`AuditSink::record`] leaves free for [`AuditSink::reserve`].
    headroom: usize,
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

/// A place in the audit queue, taken when a request arrives and used
/// when it ends: a request that was served always has room for its
/// record, however many end at once. Dropped unused, it frees the place.
pub type Slot = mpsc::OwnedPermit<AuditRecord>;

impl AuditSink {
    /// Queues a record; never blocks. For records with no [`Slot`] (the
    /// kernel's refusals, a request refused because none was free): lost
    /// and counted when the queue is full but for the places kept for
    /// requests being served ([`RESERVED_SHARE`]).
    pub fn record(&self, record: AuditRecord) {
        self.state.recorded.fetch_add(1, Ordering::Relaxed);
        // `capacity()` and `try_send` are not one step, so two callers may
        // both pass the check: the headroom shrinks by at most the number
        // of threads, never to nothing.
        if self.tx.capacity() <= self.headroom || self.tx.try_send(record).is_err() {
            self.count_dropped();
        }
    }

    /// Takes a place in the queue for a request's record, if one is free.
    pub fn reserve(&self) -> Option<Slot> {
        self.tx.clone().try_reserve_owned().ok()
    }

    /// Queues a request's record in the place it reserved, or as
    /// [`AuditSink::record`] does when it had none.
    pub fn record_in(&self, slot: Option<Slot>, record: AuditRecord) {
        match slot {
            Some(slot) => {
                self.state.recorded.fetch_add(1, Ordering::Relaxed);
                slot.send(record);
            }
            None => self.record(record),
        }
    }

    fn count_dropped(&self) {
        let dropped = self.state.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::error!(dropped, "audit queue full: records are being dropped");
        }
    }

    /// Whether a request may be served: with `required`, only while
    /// records can be stored and the request holds a place in the queue
    /// (`has_slot`), so no request is served whose record could be lost.
    pub fn accepting(&self, has_slot: bool) -> bool {
        !self.state.required || (!self.state.stalled.load(Ordering::Relaxed) && has_slot)
    }

    pub fn state(&self) -> &Arc<AuditState> {
        &self.state
    }
}

/// A sink and the receiving end for [`run_writer`].
pub fn channel(settings: &AuditSettings) -> (AuditSink, mpsc::Receiver<AuditRecord>) {
    channel_of(settings, CHANNEL_CAPACITY)
}

fn channel_of(
    settings: &AuditSettings,
    capacity: usize,
) -> (AuditSink, mpsc::Receiver<AuditRecord>) {
    let (tx, rx) = mpsc::channel(capacity);
    let state = Arc::new(AuditState {
        required: settings.required,
        ..AuditState::default()
    });
    let headroom = capacity / RESERVED_SHARE;
    (
        AuditSink {
            tx,
            headroom,
            state,
        },
        rx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_request_always_has_room_for_its_record() {
        let (sink, mut rx) = channel_of(&AuditSettings::default(), 2);
        let a = sink.reserve();
        let b = sink.reserve();
        assert!(sink.accepting(a.is_some()) && sink.accepting(b.is_some()));
        // The queue is spoken for: a third request is not served...
        let c = sink.reserve();
        assert!(c.is_none() && !sink.accepting(c.is_some()));
        // ...and a record without a place (a kernel refusal) is counted lost
        // rather than taking one of theirs.
        sink.record(AuditRecord::default());
        assert_eq!(sink.state().dropped.load(Ordering::Relaxed), 1);
        sink.record_in(a, AuditRecord::default());
        sink.record_in(b, AuditRecord::default());
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
        assert_eq!(sink.state().recorded.load(Ordering::Relaxed), 3);
        // Places come back as records leave the queue, and unused ones when
        // dropped.
        let d = sink.reserve();
        assert!(d.is_some());
        drop(d);
        assert!(sink.reserve().is_some());
    }

    #[test]
    fn a_flood_of_unreserved_records_leaves_room_for_served_requests() {
        let (sink, _rx) = channel_of(&AuditSettings::default(), 8);
        for _ in 0..100 {
            sink.record(AuditRecord::default());
        }
        // 6 of 8 places taken by the flood, the rest counted lost...
        assert_eq!(sink.state().dropped.load(Ordering::Relaxed), 94);
        // ...and the 2 kept back still serve requests.
        let slots: Vec<_> = (0..2).map(|_| sink.reserve()).collect();
        assert!(slots.iter().all(Option::is_some));
        assert!(sink.reserve().is_none());
    }

    #[test]
    fn without_required_requests_are_served_regardless() {
        let settings = AuditSettings {
            required: false,
            ..AuditSettings::default()
        };
        let (sink, _rx) = channel_of(&settings, 1);
        let _a = sink.reserve();
        assert!(sink.accepting(sink.reserve().is_some()));
    }
}
