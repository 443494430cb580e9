//! Frames: an encoded server message inside its whole WebSocket frame.

use std::fmt;

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
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    kind: FrameKind,
    /// How many bytes of `wire` are the WebSocket header (2, 4 or 10).
    header: u8,
    wire: Bytes,
}

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
fn put_header(out: &mut [u8], opcode: u8, len: usize) {
    out[0] = 0x80 | opcode;
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
fn seal(mut buf: BytesMut, opcode: u8) -> (u8, Bytes) {
    let len = buf.len() - HEADER_ROOM;
    let header = header_len(len);
    let start = HEADER_ROOM - header;
    put_header(&mut buf[start..HEADER_ROOM], opcode, len);
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
        Frame { kind: FrameKind::Text, header, wire }
    }

    pub(crate) fn binary(buf: BytesMut) -> Self {
        let (header, wire) = seal(buf, OP_BINARY);
        Frame { kind: FrameKind::Binary, header, wire }
    }

    /// A frame of any opcode: the control frames (pong, close) the
    /// transport writes in order with the messages, and frames for tests.
    /// Its kind is `Text` only for a text opcode with a UTF-8 payload.
    pub fn raw(opcode: u8, payload: &[u8]) -> Self {
        let text = opcode == OP_TEXT && std::str::from_utf8(payload).is_ok();
        let mut buf = frame_buffer(payload.len());
        buf.put_slice(payload);
        let (header, wire) = seal(buf, opcode);
        Frame { kind: if text { FrameKind::Text } else { FrameKind::Binary }, header, wire }
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
