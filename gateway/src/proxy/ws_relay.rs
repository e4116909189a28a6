//! Placeholders in WebSocket text messages from the agent: once a
//! WebSocket upgrade is bridged, the agent's frames are parsed (RFC 6455
//! §5) instead of copied as bytes, and every text message goes through a
//! [`Substituter`] ([`Encoding::Text`]): a body secret's placeholder that
//! applies to the upgrade request (host, path, agent) is replaced by its
//! value; any other placeholder ends the connection, audited as an
//! exfiltration attempt (after the 101 there is no status left to answer
//! 403 with). The upstream's frames to the agent are copied as they are.
//!
//! How frames are rewritten: binary frames and control frames (ping,
//! pong, close) go as they came, byte for byte. A text message is
//! re-framed: each piece the substituter writes out goes as its own frame
//! (the first `text`, the rest `continuation`, `FIN` on the last), masked
//! with a fresh random key, so a value may change a frame's length and a
//! placeholder split across the agent's fragments is still found. RFC
//! 6455 §5.4 lets an intermediary change fragmentation when no extension
//! is in use, which the gateway ensures by removing the agent's
//! `Sec-WebSocket-Extensions` offer (permessage-deflate would hide the
//! text): a frame with a reserved bit set ends the connection.
//!
//! Memory per connection is bounded: a control frame (at most 125 bytes),
//! a 16 KiB read buffer, and the substituter's look-ahead, whatever the
//! size of a frame or message. Frames that held a value are zeroizing
//! buffers.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::substitute::{Encoding, Refused, Resolve, Substituter, ZBuf};

const CHUNK: usize = 16 * 1024;

/// Why the agent's side of a WebSocket stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(
        "the agent sent a WebSocket frame with a reserved bit or opcode set; no extension was negotiated"
    )]
    Protocol,
    #[error("the agent sent an unmasked WebSocket frame")]
    Unmasked,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One frame's head as the agent sent it.
struct Head {
    fin: bool,
    opcode: u8,
    len: u64,
    mask: [u8; 4],
    /// The head's bytes, to send a frame that is not rewritten as it came.
    raw: Vec<u8>,
}

/// Copies the agent's frames to the upstream until the agent closes,
/// substituting placeholders in text messages; returns the bytes read.
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
    let mut subst: Option<Substituter> = None;
    // In a text message: has its first frame (`text`) gone out yet?
    let mut started = false;
    let mut binary = false;
    let mut buf = vec![0u8; CHUNK];
    while let Some(head) = read_head(agent, read).await? {
        let control = head.opcode & 0x8 != 0;
        match head.opcode {
            _ if control => {
                copy_frame(agent, upstream, &head, &mut buf, read).await?;
                continue;
            }
            0x1 => {
                subst = Some(Substituter::new(Encoding::Text));
                started = false;
                binary = false;
            }
            0x2 => binary = true,
            0x0 => {}
            _ => return Err(RelayError::Protocol),
        }
        if binary || subst.is_none() {
            copy_frame(agent, upstream, &head, &mut buf, read).await?;
            continue;
        }
        let Some(s) = subst.as_mut() else { continue };
        let mut left = head.len;
        let mut at = 0usize;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            let n = agent.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            *read += n as u64;
            left -= n as u64;
            for b in &mut buf[..n] {
                *b ^= head.mask[at % 4];
                at += 1;
            }
            let mut out = ZBuf::with_capacity(n + 64);
            let fed = s.feed(&buf[..n], &mut out, keys);
            buf[..n].fill(0);
            fed?;
            if !out.is_empty() {
                send_text(upstream, &mut started, false, out).await?;
            }
        }
        if head.fin {
            let mut out = ZBuf::with_capacity(64);
            s.finish(&mut out, keys)?;
            send_text(upstream, &mut started, true, out).await?;
            subst = None;
        }
    }
    Ok(())
}

/// Reads a frame head; `None` when the agent closed the stream between
/// frames.
async fn read_head<R: AsyncRead + Unpin>(
    agent: &mut R,
    read: &mut u64,
) -> Result<Option<Head>, RelayError> {
    let mut two = [0u8; 2];
    match agent.read_exact(&mut two).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if two[0] & 0x70 != 0 {
        return Err(RelayError::Protocol);
    }
    if two[1] & 0x80 == 0 {
        return Err(RelayError::Unmasked);
    }
    let mut raw = two.to_vec();
    let len = match two[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            agent.read_exact(&mut ext).await?;
            raw.extend_from_slice(&ext);
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            agent.read_exact(&mut ext).await?;
            raw.extend_from_slice(&ext);
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    agent.read_exact(&mut mask).await?;
    raw.extend_from_slice(&mask);
    *read += raw.len() as u64;
    let opcode = two[0] & 0x0f;
    if opcode & 0x8 != 0 && (len > 125 || two[0] & 0x80 == 0) {
        return Err(RelayError::Protocol);
    }
    Ok(Some(Head {
        fin: two[0] & 0x80 != 0,
        opcode,
        len,
        mask,
        raw,
    }))
}

/// A frame that is not rewritten: its head and payload as they came.
async fn copy_frame<R, W>(
    agent: &mut R,
    upstream: &mut W,
    head: &Head,
    buf: &mut [u8],
    read: &mut u64,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    upstream.write_all(&head.raw).await?;
    let mut left = head.len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(buf.len()).min(buf.len());
        let n = agent.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        *read += n as u64;
        left -= n as u64;
        upstream.write_all(&buf[..n]).await?;
    }
    upstream.flush().await?;
    Ok(())
}

/// Sends `payload` as the next frame of a text message, masked with a
/// fresh key: `text` for the message's first, `continuation` after.
async fn send_text<W: AsyncWrite + Unpin>(
    upstream: &mut W,
    started: &mut bool,
    fin: bool,
    payload: ZBuf,
) -> Result<(), RelayError> {
    let opcode = if *started { 0x0 } else { 0x1 };
    *started = true;
    let len = payload.as_slice().len();
    let mut frame = ZBuf::with_capacity(len + 14);
    frame.push(if fin { 0x80 } else { 0 } | opcode);
    match len {
        0..=125 => frame.push(0x80 | len as u8),
        126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend(&(len as u64).to_be_bytes());
        }
    }
    let mask: [u8; 4] = rand::random();
    frame.extend(&mask);
    for (i, b) in payload.as_slice().iter().enumerate() {
        frame.push(b ^ mask[i % 4]);
    }
    upstream.write_all(frame.as_slice()).await?;
    upstream.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keys;
    impl Resolve for Keys {
        fn resolve(&mut self, name: &str) -> Result<&[u8], String> {
            match name {
                "key" => Ok(b"sk-long-value-0123456789"),
                _ => Err("no".into()),
            }
        }
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// The messages a server reads from `wire`: (opcode, payload).
    fn messages(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
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
            assert!(b1 & 0x80 != 0, "frames to a server are masked");
            let mask = [wire[at], wire[at + 1], wire[at + 2], wire[at + 3]];
            at += 4;
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
        Ok(messages(&up))
    }

    #[tokio::test]
    async fn text_messages_are_substituted_across_fragments() {
        let mut wire = frame(true, 0x1, br#"{"auth":"airlock:key"}"#);
        // A placeholder split over two fragments, a ping between them.
        wire.extend(frame(false, 0x1, b"x airlock:k"));
        wire.extend(frame(true, 0x9, b"ping"));
        wire.extend(frame(true, 0x0, b"ey y"));
        wire.extend(frame(true, 0x2, b"airlock:key stays in binary"));
        wire.extend(frame(true, 0x1, &[b'a'; 300]));
        wire.extend(frame(true, 0x8, &[3, 232]));
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
        let wire = frame(true, 0x1, b"hello airlock:other");
        assert!(matches!(relay(&wire).await, Err(RelayError::Refused(r)) if r.name == "other"));
        let mut rsv = frame(true, 0x1, b"x");
        rsv[0] |= 0x40;
        assert!(matches!(relay(&rsv).await, Err(RelayError::Protocol)));
    }
}
