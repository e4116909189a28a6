//! WebSocket frames on the wire (RFC 6455 §5.2), as far as the relay
//! needs them: reading a frame's head, copying a frame as it came, and
//! writing a re-framed message. Which side masks is part of the type
//! ([`Peer`]): a client masks every frame, a server none (§5.1), and a
//! frame masked the wrong way ends the connection.

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::substitute::ZBuf;

/// The opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
/// The largest payload of a control frame (§5.5).
pub const MAX_CONTROL: usize = 125;

/// Which end of the bridged WebSocket a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The client: its frames are masked.
    Agent,
    /// The server: its frames are not.
    Upstream,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Peer::Agent => "agent",
            Peer::Upstream => "upstream",
        })
    }
}

/// Why a WebSocket relay stopped, short of a refused placeholder.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(
        "the {0} sent a WebSocket frame with a reserved bit or opcode set, or a continuation \
         outside a message; no extension was negotiated"
    )]
    Protocol(Peer),
    #[error(
        "the {0} sent a WebSocket frame masked the wrong way (RFC 6455 §5.1: a client masks \
         its frames, a server does not)"
    )]
    Masking(Peer),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One frame's head as it came.
pub struct Head {
    pub fin: bool,
    pub opcode: u8,
    pub len: u64,
    /// The key the payload is masked with (the agent's frames only).
    pub mask: Option<[u8; 4]>,
    /// The head's bytes, to send a frame that is not rewritten as it came.
    pub raw: Vec<u8>,
}

impl Head {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Reads a frame head sent by `from`, counting its bytes into `read`;
/// `None` when the stream closed between frames.
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    from: Peer,
    read: &mut u64,
) -> Result<Option<Head>, FrameError> {
    let mut two = [0u8; 2];
    match r.read_exact(&mut two).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if two[0] & 0x70 != 0 {
        return Err(FrameError::Protocol(from));
    }
    let masked = two[1] & 0x80 != 0;
    if masked != (from == Peer::Agent) {
        return Err(FrameError::Masking(from));
    }
    let mut raw = two.to_vec();
    let len = match two[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            r.read_exact(&mut ext).await?;
            raw.extend_from_slice(&ext);
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            r.read_exact(&mut ext).await?;
            raw.extend_from_slice(&ext);
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    let mask = if masked {
        let mut mask = [0u8; 4];
        r.read_exact(&mut mask).await?;
        raw.extend_from_slice(&mask);
        Some(mask)
    } else {
        None
    };
    *read += raw.len() as u64;
    let opcode = two[0] & 0x0f;
    if opcode & 0x8 != 0 && (len > MAX_CONTROL as u64 || two[0] & 0x80 == 0) {
        return Err(FrameError::Protocol(from));
    }
    Ok(Some(Head {
        fin: two[0] & 0x80 != 0,
        opcode,
        len,
        mask,
        raw,
    }))
}

/// Reads the next piece of a payload with `left` bytes to go into `buf`
/// (at most its length); a stream that ends first is an error.
pub async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    left: u64,
    read: &mut u64,
) -> Result<usize, FrameError> {
    let want = usize::try_from(left).unwrap_or(buf.len()).min(buf.len());
    let n = r.read(&mut buf[..want]).await?;
    if n == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    *read += n as u64;
    Ok(n)
}

/// A frame that is not rewritten: its head and payload as they came.
pub async fn copy_frame<R, W>(
    r: &mut R,
    w: &mut W,
    head: &Head,
    buf: &mut [u8],
    read: &mut u64,
) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    w.write_all(&head.raw).await?;
    let mut left = head.len;
    while left > 0 {
        let n = read_payload(r, buf, left, read).await?;
        left -= n as u64;
        w.write_all(&buf[..n]).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Writes one frame for `to`. Towards the upstream it is masked with a
/// fresh random key and built in a zeroizing buffer, since its payload
/// may hold a value. Towards the agent the payload (already scrubbed)
/// goes as it is, after the head, in one vectored write: no copy.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    to: Peer,
    fin: bool,
    opcode: u8,
    payload: &[u8],
) -> Result<(), FrameError> {
    let masked = to == Peer::Upstream;
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = payload.len();
    // At most 2 + 8 length bytes + 4 mask bytes.
    let mut head = [0u8; 14];
    head[0] = if fin { 0x80 } else { 0 } | opcode;
    let mut at = match len {
        0..=125 => {
            head[1] = mask_bit | len as u8;
            2
        }
        126..=0xffff => {
            head[1] = mask_bit | 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            head[1] = mask_bit | 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if masked {
        let mask: [u8; 4] = rand::random();
        head[at..at + 4].copy_from_slice(&mask);
        at += 4;
        let mut frame = ZBuf::with_capacity(at + len);
        frame.extend(&head[..at]);
        for (i, b) in payload.iter().enumerate() {
            frame.push(b ^ mask[i % 4]);
        }
        w.write_all(frame.as_slice()).await?;
    } else {
        w.write_all_buf(&mut Buf::chain(&head[..at], payload))
            .await?;
    }
    w.flush().await?;
    Ok(())
}

/// A data message being re-framed for `to`: its first frame carries the
/// message's opcode, the rest are continuations.
pub struct Outgoing {
    opcode: u8,
    started: bool,
    to: Peer,
}

impl Outgoing {
    pub fn new(opcode: u8, to: Peer) -> Self {
        Outgoing {
            opcode,
            started: false,
            to,
        }
    }

    /// Sends `payload` as the message's next frame, the last with `fin`.
    pub async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        fin: bool,
        payload: &[u8],
    ) -> Result<(), FrameError> {
        let opcode = if self.started {
            CONTINUATION
        } else {
            self.opcode
        };
        self.started = true;
        write_frame(w, self.to, fin, opcode, payload).await
    }
}

/// A control frame's payload cut to what a control frame may carry (a
/// scrubbed payload can outgrow it when a placeholder is longer than its
/// value): a close keeps its status code, a ping or pong goes empty.
pub fn fit_control(opcode: u8, payload: &[u8]) -> &[u8] {
    match payload.len() {
        0..=MAX_CONTROL => payload,
        _ if opcode == CLOSE => &payload[..2],
        _ => &[],
    }
}
