//! Response-body scrubbing: the body streams through [`Scrubbed`], which
//! replaces every spelling of an injected value by its placeholder, frame
//! by frame, with a bounded look-ahead (see [`super::scrub`] for what is
//! covered and why).
//!
//! The hold-back rule: of each data frame, everything is passed on at once
//! except its longest tail that is still the unfinished start of a
//! spelling of a value (`…sk-li` when `sk-live-1` was injected, or a
//! trailing `%4` / `\u00`); that tail waits for the next frame and is
//! scanned again joined to it, so a value cut anywhere between frames is
//! still caught, and the output is the same however the body was cut. A
//! tail is at most (longest value × 6 − 1) bytes, the longest spelling
//! (`\u00XX` per byte) less one, so memory is bounded whatever the body's
//! size. At the end of the body, or before trailers, the held tail is
//! scanned as final and passed on. A frame that ends in no such tail
//! (an SSE event ends in `\n\n`) is passed on whole, at once, and, when it
//! holds no value, without a copy. An error from the upstream ends the
//! body at once; a held tail is dropped with it.
//!
//! Trailers are scrubbed like a head. A body the gateway does not scrub
//! (nothing was injected) is the inner body untouched: no copy, no scan,
//! its size hint kept.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::body::BoxError;
use super::scrub::Scrubber;

/// A response body, scrubbed of the injected values when it has any.
pub struct Scrubbed<B> {
    inner: B,
    /// `None` when nothing was injected: the body passes through.
    scrub: Option<Box<BodyScrub>>,
}

/// The state of one scrubbed body, frame by frame (public for the `scrub`
/// fuzz target, which cuts bodies anywhere).
pub struct BodyScrub {
    scrubber: Scrubber<'static>,
    /// The tail of what arrived that may still start a value.
    held: BytesMut,
    /// Trailers that arrived while a tail was held: they follow it.
    trailers: Option<http::HeaderMap>,
    /// The inner body has ended (its `None`, or trailers, seen).
    ended: bool,
}

impl<B> Scrubbed<B> {
    pub fn passthrough(inner: B) -> Self {
        Scrubbed { inner, scrub: None }
    }

    /// Scrubs the body of what `scrubber` holds (nothing changes if it
    /// holds nothing).
    pub fn scrub_with(&mut self, scrubber: Scrubber<'static>) {
        if scrubber.is_empty() {
            return;
        }
        self.scrub = Some(Box::new(BodyScrub::new(scrubber)));
    }

    pub fn is_scrubbed(&self) -> bool {
        self.scrub.is_some()
    }
}

impl BodyScrub {
    pub fn new(scrubber: Scrubber<'static>) -> Self {
        BodyScrub {
            scrubber,
            held: BytesMut::new(),
            trailers: None,
            ended: false,
        }
    }

    /// How many bytes are held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The most that can be held back: see [`Scrubber::max_held`].
    pub fn max_held(&self) -> usize {
        self.scrubber.max_held()
    }

    /// The frame that passes on of `data`, joined to what was held; `None`
    /// when all of it is held.
    pub fn data(&mut self, data: Bytes) -> Option<Bytes> {
        if self.held.is_empty() {
            let scan = self.scrubber.scan(&data, false);
            if scan.settled < data.len() {
                self.held.extend_from_slice(&data[scan.settled..]);
            }
            return match scan.out {
                Some(out) => Some(out.freeze()),
                None if scan.settled == 0 => None,
                None => Some(data.slice(..scan.settled)),
            };
        }
        self.held.extend_from_slice(&data);
        let scan = self.scrubber.scan(&self.held, false);
        let out = match scan.out {
            Some(out) => out.freeze(),
            None => Bytes::copy_from_slice(&self.held[..scan.settled]),
        };
        self.held.advance(scan.settled);
        debug_assert!(self.held.len() <= self.scrubber.max_held());
        (!out.is_empty()).then_some(out)
    }

    /// `data` scanned whole, on its own: a WebSocket control frame's
    /// payload, which may arrive between the frames of a message; what is
    /// held for the message stays held.
    pub fn whole<'d>(&self, data: &'d [u8]) -> std::borrow::Cow<'d, [u8]> {
        match self.scrubber.scan(data, true).out {
            Some(out) => std::borrow::Cow::Owned(out.to_vec()),
            None => std::borrow::Cow::Borrowed(data),
        }
    }

    /// What was held, scanned as the end of the body.
    pub fn flush(&mut self) -> Option<Bytes> {
        if self.held.is_empty() {
            return None;
        }
        let held = self.held.split().freeze();
        let scan = self.scrubber.scan(&held, true);
        Some(scan.out.map_or(held, BytesMut::freeze))
    }
}

impl<B> Body for Scrubbed<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(stream) = this.scrub.as_deref_mut() else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        loop {
            if stream.ended {
                if let Some(tail) = stream.flush() {
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
                return Poll::Ready(stream.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => {
                    stream.ended = true;
                    continue;
                }
                Some(Err(e)) => {
                    stream.held.clear();
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    if let Some(out) = stream.data(data) {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Err(frame) => {
                    if let Ok(mut trailers) = frame.into_trailers() {
                        stream.scrubber.response_head(&mut trailers);
                        stream.trailers = Some(trailers);
                        stream.ended = true;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.scrub {
            None => self.inner.is_end_stream(),
            Some(s) => {
                s.held.is_empty() && s.trailers.is_none() && (s.ended || self.inner.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.scrub {
            None => self.inner.size_hint(),
            // A placeholder is rarely as long as the value it replaces.
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "scrub_body_tests.rs"]
mod tests;
