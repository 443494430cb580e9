//! The fuzz harnesses: one function per decoder a peer reaches.
//!
//! Each takes arbitrary bytes, runs them through the runtime's public
//! decoders exactly as a connection would, and checks properties that must
//! hold for every input (decoding never panics; what decodes re-encodes into
//! a frame that decodes back to the same message). A failed property panics,
//! which libFuzzer reports as a crash.
//!
//! The same file is compiled into `channels-runtime/tests/fuzz_corpus.rs`
//! (through `#[path]`), which replays `fuzz/corpus/` and `fuzz/regressions/`
//! on stable Rust in the normal test run.

#![allow(clippy::missing_panics_doc)]

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use phx_channels_runtime::connect::Params;
use phx_channels_runtime::protocol::{Frame, Message, Outgoing, Payload, Serializer};
use phx_channels_runtime::router::{route, Topic, TopicPattern};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

#[path = "ws_frames.rs"]
pub mod ws_frames;
pub use ws_frames::ws_frames;

/// A harness: arbitrary bytes in, a panic on a broken property.
pub type Harness = fn(&[u8]);

/// Every harness, by target name (the names of `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: &[(&str, Harness)] = &[
    ("decode_v2_text", decode_v2_text),
    ("decode_v1_text", decode_v1_text),
    ("decode_v2_binary", decode_v2_binary),
    ("params_query", params_query),
    ("topic_pattern", topic_pattern),
    ("payload_decode", payload_decode),
    ("longpoll_body", longpoll_body),
    ("ws_frames", ws_frames),
    ("broker_envelope", broker_envelope),
    ("presence_gossip", presence_gossip),
];

/// A broadcast envelope from another node, as the broker hands it over.
pub fn broker_envelope(data: &[u8]) {
    phx_channels_runtime::__fuzz::broker_envelope(data);
}

/// Presence gossip from another node.
pub fn presence_gossip(data: &[u8]) {
    phx_channels_runtime::__fuzz::presence_gossip(data);
}

fn text(frame: &Frame) -> &str {
    frame.as_text().expect("a JSON payload encodes to a text frame")
}

/// What a decoded message must survive: its payload decodes into a JSON
/// value when it is JSON, and every frame the server could build from its
/// fields (reply, push, broadcast, control) is valid JSON of the right shape.
fn check_message(serializer: Serializer, msg: &Message) {
    if let Payload::Json(raw) = &msg.payload {
        // RawValue accepts what a Value may not hold (`1e400` is out of
        // range for f64), so the payload decodes exactly when serde_json
        // itself decodes the text.
        let value: Result<Value, _> = msg.payload.decode();
        let direct: Result<Value, _> = serde_json::from_str(raw.get());
        match (value, direct) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("Payload::decode {a:?} but serde_json {b:?} for {:?}", raw.get()),
        }
    }
    let outs = [
        Outgoing::Reply {
            join_ref: msg.join_ref.as_deref(),
            msg_ref: msg.msg_ref.as_deref(),
            topic: &msg.topic,
            status: "ok",
            response: &msg.payload,
        },
        Outgoing::Push {
            join_ref: msg.join_ref.as_deref(),
            topic: &msg.topic,
            event: &msg.event,
            payload: &msg.payload,
            position: None,
        },
        Outgoing::Broadcast { topic: &msg.topic, event: &msg.event, payload: &msg.payload, position: None },
        Outgoing::Control {
            join_ref: msg.join_ref.as_deref(),
            topic: &msg.topic,
            event: "phx_error",
            payload: &msg.payload,
        },
    ];
    for out in &outs {
        match (serializer.encode(out), &msg.payload) {
            (Ok(frame), Payload::Json(_)) => {
                // Raw values: the payload may hold numbers no Value holds.
                let string = |raw: &RawValue| serde_json::from_str::<String>(raw.get()).ok();
                match serializer {
                    Serializer::V2 => {
                        let arr: Vec<&RawValue> = serde_json::from_str(text(&frame))
                            .unwrap_or_else(|e| panic!("server frame is not a JSON array ({e}): {frame:?}"));
                        assert_eq!(arr.len(), 5, "{frame:?}");
                        assert_eq!(string(arr[2]).as_deref(), Some(msg.topic.as_str()), "{frame:?}");
                    }
                    Serializer::V1 => {
                        let obj: HashMap<String, &RawValue> = serde_json::from_str(text(&frame))
                            .unwrap_or_else(|e| panic!("server frame is not a JSON object ({e}): {frame:?}"));
                        assert_eq!(obj.get("topic").and_then(|t| string(t)).as_deref(), Some(msg.topic.as_str()));
                        assert!(obj.contains_key("ref"), "{frame:?}");
                    }
                }
            }
            (Ok(frame), Payload::Binary(bytes)) => {
                assert_eq!(serializer, Serializer::V2);
                assert!(frame.as_text().is_none());
                assert!(frame.as_bytes().ends_with(bytes), "binary frame ends with its payload");
            }
            (Err(e), Payload::Json(_)) => panic!("a JSON payload must always encode: {e}"),
            (Err(_), Payload::Binary(_)) => {
                // V1, or a field over 255 bytes (a JSON-decoded topic can be).
            }
        }
    }
    // A broadcast of the message decodes back, on the same serializer, to
    // the same topic, event and payload (server frames are client-shaped in
    // JSON: V2 arrays and V1 objects with "ref").
    if let Payload::Json(_) = msg.payload {
        let bc = Outgoing::Broadcast { topic: &msg.topic, event: &msg.event, payload: &msg.payload, position: None };
        let frame = serializer.encode(&bc).expect("JSON always encodes");
        let back = serializer
            .decode_text(frame.as_bytes())
            .unwrap_or_else(|e| panic!("re-encoded frame does not decode ({e}): {frame:?}"));
        assert_eq!((&back.topic, &back.event, &back.payload), (&msg.topic, &msg.event, &msg.payload));
        assert_eq!((back.join_ref, back.msg_ref), (None, None));
    }
}

/// A V2 text frame, as a WebSocket text message or a LongPoll line.
pub fn decode_v2_text(data: &[u8]) {
    if let Ok(msg) = Serializer::V2.decode_text(data) {
        check_message(Serializer::V2, &msg);
    }
}

/// A V1 text frame.
pub fn decode_v1_text(data: &[u8]) {
    if let Ok(msg) = Serializer::V1.decode_text(data) {
        check_message(Serializer::V1, &msg);
    }
}

/// A V2 binary frame (and the same bytes on a V1 connection, always refused).
pub fn decode_v2_binary(data: &[u8]) {
    assert!(Serializer::V1.decode_binary(data).is_err());
    if let Ok(msg) = Serializer::V2.decode_binary(data) {
        // Header fields come from one length byte each.
        for s in [msg.join_ref.as_deref().unwrap_or(""), msg.msg_ref.as_deref().unwrap_or(""), &msg.topic, &msg.event] {
            assert!(s.len() <= 255);
        }
        let Payload::Binary(bytes) = &msg.payload else { panic!("a binary frame has a binary payload") };
        let header: usize = data[1..5].iter().map(|b| usize::from(*b)).sum();
        assert_eq!(bytes.len(), data.len() - 5 - header);
        check_message(Serializer::V2, &msg);
    }
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Auth {
    token: Option<String>,
    user_id: Option<String>,
    vsn: Option<String>,
}

/// A connect query string (WebSocket upgrade and LongPoll URLs).
pub fn params_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let params = Params::from_query(&query);
    let mut seen = HashMap::new();
    for (k, v) in params.iter() {
        assert!(seen.insert(k.to_owned(), v.to_owned()).is_none(), "duplicate key {k:?}");
        assert_eq!(params.get(k), Some(v));
    }
    assert_eq!(params.is_empty(), seen.is_empty());
    let map: HashMap<String, String> = params.decode().expect("string pairs decode into a map");
    assert_eq!(map, seen);
    let _ = params.decode::<Auth>();
    let _ = Serializer::negotiate(params.get("vsn"));
    // Re-parsing is stable on the decoded pairs re-encoded without special
    // characters: keys and values with no `&`, `=`, `+`, `%` survive as is.
    let plain: Vec<_> =
        params.iter().filter(|(k, v)| [*k, *v].iter().all(|s| !s.contains(['&', '=', '+', '%']))).collect();
    let again: String = plain.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let reparsed = Params::from_query(&again);
    for (k, v) in plain {
        if !k.is_empty() {
            assert_eq!(reparsed.get(k), Some(v), "{again:?}");
        }
    }
}

/// A topic pattern and a topic: `check`, then (when valid) `new`, `matches`,
/// `rest`, `Topic::new`, `route` and `is_shadowed_by`, against a model.
pub fn topic_pattern(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, topic) = text.split_once('\n').unwrap_or((&text, ""));
    let checked = TopicPattern::check(pattern);
    let bytes = pattern.as_bytes();
    let model = match bytes.split_last() {
        None => None,
        Some((last, init)) => (!init.contains(&b'*')).then_some(*last == b'*'),
    };
    assert_eq!(checked.ok(), model, "{pattern:?}");
    let Ok(wildcard) = checked else { return };
    // `new` wants a `&'static str` (route tables are consts). Leak the
    // pattern for the duration of the checks and take it back after, so a
    // long fuzzing run does not grow.
    let leaked: &'static mut str = Box::leak(pattern.to_owned().into_boxed_str());
    let raw: *mut str = leaked;
    {
        let p = TopicPattern::new(leaked);
        assert_eq!(p.is_wildcard(), wildcard);
        assert_eq!(p.as_str(), pattern);
        let prefix = if wildcard { pattern.strip_suffix('*').expect("a wildcard ends in `*`") } else { pattern };
        assert_eq!(p.prefix(), prefix);
        let expected = if wildcard { topic.starts_with(prefix) } else { topic == pattern };
        assert_eq!(p.matches(topic), expected, "{pattern:?} {topic:?}");
        match p.rest(topic) {
            Some(rest) => {
                assert!(expected);
                assert_eq!(format!("{prefix}{rest}"), topic);
            }
            None => assert!(!expected),
        }
        let t = Topic::new(topic, &p);
        assert_eq!(t.as_str(), topic);
        assert_eq!(t.rest(), p.rest(topic).unwrap_or(topic));
        let table = [(TopicPattern::new("exact"), 0), (p, 1), (TopicPattern::new("*"), 2)];
        let hit = route(&table, topic).map(|r| r.1).expect("`*` matches everything");
        assert_eq!(hit == 1, topic != "exact" && expected);
        // Shadowing is sound: a shadowed pattern matches nothing its
        // shadower does not.
        for other in [TopicPattern::new("exact"), TopicPattern::new("*"), TopicPattern::new("a:*")] {
            if p.is_shadowed_by(&other) && p.matches(topic) {
                assert!(other.matches(topic), "{pattern:?} shadowed by {other} yet {topic:?}");
            }
        }
        if let Ok(true) = TopicPattern::check(topic) {
            // Both patterns ride along: the topic as a second pattern.
            let second: &'static mut str = Box::leak(topic.to_owned().into_boxed_str());
            let second_raw: *mut str = second;
            {
                let q = TopicPattern::new(second);
                if q.is_shadowed_by(&p) {
                    assert!(q.prefix().starts_with(p.prefix()) && p.is_wildcard() || q == p);
                }
            }
            // SAFETY: `second` came from `Box::leak` above and every borrow
            // of it (inside `q`) ended with the block.
            unsafe { drop(Box::from_raw(second_raw)) };
        }
    }
    // SAFETY: `leaked` came from `Box::leak` above; `p`, `table` and `t`
    // borrowed it only inside the block, which has ended.
    unsafe { drop(Box::from_raw(raw)) };
}

/// Whether `message` ends like serde_json's "... at line 1 column 14".
fn ends_with_position(message: &str) -> bool {
    let Some((head, column)) = message.rsplit_once(" column ") else { return false };
    let Some((_, line)) = head.rsplit_once(" at line ") else { return false };
    [line, column].iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct NewComment {
    content: String,
    count: Option<u32>,
    tags: Vec<String>,
    nested: Option<Inner>,
    kind: Option<Kind>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Inner {
    x: f64,
    y: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Kind {
    Plain,
    Tagged { id: u64 },
}

/// `Payload::decode` into a JSON value and into a small struct, for a JSON
/// payload (when the bytes are JSON) and for a binary one.
pub fn payload_decode(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(raw) = RawValue::from_string(text.to_owned()) {
            let payload = Payload::Json(raw);
            let value = payload.decode::<Value>();
            let direct = serde_json::from_str::<Value>(text);
            assert_eq!(value.is_ok(), direct.is_ok(), "{text:?}");
            if let Err(e) = payload.decode::<NewComment>() {
                assert!(!e.path().is_empty());
                assert!(!ends_with_position(e.message()), "positions are stripped: {}", e.message());
            }
            let _ = payload.decode::<Vec<u8>>();
            let _ = payload.decode::<String>();
            let _ = payload.decode::<HashMap<String, Value>>();
            // A struct never decodes from an array.
            if text.trim_start().starts_with('[') {
                assert!(payload.decode::<Inner>().is_err());
            }
        }
    }
    let binary = Payload::Binary(bytes::Bytes::copy_from_slice(data));
    let _ = binary.decode::<Value>();
    let _ = binary.decode::<NewComment>();
    let _ = binary.decode::<String>();
    let _ = binary.decode::<Vec<u8>>();
}

/// A LongPoll POST body, split as the transport splits an
/// `application/x-ndjson` body (one frame per line, `\r\n` allowed, empty
/// lines skipped); each line is a JSON frame (first byte `[` or `{`) or a
/// base64 binary frame, decoded with both serializers. The whole body is
/// also tried as one frame (a plain `application/json` POST).
pub fn longpoll_body(data: &[u8]) {
    let lines = data.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).filter(|l| !l.is_empty());
    for line in lines.chain(std::iter::once(data)) {
        for serializer in Serializer::ALL {
            if line.first() == Some(&b'[') || line.first() == Some(&b'{') {
                if let Ok(msg) = serializer.decode_text(line) {
                    check_message(serializer, &msg);
                }
            } else if let Ok(bytes) = STANDARD.decode(line) {
                if let Ok(msg) = serializer.decode_binary(&bytes) {
                    check_message(serializer, &msg);
                }
            }
        }
    }
}
