//! The Redis adapter: broadcasts (and presence gossip) shared by every node
//! that uses the same Redis server and channel.
//!
//! Built on the `redis` crate (maintained, tokio-native pub/sub). Each node
//! publishes what it broadcasts on one Redis channel and subscribes to it;
//! messages carry the sending node's id, so a node never delivers its own
//! broadcast twice (it already delivered it locally, at once).
//!
//! When Redis goes away, local delivery carries on untouched; broadcasts
//! made meanwhile cannot reach other nodes, and are counted and logged as
//! dropped; both connections come back on their own with backoff.
//!
//! ```no_run
//! use phx_channels_runtime::pubsub::{PubSub, Redis};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pubsub = PubSub::with_adapter(Redis::new("redis://127.0.0.1:6379")?);
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Adapter, BroadcastMessage, PubSub, WeakPubSub};
use crate::protocol::Payload;

/// The Redis channel used unless another is given.
const DEFAULT_CHANNEL: &str = "channels:pubsub";

/// Broadcasts waiting to be published; past this, they are dropped (and
/// counted) rather than held in memory.
const QUEUE: usize = 10_000;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What crosses Redis.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    node: &'a str,
    topic: &'a str,
    event: &'a str,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    json: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<String>,
}

/// Counters of one adapter.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
}

/// A snapshot of a Redis adapter's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RedisStats {
    /// Broadcasts published to Redis.
    pub published: u64,
    /// Broadcasts received from other nodes.
    pub received: u64,
    /// Broadcasts that could not reach other nodes (Redis unavailable).
    pub dropped: u64,
    /// Connections re-established after a failure.
    pub reconnects: u64,
}

/// The Redis adapter for [`PubSub`].
pub struct Redis {
    client: redis::Client,
    channel: String,
    node: String,
    outgoing: mpsc::Sender<Vec<u8>>,
    /// Taken by the publisher task when the PubSub starts.
    queued: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    counters: Arc<Counters>,
}

impl Redis {
    /// An adapter for the Redis server at `url` (e.g.
    /// `redis://127.0.0.1:6379`), on the default channel. Connecting happens
    /// in the background, and again whenever the connection is lost.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Self::with_channel(url, DEFAULT_CHANNEL)
    }

    /// Like [`Redis::new`], on a given Redis channel: nodes share broadcasts
    /// exactly when they share the server and the channel.
    pub fn with_channel(url: &str, channel: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (outgoing, queued) = mpsc::channel(QUEUE);
        let node = node_id();
        Ok(Redis {
            client,
            channel: channel.to_owned(),
            node,
            outgoing,
            queued: Mutex::new(Some(queued)),
            counters: Arc::default(),
        })
    }

    /// A handle to this adapter's counters, valid after the adapter moved
    /// into a [`PubSub`].
    pub fn stats_handle(&self) -> impl Fn() -> RedisStats + Send + Sync + 'static {
        let counters = self.counters.clone();
        move || RedisStats {
            published: counters.published.load(Ordering::Relaxed),
            received: counters.received.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            reconnects: counters.reconnects.load(Ordering::Relaxed),
        }
    }

    fn encode(&self, message: &BroadcastMessage) -> Option<Vec<u8>> {
        let (json, binary) = match &message.payload {
            Payload::Json(raw) => (Some(&**raw), None),
            Payload::Binary(bytes) => (None, Some(STANDARD.encode(bytes))),
        };
        let envelope = Envelope { node: &self.node, topic: &message.topic, event: &message.event, json, binary };
        serde_json::to_vec(&envelope).ok()
    }
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("channel", &self.channel).field("node", &self.node).finish_non_exhaustive()
    }
}

impl Adapter for Redis {
    fn publish(&self, message: &BroadcastMessage) {
        let Some(bytes) = self.encode(message) else { return };
        if self.outgoing.try_send(bytes).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = message.topic, "redis publish queue full; broadcast not sent to other nodes");
        }
    }

    fn start(&self, local: PubSub) {
        let Some(queued) = self.queued.lock().take() else { return };
        tokio::spawn(publisher(self.client.clone(), self.channel.clone(), queued, self.counters.clone()));
        tokio::spawn(subscriber(
            self.client.clone(),
            self.channel.clone(),
            self.node.clone(),
            local.downgrade(),
            self.counters.clone(),
        ));
    }
}

fn node_id() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = [0u8; 12];
    match getrandom::fill(&mut bytes) {
        Ok(()) => URL_SAFE_NO_PAD.encode(bytes),
        Err(_) => format!("pid-{}", std::process::id()),
    }
}

/// Publishes queued broadcasts; while Redis is unreachable, drops what
/// arrives and counts it.
async fn publisher(
    client: redis::Client,
    channel: String,
    mut queued: mpsc::Receiver<Vec<u8>>,
    counters: Arc<Counters>,
) {
    let mut backoff = BACKOFF_START;
    let mut first = true;
    loop {
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(conn) => conn,
            Err(error) => {
                let dropped = drain(&mut queued);
                if dropped > 0 {
                    counters.dropped.fetch_add(dropped, Ordering::Relaxed);
                }
                tracing::warn!(%error, dropped, retry_in = ?backoff, "redis unavailable for publishing");
                if queued.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if !first {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("redis publisher reconnected");
        }
        first = false;
        backoff = BACKOFF_START;
        while let Some(bytes) = queued.recv().await {
            let sent: redis::RedisResult<i64> =
                redis::cmd("PUBLISH").arg(&channel).arg(&bytes).query_async(&mut conn).await;
            match sent {
                Ok(_) => {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "redis publish failed; the broadcast in flight did not reach other nodes");
                    break;
                }
            }
        }
        if queued.is_closed() && queued.is_empty() {
            return;
        }
    }
}

/// Drops everything queued, returning how much.
fn drain(queued: &mut mpsc::Receiver<Vec<u8>>) -> u64 {
    let mut n = 0;
    while queued.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// Delivers other nodes' broadcasts here, resubscribing after failures.
async fn subscriber(client: redis::Client, channel: String, node: String, local: WeakPubSub, counters: Arc<Counters>) {
    let mut backoff = BACKOFF_START;
    let mut first = true;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        let pubsub = match subscribed {
            Ok(pubsub) => pubsub,
            Err(error) => {
                if local.upgrade().is_none() {
                    return;
                }
                tracing::warn!(%error, retry_in = ?backoff, "redis unavailable for subscribing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if !first {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("redis subscriber reconnected");
        }
        first = false;
        backoff = BACKOFF_START;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Some(local) = local.upgrade() else { return };
            let bytes = msg.get_payload_bytes();
            match decode(bytes, &node) {
                Ok(Some(message)) => {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    local.deliver_local(&message);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "malformed message on the redis channel ignored"),
            }
        }
        tracing::warn!("redis subscription lost; resubscribing");
    }
}

/// Decodes an envelope; `None` for this node's own broadcasts.
fn decode(bytes: &[u8], me: &str) -> Result<Option<BroadcastMessage>, String> {
    let envelope: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if envelope.node == me {
        return Ok(None);
    }
    let payload = match (envelope.json, envelope.binary) {
        (Some(json), None) => Payload::Json(json.to_owned()),
        (None, Some(b64)) => Payload::Binary(STANDARD.decode(b64).map_err(|e| e.to_string())?.into()),
        _ => return Err("an envelope carries exactly one of `json` and `binary`".to_owned()),
    };
    Ok(Some(BroadcastMessage { topic: envelope.topic.to_owned(), event: envelope.event.to_owned(), payload }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_round_trip_and_skip_our_own() {
        let redis = Redis::new("redis://127.0.0.1:1").unwrap();
        for payload in [Payload::from(json!({"a": [1, "b"]})), Payload::Binary(vec![0, 255, 7].into())] {
            let message = BroadcastMessage { topic: "t".into(), event: "e".into(), payload };
            let bytes = redis.encode(&message).unwrap();
            assert_eq!(decode(&bytes, "another node").unwrap(), Some(message));
            assert_eq!(decode(&bytes, &redis.node).unwrap(), None);
        }
        assert!(decode(b"not json", "x").is_err());
        assert!(decode(br#"{"node":"n","topic":"t","event":"e"}"#, "x").is_err());
    }
}
