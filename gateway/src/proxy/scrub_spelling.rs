//! The one matcher of the scrubbers ([`super::scrub`] for heads and
//! trailers, [`super::scrub_body`] for bodies): does a spelling of an
//! injected value start at this byte?
//!
//! A spelling writes each byte of the value as itself or as one of the
//! escapes a server is likely to produce from it, mixed freely: `%XX` (hex
//! in either case; URLs, form bodies), `+` for a space (forms), and the
//! JSON string escapes `\/`, `\"`, `\\`, `\b \f \n \r \t` and `\u00XX` for
//! an ASCII byte (either case). Not spellings: double escapes (`%252F`),
//! base64, `\u` escapes of non-ASCII bytes (a JSON `\u` names a code point,
//! not a UTF-8 byte; keys are ASCII).
//!
//! Matching is greedy and never backtracks, so its cost is linear in the
//! value's length: the whole value raw first (a value holding a literal
//! `%41` matches itself), then byte by byte, an escape preferred over the
//! raw byte where both fit (only possible for a `%` or `\` in the value).
//! A value with those bytes spelled in a mix the greedy choice gets wrong
//! is missed; such values are rare and the raw spelling always matches.
//!
//! For streams, every answer is the one the complete input would give:
//! where the input ends before an answer is certain (`%4` at the end could
//! become `%41`), the answer is [`Spelled::Partial`], and the caller asks
//! again with more bytes, or with `complete` once the stream has ended.

/// Whether a spelling of a value starts at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spelled {
    /// It does, and takes this many input bytes.
    Match(usize),
    /// The input ends before it can be told; more input decides.
    Partial,
    No,
}

/// One byte of the value at the input's position.
enum Step {
    Took(usize),
    Short,
    No,
}

/// The most input bytes one value byte can take (`\u00XX`): a match of a
/// value of `n` bytes takes at most `n * MAX_SPELLING` input bytes, which
/// bounds what a stream holds back.
pub(super) const MAX_SPELLING: usize = 6;

/// The input bytes that may start a spelling of a value whose first byte
/// is `first`, besides `first` itself.
pub(super) fn escape_starts(first: u8) -> &'static [u8] {
    if first == b' ' { b"%\\+" } else { b"%\\" }
}

/// Whether a spelling of `value` starts at `hay[at]`. With `complete`, the
/// input ends where `hay` does (never [`Spelled::Partial`]).
pub(super) fn spelled_at(hay: &[u8], at: usize, value: &[u8], complete: bool) -> Spelled {
    let Some(rest) = hay.get(at..) else {
        return Spelled::No;
    };
    if value.is_empty() {
        return Spelled::No;
    }
    // Raw first: decides alone unless it fails.
    let n = rest.len().min(value.len());
    if rest[..n] == value[..n] {
        if n == value.len() {
            return Spelled::Match(n);
        }
        if !complete {
            return Spelled::Partial;
        }
    }
    let mut i = 0;
    for &b in value {
        match step(&rest[i..], b, complete) {
            Step::Took(k) => i += k,
            Step::Short => return Spelled::Partial,
            Step::No => return Spelled::No,
        }
    }
    Spelled::Match(i)
}

/// How `hay` (from the position on) spells the value byte `b`.
fn step(hay: &[u8], b: u8, complete: bool) -> Step {
    let Some(&h) = hay.first() else {
        return if complete { Step::No } else { Step::Short };
    };
    // The fast path: no escape starts with any other byte.
    if h != b'%' && h != b'\\' && h != b'+' {
        return if h == b { Step::Took(1) } else { Step::No };
    }
    let mut short = false;
    for escape in Escapes::of(b) {
        match fits(hay, escape.as_slice()) {
            Fit::Full => return Step::Took(escape.len()),
            Fit::Short => short = true,
            Fit::No => {}
        }
    }
    if short && !complete {
        // Whether the escape or the raw byte: more input decides.
        Step::Short
    } else if h == b {
        Step::Took(1)
    } else {
        Step::No
    }
}

enum Fit {
    Full,
    Short,
    No,
}

/// Whether `hay` starts with `pattern`, hex digits compared ignoring case.
fn fits(hay: &[u8], pattern: &[u8]) -> Fit {
    for (i, &p) in pattern.iter().enumerate() {
        let Some(&h) = hay.get(i) else {
            return Fit::Short;
        };
        if !h.eq_ignore_ascii_case(&p) || (h != p && !p.is_ascii_hexdigit()) {
            return Fit::No;
        }
    }
    Fit::Full
}

/// The escapes of one byte, at most three (`%XX`, a JSON one, `\u00XX`),
/// written without allocating.
struct Escapes {
    list: [Escape; 4],
    len: usize,
}

#[derive(Clone, Copy, Default)]
struct Escape {
    bytes: [u8; MAX_SPELLING],
    len: usize,
}

impl Escape {
    fn new(s: &[u8]) -> Escape {
        let mut e = Escape::default();
        e.bytes[..s.len()].copy_from_slice(s);
        e.len = s.len();
        e
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl Escapes {
    fn of(b: u8) -> impl Iterator<Item = Escape> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]);
        let mut e = Escapes {
            list: [Escape::default(); 4],
            len: 0,
        };
        let mut push = |s: &[u8]| {
            e.list[e.len] = Escape::new(s);
            e.len += 1;
        };
        push(&[b'%', hi, lo]);
        if b == b' ' {
            push(b"+");
        }
        let json = match b {
            b'/' => Some(b'/'),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            0x08 => Some(b'b'),
            0x0c => Some(b'f'),
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            _ => None,
        };
        if let Some(j) = json {
            push(&[b'\\', j]);
        }
        if b.is_ascii() {
            push(&[b'\\', b'u', b'0', b'0', hi, lo]);
        }
        let Escapes { list, len } = e;
        list.into_iter().take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(hay: &str, value: &str) -> Spelled {
        spelled_at(hay.as_bytes(), 0, value.as_bytes(), true)
    }

    #[test]
    fn every_escape_of_a_byte_counts() {
        let v = "a/\" \\b";
        for spelling in [
            "a/\" \\b",
            "%61%2F%22%20%5Cb",
            "%61%2f%22+%5cb",
            "a\\/\\\" \\\\b",
            "\\u0061\\u002F\\u0022\\u0020\\u005cb",
            "\\u0061\\/%22+\\\\%62",
        ] {
            assert_eq!(
                whole(spelling, v),
                Spelled::Match(spelling.len()),
                "{spelling}"
            );
        }
        assert_eq!(whole("a\nb", "a\nb"), Spelled::Match(3));
        assert_eq!(whole("a\\nb", "a\nb"), Spelled::Match(4));
        assert_eq!(whole("a%252F", "a/"), Spelled::No, "no double escapes");
        assert_eq!(whole("%2561", "%61"), Spelled::Match(5), "its `%` escaped");
        assert_eq!(whole("%61", "%61"), Spelled::Match(3), "a literal escape");
        assert_eq!(whole("a%2", "a%2"), Spelled::Match(3));
    }

    #[test]
    fn partial_only_while_more_input_could_decide() {
        let part = |hay: &str, v: &str| spelled_at(hay.as_bytes(), 0, v.as_bytes(), false);
        assert_eq!(part("ab", "abc"), Spelled::Partial);
        assert_eq!(part("ab%6", "abc"), Spelled::Partial);
        assert_eq!(part("ab%7", "abc"), Spelled::No);
        assert_eq!(part("ab\\u00", "abc"), Spelled::Partial);
        assert_eq!(part("ab\\x", "abc"), Spelled::No);
        assert_eq!(part("ab\\", "abc"), Spelled::Partial);
        assert_eq!(part("abd", "abc"), Spelled::No);
        // `%2` could be the raw `%2` of the value or the start of `%25`.
        assert_eq!(part("%2", "%2x"), Spelled::Partial);
        assert_eq!(part("%2x", "%2x"), Spelled::Match(3));
        assert_eq!(whole("ab", "abc"), Spelled::No);
    }
}
