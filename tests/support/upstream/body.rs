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

/// How much of each end of a request body the log keeps.
pub const BODY_ENDS: usize = 64 * 1024;

/// A request body as read: its length, whether it ended, and its first
/// and last [`BODY_ENDS`] bytes (so a test can see what arrived in a
/// body of any size without it being stored).
#[derive(Default)]
pub(super) struct Drained {
    pub(super) len: u64,
    pub(super) complete: bool,
    pub(super) head: Vec<u8>,
    pub(super) tail: Vec<u8>,
}

/// Reads a request body to its end, counting it and keeping its ends.
pub(super) async fn drain(mut body: Incoming) -> Drained {
    let mut d = Drained::default();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    keep_ends(&mut d.head, &mut d.tail, data);
                    d.len += data.len() as u64;
                }
            }
            Some(Err(_)) => return d,
            None => {
                d.complete = true;
                if d.tail.len() > BODY_ENDS {
                    d.tail.drain(..d.tail.len() - BODY_ENDS);
                }
                return d;
            }
        }
    }
}

/// Adds `data` to the kept ends of a body: its first [`BODY_ENDS`] bytes
/// in `head`, and at least its last ones in `tail` (trimmed to exactly
/// that once the body ends).
pub(super) fn keep_ends(head: &mut Vec<u8>, tail: &mut Vec<u8>, data: &[u8]) {
    let room = BODY_ENDS.saturating_sub(head.len());
    head.extend_from_slice(&data[..room.min(data.len())]);
    tail.extend_from_slice(data);
    if tail.len() > 2 * BODY_ENDS {
        tail.drain(..tail.len() - BODY_ENDS);
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
