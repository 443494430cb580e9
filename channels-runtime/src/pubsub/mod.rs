//! Publish/subscribe: how a broadcast reaches every subscriber of a topic.
//!
//! [`PubSub`] keeps this node's subscribers and delivers to them directly:
//! a broadcast is encoded **once per serializer** and the same bytes are
//! queued on every subscribing connection (Phoenix's *fastlane*), without
//! passing through any channel task.
//!
//! Other nodes are reached through an [`Adapter`]. The default,
//! [`PubSub::local`], has none: one process, zero setup. A multi-node
//! adapter (Redis) plugs in with [`PubSub::with_adapter`]; user code that
//! broadcasts does not change.
//!
//! ```
//! use phx_channels_runtime::pubsub::PubSub;
//! use serde_json::json;
//!
//! let pubsub = PubSub::local();
//! pubsub.broadcast("comments:42", "comments:42:new", &json!({"comment": {"content": "hi"}})).unwrap();
//! assert_eq!(pubsub.subscriber_count("comments:42"), 0);
//! ```

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::channel::{ChannelRef, Mail};
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::{Redis, RedisStats};

use crate::outbox::{CloseReason, ConnId, Outbox};
use crate::presence::{PresenceOptions, Tracker};
use crate::protocol::{Frame, IntoPayload, Outgoing, Payload, Serializer};

/// The event that, broadcast to a socket id, closes every connection with
/// that id.
pub const DISCONNECT_EVENT: &str = "disconnect";

const SHARDS: usize = 32;

/// A broadcast as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastMessage {
    /// The topic.
    pub topic: String,
    /// The event.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

/// Carries broadcasts between nodes.
///
/// An adapter is told about every broadcast made on this node
/// ([`Adapter::publish`]) and delivers the ones made on other nodes with
/// [`PubSub::deliver_local`]. It must never hand a node its own broadcast
/// back.
pub trait Adapter: Send + Sync + 'static {
    /// Sends a broadcast made on this node to every other node.
    fn publish(&self, message: &BroadcastMessage);

    /// Called once, when the [`PubSub`] is built, with the handle through
    /// which messages from other nodes are delivered here.
    fn start(&self, _local: PubSub) {}

    /// Whether other nodes exist at all. Presence replication starts with
    /// the PubSub only where they do.
    fn is_multi_node(&self) -> bool {
        true
    }
}

/// The default adapter: a single node, nothing to send anywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Adapter for Local {
    fn publish(&self, _message: &BroadcastMessage) {}

    fn is_multi_node(&self) -> bool {
        false
    }
}

/// What a subscription does with a broadcast.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// Encode (once per serializer) and queue on the connection.
    Fastlane,
    /// The socket-id topic: a `disconnect` event closes the connection.
    Disconnect,
    /// A runtime service (presence): the raw event and payload, queued for
    /// its task, never handled under the PubSub's lock.
    Internal(mpsc::UnboundedSender<(String, Payload)>),
}

/// One connection's subscription to one topic.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) serializer: Serializer,
    /// Which channel instance of the connection holds the subscription;
    /// later joins have larger generations and replace earlier ones.
    pub(crate) generation: u64,
    pub(crate) delivery: Delivery,
    /// Events handed to the channel's `handle_out` instead of the fastlane.
    pub(crate) intercepts: &'static [&'static str],
    /// The channel holding the subscription, for intercepted events.
    pub(crate) channel: Option<ChannelRef>,
}

type Shard = RwLock<HashMap<Arc<str>, Subscribers>>;

/// Past this many subscribers a topic keeps an index by connection, so
/// joining and leaving stay O(1) on topics with thousands of subscribers;
/// small topics (most of them) pay nothing for it.
const INDEX_FROM: usize = 32;

/// The subscribers of one topic on this node: a list to iterate when
/// delivering, and, for large topics, where each connection stands in it.
#[derive(Debug, Default)]
struct Subscribers {
    list: Vec<Subscriber>,
    index: Option<HashMap<ConnId, usize>>,
}

impl Subscribers {
    fn position(&self, conn: ConnId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&conn).copied(),
            None => self.list.iter().position(|s| s.outbox.id() == conn),
        }
    }

    fn push(&mut self, subscriber: Subscriber) {
        if let Some(index) = &mut self.index {
            index.insert(subscriber.outbox.id(), self.list.len());
        }
        self.list.push(subscriber);
        if self.index.is_none() && self.list.len() > INDEX_FROM {
            self.index = Some(self.list.iter().enumerate().map(|(i, s)| (s.outbox.id(), i)).collect());
        }
    }

    fn remove(&mut self, at: usize) {
        let removed = self.list.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(&removed.outbox.id());
            if let Some(moved) = self.list.get(at) {
                index.insert(moved.outbox.id(), at);
            }
        }
    }
}

struct Inner {
    shards: Box<[Shard]>,
    adapter: Box<dyn Adapter>,
    tracker: OnceLock<Arc<Tracker>>,
    presence_options: PresenceOptions,
}

/// The publish/subscribe hub of an endpoint. Cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    inner: Arc<Inner>,
}

/// Why a broadcast was not sent.
///
/// [`PubSub`] broadcasts fail only to encode. A channel's broadcasts
/// (through its [`Socket`](crate::socket::Socket)) are also bounded by the
/// socket's fan-out limits
/// ([`SocketOptions`](crate::SocketOptions)`::max_broadcast_bytes` and
/// `max_broadcasts_per_second`). A `handle_in` that propagates a limit
/// error with `?` does not crash its channel: the client's message is
/// answered `error` with `{"reason": "broadcast too large", "max": N}` or
/// `{"reason": "too many broadcasts", "max_per_second": N}`, and a `join`
/// is refused with that response. From `handle_info` or `handle_out`
/// (no client message to answer), the broadcast is dropped with a warning
/// and the channel keeps running. The limit is found anywhere in the
/// returned error's source chain, so an application error wrapping a
/// `BroadcastError` is answered the same way.
///
/// ```
/// use phx_channels_runtime::pubsub::BroadcastError;
///
/// let error = BroadcastError::TooLarge { size: 100_000, max: 65_536 };
/// assert_eq!(error.to_string(), "broadcast payload of 100000 bytes is over the limit of 65536 bytes");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// The payload could not be encoded as JSON.
    #[error("broadcast payload could not be encoded as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The encoded payload is larger than `max_broadcast_bytes`.
    #[error("broadcast payload of {size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The payload's encoded size, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The connection's channels broadcast more than
    /// `max_broadcasts_per_second` this second.
    #[error("more than {max_per_second} broadcasts in one second on this connection")]
    RateLimited {
        /// The limit.
        max_per_second: u32,
    },
}

impl PubSub {
    /// A single-node PubSub.
    pub fn local() -> Self {
        Self::with_adapter(Local)
    }

    /// A PubSub that also reaches other nodes through `adapter`.
    ///
    /// With a multi-node adapter this starts background tasks, so call it
    /// inside a tokio runtime.
    pub fn with_adapter(adapter: impl Adapter) -> Self {
        Self::with_options(adapter, PresenceOptions::default())
    }

    /// Like [`PubSub::with_adapter`], with presence replication tuned.
    pub fn with_options(adapter: impl Adapter, presence: PresenceOptions) -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect();
        let inner = Inner { shards, adapter: Box::new(adapter), tracker: OnceLock::new(), presence_options: presence };
        let pubsub = PubSub { inner: Arc::new(inner) };
        pubsub.inner.adapter.start(pubsub.clone());
        if pubsub.inner.adapter.is_multi_node() {
            // Every node gossips, also one that tracks nothing itself:
            // its clients still see the others' presences.
            pubsub.tracker();
        }
        pubsub
    }

    fn shard(&self, topic: &str) -> &Shard {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut hasher);
        // The modulo keeps the index in range; truncation is intended.
        #[allow(clippy::cast_possible_truncation)]
        let index = (hasher.finish() % SHARDS as u64) as usize;
        &self.inner.shards[index]
    }

    /// Broadcasts `event` with `payload` (JSON or binary, see
    /// [`IntoPayload`]) to every subscriber of `topic`, on every node. The
    /// payload is encoded once per serializer, however many subscribers
    /// receive it.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        let payload = payload.into_payload()?;
        self.deliver(topic, event, &payload, None);
        self.inner.adapter.publish(&BroadcastMessage { topic: topic.to_owned(), event: event.to_owned(), payload });
        Ok(())
    }

    /// Broadcasts to every subscriber of `topic` on every node except the
    /// connection `from` (a channel uses this so its own client gets no echo).
    pub fn broadcast_from(
        &self,
        from: ConnId,
        topic: &str,
        event: &str,
        payload: impl IntoPayload,
    ) -> Result<(), BroadcastError> {
        let payload = payload.into_payload()?;
        self.deliver(topic, event, &payload, Some(from));
        self.inner.adapter.publish(&BroadcastMessage { topic: topic.to_owned(), event: event.to_owned(), payload });
        Ok(())
    }

    /// Broadcasts to the subscribers on this node only.
    pub fn local_broadcast(&self, topic: &str, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        self.deliver(topic, event, &payload.into_payload()?, None);
        Ok(())
    }

    /// Delivers a broadcast that arrived from another node to the
    /// subscribers on this one. For [`Adapter`] implementations.
    pub fn deliver_local(&self, message: &BroadcastMessage) {
        self.deliver(&message.topic, &message.event, &message.payload, None);
    }

    /// This node's presence tracker, started on first use.
    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        self.inner.tracker.get_or_init(|| Tracker::start(self, self.inner.presence_options))
    }

    /// The tracker, if anything was ever tracked here.
    pub(crate) fn tracker_if_started(&self) -> Option<&Arc<Tracker>> {
        self.inner.tracker.get()
    }

    /// Sends a message to the other nodes only.
    pub(crate) fn publish_remote(&self, message: &BroadcastMessage) {
        self.inner.adapter.publish(message);
    }

    /// Subscribes `outbox` to `topic` as a connection's channel would, with
    /// no intercepts: broadcasts are queued on it as `serializer` encodes
    /// them. For benchmarks and tests that need many subscribers without
    /// sockets; applications subscribe by joining channels.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use phx_channels_runtime::outbox::Outbox;
    /// use phx_channels_runtime::protocol::Serializer;
    /// use phx_channels_runtime::pubsub::PubSub;
    ///
    /// let pubsub = PubSub::local();
    /// let outbox = Arc::new(Outbox::new(1 << 20));
    /// pubsub.subscribe_outbox("doc:1", outbox.clone(), Serializer::V2);
    /// pubsub.broadcast("doc:1", "update", vec![1u8, 2, 3]).unwrap();
    /// assert_eq!(outbox.take().unwrap().len(), 1);
    /// ```
    #[doc(hidden)]
    pub fn subscribe_outbox(&self, topic: &str, outbox: Arc<Outbox>, serializer: Serializer) {
        let subscriber = Subscriber {
            outbox,
            serializer,
            generation: 0,
            delivery: Delivery::Fastlane,
            intercepts: &[],
            channel: None,
        };
        self.subscribe(&Arc::from(topic), subscriber, || {});
    }

    /// Subscribes a runtime service to `topic`.
    pub(crate) fn subscribe_internal(&self, topic: &str, sender: mpsc::UnboundedSender<(String, Payload)>) {
        let subscriber = Subscriber {
            outbox: Arc::new(Outbox::new(0)),
            serializer: Serializer::V2,
            generation: 0,
            delivery: Delivery::Internal(sender),
            intercepts: &[],
            channel: None,
        };
        self.subscribe(&Arc::from(topic), subscriber, || {});
    }

    /// A handle that does not keep the PubSub alive.
    pub(crate) fn downgrade(&self) -> WeakPubSub {
        WeakPubSub(Arc::downgrade(&self.inner))
    }

    /// How many connections on this node subscribe to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.shard(topic).read().get(topic).map_or(0, |s| s.list.len())
    }

    fn deliver(&self, topic: &str, event: &str, payload: &Payload, except: Option<ConnId>) {
        let shard = self.shard(topic).read();
        let Some(subscribers) = shard.get(topic) else { return };
        // One encoding per serializer, made on first need and shared by
        // every subscriber using that serializer.
        let mut encoded: [Option<Option<Frame>>; 2] = [None, None];
        for sub in &subscribers.list {
            if Some(sub.outbox.id()) == except {
                continue;
            }
            match &sub.delivery {
                Delivery::Fastlane if sub.intercepts.contains(&event) => {
                    if let Some(channel) = &sub.channel {
                        let out = Mail::Out { event: event.to_owned(), payload: payload.clone() };
                        // A channel that ended is unsubscribing; nothing to deliver.
                        let _ = channel.send_mail(out);
                    }
                }
                Delivery::Fastlane => {
                    let frame = encoded[sub.serializer.index()].get_or_insert_with(|| {
                        let out = Outgoing::Broadcast { topic, event, payload };
                        match sub.serializer.encode(&out) {
                            Ok(frame) => Some(frame),
                            Err(error) => {
                                // Once per broadcast, not per subscriber.
                                tracing::warn!(topic, event, %error, serializer = ?sub.serializer, "broadcast not delivered to the subscribers of this serializer");
                                None
                            }
                        }
                    });
                    if let Some(frame) = frame {
                        if sub.outbox.push(frame.clone()).is_err() {
                            tracing::trace!(topic, "subscriber is closing");
                        }
                    }
                }
                Delivery::Disconnect => {
                    if event == DISCONNECT_EVENT {
                        sub.outbox.close(CloseReason::Disconnect);
                    }
                }
                Delivery::Internal(sender) => {
                    // The service ended with its PubSub; nothing to do.
                    let _ = sender.send((event.to_owned(), payload.clone()));
                }
            }
        }
    }

    /// Subscribes a connection to `topic`, running `then` while no broadcast
    /// on the topic can be delivered: a join reply queued there reaches the
    /// client before any broadcast the subscription brings.
    ///
    /// A connection holds at most one subscription per topic: a later
    /// generation replaces an earlier one, an earlier one is ignored.
    pub(crate) fn subscribe(&self, topic: &Arc<str>, subscriber: Subscriber, then: impl FnOnce()) {
        let mut shard = self.shard(topic).write();
        let subscribers = shard.entry(topic.clone()).or_default();
        match subscribers.position(subscriber.outbox.id()) {
            Some(at) if subscribers.list[at].generation < subscriber.generation => subscribers.list[at] = subscriber,
            Some(_) => {}
            None => subscribers.push(subscriber),
        }
        then();
    }

    /// Removes a connection's subscription to `topic` if it is still the one
    /// made by `generation`.
    pub(crate) fn unsubscribe(&self, topic: &str, conn: ConnId, generation: u64) {
        let mut shard = self.shard(topic).write();
        let Some(subscribers) = shard.get_mut(topic) else { return };
        if let Some(at) = subscribers.position(conn).filter(|&at| subscribers.list[at].generation == generation) {
            subscribers.remove(at);
        }
        if subscribers.list.is_empty() {
            shard.remove(topic);
        }
    }
}

/// A [`PubSub`] that may have been dropped.
#[derive(Clone)]
pub(crate) struct WeakPubSub(Weak<Inner>);

impl WeakPubSub {
    pub(crate) fn upgrade(&self) -> Option<PubSub> {
        self.0.upgrade().map(|inner| PubSub { inner })
    }
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: usize = self.inner.shards.iter().map(|s| s.read().len()).sum();
        f.debug_struct("PubSub").field("topics", &topics).finish_non_exhaustive()
    }
}

impl Default for PubSub {
    fn default() -> Self {
        PubSub::local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subscriber(serializer: Serializer, generation: u64) -> Subscriber {
        Subscriber {
            outbox: Arc::new(Outbox::new(1 << 20)),
            serializer,
            generation,
            delivery: Delivery::Fastlane,
            intercepts: &[],
            channel: None,
        }
    }

    fn drain(outbox: &Outbox) -> Vec<Frame> {
        let mut batch = Vec::new();
        batch.extend(outbox.take().unwrap());
        batch
    }

    #[test]
    fn encodes_once_per_serializer_and_shares_the_bytes() {
        let pubsub = PubSub::local();
        let topic: Arc<str> = "t".into();
        let subs: Vec<_> =
            [Serializer::V2, Serializer::V2, Serializer::V1].into_iter().map(|s| subscriber(s, 1)).collect();
        for s in &subs {
            pubsub.subscribe(&topic, s.clone(), || {});
        }
        pubsub.broadcast("t", "e", json!({"a": 1})).unwrap();
        let a = drain(&subs[0].outbox);
        let b = drain(&subs[1].outbox);
        let c = drain(&subs[2].outbox);
        assert_eq!(a[0].as_text(), Some(r#"[null,null,"t","e",{"a":1}]"#));
        // Same allocation, not merely equal bytes.
        assert_eq!(a[0].as_bytes().as_ptr(), b[0].as_bytes().as_ptr());
        assert_eq!(c[0].as_text(), Some(r#"{"topic":"t","event":"e","payload":{"a":1},"ref":null}"#));
    }

    #[test]
    fn broadcast_from_skips_the_sender_and_other_topics_get_nothing() {
        let pubsub = PubSub::local();
        let (a, b, other) =
            (subscriber(Serializer::V2, 1), subscriber(Serializer::V2, 1), subscriber(Serializer::V2, 1));
        pubsub.subscribe(&"t".into(), a.clone(), || {});
        pubsub.subscribe(&"t".into(), b.clone(), || {});
        pubsub.subscribe(&"u".into(), other.clone(), || {});
        pubsub.broadcast_from(a.outbox.id(), "t", "e", Payload::empty()).unwrap();
        assert!(drain(&a.outbox).is_empty());
        assert_eq!(drain(&b.outbox).len(), 1);
        assert!(drain(&other.outbox).is_empty());
    }

    #[test]
    fn one_subscription_per_connection_newest_generation_wins() {
        let pubsub = PubSub::local();
        let topic: Arc<str> = "t".into();
        let old = subscriber(Serializer::V2, 1);
        let new = Subscriber { generation: 2, ..old.clone() };
        pubsub.subscribe(&topic, old.clone(), || {});
        pubsub.subscribe(&topic, new.clone(), || {});
        pubsub.subscribe(&topic, old.clone(), || {});
        assert_eq!(pubsub.subscriber_count("t"), 1);
        // the stale generation cannot remove the newer subscription
        pubsub.unsubscribe("t", old.outbox.id(), 1);
        assert_eq!(pubsub.subscriber_count("t"), 1);
        pubsub.unsubscribe("t", old.outbox.id(), 2);
        assert_eq!(pubsub.subscriber_count("t"), 0);
    }

    #[test]
    fn large_topics_stay_consistent_through_joins_and_leaves() {
        let pubsub = PubSub::local();
        let topic: Arc<str> = "big".into();
        let subs: Vec<_> = (0..200).map(|_| subscriber(Serializer::V2, 1)).collect();
        for s in &subs {
            pubsub.subscribe(&topic, s.clone(), || {});
        }
        // leave every third, rejoin a newer generation of every fifth
        for (i, s) in subs.iter().enumerate() {
            if i % 3 == 0 {
                pubsub.unsubscribe("big", s.outbox.id(), 1);
            } else if i % 5 == 0 {
                pubsub.subscribe(&topic, Subscriber { generation: 2, ..s.clone() }, || {});
            }
        }
        let staying = (0..200).filter(|i| i % 3 != 0).count();
        assert_eq!(pubsub.subscriber_count("big"), staying);
        pubsub.broadcast("big", "e", json!({})).unwrap();
        for (i, s) in subs.iter().enumerate() {
            assert_eq!(drain(&s.outbox).len(), usize::from(i % 3 != 0), "subscriber {i}");
        }
        for s in &subs {
            pubsub.unsubscribe("big", s.outbox.id(), 1);
            pubsub.unsubscribe("big", s.outbox.id(), 2);
        }
        assert_eq!(pubsub.subscriber_count("big"), 0);
    }

    #[test]
    fn disconnect_on_the_socket_id_closes_the_connection() {
        let pubsub = PubSub::local();
        let sub = Subscriber { delivery: Delivery::Disconnect, ..subscriber(Serializer::V2, 0) };
        pubsub.subscribe(&"users_socket:1".into(), sub.clone(), || {});
        pubsub.broadcast("users_socket:1", "other", json!({})).unwrap();
        assert!(!sub.outbox.is_closed());
        pubsub.broadcast("users_socket:1", DISCONNECT_EVENT, json!({})).unwrap();
        assert_eq!(sub.outbox.take(), Err(CloseReason::Disconnect));
    }

    #[tokio::test]
    async fn adapters_see_every_broadcast() {
        use std::sync::Mutex;
        #[derive(Default, Clone)]
        struct Spy(Arc<Mutex<Vec<BroadcastMessage>>>);
        impl Adapter for Spy {
            fn publish(&self, message: &BroadcastMessage) {
                self.0.lock().unwrap().push(message.clone());
            }
        }
        let spy = Spy::default();
        let pubsub = PubSub::with_adapter(spy.clone());
        pubsub.broadcast("t", "e", json!({"x": 1})).unwrap();
        pubsub.local_broadcast("t", "local", Payload::empty()).unwrap();
        let seen = spy.0.lock().unwrap();
        // (presence gossip travels the adapter too, on its own topic)
        let ours: Vec<_> = seen.iter().filter(|m| m.topic == "t").collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].event, "e");
    }
}
