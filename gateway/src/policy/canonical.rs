//! Canonical request paths: the one spelling rules and secret scopes
//! match, and the one the gateway forwards.
//!
//! An upstream serves the path it decodes, not the bytes the agent wrote:
//! `/%61dmin`, `/x/../admin` and `//admin` are `/admin` to most servers.
//! Matching the raw path let all of them past a block on `/admin/**`
//! (issue #15, item 5). So a request path is read once, here:
//!
//! 1. **Canonical form** (RFC 3986 §6.2.2): percent-encoded unreserved
//!    characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other escape
//!    keeps its byte with upper-case hex. This is the same resource for
//!    every server, so it is what the gateway forwards.
//! 2. **Refused** (400): a dot segment (`.` or `..`, raw or encoded) in
//!    the canonical form or in any interpretation below (`/a%2F..%2Fb`,
//!    `/..;/admin`): real clients remove them before sending (RFC 3986
//!    §5.2.4), and servers disagree whether and after what decoding they
//!    apply; a `%` not followed by two hex digits; an encoded NUL. Servers
//!    disagree about these, and no legitimate client needs them.
//! 3. **Interpretations**: where servers do disagree and real clients do
//!    send the spelling, every plausible reading is kept: `%2F`, `%5C`
//!    and `\` as `/` (and every other escape decoded), `;parameters` cut
//!    from segments (Tomcat, Spring), repeated slashes merged (nginx's
//!    default). The canonical form is one of them.
//!
//! Matching resolves what is left toward restriction:
//! - a **restrictive** rule (block, approval, rate limit) applies when
//!   ANY interpretation matches its glob, also ignoring ASCII case (IIS
//!   and case-insensitive file systems serve `/Admin` as `/admin`);
//! - a **permissive** scope (a secret's path glob) applies only when
//!   EVERY interpretation matches, with case.
//!
//! So an S3 object key or a GitHub ref with `%2F` still works under a
//! secret for `/**` or `/bucket/**` (both readings are under it), while
//! `/admin%2Fx` is blocked by a rule on `/admin/**`. Forwarding the
//! canonical form (not a fully decoded one) keeps `%2F` meaning what the
//! agent meant for servers that treat it as data.
//!
//! `*` (the target of `OPTIONS *`) is its own canonical form.

use std::borrow::Cow;

/// Why a request path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error(
        "the request path must start with '/' (or be '*' for OPTIONS); send the origin form, e.g. GET /v1/x"
    )]
    NotOriginForm,
    #[error(
        "the request path contains a '.' or '..' segment (here or once %2F, %5C, '\\' or ';' are read as servers read them); remove dot segments before sending"
    )]
    DotSegment,
    #[error("the request path has a '%' that is not followed by two hex digits; encode it as %25")]
    BadPercent,
    #[error("the request path encodes a NUL byte (%00), which no server reads the same way")]
    EncodedNul,
}

/// A request path read once: its canonical form and the other ways an
/// upstream may read it. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathForms<'a> {
    canonical: Cow<'a, str>,
    /// Interpretations other than the canonical form; empty (no
    /// allocation) for an ordinary path.
    others: Vec<String>,
}

impl<'a> PathForms<'a> {
    /// Reads `raw` (a path without its query, as the request carried it).
    pub fn parse(raw: &'a str) -> Result<Self, PathError> {
        if raw == "*" {
            return Ok(PathForms {
                canonical: Cow::Borrowed(raw),
                others: Vec::new(),
            });
        }
        let canonical = canonicalize(raw)?;
        let others = interpretations(&canonical)?;
        Ok(PathForms { canonical, others })
    }

    /// The form the gateway forwards.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The canonical form, borrowed when the path already was canonical.
    pub fn into_canonical(self) -> Cow<'a, str> {
        self.canonical
    }

    /// Every interpretation, the canonical form first.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.canonical.as_ref()).chain(self.others.iter().map(String::as_str))
    }

    /// Whether servers may read this path in more than one way.
    pub fn is_ambiguous(&self) -> bool {
        !self.others.is_empty()
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical form of `raw` (step 1 and the dot-segment check of step
/// 2); borrowed when `raw` already is canonical.
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let bytes = raw.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            if let Some(out) = &mut out {
                out.push(b);
            }
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadPercent);
        };
        let decoded = hi << 4 | lo;
        if decoded == 0 {
            return Err(PathError::EncodedNul);
        }
        let upper = [
            b'%',
            bytes[i + 1].to_ascii_uppercase(),
            bytes[i + 2].to_ascii_uppercase(),
        ];
        let replacement: &[u8] = if is_unreserved(decoded) {
            std::slice::from_ref(&decoded)
        } else {
            &upper
        };
        if out.is_none() && replacement != &bytes[i..i + 3] {
            out = Some(bytes[..i].to_vec());
        }
        if let Some(out) = &mut out {
            out.extend_from_slice(replacement);
        }
        i += 3;
    }
    let canonical = match out {
        // Only ASCII was replaced by ASCII, so the result is UTF-8 when
        // the input was; the lossy path is never taken.
        Some(v) => Cow::Owned(
            String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        None => Cow::Borrowed(raw),
    };
    if has_dot_segment(&canonical) {
        return Err(PathError::DotSegment);
    }
    Ok(canonical)
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

/// Whether some server may read `canonical` differently from its text.
fn may_be_read_otherwise(canonical: &str) -> bool {
    canonical.contains(['%', '\\', ';']) || canonical.contains("//")
}

/// Step 3: the other readings of a canonical path, deduplicated; an
/// error when one of them has a dot segment.
fn interpretations(canonical: &str) -> Result<Vec<String>, PathError> {
    let mut others: Vec<String> = Vec::new();
    if !may_be_read_otherwise(canonical) {
        return Ok(others);
    }
    for variant in 1u8..8 {
        let mut text = Cow::Borrowed(canonical);
        if variant & 1 != 0 {
            text = Cow::Owned(decode_all(&text));
        }
        if variant & 2 != 0 {
            text = Cow::Owned(cut_parameters(&text));
        }
        if variant & 4 != 0 {
            text = Cow::Owned(merge_slashes(&text));
        }
        if has_dot_segment(&text) {
            return Err(PathError::DotSegment);
        }
        if text != canonical && !others.iter().any(|o| *o == *text) {
            others.push(text.into_owned());
        }
    }
    Ok(others)
}

/// Every escape decoded (lossy UTF-8), `\` read as `/`.
fn decode_all(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .replace('\\', "/")
}

/// `;parameters` removed from every segment (`/a;x/b;y=1` → `/a/b`).
fn cut_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Runs of `/` merged into one.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c != '/' || !out.ends_with('/') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        PathForms::parse(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .canonical()
            .to_owned()
    }

    fn forms(raw: &str) -> Vec<String> {
        PathForms::parse(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .all()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_ordinary_path_is_borrowed_and_unambiguous() {
        let f = PathForms::parse("/v1/chat/completions").unwrap();
        assert!(matches!(f.canonical, Cow::Borrowed(_)));
        assert!(!f.is_ambiguous());
        assert_eq!(f.all().count(), 1);
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_hex_upper_cased() {
        assert_eq!(canon("/%61dmin/x"), "/admin/x");
        assert_eq!(canon("/%7Euser/%2d%5F"), "/~user/-_");
        assert_eq!(canon("/a%2fb"), "/a%2Fb");
        assert_eq!(canon("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(canon("/a%20b"), "/a%20b");
    }

    #[test]
    fn dot_segments_are_refused_however_spelled() {
        for raw in [
            "/x/../admin",
            "/x/..",
            "/./admin",
            "/x/%2e%2e/admin",
            "/x/.%2E/admin",
            "/x/%2e/admin",
            "/x%2F..%2Fadmin",
            "/x%5C..%5Cadmin",
            "/x\\..\\admin",
            "/..;/admin",
            "/x/..;jsessionid=1/admin",
        ] {
            assert_eq!(PathForms::parse(raw), Err(PathError::DotSegment), "{raw}");
        }
        // Dots inside a segment are ordinary characters.
        assert_eq!(canon("/a/..b/c.d/..."), "/a/..b/c.d/...");
    }

    #[test]
    fn bad_escapes_and_non_paths_are_refused() {
        assert_eq!(PathForms::parse("/a%zz"), Err(PathError::BadPercent));
        assert_eq!(PathForms::parse("/a%4"), Err(PathError::BadPercent));
        assert_eq!(PathForms::parse("/a%"), Err(PathError::BadPercent));
        assert_eq!(PathForms::parse("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(PathForms::parse("admin"), Err(PathError::NotOriginForm));
        assert_eq!(PathForms::parse(""), Err(PathError::NotOriginForm));
        assert_eq!(canon("*"), "*");
    }

    #[test]
    fn ambiguous_spellings_keep_every_reading() {
        let f = forms("/admin%2fx");
        assert!(f.contains(&"/admin%2Fx".to_owned()), "{f:?}");
        assert!(f.contains(&"/admin/x".to_owned()), "{f:?}");
        let f = forms("//admin/x");
        assert_eq!(f, ["//admin/x", "/admin/x"]);
        let f = forms("/admin;v=1/x");
        assert!(f.contains(&"/admin/x".to_owned()), "{f:?}");
        let f = forms("/admin%5Cx");
        assert!(f.contains(&"/admin/x".to_owned()), "{f:?}");
        let f = forms("/admin\\x");
        assert!(f.contains(&"/admin/x".to_owned()), "{f:?}");
    }

    #[test]
    fn canonicalising_is_idempotent() {
        for raw in ["/%61%2f%7e", "//a;b/%5c", "/x%C3%A9"] {
            let once = canon(raw);
            assert_eq!(canon(&once), once, "{raw}");
        }
    }
}
