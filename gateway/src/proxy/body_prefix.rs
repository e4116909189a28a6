//! Reading the start of a request body for body rules
//! ([`crate::policy::body`]), then sending it on unchanged.
//!
//! Decisions:
//! - **Bounded.** At most `limit` bytes (the largest limit among the
//!   rules that could concern the request) plus the frame that crossed
//!   it are held; a body longer than that is judged unreadable by every
//!   rule, never read further before the decision. A `Content-Length`
//!   over the limit says so without reading a byte.
//! - **Unchanged.** What was read is sent first, frame by frame as it
//!   came, then the rest as it streams ([`Prefixed`]); nothing is
//!   re-encoded, so the upstream reads exactly what was judged.
//! - **Timed.** Each frame must come within the gateway's idle timeout:
//!   an agent that stops sending cannot hold the decision open forever.
//! - **Compressed bodies** (`Content-Encoding` other than identity) are
//!   not read: they are unreadable as sent.
//! - **Refused unread.** A body refused before it was all read is drained
//!   (at most [`DRAIN_LIMIT`] bytes, for [`DRAIN_TIME`]) before the answer:
//!   a connection closed on unread data is reset, and the reset can reach
//!   the agent before the refusal does. An agent that waits for `100
//!   Continue` has sent nothing, and is not asked to.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::error::ProxyError;
use crate::policy::BodyRead;
use crate::policy::body::Unreadable;

/// A body whose first frames were read already: those, then the rest.
pub struct Prefixed<B = Incoming> {
    head: VecDeque<Frame<Bytes>>,
    /// The bytes in `head`'s data frames, for the size hint.
    head_len: u64,
    rest: B,
}

impl<B: Body> Prefixed<B> {
    /// A body nothing was read from.
    pub fn unread(rest: B) -> Self {
        Prefixed {
            head: VecDeque::new(),
            head_len: 0,
            rest,
        }
    }
}

/// Reads up to `limit` bytes of `body` (each frame within `idle`) and
/// says what body rules can make of them.
pub async fn read<B>(
    body: B,
    headers: &HeaderMap,
    limit: u32,
    idle: Duration,
) -> Result<(Prefixed<B>, BodyRead), ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut out = Prefixed::unread(body);
    let encoded = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|c| !c.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Ok((out, BodyRead::unreadable(Unreadable::Encoded)));
    }
    let limit = limit as usize;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok((out, BodyRead::new(Bytes::new(), false)));
    }
    let mut prefix = BytesMut::new();
    let mut complete = out.rest.is_end_stream();
    while !complete && prefix.len() <= limit {
        let frame = tokio::time::timeout(idle, out.rest.frame())
            .await
            .map_err(|_| {
                ProxyError::BadRequest(format!(
                    "the request body stopped arriving for {}s while a rule was reading it",
                    idle.as_secs()
                ))
            })?;
        match frame {
            None => complete = true,
            Some(Err(e)) => {
                return Err(ProxyError::BadRequest(format!(
                    "the request body could not be read: {e}"
                )));
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    prefix.extend_from_slice(data);
                    out.head_len += data.len() as u64;
                } else {
                    // Trailers: the body is over.
                    complete = true;
                }
                out.head.push_back(frame);
                complete = complete || out.rest.is_end_stream();
            }
        }
    }
    let within = complete && prefix.len() <= limit;
    let read = BodyRead::new(prefix.freeze(), within);
    Ok((out, read))
}

/// The most of a refused body read and thrown away.
pub const DRAIN_LIMIT: u64 = 1024 * 1024;
/// The longest a refused body is drained.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and discards the rest of a refused body, within the bounds.
pub async fn drain<B>(body: Prefixed<B>, headers: &HeaderMap)
where
    B: Body<Data = Bytes> + Unpin,
{
    let expects_continue = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return;
    }
    let mut rest = body.rest;
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while read <= DRAIN_LIMIT {
            match rest.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    })
    .await;
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.head.pop_front() {
            if let Some(data) = frame.data_ref() {
                this.head_len -= data.len() as u64;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + self.head_len);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + self.head_len);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
    >;

    fn chunks(parts: &[&[u8]]) -> Chunks {
        let frames: Vec<_> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::copy_from_slice(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    const IDLE: Duration = Duration::from_secs(5);

    async fn all<B: Body<Data = Bytes> + Unpin>(body: Prefixed<B>) -> Vec<u8>
    where
        B::Error: std::fmt::Debug,
    {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_and_sent_unchanged() {
        let body = chunks(&[b"{\"method\":", b"\"tools/list\"}"]);
        let (out, read) = read(body, &HeaderMap::new(), 64, IDLE).await.unwrap();
        assert!(read.complete);
        assert_eq!(
            read.jsonrpc().unwrap().messages[0].method.as_deref(),
            Some("tools/list")
        );
        assert_eq!(all(out).await, b"{\"method\":\"tools/list\"}");
    }

    #[tokio::test]
    async fn a_longer_body_is_read_only_past_the_limit_then_streamed() {
        let parts: Vec<Vec<u8>> = (0..100).map(|i| vec![b'a' + (i % 26) as u8; 10]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let (out, read) = read(chunks(&refs), &HeaderMap::new(), 25, IDLE)
            .await
            .unwrap();
        assert!(!read.complete);
        // Three frames of ten crossed 25 bytes; no more was read.
        assert_eq!(read.len(), 30);
        assert_eq!(out.head.len(), 3);
        assert_eq!(all(out).await, parts.concat());
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_reads_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "1000".parse().unwrap());
        let (out, read) = read(chunks(&[b"x"]), &headers, 10, IDLE).await.unwrap();
        assert!(!read.complete);
        assert!(out.head.is_empty());
    }

    #[tokio::test]
    async fn a_compressed_body_is_not_read() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let (out, read) = read(chunks(&[b"x"]), &headers, 10, IDLE).await.unwrap();
        assert_eq!(read.jsonrpc().unwrap_err(), Unreadable::Encoded);
        assert!(out.head.is_empty());
    }

    #[tokio::test]
    async fn a_refused_body_is_drained_within_bounds() {
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = (0..3)
            .map(|_| Ok(Frame::data(Bytes::from_static(b"rest"))))
            .collect();
        let counted =
            futures_util::StreamExt::inspect(futures_util::stream::iter(frames), move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        drain(
            Prefixed::unread(StreamBody::new(counted)),
            &HeaderMap::new(),
        )
        .await;
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 3);
        // One that waits for 100 Continue is left alone.
        let mut headers = HeaderMap::new();
        headers.insert(http::header::EXPECT, "100-continue".parse().unwrap());
        let stalled = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >());
        let started = std::time::Instant::now();
        drain(Prefixed::unread(stalled), &headers).await;
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let body = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >());
        let r = read(body, &HeaderMap::new(), 10, Duration::from_millis(50)).await;
        assert!(matches!(r, Err(ProxyError::BadRequest(_))));
    }
}
