//! Requests waiting for a person: the live side of the `approvals` table.
//!
//! A held request inserts a pending row, then waits on a oneshot channel
//! registered under the row's id. A decision made through any daemon on
//! the database commits the row and notifies `approval:ID:STATUS`; every
//! daemon's change listener calls [`Approvals::resolve`], and the one that
//! holds the request wakes it. No answer within the timeout: the row is
//! marked expired and the request refused.
//!
//! Every change to the pending set that this daemon learns of (a hold, a
//! decision, an expiry, or another daemon's notification) bumps a counter
//! in a `watch` channel, so the dashboard's live queue is pushed to the
//! browser at once instead of being polled ([`Approvals::subscribe`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::store::approvals::{ApprovalStatus, NewApproval};
use crate::store::{Store, StoreError};

/// How a held request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    Approved,
    Denied,
    TimedOut,
}

#[derive(Debug)]
pub struct Approvals {
    waiting: Mutex<HashMap<i64, oneshot::Sender<bool>>>,
    timeout: Duration,
    /// Bumped on every change to the pending set; only "something changed"
    /// matters, so a watch (which keeps the latest value) is enough.
    changes: watch::Sender<u64>,
}

impl Approvals {
    pub fn new(timeout: Duration) -> Self {
        Approvals {
            waiting: Mutex::default(),
            timeout,
            changes: watch::Sender::new(0),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<i64, oneshot::Sender<bool>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a request until a decision or the timeout. Returns the
    /// approval's id and how it ended.
    pub async fn hold(
        &self,
        store: &Store,
        new: NewApproval<'_>,
    ) -> Result<(i64, ApprovalOutcome), StoreError> {
        let id = store.insert_approval(new).await?;
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(id, tx);
        self.announce();
        // A decision may have landed between the insert and the register.
        match store.approval_status(id).await? {
            Some(ApprovalStatus::Approved) => self.resolve(id, true),
            Some(ApprovalStatus::Denied) => self.resolve(id, false),
            _ => {}
        }
        let outcome = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(true)) => ApprovalOutcome::Approved,
            Ok(Ok(false)) => ApprovalOutcome::Denied,
            Ok(Err(_)) | Err(_) => {
                self.waiting().remove(&id);
                match store.decide_approval(id, ApprovalStatus::Expired).await {
                    Ok(_) => ApprovalOutcome::TimedOut,
                    // Decided at the last moment: honour the decision.
                    Err(StoreError::NotFound { .. }) => match store.approval_status(id).await? {
                        Some(ApprovalStatus::Approved) => ApprovalOutcome::Approved,
                        Some(ApprovalStatus::Denied) => ApprovalOutcome::Denied,
                        _ => ApprovalOutcome::TimedOut,
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        // A timeout expired the row here; a decision announced already,
        // but one more wake-up is harmless.
        self.announce();
        Ok((id, outcome))
    }

    /// Wakes the request waiting on `id`, if this daemon holds it. The
    /// pending set changed either way.
    pub fn resolve(&self, id: i64, approved: bool) {
        if let Some(tx) = self.waiting().remove(&id) {
            let _ = tx.send(approved);
        }
        self.announce();
    }

    /// Tells subscribers that the pending set may have changed.
    pub fn announce(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes whenever the pending set may have changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
