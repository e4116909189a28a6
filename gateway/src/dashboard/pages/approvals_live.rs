//! The approvals queue, live: `GET /approvals/events` is a server-sent
//! event stream that sends the queue's HTML (event `queue`) at once and
//! again whenever the pending set changes.
//!
//! "Changes" comes from [`crate::policy::approvals::Approvals::subscribe`],
//! which holds, decisions, expiries and other daemons' notifications all
//! bump; a slow fallback tick re-checks anyway, and a fragment identical to
//! the last one sent is not sent again. The stream ends when the session
//! does (the browser's reconnect then lands on the login page) or when the
//! daemon shuts down (graceful shutdown would otherwise wait for it).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use tokio::sync::watch;

use super::approvals::queue_html;
use crate::dashboard::DashState;
use crate::dashboard::session::SessionCtx;

/// Re-check this often even without a wake-up: a row another daemon
/// inserted before this one's listener connected is still found.
const FALLBACK: Duration = Duration::from_secs(5);

struct Live {
    state: DashState,
    changes: watch::Receiver<u64>,
    /// Ends the stream when this session ends.
    session: SessionCtx,
    csrf: String,
    last: Option<String>,
    first: bool,
}

impl Live {
    /// Waits for a reason to look again; false when the stream should end.
    async fn wait(&mut self) -> bool {
        if std::mem::take(&mut self.first) {
            return true;
        }
        tokio::select! {
            changed = self.changes.changed() => {
                if changed.is_err() {
                    // The sender is gone (shutting down): fall back to the tick.
                    return !self.state.shutdown.sleep_or_stop(FALLBACK).await;
                }
                true
            }
            () = tokio::time::sleep(FALLBACK) => true,
            () = self.state.shutdown.wait() => false,
        }
    }

    /// The next fragment to send, or `None` when the stream should end.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if !self.wait().await || !self.state.sessions.is_live(&self.session) {
                return None;
            }
            match queue_html(&self.state, &self.csrf).await {
                Ok(html) if self.last.as_deref() != Some(html.as_str()) => {
                    let event = Event::default().event("queue").data(&html);
                    self.last = Some(html);
                    return Some((Ok(event), self));
                }
                Ok(_) => {}
                // Keep the stream; the browser keeps showing the last queue.
                Err(e) => tracing::warn!(error = %e, "rendering the live approvals queue failed"),
            }
        }
    }
}

pub async fn events(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let live = Live {
        changes: state.service.approval_changes(),
        csrf: session.csrf.clone(),
        session,
        state,
        last: None,
        first: true,
    };
    Sse::new(stream::unfold(live, Live::next)).keep_alive(KeepAlive::default())
}
