//! Presence: who is on a topic, on every node, as Phoenix.Presence.
//!
//! A channel tracks its user under a key with some meta; everyone on the
//! topic gets `presence_diff` broadcasts as keys join and leave, and a
//! joining client is pushed the whole `presence_state`. The frames have
//! Phoenix's exact shapes (`metas`, `phx_ref`, `phx_ref_prev`), so
//! phoenix.js `Presence` works unchanged.
//!
//! ```ignore
//! struct AfterJoin;
//!
//! #[channel(socket = UserSocket)]
//! impl RoomChannel {
//!     async fn join(_topic: Topic, params: RoomParams, socket: &mut Socket<UserSocket>) -> Join<Self> {
//!         socket.channel_ref().send(AfterJoin).ok();      // runs after the join reply
//!         Ok((json!({}), RoomChannel { name: params.name }))
//!     }
//!
//!     #[handle_info]
//!     async fn after_join(&mut self, _: AfterJoin, socket: &mut Socket<UserSocket>) -> Result<(), PresenceError> {
//!         Presence::track(socket, &self.name, json!({"online_at": now()}))?;
//!         socket.push("presence_state", &Presence::list(socket)).ok();
//!         Ok(())
//!     }
//! }
//! ```
//!
//! A presence lives as long as the channel that tracked it: when the
//! channel leaves, crashes or its connection drops, its presences leave.
//!
//! Across nodes, each node replicates its presences over the PubSub's
//! adapter the way Phoenix.Tracker does: changes are
//! gossiped as deltas, heartbeats carry each node's clock so gaps are
//! repaired by a state transfer, and a node that stops sending heartbeats
//! for [`PresenceOptions::down_period`] is declared down, its presences
//! leaving everywhere.

pub(crate) mod replica;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

pub use replica::PresenceError;
use replica::{Diffs, Gossip, Owner, Replica, TopicDiff};

use crate::connect::Connect;
use crate::protocol::Payload;
use crate::pubsub::{BroadcastMessage, PubSub, WeakPubSub};
use crate::socket::Socket;

/// The internal topic presence gossip travels on between nodes.
pub(crate) const GOSSIP_TOPIC: &str = "phx_presence:gossip";
const GOSSIP_EVENT: &str = "gossip";

/// The event carrying a joining client's whole presence map.
pub const PRESENCE_STATE: &str = "presence_state";
/// The event carrying presence joins and leaves.
pub const PRESENCE_DIFF: &str = "presence_diff";

/// How presence replicates between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceOptions {
    /// How often a node gossips its heartbeat. Phoenix: 1.5 s.
    pub heartbeat_interval: Duration,
    /// A node silent for this long is declared down and its presences
    /// leave. Phoenix: 30 s.
    pub down_period: Duration,
}

impl Default for PresenceOptions {
    fn default() -> Self {
        PresenceOptions { heartbeat_interval: Duration::from_millis(1500), down_period: Duration::from_secs(30) }
    }
}

/// One node's presence tracker: the replica and the task that gossips.
pub(crate) struct Tracker {
    replica: Mutex<Replica>,
    pubsub: WeakPubSub,
    started: Instant,
}

impl Tracker {
    /// Starts the tracker of `pubsub`: subscribes to the gossip topic and
    /// spawns the task that answers gossip and sends heartbeats.
    pub(crate) fn start(pubsub: &PubSub, options: PresenceOptions) -> Arc<Tracker> {
        let me = random_id(12).unwrap_or_else(|| format!("node-{}", std::process::id()));
        let tracker = Arc::new(Tracker {
            replica: Mutex::new(Replica::new(me)),
            pubsub: pubsub.downgrade(),
            started: Instant::now(),
        });
        let (sender, inbox) = mpsc::unbounded_channel();
        pubsub.subscribe_internal(GOSSIP_TOPIC, sender);
        tokio::spawn(run(Arc::downgrade(&tracker), inbox, options));
        tracker
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends gossip to the other nodes (never to this one).
    fn gossip(&self, pubsub: &PubSub, gossip: &Gossip) {
        match Payload::json(gossip) {
            Ok(payload) => pubsub.publish_remote(&BroadcastMessage {
                topic: GOSSIP_TOPIC.to_owned(),
                event: GOSSIP_EVENT.to_owned(),
                payload,
            }),
            Err(error) => tracing::error!(%error, "presence gossip could not be encoded"),
        }
    }

    fn apply(&self, change: Result<replica::Change, PresenceError>) -> Result<(), PresenceError> {
        let change = change?;
        if let Some(pubsub) = self.pubsub.upgrade() {
            self.gossip(&pubsub, &change.gossip);
            broadcast_diffs(&pubsub, change.diffs);
        }
        Ok(())
    }

    pub(crate) fn untrack_owner(&self, owner: Owner) {
        let change = self.replica.lock().untrack_owner(owner);
        if let Some(change) = change {
            // An untrack cannot fail.
            let _ = self.apply(Ok(change));
        }
    }
}

/// Gossip in, heartbeats out, the silent declared down.
async fn run(tracker: Weak<Tracker>, mut inbox: mpsc::UnboundedReceiver<(String, Payload)>, options: PresenceOptions) {
    let mut heartbeat = tokio::time::interval(options.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let down_period = u64::try_from(options.down_period.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::select! {
            received = inbox.recv() => {
                let Some((_event, payload)) = received else { return };
                let Some(tracker) = tracker.upgrade() else { return };
                let Some(pubsub) = tracker.pubsub.upgrade() else { return };
                let gossip: Gossip = match payload.decode() {
                    Ok(gossip) => gossip,
                    Err(error) => {
                        tracing::warn!(%error, "malformed presence gossip ignored");
                        continue;
                    }
                };
                let now = tracker.now();
                let (replies, diffs) = tracker.replica.lock().receive(gossip, now);
                for reply in &replies {
                    tracker.gossip(&pubsub, reply);
                }
                broadcast_diffs(&pubsub, diffs);
            }
            _ = heartbeat.tick() => {
                let Some(tracker) = tracker.upgrade() else { return };
                let Some(pubsub) = tracker.pubsub.upgrade() else { return };
                let now = tracker.now();
                let (beat, diffs) = {
                    let mut replica = tracker.replica.lock();
                    (replica.heartbeat(), replica.reap(now, down_period))
                };
                if !diffs.is_empty() {
                    tracing::info!(topics = diffs.len(), "presences of a node declared down leave");
                }
                tracker.gossip(&pubsub, &beat);
                broadcast_diffs(&pubsub, diffs);
            }
        }
    }
}

/// The wire shape of a presence map: `{key: {"metas": [meta, ..]}}`.
fn presence_map(entries: impl IntoIterator<Item = (String, Vec<Map<String, Value>>)>) -> Map<String, Value> {
    entries
        .into_iter()
        .map(|(key, metas)| {
            let metas = metas.into_iter().map(Value::Object).collect();
            let mut entry = Map::new();
            entry.insert("metas".to_owned(), Value::Array(metas));
            (key, Value::Object(entry))
        })
        .collect()
}

fn group(pairs: Vec<(String, Map<String, Value>)>) -> BTreeMap<String, Vec<Map<String, Value>>> {
    let mut grouped: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
    for (key, meta) in pairs {
        grouped.entry(key).or_default().push(meta);
    }
    grouped
}

/// The `presence_diff` payload for one topic.
fn diff_payload(diff: TopicDiff) -> Value {
    let mut payload = Map::new();
    payload.insert("joins".to_owned(), Value::Object(presence_map(group(diff.joins))));
    payload.insert("leaves".to_owned(), Value::Object(presence_map(group(diff.leaves))));
    Value::Object(payload)
}

/// Broadcasts each topic's diff to the subscribers on this node: every node
/// computes the diffs of its own view, so nothing is sent twice.
fn broadcast_diffs(pubsub: &PubSub, diffs: Diffs) {
    for (topic, diff) in diffs {
        if let Err(error) = pubsub.local_broadcast(&topic, PRESENCE_DIFF, diff_payload(diff)) {
            tracing::error!(%error, "presence diff could not be encoded");
        }
    }
}

fn random_id(bytes: usize) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).ok()?;
    Some(URL_SAFE_NO_PAD.encode(buf))
}

fn meta_object<T: Serialize>(meta: &T) -> Result<Map<String, Value>, PresenceError> {
    match serde_json::to_value(meta) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(PresenceError::MetaNotAnObject),
    }
}

/// Whether the socket's limit lets `meta` under `key` be sent to every
/// member of the topic.
fn admit<S: Connect>(socket: &Socket<S>, key: &str, meta: &Map<String, Value>) -> Result<(), PresenceError> {
    // A map of JSON values always encodes.
    let size = serde_json::to_vec(meta).map_or(0, |bytes| bytes.len());
    socket.admit_presence_meta(key.len() + size)
}

fn phx_ref() -> String {
    // 12 random bytes, URL-safe: 16 characters, like Phoenix's refs.
    random_id(12).unwrap_or_else(|| format!("{:x}", Instant::now().elapsed().as_nanos()))
}

/// Presence tracking for channels: Phoenix.Presence's `track`, `update`,
/// `untrack` and `list`, on the channel's topic.
#[derive(Debug)]
pub struct Presence;

impl Presence {
    /// Tracks `key` (e.g. the user's name or id) on the channel's topic
    /// with `meta` (a JSON object; `phx_ref` is added). Everyone on the
    /// topic gets a `presence_diff` with it under `joins`. One channel
    /// tracks a key at most once; use [`Presence::update`] to change it.
    ///
    /// A meta larger than the socket's `max_presence_meta_bytes` (its key
    /// included) is refused with [`PresenceError::MetaTooLarge`].
    pub fn track<S: Connect, T: Serialize>(socket: &Socket<S>, key: &str, meta: T) -> Result<(), PresenceError> {
        let meta = meta_object(&meta)?;
        admit(socket, key, &meta)?;
        let tracker = socket.pubsub().tracker();
        let change = tracker.replica.lock().track(socket.owner(), socket.topic(), key, meta, phx_ref());
        tracker.apply(change)
    }

    /// Replaces the meta of a key this channel tracks: one diff with the
    /// new meta joining (`phx_ref_prev` naming the old) and the old leaving.
    /// Bounded like [`Presence::track`].
    pub fn update<S: Connect, T: Serialize>(socket: &Socket<S>, key: &str, meta: T) -> Result<(), PresenceError> {
        let meta = meta_object(&meta)?;
        admit(socket, key, &meta)?;
        let tracker = socket.pubsub().tracker();
        let change = tracker.replica.lock().update(socket.owner(), socket.topic(), key, meta, phx_ref());
        tracker.apply(change)
    }

    /// Stops tracking a key this channel tracks; it leaves for everyone.
    pub fn untrack<S: Connect>(socket: &Socket<S>, key: &str) {
        let tracker = socket.pubsub().tracker();
        let change = tracker.replica.lock().untrack(socket.owner(), socket.topic(), key);
        if let Some(change) = change {
            // An untrack cannot fail.
            let _ = tracker.apply(Ok(change));
        }
    }

    /// Everyone on the channel's topic, on every node:
    /// `{key: {"metas": [..]}}`, ready to push as `presence_state`.
    pub fn list<S: Connect>(socket: &Socket<S>) -> Value {
        Self::list_topic(socket.pubsub(), socket.topic())
    }

    /// Everyone on `topic`, from outside any channel.
    pub fn list_topic(pubsub: &PubSub, topic: &str) -> Value {
        let entries = pubsub.tracker().replica.lock().list(topic);
        Value::Object(presence_map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_payloads_have_phoenix_shapes() {
        let meta = |r: &str| match json!({"online_at": "1", "phx_ref": r}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let diff = TopicDiff {
            joins: vec![("ada".into(), meta("A")), ("ada".into(), meta("B"))],
            leaves: vec![("bob".into(), meta("C"))],
        };
        assert_eq!(
            diff_payload(diff),
            json!({
                "joins": {"ada": {"metas": [{"online_at": "1", "phx_ref": "A"}, {"online_at": "1", "phx_ref": "B"}]}},
                "leaves": {"bob": {"metas": [{"online_at": "1", "phx_ref": "C"}]}}
            })
        );
        assert_eq!(diff_payload(TopicDiff::default()), json!({"joins": {}, "leaves": {}}));
    }

    #[test]
    fn refs_look_like_phoenix_refs() {
        let r = phx_ref();
        assert_eq!(r.len(), 16);
        assert_ne!(r, phx_ref());
    }

    #[test]
    fn metas_must_be_objects() {
        assert!(meta_object(&json!({"a": 1})).is_ok());
        assert_eq!(meta_object(&json!([1])), Err(PresenceError::MetaNotAnObject));
    }
}
