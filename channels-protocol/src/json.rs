//! The JSON serializers' shapes: V2's `[join_ref, ref, topic, event,
//! payload]` arrays and V1's `{"topic", "event", "payload", "ref"}`
//! objects, written by hand around a payload's JSON (so a payload is never
//! re-encoded) and read with serde.

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::event::PHX_REPLY;
use crate::frame::{frame_buffer, Frame};
use crate::message::{Message, Outgoing};
use crate::payload::Payload;

/// The fields every JSON frame has, with the null rules of §4/§5 applied.
pub(crate) struct Fields<'a> {
    pub(crate) join_ref: Option<&'a str>,
    pub(crate) msg_ref: Option<&'a str>,
    pub(crate) topic: &'a str,
    pub(crate) event: &'a str,
}

pub(crate) fn fields<'a>(out: &Outgoing<'a>) -> Fields<'a> {
    match *out {
        Outgoing::Reply { join_ref, msg_ref, topic, .. } => Fields { join_ref, msg_ref, topic, event: PHX_REPLY },
        Outgoing::Push { join_ref, topic, event, position, .. } => Fields { join_ref, msg_ref: position, topic, event },
        Outgoing::Broadcast { topic, event, position, .. } => {
            Fields { join_ref: None, msg_ref: position, topic, event }
        }
        Outgoing::Control { join_ref, topic, event, .. } => Fields { join_ref, msg_ref: join_ref, topic, event },
    }
}

/// Writes the JSON payload of a frame: replies wrap the response.
pub(crate) fn put_json_payload(buf: &mut BytesMut, out: &Outgoing<'_>, json: &RawValue) {
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

pub(crate) fn put_json_str(buf: &mut BytesMut, s: &str) {
    // A `&str` always serializes; writing into a Vec cannot fail.
    let mut writer = buf.writer();
    serde_json::to_writer(&mut writer, s).expect("a string always serializes to JSON");
}

pub(crate) fn put_json_opt(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_json_str(buf, s),
        None => buf.put_slice(b"null"),
    }
}

pub(crate) fn frame_capacity(f: &Fields<'_>, json: &RawValue) -> usize {
    // Room for the fields, the payload, punctuation and a reply wrapper.
    64 + f.join_ref.map_or(0, str::len)
        + f.msg_ref.map_or(0, str::len)
        + f.topic.len()
        + f.event.len()
        + json.get().len()
}

pub(crate) fn encode_v2(out: &Outgoing<'_>, json: &RawValue) -> Frame {
    let f = fields(out);
    let mut buf = frame_buffer(frame_capacity(&f, json));
    put_v2_fields(&mut buf, &f);
    put_json_payload(&mut buf, out, json);
    buf.put_u8(b']');
    Frame::text(buf)
}

/// `[join_ref,ref,"topic","event",` — a V2 frame up to its payload.
pub(crate) fn put_v2_fields(buf: &mut BytesMut, f: &Fields<'_>) {
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
pub(crate) fn put_v1_fields(buf: &mut BytesMut, f: &Fields<'_>) {
    buf.put_slice(b"{\"topic\":");
    put_json_str(buf, f.topic);
    buf.put_slice(b",\"event\":");
    put_json_str(buf, f.event);
    buf.put_slice(b",\"payload\":");
}

pub(crate) fn encode_v1(out: &Outgoing<'_>, json: &RawValue) -> Frame {
    let f = fields(out);
    let mut buf = frame_buffer(frame_capacity(&f, json));
    put_v1_fields(&mut buf, &f);
    put_json_payload(&mut buf, out, json);
    buf.put_slice(b",\"ref\":");
    put_json_opt(&mut buf, f.msg_ref);
    buf.put_u8(b'}');
    Frame::text(buf)
}

/// A V2 client frame: an array of at least five elements (extra ones are
/// ignored, as Phoenix does).
pub(crate) struct V2In(pub(crate) Message);

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
pub(crate) struct V1In {
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
pub(crate) fn required_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

impl V1In {
    pub(crate) fn into_message(self) -> Message {
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
pub(crate) struct ReplyBody {
    pub(crate) status: String,
    pub(crate) response: Box<RawValue>,
}
