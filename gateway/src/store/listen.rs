//! Follows configuration changes made by any daemon on the database.
//!
//! Each write sends `NOTIFY airlock_config` in its transaction; this task
//! `LISTEN`s and reloads the snapshot on each. Notifications sent while the
//! connection was down are lost, so a reconnect also reloads.

use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;
use sqlx::postgres::PgListener;

use super::approvals::{ApprovalStatus, parse_decision_payload};
use super::{CHANGES_CHANNEL, Store};
use crate::policy::approvals::Approvals;
use crate::snapshot::SnapshotHandle;

/// Runs until `shutdown` fires.
pub async fn follow_changes(
    store: Store,
    snapshot: Arc<SnapshotHandle>,
    approvals: Arc<Approvals>,
    shutdown: Shutdown,
) {
    loop {
        let mut listener = match subscribe(&store).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for configuration changes; retrying");
                if shutdown.sleep_or_stop(Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        // Anything may have changed while we were not listening.
        reload(&store, &snapshot).await;
        loop {
            let received = tokio::select! {
                r = listener.try_recv() => r,
                () = shutdown.wait() => return,
            };
            match received {
                Ok(Some(note)) => {
                    let mut changed = dispatch(note.payload(), &approvals);
                    // Coalesce a burst of changes into one reload.
                    while let Ok(Ok(Some(next))) =
                        tokio::time::timeout(Duration::from_millis(5), listener.try_recv()).await
                    {
                        changed |= dispatch(next.payload(), &approvals);
                    }
                    if changed {
                        reload(&store, &snapshot).await;
                    }
                }
                Ok(None) => {
                    tracing::warn!("lost the change-notification connection; reconnecting");
                    reload(&store, &snapshot).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change notifications failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Routes one notification; true when the configuration changed.
fn dispatch(payload: &str, approvals: &Approvals) -> bool {
    match parse_decision_payload(payload) {
        Some((id, ApprovalStatus::Approved)) => approvals.resolve(id, true),
        Some((id, ApprovalStatus::Denied)) => approvals.resolve(id, false),
        // Held or expired, possibly by another daemon: the live queue
        // must hear of it.
        Some(_) => approvals.announce(),
        None => {
            tracing::debug!(what = payload, "configuration changed");
            return true;
        }
    }
    false
}

async fn subscribe(store: &Store) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(listener)
}

async fn reload(store: &Store, snapshot: &SnapshotHandle) {
    if let Err(e) = snapshot.reload(store).await {
        tracing::error!(error = %e, "reloading configuration failed; serving the previous snapshot");
    }
}
