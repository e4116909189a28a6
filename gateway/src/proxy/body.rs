//! Bodies that stream through the gateway: counted, never buffered.
//!
//! [`Counted`] wraps a body, adds the bytes of each data frame to a shared
//! counter (for the audit record) and, for responses, fails the stream if
//! the upstream sends nothing for the idle timeout. [`ProxyBody`] is the
//! one body type the gateway answers agents with: an upstream's streamed
//! body (scrubbed of injected values, [`super::scrub_body`]), or a short
//! body the gateway wrote itself.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tokio::time::{Instant, Sleep};

/// Errors a streamed body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}")]
pub struct IdleTimeout(Duration);

/// The bytes one request moved each way: counted by its two bodies as
/// they stream, read by its audit record when it ends. Both counters
/// share one allocation, made once per request.
#[derive(Debug, Default)]
pub struct Traffic {
    up: AtomicU64,
    down: AtomicU64,
}

impl Traffic {
    /// Bytes sent upstream so far.
    pub fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    /// Bytes sent back to the agent so far.
    pub fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }
}

/// Which way a [`ByteCounter`] counts.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Agent to upstream.
    Up,
    /// Upstream to agent.
    Down,
}

/// One of a request's two [`Traffic`] counters.
#[derive(Debug, Clone)]
pub struct ByteCounter {
    traffic: Arc<Traffic>,
    direction: Direction,
}

impl ByteCounter {
    pub fn new(traffic: Arc<Traffic>, direction: Direction) -> Self {
        ByteCounter { traffic, direction }
    }

    pub fn add(&self, bytes: u64) {
        let counter = match self.direction {
            Direction::Up => &self.traffic.up,
            Direction::Down => &self.traffic.down,
        };
        counter.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A body that counts its data bytes into `counter`.
pub struct Counted<B> {
    inner: B,
    counter: ByteCounter,
    idle: Option<Idle>,
}

/// The idle timer of a response body. It is armed only when the body
/// waits (most small responses never do) and re-armed on the next wait
/// after a frame, rather than reset on every frame: each arming is a
/// timer-wheel operation, and the first one an allocation.
struct Idle {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<B> Counted<B> {
    pub fn new(inner: B, counter: ByteCounter) -> Self {
        Counted {
            inner,
            counter,
            idle: None,
        }
    }

    /// Ends the body with an error when no frame arrives within `timeout`
    /// of the body starting to wait for one.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = Some(Idle {
            timeout,
            sleep: None,
            armed: false,
        });
        self
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(idle) = &mut this.idle {
                    idle.armed = false;
                }
                if let Some(Ok(f)) = &frame
                    && let Some(data) = f.data_ref()
                {
                    this.counter.add(data.len() as u64);
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                if let Some(idle) = &mut this.idle
                    && let Some(sleep) = idle.arm()
                {
                    ready!(sleep.poll(cx));
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout(idle.timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Idle {
    /// The timer, counting from now unless it already counts this wait.
    fn arm(&mut self) -> Option<Pin<&mut Sleep>> {
        let timeout = self.timeout;
        let was_armed = std::mem::replace(&mut self.armed, true);
        match &mut self.sleep {
            Some(sleep) if !was_armed => sleep.as_mut().reset(Instant::now() + timeout),
            Some(_) => {}
            None => self.sleep = Some(Box::pin(tokio::time::sleep(timeout))),
        }
        self.sleep.as_mut().map(Pin::as_mut)
    }
}

/// What the gateway answers an agent with.
pub enum ProxyBody {
    /// The upstream's response, streamed.
    Upstream(
        super::scrub_body::Scrubbed<Counted<super::upstream::UpstreamBody>>,
        Option<Box<super::record::AuditGuard>>,
    ),
    /// A short body written by the gateway (errors, 200 to CONNECT).
    Local(Full<Bytes>),
}

impl ProxyBody {
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Local(Full::new(bytes.into()))
    }

    pub fn empty() -> Self {
        ProxyBody::Local(Full::new(Bytes::new()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body, guard) => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                match &frame {
                    // The end: record the request now, not when the
                    // connection eventually drops the body.
                    None => drop(guard.take()),
                    Some(Err(e)) => {
                        if let Some(g) = guard.as_mut() {
                            g.note_stream_error(&**e);
                        }
                        drop(guard.take());
                    }
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
            ProxyBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body, _) => body.is_end_stream(),
            ProxyBody::Local(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body, _) => body.size_hint(),
            ProxyBody::Local(full) => full.size_hint(),
        }
    }
}
