//! Response bodies: whole, empty, or fed by a producer task; the byte
//! pattern of `/bytes` and `/chunked`; counting a request body.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::mpsc;

use super::streaming::MAX_CHUNK;

pub(super) type RespBody = BoxBody<Bytes, io::Error>;

pub(super) fn full(body: impl Into<Bytes>) -> RespBody {
    Full::new(body.into()).map_err(|e| match e {}).boxed()
}

pub(super) fn empty() -> RespBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A response body fed by a producer task through a small channel (so
/// memory stays flat and the producer stops when the client goes away).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    exact_len: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

pub(super) fn channel_body(exact_len: Option<u64>) -> (mpsc::Sender<Bytes>, RespBody) {
    let (tx, rx) = mpsc::channel(2);
    (tx, ChannelBody { rx, exact_len }.boxed())
}

/// Sleeps `d`, or returns `false` early if the body's receiver is gone.
pub(super) async fn pause(tx: &mpsc::Sender<Bytes>, d: Duration) -> bool {
    if d.is_zero() {
        return !tx.is_closed();
    }
    tokio::select! {
        _ = tx.closed() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Reads a request body to its end, counting (not storing) it.
pub(super) async fn drain(mut body: Incoming) -> (u64, bool) {
    let mut n = 0u64;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                }
            }
            Some(Err(_)) => return (n, false),
            None => return (n, true),
        }
    }
}

/// The byte at `offset` of the bodies of `/bytes` and `/chunked`
/// (`a`..`z` repeating).
pub fn pattern_byte(offset: u64) -> u8 {
    b'a' + (offset % 26) as u8
}

/// `len` bytes of the `/bytes` / `/chunked` body pattern starting at
/// `offset`; `pattern(0, size)` is the whole body of `/bytes?size=SIZE`.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(offset + i)).collect()
}

pub(super) fn pattern_slice(offset: u64, len: u64) -> Bytes {
    static BASE: OnceLock<Bytes> = OnceLock::new();
    let base = BASE.get_or_init(|| Bytes::from(pattern(0, (MAX_CHUNK + 26) as usize)));
    let start = (offset % 26) as usize;
    base.slice(start..start + len as usize)
}
