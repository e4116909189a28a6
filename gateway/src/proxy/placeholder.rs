//! `airlock:NAME` placeholders: where an agent puts a key it does not hold.
//!
//! A placeholder is the literal `airlock:` followed by a secret name
//! (`[a-z0-9][a-z0-9_-]*`, at most 63 bytes). The scanner is a pure
//! function over text, so it is easy to test and to fuzz.
//!
//! There is no replacer: a placeholder is never substituted as text. It is
//! allowed only where its secret's configured injection overwrites the
//! agent's value anyway (see [`super::inject`]), so finding it is all the
//! gateway needs.

use std::borrow::Cow;
use std::ops::Range;

use percent_encoding::percent_decode_str;

pub const PREFIX: &str = "airlock:";
const MAX_NAME: usize = 63;

/// One placeholder found in a text: where it is and which secret it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// The whole `airlock:NAME`.
    pub span: Range<usize>,
    pub name: &'a str,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Every placeholder in `text`, left to right. `airlock:` not followed by
/// a valid first name character is not a placeholder.
pub fn find_all(text: &str) -> Vec<Found<'_>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = text.get(from..).and_then(|t| t.find(PREFIX)) {
        let start = from + pos;
        let name_start = start + PREFIX.len();
        let mut end = name_start;
        while end < bytes.len() && end - name_start < MAX_NAME && is_name_byte(bytes[end]) {
            end += 1;
        }
        let first_ok = bytes
            .get(name_start)
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if first_ok {
            found.push(Found {
                span: start..end,
                name: &text[name_start..end],
            });
            from = end;
        } else {
            from = name_start;
        }
    }
    found
}

/// True when `text` may hold a placeholder: a cheap pre-check before
/// [`find_all`] on the request path.
pub fn may_contain(text: &[u8]) -> bool {
    text.windows(PREFIX.len()).any(|w| w == PREFIX.as_bytes())
}

/// Like [`may_contain`] for percent-encoded text, however it is encoded
/// (`airlock%3A`, `%61irlock:`, ...): what the server will decode is what
/// counts.
pub fn may_contain_encoded(text: &str) -> bool {
    let decoded: Cow<'_, [u8]> = percent_decode_str(text).into();
    // Both: decoding can also break one up (`%3airlock:x` is `:irlock:x`).
    may_contain(text.as_bytes()) || may_contain(&decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders_where_keys_go() {
        let f = find_all("Bearer airlock:openai");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "openai");
        assert_eq!(f[0].span, 7..21);
        let f = find_all("a=airlock:k1&b=airlock:gh-token_2;airlock:");
        let names: Vec<_> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["k1", "gh-token_2"]);
    }

    #[test]
    fn ignores_what_is_not_a_name() {
        assert!(find_all("airlock:").is_empty());
        assert!(find_all("airlock:-x").is_empty());
        assert!(find_all("airlock:Upper").is_empty());
        assert!(find_all("nothing here").is_empty());
        assert!(
            find_all("airlock:airlock:x")
                .iter()
                .any(|f| f.name == "airlock")
        );
    }

    #[test]
    fn the_pre_check_sees_the_prefix() {
        assert!(may_contain(b"..airlock:x"));
        assert!(!may_contain(b"airlock"));
    }

    /// Found by the `inject` fuzz target: `%61irlock%3Aopenai` in a query
    /// value decodes to a placeholder, but the pre-check only knew the
    /// `airlock%3A` spelling, so the query was never scanned.
    #[test]
    fn encoded_placeholders_are_seen_however_spelled() {
        for text in [
            "q=airlock%3Aopenai",
            "q=%61irlock%3Aopenai",
            "q=%61%69rlock:x",
        ] {
            assert!(may_contain_encoded(text), "{text}");
        }
        // Found by the `placeholder` fuzz target, against the first fix:
        // decoding alone loses the `airlock:` of `%3airlock:x`.
        assert!(may_contain_encoded("q=%3airlock:x"));
        assert!(!may_contain_encoded("q=airlock%3"));
        assert!(!may_contain_encoded("q=%zzairlock"));
    }

    #[test]
    fn never_panics_on_odd_text() {
        for text in [
            "airlock:é",
            "éairlock:a",
            "\u{0}airlock:\u{0}",
            &"airlock:a".repeat(100),
        ] {
            let _ = find_all(text);
        }
        let long = format!("airlock:{}", "a".repeat(200));
        assert_eq!(find_all(&long)[0].name.len(), MAX_NAME);
    }
}
