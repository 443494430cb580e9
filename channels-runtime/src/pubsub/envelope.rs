//! The envelope a broadcast crosses between nodes in, whatever the broker:
//! binary and versioned, naming the sending node so no node is handed its
//! own broadcast back. Anyone who can publish on the broker reaches
//! [`decode`], so it checks everything (fuzzed: `fuzz/fuzz_targets/broker_envelope.rs`).
//!
//! `[1][node: 16][kind: 1][topic len: u32 LE][topic][event len: u32 LE][event][payload]`:
//! no escaping, and a binary payload crosses as it is.
//!
//! A broadcast of a topic whose history the broker keeps crosses as version
//! 2, with the connection it is not for (on the sending node) and the
//! position the broker gave it, which the broker writes in (a Lua script
//! puts `[position len: u8][position]` between the two halves a node sends):
//! `[2][node: 16][kind: 1][except: u64 LE][topic..][event..][position len: u8][position][payload]`.

use bytes::{BufMut, Bytes, BytesMut};

use super::BroadcastMessage;
use crate::outbox::ConnId;
use crate::protocol::{Payload, Position};

const ENVELOPE_V1: u8 = 1;
const ENVELOPE_V2: u8 = 2;
const JSON: u8 = 0;
const BINARY: u8 = 1;

/// A node's id on the broker: random at every start.
pub(crate) type NodeId = [u8; 16];

#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn node_id() -> NodeId {
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() {
        // No OS randomness: the pid and the time still tell nodes apart.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        id[..4].copy_from_slice(&std::process::id().to_le_bytes());
        id[4..].copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    id
}

/// Encodes a broadcast made on `node`.
pub(crate) fn encode(node: &NodeId, message: &BroadcastMessage) -> Bytes {
    let (kind, payload): (u8, &[u8]) = match &message.payload {
        Payload::Json(raw) => (JSON, raw.get().as_bytes()),
        Payload::Binary(bytes) => (BINARY, bytes),
    };
    let (topic, event) = (message.topic.as_bytes(), message.event.as_bytes());
    let mut out = BytesMut::with_capacity(26 + topic.len() + event.len() + payload.len());
    out.put_u8(ENVELOPE_V1);
    out.put_slice(node);
    out.put_u8(kind);
    put_field(&mut out, topic);
    put_field(&mut out, event);
    out.put_slice(payload);
    out.freeze()
}

fn put_field(out: &mut BytesMut, field: &[u8]) {
    // Topics and events are far below 4 GiB (frames are bounded long before).
    #[allow(clippy::cast_possible_truncation)]
    out.put_u32_le(field.len() as u32);
    out.put_slice(field);
}

/// A broadcast of a topic with history, as a node hands it to the broker:
/// the envelope up to the position (`head`) and after it (`payload`).
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn encode_kept(node: &NodeId, message: &BroadcastMessage, except: Option<ConnId>) -> (Bytes, Bytes) {
    let (kind, payload) = match &message.payload {
        Payload::Json(raw) => (JSON, Bytes::copy_from_slice(raw.get().as_bytes())),
        Payload::Binary(bytes) => (BINARY, bytes.clone()),
    };
    let (topic, event) = (message.topic.as_bytes(), message.event.as_bytes());
    let mut head = BytesMut::with_capacity(34 + topic.len() + event.len());
    head.put_u8(ENVELOPE_V2);
    head.put_slice(node);
    head.put_u8(kind);
    head.put_u64_le(except.map_or(0, ConnId::get));
    put_field(&mut head, topic);
    put_field(&mut head, event);
    (head.freeze(), payload)
}

/// The whole version 2 envelope, as the broker makes it (for tests, and for
/// engines that put the position in themselves).
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn with_position(head: &[u8], position: &str, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(head.len() + 1 + position.len() + payload.len());
    out.put_slice(head);
    // Positions are at most 64 bytes (epoch, colon, offset).
    #[allow(clippy::cast_possible_truncation)]
    out.put_u8(position.len().min(255) as u8);
    out.put_slice(&position.as_bytes()[..position.len().min(255)]);
    out.put_slice(payload);
    out.freeze()
}

/// What a broker message is: a broadcast of another node, or one of a
/// topic with history (from any node: this one's too), with its position
/// and, when it was sent here, the connection it is not for.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Plain(BroadcastMessage),
    Kept { message: BroadcastMessage, position: Position, except: Option<ConnId> },
}

/// Decodes either version: `None` for this node's own plain broadcasts.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn decode_any(bytes: &[u8], me: &NodeId) -> Result<Option<Decoded>, EnvelopeError> {
    if bytes.first() != Some(&ENVELOPE_V2) {
        return Ok(decode(bytes, me)?.map(Decoded::Plain));
    }
    let rest = &bytes[1..];
    let (node, rest) = rest.split_at_checked(16).ok_or(EnvelopeError::Truncated)?;
    let (&kind, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
    let (except, rest) = rest.split_at_checked(8).ok_or(EnvelopeError::Truncated)?;
    let except = u64::from_le_bytes(except.try_into().map_err(|_| EnvelopeError::Truncated)?);
    let (topic, rest) = field(rest)?;
    let (event, rest) = field(rest)?;
    let (&len, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
    let (position, payload) = rest.split_at_checked(usize::from(len)).ok_or(EnvelopeError::Truncated)?;
    let position = std::str::from_utf8(position).map_err(|_| EnvelopeError::NotUtf8)?;
    let position: Position = position.parse().map_err(|_| EnvelopeError::Position)?;
    let payload = payload_of(kind, payload)?;
    // The connection is this node's, if this node sent it.
    let except = (node == me && except != 0).then(|| ConnId::from_raw(except));
    let message = BroadcastMessage { topic: topic.to_owned(), event: event.to_owned(), payload };
    Ok(Some(Decoded::Kept { message, position, except }))
}

fn payload_of(kind: u8, payload: &[u8]) -> Result<Payload, EnvelopeError> {
    match kind {
        JSON => {
            let text = std::str::from_utf8(payload).map_err(|_| EnvelopeError::NotUtf8)?;
            // Checked: whatever is on the broker reaches clients as JSON.
            let raw: Box<serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|e| EnvelopeError::Json(e.to_string()))?;
            Ok(Payload::Json(raw))
        }
        BINARY => Ok(Payload::Binary(Bytes::copy_from_slice(payload))),
        other => Err(EnvelopeError::Kind(other)),
    }
}

/// Why a message on a broker channel was not a broadcast.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("truncated envelope")]
    Truncated,
    #[error("topic or event is not UTF-8")]
    NotUtf8,
    #[error("unknown payload kind {0}")]
    Kind(u8),
    #[error("JSON payload is not valid JSON: {0}")]
    Json(String),
    #[error("the position is not a position")]
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    Position,
}

/// Decodes an envelope; `None` for this node's own broadcasts.
pub(crate) fn decode(bytes: &[u8], me: &NodeId) -> Result<Option<BroadcastMessage>, EnvelopeError> {
    let (&version, rest) = bytes.split_first().ok_or(EnvelopeError::Truncated)?;
    if version != ENVELOPE_V1 {
        return Err(EnvelopeError::Version(version));
    }
    let (node, rest) = rest.split_at_checked(16).ok_or(EnvelopeError::Truncated)?;
    if node == me {
        return Ok(None);
    }
    let (&kind, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
    let (topic, rest) = field(rest)?;
    let (event, payload) = field(rest)?;
    let payload = payload_of(kind, payload)?;
    Ok(Some(BroadcastMessage { topic: topic.to_owned(), event: event.to_owned(), payload }))
}

fn field(bytes: &[u8]) -> Result<(&str, &[u8]), EnvelopeError> {
    let (len, rest) = bytes.split_at_checked(4).ok_or(EnvelopeError::Truncated)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (text, rest) = rest.split_at_checked(len).ok_or(EnvelopeError::Truncated)?;
    Ok((std::str::from_utf8(text).map_err(|_| EnvelopeError::NotUtf8)?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_round_trip_and_skip_our_own() {
        let (me, other) = ([1u8; 16], [2u8; 16]);
        for payload in [Payload::from(json!({"a": [1, "b"]})), Payload::Binary(vec![0, 255, 7].into())] {
            let message = BroadcastMessage { topic: "t:ü".into(), event: "e".into(), payload };
            let bytes = encode(&me, &message);
            assert_eq!(decode(&bytes, &other).unwrap(), Some(message));
            assert_eq!(decode(&bytes, &me).unwrap(), None);
            for cut in 0..bytes.len().min(30) {
                assert!(decode(&bytes[..cut], &other).is_err() || cut >= 26, "cut at {cut}");
            }
        }
        assert_eq!(decode(b"", &me), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"{\"json\":1}", &me), Err(EnvelopeError::Version(b'{')));
        let mut bad =
            encode(&other, &BroadcastMessage { topic: "t".into(), event: "e".into(), payload: json!(1).into() })
                .to_vec();
        *bad.last_mut().unwrap() = b'x';
        assert!(matches!(decode(&bad, &me), Err(EnvelopeError::Json(_))));
    }

    #[test]
    fn kept_envelopes_carry_a_position_and_reach_their_own_node() {
        let (me, other) = ([1u8; 16], [2u8; 16]);
        let message = BroadcastMessage { topic: "t".into(), event: "e".into(), payload: json!({"a": 1}).into() };
        let except = ConnId::unique();
        let (head, payload) = encode_kept(&me, &message, Some(except));
        let bytes = with_position(&head, "ep:42", &payload);
        let position = Position::new("ep", 42).unwrap();
        assert_eq!(
            decode_any(&bytes, &me).unwrap(),
            Some(Decoded::Kept { message: message.clone(), position: position.clone(), except: Some(except) })
        );
        assert_eq!(
            decode_any(&bytes, &other).unwrap(),
            Some(Decoded::Kept { message: message.clone(), position, except: None })
        );
        for cut in 0..bytes.len() {
            assert!(decode_any(&bytes[..cut], &other).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_any(&with_position(&head, "not one", &payload), &other), Err(EnvelopeError::Position));
        // version 1 still decodes, this node's own skipped
        assert_eq!(decode_any(&encode(&me, &message), &me).unwrap(), None);
        assert_eq!(decode_any(&encode(&me, &message), &other).unwrap(), Some(Decoded::Plain(message)));
    }
}
