//! Frames: an encoded server message inside its whole WebSocket frame.

use std::fmt;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

/// A frame ready to be written to a connection.
///
/// It holds the whole WebSocket frame (RFC 6455 §5.2: header and payload),
/// built once when the message is encoded. Server frames are not masked, so
/// the same bytes are right for every connection: a broadcast is framed once
/// and written as it is to each subscriber, with no per-subscriber header.
/// Cloning is cheap (a reference count). [`Frame::as_bytes`], [`Frame::len`]
/// and the other accessors are about the payload (what LongPoll sends, what a
/// client decodes); [`Frame::wire`] is the frame as it goes on a WebSocket.
///
/// A frame can also be sent compressed (permessage-deflate, RFC 7692):
/// [`Frame::deflated`] makes that version once and keeps it in the frame,
/// so that every connection that agreed to the extension sends the same
/// compressed bytes of a broadcast.
pub struct Frame {
    kind: FrameKind,
    /// How many bytes of `wire` are the WebSocket header (2, 4 or 10).
    header: u8,
    /// The payload is compressed (RSV1 is set in the header).
    compressed: bool,
    wire: Bytes,
    /// The compressed version, once [`Frame::deflated`] made it (`None`
    /// inside: not worth compressing). Empty, it is a word and a flag.
    deflated: OnceLock<Option<Box<Frame>>>,
}

impl Clone for Frame {
    /// The same bytes (a reference count); the compressed version made by
    /// [`Frame::deflated`] is not carried over (it is shared through the
    /// frame it was made in).
    fn clone(&self) -> Self {
        Frame {
            kind: self.kind,
            header: self.header,
            compressed: self.compressed,
            wire: self.wire.clone(),
            deflated: OnceLock::new(),
        }
    }
}

impl PartialEq for Frame {
    /// Frames are equal when they put the same bytes on the wire.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.wire == other.wire
    }
}

impl Eq for Frame {}

/// The RSV1 bit of a frame's first byte: the message is compressed
/// (RFC 7692 §6).
const RSV1: u8 = 0x40;

/// Whether a [`Frame`] travels as a WebSocket text or binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Valid UTF-8 JSON.
    Text,
    /// A V2 binary frame.
    Binary,
}

/// Room kept in front of a payload being encoded for the longest WebSocket
/// header a server writes (no mask): 1 + 1 + 8 bytes.
pub(crate) const HEADER_ROOM: usize = 10;

/// WebSocket opcodes (RFC 6455 §5.2) of the frames a server writes.
pub mod opcode {
    /// A text message.
    pub const TEXT: u8 = 0x1;
    /// A binary message.
    pub const BINARY: u8 = 0x2;
    /// A close frame.
    pub const CLOSE: u8 = 0x8;
    /// A pong, the answer to a ping.
    pub const PONG: u8 = 0xA;
}

use opcode::{BINARY as OP_BINARY, TEXT as OP_TEXT};

/// The length of an unmasked header for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes the header of a final, unmasked frame into `out` (exactly
/// [`header_len`] bytes).
fn put_header(out: &mut [u8], first: u8, len: usize) {
    out[0] = 0x80 | first;
    match len {
        // The match arms bound `len`, so the casts keep every bit.
        0..=125 => out[1] = len as u8,
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// A buffer to encode a payload into, with [`HEADER_ROOM`] in front of it.
pub(crate) fn frame_buffer(payload_capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADER_ROOM + payload_capacity);
    buf.put_bytes(0, HEADER_ROOM);
    buf
}

/// Finishes a buffer from [`frame_buffer`]: the header goes right before
/// the payload, and the room it does not need is skipped (no copy).
/// `first` is the opcode, with RSV1 for a compressed payload.
fn seal(mut buf: BytesMut, first: u8) -> (u8, Bytes) {
    let len = buf.len() - HEADER_ROOM;
    let header = header_len(len);
    let start = HEADER_ROOM - header;
    put_header(&mut buf[start..HEADER_ROOM], first, len);
    bytes::Buf::advance(&mut buf, start);
    // `header` is 2, 4 or 10.
    (header as u8, buf.freeze())
}

impl Frame {
    /// Text frames are only ever made here, from JSON that serde_json wrote
    /// or that we assembled from such JSON, so they are always valid UTF-8.
    pub(crate) fn text(buf: BytesMut) -> Self {
        debug_assert!(std::str::from_utf8(&buf[HEADER_ROOM..]).is_ok());
        let (header, wire) = seal(buf, OP_TEXT);
        Frame::new(FrameKind::Text, header, wire)
    }

    pub(crate) fn binary(buf: BytesMut) -> Self {
        let (header, wire) = seal(buf, OP_BINARY);
        Frame::new(FrameKind::Binary, header, wire)
    }

    /// A frame of any opcode: the control frames (pong, close) the
    /// transport writes in order with the messages, and frames for tests.
    /// Its kind is `Text` only for a text opcode with a UTF-8 payload.
    pub fn raw(opcode: u8, payload: &[u8]) -> Self {
        let text = opcode == OP_TEXT && std::str::from_utf8(payload).is_ok();
        let mut buf = frame_buffer(payload.len());
        buf.put_slice(payload);
        let (header, wire) = seal(buf, opcode);
        Frame::new(if text { FrameKind::Text } else { FrameKind::Binary }, header, wire)
    }

    fn new(kind: FrameKind, header: u8, wire: Bytes) -> Self {
        Frame { kind, header, compressed: false, wire, deflated: OnceLock::new() }
    }

    /// The frame's WebSocket opcode ([`opcode`]).
    pub fn opcode(&self) -> u8 {
        self.wire[0] & 0x0F
    }

    /// Whether the payload is compressed (a frame [`Frame::deflate`] made).
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// The compressed version of this frame, made by `compress` on the
    /// first call and kept in it: later calls on this frame share it (a
    /// broadcast's frame, handed by reference to every subscriber, is
    /// compressed once). Clones do not carry it. `None` when `compress`
    /// declined (the message is not worth compressing), also kept.
    ///
    /// `compress` gets the payload and appends the compressed payload to
    /// the buffer it is given (which holds room for the header in front:
    /// leave it), returning `false` to decline. Only text and binary
    /// frames can be compressed; control frames never are.
    ///
    /// ```
    /// use phx_channels_protocol::{opcode, Frame};
    ///
    /// let frame = Frame::raw(opcode::TEXT, b"hello");
    /// let mut calls = 0;
    /// let mut reverse = |payload: &[u8], out: &mut Vec<u8>| {
    ///     calls += 1;
    ///     out.extend(payload.iter().rev());
    ///     true
    /// };
    /// let compressed = frame.deflated(&mut reverse).unwrap();
    /// assert_eq!(compressed.wire()[..], [0xC1, 5, b'o', b'l', b'l', b'e', b'h']);
    /// assert!(compressed.is_compressed() && compressed.as_text().is_none());
    /// assert!(frame.deflated(&mut reverse).is_some());
    /// assert_eq!(calls, 1);
    /// ```
    pub fn deflated(&self, compress: impl FnOnce(&[u8], &mut Vec<u8>) -> bool) -> Option<Frame> {
        self.deflated.get_or_init(|| self.deflate(compress).map(Box::new)).as_deref().cloned()
    }

    /// [`Frame::deflated`], made anew and not kept (a message compressed
    /// for one connection only, with a window of its own).
    pub fn deflate(&self, compress: impl FnOnce(&[u8], &mut Vec<u8>) -> bool) -> Option<Frame> {
        let opcode = self.opcode();
        if self.compressed || !matches!(opcode, OP_TEXT | OP_BINARY) {
            return None;
        }
        let mut buf = vec![0; HEADER_ROOM];
        if !compress(self.as_bytes(), &mut buf) {
            return None;
        }
        let len = buf.len() - HEADER_ROOM;
        let header = header_len(len);
        let start = HEADER_ROOM - header;
        put_header(&mut buf[start..HEADER_ROOM], RSV1 | opcode, len);
        // `header` is 2, 4 or 10; the room it does not need is skipped.
        let wire = Bytes::from(buf).slice(start..);
        Some(Frame { compressed: true, ..Frame::new(self.kind, header as u8, wire) })
    }

    /// Text or binary.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The encoded message: the frame's payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.wire[usize::from(self.header)..]
    }

    /// The encoded message (the payload), shared with the frame.
    pub fn bytes(&self) -> Bytes {
        self.wire.slice(usize::from(self.header)..)
    }

    /// The whole WebSocket frame, header and payload, as it is written to a
    /// socket.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The frame as text: `Some` exactly for text frames.
    pub fn as_text(&self) -> Option<&str> {
        if self.compressed {
            return None;
        }
        match self.kind {
            // Invariant of `Frame::text`.
            FrameKind::Text => std::str::from_utf8(self.as_bytes()).ok(),
            FrameKind::Binary => None,
        }
    }

    /// Length of the payload in bytes.
    pub fn len(&self) -> usize {
        self.wire.len() - usize::from(self.header)
    }

    /// Length of the whole WebSocket frame, counted against outbound limits.
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// Whether the payload is empty (never true for a frame a serializer
    /// made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(text) => write!(f, "Text({text})"),
            None => write!(f, "Binary({:?})", self.as_bytes()),
        }
    }
}
