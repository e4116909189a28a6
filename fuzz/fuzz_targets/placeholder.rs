//! The `airlock:NAME` placeholder scanner (`airlock::proxy::placeholder`),
//! over any text. (There is no replacer since issue #15: a placeholder is
//! never substituted as text.)
//!
//! Checks: every placeholder found is in order, in bounds, on character
//! boundaries, spells `airlock:` and a valid secret name; the cheap
//! pre-checks never say "no" when there is one.
//!
//! Input: a first line (ignored; it once chose names to refuse, and the
//! committed corpus still has it), then the text.

#![no_main]

use airlock::model::SecretName;
use airlock::proxy::placeholder::{self, PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(all) = std::str::from_utf8(data) else {
        return;
    };
    let (_, text) = all.split_once('\n').unwrap_or(("", all));
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
});
