//! Not API: the entry the fuzz targets (`fuzz/fuzz_targets/ws_frames.rs`)
//! and the differential test against tungstenite
//! (`tests/wire_differential.rs`) use to reach the private WebSocket frame
//! reader ([`decode`], and [`decode_fed`] as the plain-TCP path feeds it)
//! and writer ([`write`]). Names here may change or go
//! away in any release.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, ReadBuf};

use crate::transport::wire::{Decoder, Incoming, ReadError, Reader};

/// A message or control frame the reader returned, or its failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A text message.
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong (the reader keeps no payload).
    Pong,
    /// A close frame and its code (the reader keeps no reason).
    Close(Option<u16>),
    /// The reader failed.
    Failed(Failure),
}

/// The class of a read failure, which decides the close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A protocol violation (1002).
    Protocol,
    /// A message over the limit (1009).
    TooBig,
    /// Text or a close reason that is not UTF-8 (1007).
    Utf8,
    /// A large message over the endpoint's in-flight budget (1013; the
    /// readers here have no budget, so never).
    Busy,
    /// The stream ended.
    Eof,
}

/// What [`decode`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// One entry per message or control frame, ending with the first
    /// failure or close frame.
    pub outcomes: Vec<Outcome>,
    /// A fragmented message had begun and not ended when reading stopped.
    pub mid_message: bool,
}

/// Yields `data` in the given chunks (the rest in one), answering `Pending`
/// once before each chunk so every chunk boundary is also a suspension.
struct Chunked<'a> {
    data: &'a [u8],
    chunks: std::slice::Iter<'a, usize>,
    /// Bytes left of the current chunk.
    left: usize,
    suspended: bool,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.left == 0 && !self.data.is_empty() {
            if !self.suspended {
                self.suspended = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.suspended = false;
            self.left = self.chunks.next().copied().unwrap_or(usize::MAX).max(1);
        }
        let n = self.left.min(buf.remaining()).min(self.data.len());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

/// Decodes `stream` as a server reads a client, with a limit of
/// `max_message` bytes, delivered in `chunks` (the rest in one piece).
/// With `cancel`, every suspension drops the pending read and starts a new
/// one, as a `select!` does when another branch wins.
///
/// # Panics
///
/// When the reader stops making progress (a bug, which is the point).
pub fn decode(stream: &[u8], chunks: &[usize], max_message: usize, cancel: bool) -> Decoded {
    let io = Chunked { data: stream, chunks: chunks.iter(), left: 0, suspended: false };
    let mut reader = Reader::new(io, max_message);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    // Each poll consumes a chunk or a suspension, or ends a frame.
    let mut budget = 3 * (stream.len() + chunks.len()) + 16;
    loop {
        let result = {
            let mut next = std::pin::pin!(reader.next());
            loop {
                budget = budget.checked_sub(1).expect("the reader stopped making progress");
                match next.as_mut().poll(&mut cx) {
                    Poll::Ready(result) => break Some(result),
                    Poll::Pending if cancel => break None,
                    Poll::Pending => {}
                }
            }
        };
        let Some(result) = result else { continue };
        if push(&mut out, result) {
            return Decoded { outcomes: out, mid_message: reader.in_message() };
        }
    }
}

/// Records what the reader returned; `true` when reading stops there.
fn push(out: &mut Vec<Outcome>, result: Result<Incoming, ReadError>) -> bool {
    let outcome = match result {
        Ok(Incoming::Text(b)) => Outcome::Text(b.to_vec()),
        Ok(Incoming::Binary(b)) => Outcome::Binary(b.to_vec()),
        Ok(Incoming::Ping(b)) => Outcome::Ping(b.to_vec()),
        Ok(Incoming::Pong) => Outcome::Pong,
        Ok(Incoming::Close(code)) => Outcome::Close(code),
        Err(ReadError::Protocol(_)) => Outcome::Failed(Failure::Protocol),
        Err(ReadError::TooBig { .. }) => Outcome::Failed(Failure::TooBig),
        Err(ReadError::Utf8) => Outcome::Failed(Failure::Utf8),
        Err(ReadError::Busy(_)) => Outcome::Failed(Failure::Busy),
        Err(ReadError::Io(_)) => Outcome::Failed(Failure::Eof),
    };
    let end = matches!(outcome, Outcome::Close(_) | Outcome::Failed(_));
    out.push(outcome);
    end
}

/// Decodes `stream` as the plain-TCP path of the WebSocket transport reads
/// a client: each of `chunks` (the rest in one piece) is what one read
/// brought, fed to the decoder as it is; but where a large payload
/// waits for its bytes, they go straight into its buffer
/// (`Decoder::direct`, up to the payload's end), and the rest of the
/// chunk is fed after. Must read exactly what [`decode`] reads.
pub fn decode_fed(stream: &[u8], chunks: &[usize], max_message: usize) -> Decoded {
    let mut decoder = Decoder::new(max_message);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut chunks = chunks.iter();
    while !rest.is_empty() {
        let size = chunks.next().copied().unwrap_or(usize::MAX).clamp(1, rest.len());
        let (mut input, after) = rest.split_at(size);
        rest = after;
        if let Some((data, limit)) = decoder.direct() {
            let n = limit.min(input.len());
            data.extend_from_slice(&input[..n]);
            input = &input[n..];
        }
        loop {
            match decoder.decode(&mut input) {
                Ok(None) => break,
                Ok(Some(incoming)) => {
                    if push(&mut out, Ok(incoming)) {
                        return Decoded { outcomes: out, mid_message: decoder.in_message() };
                    }
                }
                Err(error) => {
                    push(&mut out, Err(error));
                    return Decoded { outcomes: out, mid_message: decoder.in_message() };
                }
            }
        }
    }
    push(&mut out, Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())));
    Decoded { outcomes: out, mid_message: decoder.in_message() }
}

/// A frame for [`write`] to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// A text (`false`) or binary (`true`) message.
    Message(bool, bytes::Bytes),
    /// A pong.
    Pong(bytes::Bytes),
    /// A close frame; nothing is sent after it.
    Close(Option<u16>, String),
}

/// The bytes the server's frame writer puts on the wire for `frames`,
/// flushed after every `flush_every` frames (and at the end).
///
/// # Errors
///
/// None in practice: the writer writes into memory.
pub async fn write(frames: &[Send], flush_every: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = crate::transport::wire::Writer::new(&mut out, std::time::Duration::from_secs(5));
    for (i, frame) in frames.iter().enumerate() {
        match frame {
            Send::Message(binary, payload) => {
                let opcode = if *binary { crate::protocol::opcode::BINARY } else { crate::protocol::opcode::TEXT };
                writer.frame(&crate::protocol::Frame::raw(opcode, payload)).await?;
            }
            Send::Pong(payload) => writer.frame(&crate::transport::wire::pong_frame(payload)).await?,
            Send::Close(code, reason) => {
                writer.close(*code, reason).await?;
                break;
            }
        }
        if (i + 1) % flush_every.max(1) == 0 {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    Ok(out)
}

/// Decodes bytes as a broadcast envelope from another node (what anyone
/// who can publish on the broker sends): never panics, and what decodes
/// encodes back into an envelope that decodes to the same broadcast.
pub fn broker_envelope(data: &[u8]) {
    use crate::pubsub::envelope::{decode, encode};
    let me = [0u8; 16];
    if let Ok(Some(message)) = decode(data, &me) {
        let mut sender = [0u8; 16];
        sender.copy_from_slice(&data[1..17]);
        let again = encode(&sender, &message);
        assert_eq!(decode(&again, &me), Ok(Some(message)));
        assert_eq!(decode(&again, &sender), Ok(None), "a node's own envelope is never handed back");
    }
}

/// Feeds bytes, as presence gossip from another node, to a replica twice
/// (gossip may be duplicated), then reaps: never panics, and allocates
/// nothing in proportion to a number the sender chose.
pub fn presence_gossip(data: &[u8]) {
    use crate::presence::replica::{Gossip, Replica};
    let Ok(gossip) = serde_json::from_slice::<Gossip>(data) else { return };
    let mut replica = Replica::new("fuzz".to_owned(), 1);
    let _ = replica.receive(gossip.clone(), 0);
    let _ = replica.receive(gossip, 1);
    let _ = replica.heartbeat();
    let _ = replica.reap(10_000, 3_000);
}
