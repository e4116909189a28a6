//! The streaming scrubber: the same output however the body is cut, a
//! bounded hold-back, prompt frames, trailers.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;

use super::*;
use crate::model::SecretName;
use crate::vault::Plaintext;

fn names(list: &[&str]) -> Vec<SecretName> {
    list.iter().map(|n| SecretName::parse(n).unwrap()).collect()
}

fn scrubber<'s>(names: &'s [SecretName], values: &[&str]) -> Scrubber<'s> {
    let mut s = Scrubber::default();
    for (name, v) in names.iter().zip(values) {
        s.add(name, Plaintext::new(v.as_bytes().to_vec()), 0..v.len());
    }
    s
}

fn stream(s: Scrubber<'_>) -> BodyScrub {
    BodyScrub::new(s.into_owned())
}

/// What the agent gets when the body arrives cut at `cuts`.
fn through(st: &mut BodyScrub, body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&body.len())) {
        if let Some(b) = st.data(Bytes::copy_from_slice(&body[from..to])) {
            out.extend_from_slice(&b);
        }
        assert!(st.held() <= st.max_held());
        from = to;
    }
    if let Some(b) = st.flush() {
        out.extend_from_slice(&b);
    }
    out
}

fn whole(s: &Scrubber<'_>, body: &[u8]) -> Vec<u8> {
    s.scan(body, true).out.map_or(body.to_vec(), |b| b.to_vec())
}

#[test]
fn a_value_cut_at_any_offset_is_caught() {
    let n = names(&["up"]);
    let value = "sk-live/9 x";
    let bodies = [
        format!("{{\"auth\":\"Bearer {value}\"}}"),
        "{\"auth\":\"Bearer sk-live\\/9 x\"}".to_owned(),
        "GET /a?k=sk-live%2F9+x HTTP".to_owned(),
        "\\u0073k-live\\u002f9%20x".to_owned(),
        format!("{value}{value}"),
    ];
    for body in &bodies {
        let s = scrubber(&n, &[value]);
        let expect = whole(&s, body.as_bytes());
        let expect_text = String::from_utf8(expect.clone()).unwrap();
        assert!(expect_text.contains("airlock:up"), "{body}");
        assert!(!expect_text.contains("sk-live"), "{body}: {expect_text}");
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let mut st = stream(scrubber(&n, &[value]));
                let got = through(&mut st, body.as_bytes(), &[a, b]);
                assert_eq!(got, expect, "{body} cut at {a}, {b}");
            }
        }
    }
}

#[test]
fn overlapping_values_and_near_misses() {
    let n = names(&["short", "long", "other"]);
    let values = ["sk-1", "sk-12345", "12345-z"];
    let cases = [
        ("sk-12345", "airlock:long"),
        ("sk-1234", "airlock:short234"),
        ("sk-12345-z", "airlock:long-z"),
        ("x12345-zsk-1", "xairlock:otherairlock:short"),
        ("sk-sk-1%", "sk-airlock:short%"),
        ("%%%\\\\\\u00", "%%%\\\\\\u00"),
        ("sk-\\u0031", "airlock:short"),
    ];
    for (body, expect) in cases {
        let s = scrubber(&n, &values);
        assert_eq!(whole(&s, body.as_bytes()), expect.as_bytes(), "{body}");
        for cut in 0..=body.len() {
            let mut st = stream(scrubber(&n, &values));
            let got = through(&mut st, body.as_bytes(), &[cut]);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                expect,
                "{body} cut at {cut}"
            );
        }
    }
}

/// A pseudo-random body built from pieces of the values, their escapes
/// and noise, cut in pseudo-random places: always the whole-body answer.
#[test]
fn random_bodies_and_cuts_match_the_whole_body_answer() {
    let n = names(&["a", "b"]);
    let values = ["k%y/Z", "k%y"];
    let pieces: [&[u8]; 12] = [
        b"k", b"%", b"y", b"/", b"Z", b"%25", b"%2F", b"\\/", b"\\u006B", b"%", b"\\", b"q",
    ];
    let mut seed = 0x2545_f491_u64;
    let mut next = |m: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m as u64) as usize
    };
    for _ in 0..3000 {
        let mut body = Vec::new();
        for _ in 0..next(20) {
            body.extend_from_slice(pieces[next(pieces.len())]);
        }
        let mut cuts: Vec<usize> = (0..next(4)).map(|_| next(body.len() + 1)).collect();
        cuts.sort_unstable();
        let s = scrubber(&n, &values);
        let expect = whole(&s, &body);
        let mut st = stream(scrubber(&n, &values));
        assert_eq!(through(&mut st, &body, &cuts), expect, "{body:?} {cuts:?}");
    }
}

#[test]
fn frames_without_a_value_pass_at_once_and_uncopied() {
    let n = names(&["up"]);
    let mut st = stream(scrubber(&n, &["sk-gw-1"]));
    let frame = Bytes::from_static(b"data: {\"n\": 1, \"s\": \"x\"}\n\n");
    let out = st.data(frame.clone()).unwrap();
    assert_eq!(out, frame);
    assert_eq!(out.as_ptr(), frame.as_ptr(), "passed on without a copy");
    // A frame ending in the start of a value holds only that start.
    let out = st.data(Bytes::from_static(b"data: sk-g")).unwrap();
    assert_eq!(&out[..], b"data: ");
    assert_eq!(&st.held[..], b"sk-g");
    let out = st.data(Bytes::from_static(b"w-1\n\n")).unwrap();
    assert_eq!(&out[..], b"airlock:up\n\n");
    assert!(st.held.is_empty());
}

#[tokio::test]
async fn trailers_are_scrubbed_and_follow_the_held_tail() {
    let n = names(&["up"]);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-message", "bad key sk-gw-1".parse().unwrap());
    trailers.insert("grpc-status", "16".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"echo sk-"))),
        Ok(Frame::data(Bytes::from_static(b"gw-1 and sk-gw"))),
        Ok(Frame::trailers(trailers)),
    ];
    let inner = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut body = Scrubbed::passthrough(inner);
    body.scrub_with(scrubber(&n, &["sk-gw-1"]).into_owned());
    assert_eq!(body.size_hint().exact(), None);
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap();
    assert_eq!(&collected.to_bytes()[..], b"echo airlock:up and sk-gw");
    assert_eq!(trailers["grpc-message"], "bad key airlock:up");
    assert_eq!(trailers["grpc-status"], "16");
}

#[tokio::test]
async fn nothing_injected_is_a_passthrough() {
    let inner = http_body_util::Full::new(Bytes::from_static(b"sk-gw-1"))
        .map_err(|never| -> BoxError { match never {} });
    let mut body = Scrubbed::passthrough(inner);
    body.scrub_with(Scrubber::default().into_owned());
    assert!(!body.is_scrubbed());
    assert_eq!(body.size_hint().exact(), Some(7));
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"sk-gw-1");
}
