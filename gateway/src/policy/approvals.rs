//! Requests waiting for a person: the live side of held requests.
//!
//! A held request records a pending approval in an [`ApprovalBackend`],
//! then waits on a oneshot channel registered under its id. A decision
//! made through any daemon on the database commits the row and notifies
//! `approval:ID:STATUS`; every daemon's change listener calls
//! [`Approvals::resolve`], and the one that holds the request wakes it. No
//! answer within the timeout: the approval is marked expired and the
//! request refused.
//!
//! The backend is PostgreSQL's `approvals` table in the daemon
//! (`impl ApprovalBackend for Store`, in `store/approvals.rs`), and
//! [`MemoryApprovals`] where a gateway runs without a database (the
//! in-process tests). Both go through the same waiting, timeout and race
//! handling here, so what the tests exercise is what the daemon runs.
//!
//! Every change to the pending set that this daemon learns of (a hold, a
//! decision, an expiry, or another daemon's notification) bumps a counter
//! in a `watch` channel, so the dashboard's live queue is pushed to the
//! browser at once instead of being polled ([`Approvals::subscribe`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use crate::store::StoreError;
use crate::store::approvals::NewApproval;

/// How a held request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    Approved,
    Denied,
    TimedOut,
}

/// Why a request could not be held: the backend failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where held requests are recorded, so that a person (or another daemon)
/// can see and decide them. Deciding is not part of it: decisions come in
/// through [`Approvals::resolve`], from the API or the change listener.
pub trait ApprovalBackend: Send + Sync + fmt::Debug {
    /// Records a pending approval; returns its id.
    fn create<'a>(&'a self, new: NewApproval<'a>) -> BoxFuture<'a, Result<i64, ApprovalError>>;

    /// How approval `id` was decided; `None` while it is pending (or
    /// unknown).
    fn decision(&self, id: i64) -> BoxFuture<'_, Result<Option<ApprovalOutcome>, ApprovalError>>;

    /// Marks approval `id` expired; false if it was no longer pending (a
    /// decision landed first).
    fn expire(&self, id: i64) -> BoxFuture<'_, Result<bool, ApprovalError>>;
}

/// The held requests of this daemon: records each in the backend, wakes it
/// on a decision, expires it on timeout, and tells the live queue.
#[derive(Debug)]
pub struct Approvals {
    /// Where the pending approvals are recorded and read back.
    backend: Arc<dyn ApprovalBackend>,
    /// The requests this daemon holds, by approval id: how a decision
    /// reaches the one request waiting for it.
    waiting: Mutex<HashMap<i64, oneshot::Sender<bool>>>,
    /// How long a request waits for a person before it is refused.
    timeout: Duration,
    /// Bumped on every change to the pending set; only "something changed"
    /// matters, so a watch (which keeps the latest value) is enough.
    changes: watch::Sender<u64>,
}

impl Approvals {
    pub fn new(timeout: Duration, backend: Arc<dyn ApprovalBackend>) -> Self {
        Approvals {
            backend,
            waiting: Mutex::default(),
            timeout,
            changes: watch::Sender::new(0),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<i64, oneshot::Sender<bool>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a request until a decision or the timeout. Returns the
    /// approval's id and how it ended.
    pub async fn hold(
        &self,
        new: NewApproval<'_>,
    ) -> Result<(i64, ApprovalOutcome), ApprovalError> {
        let id = self.backend.create(new).await?;
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(id, tx);
        self.announce();
        // A decision may have landed between the insert and the register.
        match self.backend.decision(id).await? {
            Some(ApprovalOutcome::Approved) => self.resolve(id, true),
            Some(ApprovalOutcome::Denied) => self.resolve(id, false),
            Some(ApprovalOutcome::TimedOut) | None => {}
        }
        let outcome = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(true)) => ApprovalOutcome::Approved,
            Ok(Ok(false)) => ApprovalOutcome::Denied,
            Ok(Err(_)) | Err(_) => {
                self.waiting().remove(&id);
                if self.backend.expire(id).await? {
                    ApprovalOutcome::TimedOut
                } else {
                    // Decided at the last moment: honour the decision.
                    self.backend
                        .decision(id)
                        .await?
                        .unwrap_or(ApprovalOutcome::TimedOut)
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

/// One approval as [`MemoryApprovals`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryApproval {
    pub id: i64,
    pub agent: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub rule_id: i64,
    pub detail: Option<String>,
    /// `None` while pending.
    pub outcome: Option<ApprovalOutcome>,
}

/// Approvals kept in memory, for a gateway without a database (the
/// in-process tests): a test waits for a request to be held
/// ([`MemoryApprovals::next_pending`]) and decides it
/// ([`MemoryApprovals::decide`]), as a person would through the API.
#[derive(Debug)]
pub struct MemoryApprovals {
    /// Every approval ever created, in id order (ids start at 1).
    rows: Mutex<Vec<MemoryApproval>>,
    /// Bumped on each new approval, so a test can wait for one.
    created: watch::Sender<usize>,
}

impl Default for MemoryApprovals {
    fn default() -> Self {
        MemoryApprovals {
            rows: Mutex::default(),
            created: watch::Sender::new(0),
        }
    }
}

impl MemoryApprovals {
    fn rows(&self) -> MutexGuard<'_, Vec<MemoryApproval>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn row<T>(&self, id: i64, f: impl FnOnce(&mut MemoryApproval) -> T) -> Option<T> {
        let mut rows = self.rows();
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        rows.get_mut(index).map(f)
    }

    /// Every approval so far, oldest first.
    pub fn list(&self) -> Vec<MemoryApproval> {
        self.rows().clone()
    }

    /// The oldest pending approval, once there is one.
    pub async fn next_pending(&self) -> MemoryApproval {
        let mut created = self.created.subscribe();
        loop {
            let pending = self.rows().iter().find(|r| r.outcome.is_none()).cloned();
            if let Some(row) = pending {
                return row;
            }
            // The sender lives as long as `self`: this never fails here.
            let _ = created.changed().await;
        }
    }

    /// Approves or denies a pending approval and wakes its request, as
    /// `Service::decide_approval` does with the database; false if it is
    /// not pending (unknown, decided or expired).
    pub fn decide(&self, approvals: &Approvals, id: i64, approve: bool) -> bool {
        let outcome = if approve {
            ApprovalOutcome::Approved
        } else {
            ApprovalOutcome::Denied
        };
        let decided = self
            .row(id, |r| {
                r.outcome.is_none().then(|| r.outcome = Some(outcome))
            })
            .flatten()
            .is_some();
        if decided {
            approvals.resolve(id, approve);
        }
        decided
    }
}

impl ApprovalBackend for MemoryApprovals {
    fn create<'a>(&'a self, new: NewApproval<'a>) -> BoxFuture<'a, Result<i64, ApprovalError>> {
        let mut rows = self.rows();
        let id = i64::try_from(rows.len())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        rows.push(MemoryApproval {
            id,
            agent: new.agent.to_owned(),
            method: new.method.to_owned(),
            host: new.host.to_owned(),
            path: new.path.to_owned(),
            rule_id: new.rule_id,
            detail: new.detail.map(str::to_owned),
            outcome: None,
        });
        drop(rows);
        self.created.send_modify(|n| *n += 1);
        Box::pin(std::future::ready(Ok(id)))
    }

    fn decision(&self, id: i64) -> BoxFuture<'_, Result<Option<ApprovalOutcome>, ApprovalError>> {
        let outcome = self.row(id, |r| r.outcome).flatten();
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn expire(&self, id: i64) -> BoxFuture<'_, Result<bool, ApprovalError>> {
        let expired = self
            .row(id, |r| {
                r.outcome
                    .is_none()
                    .then(|| r.outcome = Some(ApprovalOutcome::TimedOut))
            })
            .flatten()
            .is_some();
        Box::pin(std::future::ready(Ok(expired)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> NewApproval<'static> {
        NewApproval {
            agent: "bot",
            method: "POST",
            host: "api.example.com",
            path: "/v1/pay",
            rule_id: 3,
            detail: None,
        }
    }

    fn setup(timeout: Duration) -> (Arc<Approvals>, Arc<MemoryApprovals>) {
        let memory = Arc::new(MemoryApprovals::default());
        let approvals = Arc::new(Approvals::new(timeout, memory.clone()));
        (approvals, memory)
    }

    #[tokio::test]
    async fn a_decision_wakes_the_held_request() {
        for approve in [true, false] {
            let (approvals, memory) = setup(Duration::from_secs(30));
            let waiter = tokio::spawn({
                let approvals = approvals.clone();
                async move { approvals.hold(held()).await.unwrap() }
            });
            let pending = memory.next_pending().await;
            assert_eq!((pending.agent.as_str(), pending.rule_id), ("bot", 3));
            assert!(memory.decide(&approvals, pending.id, approve));
            let expected = if approve {
                ApprovalOutcome::Approved
            } else {
                ApprovalOutcome::Denied
            };
            assert_eq!(waiter.await.unwrap(), (pending.id, expected));
            // Decided once only.
            assert!(!memory.decide(&approvals, pending.id, !approve));
        }
    }

    #[tokio::test]
    async fn no_answer_expires_the_approval() {
        let (approvals, memory) = setup(Duration::from_millis(20));
        let (id, outcome) = approvals.hold(held()).await.unwrap();
        assert_eq!(outcome, ApprovalOutcome::TimedOut);
        assert_eq!(memory.list()[0].outcome, Some(ApprovalOutcome::TimedOut));
        assert!(
            !memory.decide(&approvals, id, true),
            "expired stays expired"
        );
    }

    /// A backend whose approvals are decided the moment they are created:
    /// the decision lands before the request registers its wait.
    #[derive(Debug, Default)]
    struct DecidedAtOnce(MemoryApprovals);

    impl ApprovalBackend for DecidedAtOnce {
        fn create<'a>(&'a self, new: NewApproval<'a>) -> BoxFuture<'a, Result<i64, ApprovalError>> {
            Box::pin(async move {
                let id = self.0.create(new).await?;
                self.0
                    .row(id, |r| r.outcome = Some(ApprovalOutcome::Approved));
                Ok(id)
            })
        }
        fn decision(
            &self,
            id: i64,
        ) -> BoxFuture<'_, Result<Option<ApprovalOutcome>, ApprovalError>> {
            self.0.decision(id)
        }
        fn expire(&self, id: i64) -> BoxFuture<'_, Result<bool, ApprovalError>> {
            self.0.expire(id)
        }
    }

    #[tokio::test]
    async fn a_decision_before_the_wait_is_not_lost() {
        let approvals = Approvals::new(Duration::from_secs(30), Arc::new(DecidedAtOnce::default()));
        let (_, outcome) = approvals.hold(held()).await.unwrap();
        assert_eq!(outcome, ApprovalOutcome::Approved);
    }
}
