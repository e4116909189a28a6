//! Path placement: a secret whose template is `PREFIX{value}REST` (e.g.
//! Telegram's `/bot{value}/**`) has its value put into the URL path where
//! the agent wrote its placeholder.
//!
//! The rule, on the canonical path ([`crate::policy::canonical`], which is
//! what is forwarded): the placeholder `airlock:NAME` of that secret,
//! spelled with `:` or `%3A` (its only character that stays encoded in the
//! canonical form), must start right after `PREFIX`, compared exactly (so
//! `PREFIX` is literal text: no glob characters, no escapes), and the
//! text after the name must match `REST` as a path glob (`*` within a
//! segment, `**` across them; an empty `REST` means nothing may follow).
//! `/botairlock:tg/sendMessage` matches `/bot{value}/**`;
//! `/x/botairlock:tg/sendMessage` does not, nor does `/botairlock:tg`
//! (`/**` needs a `/`). Anywhere else the placeholder is misplaced, like
//! any other (see [`super::inject`]). The secret's `--path` glob still
//! scopes it, matched against the path with the placeholder in it.
//!
//! The value is percent-encoded as one path segment's data (RFC 3986
//! `pchar`: unreserved, sub-delims, `:` and `@` stay; a `/` becomes `%2F`),
//! so it can never add a segment or a query.

use std::ops::Range;

use http::uri::PathAndQuery;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::inject::InjectError;
use crate::model::path_rest_glob;

/// Characters a path segment keeps as they are (`pchar` but `%`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// One placeholder in a canonical path: where its raw spelling is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InPath<'a> {
    pub name: &'a str,
    pub span: Range<usize>,
}

/// Every placeholder in the canonical `path`, with its raw span: the
/// same ones, in the same order, as [`super::placeholder::find_all`]
/// finds in the decoded path.
pub fn find(path: &str) -> Vec<InPath<'_>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = path.get(from..).and_then(|p| p.find("airlock")) {
        let start = from + at;
        let after = start + "airlock".len();
        let rest = &path[after..];
        let colon = if rest.starts_with(':') {
            1
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("%3a") {
            3
        } else {
            from = after;
            continue;
        };
        let name_start = after + colon;
        let bytes = path.as_bytes();
        let mut end = name_start;
        while end < bytes.len() && end - name_start < 63 && is_name_byte(bytes[end]) {
            end += 1;
        }
        let first_ok = bytes
            .get(name_start)
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if first_ok {
            found.push(InPath {
                name: &path[name_start..end],
                span: start..end,
            });
            from = end;
        } else {
            from = name_start;
        }
    }
    found
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Does the placeholder at `span` of `path` sit where `template` puts
/// the value?
pub fn placed(template: &str, path: &str, span: &Range<usize>) -> bool {
    let Some((prefix, rest)) = template.split_once("{value}") else {
        return false;
    };
    if span.start != prefix.len() || !path.starts_with(prefix) {
        return false;
    }
    let after = &path[span.end..];
    if rest.is_empty() {
        return after.is_empty();
    }
    path_rest_glob(rest).is_some_and(|g| g.is_match(after))
}

/// `path?query` with the placeholder at `span` replaced by `value`,
/// written straight into the buffer the URL keeps (sized first, so no
/// copy of the value is left in freed memory).
pub fn substituted(
    path: &str,
    query: Option<&str>,
    span: &Range<usize>,
    value: &str,
) -> Result<PathAndQuery, InjectError> {
    let encoded = || utf8_percent_encode(value, SEGMENT);
    let len = path.len() - span.len()
        + encoded().map(str::len).sum::<usize>()
        + query.map_or(0, |q| q.len() + 1);
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&path.as_bytes()[..span.start]);
    for chunk in encoded() {
        buf.extend_from_slice(chunk.as_bytes());
    }
    buf.extend_from_slice(&path.as_bytes()[span.end..]);
    if let Some(q) = query {
        buf.push(b'?');
        buf.extend_from_slice(q.as_bytes());
    }
    PathAndQuery::from_maybe_shared(bytes::Bytes::from(buf))
        .map_err(|_| InjectError::Sign("the rebuilt URL is invalid".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_spellings_with_their_spans() {
        let p = "/botairlock:tg/x/airlock%3Aother-1/airlock%3abad/airlock:";
        let f = find(p);
        let names: Vec<_> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["tg", "other-1", "bad"]);
        assert_eq!(&p[f[0].span.clone()], "airlock:tg");
        assert_eq!(&p[f[1].span.clone()], "airlock%3Aother-1");
        // The same as the scanner finds in the decoded path.
        let decoded = percent_encoding::percent_decode_str(p).decode_utf8_lossy();
        let scanned: Vec<_> = crate::proxy::placeholder::find_all(&decoded)
            .into_iter()
            .map(|f| f.name.to_owned())
            .collect();
        assert_eq!(names, scanned);
    }

    #[test]
    fn the_template_pins_the_position() {
        let t = "/bot{value}/**";
        let at = |p: &str| {
            let f = find(p);
            placed(t, p, &f[0].span)
        };
        assert!(at("/botairlock:tg/sendMessage"));
        assert!(at("/botairlock%3Atg/a/b"));
        assert!(!at("/botairlock:tg"));
        assert!(!at("/x/botairlock:tg/sendMessage"));
        assert!(!at("/bot/airlock:tg/sendMessage"));
        assert!(!at("/botairlock:tgX/sendMessage"));
        let exact = |p: &str| placed("/k/{value}", p, &find(p)[0].span);
        assert!(exact("/k/airlock:tg"));
        assert!(!exact("/k/airlock:tg/more"));
        let one = |p: &str| placed("/f/{value}/*", p, &find(p)[0].span);
        assert!(one("/f/airlock:tg/x"));
        assert!(!one("/f/airlock:tg/x/y"));
    }

    #[test]
    fn the_value_stays_in_its_segment() {
        let p = "/botairlock%3Atg/sendMessage";
        let span = find(p)[0].span.clone();
        let pq = substituted(p, Some("a=1"), &span, "123:AB-c/d?e f").unwrap();
        assert_eq!(pq.as_str(), "/bot123:AB-c%2Fd%3Fe%20f/sendMessage?a=1");
    }
}
