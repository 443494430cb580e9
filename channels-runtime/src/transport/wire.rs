//! WebSocket framing (RFC 6455 §5) over any async byte stream, with memory
//! that follows the frames in flight rather than the largest frame seen.
//!
//! tungstenite's codec keeps its read buffer at the size of the largest
//! frame it has read, and copies every outgoing frame into a write buffer
//! that keeps that size too: one 5 MB broadcast left 5 MB behind on every
//! subscriber. No setting changes that, so framing is done here:
//!
//! - a [`Decoder`] takes the bytes as they come, from whatever buffer
//!   they were read into, and keeps only what an unfinished frame needs
//!   (the start of a header, or a payload that has not all arrived, in a
//!   buffer of its own that grows as its bytes arrive: a header that
//!   announces 10 MB allocates nothing yet, and that is handed over with
//!   the message); the plain-TCP path of [`super::websocket`] reads into a
//!   per-thread buffer and feeds it, the [`Reader`] here reads any async
//!   stream;
//! - server frames come framed ([`Frame::wire`]: header and payload, built
//!   once when encoded), so a broadcast is never copied or framed per
//!   subscriber; the [`Writer`] here gathers small frames into one write
//!   per batch and writes large ones from where they are;
//! - every write must make progress within a deadline, so a client that
//!   stops reading cannot hold a write (and its memory) forever;
//! - what a message holds while it arrives is counted in the endpoint's
//!   [`Budget`] (a frame announced, the fragments gathered): a large one
//!   that does not fit is refused as its header arrives.
//!
//! Headers, masking, close payloads and the UTF-8 check are
//! `phx-channels-wire`'s, which the client frames with too. Text is
//! checked as it arrives: a byte that cannot be UTF-8 closes the connection
//! in the read that brings it, whichever fragment it is in. The handshake
//! stays tungstenite's (`derive_accept_key`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use phx_channels_wire::frame::{apply_mask, Header, Role, MAX_HEADER};
use phx_channels_wire::utf8::Utf8;
use phx_channels_wire::WireError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::budget::{Budget, Busy, Hold};
use crate::protocol::opcode::{BINARY as OP_BINARY, CLOSE as OP_CLOSE, PONG as OP_PONG, TEXT as OP_TEXT};
use crate::protocol::Frame;

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
const OP_PING: u8 = 0x9;

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
    /// A large message that does not fit the endpoint's in-flight budget
    /// (close with 1013, "try again later").
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Parses a client frame header (no extension uses the reserved bits yet).
fn parse_header(buf: &[u8]) -> Result<Option<(Header, usize)>, ReadError> {
    Ok(Header::parse(buf, Role::Server, false).map_err(WireError::from)?)
}

impl From<WireError> for ReadError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Protocol(reason) => ReadError::Protocol(reason),
            WireError::Utf8 => ReadError::Utf8,
            WireError::TooBig { size, max } => ReadError::TooBig { size, max },
        }
    }
}

/// A frame whose payload has not all arrived.
struct Pending {
    header: Header,
    data: Vec<u8>,
    /// How much of `data` is unmasked (and, for text, checked) already.
    unmasked: usize,
    /// What its announced length holds of the budget.
    hold: Hold,
}

impl Pending {
    fn remaining(&self) -> usize {
        // `check` refused any length over the message limit, a `usize`.
        usize::try_from(self.header.len).unwrap_or(usize::MAX) - self.data.len()
    }

    /// Makes room for more of the payload: it grows with what arrives (a
    /// header that announces 10 MB allocates nothing yet), never past the
    /// frame.
    fn reserve(&mut self) {
        let remaining = self.remaining();
        if remaining > 0 && self.data.capacity() == self.data.len() {
            self.data.reserve_exact(remaining.min(self.data.len().max(GROW)));
        }
    }
}

/// How much a partly arrived payload's buffer grows at least at a time.
const GROW: usize = 16 * 1024;

/// Turns the bytes a client sends into messages, whatever pieces they
/// arrive in. It keeps only what an unfinished frame needs: the start of
/// a header (inline), or a payload that has not all arrived, and a
/// fragmented message being gathered; once a frame is done, nothing.
pub(crate) struct Decoder {
    /// The start of a header that has not all arrived.
    head: [u8; MAX_HEADER],
    head_len: u8,
    /// Boxed: rare (a frame split across reads), and an idle connection
    /// should not carry its room.
    pending: Option<Box<Pending>>,
    /// A fragmented message being gathered: its opcode, its bytes so far,
    /// and what they hold of the budget.
    fragments: Option<Box<(u8, Vec<u8>, Hold)>>,
    /// The UTF-8 check of the text message arriving (a sequence cut
    /// between two reads or fragments).
    utf8: Utf8,
    max_message: usize,
    budget: Option<Arc<Budget>>,
}

impl Decoder {
    /// A decoder that refuses messages larger than `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        Decoder {
            head: [0; MAX_HEADER],
            head_len: 0,
            pending: None,
            fragments: None,
            utf8: Utf8::default(),
            max_message,
            budget: None,
        }
    }

    /// Whether the payload of the frame `header` starts is text to check
    /// as it arrives: a text frame, or a continuation of a text message.
    fn is_text(&self, header: &Header) -> bool {
        match header.opcode {
            OP_TEXT => true,
            OP_CONTINUATION => self.fragments.as_ref().is_some_and(|f| f.0 == OP_TEXT),
            _ => false,
        }
    }

    /// Unmasks the bytes of the pending frame that arrived since the last
    /// call (here, or read straight into it), and checks them if text:
    /// bad text fails in the read that brings it.
    fn unmask_pending(&mut self) -> Result<(), ReadError> {
        let text = match &self.pending {
            Some(pending) => self.is_text(&pending.header),
            None => return Ok(()),
        };
        let Some(pending) = &mut self.pending else { return Ok(()) };
        let from = std::mem::replace(&mut pending.unmasked, pending.data.len());
        apply_mask(&mut pending.data[from..], pending.header.mask, from);
        if text {
            self.utf8.feed(&pending.data[from..]).map_err(|_| ReadError::Utf8)?;
        }
        Ok(())
    }

    /// Counts what unfinished messages hold in `budget`, refusing those that
    /// do not fit.
    pub(crate) fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// `hold`, grown to cover `bytes` of a message whose size so far (these
    /// bytes included) is `total`. A frame that arrives whole holds nothing
    /// until it joins a message being gathered.
    fn held(&self, mut hold: Hold, bytes: usize, total: usize) -> Result<Hold, ReadError> {
        if let Some(budget) = &self.budget {
            if hold.bytes() < bytes {
                hold.grow(budget, bytes - hold.bytes(), total)?;
            }
        }
        Ok(hold)
    }

    /// Takes bytes from the front of `input` until they complete a message
    /// or control frame (returned), or `input` is used up (`Ok(None)`; what
    /// arrived of an unfinished frame is kept for the next call).
    pub(crate) fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Incoming>, ReadError> {
        loop {
            if let Some(pending) = &mut self.pending {
                let n = pending.remaining().min(input.len());
                if n > 0 {
                    pending.reserve();
                    pending.data.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                }
                let done = pending.remaining() == 0;
                self.unmask_pending()?;
                if !done {
                    return Ok(None);
                }
                let Some(pending) = self.pending.take() else { continue };
                let Pending { header, data, hold, .. } = *pending;
                if let Some(incoming) = self.frame(&header, Bytes::from(data), hold)? {
                    return Ok(Some(incoming));
                }
                continue;
            }
            let Some(header) = self.header(input)? else { return Ok(None) };
            self.check(&header)?;
            let len = usize::try_from(header.len).unwrap_or(usize::MAX);
            if len <= input.len() {
                let mut payload = BytesMut::from(&input[..len]);
                *input = &input[len..];
                apply_mask(&mut payload, header.mask, 0);
                if self.is_text(&header) {
                    self.utf8.feed(&payload).map_err(|_| ReadError::Utf8)?;
                }
                if let Some(incoming) = self.frame(&header, payload.freeze(), Hold::none())? {
                    return Ok(Some(incoming));
                }
                continue;
            }
            // A data frame that will take more reads holds its announced
            // length (a control frame is at most 125 bytes).
            let hold = if header.opcode < OP_CLOSE {
                self.held(Hold::none(), len, self.gathered().saturating_add(len))?
            } else {
                Hold::none()
            };
            let mut data = Vec::with_capacity(len.min(input.len().max(GROW)));
            data.extend_from_slice(input);
            *input = &[];
            apply_mask(&mut data, header.mask, 0);
            if self.is_text(&header) {
                self.utf8.feed(&data).map_err(|_| ReadError::Utf8)?;
            }
            let unmasked = data.len();
            self.pending = Some(Box::new(Pending { header, data, unmasked, hold }));
            return Ok(None);
        }
    }

    /// The next header, from what was kept of it and the front of `input`.
    fn header(&mut self, input: &mut &[u8]) -> Result<Option<Header>, ReadError> {
        let kept = usize::from(self.head_len);
        if kept == 0 {
            if let Some((header, at)) = parse_header(input)? {
                *input = &input[at..];
                return Ok(Some(header));
            }
            // Shorter than the header it starts (at most 13 bytes).
            self.head[..input.len()].copy_from_slice(input);
            self.head_len = input.len() as u8;
            *input = &[];
            return Ok(None);
        }
        let more = input.len().min(MAX_HEADER - kept);
        self.head[kept..kept + more].copy_from_slice(&input[..more]);
        match parse_header(&self.head[..kept + more])? {
            Some((header, at)) => {
                // What was kept did not hold a whole header: `at > kept`.
                *input = &input[at - kept..];
                self.head_len = 0;
                Ok(Some(header))
            }
            None => {
                // Fewer bytes than a header: `input` was all taken.
                self.head_len = (kept + more) as u8;
                *input = &[];
                Ok(None)
            }
        }
    }

    /// Where the rest of a large payload can be read straight into, and
    /// how many bytes of it may be read (the frame's end): no copy through
    /// a read buffer. `None` when no payload is waiting for its bytes.
    pub(crate) fn direct(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        let pending = self.pending.as_mut()?;
        pending.reserve();
        let limit = pending.remaining();
        (limit > 0).then_some((&mut pending.data, limit))
    }

    /// Whether a fragmented message has begun and not ended.
    pub(crate) fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// Whether anything unfinished is kept: part of a header, a frame, or
    /// a fragmented message.
    pub(crate) fn mid_message(&self) -> bool {
        self.head_len > 0 || self.pending.is_some() || self.fragments.is_some()
    }

    /// Bytes of the fragmented message gathered so far.
    fn gathered(&self) -> usize {
        self.fragments.as_ref().map_or(0, |f| f.1.len())
    }

    /// What can be refused from the header alone.
    fn check(&mut self, header: &Header) -> Result<(), ReadError> {
        let control = header.opcode >= OP_CLOSE;
        if control && (!header.fin || header.len > 125) {
            return Err(ReadError::Protocol("control frames must be whole and at most 125 bytes"));
        }
        match (header.opcode, &self.fragments) {
            (OP_CONTINUATION, None) => return Err(ReadError::Protocol("continuation frame without a message")),
            (OP_TEXT | OP_BINARY, Some(_)) => return Err(ReadError::Protocol("new message before the last one ended")),
            _ => {}
        }
        let so_far = self.fragments.as_ref().map_or(0, |f| f.1.len() as u64);
        // A continuation can announce up to 2^64 - 1 bytes: a plain sum
        // overflows (a panic in debug builds, and a wrapped total that
        // passes the limit in release builds).
        let total = so_far.saturating_add(header.len);
        if !control && total > self.max_message as u64 {
            return Err(ReadError::TooBig { size: total, max: self.max_message });
        }
        if header.opcode == OP_TEXT {
            self.utf8 = Utf8::default();
        }
        Ok(())
    }

    /// A whole frame, and what it holds of the budget: a message when it
    /// completes one.
    fn frame(&mut self, header: &Header, payload: Bytes, hold: Hold) -> Result<Option<Incoming>, ReadError> {
        let (opcode, message) = match header.opcode {
            OP_PING => return Ok(Some(Incoming::Ping(payload))),
            OP_PONG => return Ok(Some(Incoming::Pong)),
            OP_CLOSE => {
                let close = phx_channels_wire::close::parse(&payload)?;
                return Ok(Some(Incoming::Close(close.map(|(code, _)| code))));
            }
            OP_CONTINUATION => {
                let more = if header.fin {
                    hold
                } else {
                    self.held(hold, payload.len(), self.gathered().saturating_add(payload.len()))?
                };
                let Some(fragments) = &mut self.fragments else {
                    return Err(ReadError::Protocol("continuation frame without a message"));
                };
                fragments.1.extend_from_slice(&payload);
                fragments.2.absorb(more);
                if !header.fin {
                    return Ok(None);
                }
                let Some(fragments) = self.fragments.take() else { return Ok(None) };
                // The message is whole: what it held goes back.
                let (opcode, data, _hold) = *fragments;
                (opcode, Bytes::from(data))
            }
            opcode if !header.fin => {
                let hold = self.held(hold, payload.len(), payload.len())?;
                self.fragments = Some(Box::new((opcode, payload.to_vec(), hold)));
                return Ok(None);
            }
            opcode => (opcode, payload),
        };
        if opcode == OP_TEXT {
            // Every byte was checked as it arrived: only a sequence cut at
            // the end is left to refuse.
            self.utf8.finish().map_err(|_| ReadError::Utf8)?;
            Ok(Some(Incoming::Text(message)))
        } else {
            Ok(Some(Incoming::Binary(message)))
        }
    }
}

/// Reads client frames from any async byte stream (the path for IO types
/// other than a plain TCP stream). Every await point is a read into state
/// kept here, so [`Reader::next`] can be cancelled (in a `select!`) and
/// resumed.
pub(crate) struct Reader<R> {
    io: R,
    /// Bytes read and not yet decoded; freed once empty.
    buf: BytesMut,
    decoder: Decoder,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader that refuses messages larger than `max_message` bytes.
    pub(crate) fn new(io: R, max_message: usize) -> Self {
        Reader { io, buf: BytesMut::new(), decoder: Decoder::new(max_message) }
    }

    /// A reader that goes on where `decoder` stopped, with `rest` (bytes
    /// already read) first.
    pub(crate) fn resume(io: R, decoder: Decoder, rest: &[u8]) -> Self {
        Reader { io, buf: BytesMut::from(rest), decoder }
    }

    /// The next message or control frame.
    pub(crate) async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            let mut input = &self.buf[..];
            let decoded = self.decoder.decode(&mut input);
            let used = self.buf.len() - input.len();
            self.buf.advance(used);
            if self.buf.is_empty() {
                // What one large read brought in does not stay with the
                // connection.
                self.buf = BytesMut::new();
            }
            if let Some(incoming) = decoded? {
                return Ok(incoming);
            }
            // The decoder took all of `buf`: read more.
            let n = match self.decoder.direct() {
                Some((data, limit)) => self.io.read_buf(&mut data.limit(limit)).await?,
                None => {
                    self.buf.reserve(READ_CHUNK);
                    self.io.read_buf(&mut (&mut self.buf).limit(READ_CHUNK)).await?
                }
            };
            if n == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Whether a fragmented message has begun and not ended.
    pub(crate) fn in_message(&self) -> bool {
        self.decoder.in_message()
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
}

/// Writes server frames, which come framed ([`Frame::wire`]): small frames
/// are gathered until [`Writer::flush`] (the buffer that gathers them is
/// freed after each flush), larger ones are written from where they are.
/// The path for IO types other than a plain TCP stream.
pub(crate) struct Writer<W> {
    io: W,
    buf: Vec<u8>,
    /// A write that makes no progress for this long fails with `TimedOut`.
    stall: Duration,
}

/// The close frame for `code` and `reason` (no payload without a code).
pub(crate) fn close_frame(code: Option<u16>, reason: &str) -> Frame {
    Frame::raw(OP_CLOSE, &phx_channels_wire::close::payload(code, reason))
}

/// The pong answering a ping that carried `payload`.
pub(crate) fn pong_frame(payload: &[u8]) -> Frame {
    Frame::raw(OP_PONG, payload)
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

    /// Sends a close frame, flushes, and ends the write side.
    pub(crate) async fn close(&mut self, code: Option<u16>, reason: &str) -> io::Result<()> {
        self.frame(&close_frame(code, reason)).await?;
        self.flush().await?;
        self.io.shutdown().await
    }

    /// Queues a frame.
    pub(crate) async fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        let wire = frame.wire();
        if wire.len() <= GATHER_MAX {
            self.buf.extend_from_slice(wire);
            if self.buf.len() >= HIGH_WATER {
                self.write_gathered().await?;
            }
            return Ok(());
        }
        self.write_gathered().await?;
        self.write_all(wire).await
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
        let server = Frame::raw(opcode, payload);
        let mut out = server.wire()[..server.wire_len() - payload.len()].to_vec();
        if !fin {
            out[0] &= 0x7F;
        }
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        apply_mask(&mut body, mask, 0);
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

    /// Feeds `pieces` one by one; the result of the first piece that
    /// yields something (a message or an error), with its index.
    fn first_outcome(pieces: &[Vec<u8>], max: usize) -> Option<(usize, Result<Incoming, String>)> {
        let mut decoder = Decoder::new(max);
        for (i, piece) in pieces.iter().enumerate() {
            let mut input = &piece[..];
            match decoder.decode(&mut input) {
                Ok(Some(incoming)) => return Some((i, Ok(incoming))),
                Ok(None) => {}
                Err(error) => return Some((i, Err(error.to_string()))),
            }
        }
        None
    }

    /// Invalid UTF-8 is refused in the read that brings it: in the
    /// fragment that holds it (Autobahn 6.4.1, 6.4.2), or in the part of
    /// a frame that holds it (6.4.3, 6.4.4), without waiting for the rest.
    #[test]
    fn invalid_text_fails_in_the_piece_that_holds_it() {
        let invalid = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xF4, 0x90, 0x80, 0x80];
        let fragments = vec![
            client(OP_TEXT, false, &invalid[..11]),
            client(OP_CONTINUATION, false, &invalid[11..12]),
            client(OP_CONTINUATION, false, &invalid[12..]),
            client(OP_CONTINUATION, true, b"edited"),
        ];
        let (at, outcome) = first_outcome(&fragments, 1 << 20).unwrap();
        assert_eq!((at, outcome), (2, Err("text is not valid UTF-8".to_owned())));
        // One frame, its payload in three reads: the second holds the bad byte.
        let whole = client(OP_TEXT, true, &[&invalid[..], b"edited"].concat());
        let (head, payload) = whole.split_at(6);
        let pieces = vec![[head, &payload[..12]].concat(), payload[12..13].to_vec(), payload[13..].to_vec()];
        let (at, outcome) = first_outcome(&pieces, 1 << 20).unwrap();
        assert_eq!((at, outcome), (1, Err("text is not valid UTF-8".to_owned())));
    }

    /// A character cut between two fragments, or two reads, is not an
    /// error; one still cut when the message ends is.
    #[test]
    fn a_character_cut_between_pieces_is_whole_once_its_rest_arrives() {
        let text = "κόσμε €".as_bytes();
        let fragments = vec![client(OP_TEXT, false, &text[..1]), client(OP_CONTINUATION, true, &text[1..])];
        let (_, outcome) = first_outcome(&fragments, 1 << 20).unwrap();
        assert_eq!(outcome, Ok(Incoming::Text(Bytes::copy_from_slice(text))));
        let frame = client(OP_TEXT, true, text);
        let pieces: Vec<Vec<u8>> = frame.chunks(1).map(<[u8]>::to_vec).collect();
        let (at, outcome) = first_outcome(&pieces, 1 << 20).unwrap();
        assert_eq!((at, outcome), (frame.len() - 1, Ok(Incoming::Text(Bytes::copy_from_slice(text)))));
        let cut = vec![client(OP_TEXT, false, &text[..1]), client(OP_CONTINUATION, true, b"")];
        let (_, outcome) = first_outcome(&cut, 1 << 20).unwrap();
        assert_eq!(outcome, Err("text is not valid UTF-8".to_owned()));
    }

    #[tokio::test]
    async fn an_announced_frame_allocates_only_what_arrived() {
        let mut bytes = client(OP_BINARY, true, &[0; 5_000_000]);
        bytes.truncate(1000);
        let mut reader = Reader::new(&bytes[..], 10_000_000);
        assert!(reader.next().await.is_err());
        assert!(reader.decoder.pending.as_ref().unwrap().data.capacity() < 64 * 1024);
    }

    /// Every way of cutting a stream into pieces gives the same messages,
    /// and a finished frame leaves nothing behind in the decoder.
    #[test]
    fn the_decoder_takes_any_pieces() {
        let mut bytes = client(OP_TEXT, true, b"hello");
        bytes.extend(client(OP_BINARY, true, &[9; 300]));
        bytes.extend(client(OP_BINARY, false, &[1; 70_000]));
        bytes.extend(client(OP_CONTINUATION, true, b"!"));
        for piece in [1, 2, 3, 7, 13, 14, 100, 4096, usize::MAX] {
            let mut decoder = Decoder::new(1 << 20);
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece.min(bytes.len())) {
                let mut input = chunk;
                while let Some(incoming) = decoder.decode(&mut input).unwrap() {
                    got.push(incoming);
                }
                assert!(input.is_empty());
            }
            assert_eq!(got.len(), 3, "pieces of {piece}");
            assert_eq!(got[0], Incoming::Text(Bytes::from_static(b"hello")));
            assert!(matches!(&got[2], Incoming::Binary(b) if b.len() == 70_001));
            assert!(decoder.pending.is_none() && decoder.fragments.is_none() && decoder.head_len == 0);
        }
    }

    #[test]
    fn unfinished_messages_hold_the_budget_until_they_complete() {
        let budget = Budget::new(150_000);
        let frame = client(OP_BINARY, true, &[7; 100_000]);
        let mut a = Decoder::new(1 << 20).with_budget(budget.clone());
        let mut input = &frame[..50_000];
        assert!(a.decode(&mut input).unwrap().is_none());
        assert_eq!(budget.used(), 100_000, "the frame's announced length");
        // Another large one does not fit.
        let mut b = Decoder::new(1 << 20).with_budget(budget.clone());
        let mut input = &frame[..50_000];
        assert!(matches!(b.decode(&mut input), Err(ReadError::Busy(_))));
        let mut rest = &frame[50_000..];
        assert!(matches!(a.decode(&mut rest).unwrap(), Some(Incoming::Binary(b)) if b.len() == 100_000));
        assert_eq!(budget.used(), 0, "given back once whole");
        // A fragmented message holds what it gathered, frame after frame,
        // and a decoder dropped midway gives it back.
        let mut c = Decoder::new(1 << 20).with_budget(budget.clone());
        let mut fragments =
            [client(OP_BINARY, false, &[1; 70_000]), client(OP_CONTINUATION, false, &[2; 40_000])].concat();
        let mut input = &fragments[..];
        assert!(c.decode(&mut input).unwrap().is_none());
        assert_eq!(budget.used(), 110_000);
        fragments = client(OP_CONTINUATION, false, &[3; 60_000]);
        let mut input = &fragments[..];
        assert!(matches!(c.decode(&mut input), Err(ReadError::Busy(_))), "170 000 bytes do not fit");
        drop(c);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn large_payloads_are_written_from_where_they_are_and_nothing_stays() {
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out, Duration::from_secs(1));
        writer.frame(&Frame::raw(OP_TEXT, b"hi")).await.unwrap();
        writer.frame(&Frame::raw(OP_BINARY, &[7; 60_000])).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(writer.buf.capacity(), 0);
        writer.close(Some(1000), "").await.unwrap();
        assert_eq!(&out[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&out[4..8], &[0x82, 126, 0xEA, 0x60]);
        assert_eq!(out.len(), 4 + 4 + 60_000 + 4);
        assert_eq!(&out[out.len() - 4..], &[0x88, 2, 0x03, 0xE8]);
    }
}
