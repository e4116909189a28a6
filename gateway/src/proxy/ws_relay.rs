//! A bridged WebSocket, frame by frame (RFC 6455 §5): placeholders in
//! the agent's text messages become their values, and the injected values
//! in the upstream's messages become their placeholders again.
//!
//! From the agent ([`agent_to_upstream`]): every text message goes through
//! a [`Substituter`] ([`Encoding::Text`]): a body secret's placeholder
//! that applies to the upgrade request (host, path, agent) is replaced by
//! its value; any other placeholder ends the connection, audited as an
//! exfiltration attempt (after the 101 there is no status left to answer
//! 403 with). Binary and control frames go as they came, byte for byte.
//!
//! From the upstream ([`upstream_to_agent`]): every data message, text or
//! binary, streams through a [`BodyScrub`] holding every value injected
//! into the upgrade request (a header secret on the handshake, a body
//! secret in the agent's messages), so an API that echoes what it got
//! hands the agent the placeholder, never the key. Binary messages are
//! scrubbed too: an echo does not care about the opcode. A message is
//! flushed at its last frame, so a value is caught however the upstream
//! fragments it, though not one split across two messages (that is two
//! halves, neither of which is the key). A control frame's payload is
//! scrubbed whole; one that outgrows a control frame keeps only its close
//! code ([`fit_control`]).
//!
//! How messages are re-framed: each piece the substituter or scrubber
//! writes out goes as its own frame (the message's opcode first, then
//! `continuation`, `FIN` on the last), masked with a fresh random key
//! towards the upstream, so a value may change a frame's length. RFC 6455
//! §5.4 lets an intermediary change fragmentation when no extension is in
//! use, which the gateway ensures by removing the agent's
//! `Sec-WebSocket-Extensions` offer (permessage-deflate would hide the
//! text): a frame with a reserved bit set, or masked the wrong way, ends
//! the connection.
//!
//! Memory per connection is bounded: a control frame (at most 125 bytes),
//! a 16 KiB read buffer each way, the substituter's look-ahead and the
//! scrubber's hold-back, whatever the size of a frame or message. Frames
//! the gateway wrote a value into are zeroizing buffers.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::scrub_body::BodyScrub;
use super::substitute::{Encoding, Refused, Resolve, Substituter, ZBuf};
use super::ws_frame::{
    BINARY, CONTINUATION, FrameError, MAX_CONTROL, Outgoing, Peer, TEXT, copy_frame, fit_control,
    read_head, read_payload, write_frame,
};

const CHUNK: usize = 16 * 1024;

/// Why one direction of a WebSocket stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<std::io::Error> for RelayError {
    fn from(e: std::io::Error) -> Self {
        RelayError::Frame(FrameError::Io(e))
    }
}

/// Copies the agent's frames to the upstream until the agent closes,
/// substituting placeholders in text messages; counts the bytes read.
pub async fn agent_to_upstream<R, W>(
    agent: &mut R,
    upstream: &mut W,
    keys: &mut (dyn Resolve + Send),
    read: &mut u64,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut text: Option<(Substituter, Outgoing)> = None;
    let mut binary = false;
    let mut buf = vec![0u8; CHUNK];
    while let Some(head) = read_head(agent, Peer::Agent, read).await? {
        match head.opcode {
            _ if head.is_control() => {
                copy_frame(agent, upstream, &head, &mut buf, read).await?;
                continue;
            }
            TEXT => {
                text = Some((
                    Substituter::new(Encoding::Text),
                    Outgoing::new(TEXT, Peer::Upstream),
                ));
                binary = false;
            }
            BINARY => binary = true,
            CONTINUATION => {}
            _ => return Err(FrameError::Protocol(Peer::Agent).into()),
        }
        let Some((subst, out)) = text.as_mut().filter(|_| !binary) else {
            copy_frame(agent, upstream, &head, &mut buf, read).await?;
            continue;
        };
        let mask = head.mask.unwrap_or_default();
        let mut left = head.len;
        let mut at = 0usize;
        while left > 0 {
            let n = read_payload(agent, &mut buf, left, read).await?;
            left -= n as u64;
            for b in &mut buf[..n] {
                *b ^= mask[at % 4];
                at += 1;
            }
            let mut piece = ZBuf::with_capacity(n + 64);
            let fed = subst.feed(&buf[..n], &mut piece, keys);
            buf[..n].fill(0);
            fed?;
            if !piece.is_empty() {
                out.send(upstream, false, piece.as_slice()).await?;
            }
        }
        if head.fin {
            let mut piece = ZBuf::with_capacity(64);
            subst.finish(&mut piece, keys)?;
            out.send(upstream, true, piece.as_slice()).await?;
            text = None;
        }
    }
    Ok(())
}

/// Copies the upstream's frames to the agent until the upstream closes,
/// scrubbing every data message and control payload of what `scrub`
/// holds; counts the bytes read.
pub async fn upstream_to_agent<R, W>(
    upstream: &mut R,
    agent: &mut W,
    scrub: &mut BodyScrub,
    read: &mut u64,
) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut message: Option<Outgoing> = None;
    let mut buf = BytesMut::new();
    while let Some(head) = read_head(upstream, Peer::Upstream, read).await? {
        if head.is_control() {
            let mut payload = [0u8; MAX_CONTROL];
            // `read_head` bounds a control frame's length.
            let payload = &mut payload[..head.len as usize];
            upstream.read_exact(payload).await?;
            *read += head.len;
            let scrubbed = scrub.whole(payload);
            let out = fit_control(head.opcode, &scrubbed);
            write_frame(agent, Peer::Agent, true, head.opcode, out).await?;
            continue;
        }
        let out = match (head.opcode, message.as_mut()) {
            (TEXT | BINARY, None) => message.insert(Outgoing::new(head.opcode, Peer::Agent)),
            (CONTINUATION, Some(out)) => out,
            _ => return Err(FrameError::Protocol(Peer::Upstream)),
        };
        let mut left = head.len;
        while left > 0 {
            // The piece read goes on as `Bytes` without a copy (unless it
            // held a value); the buffer is reclaimed once it is written,
            // and read into without being zeroed first.
            buf.reserve(CHUNK);
            let want = left.min(CHUNK as u64);
            let n = (&mut *upstream).take(want).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            *read += n as u64;
            left -= n as u64;
            if let Some(piece) = scrub.data(buf.split().freeze()) {
                out.send(agent, false, &piece).await?;
            }
        }
        if head.fin {
            let tail = scrub.flush().unwrap_or_default();
            out.send(agent, true, &tail).await?;
            message = None;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SecretName;
    use crate::proxy::scrub::Scrubber;
    use crate::vault::Plaintext;

    const VALUE: &[u8] = b"sk-long-value-0123456789";

    struct Keys;
    impl Resolve for Keys {
        fn resolve(&mut self, name: &str) -> Result<&[u8], String> {
            match name {
                "key" => Ok(VALUE),
                _ => Err("no".into()),
            }
        }
    }

    /// A frame as `from` sends it: masked when the agent sends it.
    fn frame(from: Peer, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let masked = from == Peer::Agent;
        let mask = [1, 2, 3, 4];
        let bit = if masked { 0x80 } else { 0 };
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(bit | n as u8),
            n @ 126..=0xffff => {
                f.push(bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        f
    }

    /// The messages read from `wire` as `from` sent it: (opcode, payload).
    fn messages(from: Peer, mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut current: Option<(u8, Vec<u8>)> = None;
        while !wire.is_empty() {
            let (b0, b1) = (wire[0], wire[1]);
            let mut at = 2;
            let len = match b1 & 0x7f {
                126 => {
                    at += 2;
                    u16::from_be_bytes([wire[2], wire[3]]) as usize
                }
                127 => {
                    at += 8;
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize
                }
                n => n as usize,
            };
            assert_eq!(b1 & 0x80 != 0, from == Peer::Agent, "only a client masks");
            let mask = if b1 & 0x80 != 0 {
                at += 4;
                [wire[at - 4], wire[at - 3], wire[at - 2], wire[at - 1]]
            } else {
                [0; 4]
            };
            let payload: Vec<u8> = wire[at..at + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            wire = &wire[at + len..];
            let opcode = b0 & 0x0f;
            if opcode & 0x8 != 0 {
                out.push((opcode, payload));
                continue;
            }
            let (op, mut data) = current.take().unwrap_or((opcode, Vec::new()));
            data.extend_from_slice(&payload);
            if b0 & 0x80 != 0 {
                out.push((op, data));
            } else {
                current = Some((op, data));
            }
        }
        out
    }

    async fn relay(input: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, RelayError> {
        let mut agent = input;
        let mut up = Vec::new();
        let mut read = 0;
        agent_to_upstream(&mut agent, &mut up, &mut Keys, &mut read).await?;
        assert_eq!(read, input.len() as u64);
        Ok(messages(Peer::Agent, &up))
    }

    /// The upstream's frames as the agent gets them, scrubbed of `VALUE`.
    async fn scrubbed(input: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, FrameError> {
        let name = SecretName::parse("key").unwrap();
        let mut scrubber = Scrubber::default();
        scrubber.add(&name, Plaintext::new(VALUE.to_vec()), 0..VALUE.len());
        let mut scrub = BodyScrub::new(scrubber.into_owned());
        let (mut upstream, mut agent, mut read) = (input, Vec::new(), 0);
        upstream_to_agent(&mut upstream, &mut agent, &mut scrub, &mut read).await?;
        assert_eq!(read, input.len() as u64);
        assert_eq!(scrub.held(), 0, "each message is flushed at its end");
        Ok(messages(Peer::Upstream, &agent))
    }

    #[tokio::test]
    async fn text_messages_are_substituted_across_fragments() {
        let a = |fin, op, p: &[u8]| frame(Peer::Agent, fin, op, p);
        let mut wire = a(true, 0x1, br#"{"auth":"airlock:key"}"#);
        // A placeholder split over two fragments, a ping between them.
        wire.extend(a(false, 0x1, b"x airlock:k"));
        wire.extend(a(true, 0x9, b"ping"));
        wire.extend(a(true, 0x0, b"ey y"));
        wire.extend(a(true, 0x2, b"airlock:key stays in binary"));
        wire.extend(a(true, 0x1, &[b'a'; 300]));
        wire.extend(a(true, 0x8, &[3, 232]));
        let got = relay(&wire).await.unwrap();
        assert_eq!(
            got,
            vec![
                (0x1, br#"{"auth":"sk-long-value-0123456789"}"#.to_vec()),
                (0x9, b"ping".to_vec()),
                (0x1, b"x sk-long-value-0123456789 y".to_vec()),
                (0x2, b"airlock:key stays in binary".to_vec()),
                (0x1, vec![b'a'; 300]),
                (0x8, vec![3, 232]),
            ]
        );
    }

    #[tokio::test]
    async fn a_placeholder_that_may_not_resolve_ends_the_connection() {
        let wire = frame(Peer::Agent, true, 0x1, b"hello airlock:other");
        assert!(matches!(relay(&wire).await, Err(RelayError::Refused(r)) if r.name == "other"));
        let mut rsv = frame(Peer::Agent, true, 0x1, b"x");
        rsv[0] |= 0x40;
        assert!(matches!(
            relay(&rsv).await,
            Err(RelayError::Frame(FrameError::Protocol(Peer::Agent)))
        ));
        let unmasked = frame(Peer::Upstream, true, 0x1, b"x");
        assert!(matches!(
            relay(&unmasked).await,
            Err(RelayError::Frame(FrameError::Masking(Peer::Agent)))
        ));
    }

    #[tokio::test]
    async fn the_upstreams_messages_lose_the_value_however_they_are_cut() {
        let u = |fin, op, p: &[u8]| frame(Peer::Upstream, fin, op, p);
        let mut wire = u(true, 0x1, b"{\"echo\":\"sk-long-value-0123456789\"}");
        // The value cut across three fragments, a ping quoting it between.
        wire.extend(u(false, 0x1, b"a sk-long-"));
        wire.extend(u(true, 0x9, b"sk-long-value-0123456789"));
        wire.extend(u(false, 0x0, b"value-0123"));
        wire.extend(u(true, 0x0, b"456789 b"));
        // Binary messages are scrubbed too; a message without the value
        // and a value's unfinished start at a message's end pass as sent.
        wire.extend(u(true, 0x2, b"\x00sk-long-value-0123456789\xff"));
        wire.extend(u(true, 0x1, &[b'z'; 70_000]));
        wire.extend(u(true, 0x1, b"ends in sk-long-val"));
        wire.extend(u(true, 0x8, b"\x03\xe8bye sk-long-value-0123456789"));
        let got = scrubbed(&wire).await.unwrap();
        assert_eq!(
            got,
            vec![
                (0x1, b"{\"echo\":\"airlock:key\"}".to_vec()),
                (0x9, b"airlock:key".to_vec()),
                (0x1, b"a airlock:key b".to_vec()),
                (0x2, b"\x00airlock:key\xff".to_vec()),
                (0x1, vec![b'z'; 70_000]),
                (0x1, b"ends in sk-long-val".to_vec()),
                (0x8, b"\x03\xe8bye airlock:key".to_vec()),
            ]
        );
    }

    #[test]
    fn a_control_payload_that_outgrows_its_frame_keeps_only_the_close_code() {
        // A placeholder longer than its (short) value can make it grow.
        assert_eq!(fit_control(0x8, &[3, 232, b'x']), &[3, 232, b'x']);
        assert_eq!(fit_control(0x8, &[3, 232, b'x', 0, 0][..2]), &[3, 232]);
        assert_eq!(fit_control(0x8, &[b'x'; 130]), &[b'x'; 2]);
        assert_eq!(fit_control(0x9, &[b'x'; 130]), b"");
        assert_eq!(fit_control(0xA, &[b'x'; 125]), &[b'x'; 125]);
    }

    #[tokio::test]
    async fn an_upstream_breaking_the_protocol_ends_the_connection() {
        let masked = frame(Peer::Agent, true, 0x1, b"x");
        assert!(matches!(
            scrubbed(&masked).await,
            Err(FrameError::Masking(Peer::Upstream))
        ));
        let orphan = frame(Peer::Upstream, true, 0x0, b"x");
        assert!(matches!(
            scrubbed(&orphan).await,
            Err(FrameError::Protocol(Peer::Upstream))
        ));
        let mut nested = frame(Peer::Upstream, false, 0x1, b"x");
        nested.extend(frame(Peer::Upstream, true, 0x1, b"y"));
        assert!(matches!(
            scrubbed(&nested).await,
            Err(FrameError::Protocol(Peer::Upstream))
        ));
        let mut rsv = frame(Peer::Upstream, true, 0x1, b"x");
        rsv[0] |= 0x40;
        assert!(matches!(
            scrubbed(&rsv).await,
            Err(FrameError::Protocol(Peer::Upstream))
        ));
        let cut = &frame(Peer::Upstream, true, 0x1, b"xyz")[..3];
        assert!(matches!(scrubbed(cut).await, Err(FrameError::Io(_))));
    }
}
