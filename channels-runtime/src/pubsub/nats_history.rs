//! History on NATS: a JetStream stream per topic with history.
//!
//! - **One stream per topic**, capturing the subject `{ns}.h.{topic}`: the
//!   stream's sequence is the topic's offset (consecutive: 1, 2, 3…), its
//!   creation time its epoch, and its first and last sequence tell exactly
//!   what is kept, even once every message aged out. (One stream over all
//!   topics' subjects numbers their messages together, so a topic's offsets
//!   skip, and once a quiet topic's messages have all aged out nothing tells
//!   whether a client missed any: every rejoin on it would be "not
//!   recovered".)
//! - **Trimmed at JetStream**: `max_msgs` = the history's size, `max_age` =
//!   its age, discarding the oldest.
//! - **Live, in order**: the stream republishes every message it stores to
//!   `{ns}.r.{topic}` (JetStream's RePublish, NATS ≥ 2.9), with its
//!   sequence in `Nats-Sequence`; a node subscribed to that subject (core
//!   NATS, by interest) gets the topic's broadcasts in the stream's order.
//! - **Read back** with an ephemeral pull consumer from the asked offset.
//!
//! A message's data is the broadcast's envelope without its position:
//! `[head length: u32 LE][head][payload]`; a node writes the position in
//! when it hands the message on.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;

use super::envelope::with_position;
use super::history::base62;
use super::kept::{HistoryUnavailable, ReadHistory};
use super::History;
use crate::protocol::{Payload, Position};

/// Where a stream's messages are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HistoryStorage {
    /// On disk: the history survives a restart of the server.
    #[default]
    File,
    /// In memory: lighter, lost with the server.
    Memory,
}

/// How long a read waits for the messages it asked for.
const READ_WAIT: Duration = Duration::from_secs(5);

/// The subject a topic's broadcasts are published to (the channel the
/// broker core knows the topic by), from its namespace and topic tokens.
pub(crate) fn kept_subject(namespace: &str, topic: &str) -> String {
    format!("{}.h.{}", super::nats::token(namespace), super::nats::token(topic))
}

/// The subject a topic's stream republishes to.
pub(crate) fn live_subject(kept_subject: &str) -> String {
    kept_subject.replacen(".h.", ".r.", 1)
}

/// The stream of a topic's subject: a readable prefix and a hash (stream
/// names keep to letters, digits, `-` and `_`).
pub(crate) fn stream_name(kept_subject: &str) -> String {
    let readable: String =
        kept_subject.chars().take(48).map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let hash =
        kept_subject.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("PHX_{readable}_{hash:016x}")
}

/// The stream of a topic, as this engine makes it.
pub(crate) fn stream_config(kept_subject: &str, history: &History, storage: HistoryStorage) -> stream::Config {
    stream::Config {
        name: stream_name(kept_subject),
        description: Some(format!("phx-channels history of {kept_subject}")),
        subjects: vec![kept_subject.to_owned()],
        max_messages: i64::try_from(history.size()).unwrap_or(i64::MAX),
        max_age: history.age(),
        discard: stream::DiscardPolicy::Old,
        storage: match storage {
            HistoryStorage::File => stream::StorageType::File,
            HistoryStorage::Memory => stream::StorageType::Memory,
        },
        num_replicas: 1,
        republish: Some(stream::Republish {
            source: kept_subject.to_owned(),
            destination: live_subject(kept_subject),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// The stream of a topic (made if missing), and its epoch.
pub(crate) async fn ensure(
    js: &jetstream::Context,
    kept_subject: &str,
    history: &History,
    storage: HistoryStorage,
) -> Result<(stream::Stream, String), String> {
    let mut stream = js
        .get_or_create_stream(stream_config(kept_subject, history, storage))
        .await
        .map_err(|e| format!("the topic's JetStream stream: {e}"))?;
    let epoch = epoch_of(stream.info().await.map_err(|e| format!("the topic's JetStream stream: {e}"))?);
    Ok((stream, epoch))
}

/// A stream's epoch: its creation time (a stream made again, after the
/// server lost it, has another).
fn epoch_of(info: &stream::Info) -> String {
    // Two's complement of the nanoseconds: unique per creation, and short.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let nanos = info.created.unix_timestamp_nanos() as u64;
    base62(nanos)
}

/// A message's data: the envelope around where the position goes.
pub(crate) fn data(head: &[u8], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + head.len() + payload.len());
    // Heads are far below 4 GiB (a topic and an event).
    #[allow(clippy::cast_possible_truncation)]
    out.put_u32_le(head.len() as u32);
    out.put_slice(head);
    out.put_slice(payload);
    out.freeze()
}

/// The head and payload of a message's data.
fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_at_checked(4)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    rest.split_at_checked(len)
}

/// The envelope, position written in, of a message the stream
/// republished: `None` for anything else.
pub(crate) fn republished(epoch: &str, message: &async_nats::Message) -> Option<Bytes> {
    let sequence = message.headers.as_ref()?.get("Nats-Sequence")?.as_str().parse::<u64>().ok()?;
    let (head, payload) = split(&message.payload)?;
    Some(with_position(head, &format!("{epoch}:{sequence}"), payload))
}

/// Reads a topic's stream: its epoch and last offset, and the messages
/// after `after` if they are all kept.
pub(crate) async fn read(
    js: &jetstream::Context,
    kept_subject: &str,
    history: &History,
    storage: HistoryStorage,
    after: Option<&Position>,
) -> Result<ReadHistory, HistoryUnavailable> {
    let (stream, epoch) = ensure(js, kept_subject, history, storage).await.map_err(HistoryUnavailable)?;
    let state = &stream.cached_info().state;
    let (first, top) = (state.first_sequence, state.last_sequence);
    let mut messages = Vec::new();
    let from = match after {
        Some(after) if after.epoch() == epoch && after.offset() < top && after.offset() + 1 >= first => {
            after.offset() + 1
        }
        _ => return Ok(ReadHistory { epoch, top, messages }),
    };
    let wanted = usize::try_from(top - from + 1).unwrap_or(usize::MAX).min(history.size());
    let from = top + 1 - wanted as u64;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .map_err(|e| HistoryUnavailable(format!("a consumer of the topic's stream: {e}")))?;
    let mut batch = consumer
        .fetch()
        .max_messages(wanted)
        .expires(READ_WAIT)
        .messages()
        .await
        .map_err(|e| HistoryUnavailable(format!("reading the topic's stream: {e}")))?;
    while let Some(message) = batch.next().await {
        let message = message.map_err(|e| HistoryUnavailable(format!("reading the topic's stream: {e}")))?;
        let sequence = message.info().map_err(|e| HistoryUnavailable(e.to_string()))?.stream_sequence;
        let Some((head, payload)) = split(&message.payload) else { continue };
        let Some((event, payload)) = event_and_payload(head, payload) else { continue };
        messages.push((sequence, event, payload));
        if sequence >= top {
            break;
        }
    }
    Ok(ReadHistory { epoch, top, messages })
}

/// The event and payload of an envelope head and payload (version 2).
fn event_and_payload(head: &[u8], payload: &[u8]) -> Option<(String, Payload)> {
    // [2][node: 16][kind][except: 8][topic len: 4][topic][event len: 4][event]
    let kind = *head.get(17)?;
    let rest = head.get(26..)?;
    let (len, rest) = rest.split_at_checked(4)?;
    let rest = rest.get(u32::from_le_bytes(len.try_into().ok()?) as usize..)?;
    let (len, rest) = rest.split_at_checked(4)?;
    let event = rest.get(..u32::from_le_bytes(len.try_into().ok()?) as usize)?;
    let event = std::str::from_utf8(event).ok()?.to_owned();
    let payload = match kind {
        1 => Payload::Binary(Bytes::copy_from_slice(payload)),
        _ => Payload::Json(serde_json::value::RawValue::from_string(String::from_utf8(payload.to_vec()).ok()?).ok()?),
    };
    Some((event, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::ConnId;
    use crate::pubsub::envelope::encode_kept;
    use crate::pubsub::BroadcastMessage;

    #[test]
    fn names_are_safe_and_distinct() {
        let a = kept_subject("channels", "comments:1");
        assert_eq!(a, "channels.h.comments:1");
        assert_eq!(live_subject(&a), "channels.r.comments:1");
        let name = stream_name(&a);
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{name}");
        assert_ne!(name, stream_name(&kept_subject("channels", "comments:2")));
        assert_ne!(stream_name(&kept_subject("channels", "a.b")), stream_name(&kept_subject("channels", "a_b")));
        let long = kept_subject("channels", &"x".repeat(1000));
        assert!(stream_name(&long).len() < 80);
    }

    #[test]
    fn data_holds_the_envelope_around_the_position() {
        let message =
            BroadcastMessage { topic: "t".into(), event: "new".into(), payload: serde_json::json!({"n": 1}).into() };
        let (head, payload) = encode_kept(&[3; 16], &message, Some(ConnId::unique()));
        let data = data(&head, &payload);
        let (h, p) = split(&data).unwrap();
        assert_eq!((h, p), (&head[..], &payload[..]));
        assert_eq!(event_and_payload(h, p), Some(("new".to_owned(), message.payload.clone())));
        assert!(split(&data[..3]).is_none());
        assert!(event_and_payload(&head[..20], p).is_none());
    }
}
