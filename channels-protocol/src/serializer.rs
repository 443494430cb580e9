//! The serializers (V1, V2 and V2's binary frames), negotiated from `vsn`,
//! in both directions: what a server decodes and encodes, and what a
//! client encodes and decodes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::binary::{encode_binary, len_byte, non_empty, BinaryFields};
use crate::error::{DecodeError, EncodeError};
use crate::event::PHX_REPLY;
use crate::frame::Frame;
use crate::json::{
    encode_v1, encode_v2, frame_capacity, put_json_opt, put_v1_fields, put_v2_fields, Fields, ReplyBody, V1In, V2In,
};
use crate::message::{ClientFrame, Message, Outgoing, ServerMessage, ServerReply};
use crate::payload::Payload;

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
    /// use phx_channels_protocol::{Serializer, ServerMessage};
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
    /// use phx_channels_protocol::{Payload, Serializer, ServerMessage};
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
    /// use phx_channels_protocol::{ClientFrame, Message, Payload, Serializer};
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
