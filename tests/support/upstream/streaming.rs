//! The endpoints whose bodies stream: server-sent events, chunks, a sized
//! download, gRPC-style trailers, and a body that never comes.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, header};
use http_body_util::BodyExt;
use hyper::body::Frame;

use super::STALL_CAP;
use super::body::{RespBody, channel_body, pattern_slice, pause};
use super::endpoints::Query;

/// Limits on the query parameters of the streaming endpoints.
const MAX_N: u64 = 100_000;
pub(super) const MAX_CHUNK: u64 = 4 << 20;
const MAX_TOTAL_BYTES: u64 = 64 << 30;
const MAX_INTERVAL_MS: u64 = 60_000;
/// Frame size of `/bytes`.
const STREAM_CHUNK: u64 = 1 << 20;

pub(super) fn sse(q: &Query) -> Result<Response<RespBody>, String> {
    let n = q.num("n", 5, MAX_N)?;
    let interval = Duration::from_millis(q.num("interval_ms", 100, MAX_INTERVAL_MS)?);
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        for i in 0..n {
            if i > 0 && !pause(&tx, interval).await {
                return;
            }
            if tx
                .send(Bytes::from(format!("data: {i}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("response"))
}

/// A gRPC-shaped answer: one length-prefixed message, then trailers
/// (`grpc-status: 0`), which only survive a proxy that passes HTTP/2
/// trailers through.
pub(super) fn grpc() -> Response<RespBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("echo-ok"));
    let frames = vec![
        Ok::<_, io::Error>(Frame::data(Bytes::from_static(
            b"\x00\x00\x00\x00\x05hello",
        ))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(body)
        .expect("response")
}

pub(super) fn chunked(q: &Query) -> Result<Response<RespBody>, String> {
    let n = q.num("n", 4, MAX_N)?;
    let size = q.num("size", 16, MAX_CHUNK)?;
    let interval = Duration::from_millis(q.num("interval_ms", 0, MAX_INTERVAL_MS)?);
    if n.saturating_mul(size) > MAX_TOTAL_BYTES {
        return Err("n*size too large".to_owned());
    }
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        for i in 0..n {
            if i > 0 && !pause(&tx, interval).await {
                return;
            }
            if size > 0 && tx.send(pattern_slice(i * size, size)).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .expect("response"))
}

pub(super) fn bytes_endpoint(q: &Query) -> Result<Response<RespBody>, String> {
    let size = q.num("size", 1024, MAX_TOTAL_BYTES)?;
    let (tx, body) = channel_body(Some(size));
    tokio::spawn(async move {
        let mut off = 0u64;
        while off < size {
            let len = STREAM_CHUNK.min(size - off);
            if tx.send(pattern_slice(off, len)).await.is_err() {
                return;
            }
            off += len;
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .expect("response"))
}

/// Headers now, body never (until the client leaves or [`STALL_CAP`]).
pub(super) fn stall() -> Response<RespBody> {
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        let _ = pause(&tx, STALL_CAP).await;
        drop(tx);
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .expect("response")
}
