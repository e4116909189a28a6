//! Response scrubbing: a value injected into a request never comes back
//! to the agent in the response: not in its head, its body or its
//! trailers.
//!
//! An upstream can hand an injected key straight back: a query-preserving
//! redirect puts the query (with its `key=`) into `Location`, many APIs
//! reflect request headers (request ids, CORS, debugging echoes), and error
//! pages and debug endpoints quote the `Authorization` they got. So every
//! value injected into the request is looked for in every response header
//! value (and name), in the body as it streams ([`super::scrub_body`]) and
//! in the trailers, and each occurrence is replaced by the secret's
//! placeholder `airlock:NAME`. A redirect-following client then re-sends
//! the placeholder, which the gateway judges again like any other (it
//! resolves only where its secret goes). The gateway's upstream client
//! never follows a redirect itself.
//!
//! What is looked for: what went on the wire. A header or query secret's
//! value (a header template's filled value, `Bearer sk-...`, holds it, so
//! it is covered by it); an OAuth2 secret's access token (the one sent,
//! cached or just renewed; for a replayed request both requests'); for an
//! AWS SigV4 secret only the access key id (the secret key goes only into
//! an HMAC). What counts as an occurrence: any spelling of the value a
//! server is likely to produce from it, in heads and bodies alike: raw,
//! percent-encoded (either hex case), `+` for a space, JSON-escaped (`\/`,
//! `\u00XX`, ...), mixed freely; see [`super::scrub_spelling`], the one
//! matcher. Not covered: other encodings (base64, double percent-encoding,
//! HTML entities), compressed bodies (the gateway asks for identity and
//! refuses a compressed answer instead: [`super::pipeline`]), and WebSocket
//! frames after a 101.
//!
//! The plaintexts are the very buffers the vault opened for the request
//! (zeroized on drop); a [`Scrubber`] lives until the response body ends
//! (or until the head is handed on, when the body is empty). Cost: with no
//! secret injected, nothing (the body is not even wrapped). Otherwise one
//! pass over the header and body bytes that skips to the next byte a match
//! could start with (an injected value's first byte, `%`, `\`, or `+` for
//! a leading space), so input without a match costs a table look-up per
//! byte and a few comparisons per candidate byte; a body frame is copied
//! only when it holds a match or joins a held-back tail.

use std::borrow::Cow;
use std::ops::Range;

use bytes::BytesMut;
use http::HeaderMap;
use http::header::HeaderValue;

use super::placeholder::PREFIX;
use super::scrub_spelling::{MAX_SPELLING, Spelled, escape_starts, spelled_at};
use crate::model::SecretName;
use crate::vault::Plaintext;

/// The values injected into one request, to take out of its response.
#[derive(Debug)]
pub struct Scrubber<'s> {
    /// Longest value first: where one value starts another (`sk-1` and
    /// `sk-12`), the longer is replaced whole.
    needles: Vec<Needle<'s>>,
    /// The bytes a match can start with, for any needle: its first byte
    /// and the escapes' first bytes (`%`, `\`, `+` for a leading space).
    /// The scan skips to the next such byte, so input without a match
    /// costs one table look-up per byte.
    starts: [bool; 256],
}

impl Default for Scrubber<'_> {
    fn default() -> Self {
        Scrubber {
            needles: Vec::new(),
            starts: [false; 256],
        }
    }
}

#[derive(Debug)]
struct Needle<'s> {
    /// Borrowed from the snapshot while the head is scrubbed; owned once
    /// the scrubber moves into the response body ([`Scrubber::into_owned`]).
    name: Cow<'s, SecretName>,
    plain: Plaintext,
    /// The part of `plain` that went into the request.
    sent: Range<usize>,
}

impl Needle<'_> {
    fn bytes(&self) -> &[u8] {
        self.plain
            .expose()
            .get(self.sent.clone())
            .unwrap_or_default()
    }
}

/// What one pass over some input found: the input's first `settled` bytes
/// are decided, and `out` is what they become (`None`: themselves).
pub struct Scan {
    pub out: Option<BytesMut>,
    pub settled: usize,
}

impl<'s> Scrubber<'s> {
    /// Remembers that `plain[sent]` went into the request for secret `name`.
    pub fn add(&mut self, name: &'s SecretName, plain: Plaintext, sent: Range<usize>) {
        self.push(Needle {
            name: Cow::Borrowed(name),
            plain,
            sent,
        });
    }

    fn push(&mut self, needle: Needle<'s>) {
        // An empty value would match everywhere; the vault never holds one.
        let Some(&first) = needle.bytes().first() else {
            return;
        };
        self.starts[usize::from(first)] = true;
        for &b in escape_starts(first) {
            self.starts[usize::from(b)] = true;
        }
        let len = needle.bytes().len();
        let at = self.needles.partition_point(|n| n.bytes().len() >= len);
        self.needles.insert(at, needle);
    }

    /// Adds what `other` holds (a replayed request's values: its response
    /// is scrubbed of both).
    pub fn extend(&mut self, other: Scrubber<'s>) {
        for needle in other.needles {
            self.push(needle);
        }
    }

    /// The same values, no longer borrowing the snapshot, to travel with
    /// the response body.
    pub fn into_owned(self) -> Scrubber<'static> {
        Scrubber {
            needles: self
                .needles
                .into_iter()
                .map(|n| Needle {
                    name: Cow::Owned(n.name.into_owned()),
                    plain: n.plain,
                    sent: n.sent,
                })
                .collect(),
            starts: self.starts,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// The most bytes a stream may have to hold back: one less than the
    /// longest spelling of the longest value.
    pub fn max_held(&self) -> usize {
        self.needles
            .first()
            .map_or(0, |n| n.bytes().len() * MAX_SPELLING - 1)
    }

    /// Replaces every injected value in `headers` (a head or trailers) by
    /// its placeholder, and drops any header whose name holds one. Returns
    /// how many headers were changed.
    pub fn response_head(&self, headers: &mut HeaderMap) -> usize {
        if self.needles.is_empty() {
            return 0;
        }
        let mut changed = 0;
        let named: Vec<_> = headers
            .keys()
            .filter(|n| {
                self.needles
                    .iter()
                    .any(|s| contains_ignore_case(n.as_str().as_bytes(), s.bytes()))
            })
            .cloned()
            .collect();
        for name in named {
            headers.remove(&name);
            changed += 1;
        }
        for value in headers.values_mut() {
            if let Some(clean) = self.value(value.as_bytes()) {
                *value = clean;
                changed += 1;
            }
        }
        changed
    }

    /// `value` with every injected value replaced, or `None` if it holds none.
    fn value(&self, value: &[u8]) -> Option<HeaderValue> {
        let buf = self.scan(value, true).out?;
        // The placeholder is plain ASCII, so this only fails if the input
        // was not a valid value to begin with; then leave nothing of it.
        Some(
            HeaderValue::from_maybe_shared(buf.freeze())
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        )
    }

    /// One left-to-right pass over `hay`: each spelling of a value becomes
    /// its placeholder. Unless `complete`, the pass stops at the first
    /// position where the input ends before a match can be told (the rest
    /// is held back by a stream until more arrives); the result is then
    /// the same however the input is cut.
    pub fn scan(&self, hay: &[u8], complete: bool) -> Scan {
        let mut out: Option<BytesMut> = None;
        let mut copied = 0;
        let mut at = 0;
        while let Some(skip) = hay
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| self.starts[usize::from(b)]))
        {
            at += skip;
            let mut hit = None;
            for needle in &self.needles {
                match spelled_at(hay, at, needle.bytes(), complete) {
                    Spelled::Match(len) => {
                        hit = Some((needle, len));
                        break;
                    }
                    Spelled::Partial => {
                        return finish(out, hay, copied, at);
                    }
                    Spelled::No => {}
                }
            }
            let Some((needle, len)) = hit else {
                at += 1;
                continue;
            };
            let buf = out.get_or_insert_with(|| BytesMut::with_capacity(hay.len()));
            buf.extend_from_slice(&hay[copied..at]);
            buf.extend_from_slice(PREFIX.as_bytes());
            buf.extend_from_slice(needle.name.as_str().as_bytes());
            at += len;
            copied = at;
        }
        finish(out, hay, copied, hay.len())
    }
}

/// The scan's result when `hay[..settled]` is decided and `hay[..copied]`
/// already in `out`.
fn finish(out: Option<BytesMut>, hay: &[u8], copied: usize, settled: usize) -> Scan {
    let out = out.map(|mut buf| {
        buf.extend_from_slice(&hay[copied..settled]);
        buf
    });
    Scan { out, settled }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> SecretName {
        SecretName::parse(n).unwrap()
    }

    fn scrubbed(value: &str, secrets: &[(&SecretName, &str)]) -> String {
        let mut s = Scrubber::default();
        for (name, v) in secrets {
            s.add(name, Plaintext::new(v.as_bytes().to_vec()), 0..v.len());
        }
        let mut h = HeaderMap::new();
        h.insert("location", HeaderValue::from_str(value).unwrap());
        s.response_head(&mut h);
        h["location"].to_str().unwrap().to_owned()
    }

    #[test]
    fn every_spelling_of_the_value_is_replaced() {
        let q = name("q");
        let v = "k y/+=Z";
        for spelling in [
            "k y/+=Z",
            "k%20y%2F%2B%3DZ",
            "k%20y%2f%2b%3dZ",
            "k+y%2F%2B%3DZ",
            "%6B%20%79/+%3dZ",
        ] {
            let out = scrubbed(&format!("/a?x=1&key={spelling}&b=2"), &[(&q, v)]);
            assert_eq!(out, "/a?x=1&key=airlock:q&b=2", "{spelling}");
        }
    }

    #[test]
    fn several_values_and_occurrences() {
        let (a, b) = (name("a"), name("b"));
        let out = scrubbed("AAA-1 x BBB-2 y AAA-1", &[(&a, "AAA-1"), (&b, "BBB-2")]);
        assert_eq!(out, "airlock:a x airlock:b y airlock:a");
        assert_eq!(scrubbed("AAA-", &[(&a, "AAA-1")]), "AAA-");
        assert_eq!(scrubbed("100%25 done", &[(&a, "%25")]), "100airlock:a done");
    }

    #[test]
    fn names_holding_a_value_are_dropped_and_clean_heads_untouched() {
        let a = name("a");
        let mut s = Scrubber::default();
        s.add(&a, Plaintext::new(b"Sk-Live1".to_vec()), 0..8);
        let mut h = HeaderMap::new();
        h.insert("x-sk-live1", HeaderValue::from_static("1"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.insert("x-request-id", HeaderValue::from_static("%%%+ 12"));
        assert_eq!(s.response_head(&mut h), 1);
        assert!(!h.contains_key("x-sk-live1"));
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["x-request-id"], "%%%+ 12");
        // Only the range that was sent counts (SigV4: the access key id).
        let mut s = Scrubber::default();
        s.add(&a, Plaintext::new(b"AKID:SECRET".to_vec()), 0..4);
        let mut h = HeaderMap::new();
        h.insert("x-echo", HeaderValue::from_static("Credential=AKID/2026"));
        s.response_head(&mut h);
        assert_eq!(h["x-echo"], "Credential=airlock:a/2026");
    }

    #[test]
    fn never_panics_on_odd_values() {
        let a = name("a");
        for v in ["%", "%5", "%zz", "+", "", "%%51"] {
            let _ = scrubbed(v, &[(&a, "Q")]);
            let _ = scrubbed(v, &[(&a, "%")]);
        }
        assert_eq!(scrubbed("%%51", &[(&a, "Q")]), "%airlock:a");
    }
}
