//! The `airlock:NAME` placeholder scanner and replacer
//! (`airlock::proxy::placeholder`), over any text.
//!
//! Checks: every placeholder found is in order, in bounds, on character
//! boundaries, spells `airlock:` and a valid secret name; the cheap
//! pre-checks never say "no" when there is one; when every name resolves,
//! no placeholder is left; when one does not, the replacer names the first
//! such and the caller's resolver saw only names that were found.
//!
//! Input: a first line with a number whose bits say which names are
//! refused (see [`refused`]), then the text.

#![no_main]

use airlock::model::SecretName;
use airlock::proxy::placeholder::{self, PREFIX};
use libfuzzer_sys::fuzz_target;

struct Input<'a> {
    text: &'a str,
    /// Bit `h % 64` set: a name hashing to `h` is refused.
    refused: u64,
}

fn refused(mask: u64, name: &str) -> bool {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    mask & (1 << (h % 64)) != 0
}

fuzz_target!(|data: &[u8]| {
    let Ok(all) = std::str::from_utf8(data) else {
        return;
    };
    let (mask, text) = all.split_once('\n').unwrap_or(("", all));
    let input = Input {
        text,
        refused: mask.trim().parse().unwrap_or(0),
    };
    let text = input.text;
    let found = placeholder::find_all(text);
    let mut last_end = 0;
    for f in &found {
        assert!(
            f.span.start >= last_end && f.span.end <= text.len(),
            "{found:?}"
        );
        let spelled = text
            .get(f.span.clone())
            .unwrap_or_else(|| panic!("{:?} is not on character boundaries", f.span));
        assert_eq!(spelled, format!("{PREFIX}{}", f.name));
        if let Err(e) = SecretName::parse(f.name) {
            panic!("{:?} was taken for a placeholder: {e}", f.name);
        }
        last_end = f.span.end;
    }
    if !found.is_empty() {
        assert!(placeholder::may_contain(text.as_bytes()));
        assert!(placeholder::may_contain_encoded(text));
    }

    // Values that cannot form a placeholder with the text around them.
    let mut asked = Vec::new();
    let result = placeholder::replace_all(text, |name| {
        asked.push(name.to_owned());
        (!refused(input.refused, name)).then(|| format!("#{}#", name.len()))
    });
    let first_refused = found.iter().find(|f| refused(input.refused, f.name));
    match (result, first_refused) {
        (Ok(out), None) => {
            let left = placeholder::find_all(&out);
            assert!(left.is_empty(), "{text:?} -> {out:?} still has {left:?}");
            assert_eq!(asked.len(), found.len());
        }
        (Err(name), Some(f)) => assert_eq!(name, f.name),
        (result, first) => panic!("{text:?}: {result:?}, but the first refused is {first:?}"),
    }
    for (name, f) in asked.iter().zip(&found) {
        assert_eq!(name, f.name, "the resolver was asked for a name not found");
    }
});
