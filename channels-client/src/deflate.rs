//! permessage-deflate on the client's side ([`SocketBuilder::compress`]):
//! a stream between tungstenite and the socket (above TLS) that inflates
//! the server's compressed messages and hands tungstenite the same frames
//! uncompressed.
//!
//! tungstenite has no permessage-deflate and refuses any frame with RSV1
//! set, so it never sees one: each frame of a compressed message is
//! inflated here (with `phx-channels-wire`'s [`Inflater`], one per
//! message), its whole inflated size bounded by the client's
//! `max_message_size`, and passed on with RSV1 clear and its new length.
//! Every other frame passes as it came, its payload streamed through.
//! What the client sends passes as it is: a client may send uncompressed
//! messages on a connection that agreed to the extension (RFC 7692 §6).
//!
//! Anything this stream cannot read as a server's frame (a masked frame,
//! reserved bits) is passed on untouched, from there on, for tungstenite
//! to refuse as it would without the extension.
//!
//! [`SocketBuilder::compress`]: crate::SocketBuilder::compress

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use phx_channels_wire::deflate::Inflater;
use phx_channels_wire::frame::{opcode, write_header, Header, Role, MAX_HEADER};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the client's upgrade request offers (`Sec-WebSocket-Extensions`):
/// no context kept on its side, and the server may bound its window.
pub(crate) const OFFER: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// Where the stream is in what the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The server's answer to the upgrade, passed on as it is; whether it
    /// agreed to the extension is read from it.
    Handshake,
    /// At a frame's header.
    Frames { agreed: bool },
    /// This many more bytes of an uncompressed frame's payload pass as
    /// they come.
    Payload { agreed: bool, left: u64 },
    /// Passed on untouched: tungstenite refuses it.
    Through,
}

/// The stream tungstenite reads and writes (see the module's docs).
pub(crate) struct Inflating<S> {
    io: S,
    /// Read from the socket, not yet passed on.
    input: BytesMut,
    /// Ready for tungstenite.
    output: BytesMut,
    state: State,
    /// The compressed message arriving, and its inflated size so far.
    inflating: Option<(Inflater, usize)>,
    max_message: usize,
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

impl<S> Inflating<S> {
    /// Over `io`, inflating messages of at most `max_message` bytes.
    pub(crate) fn new(io: S, max_message: usize) -> Self {
        Inflating {
            io,
            input: BytesMut::new(),
            output: BytesMut::new(),
            state: State::Handshake,
            inflating: None,
            max_message,
        }
    }

    /// Turns what was read into what tungstenite reads; `false` when more
    /// must be read first.
    fn step(&mut self) -> io::Result<bool> {
        match self.state {
            State::Through => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let all = self.input.split();
                self.output.extend_from_slice(&all);
                Ok(true)
            }
            State::Handshake => {
                let Some(end) = self.input.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(false) };
                let head = self.input.split_to(end + 4);
                self.state = State::Frames { agreed: agreed(&head) };
                self.output.extend_from_slice(&head);
                Ok(true)
            }
            State::Payload { agreed, left } => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.input.len());
                let part = self.input.split_to(n);
                self.output.extend_from_slice(&part);
                let left = left - n as u64;
                self.state = if left == 0 { State::Frames { agreed } } else { State::Payload { agreed, left } };
                Ok(true)
            }
            State::Frames { agreed } => self.frame(agreed),
        }
    }

    /// The frame whose header starts `input`.
    fn frame(&mut self, agreed: bool) -> io::Result<bool> {
        let (header, at) = match Header::parse(&self.input, Role::Client, agreed) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(false),
            Err(_) => {
                self.state = State::Through;
                return Ok(true);
            }
        };
        let data = !header.is_control();
        let compressed = data && (header.rsv1 || (header.opcode == opcode::CONTINUATION && self.inflating.is_some()));
        if !compressed {
            let head = self.input.split_to(at);
            self.output.extend_from_slice(&head);
            self.state =
                if header.len == 0 { State::Frames { agreed } } else { State::Payload { agreed, left: header.len } };
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
}

/// Whether the server's answer to the upgrade agreed to the extension.
fn agreed(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-extensions")
                && value.split(',').any(|ext| ext.split(';').next().is_some_and(|n| n.trim() == "permessage-deflate"))
        })
    })
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

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
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
            if this.step()? {
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
                this.state = State::Through;
                continue;
            }
            this.input.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflating<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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
        let mut inflating = Inflating::new(&stream[..], max);
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
}
