//! WebSocket framing (RFC 6455 §5) over any async byte stream, with memory
//! that follows the frames in flight rather than the largest frame seen.
//!
//! tungstenite's codec keeps its read buffer at the size of the largest
//! frame it has read, and copies every outgoing frame into a write buffer
//! that keeps that size too: one 5 MB broadcast left 5 MB behind on every
//! subscriber. No setting changes that, so framing is done here:
//!
//! - reading uses a small buffer for headers and small frames; a larger
//!   payload gets a buffer of its own that grows as its bytes arrive
//!   (a header that announces 10 MB allocates nothing yet) and that is
//!   handed over with the message;
//! - writing gathers small frames into one write per batch and sends a
//!   large frame's payload from the shared buffer it already lives in,
//!   so a broadcast is never copied per subscriber;
//! - every write must make progress within a deadline, so a client that
//!   stops reading cannot hold a write (and its memory) forever.
//!
//! The handshake stays tungstenite's (`derive_accept_key`), and so does the
//! list of valid close codes.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tungstenite::protocol::frame::coding::CloseCode;

/// What an idle connection's read buffer holds at most: a frame header
/// and small frames. Idle connections are what a server has most of.
const READ_CHUNK: usize = 512;

/// Frames up to this size are copied into the batch's write buffer; larger
/// payloads are written from where they are.
const GATHER_MAX: usize = 4 * 1024;

/// Past this many gathered bytes the write buffer is written out, so one
/// huge batch cannot make it huge.
const HIGH_WATER: usize = 64 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, to be answered with a pong carrying the same bytes.
    Ping(Bytes),
    /// A pong (nothing to do).
    Pong,
    /// The client starts (or answers) the closing handshake, with its code
    /// if it sent one (always a valid one: invalid codes are a
    /// [`ReadError::Protocol`]).
    Close(Option<u16>),
}

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The connection broke, or the client closed it without a close frame.
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol (close with 1002).
    #[error("{0}")]
    Protocol(&'static str),
    /// A message over the size limit (close with 1009).
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooBig {
        /// The size announced (or reached).
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A text message, or a close reason, that is not UTF-8 (close with 1007).
    #[error("text is not valid UTF-8")]
    Utf8,
}

/// A frame header as it arrived.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: u64,
}

/// Parses a client frame header from the start of `buf`; `Ok(None)` until
/// all of it has arrived. Returns the header and its length in bytes.
fn parse_header(buf: &[u8]) -> Result<Option<(Header, usize)>, ReadError> {
    let [first, second, ..] = *buf else { return Ok(None) };
    if first & 0x70 != 0 {
        return Err(ReadError::Protocol("reserved bits set (no extension was negotiated)"));
    }
    let opcode = first & 0x0F;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(ReadError::Protocol("reserved opcode"));
    }
    if second & 0x80 == 0 {
        return Err(ReadError::Protocol("a client frame must be masked"));
    }
    let (len, at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
    let header = Header { fin: first & 0x80 != 0, opcode, mask: [mask[0], mask[1], mask[2], mask[3]], len };
    Ok(Some((header, at + 4)))
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// A frame whose payload is longer than what the read buffer holds.
struct Pending {
    header: Header,
    data: Vec<u8>,
}

/// Reads client frames. Every await point is a read into state kept here,
/// so [`Reader::next`] can be cancelled (in a `select!`) and resumed.
pub(crate) struct Reader<R> {
    io: R,
    buf: BytesMut,
    pending: Option<Pending>,
    /// A fragmented message being gathered: its opcode and bytes so far.
    fragments: Option<(u8, Vec<u8>)>,
    max_message: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader that refuses messages larger than `max_message` bytes.
    pub(crate) fn new(io: R, max_message: usize) -> Self {
        Reader { io, buf: BytesMut::new(), pending: None, fragments: None, max_message }
    }

    /// The next message or control frame.
    pub(crate) async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            if let Some(pending) = &mut self.pending {
                let remaining = usize::try_from(pending.header.len).unwrap_or(usize::MAX) - pending.data.len();
                if remaining > 0 {
                    // Grows with what arrives, never past the frame.
                    let grow = remaining.min(pending.data.len().max(16 * 1024));
                    if pending.data.capacity() == pending.data.len() {
                        pending.data.reserve_exact(grow);
                    }
                    let spare = pending.data.capacity() - pending.data.len();
                    let n = self.io.read_buf(&mut (&mut pending.data).limit(spare.min(remaining))).await?;
                    if n == 0 {
                        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
                    }
                    continue;
                }
                let Some(Pending { header, mut data }) = self.pending.take() else { continue };
                unmask(&mut data, header.mask);
                if let Some(incoming) = self.frame(&header, Bytes::from(data))? {
                    return Ok(incoming);
                }
                continue;
            }
            if let Some((header, at)) = parse_header(&self.buf)? {
                self.check(&header)?;
                self.buf.advance(at);
                let len = usize::try_from(header.len).unwrap_or(usize::MAX);
                if len <= self.buf.len() {
                    let mut payload = self.buf.split_to(len);
                    unmask(&mut payload, header.mask);
                    self.release_idle_buffer();
                    if let Some(incoming) = self.frame(&header, payload.freeze())? {
                        return Ok(incoming);
                    }
                } else {
                    let mut data = Vec::with_capacity(len.min(self.buf.len().max(16 * 1024)));
                    data.extend_from_slice(&self.buf.split());
                    self.release_idle_buffer();
                    self.pending = Some(Pending { header, data });
                }
                continue;
            }
            if self.buf.capacity() - self.buf.len() == 0 {
                self.buf.reserve(READ_CHUNK);
            }
            let spare = (self.buf.capacity() - self.buf.len()).min(READ_CHUNK);
            if self.io.read_buf(&mut (&mut self.buf).limit(spare)).await? == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Whether a fragmented message has begun and not ended.
    pub(crate) fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// The stream, for what is left to read once the connection closes.
    pub(crate) fn into_inner(self) -> R {
        self.io
    }

    /// Reads and drops frames until the client's close frame, an error or
    /// the end of the stream: what is left of a connection that is closing.
    pub(crate) async fn until_closed(&mut self) {
        while let Ok(incoming) = self.next().await {
            if matches!(incoming, Incoming::Close(_)) {
                return;
            }
        }
    }

    /// An empty buffer gives its memory back, so what one large read
    /// brought in does not stay with the connection.
    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// What can be refused from the header alone.
    fn check(&self, header: &Header) -> Result<(), ReadError> {
        let control = header.opcode >= OP_CLOSE;
        if control && (!header.fin || header.len > 125) {
            return Err(ReadError::Protocol("control frames must be whole and at most 125 bytes"));
        }
        match (header.opcode, &self.fragments) {
            (OP_CONTINUATION, None) => return Err(ReadError::Protocol("continuation frame without a message")),
            (OP_TEXT | OP_BINARY, Some(_)) => return Err(ReadError::Protocol("new message before the last one ended")),
            _ => {}
        }
        let so_far = self.fragments.as_ref().map_or(0, |(_, data)| data.len() as u64);
        // A continuation can announce up to 2^64 - 1 bytes: a plain sum
        // overflows (a panic in debug builds, and a wrapped total that
        // passes the limit in release builds).
        let total = so_far.saturating_add(header.len);
        if !control && total > self.max_message as u64 {
            return Err(ReadError::TooBig { size: total, max: self.max_message });
        }
        Ok(())
    }

    /// A whole frame: a message when it completes one.
    fn frame(&mut self, header: &Header, payload: Bytes) -> Result<Option<Incoming>, ReadError> {
        let (opcode, message) = match header.opcode {
            OP_PING => return Ok(Some(Incoming::Ping(payload))),
            OP_PONG => return Ok(Some(Incoming::Pong)),
            OP_CLOSE => return close_code(&payload).map(|code| Some(Incoming::Close(code))),
            OP_CONTINUATION => {
                let Some((_, data)) = &mut self.fragments else {
                    return Err(ReadError::Protocol("continuation frame without a message"));
                };
                data.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let Some((opcode, data)) = self.fragments.take() else { return Ok(None) };
                (opcode, Bytes::from(data))
            }
            opcode if !header.fin => {
                self.fragments = Some((opcode, payload.to_vec()));
                return Ok(None);
            }
            opcode => (opcode, payload),
        };
        if opcode == OP_TEXT {
            std::str::from_utf8(&message).map_err(|_| ReadError::Utf8)?;
            Ok(Some(Incoming::Text(message)))
        } else {
            Ok(Some(Incoming::Binary(message)))
        }
    }
}

/// The code of a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !CloseCode::from(code).is_allowed() {
                return Err(ReadError::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| ReadError::Utf8)?;
            Ok(Some(code))
        }
    }
}

/// Writes server frames (unmasked). Small frames are gathered until
/// [`Writer::flush`]; the buffer that gathers them is freed after each flush.
pub(crate) struct Writer<W> {
    io: W,
    buf: Vec<u8>,
    /// A write that makes no progress for this long fails with `TimedOut`.
    stall: Duration,
}

fn header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// A writer that gives up on a write making no progress for `stall`.
    pub(crate) fn new(io: W, stall: Duration) -> Self {
        Writer { io, buf: Vec::new(), stall }
    }

    /// Changes the no-progress deadline (shorter while closing).
    pub(crate) fn set_stall(&mut self, stall: Duration) {
        self.stall = stall;
    }

    /// Queues a text (`binary: false`) or binary message.
    pub(crate) async fn message(&mut self, binary: bool, payload: &Bytes) -> io::Result<()> {
        self.frame(if binary { OP_BINARY } else { OP_TEXT }, payload).await
    }

    /// Queues a pong answering a ping.
    pub(crate) async fn pong(&mut self, payload: &Bytes) -> io::Result<()> {
        self.frame(OP_PONG, payload).await
    }

    /// Sends a close frame, flushes, and ends the write side.
    pub(crate) async fn close(&mut self, code: Option<u16>, reason: &str) -> io::Result<()> {
        let mut payload = Vec::new();
        if let Some(code) = code {
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
        }
        self.frame(OP_CLOSE, &Bytes::from(payload)).await?;
        self.flush().await?;
        self.io.shutdown().await
    }

    async fn frame(&mut self, opcode: u8, payload: &Bytes) -> io::Result<()> {
        header(opcode, payload.len(), &mut self.buf);
        if payload.len() <= GATHER_MAX {
            self.buf.extend_from_slice(payload);
            if self.buf.len() >= HIGH_WATER {
                self.write_gathered().await?;
            }
            return Ok(());
        }
        self.write_gathered().await?;
        self.write_all(payload).await
    }

    /// Writes everything queued.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.write_gathered().await?;
        tokio::time::timeout(self.stall, self.io.flush()).await.map_err(|_| stalled())?
    }

    async fn write_gathered(&mut self) -> io::Result<()> {
        let gathered = std::mem::take(&mut self.buf);
        self.write_all(&gathered).await
    }

    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = tokio::time::timeout(self.stall, self.io.write(data)).await.map_err(|_| stalled())??;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client read nothing for the write deadline")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame, masked with `mask`.
    fn client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = Vec::new();
        header(opcode, payload.len(), &mut out);
        if !fin {
            out[0] &= 0x7F;
        }
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Incoming, String>> {
        let mut reader = Reader::new(&bytes[..], max);
        let mut out = Vec::new();
        loop {
            match reader.next().await {
                Ok(incoming) => out.push(Ok(incoming)),
                Err(ReadError::Io(_)) => return out,
                Err(error) => {
                    out.push(Err(error.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn small_large_and_fragmented_messages() {
        let large = vec![b'x'; 100_000];
        let mut bytes = client(OP_TEXT, true, b"hello");
        bytes.extend(client(OP_BINARY, true, &large));
        bytes.extend(client(OP_TEXT, false, b"hel"));
        bytes.extend(client(OP_PING, true, b"p"));
        bytes.extend(client(OP_CONTINUATION, true, b"lo"));
        bytes.extend(client(OP_CLOSE, true, &[0x03, 0xE8]));
        let got = read_all(bytes, 1 << 20).await;
        assert_eq!(
            got,
            vec![
                Ok(Incoming::Text(Bytes::from_static(b"hello"))),
                Ok(Incoming::Binary(Bytes::from(large))),
                Ok(Incoming::Ping(Bytes::from_static(b"p"))),
                Ok(Incoming::Text(Bytes::from_static(b"hello"))),
                Ok(Incoming::Close(Some(1000))),
            ]
        );
    }

    #[tokio::test]
    async fn protocol_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (client(0x3, true, b""), "reserved opcode"),
            (client(OP_CONTINUATION, true, b"x"), "continuation frame without a message"),
            (client(OP_PING, false, b""), "control frames must be whole"),
            (client(OP_PING, true, &[0; 126]), "control frames must be whole"),
            (client(OP_CLOSE, true, &[3]), "one-byte payload"),
            (client(OP_CLOSE, true, &1005u16.to_be_bytes()), "invalid close code"),
            (client(OP_CLOSE, true, &[0x03, 0xE8, 0xFF]), "UTF-8"),
            (client(OP_TEXT, true, &[0xFF]), "UTF-8"),
            (client(OP_BINARY, true, &[0; 2000]), "exceeds the limit of 1000"),
            ([client(OP_TEXT, false, &[0; 600]), client(OP_CONTINUATION, true, &[0; 600])].concat(), "exceeds"),
            ([client(OP_TEXT, false, b"a"), client(OP_TEXT, true, b"b")].concat(), "new message before"),
        ];
        for (bytes, expected) in cases {
            let got = read_all(bytes, 1000).await;
            assert!(matches!(got.last(), Some(Err(e)) if e.contains(expected)), "{expected}: {got:?}");
        }
        let mut unmasked = client(OP_TEXT, true, b"x");
        unmasked[1] &= 0x7F;
        let got = read_all(unmasked, 1000).await;
        assert!(matches!(got.last(), Some(Err(e)) if e.contains("masked")), "{got:?}");
    }

    #[tokio::test]
    async fn an_announced_frame_allocates_only_what_arrived() {
        let mut bytes = client(OP_BINARY, true, &[0; 5_000_000]);
        bytes.truncate(1000);
        let mut reader = Reader::new(&bytes[..], 10_000_000);
        assert!(reader.next().await.is_err());
        assert!(reader.pending.as_ref().unwrap().data.capacity() < 64 * 1024);
    }

    #[tokio::test]
    async fn large_payloads_are_written_from_where_they_are_and_nothing_stays() {
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out, Duration::from_secs(1));
        writer.message(false, &Bytes::from_static(b"hi")).await.unwrap();
        writer.message(true, &Bytes::from(vec![7; 60_000])).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(writer.buf.capacity(), 0);
        writer.close(Some(1000), "").await.unwrap();
        assert_eq!(&out[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&out[4..8], &[0x82, 126, 0xEA, 0x60]);
        assert_eq!(out.len(), 4 + 4 + 60_000 + 4);
        assert_eq!(&out[out.len() - 4..], &[0x88, 2, 0x03, 0xE8]);
    }
}
