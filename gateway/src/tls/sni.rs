//! Reads the SNI host name from the first bytes of a connection, before any
//! TLS library sees them: the proxy peeks, routes, then hands the untouched
//! socket to tokio-rustls.
//!
//! [`parse_client_hello_sni`] is pure and total: any input gives an answer,
//! never a panic, and it never asks for more than [`MAX_CLIENT_HELLO_LEN`]
//! bytes. It follows RFC 8446 §4.1.2 and RFC 6066 §3, reassembling a
//! ClientHello fragmented over several handshake records. It only locates
//! the name; the handshake proper (and its stricter checks) is rustls's job.

use std::borrow::Cow;

/// The most bytes the parser needs: a ClientHello whose records run past
/// this is answered [`Sni::NotTls`]. Real hellos, post-quantum key shares
/// included, are a few KiB.
pub const MAX_CLIENT_HELLO_LEN: usize = 32 * 1024;

const CONTENT_TYPE_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// RFC 8446 §5.1: a plaintext record fragment is at most 2^14 bytes.
const MAX_RECORD_LEN: usize = 1 << 14;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// What the first bytes of a connection say about its TLS server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// A ClientHello naming this host, as sent (printable ASCII; validate
    /// it with [`LeafName::parse`](super::LeafName::parse) before use).
    Name(String),
    /// A well-formed ClientHello without a server name (e.g. a client
    /// dialling an IP address).
    Absent,
    /// A ClientHello so far: read more bytes and ask again.
    Incomplete,
    /// Not a TLS handshake record, not a ClientHello, or a malformed one.
    NotTls,
}

/// The SNI host name of the ClientHello at the start of `buf`.
pub fn parse_client_hello_sni(buf: &[u8]) -> Sni {
    match client_hello_body(buf) {
        Ok(body) => read_server_name(&body).unwrap_or(Sni::NotTls),
        Err(answer) => answer,
    }
}

/// The ClientHello message body, reassembled from the handshake records at
/// the start of `buf`; borrowed when one record holds it all (the usual case).
fn client_hello_body(buf: &[u8]) -> Result<Cow<'_, [u8]>, Sni> {
    let mut handshake: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut offset = 0;
    loop {
        let rest = &buf[offset..];
        check_record_header(rest)?;
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let record_end = offset + RECORD_HEADER_LEN + len;
        if len == 0 || len > MAX_RECORD_LEN || record_end > MAX_CLIENT_HELLO_LEN {
            return Err(Sni::NotTls);
        }
        let available = &rest[RECORD_HEADER_LEN..];
        let fragment = &available[..len.min(available.len())];
        if handshake.is_empty() {
            handshake = Cow::Borrowed(fragment);
        } else {
            handshake.to_mut().extend_from_slice(fragment);
        }
        if let Some(body_len) = handshake_len(&handshake)? {
            let end = HANDSHAKE_HEADER_LEN + body_len;
            if handshake.len() >= end {
                return Ok(match handshake {
                    Cow::Borrowed(b) => Cow::Borrowed(&b[HANDSHAKE_HEADER_LEN..end]),
                    Cow::Owned(mut v) => {
                        v.truncate(end);
                        v.drain(..HANDSHAKE_HEADER_LEN);
                        Cow::Owned(v)
                    }
                });
            }
        }
        if available.len() < len {
            return Err(Sni::Incomplete);
        }
        offset = record_end;
    }
}

/// Judges a record header byte by byte, so that a short prefix that can
/// no longer be TLS is refused at once rather than waited on.
fn check_record_header(rest: &[u8]) -> Result<(), Sni> {
    let expected: [fn(u8) -> bool; 3] = [
        |b| b == CONTENT_TYPE_HANDSHAKE,
        |b| b == 3, // major version of every TLS/SSL 3.x record
        |b| b <= 4, // minor: SSL 3.0 to "TLS 1.3" (records say 1.0 or 1.2)
    ];
    for (i, ok) in expected.iter().enumerate() {
        match rest.get(i) {
            None => return Err(Sni::Incomplete),
            Some(&b) if !ok(b) => return Err(Sni::NotTls),
            Some(_) => {}
        }
    }
    if rest.len() < RECORD_HEADER_LEN {
        return Err(Sni::Incomplete);
    }
    Ok(())
}

/// The ClientHello body length once the handshake header is in, or `None`
/// while it is not; an error if the message is not a ClientHello or too big.
fn handshake_len(handshake: &[u8]) -> Result<Option<usize>, Sni> {
    match handshake.first() {
        Some(&HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => return Err(Sni::NotTls),
        None => return Ok(None),
    }
    let Some(&[a, b, c]) = handshake.get(1..HANDSHAKE_HEADER_LEN) else {
        return Ok(None);
    };
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if len > MAX_CLIENT_HELLO_LEN {
        return Err(Sni::NotTls);
    }
    Ok(Some(len))
}

/// Walks a complete ClientHello body; `None` when it is malformed.
fn read_server_name(body: &[u8]) -> Option<Sni> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    if r.vec_u8()?.len() > 32 {
        return None; // legacy_session_id
    }
    let suites = r.vec_u16()?;
    if suites.len() < 2 || suites.len() % 2 != 0 {
        return None;
    }
    if r.vec_u8()?.is_empty() {
        return None; // legacy_compression_methods
    }
    if r.is_empty() {
        return Some(Sni::Absent); // a pre-extensions hello
    }
    let mut extensions = Reader(r.vec_u16()?);
    if !r.is_empty() {
        return None;
    }
    let mut sni = Sni::Absent;
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec_u16()?;
        if kind == EXTENSION_SERVER_NAME && sni == Sni::Absent {
            sni = server_name_list(data)?;
        }
    }
    Some(sni)
}

/// The host name in a server_name extension (RFC 6066 §3).
fn server_name_list(data: &[u8]) -> Option<Sni> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec_u16()?);
    if !outer.is_empty() {
        return None;
    }
    let mut host = None;
    while !list.is_empty() {
        if list.u8()? != NAME_TYPE_HOST_NAME {
            // No other name type is defined, so nothing says how long one
            // is: the rest cannot be read. Stop, as rustls does, rather
            // than refuse a hello its handshake would accept.
            break;
        }
        let name = list.vec_u16()?;
        if host.is_none() {
            if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
                return None;
            }
            host = Some(String::from_utf8(name.to_vec()).ok()?);
        }
    }
    Some(host.map_or(Sni::Absent, Sni::Name))
}

/// A cursor over TLS wire encodings; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes: [u8; 2] = self.take(2)?.try_into().ok()?;
        Some(u16::from_be_bytes(bytes))
    }

    /// A vector with a one-byte length prefix.
    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A vector with a two-byte length prefix.
    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

#[cfg(test)]
#[path = "sni_tests.rs"]
mod tests;
