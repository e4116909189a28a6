//! The streaming placeholder substituter: `airlock:NAME` found in text
//! that arrives in pieces (a request body's frames, a WebSocket message's
//! fragments) and replaced by a value escaped for that text's encoding.
//!
//! The text is read the way its receiver will decode it, so a
//! placeholder is found however it is spelled:
//! - [`Encoding::Json`]: inside JSON strings only, string escapes decoded
//!   (`airlock\u003aNAME`, `\u0061irlock:NAME`); the value goes in
//!   JSON-escaped (`"` `\` and control characters). Outside strings a
//!   placeholder is no valid JSON and is left alone.
//! - [`Encoding::Form`]: `application/x-www-form-urlencoded`, `%XX` and
//!   `+` decoded; the value goes in form-encoded (`+` for a space, `%XX`
//!   for all but `A-Z a-z 0-9 * - . _`).
//! - [`Encoding::Text`]: as it is (a WebSocket text message); the value
//!   goes in as it is.
//!
//! The rule for what is a placeholder is [`super::placeholder::find_all`]'s:
//! `airlock:` then a name of up to 63 bytes of `[a-z0-9_-]` starting with
//! a letter or digit, ending at the first other character.
//!
//! Memory is O(1) in the text's length: only the raw bytes of a
//! placeholder in progress are held back (at most 71 decoded characters,
//! six raw bytes each for a JSON `\uXXXX`, so under 430 bytes), plus an
//! escape split across pieces. Everything else is written out as soon as
//! it is read. Output buffers are [`Zeroizing`]: one that held a value is
//! wiped when the last reference to it drops ([`ZBuf::into_bytes`]), and
//! growing one wipes the buffer it leaves.

use bytes::Bytes;
use zeroize::Zeroizing;

use super::placeholder::PREFIX;

/// The longest secret name a placeholder carries (as in `placeholder`).
const MAX_NAME: usize = 63;

/// How the text is encoded, so how it is read and how a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Form,
    Text,
}

/// A placeholder that may not be resolved here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholder airlock:{name} is not allowed here: {reason}")]
pub struct Refused {
    pub name: String,
    pub reason: String,
}

/// Says what a placeholder's name resolves to: the raw value (the
/// substituter escapes it), or why it may not be resolved here.
pub trait Resolve {
    fn resolve(&mut self, name: &str) -> Result<&[u8], String>;
}

/// An output buffer whose bytes are wiped when it (and every [`Bytes`]
/// made from it) is dropped.
pub struct ZBuf(Zeroizing<Vec<u8>>);

/// What [`Bytes::from_owner`] keeps alive: wiped on drop.
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl ZBuf {
    pub fn with_capacity(n: usize) -> Self {
        ZBuf(Zeroizing::new(Vec::with_capacity(n)))
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        if self.0.capacity() - self.0.len() < bytes.len() {
            // Grown by hand, not by `Vec`'s realloc, so the old buffer
            // is wiped (its `Zeroizing` drops) rather than freed as is.
            let want = (self.0.len() + bytes.len()).max(self.0.capacity() * 2);
            let mut grown = Vec::with_capacity(want);
            grown.extend_from_slice(&self.0);
            self.0 = Zeroizing::new(grown);
        }
        self.0.extend_from_slice(bytes);
    }

    pub fn push(&mut self, b: u8) {
        self.extend(&[b]);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(Wiped(self.0))
    }
}

/// Where the reader is in the text's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// JSON outside a string: nothing is a placeholder.
    Outside,
    /// Text a placeholder may be in (a JSON string, a form, plain text).
    Inside,
}

/// How much of a placeholder has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Idle,
    /// This many bytes of `airlock:`.
    Prefix(usize),
    /// `airlock:` and this many name bytes.
    Name(usize),
}

/// One substitution in progress over a text that arrives in pieces.
pub struct Substituter {
    encoding: Encoding,
    mode: Mode,
    matched: Match,
    name: [u8; MAX_NAME],
    /// The raw bytes of the placeholder in progress: written out as they
    /// were if it turns out not to be one.
    pending: Vec<u8>,
    /// An escape (`\uXX`, `%X`) cut off at the end of a piece.
    escape: Vec<u8>,
}

/// The next decoded character: an ASCII byte, or `None` for anything else
/// (which no placeholder holds).
type Unit = Option<u8>;

impl Substituter {
    pub fn new(encoding: Encoding) -> Self {
        Substituter {
            encoding,
            mode: match encoding {
                Encoding::Json => Mode::Outside,
                Encoding::Form | Encoding::Text => Mode::Inside,
            },
            matched: Match::Idle,
            name: [0; MAX_NAME],
            pending: Vec::with_capacity(64),
            escape: Vec::with_capacity(6),
        }
    }

    /// Reads `input`, writing to `out` all that is decided. A placeholder
    /// that may not be resolved stops the text: nothing of it is written.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut ZBuf,
        resolve: &mut dyn Resolve,
    ) -> Result<(), Refused> {
        let mut i = 0;
        while i < input.len() {
            if self.matched == Match::Idle && self.escape.is_empty() {
                // The fast path: copy up to the next byte that may start
                // something (a quote, an escape, a placeholder).
                let run = input[i..]
                    .iter()
                    .position(|&b| self.is_special(b))
                    .unwrap_or(input.len() - i);
                out.extend(&input[i..i + run]);
                i += run;
                if i == input.len() {
                    break;
                }
            }
            self.byte(input[i], out, resolve)?;
            i += 1;
        }
        Ok(())
    }

    /// The end of the text: a placeholder that ends it is resolved, an
    /// escape cut short is written as it was.
    pub fn finish(&mut self, out: &mut ZBuf, resolve: &mut dyn Resolve) -> Result<(), Refused> {
        let cut = std::mem::take(&mut self.escape);
        if !cut.is_empty() {
            self.unit(None, &cut, out, resolve)?;
        }
        self.end_match(out, resolve)
    }

    fn is_special(&self, b: u8) -> bool {
        match (self.encoding, self.mode) {
            (Encoding::Json, Mode::Outside) => b == b'"',
            (Encoding::Json, Mode::Inside) => matches!(b, b'"' | b'\\' | b'a'),
            (Encoding::Form, _) => matches!(b, b'%' | b'a'),
            (Encoding::Text, _) => b == b'a',
        }
    }

    fn byte(&mut self, b: u8, out: &mut ZBuf, resolve: &mut dyn Resolve) -> Result<(), Refused> {
        match self.encoding {
            Encoding::Json => self.json_byte(b, out, resolve),
            Encoding::Form => self.form_byte(b, out, resolve),
            Encoding::Text => self.unit(ascii(b), &[b], out, resolve),
        }
    }

    fn json_byte(
        &mut self,
        b: u8,
        out: &mut ZBuf,
        resolve: &mut dyn Resolve,
    ) -> Result<(), Refused> {
        if self.mode == Mode::Outside {
            if b == b'"' {
                self.mode = Mode::Inside;
            }
            out.push(b);
            return Ok(());
        }
        if self.escape.len() >= 2 && self.escape[1] == b'u' && !b.is_ascii_hexdigit() {
            // A `\u` cut short (invalid JSON): it ends here, and `b` is
            // read anew, so a quote still ends the string.
            let raw = std::mem::take(&mut self.escape);
            let result = self.unit(None, &raw, out, resolve);
            self.escape = raw;
            self.escape.clear();
            result?;
            return self.json_byte(b, out, resolve);
        }
        if !self.escape.is_empty() {
            self.escape.push(b);
            let Some(unit) = json_escape(&self.escape) else {
                return Ok(());
            };
            let raw = std::mem::take(&mut self.escape);
            let result = self.unit(unit, &raw, out, resolve);
            self.escape = raw;
            self.escape.clear();
            return result;
        }
        match b {
            b'\\' => {
                self.escape.push(b);
                Ok(())
            }
            b'"' => {
                self.end_match(out, resolve)?;
                self.mode = Mode::Outside;
                out.push(b);
                Ok(())
            }
            _ => self.unit(ascii(b), &[b], out, resolve),
        }
    }

    fn form_byte(
        &mut self,
        b: u8,
        out: &mut ZBuf,
        resolve: &mut dyn Resolve,
    ) -> Result<(), Refused> {
        if self.escape.is_empty() {
            return match b {
                b'%' => {
                    self.escape.push(b);
                    Ok(())
                }
                b'+' => self.unit(Some(b' '), &[b], out, resolve),
                _ => self.unit(ascii(b), &[b], out, resolve),
            };
        }
        if !b.is_ascii_hexdigit() {
            // Not an escape: the `%` is itself, what followed is read anew.
            let mut rest = std::mem::take(&mut self.escape);
            rest.push(b);
            self.unit(Some(b'%'), b"%", out, resolve)?;
            for &r in &rest[1..] {
                self.form_byte(r, out, resolve)?;
            }
            return Ok(());
        }
        self.escape.push(b);
        if self.escape.len() < 3 {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.escape);
        let decoded = hex(raw[1]) << 4 | hex(raw[2]);
        let result = self.unit(ascii(decoded), &raw, out, resolve);
        self.escape = raw;
        self.escape.clear();
        result
    }

    /// One decoded character `unit`, spelled `raw`, through the matcher.
    fn unit(
        &mut self,
        unit: Unit,
        raw: &[u8],
        out: &mut ZBuf,
        resolve: &mut dyn Resolve,
    ) -> Result<(), Refused> {
        loop {
            match self.matched {
                Match::Idle => {
                    if unit == Some(PREFIX.as_bytes()[0]) {
                        self.pending.extend_from_slice(raw);
                        self.matched = Match::Prefix(1);
                    } else {
                        out.extend(raw);
                    }
                    return Ok(());
                }
                Match::Prefix(k) => {
                    if unit == Some(PREFIX.as_bytes()[k]) {
                        self.pending.extend_from_slice(raw);
                        self.matched = if k + 1 == PREFIX.len() {
                            Match::Name(0)
                        } else {
                            Match::Prefix(k + 1)
                        };
                        return Ok(());
                    }
                    // `airlock:` has no repeated byte: the unit that broke
                    // the match can only start a new one by itself.
                    self.end_match(out, resolve)?;
                }
                Match::Name(n) => {
                    let takes = unit.is_some_and(|b| {
                        n < MAX_NAME
                            && (b.is_ascii_lowercase()
                                || b.is_ascii_digit()
                                || n > 0 && (b == b'-' || b == b'_'))
                    });
                    if let (true, Some(b)) = (takes, unit) {
                        self.name[n] = b;
                        self.pending.extend_from_slice(raw);
                        self.matched = Match::Name(n + 1);
                        return Ok(());
                    }
                    self.end_match(out, resolve)?;
                }
            }
        }
    }

    /// The placeholder in progress ends here: resolved into `out` if it
    /// is one, its raw bytes written back if not.
    fn end_match(&mut self, out: &mut ZBuf, resolve: &mut dyn Resolve) -> Result<(), Refused> {
        let matched = std::mem::replace(&mut self.matched, Match::Idle);
        let n = match matched {
            Match::Name(n) if n > 0 => n,
            Match::Idle => return Ok(()),
            _ => {
                out.extend(&self.pending);
                self.pending.clear();
                return Ok(());
            }
        };
        self.pending.clear();
        // Names are ASCII by construction.
        let name = std::str::from_utf8(&self.name[..n]).unwrap_or_default();
        let value = resolve.resolve(name).map_err(|reason| Refused {
            name: name.to_owned(),
            reason,
        })?;
        write_escaped(self.encoding, value, out);
        Ok(())
    }
}

fn ascii(b: u8) -> Unit {
    b.is_ascii().then_some(b)
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// A complete JSON escape's character (`Some(None)`: not ASCII, or not
/// valid); `None` while more bytes are needed.
fn json_escape(raw: &[u8]) -> Option<Unit> {
    match raw.get(1)? {
        b'u' => {
            if raw.len() < 6 {
                // A non-hex digit ends it early: invalid JSON, no name.
                return match raw[2..].iter().all(u8::is_ascii_hexdigit) {
                    true => None,
                    false => Some(None),
                };
            }
            let code = raw[2..6]
                .iter()
                .fold(0u32, |acc, &b| acc << 4 | u32::from(hex(b)));
            Some(u8::try_from(code).ok().filter(u8::is_ascii))
        }
        b'"' => Some(Some(b'"')),
        b'\\' => Some(Some(b'\\')),
        b'/' => Some(Some(b'/')),
        // \b \f \n \r \t and anything invalid: no name character.
        _ => Some(None),
    }
}

/// `value` as the encoding writes it.
fn write_escaped(encoding: Encoding, value: &[u8], out: &mut ZBuf) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    match encoding {
        Encoding::Text => out.extend(value),
        Encoding::Json => {
            for &b in value {
                match b {
                    b'"' => out.extend(b"\\\""),
                    b'\\' => out.extend(b"\\\\"),
                    0..0x20 => out.extend(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]),
                    _ => out.push(b),
                }
            }
        }
        Encoding::Form => {
            for &b in value {
                match b {
                    b' ' => out.push(b'+'),
                    b if b.is_ascii_alphanumeric() || b"*-._".contains(&b) => out.push(b),
                    b => out.extend(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "substitute_tests.rs"]
mod tests;
