//! The writer task: takes batches from the channel and stores them in the
//! database or, while it is away, in the spool; replays the spool when the
//! database is back (see the module above for the whole behaviour).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::export::Exporter;
use super::spool::{Spool, SpoolError};
use super::{AuditRecord, AuditState};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Rows per statement, at most. The window closes a batch at low load;
/// under load the batch grows to what arrived meanwhile, up to this, and
/// the server's cost per batch (a transaction, the chain lock, seven
/// round trips) is spread over more rows. Bounded so one write stays well
/// inside [`DB_WRITE_TIMEOUT`] and one spool replay read in memory.
const BATCH_MAX: usize = 4096;
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Spooled records replayed per turn of the writer, so new records are not
/// kept waiting behind a long replay.
const REPLAY_BATCHES_PER_TURN: usize = 20;
/// A write the database has not finished by then counts as failed (the
/// batch goes to the spool; if the write did commit after all, the replay
/// skips its records by their ids). Without it, a vanished server would
/// hold the writer for the pool's whole acquire timeout per attempt.
const DB_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Past this many records held in memory (with `required`, while nothing
/// can store them), the oldest are counted lost rather than growing without
/// bound; by then every new request is being refused anyway.
const HELD_MAX: usize = 100_000;

/// Writes records until shutdown, then stores what is queued: in the
/// database if it answers within a few tries, otherwise in the spool (for
/// the next start to replay).
pub async fn run_writer(
    store: Store,
    spool: Spool,
    mut rx: mpsc::Receiver<AuditRecord>,
    state: Arc<AuditState>,
    mut exporter: Option<Exporter>,
    shutdown: Shutdown,
) {
    let mut w = Writer::new(store, spool, state);
    loop {
        // With a backlog, wake up to retry even when no record arrives.
        let wait = w.has_backlog().then_some(w.retry_at);
        let before = w.held.len();
        let open = collect(&mut rx, &mut w.held, wait, &shutdown).await;
        w.state.requests.observe(&w.held[before..]);
        if let Some(e) = &mut exporter {
            e.emit(&w.held[before..]);
        }
        w.state
            .queue_depth
            .store(rx.len() as u64, Ordering::Relaxed);
        w.turn().await;
        if !open {
            break;
        }
    }
    rx.close();
    let before = w.held.len();
    while let Some(rec) = rx.recv().await {
        w.held.push(rec);
    }
    w.state.requests.observe(&w.held[before..]);
    if let Some(mut e) = exporter {
        e.emit(&w.held[before..]);
        // The thread writes what it holds; joining it blocks.
        let _ = tokio::task::spawn_blocking(move || e.close()).await;
    }
    w.finish().await;
}

/// Waits for records and gathers a batch; `false` once the channel is
/// closed or shutdown fired.
async fn collect(
    rx: &mut mpsc::Receiver<AuditRecord>,
    into: &mut Vec<AuditRecord>,
    wake_at: Option<Instant>,
    shutdown: &Shutdown,
) -> bool {
    let sleep_until = wake_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
    let first = tokio::select! {
        r = rx.recv() => r,
        () = tokio::time::sleep_until(sleep_until) => return true,
        () = shutdown.wait() => return false,
    };
    let Some(first) = first else { return false };
    into.push(first);
    let window = tokio::time::sleep(BATCH_WINDOW);
    tokio::pin!(window);
    let goal = into.len() + BATCH_MAX - 1;
    while into.len() < goal {
        // Everything queued at once, not a select per record: under load
        // the channel holds hundreds by the time the writer looks.
        let room = goal - into.len();
        tokio::select! {
            n = rx.recv_many(into, room) => if n == 0 {
                return false;
            },
            () = &mut window => break,
        }
    }
    true
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the database did not answer within {}s", DB_WRITE_TIMEOUT.as_secs())]
    Timeout,
}

/// One bounded attempt at the database.
async fn write(
    store: &Store,
    records: &[AuditRecord],
    buf: &mut BytesMut,
) -> Result<(), WriteError> {
    tokio::time::timeout(DB_WRITE_TIMEOUT, store.insert_request_events(records, buf))
        .await
        .map_err(|_| WriteError::Timeout)?
        .map_err(WriteError::from)
}

/// The writer's state between turns.
struct Writer {
    store: Store,
    /// Behind a mutex only so blocking file I/O can run on tokio's blocking
    /// pool; the writer is its one user.
    spool: Arc<Mutex<Spool>>,
    state: Arc<AuditState>,
    /// Records taken from the channel and not yet stored anywhere.
    held: Vec<AuditRecord>,
    /// Where each batch is encoded for the database: one buffer for the
    /// writer's life, grown to the largest batch, not one per batch.
    encoded: BytesMut,
    /// Where the next replay reads from.
    replay_offset: u64,
    spool_empty: bool,
    /// The database failed: until `retry_at`, new records go to the spool
    /// without trying it.
    db_down: bool,
    retry_at: Instant,
    retry_delay: Duration,
}

impl Writer {
    fn new(store: Store, spool: Spool, state: Arc<AuditState>) -> Self {
        let spool_empty = spool.is_empty();
        state
            .spool_bytes
            .store(spool.len_bytes(), Ordering::Relaxed);
        if !spool_empty {
            tracing::info!(
                bytes = spool.len_bytes(),
                "audit records spooled by an earlier run: replaying them into the database"
            );
        }
        Writer {
            store,
            spool: Arc::new(Mutex::new(spool)),
            state,
            held: Vec::with_capacity(BATCH_MAX),
            encoded: BytesMut::new(),
            replay_offset: 0,
            spool_empty,
            db_down: false,
            retry_at: Instant::now(),
            retry_delay: RETRY_MIN,
        }
    }

    fn has_backlog(&self) -> bool {
        !self.held.is_empty() || !self.spool_empty
    }

    /// Stores what is held, then replays some of the spool if it is due.
    async fn turn(&mut self) {
        self.store_held().await;
        if !self.spool_empty && Instant::now() >= self.retry_at {
            self.replay().await;
        }
        let stalled = !self.held.is_empty();
        if self.state.stalled.swap(stalled, Ordering::Relaxed) && !stalled {
            tracing::info!("audit records are being stored again");
        }
    }

    /// The held records go to the database when nothing older waits in the
    /// spool and the database is believed up; otherwise to the spool.
    async fn store_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let try_db = self.spool_empty && (!self.db_down || Instant::now() >= self.retry_at);
        if try_db {
            // In batches of at most BATCH_MAX: what is held can be far more
            // (the whole queue, drained at shutdown), and one transaction
            // holds the chain lock. A batch that fails sends the rest to
            // the spool; the replay skips what did commit.
            let mut stored = 0;
            let mut failed = None;
            for batch in self.held.chunks(BATCH_MAX) {
                match write(&self.store, batch, &mut self.encoded).await {
                    Ok(()) => stored += batch.len(),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            self.count(&self.state.written, stored);
            self.held.drain(..stored);
            match failed {
                None => {
                    self.db_up();
                    return;
                }
                Some(e) => self.db_failed(&e),
            }
        }
        let batch = std::mem::take(&mut self.held);
        let n = batch.len();
        let appended = self
            .on_spool(move |s| {
                let r = s.append(&batch).map(|()| s.len_bytes());
                (batch, r)
            })
            .await;
        match appended {
            Some((_, Ok(len))) => {
                self.count(&self.state.spooled, n);
                self.state.spool_bytes.store(len, Ordering::Relaxed);
                self.spool_empty = false;
            }
            Some((batch, Err(e))) => self.unstorable(&e, batch),
            None => self.count(&self.state.dropped, n),
        }
    }

    /// Neither the database nor the spool took `batch`.
    fn unstorable(&mut self, e: &SpoolError, mut batch: Vec<AuditRecord>) {
        if !self.state.stalled.load(Ordering::Relaxed) {
            tracing::error!(
                error = %e,
                required = self.state.required,
                "audit records can be stored neither in the database nor in the spool; {}",
                if self.state.required {
                    "new requests are refused (503) until they can ([audit] required)"
                } else {
                    "requests are served and these records are lost ([audit] required = false)"
                }
            );
        }
        if !self.state.required {
            self.count(&self.state.dropped, batch.len());
            return;
        }
        let excess = batch.len().saturating_sub(HELD_MAX);
        if excess > 0 {
            batch.drain(..excess);
            self.count(&self.state.dropped, excess);
        }
        self.held = batch;
        // Marked now, not at the end of the turn: the request path must
        // stop serving as soon as records cannot be kept.
        self.state.stalled.store(true, Ordering::Relaxed);
    }

    /// Moves up to a few batches from the spool into the database; empties
    /// the spool once all of it is there.
    async fn replay(&mut self) {
        for _ in 0..REPLAY_BATCHES_PER_TURN {
            let from = self.replay_offset;
            let read = self.on_spool(move |s| s.read_from(from, BATCH_MAX)).await;
            let (records, next) = match read {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "reading the audit spool failed; retrying");
                    self.back_off();
                    return;
                }
                None => return,
            };
            if records.is_empty() {
                self.finish_replay().await;
                return;
            }
            match write(&self.store, &records, &mut self.encoded).await {
                Ok(()) => {
                    self.db_up();
                    self.count(&self.state.written, records.len());
                    self.replay_offset = next;
                }
                Err(e) => {
                    self.db_failed(&e);
                    return;
                }
            }
        }
    }

    async fn finish_replay(&mut self) {
        match self.on_spool(|s| s.clear()).await {
            Some(Ok(())) => {
                tracing::info!("audit spool replayed into the database");
                self.spool_empty = true;
                self.replay_offset = 0;
                self.state.spool_bytes.store(0, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "emptying the replayed audit spool failed; retrying");
                self.back_off();
            }
            None => {}
        }
    }

    /// At shutdown: what is held goes to the database or the spool, with a
    /// few tries; only then is it counted lost.
    async fn finish(mut self) {
        for _ in 0..3 {
            self.store_held().await;
            if self.held.is_empty() {
                return;
            }
            tokio::time::sleep(RETRY_MIN).await;
            self.retry_at = Instant::now();
        }
        tracing::error!(
            lost = self.held.len(),
            "audit records lost at shutdown: neither the database nor the spool could take them"
        );
        self.count(&self.state.dropped, self.held.len());
    }

    fn db_failed(&mut self, e: &WriteError) {
        if !self.db_down {
            tracing::warn!(
                error = %e,
                "the database cannot take audit records: spooling them to disk until it is back"
            );
        }
        self.db_down = true;
        self.back_off();
    }

    fn db_up(&mut self) {
        if self.db_down {
            tracing::info!("the database takes audit records again");
        }
        self.db_down = false;
        self.retry_delay = RETRY_MIN;
    }

    fn back_off(&mut self) {
        self.retry_at = Instant::now() + self.retry_delay;
        self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
    }

    fn count(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Runs `f` on the spool on tokio's blocking pool: a write and its
    /// fsync must not stall a runtime worker that serves requests. `None`
    /// only if `f` panicked.
    async fn on_spool<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let spool = self.spool.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut guard = spool.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await;
        match joined {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "audit spool task failed");
                None
            }
        }
    }
}
