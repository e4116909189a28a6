//! The streaming placeholder substituter (`airlock::proxy::substitute`)
//! that request bodies and WebSocket text messages go through.
//!
//! Input: a first byte choosing the encoding (JSON, form, text) and two
//! more choosing where the text is cut into pieces, then the text.
//!
//! Checks: the answer is the same however the text is cut (whole, at the
//! chosen cuts, one byte at a time); for plain text it is exactly
//! `find_all`'s placeholders replaced (or refused at the first refused
//! one); JSON that was valid stays valid with a value that needs
//! escaping put in.

#![no_main]

use airlock::proxy::placeholder;
use airlock::proxy::substitute::{Encoding, Refused, Resolve, Substituter, ZBuf};
use libfuzzer_sys::fuzz_target;

/// Names starting with `x` are refused; every other resolves to a value
/// with the characters each encoding must escape.
struct Keys;

const VALUE: &[u8] = b"v\"\\ /+&=%\n\xc3\xa9";

impl Resolve for Keys {
    fn resolve(&mut self, name: &str) -> Result<&[u8], String> {
        if name.starts_with('x') {
            Err("refused".into())
        } else {
            Ok(VALUE)
        }
    }
}

fn run(encoding: Encoding, text: &[u8], cuts: &[usize]) -> Result<Vec<u8>, Refused> {
    let mut s = Substituter::new(encoding);
    let mut out = ZBuf::with_capacity(0);
    let mut from = 0;
    for &cut in cuts {
        let to = cut.clamp(from, text.len());
        s.feed(&text[from..to], &mut out, &mut Keys)?;
        from = to;
    }
    s.feed(&text[from..], &mut out, &mut Keys)?;
    s.finish(&mut out, &mut Keys)?;
    Ok(out.as_slice().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let [kind, a, b, text @ ..] = data else {
        return;
    };
    let encoding = match kind % 3 {
        0 => Encoding::Json,
        1 => Encoding::Form,
        _ => Encoding::Text,
    };
    let whole = run(encoding, text, &[]);
    let mut cuts = [usize::from(*a), usize::from(*b)];
    cuts.sort();
    assert_eq!(run(encoding, text, &cuts), whole, "cut at {cuts:?}");
    let bytes: Vec<usize> = (1..text.len()).collect();
    assert_eq!(run(encoding, text, &bytes), whole, "cut at every byte");

    if let (Encoding::Text, Ok(t)) = (encoding, std::str::from_utf8(text)) {
        let mut want = Vec::new();
        let mut last = 0;
        let mut refused = None;
        for f in placeholder::find_all(t) {
            if f.name.starts_with('x') {
                refused = Some(f.name.to_owned());
                break;
            }
            want.extend_from_slice(&text[last..f.span.start]);
            want.extend_from_slice(VALUE);
            last = f.span.end;
        }
        want.extend_from_slice(&text[last..]);
        match refused {
            Some(name) => assert_eq!(whole.clone().map_err(|r| r.name), Err(name)),
            None => assert_eq!(whole.clone(), Ok(want)),
        }
    }
    if encoding == Encoding::Json
        && serde_json::from_slice::<serde_json::Value>(text).is_ok()
        && let Ok(out) = &whole
    {
        assert!(
            serde_json::from_slice::<serde_json::Value>(out).is_ok(),
            "valid JSON became invalid: {:?}",
            String::from_utf8_lossy(out)
        );
    }
});
