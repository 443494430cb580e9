//! The Phoenix wire protocol: messages, payloads and the serializers.
//!
//! A connection negotiates one [`Serializer`] from its `vsn` query parameter
//! ([`Serializer::negotiate`]) and keeps it for every frame in both
//! directions:
//!
//! - **V2** (`vsn=2.0.0`, phoenix.js's default): text frames holding a JSON
//!   array `[join_ref, ref, topic, event, payload]`, and binary frames for raw
//!   byte payloads.
//! - **V1** (`vsn=1.0.0`, or no `vsn`): text frames holding a JSON object
//!   `{"topic", "event", "payload", "ref"}`; server frames never carry
//!   `join_ref`.
//!
//! ```
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::protocol::{Outgoing, Payload, Serializer};
//!
//! let v2 = Serializer::negotiate(Some("2.0.0")).unwrap();
//! let msg = v2.decode_text(br#"["3","3","comments:42","phx_join",{}]"#).unwrap();
//! assert_eq!(msg.event, "phx_join");
//!
//! let ok = Payload::json(&serde_json::json!({"hey": "there"})).unwrap();
//! let frame = v2
//!     .encode(&Outgoing::Reply {
//!         join_ref: Some("3"),
//!         msg_ref: Some("3"),
//!         topic: "comments:42",
//!         status: "ok",
//!         response: &ok,
//!     })
//!     .unwrap();
//! assert_eq!(
//!     frame.as_bytes(),
//!     br#"["3","3","comments:42","phx_reply",{"status":"ok","response":{"hey":"there"}}]"#
//! );
//! ```

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Event a client sends to join a topic.
pub const PHX_JOIN: &str = "phx_join";
/// Event a client sends to leave a topic.
pub const PHX_LEAVE: &str = "phx_leave";
/// Event of every reply the server sends.
pub const PHX_REPLY: &str = "phx_reply";
/// Event telling the client a channel ended gracefully (do not rejoin).
pub const PHX_CLOSE: &str = "phx_close";
/// Event telling the client a channel died (rejoin).
pub const PHX_ERROR: &str = "phx_error";
/// Keep-alive event, only on topic [`PHOENIX_TOPIC`].
pub const HEARTBEAT: &str = "heartbeat";
/// The topic reserved for heartbeats.
pub const PHOENIX_TOPIC: &str = "phoenix";

/// Event names a channel may not handle itself: the runtime owns them.
pub const RESERVED_EVENTS: [&str; 6] = [PHX_JOIN, PHX_LEAVE, PHX_REPLY, PHX_CLOSE, PHX_ERROR, HEARTBEAT];

/// A message payload: JSON, or raw bytes (V2 binary frames).
///
/// JSON is kept as the exact text that arrived or was encoded, so a payload
/// is parsed at most once (straight into the handler's type) and encoded at
/// most once (however many subscribers receive it).
#[derive(Clone)]
pub enum Payload {
    /// A JSON value, kept as text.
    Json(Box<RawValue>),
    /// Raw bytes, carried in V2 binary frames.
    Binary(Bytes),
}

impl Payload {
    /// Encodes any serializable value as a JSON payload.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Payload::Json)
    }

    /// The empty object `{}`, the payload of bare replies and control frames.
    pub fn empty() -> Self {
        // `{}` is valid JSON, so this cannot fail.
        Payload::Json(RawValue::from_string("{}".to_owned()).expect("`{}` is valid JSON"))
    }

    /// The JSON text, if this is a JSON payload.
    pub fn as_json(&self) -> Option<&str> {
        match self {
            Payload::Json(raw) => Some(raw.get()),
            Payload::Binary(_) => None,
        }
    }

    /// Deserializes the payload into `T`, naming the offending field on failure.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::protocol::Payload;
    ///
    /// #[derive(Debug, serde::Deserialize)]
    /// struct NewComment { content: String }
    ///
    /// let bad = Payload::json(&serde_json::json!({"content": 5})).unwrap();
    /// let err = bad.decode::<NewComment>().unwrap_err();
    /// assert_eq!(err.path(), "content");
    /// ```
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        match self {
            Payload::Json(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                serde_path_to_error::deserialize(ObjectsOnly(&mut de)).map_err(|e| PayloadError {
                    path: e.path().to_string(),
                    message: strip_position(&e.inner().to_string()),
                })
            }
            Payload::Binary(bytes) => {
                // Let a handler that takes bytes (`Bytes`, `Vec<u8>`) receive them.
                let de = de::value::BytesDeserializer::<PayloadError>::new(bytes);
                T::deserialize(de).map_err(|e| PayloadError {
                    path: ".".to_owned(),
                    message: format!("binary payload: {}", e.message),
                })
            }
        }
    }
}

/// A payload deserializer on which the payload itself, when it is read as a
/// struct, must be a JSON object.
///
/// serde accepts a JSON array for a struct (its fields in order), so
/// `["hello"]` would pass for `{"content": "hello"}`. No Phoenix client
/// sends a payload as an array where an object is meant; accepting it would
/// only let malformed input through. Structs nested inside the payload
/// follow serde_json's usual rules (an array of their fields is accepted
/// there, as anywhere serde_json is used).
struct ObjectsOnly<D>(D);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, NoSeq(visitor))
    }

    forward! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_i128(), deserialize_u8(), deserialize_u16(), deserialize_u32(),
        deserialize_u64(), deserialize_u128(), deserialize_f32(), deserialize_f64(), deserialize_char(),
        deserialize_str(), deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_option(), deserialize_unit(), deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str), deserialize_seq(), deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize), deserialize_map(),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]), deserialize_identifier(),
        deserialize_ignored_any(),
    }
}

/// A struct visitor that refuses sequences.
struct NoSeq<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for NoSeq<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &"a JSON object"))
    }
}

/// serde_json appends "at line 1 column 14" to its messages; the field path
/// says where the problem is far better on a one-line frame.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Json(raw) => write!(f, "Json({})", raw.get()),
            Payload::Binary(bytes) => write!(f, "Binary({} bytes)", bytes.len()),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Json(a), Payload::Json(b)) => a.get() == b.get(),
            (Payload::Binary(a), Payload::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Payload {}

impl Default for Payload {
    fn default() -> Self {
        Payload::empty()
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        // Serializing a `Value` only fails for maps with non-string keys,
        // which `Value` cannot hold.
        Payload::json(&value).expect("a serde_json::Value always serializes")
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Payload::Binary(bytes)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::Binary(Bytes::from(bytes))
    }
}

/// What can be sent as a payload: JSON or binary, through one signature.
///
/// Every method that sends something (`push`, `broadcast`,
/// `broadcast_from`, `local_broadcast`, replies, `Endpoint::broadcast`,
/// `PubSub::broadcast*`) takes `impl IntoPayload`:
///
/// - `&T` for any `T: Serialize` (a struct, `&json!(..)`, a `&str`): JSON;
/// - a [`serde_json::Value`] by value (`json!(..)`): JSON;
/// - a [`Payload`] (or `&Payload`), e.g. the one a handler received: sent as
///   it is, JSON or binary, without re-encoding;
/// - [`Bytes`] or `Vec<u8>` by value: binary (V2 binary frames).
///
/// A byte vector *by reference* is a `Serialize` value like any other and
/// travels as a JSON array of numbers; pass it by value (or as `Bytes`) to
/// send bytes.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use bytes::Bytes;
/// use phx_channels::protocol::{IntoPayload, Payload};
/// use serde_json::json;
///
/// #[derive(serde::Serialize)]
/// struct Comment { content: &'static str }
///
/// let from_struct = (&Comment { content: "hi" }).into_payload().unwrap();
/// assert_eq!(from_struct.as_json(), Some(r#"{"content":"hi"}"#));
/// assert_eq!(json!({"a": 1}).into_payload().unwrap().as_json(), Some(r#"{"a":1}"#));
/// assert_eq!(vec![1u8, 2].into_payload().unwrap(), Payload::Binary(Bytes::from_static(&[1, 2])));
/// assert_eq!((&vec![1u8, 2]).into_payload().unwrap().as_json(), Some("[1,2]"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent as a payload",
    label = "expected `&impl Serialize`, `serde_json::Value`, `Payload`, `Bytes` or `Vec<u8>`",
    note = "to send it as JSON, pass a reference: `&value`"
)]
pub trait IntoPayload {
    /// The payload, or why the value cannot be encoded as JSON.
    fn into_payload(self) -> Result<Payload, serde_json::Error>;
}

impl<T: Serialize + ?Sized> IntoPayload for &T {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Payload::json(self)
    }
}

impl IntoPayload for serde_json::Value {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Payload::json(&self)
    }
}

impl IntoPayload for Payload {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(self)
    }
}

impl IntoPayload for &Payload {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(self.clone())
    }
}

impl IntoPayload for Bytes {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(Payload::Binary(self))
    }
}

impl IntoPayload for Vec<u8> {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(Payload::Binary(Bytes::from(self)))
    }
}

/// A payload that does not fit the type a handler asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload at `{path}`: {message}")]
pub struct PayloadError {
    path: String,
    message: String,
}

impl PayloadError {
    /// Where in the payload the problem is, as a dotted path (`.` for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, in serde's words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl de::Error for PayloadError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PayloadError { path: ".".to_owned(), message: msg.to_string() }
    }
}

/// A message from a client, as decoded from one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The join this message belongs to, as the client sent it.
    pub join_ref: Option<String>,
    /// The client's reference for this message; replies echo it.
    pub msg_ref: Option<String>,
    /// The topic, e.g. `comments:42`.
    pub topic: String,
    /// The event, e.g. `phx_join` or `comment:add`.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

/// A message from the server, as a client decodes it
/// ([`Serializer::decode_server_text`], [`Serializer::decode_server_binary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// A `phx_reply`: the answer to the client message with `msg_ref`.
    Reply(ServerReply),
    /// Any other event: a push, a broadcast, `phx_close`, `phx_error`.
    Event(Message),
}

/// A `phx_reply`, unwrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The join the answered message belongs to (V1 frames carry none).
    pub join_ref: Option<String>,
    /// The ref of the message answered.
    pub msg_ref: Option<String>,
    /// The topic.
    pub topic: String,
    /// `ok` or `error` (any string the server chose).
    pub status: String,
    /// The response body: JSON, or bytes for a V2 binary reply.
    pub response: Payload,
}

/// A client message encoded for the wire ([`Serializer::encode_client`]),
/// without WebSocket framing: the client's WebSocket library frames and
/// masks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A JSON text message.
    Text(String),
    /// A V2 binary message (kind 0, push).
    Binary(Bytes),
}

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

pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PONG: u8 = 0xA;

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
fn frame_buffer(payload_capacity: usize) -> BytesMut {
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
    fn text(buf: BytesMut) -> Self {
        debug_assert!(std::str::from_utf8(&buf[HEADER_ROOM..]).is_ok());
        let (header, wire) = seal(buf, OP_TEXT);
        Frame { kind: FrameKind::Text, header, wire }
    }

    fn binary(buf: BytesMut) -> Self {
        let (header, wire) = seal(buf, OP_BINARY);
        Frame { kind: FrameKind::Binary, header, wire }
    }

    /// A frame of any opcode: the control frames (pong, close) the
    /// transport writes in order with the messages, and frames for tests.
    /// Its kind is `Text` only for a text opcode with a UTF-8 payload.
    pub(crate) fn raw(opcode: u8, payload: &[u8]) -> Self {
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

/// What the server sends, before a serializer gives it a shape.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// `phx_reply` to the message with `msg_ref`.
    Reply {
        /// The channel's join_ref (`None` for heartbeats and `unmatched topic`).
        join_ref: Option<&'a str>,
        /// The ref of the message answered.
        msg_ref: Option<&'a str>,
        /// The topic.
        topic: &'a str,
        /// `ok` or `error`.
        status: &'a str,
        /// The response body.
        response: &'a Payload,
    },
    /// A push from a channel to its own client: join_ref set, ref null.
    Push {
        /// The channel's join_ref.
        join_ref: Option<&'a str>,
        /// The topic.
        topic: &'a str,
        /// The event.
        event: &'a str,
        /// The payload.
        payload: &'a Payload,
    },
    /// A broadcast delivered through the fastlane: join_ref and ref null.
    Broadcast {
        /// The topic.
        topic: &'a str,
        /// The event.
        event: &'a str,
        /// The payload.
        payload: &'a Payload,
    },
    /// `phx_close` or `phx_error`: the join_ref in both ref fields.
    Control {
        /// The channel's join_ref, as the client sent it with its join.
        join_ref: Option<&'a str>,
        /// The topic.
        topic: &'a str,
        /// [`PHX_CLOSE`] or [`PHX_ERROR`].
        event: &'a str,
        /// The payload.
        payload: &'a Payload,
    },
}

/// Why a frame could not be decoded. The connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a JSON frame of the negotiated shape.
    #[error("malformed {version} frame: {detail}")]
    Json {
        /// `V1` or `V2`.
        version: &'static str,
        /// serde_json's account of the problem.
        detail: String,
    },
    /// A binary frame that is truncated or not a client push.
    #[error("malformed binary frame: {0}")]
    Binary(&'static str),
    /// A binary frame on a connection that negotiated V1.
    #[error("binary frames need the V2 serializer (vsn=2.0.0)")]
    BinaryNotSupported,
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Binary payloads travel only in V2 binary frames.
    #[error("binary payloads need the V2 serializer (vsn=2.0.0)")]
    BinaryNotSupported,
    /// A binary frame header field is longer than one length byte allows.
    #[error("`{field}` is {len} bytes; binary frames allow at most 255")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// The serializer a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// JSON objects; server frames carry no `join_ref`.
    V1,
    /// JSON arrays, plus binary frames.
    V2,
}

impl Serializer {
    /// Every serializer, in a fixed order (for per-serializer caches).
    pub const ALL: [Serializer; 2] = [Serializer::V1, Serializer::V2];

    /// Picks the serializer for a `vsn` query value as Phoenix does: absent
    /// means `1.0.0`; `~> 1.0.0` is V1, `~> 2.0.0` is V2; anything else
    /// (another version, not a version) is refused with `None`.
    pub fn negotiate(vsn: Option<&str>) -> Option<Serializer> {
        let vsn = vsn.unwrap_or("1.0.0");
        let mut parts = vsn.splitn(3, '.');
        let major: u64 = parts.next()?.parse().ok()?;
        let minor: u64 = parts.next()?.parse().ok()?;
        let patch = parts.next()?;
        // Semantic versions may carry `-pre` or `+build`; the patch number
        // itself must still be a number.
        let patch_digits = patch.split(['-', '+']).next()?;
        patch_digits.parse::<u64>().ok()?;
        match (major, minor) {
            (1, 0) => Some(Serializer::V1),
            (2, 0) => Some(Serializer::V2),
            _ => None,
        }
    }

    /// The index of this serializer in [`Serializer::ALL`].
    pub fn index(self) -> usize {
        match self {
            Serializer::V1 => 0,
            Serializer::V2 => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Serializer::V1 => "V1",
            Serializer::V2 => "V2",
        }
    }

    /// Decodes a text frame.
    pub fn decode_text(self, frame: &[u8]) -> Result<Message, DecodeError> {
        let result = match self {
            Serializer::V1 => serde_json::from_slice::<V1In>(frame).map(V1In::into_message),
            Serializer::V2 => serde_json::from_slice::<V2In>(frame).map(|m| m.0),
        };
        result.map_err(|e| DecodeError::Json { version: self.name(), detail: e.to_string() })
    }

    /// Decodes a binary frame (V2 kind 0, the only kind a client sends).
    pub fn decode_binary(self, frame: &[u8]) -> Result<Message, DecodeError> {
        if self == Serializer::V1 {
            return Err(DecodeError::BinaryNotSupported);
        }
        let mut fields = BinaryFields::new(frame, 5)?;
        if fields.kind != 0 {
            return Err(DecodeError::Binary("clients may only send kind 0 (push)"));
        }
        let join_ref = fields.next("join_ref runs past the end")?;
        let msg_ref = fields.next("ref runs past the end")?;
        let topic = fields.next("topic runs past the end")?;
        let event = fields.next("event runs past the end")?;
        Ok(Message {
            join_ref: non_empty(join_ref),
            msg_ref: non_empty(msg_ref),
            topic,
            event,
            payload: fields.payload(),
        })
    }

    /// Decodes a text frame the server sent, as a client reads it: a
    /// `phx_reply` is unwrapped into its status and response.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::protocol::{Serializer, ServerMessage};
    ///
    /// let frame = br#"["3","3","comments:42","phx_reply",{"status":"ok","response":{"hey":"there"}}]"#;
    /// let ServerMessage::Reply(reply) = Serializer::V2.decode_server_text(frame).unwrap() else { panic!() };
    /// assert_eq!((reply.msg_ref.as_deref(), reply.status.as_str()), (Some("3"), "ok"));
    /// assert_eq!(reply.response.as_json(), Some(r#"{"hey":"there"}"#));
    /// ```
    pub fn decode_server_text(self, frame: &[u8]) -> Result<ServerMessage, DecodeError> {
        let message = self.decode_text(frame)?;
        if message.event != PHX_REPLY {
            return Ok(ServerMessage::Event(message));
        }
        let Payload::Json(raw) = &message.payload else {
            return Err(DecodeError::Binary("a text frame cannot hold a binary payload"));
        };
        let body: ReplyBody = serde_json::from_str(raw.get()).map_err(|e| DecodeError::Json {
            version: self.name(),
            detail: format!("a phx_reply payload must be {{\"status\", \"response\"}}: {e}"),
        })?;
        Ok(ServerMessage::Reply(ServerReply {
            join_ref: message.join_ref,
            msg_ref: message.msg_ref,
            topic: message.topic,
            status: body.status,
            response: Payload::Json(body.response),
        }))
    }

    /// Decodes a binary frame the server sent (V2 kinds 0 push, 1 reply and
    /// 2 broadcast), as phoenix.js does.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::protocol::{Payload, Serializer, ServerMessage};
    ///
    /// // kind 2 (broadcast), topic "t", event "e", payload [1, 2]
    /// let ServerMessage::Event(m) = Serializer::V2.decode_server_binary(b"\x02\x01\x01te\x01\x02").unwrap() else { panic!() };
    /// assert_eq!((m.topic.as_str(), m.event.as_str()), ("t", "e"));
    /// assert_eq!(m.payload, Payload::from(vec![1, 2]));
    /// ```
    pub fn decode_server_binary(self, frame: &[u8]) -> Result<ServerMessage, DecodeError> {
        if self == Serializer::V1 {
            return Err(DecodeError::BinaryNotSupported);
        }
        let kind = *frame.first().ok_or(DecodeError::Binary("an empty binary frame"))?;
        match kind {
            0 => {
                // A push has no ref.
                let mut fields = BinaryFields::new(frame, 4)?;
                let join_ref = fields.next("join_ref runs past the end")?;
                let topic = fields.next("topic runs past the end")?;
                let event = fields.next("event runs past the end")?;
                Ok(ServerMessage::Event(Message {
                    join_ref: non_empty(join_ref),
                    msg_ref: None,
                    topic,
                    event,
                    payload: fields.payload(),
                }))
            }
            1 => {
                let mut fields = BinaryFields::new(frame, 5)?;
                let join_ref = fields.next("join_ref runs past the end")?;
                let msg_ref = fields.next("ref runs past the end")?;
                let topic = fields.next("topic runs past the end")?;
                let status = fields.next("status runs past the end")?;
                Ok(ServerMessage::Reply(ServerReply {
                    join_ref: non_empty(join_ref),
                    msg_ref: non_empty(msg_ref),
                    topic,
                    status,
                    response: fields.payload(),
                }))
            }
            2 => {
                let mut fields = BinaryFields::new(frame, 3)?;
                let topic = fields.next("topic runs past the end")?;
                let event = fields.next("event runs past the end")?;
                Ok(ServerMessage::Event(Message {
                    join_ref: None,
                    msg_ref: None,
                    topic,
                    event,
                    payload: fields.payload(),
                }))
            }
            _ => Err(DecodeError::Binary("unknown kind (the server sends 0, 1 or 2)")),
        }
    }

    /// Encodes a message as a client sends it (phoenix.js's serializer):
    /// V2 `[join_ref, ref, topic, event, payload]` or, for a binary payload,
    /// a kind 0 binary frame; V1 `{"topic", "event", "payload", "ref",
    /// "join_ref"}`. [`Serializer::decode_text`] and
    /// [`Serializer::decode_binary`] read it back.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::protocol::{ClientFrame, Message, Payload, Serializer};
    ///
    /// let join = Message {
    ///     join_ref: Some("1".into()),
    ///     msg_ref: Some("1".into()),
    ///     topic: "comments:42".into(),
    ///     event: "phx_join".into(),
    ///     payload: Payload::empty(),
    /// };
    /// let frame = Serializer::V2.encode_client(&join).unwrap();
    /// assert_eq!(frame, ClientFrame::Text(r#"["1","1","comments:42","phx_join",{}]"#.into()));
    /// ```
    pub fn encode_client(self, message: &Message) -> Result<ClientFrame, EncodeError> {
        let join_ref = message.join_ref.as_deref();
        let msg_ref = message.msg_ref.as_deref();
        let (topic, event) = (message.topic.as_str(), message.event.as_str());
        match (self, &message.payload) {
            (Serializer::V1, Payload::Binary(_)) => Err(EncodeError::BinaryNotSupported),
            (Serializer::V2, Payload::Binary(bytes)) => {
                let (join_ref, msg_ref) = (join_ref.unwrap_or(""), msg_ref.unwrap_or(""));
                let mut buf =
                    Vec::with_capacity(5 + join_ref.len() + msg_ref.len() + topic.len() + event.len() + bytes.len());
                buf.extend_from_slice(&[
                    0,
                    len_byte("join_ref", join_ref)?,
                    len_byte("ref", msg_ref)?,
                    len_byte("topic", topic)?,
                    len_byte("event", event)?,
                ]);
                for s in [join_ref, msg_ref, topic, event] {
                    buf.extend_from_slice(s.as_bytes());
                }
                buf.extend_from_slice(bytes);
                Ok(ClientFrame::Binary(Bytes::from(buf)))
            }
            (_, Payload::Json(json)) => {
                let f = Fields { join_ref, msg_ref, topic, event };
                let mut buf = BytesMut::with_capacity(frame_capacity(&f, json));
                if self == Serializer::V2 {
                    put_v2_fields(&mut buf, &f);
                    buf.put_slice(json.get().as_bytes());
                    buf.put_u8(b']');
                } else {
                    put_v1_fields(&mut buf, &f);
                    buf.put_slice(json.get().as_bytes());
                    buf.put_slice(b",\"ref\":");
                    put_json_opt(&mut buf, msg_ref);
                    buf.put_slice(b",\"join_ref\":");
                    put_json_opt(&mut buf, join_ref);
                    buf.put_u8(b'}');
                }
                // Only serde_json's output and ASCII punctuation went in.
                let text = String::from_utf8(buf.to_vec()).expect("JSON text is UTF-8");
                Ok(ClientFrame::Text(text))
            }
        }
    }

    /// Encodes an outgoing message.
    ///
    /// Fails only for binary payloads on V1 and for binary header fields
    /// over 255 bytes.
    pub fn encode(self, out: &Outgoing<'_>) -> Result<Frame, EncodeError> {
        match (self, payload_of(out)) {
            (Serializer::V1, Payload::Json(json)) => Ok(encode_v1(out, json)),
            (Serializer::V2, Payload::Json(json)) => Ok(encode_v2(out, json)),
            (Serializer::V1, Payload::Binary(_)) => Err(EncodeError::BinaryNotSupported),
            (Serializer::V2, Payload::Binary(bytes)) => encode_binary(out, bytes),
        }
    }
}

fn payload_of<'a>(out: &Outgoing<'a>) -> &'a Payload {
    match *out {
        Outgoing::Reply { response, .. } => response,
        Outgoing::Push { payload, .. } | Outgoing::Broadcast { payload, .. } | Outgoing::Control { payload, .. } => {
            payload
        }
    }
}

/// The fields every JSON frame has, with the null rules of §4/§5 applied.
struct Fields<'a> {
    join_ref: Option<&'a str>,
    msg_ref: Option<&'a str>,
    topic: &'a str,
    event: &'a str,
}

fn fields<'a>(out: &Outgoing<'a>) -> Fields<'a> {
    match *out {
        Outgoing::Reply { join_ref, msg_ref, topic, .. } => Fields { join_ref, msg_ref, topic, event: PHX_REPLY },
        Outgoing::Push { join_ref, topic, event, .. } => Fields { join_ref, msg_ref: None, topic, event },
        Outgoing::Broadcast { topic, event, .. } => Fields { join_ref: None, msg_ref: None, topic, event },
        Outgoing::Control { join_ref, topic, event, .. } => Fields { join_ref, msg_ref: join_ref, topic, event },
    }
}

/// Writes the JSON payload of a frame: replies wrap the response.
fn put_json_payload(buf: &mut BytesMut, out: &Outgoing<'_>, json: &RawValue) {
    if let Outgoing::Reply { status, .. } = *out {
        buf.put_slice(b"{\"status\":");
        put_json_str(buf, status);
        buf.put_slice(b",\"response\":");
        buf.put_slice(json.get().as_bytes());
        buf.put_u8(b'}');
    } else {
        buf.put_slice(json.get().as_bytes());
    }
}

fn put_json_str(buf: &mut BytesMut, s: &str) {
    // A `&str` always serializes; writing into a Vec cannot fail.
    let mut writer = buf.writer();
    serde_json::to_writer(&mut writer, s).expect("a string always serializes to JSON");
}

fn put_json_opt(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_json_str(buf, s),
        None => buf.put_slice(b"null"),
    }
}

fn frame_capacity(f: &Fields<'_>, json: &RawValue) -> usize {
    // Room for the fields, the payload, punctuation and a reply wrapper.
    64 + f.join_ref.map_or(0, str::len)
        + f.msg_ref.map_or(0, str::len)
        + f.topic.len()
        + f.event.len()
        + json.get().len()
}

fn encode_v2(out: &Outgoing<'_>, json: &RawValue) -> Frame {
    let f = fields(out);
    let mut buf = frame_buffer(frame_capacity(&f, json));
    put_v2_fields(&mut buf, &f);
    put_json_payload(&mut buf, out, json);
    buf.put_u8(b']');
    Frame::text(buf)
}

/// `[join_ref,ref,"topic","event",` — a V2 frame up to its payload.
fn put_v2_fields(buf: &mut BytesMut, f: &Fields<'_>) {
    buf.put_u8(b'[');
    put_json_opt(buf, f.join_ref);
    buf.put_u8(b',');
    put_json_opt(buf, f.msg_ref);
    buf.put_u8(b',');
    put_json_str(buf, f.topic);
    buf.put_u8(b',');
    put_json_str(buf, f.event);
    buf.put_u8(b',');
}

/// `{"topic":..,"event":..,"payload":` — a V1 frame up to its payload.
fn put_v1_fields(buf: &mut BytesMut, f: &Fields<'_>) {
    buf.put_slice(b"{\"topic\":");
    put_json_str(buf, f.topic);
    buf.put_slice(b",\"event\":");
    put_json_str(buf, f.event);
    buf.put_slice(b",\"payload\":");
}

fn encode_v1(out: &Outgoing<'_>, json: &RawValue) -> Frame {
    let f = fields(out);
    let mut buf = frame_buffer(frame_capacity(&f, json));
    put_v1_fields(&mut buf, &f);
    put_json_payload(&mut buf, out, json);
    buf.put_slice(b",\"ref\":");
    put_json_opt(&mut buf, f.msg_ref);
    buf.put_u8(b'}');
    Frame::text(buf)
}

fn len_byte(field: &'static str, s: &str) -> Result<u8, EncodeError> {
    u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { field, len: s.len() })
}

fn encode_binary(out: &Outgoing<'_>, payload: &Bytes) -> Result<Frame, EncodeError> {
    let f = fields(out);
    let join_ref = f.join_ref.unwrap_or("");
    let msg_ref = f.msg_ref.unwrap_or("");
    let mut buf = frame_buffer(5 + join_ref.len() + msg_ref.len() + f.topic.len() + 16 + payload.len());
    match *out {
        Outgoing::Reply { status, .. } => {
            buf.put_slice(&[
                1,
                len_byte("join_ref", join_ref)?,
                len_byte("ref", msg_ref)?,
                len_byte("topic", f.topic)?,
                len_byte("status", status)?,
            ]);
            for s in [join_ref, msg_ref, f.topic, status] {
                buf.put_slice(s.as_bytes());
            }
        }
        Outgoing::Push { .. } | Outgoing::Control { .. } => {
            buf.put_slice(&[
                0,
                len_byte("join_ref", join_ref)?,
                len_byte("topic", f.topic)?,
                len_byte("event", f.event)?,
            ]);
            for s in [join_ref, f.topic, f.event] {
                buf.put_slice(s.as_bytes());
            }
        }
        Outgoing::Broadcast { .. } => {
            buf.put_slice(&[2, len_byte("topic", f.topic)?, len_byte("event", f.event)?]);
            for s in [f.topic, f.event] {
                buf.put_slice(s.as_bytes());
            }
        }
    }
    buf.put_slice(payload);
    Ok(Frame::binary(buf))
}

/// A V2 client frame: an array of at least five elements (extra ones are
/// ignored, as Phoenix does).
struct V2In(Message);

impl<'de> Deserialize<'de> for V2In {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor;

        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = V2In;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array [join_ref, ref, topic, event, payload]")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V2In, A::Error> {
                let join_ref = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let msg_ref = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let topic = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let event = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(3, &self))?;
                let payload: Box<RawValue> = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(4, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(V2In(Message { join_ref, msg_ref, topic, event, payload: Payload::Json(payload) }))
            }
        }

        deserializer.deserialize_seq(ArrayVisitor)
    }
}

/// A V1 client frame: `topic`, `event`, `payload` and `ref` are required
/// (`ref` may be null); `join_ref` is optional.
#[derive(Deserialize)]
struct V1In {
    topic: String,
    event: String,
    payload: Box<RawValue>,
    #[serde(rename = "ref", deserialize_with = "required_nullable")]
    msg_ref: Option<String>,
    #[serde(default)]
    join_ref: Option<String>,
}

/// `Option` fields are optional by default in serde; V1's `ref` key must be
/// present even when its value is null.
fn required_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

impl V1In {
    fn into_message(self) -> Message {
        Message {
            join_ref: self.join_ref,
            msg_ref: self.msg_ref,
            topic: self.topic,
            event: self.event,
            payload: Payload::Json(self.payload),
        }
    }
}

/// The `{"status", "response"}` payload of a `phx_reply`.
#[derive(Deserialize)]
struct ReplyBody {
    status: String,
    response: Box<RawValue>,
}

/// An empty binary header field means "none" (phoenix.js writes `null`
/// refs as empty strings).
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Reads a V2 binary frame: a kind byte, then one length byte per header
/// field, then the fields, then the payload.
struct BinaryFields<'a> {
    kind: u8,
    lens: &'a [u8],
    rest: &'a [u8],
}

impl<'a> BinaryFields<'a> {
    /// `header` is the kind byte plus the length bytes.
    fn new(frame: &'a [u8], header: usize) -> Result<Self, DecodeError> {
        let (head, rest) = match (frame.get(..header), frame.get(header..)) {
            (Some(head), Some(rest)) => (head, rest),
            _ => return Err(DecodeError::Binary("shorter than its header")),
        };
        let (kind, lens) = head.split_first().ok_or(DecodeError::Binary("shorter than its header"))?;
        Ok(BinaryFields { kind: *kind, lens, rest })
    }

    /// The next header field; `past_end` names it when the frame is too short.
    fn next(&mut self, past_end: &'static str) -> Result<String, DecodeError> {
        let (len, lens) = self.lens.split_first().ok_or(DecodeError::Binary(past_end))?;
        self.lens = lens;
        let len = usize::from(*len);
        if self.rest.len() < len {
            return Err(DecodeError::Binary(past_end));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Binary("a header field is not UTF-8"))
    }

    /// Everything after the header fields.
    fn payload(self) -> Payload {
        Payload::Binary(Bytes::copy_from_slice(self.rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(frame: &Frame) -> &str {
        frame.as_text().expect("a text frame")
    }

    fn p(v: serde_json::Value) -> Payload {
        Payload::from(v)
    }

    /// A frame is framed once: its wire bytes are the WebSocket header for
    /// its payload's length (every length encoding) followed by the payload,
    /// and the accessors other than `wire` are about the payload.
    #[test]
    fn frames_carry_their_websocket_header() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10), (200_000, 10)] {
            let raw = Frame::raw(OP_BINARY, &vec![7; len]);
            assert_eq!((raw.len(), raw.wire_len()), (len, len + header), "{len}");
            assert_eq!(raw.wire()[0], 0x82);
            assert_eq!(&raw.wire()[header..], raw.as_bytes());
            assert_eq!(raw.bytes(), raw.as_bytes());
        }
        let text = Serializer::V2
            .encode(&Outgoing::Broadcast { topic: "t", event: "e", payload: &Payload::json(&"x".repeat(200)).unwrap() })
            .unwrap();
        let len = text.len();
        assert_eq!(text.wire()[..4], [0x81, 126, (len >> 8) as u8, len as u8]);
        assert!(text.as_text().unwrap().starts_with(r#"[null,null,"t","e","xx"#));
    }

    #[test]
    fn negotiates_like_phoenix() {
        assert_eq!(Serializer::negotiate(None), Some(Serializer::V1));
        assert_eq!(Serializer::negotiate(Some("1.0.0")), Some(Serializer::V1));
        assert_eq!(Serializer::negotiate(Some("1.0.7")), Some(Serializer::V1));
        assert_eq!(Serializer::negotiate(Some("2.0.0")), Some(Serializer::V2));
        assert_eq!(Serializer::negotiate(Some("2.0.3")), Some(Serializer::V2));
        for refused in ["2.1.0", "3.0.0", "abc", "", "2", "2.0", "2.0.x", "1.1.0", "0.9.0"] {
            assert_eq!(Serializer::negotiate(Some(refused)), None, "{refused}");
        }
    }

    #[test]
    fn decodes_v2_arrays() {
        let m = Serializer::V2.decode_text(br#"["3","4","comments:42","comment:add",{"content":"first!"}]"#).unwrap();
        assert_eq!(m.join_ref.as_deref(), Some("3"));
        assert_eq!(m.msg_ref.as_deref(), Some("4"));
        assert_eq!(m.topic, "comments:42");
        assert_eq!(m.event, "comment:add");
        assert_eq!(m.payload.as_json(), Some(r#"{"content":"first!"}"#));

        let hb = Serializer::V2.decode_text(br#"[null,"5","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(hb.join_ref, None);
        assert_eq!(hb.msg_ref.as_deref(), Some("5"));
    }

    #[test]
    fn v2_accepts_any_json_payload_and_extra_elements() {
        for payload in [r#""s""#, "[1,2]", "null", "42", r#"{"a":{"b":[null]}}"#] {
            let frame = format!(r#"["1","2","t","e",{payload},"extra",{{}}]"#);
            let m = Serializer::V2.decode_text(frame.as_bytes()).unwrap();
            assert_eq!(m.payload.as_json(), Some(payload));
        }
    }

    #[test]
    fn v2_rejects_malformed_frames() {
        for bad in [
            &b"this is not json"[..],
            b"",
            b"{}",
            br#"["1","2","t","e"]"#,
            br#"["1","2","t"]"#,
            br#"[1,"2","t","e",{}]"#,
            br#"["1",2,"t","e",{}]"#,
            br#"["1","2",3,"e",{}]"#,
            br#"["1","2","t",null,{}]"#,
            br#"["1","2","t","e",{}"#,
            b"\xff\xfe",
            br#"["1","2","t","e",{}] trailing"#,
        ] {
            assert!(Serializer::V2.decode_text(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn decodes_v1_objects() {
        let m = Serializer::V1
            .decode_text(br#"{"topic":"comments:1","event":"phx_join","payload":{},"ref":"2","join_ref":"2"}"#)
            .unwrap();
        assert_eq!((m.join_ref.as_deref(), m.msg_ref.as_deref()), (Some("2"), Some("2")));
        let m =
            Serializer::V1.decode_text(br#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":null}"#).unwrap();
        assert_eq!((m.join_ref, m.msg_ref), (None, None));
    }

    #[test]
    fn v1_requires_topic_event_payload_and_ref() {
        for bad in [
            &br#"{"event":"e","payload":{},"ref":"1"}"#[..],
            br#"{"topic":"t","payload":{},"ref":"1"}"#,
            br#"{"topic":"t","event":"e","ref":"1"}"#,
            br#"{"topic":"t","event":"e","payload":{}}"#,
            br#"["1","1","t","e",{}]"#,
            br#"{"topic":1,"event":"e","payload":{},"ref":"1"}"#,
        ] {
            assert!(Serializer::V1.decode_text(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn encodes_every_v2_frame_kind_with_phoenix_null_rules() {
        let resp = p(json!({"hey": "there"}));
        let reply =
            Outgoing::Reply { join_ref: Some("3"), msg_ref: Some("4"), topic: "c:1", status: "ok", response: &resp };
        assert_eq!(
            text(&Serializer::V2.encode(&reply).unwrap()),
            r#"["3","4","c:1","phx_reply",{"status":"ok","response":{"hey":"there"}}]"#
        );
        let empty = Payload::empty();
        let hb =
            Outgoing::Reply { join_ref: None, msg_ref: Some("5"), topic: "phoenix", status: "ok", response: &empty };
        assert_eq!(
            text(&Serializer::V2.encode(&hb).unwrap()),
            r#"[null,"5","phoenix","phx_reply",{"status":"ok","response":{}}]"#
        );
        let push = Outgoing::Push { join_ref: Some("3"), topic: "c:1", event: "notice", payload: &resp };
        assert_eq!(text(&Serializer::V2.encode(&push).unwrap()), r#"["3",null,"c:1","notice",{"hey":"there"}]"#);
        let bc = Outgoing::Broadcast { topic: "c:1", event: "new", payload: &resp };
        assert_eq!(text(&Serializer::V2.encode(&bc).unwrap()), r#"[null,null,"c:1","new",{"hey":"there"}]"#);
        let close = Outgoing::Control { join_ref: Some("3"), topic: "c:1", event: PHX_CLOSE, payload: &empty };
        assert_eq!(text(&Serializer::V2.encode(&close).unwrap()), r#"["3","3","c:1","phx_close",{}]"#);
    }

    #[test]
    fn encodes_v1_frames_without_join_ref() {
        let resp = p(json!({}));
        let reply =
            Outgoing::Reply { join_ref: Some("3"), msg_ref: Some("4"), topic: "c:1", status: "error", response: &resp };
        assert_eq!(
            text(&Serializer::V1.encode(&reply).unwrap()),
            r#"{"topic":"c:1","event":"phx_reply","payload":{"status":"error","response":{}},"ref":"4"}"#
        );
        let bc = Outgoing::Broadcast { topic: "c:1", event: "new", payload: &resp };
        assert_eq!(
            text(&Serializer::V1.encode(&bc).unwrap()),
            r#"{"topic":"c:1","event":"new","payload":{},"ref":null}"#
        );
        let push = Outgoing::Push { join_ref: Some("3"), topic: "c:1", event: "n", payload: &resp };
        assert_eq!(
            text(&Serializer::V1.encode(&push).unwrap()),
            r#"{"topic":"c:1","event":"n","payload":{},"ref":null}"#
        );
        let err = Outgoing::Control { join_ref: Some("2"), topic: "c:1", event: PHX_ERROR, payload: &resp };
        assert_eq!(
            text(&Serializer::V1.encode(&err).unwrap()),
            r#"{"topic":"c:1","event":"phx_error","payload":{},"ref":"2"}"#
        );
        let err = Outgoing::Control { join_ref: None, topic: "c:1", event: PHX_ERROR, payload: &resp };
        assert_eq!(
            text(&Serializer::V1.encode(&err).unwrap()),
            r#"{"topic":"c:1","event":"phx_error","payload":{},"ref":null}"#
        );
    }

    #[test]
    fn escapes_strings() {
        let resp = Payload::empty();
        let reply = Outgoing::Reply {
            join_ref: Some("\"q\""),
            msg_ref: Some("\u{1F600}"),
            topic: "a\\b\n",
            status: "ok",
            response: &resp,
        };
        let frame = Serializer::V2.encode(&reply).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(text(&frame)).unwrap();
        assert_eq!(parsed, json!(["\"q\"", "\u{1F600}", "a\\b\n", "phx_reply", {"status": "ok", "response": {}}]));
    }

    #[test]
    fn binary_frames_match_the_worked_example() {
        let frame = [
            0x00, 0x01, 0x01, 0x06, 0x04, 0x33, 0x39, 0x72, 0x6f, 0x6f, 0x6d, 0x3a, 0x61, 0x62, 0x6c, 0x6f, 0x62, 1, 2,
            3,
        ];
        let m = Serializer::V2.decode_binary(&frame).unwrap();
        assert_eq!((m.join_ref.as_deref(), m.msg_ref.as_deref()), (Some("3"), Some("9")));
        assert_eq!((m.topic.as_str(), m.event.as_str()), ("room:a", "blob"));
        assert_eq!(m.payload, Payload::Binary(Bytes::from_static(&[1, 2, 3])));

        let resp = Payload::Binary(Bytes::from_static(&[0xff]));
        let reply =
            Outgoing::Reply { join_ref: Some("3"), msg_ref: Some("9"), topic: "room:a", status: "ok", response: &resp };
        let out = Serializer::V2.encode(&reply).unwrap();
        assert_eq!(out.kind(), FrameKind::Binary);
        assert_eq!(
            out.as_bytes(),
            [0x01, 0x01, 0x01, 0x06, 0x02, 0x33, 0x39, 0x72, 0x6f, 0x6f, 0x6d, 0x3a, 0x61, 0x6f, 0x6b, 0xff]
        );
    }

    #[test]
    fn binary_push_and_broadcast_layouts() {
        let data = Payload::Binary(Bytes::from_static(b"xy"));
        let push = Outgoing::Push { join_ref: Some("3"), topic: "t", event: "e", payload: &data };
        assert_eq!(Serializer::V2.encode(&push).unwrap().as_bytes(), b"\x00\x01\x01\x013texy");
        let bc = Outgoing::Broadcast { topic: "t", event: "e", payload: &data };
        assert_eq!(Serializer::V2.encode(&bc).unwrap().as_bytes(), b"\x02\x01\x01texy");
        assert_eq!(Serializer::V1.encode(&bc), Err(EncodeError::BinaryNotSupported));
        let long = "x".repeat(256);
        let bc = Outgoing::Broadcast { topic: &long, event: "e", payload: &data };
        assert_eq!(Serializer::V2.encode(&bc), Err(EncodeError::FieldTooLong { field: "topic", len: 256 }));
    }

    #[test]
    fn rejects_malformed_binary_frames() {
        assert_eq!(Serializer::V1.decode_binary(&[0, 0, 0, 0, 0]), Err(DecodeError::BinaryNotSupported));
        for bad in [&[][..], &[0, 0, 0], &[1, 0, 0, 0, 0], &[2, 0, 0], &[0, 5, 0, 0, 0, b'a'], &[0, 1, 0, 0, 0, 0xff]] {
            assert!(Serializer::V2.decode_binary(bad).is_err(), "{bad:?}");
        }
        let empty_refs = Serializer::V2.decode_binary(&[0, 0, 0, 1, 1, b't', b'e']).unwrap();
        assert_eq!((empty_refs.join_ref, empty_refs.msg_ref), (None, None));
    }

    fn msg(join_ref: Option<&str>, msg_ref: Option<&str>, topic: &str, event: &str, payload: Payload) -> Message {
        Message {
            join_ref: join_ref.map(str::to_owned),
            msg_ref: msg_ref.map(str::to_owned),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        }
    }

    /// What a client encodes, the server decodes unchanged: both
    /// serializers, JSON and binary, refs present or not.
    #[test]
    fn client_frames_round_trip_through_the_server_decoder() {
        let json = p(json!({"content": "first \"quoted\" \u{1F600}"}));
        let bytes = Payload::Binary(Bytes::from_static(&[0, 1, 255]));
        let cases = [
            msg(Some("1"), Some("1"), "comments:42", PHX_JOIN, json.clone()),
            msg(None, Some("7"), PHOENIX_TOPIC, HEARTBEAT, Payload::empty()),
            msg(Some("3"), None, "room:a", "e", json.clone()),
        ];
        for serializer in Serializer::ALL {
            for m in &cases {
                let ClientFrame::Text(text) = serializer.encode_client(m).unwrap() else { panic!("text") };
                assert_eq!(&serializer.decode_text(text.as_bytes()).unwrap(), m, "{serializer:?} {text}");
            }
        }
        let ClientFrame::Text(v2) = Serializer::V2.encode_client(&cases[1]).unwrap() else { panic!() };
        assert_eq!(v2, r#"[null,"7","phoenix","heartbeat",{}]"#);
        let ClientFrame::Text(v1) = Serializer::V1.encode_client(&cases[0]).unwrap() else { panic!() };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&v1).unwrap(),
            json!({"topic": "comments:42", "event": "phx_join", "payload": {"content": "first \"quoted\" \u{1F600}"}, "ref": "1", "join_ref": "1"})
        );

        let push = msg(Some("3"), Some("9"), "room:a", "blob", bytes.clone());
        let ClientFrame::Binary(frame) = Serializer::V2.encode_client(&push).unwrap() else { panic!("binary") };
        // phoenix.js's layout: kind 0, four lengths, the fields, the payload
        assert_eq!(&frame[..], b"\x00\x01\x01\x06\x0439room:ablob\x00\x01\xff");
        assert_eq!(Serializer::V2.decode_binary(&frame).unwrap(), push);
        assert_eq!(Serializer::V1.encode_client(&push), Err(EncodeError::BinaryNotSupported));
        let long = msg(None, None, &"t".repeat(256), "e", bytes);
        assert_eq!(Serializer::V2.encode_client(&long), Err(EncodeError::FieldTooLong { field: "topic", len: 256 }));
    }

    /// Every kind of server frame, encoded by the server's serializer, reads
    /// back as a client sees it: replies unwrapped, V1 without join_ref.
    #[test]
    fn server_frames_round_trip_through_the_client_decoder() {
        let json = p(json!({"hey": "there"}));
        let bytes = Payload::Binary(Bytes::from_static(b"xyz"));
        let decode = |serializer: Serializer, out: &Outgoing<'_>| {
            let frame = serializer.encode(out).unwrap();
            match frame.kind() {
                FrameKind::Text => serializer.decode_server_text(frame.as_bytes()).unwrap(),
                FrameKind::Binary => serializer.decode_server_binary(frame.as_bytes()).unwrap(),
            }
        };
        for (serializer, payload) in [(Serializer::V2, &json), (Serializer::V2, &bytes), (Serializer::V1, &json)] {
            let jr = (serializer == Serializer::V2).then(|| "3".to_owned());
            let reply = Outgoing::Reply {
                join_ref: Some("3"),
                msg_ref: Some("4"),
                topic: "c:1",
                status: "ok",
                response: payload,
            };
            let expected = ServerReply {
                join_ref: jr.clone(),
                msg_ref: Some("4".into()),
                topic: "c:1".into(),
                status: "ok".into(),
                response: payload.clone(),
            };
            assert_eq!(decode(serializer, &reply), ServerMessage::Reply(expected));
            let push = Outgoing::Push { join_ref: Some("3"), topic: "c:1", event: "n", payload };
            let expected = Message { join_ref: jr.clone(), ..msg(None, None, "c:1", "n", payload.clone()) };
            assert_eq!(decode(serializer, &push), ServerMessage::Event(expected));
            let bc = Outgoing::Broadcast { topic: "c:1", event: "new", payload };
            assert_eq!(decode(serializer, &bc), ServerMessage::Event(msg(None, None, "c:1", "new", payload.clone())));
        }
        let empty = Payload::empty();
        let err = Outgoing::Control { join_ref: Some("3"), topic: "c:1", event: PHX_ERROR, payload: &empty };
        assert_eq!(
            decode(Serializer::V2, &err),
            ServerMessage::Event(msg(Some("3"), Some("3"), "c:1", PHX_ERROR, empty))
        );
    }

    #[test]
    fn malformed_server_frames_are_errors() {
        for bad in [
            &[][..],
            &[3, 0, 0],
            &[0, 1, 0],
            &[0, 5, 0, 0, b'a'],
            &[1, 0, 0, 0],
            &[1, 0, 0, 9, 0, b't'],
            &[2, 1],
            &[2, 0, 1, 0xff],
        ] {
            assert!(Serializer::V2.decode_server_binary(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Serializer::V1.decode_server_binary(&[2, 0, 0]), Err(DecodeError::BinaryNotSupported));
        for bad in [
            &br#"[null,"1","t","phx_reply",{}]"#[..],
            br#"[null,"1","t","phx_reply",{"status":1,"response":{}}]"#,
            br#"[null,"1","t","phx_reply",[]]"#,
        ] {
            assert!(Serializer::V2.decode_server_text(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let empty_refs = Serializer::V2.decode_server_binary(&[0, 0, 1, 1, b't', b'e', 9]).unwrap();
        assert_eq!(
            empty_refs,
            ServerMessage::Event(msg(None, None, "t", "e", Payload::Binary(Bytes::from_static(&[9]))))
        );
    }

    #[test]
    fn structs_come_from_objects_only() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct NewComment {
            content: String,
        }
        let err = p(json!(["hello"])).decode::<NewComment>().unwrap_err();
        assert_eq!(err.message(), "invalid type: sequence, expected a JSON object");
        assert_eq!(p(json!({"content": "hi"})).decode::<NewComment>().unwrap().content, "hi");
        // sequences are still fine where a sequence is wanted
        assert_eq!(p(json!([1, 2])).decode::<Vec<u8>>().unwrap(), [1, 2]);
        assert_eq!(p(json!([1, "a"])).decode::<(u8, String)>().unwrap(), (1, "a".to_owned()));
    }

    #[test]
    fn payload_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Inner,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            count: u32,
        }
        let err = p(json!({"inner": {"count": "many"}})).decode::<Outer>().unwrap_err();
        assert_eq!(err.path(), "inner.count");
        assert!(err.message().starts_with("invalid type: string \"many\""), "{}", err.message());
        let err = p(json!({})).decode::<Outer>().unwrap_err();
        assert_eq!(err.message(), "missing field `inner`");
        let bytes: Vec<u8> = Payload::Binary(Bytes::from_static(b"ab")).decode::<serde_bytes_like::Buf>().unwrap().0;
        assert_eq!(bytes, b"ab");
    }

    /// A minimal bytes-accepting type, so the test needs no extra crate.
    mod serde_bytes_like {
        pub struct Buf(pub Vec<u8>);
        impl<'de> serde::Deserialize<'de> for Buf {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Buf;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Buf, E> {
                        Ok(Buf(v.to_vec()))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}
