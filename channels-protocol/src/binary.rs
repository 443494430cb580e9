//! V2's binary frames: a kind byte, one length byte per header field, the
//! fields, then the payload's bytes.

use bytes::{BufMut, Bytes};

use crate::error::{DecodeError, EncodeError};
use crate::frame::{frame_buffer, Frame};
use crate::json::fields;
use crate::message::Outgoing;
use crate::payload::Payload;

pub(crate) fn len_byte(field: &'static str, s: &str) -> Result<u8, EncodeError> {
    u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { field, len: s.len() })
}

pub(crate) fn encode_binary(out: &Outgoing<'_>, payload: &Bytes) -> Result<Frame, EncodeError> {
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

/// An empty binary header field means "none" (phoenix.js writes `null`
/// refs as empty strings).
pub(crate) fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Reads a V2 binary frame: a kind byte, then one length byte per header
/// field, then the fields, then the payload.
pub(crate) struct BinaryFields<'a> {
    pub(crate) kind: u8,
    pub(crate) lens: &'a [u8],
    pub(crate) rest: &'a [u8],
}

impl<'a> BinaryFields<'a> {
    /// `header` is the kind byte plus the length bytes.
    pub(crate) fn new(frame: &'a [u8], header: usize) -> Result<Self, DecodeError> {
        let (head, rest) = match (frame.get(..header), frame.get(header..)) {
            (Some(head), Some(rest)) => (head, rest),
            _ => return Err(DecodeError::Binary("shorter than its header")),
        };
        let (kind, lens) = head.split_first().ok_or(DecodeError::Binary("shorter than its header"))?;
        Ok(BinaryFields { kind: *kind, lens, rest })
    }

    /// The next header field; `past_end` names it when the frame is too short.
    pub(crate) fn next(&mut self, past_end: &'static str) -> Result<String, DecodeError> {
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
    pub(crate) fn payload(self) -> Payload {
        Payload::Binary(Bytes::copy_from_slice(self.rest))
    }
}
