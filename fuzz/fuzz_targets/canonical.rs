//! Canonical request paths (`airlock::policy::canonical`) and the target
//! phase that uses them (`airlock::proxy::target`), on what a request line
//! or an HTTP/2 `:path` can carry.
//!
//! Checks, beyond "no panic": a target the phase accepts starts with `/`
//! (or is `*`), and what it forwards is exactly the canonical path, which
//! has no dot segment in any reading, is already canonical (idempotent,
//! with the same readings), is a valid request target, and names the same
//! bytes as the raw path once decoded; a refused target is refused again
//! whatever the method (but `*`); a path inside a secret's scope (every
//! reading) is always under a rule with the same glob (any reading).
//!
//! Input: two lines, `GLOB`, then `TARGET` (the rest).

#![no_main]

use airlock::policy::{PathForms, PathGlob};
use airlock::proxy::target::{read_target, rewrite};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (glob, target) = text.split_once('\n').unwrap_or(("/**", text));
    let Ok(pq) = PathAndQuery::try_from(target) else {
        return;
    };
    let uri = Uri::from(pq.clone());
    let raw = pq.as_str();
    let forms = match read_target(&Method::GET, &uri) {
        Ok(forms) => forms,
        Err(_) => {
            // Refused for GET: refused for every method but OPTIONS `*`.
            if raw != "*" {
                assert!(read_target(&Method::POST, &uri).is_err(), "{raw:?}");
            }
            return;
        }
    };
    assert!(raw.starts_with('/'), "{raw:?} accepted without a leading /");
    let canonical = forms.canonical().to_owned();
    for reading in forms.all() {
        assert!(
            !reading.split('/').any(|s| s == "." || s == ".."),
            "{raw:?}: reading {reading:?} has a dot segment"
        );
    }
    // Idempotent, readings included.
    let again = PathForms::parse(&canonical)
        .unwrap_or_else(|e| panic!("{raw:?} -> {canonical:?}, refused: {e}"));
    assert_eq!(again.canonical(), canonical, "{raw:?}");
    let a: Vec<&str> = forms.all().collect();
    let b: Vec<&str> = again.all().collect();
    assert_eq!(a, b, "{raw:?}: readings change once canonical");
    // Same resource: the same bytes once decoded.
    let decoded = |s: &str| percent_decode_str(s).collect::<Vec<u8>>();
    assert_eq!(decoded(&canonical), decoded(pq.path()), "{raw:?}");
    // No escape of an unreserved byte, no lower-case hex.
    let bytes = canonical.as_bytes();
    for (i, _) in canonical.match_indices('%') {
        let hex = &bytes[i + 1..i + 3];
        assert!(hex.iter().all(|b| !b.is_ascii_lowercase()), "{canonical:?}");
        let byte = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
            .unwrap_or_else(|_| panic!("{canonical:?}: bad escape kept"));
        assert!(
            !(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)),
            "{canonical:?}: unreserved byte left encoded"
        );
    }
    // What goes upstream is the canonical path, query as sent.
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.uri = uri.clone();
    let changed = (canonical != pq.path()).then_some(canonical.as_str());
    rewrite(
        &mut parts,
        changed,
        HeaderValue::from_static("api.example.com"),
    )
    .unwrap_or_else(|e| panic!("{raw:?}: canonical {canonical:?} cannot be sent: {e}"));
    assert_eq!(parts.uri.path(), canonical, "{raw:?}");
    assert_eq!(parts.uri.query(), pq.query(), "{raw:?}");
    assert!(parts.uri.authority().is_none());

    // A scope that holds for every reading implies the rule matches.
    if let Ok(glob) = PathGlob::parse(glob)
        && glob.matches_every(&forms)
    {
        assert!(glob.matches_any(&forms), "{glob}: {raw:?}");
        assert!(glob.matches(pq.path()), "{glob}: {raw:?}");
    }
});
