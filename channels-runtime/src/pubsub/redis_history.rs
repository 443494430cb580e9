//! History on Redis (standalone and Cluster): a Redis Stream per topic, and
//! beside it a hash with the stream's epoch and last offset, written by one
//! Lua script per broadcast so that the offset, the stream entry and the
//! publish to the topic's channel happen at once, in one order for every
//! node (Centrifugo's Redis engine does the same).
//!
//! - The stream's entries are `<offset>-0` (so a read from an offset is an
//!   `XRANGE`), with the event, the payload, its kind and Redis's time.
//! - Trimming happens at Redis: `XADD … MAXLEN size` by count, and the
//!   entries older than the history's age are dropped from the front (and
//!   the whole stream expires an age after its last broadcast). The hash
//!   outlives it (a day after the last broadcast or read), so a client back
//!   on a quiet topic still finds its epoch.
//! - The epoch is made by the node that finds the hash missing (a first
//!   broadcast, or Redis lost its data): one it never used before.
//! - On Redis Cluster both keys carry a hash tag that puts them on the
//!   slot of the topic's sharded channel, so the script runs, and
//!   `SPUBLISH`es, on the master that owns both.

use std::sync::OnceLock;

use bytes::Bytes;
use redis::Value;

use super::kept::{HistoryUnavailable, ReadHistory};
use super::History;
use crate::protocol::{Payload, Position};

/// The scripts' opening: the stream's epoch, made from `ARGV[$n]` (and the
/// stream emptied) when the meta hash is missing (a first broadcast, or
/// Redis lost its data); and Redis's time in ms.
macro_rules! lua_epoch_and_time {
    ($n:literal) => {
        concat!(
            "local stream, meta = KEYS[1], KEYS[2]\n",
            "local epoch = redis.call('HGET', meta, 'e')\n",
            "if not epoch then\n",
            "  epoch = ARGV[",
            $n,
            "]\n",
            "  redis.call('HSET', meta, 'e', epoch, 's', 0)\n",
            "  redis.call('DEL', stream)\n",
            "end\n",
            "local now = redis.call('TIME')\n",
            "local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)\n",
        )
    };
}

/// Drops the entries older than `age` ms from the stream's front, at most
/// 100 a run (the rest by the next runs).
macro_rules! lua_trim_by_age {
    () => {
        r#"for _ = 1, 100 do
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first == 0 then break end
  local fields, t = first[1][2], nil
  for i = 1, #fields, 2 do if fields[i] == 't' then t = tonumber(fields[i + 1]) end end
  if t == nil or ms - t <= age then break end
  redis.call('XDEL', stream, first[1][1])
end
"#
    };
}

/// Gives a broadcast its offset, keeps it, and publishes its envelope with
/// the position written in. At most 100 entries are dropped for their age
/// per run (the rest by the next runs); the hash is kept a day
/// (`EXPIRE 86400`) after the topic's last broadcast or read.
///
/// KEYS: stream, meta. ARGV: channel, envelope head, payload, event, kind,
/// size, age (ms), epoch if none, publish command.
pub(crate) const PUBLISH: &str = concat!(
    lua_epoch_and_time!(8),
    r#"local offset = redis.call('HINCRBY', meta, 's', 1)
redis.call('XADD', stream, 'MAXLEN', ARGV[6], offset .. '-0', 'e', ARGV[4], 'k', ARGV[5], 'd', ARGV[3], 't', ms)
local age = tonumber(ARGV[7])
"#,
    lua_trim_by_age!(),
    r#"redis.call('PEXPIRE', stream, age + 1000)
redis.call('EXPIRE', meta, 86400)
local position = epoch .. ':' .. offset
redis.call(ARGV[9], ARGV[1], ARGV[2] .. string.char(#position) .. position .. ARGV[3])
return {offset, epoch}
"#
);

/// Reads a topic's stream: its epoch, its last offset, and the entries
/// after an offset of that epoch (when asked), dropping the ones too old.
///
/// KEYS: stream, meta. ARGV: epoch asked, offset asked ("" for none), size,
/// age (ms), epoch if none.
pub(crate) const READ: &str = concat!(
    lua_epoch_and_time!(5),
    r#"redis.call('EXPIRE', meta, 86400)
local top = tonumber(redis.call('HGET', meta, 's') or '0')
local age = tonumber(ARGV[4])
"#,
    lua_trim_by_age!(),
    r#"local entries = {}
if ARGV[2] ~= '' and ARGV[1] == epoch and tonumber(ARGV[2]) < top then
  entries = redis.call('XRANGE', stream, (tonumber(ARGV[2]) + 1) .. '-0', '+', 'COUNT', ARGV[3])
end
return {epoch, tostring(top), entries}
"#
);

/// The scripts, loaded once per process.
pub(crate) fn scripts() -> &'static (redis::Script, redis::Script) {
    static SCRIPTS: OnceLock<(redis::Script, redis::Script)> = OnceLock::new();
    SCRIPTS.get_or_init(|| (redis::Script::new(PUBLISH), redis::Script::new(READ)))
}

/// The stream and hash keys of `topic`, on the slot of its `channel` (a
/// Redis Cluster slot; harmless on a standalone server).
pub(crate) fn keys(namespace: &str, channel: &str, topic: &str) -> (String, String) {
    let tag = slot_tag(slot(channel.as_bytes()));
    (format!("{{{tag}}}{namespace}:h:{topic}"), format!("{{{tag}}}{namespace}:hm:{topic}"))
}

/// The cluster's slot of a key or channel, as the server computes it:
/// CRC16 (XMODEM) of the name, or of its hash tag (`{...}`) if it has one.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let key = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let crc = key.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(
            crc ^ (u16::from(byte) << 8),
            |crc, _| {
                if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                }
            },
        )
    });
    crc % 16_384
}

/// A short text whose slot is `slot`: found once for every slot (the
/// shortest base-36 numbers that land on each), so that any key can be put
/// on any channel's slot, whatever characters the channel's name holds.
fn slot_tag(of: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags: Vec<Option<String>> = vec![None; 16_384];
        let mut missing = tags.len();
        let mut n: u64 = 0;
        while missing > 0 {
            let tag = base36(n);
            let at = usize::from(slot(tag.as_bytes()));
            if tags[at].is_none() {
                tags[at] = Some(tag);
                missing -= 1;
            }
            n += 1;
        }
        tags.into_iter().map(Option::unwrap_or_default).collect()
    });
    &tags[usize::from(of)]
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        // In range by the modulo.
        #[allow(clippy::cast_possible_truncation)]
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// The publish script's arguments for one broadcast, after the keys.
pub(crate) struct PublishArgs<'a> {
    pub(crate) channel: &'a str,
    pub(crate) head: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) event: &'a str,
    pub(crate) binary: bool,
    pub(crate) history: History,
    pub(crate) epoch: &'a str,
    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    pub(crate) command: &'static str,
}

/// The epoch a publish script's reply (`{offset, epoch}`) names.
pub(crate) fn published_epoch(reply: &Value) -> Option<String> {
    let Value::Array(parts) = reply else { return None };
    text(parts.get(1)?)
}

/// `EVALSHA` of the publish script for one broadcast.
pub(crate) fn publish_command(keys: &(String, String), args: &PublishArgs<'_>) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(scripts().0.get_hash())
        .arg(2)
        .arg(&keys.0)
        .arg(&keys.1)
        .arg(args.channel)
        .arg(args.head)
        .arg(args.payload)
        .arg(args.event)
        .arg(if args.binary { "b" } else { "j" })
        .arg(args.history.size())
        .arg(age_ms(&args.history))
        .arg(args.epoch)
        .arg(args.command);
    cmd
}

fn age_ms(history: &History) -> u64 {
    u64::try_from(history.age().as_millis()).unwrap_or(u64::MAX)
}

/// The connection history is read on, made on first use and kept.
pub(crate) type Reader<C> = std::sync::Arc<tokio::sync::Mutex<Option<C>>>;

/// Reads a topic's stream on the kept connection of `reader`, made with
/// `connect` when there is none. A kept connection may have died with a
/// Redis that restarted: it is made again once, and the read tried anew on
/// the new one. The epoch the read found is no longer proposed.
pub(crate) async fn read_kept<C, F, Fut>(
    reader: &Reader<C>,
    connect: F,
    broker: &super::broker::Broker,
    keys: &(String, String),
    history: &History,
    after: Option<&Position>,
) -> Result<ReadHistory, HistoryUnavailable>
where
    C: redis::aio::ConnectionLike + Clone + Send,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<C>>,
{
    let mut retry = true;
    loop {
        let (mut conn, fresh) = {
            let mut reader = reader.lock().await;
            match &*reader {
                Some(conn) => (conn.clone(), false),
                None => {
                    let conn = connect().await.map_err(|e| HistoryUnavailable(e.to_string()))?;
                    *reader = Some(conn.clone());
                    (conn, true)
                }
            }
        };
        let proposal = broker.epoch_proposal();
        match read(&mut conn, keys, history, after, &proposal).await {
            Ok(read) => {
                broker.epoch_taken(&read.epoch);
                return Ok(read);
            }
            Err(error) => {
                *reader.lock().await = None;
                if fresh || !retry {
                    return Err(error);
                }
                retry = false;
            }
        }
    }
}

/// Reads a topic's stream with the read script.
pub(crate) async fn read<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    keys: &(String, String),
    history: &History,
    after: Option<&Position>,
    epoch: &str,
) -> Result<ReadHistory, HistoryUnavailable> {
    let (asked_epoch, asked_offset) = match after {
        Some(after) => (after.epoch().to_owned(), after.offset().to_string()),
        None => (String::new(), String::new()),
    };
    let reply: Value = scripts()
        .1
        .key(&keys.0)
        .key(&keys.1)
        .arg(asked_epoch)
        .arg(asked_offset)
        .arg(history.size())
        .arg(age_ms(history))
        .arg(epoch)
        .invoke_async(conn)
        .await
        .map_err(|e| HistoryUnavailable(e.to_string()))?;
    parse_read(reply).ok_or_else(|| HistoryUnavailable("an unexpected reply from the read script".to_owned()))
}

/// `{epoch, top, [[id, [field, value, …]], …]}`.
fn parse_read(reply: Value) -> Option<ReadHistory> {
    let Value::Array(mut parts) = reply else { return None };
    if parts.len() != 3 {
        return None;
    }
    let entries = parts.pop()?;
    let top: u64 = text(&parts.pop()?)?.parse().ok()?;
    let epoch = text(&parts.pop()?)?;
    let mut messages = Vec::new();
    let Value::Array(entries) = entries else { return None };
    for entry in entries {
        let Value::Array(mut entry) = entry else { return None };
        let fields = entry.pop()?;
        let id = text(&entry.pop()?)?;
        let offset: u64 = id.split('-').next()?.parse().ok()?;
        let Value::Array(fields) = fields else { return None };
        let (mut event, mut kind, mut data) = (None, None, None);
        for pair in fields.chunks(2) {
            let [name, value] = pair else { return None };
            match text(name)?.as_str() {
                "e" => event = Some(text(value)?),
                "k" => kind = Some(text(value)?),
                "d" => data = Some(bytes(value)?),
                _ => {}
            }
        }
        let data = data?;
        let payload = match kind?.as_str() {
            "b" => Payload::Binary(data),
            _ => {
                let text = String::from_utf8(data.to_vec()).ok()?;
                Payload::Json(serde_json::value::RawValue::from_string(text).ok()?)
            }
        };
        messages.push((offset, event?, payload));
    }
    Some(ReadHistory { epoch, top, messages })
}

fn bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::BulkString(bytes) => Some(Bytes::copy_from_slice(bytes)),
        Value::SimpleString(text) => Some(Bytes::copy_from_slice(text.as_bytes())),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_on_their_channels_slot_whatever_the_topic() {
        for topic in ["comments:1", "a{b}c", "}{", "{x}", "{}", "ü", ""] {
            let channel = format!("channels:t:{topic}");
            let (stream, meta) = keys("channels", &channel, topic);
            assert_eq!(slot(stream.as_bytes()), slot(channel.as_bytes()), "{topic}");
            assert_eq!(slot(meta.as_bytes()), slot(channel.as_bytes()), "{topic}");
            assert_ne!(stream, meta);
        }
        let (a, _) = keys("ns", "ns:t:a", "a");
        let (b, _) = keys("ns", "ns:t:b", "b");
        assert_ne!(a, b);
    }

    #[test]
    fn read_replies_parse_and_garbage_does_not() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |offset: &str, event: &str, kind: &str, data: &str| {
            Value::Array(vec![
                bulk(&format!("{offset}-0")),
                Value::Array(vec![
                    bulk("e"),
                    bulk(event),
                    bulk("k"),
                    bulk(kind),
                    bulk("d"),
                    bulk(data),
                    bulk("t"),
                    bulk("1"),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            bulk("ep"),
            bulk("9"),
            Value::Array(vec![entry("8", "new", "j", r#"{"n":8}"#), entry("9", "blob", "b", "xyz")]),
        ]);
        let read = parse_read(reply).unwrap();
        assert_eq!((read.epoch.as_str(), read.top), ("ep", 9));
        assert_eq!(read.messages[0], (8, "new".to_owned(), Payload::from(serde_json::json!({"n": 8}))));
        assert_eq!(read.messages[1].2, Payload::Binary(Bytes::from_static(b"xyz")));
        assert!(parse_read(Value::Nil).is_none());
        assert!(parse_read(Value::Array(vec![bulk("ep"), bulk("x"), Value::Array(vec![])])).is_none());
        let bad_json = Value::Array(vec![bulk("ep"), bulk("1"), Value::Array(vec![entry("1", "e", "j", "{")])]);
        assert!(parse_read(bad_json).is_none());
    }
}
