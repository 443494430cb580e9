//! permessage-deflate on the client's side ([`SocketBuilder::compress`]):
//! a stream between tungstenite and the socket (above TLS) that inflates
//! the server's compressed messages on their way in, and compresses the
//! client's on their way out, as a browser does.
//!
//! tungstenite has no permessage-deflate and refuses any frame with RSV1
//! set, so it never sees one.
//!
//! **Reading**: each frame of a compressed message is inflated here (with
//! `phx-channels-wire`'s [`Inflater`], one per message), its whole
//! inflated size bounded by the client's `max_message_size`, and passed on
//! with RSV1 clear and its new length. Every other frame passes as it came,
//! its payload streamed through.
//!
//! **Writing**: the frames tungstenite writes (masked, as a client's are)
//! are read back here. Once the server's answer agreed to the extension,
//! each whole data message (a text or binary frame with FIN set) of at
//! least [`COMPRESS_FROM`] bytes, and at most `max_message_size`, is
//! gathered, unmasked, compressed on its own with [`compress`] (the client
//! offers `client_no_context_takeover`, and keeps no context whatever the
//! answer: a server that keeps its own reads it all the same) within the
//! window the server asked for (`client_max_window_bits`), and written as
//! a new frame: RSV1 set, its new length, masked with the frame's key. A
//! message that does not shrink goes as it was. Control frames, fragments,
//! shorter messages and longer ones pass as they are, streamed. What waits
//! to be written to the socket is bounded: past [`WRITE_BOUND`] bytes,
//! `poll_write` writes before it takes more (and is pending while the
//! socket is), and `poll_flush` and `poll_shutdown` write it all first.
//!
//! An answer whose permessage-deflate parameters the client cannot honour
//! (RFC 7692 §5, read by [`accepted`]) counts as no agreement: nothing is
//! compressed or inflated. Anything this stream cannot read as a frame (a
//! server's masked frame, reserved bits) is passed on untouched, from there
//! on, for tungstenite or the server to refuse as they would without the
//! extension.
//!
//! [`SocketBuilder::compress`]: crate::SocketBuilder::compress

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use phx_channels_wire::deflate::{accepted, compress, Agreed, Inflater, COMPRESS_FROM, DEFAULT_LEVEL};
use phx_channels_wire::frame::{apply_mask, opcode, write_header, Header, Role, MAX_HEADER, RSV1};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the client's upgrade request offers (`Sec-WebSocket-Extensions`):
/// no context kept on its side, and the server may bound its window.
pub(crate) const OFFER: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// Where the stream is in what the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The server's answer to the upgrade, passed on as it is; what it
    /// agreed to is read from it.
    Handshake,
    /// At a frame's header.
    Frames,
    /// This many more bytes of an uncompressed frame's payload pass as
    /// they come.
    Payload { left: u64 },
    /// Passed on untouched: tungstenite refuses it.
    Through,
}

/// Where the stream is in what tungstenite writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// The upgrade request, passed on as it is; `matched` bytes of the
    /// blank line that ends it have been seen.
    Request { matched: usize },
    /// At a frame's header.
    Frames,
    /// This many more bytes of a frame's payload pass as they come.
    Payload { left: u64 },
    /// A message to compress, whole once `pending` holds `whole` bytes (its
    /// header's `at` and the payload), within a window of `bits`.
    Message { header: Header, at: usize, whole: usize, bits: u8 },
    /// Passed on untouched: the server refuses it.
    Through,
}

/// The stream tungstenite reads and writes (see the module's docs).
pub(crate) struct Compression<S> {
    io: S,
    /// Read from the socket, not yet passed on.
    input: BytesMut,
    /// Ready for tungstenite.
    output: BytesMut,
    reading: Reading,
    /// The compressed message arriving, and its inflated size so far.
    inflating: Option<(Inflater, usize)>,
    /// What the server's answer agreed to; `None` before it or without
    /// the extension.
    agreed: Option<Agreed>,
    max_message: usize,
    /// Taken from tungstenite, not yet turned into what the socket gets:
    /// a header not whole yet, or a message gathered to compress.
    pending: BytesMut,
    /// Ready for the socket.
    ready: BytesMut,
    writing: Writing,
}

/// Bytes read from the socket at a time, and taken from tungstenite at a
/// time when no message is being gathered.
const READ_CHUNK: usize = 8 * 1024;

/// What may wait for the socket before `poll_write` takes no more (the
/// call that reaches it may pass it by a chunk, or by a message gathered).
const WRITE_BOUND: usize = 64 * 1024;

impl<S> Compression<S> {
    /// Over `io`, inflating messages of at most `max_message` bytes, and
    /// compressing those tungstenite writes up to that size.
    pub(crate) fn new(io: S, max_message: usize) -> Self {
        Compression {
            io,
            input: BytesMut::new(),
            output: BytesMut::new(),
            reading: Reading::Handshake,
            inflating: None,
            agreed: None,
            max_message,
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            writing: Writing::Request { matched: 0 },
        }
    }

    /// Turns what was read into what tungstenite reads; `false` when more
    /// must be read first.
    fn step_in(&mut self) -> io::Result<bool> {
        match self.reading {
            Reading::Through => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let all = self.input.split();
                self.output.extend_from_slice(&all);
                Ok(true)
            }
            Reading::Handshake => {
                let Some(end) = self.input.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(false) };
                let head = self.input.split_to(end + 4);
                self.agreed = agreed(&head);
                self.reading = Reading::Frames;
                self.output.extend_from_slice(&head);
                Ok(true)
            }
            Reading::Payload { left } => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.input.len());
                let part = self.input.split_to(n);
                self.output.extend_from_slice(&part);
                let left = left - n as u64;
                self.reading = if left == 0 { Reading::Frames } else { Reading::Payload { left } };
                Ok(true)
            }
            Reading::Frames => self.frame(),
        }
    }

    /// The frame whose header starts `input`.
    fn frame(&mut self) -> io::Result<bool> {
        let (header, at) = match Header::parse(&self.input, Role::Client, self.agreed.is_some()) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(false),
            Err(_) => {
                self.reading = Reading::Through;
                return Ok(true);
            }
        };
        let data = !header.is_control();
        let compressed = data && (header.rsv1 || (header.opcode == opcode::CONTINUATION && self.inflating.is_some()));
        if !compressed {
            let head = self.input.split_to(at);
            self.output.extend_from_slice(&head);
            self.reading = if header.len == 0 { Reading::Frames } else { Reading::Payload { left: header.len } };
            return Ok(true);
        }
        let inflated_so_far = self.inflating.as_ref().map_or(0, |(_, n)| *n);
        let room = self.max_message.saturating_sub(inflated_so_far);
        let Ok(len) = usize::try_from(header.len) else { return Err(too_big(header.len, self.max_message)) };
        // The compressed payload is gathered whole (it is at most what it
        // inflates to, or a few bytes more).
        if len > self.max_message.saturating_add(1024) {
            return Err(too_big(header.len, self.max_message));
        }
        if self.input.len() < at + len {
            self.input.reserve(at + len - self.input.len());
            return Ok(false);
        }
        self.input.advance(at);
        let payload = self.input.split_to(len);
        if header.rsv1 {
            self.inflating = Some((Inflater::new(), 0));
        }
        let Some((inflater, inflated)) = self.inflating.as_mut() else { return Err(broken("no message to continue")) };
        let mut out = Vec::new();
        inflater.inflate(&payload, &mut out, room).map_err(wire_error)?;
        if header.fin {
            inflater.finish(&mut out, room).map_err(wire_error)?;
        }
        *inflated += out.len();
        if header.fin {
            // The message is whole: its inflater goes.
            self.inflating = None;
        }
        let mut head = [0; MAX_HEADER];
        let first = if header.fin { 0x80 } else { 0 } | header.opcode;
        let n = write_header(&mut head, first, out.len(), None);
        self.output.extend_from_slice(&head[..n]);
        self.output.extend_from_slice(&out);
        Ok(true)
    }

    /// Turns what tungstenite wrote into what the socket gets; `false`
    /// when more must be written first.
    fn step_out(&mut self) -> bool {
        match self.writing {
            Writing::Through => {
                if self.pending.is_empty() {
                    return false;
                }
                let all = self.pending.split();
                self.ready.extend_from_slice(&all);
                true
            }
            Writing::Request { mut matched } => {
                if self.pending.is_empty() {
                    return false;
                }
                let mut end = None;
                for (i, &byte) in self.pending.iter().enumerate() {
                    matched = match byte {
                        _ if byte == b"\r\n\r\n"[matched] => matched + 1,
                        b'\r' => 1,
                        _ => 0,
                    };
                    if matched == 4 {
                        end = Some(i + 1);
                        break;
                    }
                }
                let head = self.pending.split_to(end.unwrap_or(self.pending.len()));
                self.ready.extend_from_slice(&head);
                self.writing = if end.is_some() { Writing::Frames } else { Writing::Request { matched } };
                true
            }
            Writing::Payload { left } => {
                if self.pending.is_empty() {
                    return false;
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.pending.len());
                let part = self.pending.split_to(n);
                self.ready.extend_from_slice(&part);
                let left = left - n as u64;
                self.writing = if left == 0 { Writing::Frames } else { Writing::Payload { left } };
                true
            }
            Writing::Frames => {
                // tungstenite writes a client's frames: masked, as a server reads them.
                let (header, at) = match Header::parse(&self.pending, Role::Server, true) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => return false,
                    Err(_) => {
                        self.writing = Writing::Through;
                        return true;
                    }
                };
                let whole_message =
                    header.fin && !header.rsv1 && matches!(header.opcode, opcode::TEXT | opcode::BINARY);
                let size =
                    usize::try_from(header.len).ok().filter(|&n| (COMPRESS_FROM..=self.max_message).contains(&n));
                match (self.agreed, size) {
                    (Some(agreed), Some(len)) if whole_message => {
                        self.writing =
                            Writing::Message { header, at, whole: at + len, bits: agreed.client_max_window_bits };
                    }
                    _ => {
                        let head = self.pending.split_to(at);
                        self.ready.extend_from_slice(&head);
                        self.writing =
                            if header.len == 0 { Writing::Frames } else { Writing::Payload { left: header.len } };
                    }
                }
                true
            }
            Writing::Message { header, at, whole, bits } => {
                if self.pending.len() < whole {
                    return false;
                }
                let mut frame = self.pending.split_to(whole);
                deflate(&mut frame, header, at, bits, &mut self.ready);
                self.writing = Writing::Frames;
                true
            }
        }
    }

    /// How many more bytes tungstenite may hand over now: a chunk, or what
    /// the message being gathered still needs.
    fn room(&self) -> usize {
        let limit = match self.writing {
            Writing::Message { whole, .. } => whole.max(READ_CHUNK),
            _ => READ_CHUNK,
        };
        limit.saturating_sub(self.pending.len()).max(1)
    }
}

/// Writes the message `frame` (its header `at` bytes long, masked with
/// `header.mask`) onto `out` compressed within `bits` of window, as a new
/// frame with RSV1 set, or as it was when compressing does not shrink it.
fn deflate(frame: &mut BytesMut, header: Header, at: usize, bits: u8, out: &mut BytesMut) {
    let payload = &mut frame[at..];
    apply_mask(payload, header.mask, 0);
    let mut compressed = Vec::new();
    if compress(payload, DEFAULT_LEVEL, bits, &mut compressed) {
        apply_mask(&mut compressed, header.mask, 0);
        let mut head = [0; MAX_HEADER];
        let n = write_header(&mut head, 0x80 | RSV1 | header.opcode, compressed.len(), Some(header.mask));
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(&compressed);
    } else {
        // Masked again: the frame as tungstenite wrote it.
        apply_mask(payload, header.mask, 0);
        out.extend_from_slice(frame);
    }
}

/// What the server's answer to the upgrade agreed to, if it agreed to the
/// extension with parameters the client can honour.
fn agreed(head: &[u8]) -> Option<Agreed> {
    let head = String::from_utf8_lossy(head);
    accepted(head.lines().filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-extensions").then_some(value)
    }))
}

fn broken(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

fn too_big(size: u64, max: usize) -> io::Error {
    broken(&format!("compressed message of {size} bytes or more exceeds the limit of {max}"))
}

fn wire_error(error: phx_channels_wire::WireError) -> io::Error {
    broken(&error.to_string())
}

impl<S: AsyncRead + Unpin> AsyncRead for Compression<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = buf.remaining().min(this.output.len());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                if this.output.is_empty() {
                    // What a large message took goes with it.
                    this.output = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.step_in()? {
                continue;
            }
            if this.input.is_empty() && this.input.capacity() > 4 * READ_CHUNK {
                // What a large frame took goes with it.
                this.input = BytesMut::new();
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The end: what is left unfinished goes to tungstenite as it is.
                if this.input.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.reading = Reading::Through;
                continue;
            }
            this.input.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> Compression<S> {
    /// Writes some of what is ready to the socket.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.ready))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.ready.advance(n);
        if self.ready.is_empty() && self.ready.capacity() > 2 * WRITE_BOUND {
            // What a large message took goes with it.
            self.ready = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Writes all that is ready to the socket.
    fn poll_send_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.ready.is_empty() {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Compression<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Past the bound, what waits goes out before more is taken.
        while this.ready.len() >= WRITE_BOUND {
            ready!(this.poll_send(cx))?;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = this.room().min(buf.len());
        this.pending.extend_from_slice(&buf[..n]);
        while this.step_out() {}
        if this.pending.is_empty() && this.pending.capacity() > 4 * READ_CHUNK {
            // What a large message took goes with it.
            this.pending = BytesMut::new();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_all(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A frame left unfinished goes as it is.
        if !self.pending.is_empty() {
            self.writing = Writing::Through;
            while self.step_out() {}
        }
        ready!(self.poll_send_all(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server frame: `first` byte, unmasked.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut head = [0; MAX_HEADER];
        let n = write_header(&mut head, first, payload.len(), None);
        [&head[..n], payload].concat()
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(phx_channels_wire::deflate::compress(data, 6, 15, &mut out));
        out
    }

    async fn read_all(stream: Vec<u8>, max: usize) -> io::Result<Vec<u8>> {
        let mut inflating = Compression::new(&stream[..], max);
        let mut out = Vec::new();
        inflating.read_to_end(&mut out).await?;
        Ok(out)
    }

    const AGREED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n";

    #[tokio::test]
    async fn compressed_frames_reach_tungstenite_inflated_and_the_rest_as_it_came() {
        let text = "{\"body\":\"hello\"}".repeat(100);
        let z = deflated(text.as_bytes());
        let (a, b) = z.split_at(z.len() / 2);
        let plain = frame(0x81, b"plain");
        let stream =
            [AGREED, &frame(0xC1, &z), &plain, &frame(0x40 | 0x2, a), &frame(0x89, b"ping"), &frame(0x80, b)].concat();
        let before = [AGREED, &frame(0x81, text.as_bytes()), &plain].concat();
        let got = read_all(stream, 1 << 20).await.unwrap();
        // The first fragment may inflate to part of the text: compare the
        // message, whole.
        assert!(got.starts_with(&before));
        let rest = &got[before.len()..];
        let (first_header, at) = Header::parse(rest, Role::Client, false).unwrap().unwrap();
        assert!(!first_header.fin && !first_header.rsv1 && first_header.opcode == 0x2);
        let first_part = &rest[at..at + first_header.len as usize];
        let rest = &rest[at + first_header.len as usize..];
        assert!(rest.starts_with(&frame(0x89, b"ping")));
        let rest = &rest[frame(0x89, b"ping").len()..];
        let (last_header, at) = Header::parse(rest, Role::Client, false).unwrap().unwrap();
        assert!(last_header.fin && last_header.opcode == 0);
        assert_eq!([first_part, &rest[at..]].concat(), text.as_bytes());
    }

    #[tokio::test]
    async fn without_the_extension_everything_passes_as_it_came() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        let stream = [&head[..], &frame(0xC1, &deflated(&[b'a'; 1000])), &frame(0x81, b"x")].concat();
        assert_eq!(read_all(stream.clone(), 1 << 20).await.unwrap(), stream, "tungstenite refuses the RSV1 frame");
    }

    #[tokio::test]
    async fn a_bomb_stops_at_the_message_limit() {
        let bomb = deflated(&vec![0; 10_000_000]);
        let stream = [AGREED, &frame(0xC2, &bomb)].concat();
        let error = read_all(stream, 1_000_000).await.unwrap_err();
        assert!(error.to_string().contains("exceeds the limit of 1000000"), "{error}");
    }

    // What the client writes.

    /// A socket under the stream: the server's answer to read, and what is
    /// written to it: all at once, one byte a call with every other call
    /// pending (`trickle`), or nothing (`stalled`).
    #[derive(Default)]
    struct Socket {
        answer: Vec<u8>,
        read: usize,
        written: Vec<u8>,
        trickle: bool,
        stalled: bool,
        calls: usize,
    }

    impl AsyncRead for Socket {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(self.answer.len() - self.read);
            buf.put_slice(&self.answer[self.read..self.read + n]);
            self.read += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Socket {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            if self.stalled {
                return Poll::Pending;
            }
            self.calls += 1;
            let n = if self.trickle {
                if self.calls % 2 == 1 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                buf.len().min(1)
            } else {
                buf.len()
            };
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    const REQUEST: &[u8] = b"GET /socket/websocket HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits\r\n\r\n";
    const NOT_AGREED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A frame as tungstenite writes it for a client: masked.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut head = [0; MAX_HEADER];
        let n = write_header(&mut head, first, payload.len(), Some(MASK));
        let mut masked = payload.to_vec();
        apply_mask(&mut masked, MASK, 0);
        [&head[..n], &masked].concat()
    }

    /// The frames a server reads in `bytes`: headers and unmasked payloads.
    fn server_reads(mut bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let (header, at) = Header::parse(bytes, Role::Server, true).unwrap().expect("a whole frame");
            let end = at + usize::try_from(header.len).unwrap();
            let mut payload = bytes[at..end].to_vec();
            apply_mask(&mut payload, header.mask, 0);
            frames.push((header, payload));
            bytes = &bytes[end..];
        }
        frames
    }

    /// At least 4 KiB of JSON, as a channel's push carries it.
    fn json_4k() -> String {
        let mut items = Vec::new();
        while items.iter().map(|item: &String| item.len() + 1).sum::<usize>() < 4096 {
            let i = items.len();
            items.push(format!(r#"{{"id":{i},"user":"user-{}","body":"a comment about item {i}"}}"#, i % 7));
        }
        format!(r#"[null,"3","room:1","new_msg",[{}]]"#, items.join(","))
    }

    /// What reaches the socket after the upgrade request when the server
    /// answered `answer` and tungstenite wrote `frames` (in pieces of 777
    /// bytes), and the most bytes the stream held from tungstenite at once.
    async fn sent(answer: &[u8], frames: &[u8], trickle: bool, max: usize) -> (Vec<u8>, usize) {
        let socket = Socket { answer: answer.to_vec(), trickle, ..Socket::default() };
        let mut stream = Compression::new(socket, max);
        stream.write_all(REQUEST).await.unwrap();
        stream.flush().await.unwrap();
        let mut head = vec![0; answer.len()];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(head, answer);
        let mut held = 0;
        for piece in frames.chunks(777) {
            stream.write_all(piece).await.unwrap();
            held = held.max(stream.pending.len());
        }
        stream.flush().await.unwrap();
        let written = std::mem::take(&mut stream.io.written);
        assert_eq!(&written[..REQUEST.len()], REQUEST, "the request passes as it is");
        (written[REQUEST.len()..].to_vec(), held)
    }

    #[tokio::test]
    async fn a_large_message_goes_compressed_masked_and_inflates_back() {
        let json = json_4k();
        assert!(json.len() >= 4096);
        let (wire, _) = sent(AGREED, &client_frame(0x81, json.as_bytes()), false, 1 << 20).await;
        let frames = server_reads(&wire);
        assert_eq!(frames.len(), 1);
        let (header, payload) = &frames[0];
        assert!(header.fin && header.rsv1 && header.opcode == opcode::TEXT);
        assert_eq!(wire[1] & 0x80, 0x80, "masked");
        assert_eq!(header.mask, MASK);
        assert!(payload.len() < json.len() / 4, "{} bytes of {}", payload.len(), json.len());
        let mut inflater = Inflater::new();
        let mut inflated = Vec::new();
        inflater.inflate(payload, &mut inflated, 1 << 20).unwrap();
        inflater.finish(&mut inflated, 1 << 20).unwrap();
        assert_eq!(inflated, json.as_bytes());
    }

    /// `client_max_window_bits=9` in the answer: the message is compressed
    /// within 512 bytes of window (text that repeats 1 000 bytes apart
    /// compresses otherwise with 15 bits); 8, which zlib cannot keep to,
    /// sends it as it is.
    #[tokio::test]
    async fn the_window_the_server_asked_for_is_kept() {
        // Letters in no order (Knuth's multiplicative hash of the index).
        let block: Vec<u8> = (0..1000u32).map(|i| b'a' + (i.wrapping_mul(2_654_435_761) >> 16) as u8 % 26).collect();
        let text = block.repeat(4);
        let answer = |bits: u8| {
            format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits={bits}\r\n\r\n")
        };
        let frame = client_frame(0x82, &text);
        let (wire, _) = sent(answer(9).as_bytes(), &frame, false, 1 << 20).await;
        let frames = server_reads(&wire);
        let (mut nine, mut fifteen) = (Vec::new(), Vec::new());
        assert!(compress(&text, DEFAULT_LEVEL, 9, &mut nine) && compress(&text, DEFAULT_LEVEL, 15, &mut fifteen));
        assert_ne!(nine, fifteen);
        assert!(frames[0].0.rsv1 && frames[0].0.opcode == opcode::BINARY);
        assert_eq!(frames[0].1, nine);
        assert_eq!(sent(answer(8).as_bytes(), &frame, false, 1 << 20).await.0, frame);
    }

    /// Short messages, control frames, fragments and a message over the
    /// limit pass byte for byte, the large one streamed (never held whole).
    #[tokio::test]
    async fn the_rest_passes_as_it_was_streamed() {
        let json = json_4k();
        let frames = [
            client_frame(0x81, &json.as_bytes()[..COMPRESS_FROM - 1]),
            client_frame(0x89, b"ping"),
            client_frame(0x81, b""),
            // A fragmented message, a pong between its frames.
            client_frame(0x01, &json.as_bytes()[..2000]),
            client_frame(0x8A, b"pong"),
            client_frame(0x80, &json.as_bytes()[2000..]),
            // Over the limit of 3 000 bytes.
            client_frame(0x82, &json.repeat(20).into_bytes()),
            client_frame(0x88, &[0x03, 0xE8]),
        ]
        .concat();
        let (wire, held) = sent(AGREED, &frames, false, 3000).await;
        assert!(wire == frames, "not byte for byte");
        assert!(held < 777 + MAX_HEADER, "held {held} bytes at once");
    }

    /// Through a socket that takes a byte at a time and is pending every
    /// other call, the same bytes arrive.
    #[tokio::test]
    async fn a_socket_that_takes_a_byte_at_a_time_gets_the_same_bytes() {
        let json = json_4k();
        let frames = [
            client_frame(0x81, json.as_bytes()),
            client_frame(0x89, b"ping"),
            client_frame(0x81, b"short"),
            client_frame(0x82, json.as_bytes()),
        ]
        .concat();
        let (at_once, _) = sent(AGREED, &frames, false, 1 << 20).await;
        let (trickled, _) = sent(AGREED, &frames, true, 1 << 20).await;
        assert!(at_once.len() < frames.len() / 2);
        assert!(trickled == at_once, "not the same bytes");
        let read = server_reads(&trickled);
        assert_eq!(read.iter().map(|(h, _)| h.rsv1).collect::<Vec<_>>(), [true, false, false, true]);
    }

    #[tokio::test]
    async fn without_the_extension_what_the_client_writes_passes_as_it_was() {
        let frames = [client_frame(0x81, json_4k().as_bytes()), client_frame(0x89, b"ping")].concat();
        let answers = [
            NOT_AGREED,
            // An answer the client cannot honour (a window without its size).
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        ];
        for answer in answers {
            assert!(sent(answer, &frames, false, 1 << 20).await.0 == frames, "not byte for byte");
        }
    }

    /// A socket that takes nothing: the stream takes up to its bound and a
    /// message, then is pending; once the socket takes again, flushing
    /// writes everything, in order.
    #[tokio::test]
    async fn a_stalled_socket_holds_back_the_writer_within_the_bound() {
        let socket = Socket { answer: NOT_AGREED.to_vec(), ..Socket::default() };
        let mut stream = Compression::new(socket, 1 << 20);
        stream.write_all(REQUEST).await.unwrap();
        stream.flush().await.unwrap();
        stream.read_exact(&mut [0; NOT_AGREED.len()]).await.unwrap();
        stream.io.written.clear();
        stream.io.stalled = true;
        let frame = client_frame(0x81, json_4k().as_bytes());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut taken = 0;
        let mut stream = Pin::new(&mut stream);
        loop {
            let rest = &frame[taken % frame.len()..];
            match stream.as_mut().poll_write(&mut cx, rest) {
                Poll::Ready(Ok(n)) => taken += n,
                Poll::Ready(Err(error)) => panic!("{error}"),
                Poll::Pending => break,
            }
            assert!(taken < 10 * WRITE_BOUND, "never pending");
        }
        assert!(taken >= WRITE_BOUND && taken <= WRITE_BOUND + frame.len() + READ_CHUNK, "took {taken}");
        assert!(stream.as_mut().poll_flush(&mut cx).is_pending());
        stream.io.stalled = false;
        assert!(matches!(stream.as_mut().poll_flush(&mut cx), Poll::Ready(Ok(()))));
        let expected: Vec<u8> = frame.iter().copied().cycle().take(taken).collect();
        assert!(stream.io.written == expected, "not what was written, in order");
    }
}
