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
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::pubsub::PubSub;
//! use serde_json::json;
//!
//! let pubsub = PubSub::local();
//! pubsub.broadcast("comments:42", "comments:42:new", &json!({"comment": {"content": "hi"}})).unwrap();
//! assert_eq!(pubsub.subscriber_count("comments:42"), 0);
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

#[cfg(any(feature = "redis", feature = "nats"))]
mod broker;
pub(crate) mod envelope;
mod history;
mod kept;
#[cfg(any(feature = "redis", feature = "nats"))]
pub use self::broker::Routing;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::Redis;
#[cfg(feature = "redis")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_history;
#[cfg(feature = "redis")]
pub use self::redis_cluster::RedisCluster;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
mod nats_history;
#[cfg(feature = "nats")]
pub use self::nats::Nats;
#[cfg(feature = "nats")]
pub use self::nats_history::HistoryStorage;

pub(crate) use self::history::{asked_in, Asked};
pub use self::history::{History, NotRecovered};
pub(crate) use self::kept::{Handover, Prepared};
pub use self::kept::{HistoryRead, HistoryUnavailable, KeptFrames, Missed, ReadHistory, Recovery};

use crate::outbox::{ConnId, Outbox};
use crate::protocol::{Frame, IntoPayload, Outgoing, Payload, Position, Serializer};

/// The event that, broadcast to a socket id, closes every connection with
/// that id.
pub const DISCONNECT_EVENT: &str = "disconnect";

const SHARDS: usize = 32;

/// How long a join waits for the broker to confirm its topic's
/// subscription ([`Adapter::ready`]).
pub(crate) const READY_WAIT: Duration = Duration::from_secs(3);

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

/// Carries broadcasts between nodes: the one trait a broker (Redis, NATS,
/// anything that moves bytes between processes) implements, in this crate
/// or in another.
///
/// - [`Adapter::publish`] is told about every broadcast made on this node
///   (never about ones that arrived from other nodes), and sends it to the
///   others. It must not block: queue and return. When it cannot queue
///   (its broker is up but slower than this node), it says so with
///   [`PublishError::Busy`] and the broadcast is refused as a whole, before
///   anyone got it: the sender is told, rather than told "ok" and the
///   broadcast dropped later.
/// - [`Adapter::start`] is called once, when the [`PubSub`] is built, with
///   the handle through which the adapter hands broadcasts from other
///   nodes to this one: [`PubSub::deliver_local`]. A node must never be
///   handed its own broadcast back (the subscribers here already got it).
/// - [`Adapter::interest`] tells the adapter which topics this node has
///   subscribers for, so it can ask its broker for those topics only
///   (interest-based routing); [`Adapter::ready`] lets a join wait until
///   the broker has confirmed that subscription.
/// - [`Adapter::is_multi_node`]: whether other nodes exist at all (asked
///   once; `false` means `publish` and `interest` are never called).
///
/// Presence replication needs nothing more: it travels as broadcasts on
/// an internal topic.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use std::sync::{Arc, Mutex};
/// use phx_channels::pubsub::{Adapter, BroadcastMessage, PubSub, PublishError};
///
/// /// Every broadcast made here, kept for a look (a broker would send it on).
/// #[derive(Clone, Default)]
/// struct Spy(Arc<Mutex<Vec<BroadcastMessage>>>);
///
/// impl Adapter for Spy {
///     fn publish(&self, message: &BroadcastMessage) -> Result<(), PublishError> {
///         self.0.lock().unwrap().push(message.clone());
///         Ok(())
///     }
/// }
///
/// let spy = Spy::default();
/// let pubsub = PubSub::with_adapter(spy.clone());
/// pubsub.broadcast("room:1", "hello", &serde_json::json!({"n": 1})).unwrap();
/// assert_eq!(spy.0.lock().unwrap()[0].event, "hello");
/// ```
pub trait Adapter: Send + Sync + 'static {
    /// Sends a broadcast made on this node to every other node (or every
    /// other node with subscribers for its topic).
    fn publish(&self, message: &BroadcastMessage) -> Result<(), PublishError>;

    /// Called once, when the [`PubSub`] is built, with the handle through
    /// which messages from other nodes are delivered here.
    fn start(&self, _local: PubSub) {}

    /// Whether other nodes exist at all. Presence replication starts with
    /// the endpoint only where they do.
    fn is_multi_node(&self) -> bool {
        true
    }

    /// This node gained its first subscriber to `topic`, or lost its last.
    /// Calls for one topic come in order, and every [`Interest::Gained`] is
    /// followed by one [`Interest::Lost`]; a topic may be counted more than
    /// once at a time (a join waiting for [`Adapter::ready`] holds it too),
    /// so keep a count. Called under the topic's lock: queue, never block.
    /// The default ignores it (every node gets every broadcast).
    fn interest(&self, topic: &str, change: Interest) {
        let _ = (topic, change);
    }

    /// Resolves once broadcasts on `topic` from other nodes reach this node
    /// (the broker confirmed the subscription [`Adapter::interest`] asked
    /// for). `None` when they already do, when the adapter does not route
    /// by interest, or while its broker is away (a join does not wait for a
    /// broker that is not there). A join waits at most a few seconds.
    fn ready(&self, topic: &str) -> Option<Ready> {
        let _ = topic;
        None
    }

    /// The adapter's counters, if it keeps any.
    fn stats(&self) -> Option<BrokerStats> {
        None
    }

    /// Whether broadcasts from other nodes reach this node right now (its
    /// subscription to the broker is up). While they do not, presence does
    /// not take the other nodes' silence for their death.
    fn is_receiving(&self) -> bool {
        true
    }

    /// Whether the broker keeps the history of topics that have one
    /// ([`PubSub::keep_history`]): it then gives their broadcasts their
    /// positions ([`Adapter::publish_kept`]), hands them to every node
    /// through [`PubSub::deliver_kept`], and reads its stream back for a
    /// rejoin ([`Adapter::read_history`]). `false` (the default): each node
    /// keeps its own history in memory, with its own epoch, and a client
    /// recovers on the node it was on.
    fn keeps_history(&self) -> bool {
        false
    }

    /// Sends a broadcast of a topic with history (`history` its bounds) to
    /// the broker, which gives it its position, keeps it, and hands it to
    /// every node subscribed to its topic, this one included, through
    /// [`PubSub::deliver_kept`] (`except`, a connection of this node, does
    /// not get it). Only called when [`Adapter::keeps_history`]. Must not
    /// block; [`PublishError::Unavailable`] while the broker is away (a
    /// broadcast without a position is none at all on such a topic).
    fn publish_kept(
        &self,
        message: &BroadcastMessage,
        history: &History,
        except: Option<ConnId>,
    ) -> Result<(), PublishError> {
        let _ = (history, except);
        self.publish(message)
    }

    /// Reads the stream of `topic` at the broker: its epoch and last
    /// offset, and the broadcasts after `after` (when it is of the stream's
    /// epoch and still kept). Only called when [`Adapter::keeps_history`],
    /// after this node's subscription to the topic was confirmed.
    fn read_history(&self, topic: &str, history: &History, after: Option<&Position>) -> HistoryRead {
        let _ = (topic, history, after);
        kept::no_history()
    }
}

/// A future that resolves once a topic's broadcasts from other nodes reach
/// this node ([`Adapter::ready`]).
pub type Ready = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A change of this node's interest in a topic ([`Adapter::interest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The topic has (one more reason for) a subscriber here.
    Gained,
    /// One reason less.
    Lost,
}

/// Why an [`Adapter`] did not take a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The broker is up but cannot keep up: its publish queue is full.
    #[error("the broker's publish queue is full")]
    Busy,
    /// The broker is away, and the broadcast cannot be sent without it
    /// (a broadcast of a topic whose history the broker keeps).
    #[error("the broker is unavailable")]
    Unavailable,
}

/// What a broker adapter counted ([`PubSub::broker_stats`]): its traffic
/// and what it could not carry, the same shape for every engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Broadcasts handed to the broker.
    pub published: u64,
    /// Broadcasts received from other nodes.
    pub received: u64,
    /// Broadcasts that could not reach other nodes because the broker was
    /// away (they were delivered on this node).
    pub dropped: u64,
    /// Broadcasts refused because the broker was up but could not keep up
    /// ([`BroadcastError::BrokerBusy`]; nobody got them).
    pub refused: u64,
    /// Times a connection to the broker (publishing or subscribing) came
    /// back after an outage.
    pub reconnects: u64,
    /// Broker subscriptions held now (topics, or topic shards).
    pub subscriptions: u64,
}

/// The default adapter: a single node, nothing to send anywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Adapter for Local {
    fn publish(&self, _message: &BroadcastMessage) -> Result<(), PublishError> {
        Ok(())
    }

    fn is_multi_node(&self) -> bool {
        false
    }
}

/// Where a subscription's broadcasts go: a connection, a test, a service.
///
/// A sink takes broadcasts as encoded frames (encoded once per serializer
/// for all the subscribers of a broadcast) or, for the events its
/// subscription asks to see raw ([`Subscriber::raw_events`],
/// [`Subscriber::raw`]), as topic, event and payload. Both are called under
/// the topic's lock: queue, never block.
pub trait Sink: Send + Sync + 'static {
    /// Takes one broadcast frame, in this subscriber's serializer.
    fn frame(&self, frame: &Frame);

    /// Takes one broadcast the subscription asked to see raw; `tag` is the
    /// one the subscription was made with.
    fn raw(&self, tag: u64, topic: &str, event: &str, payload: &Payload) {
        let _ = (tag, topic, event, payload);
    }

    /// Takes one broadcast of a topic with history, with its position, for
    /// a subscription that takes positions ([`Subscriber::positions`]) and
    /// takes some events raw: every broadcast of the topic comes here, in
    /// order, so the raw ones keep their place among the others. `frames`
    /// are the broadcast's frames for this subscriber (`None` for an event
    /// taken raw). The default hands them on to [`Sink::frame`] and
    /// [`Sink::raw`].
    fn positioned(
        &self,
        tag: u64,
        topic: &str,
        event: &str,
        payload: &Payload,
        position: &Position,
        frames: Option<&KeptFrames>,
    ) {
        let _ = position;
        match frames {
            Some(frames) => frames.frames().for_each(|frame| self.frame(frame)),
            None => self.raw(tag, topic, event, payload),
        }
    }

    /// This node missed broadcasts of `topic` that the subscription (one
    /// that takes positions) was owed: nothing more is delivered to it, and
    /// its client should rejoin, to be sent what it missed. The default
    /// does nothing.
    fn resync(&self, tag: u64, topic: &str) {
        let _ = (tag, topic);
    }

    /// For a subscription that takes positions through [`Sink::positioned`]:
    /// the offset of the last broadcast it has handed its client, if any;
    /// and from now on it hands none (a newer join of the same connection
    /// takes over, from there). The default knows nothing.
    fn hand_over(&self, tag: u64) -> Option<u64> {
        let _ = tag;
        None
    }
}

/// An outbox takes frames as they are (benchmarks and tests subscribe one
/// without a connection).
impl Sink for Outbox {
    fn frame(&self, frame: &Frame) {
        // A closed outbox belongs to a connection that is going away.
        let _ = self.push_shared(frame);
    }
}

/// One subscription to one topic: who (a connection id: a connection holds
/// at most one subscription per topic), how broadcasts are encoded for it,
/// and where they go.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use std::sync::Arc;
/// use phx_channels::outbox::{ConnId, Outbox};
/// use phx_channels::protocol::Serializer;
/// use phx_channels::pubsub::{PubSub, Subscriber};
///
/// let pubsub = PubSub::local();
/// let outbox = Arc::new(Outbox::new(1 << 20));
/// pubsub.subscribe("doc:1", Subscriber::new(outbox.id(), Serializer::V2, outbox.clone()));
/// pubsub.broadcast("doc:1", "update", vec![1u8, 2, 3]).unwrap();
/// assert_eq!(outbox.take().unwrap().len(), 1);
/// pubsub.unsubscribe("doc:1", outbox.id(), 0);
/// assert_eq!(pubsub.subscriber_count("doc:1"), 0);
/// ```
#[derive(Clone)]
pub struct Subscriber {
    id: ConnId,
    tag: u64,
    sink: Arc<dyn Sink>,
    /// The events taken raw (a large topic holds one of these per
    /// subscriber: kept to 48 bytes).
    raw_events: &'static [&'static str],
    raw_all: bool,
    /// Takes positions on topics with history.
    positions: bool,
    serializer: Serializer,
}

impl Subscriber {
    /// A subscription of `id` that takes every broadcast as a frame
    /// encoded by `serializer`.
    pub fn new(id: ConnId, serializer: Serializer, sink: Arc<dyn Sink>) -> Self {
        Subscriber { id, tag: 0, sink, raw_events: &[], raw_all: false, positions: false, serializer }
    }

    /// Tags the subscription (a connection tags it with the channel
    /// instance that made it). For the same connection and topic, a
    /// subscription with a larger tag replaces one with a smaller tag, and
    /// [`PubSub::unsubscribe`] removes only the tag it names.
    #[must_use]
    pub fn tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }

    /// Takes these events raw ([`Sink::raw`]) instead of as frames
    /// (Phoenix's `intercept`).
    #[must_use]
    pub fn raw_events(mut self, events: &'static [&'static str]) -> Self {
        self.raw_events = events;
        self
    }

    /// Takes every event raw (a service, or a socket id's subscription).
    #[must_use]
    pub fn raw(mut self) -> Self {
        self.raw_all = true;
        self
    }

    /// Takes the broadcasts of a topic with history with their positions
    /// (in the frames' `ref`). Others get the frames every subscriber gets.
    #[must_use]
    pub fn positions(mut self) -> Self {
        self.positions = true;
        self
    }

    fn wants_raw(&self, event: &str) -> bool {
        self.raw_all || self.raw_events.contains(&event)
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("tag", &self.tag)
            .field("serializer", &self.serializer)
            .field("raw_events", &self.raw_events)
            .field("raw_all", &self.raw_all)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

type Shard = RwLock<HashMap<Arc<str>, Subscribers>>;

/// Past this many subscribers a topic keeps an index by connection, so
/// joining and leaving stay O(1) on topics with thousands of subscribers;
/// small topics (most of them) pay nothing for it.
const INDEX_FROM: usize = 32;

/// The subscribers of one topic on this node: a list to iterate when
/// delivering, and, for large topics, where each connection stands in it.
#[derive(Default)]
struct Subscribers {
    list: Vec<Subscriber>,
    index: Option<HashMap<ConnId, usize>>,
}

impl Subscribers {
    fn position(&self, conn: ConnId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&conn).copied(),
            None => self.list.iter().position(|s| s.id == conn),
        }
    }

    fn push(&mut self, subscriber: Subscriber) {
        if let Some(index) = &mut self.index {
            index.insert(subscriber.id, self.list.len());
        }
        self.list.push(subscriber);
        if self.index.is_none() && self.list.len() > INDEX_FROM {
            self.index = Some(self.list.iter().enumerate().map(|(i, s)| (s.id, i)).collect());
        }
    }

    fn remove(&mut self, at: usize) {
        let removed = self.list.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(&removed.id);
            if let Some(moved) = self.list.get(at) {
                index.insert(moved.id, at);
            }
        }
    }
}

type Services = Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>;

struct Inner {
    shards: Box<[Shard]>,
    adapter: Box<dyn Adapter>,
    /// The adapter's [`Adapter::is_multi_node`], asked once.
    multi_node: bool,
    /// Services built on this PubSub (presence), one of each type.
    services: Services,
    /// Broadcasts and deliveries on this node.
    fanout: crate::metrics::Fanout,
    /// Which topics keep history.
    patterns: history::Patterns,
    /// The streams this node keeps (memory) or mirrors (broker).
    streams: history::Streams,
    /// The adapter's [`Adapter::keeps_history`], asked once.
    broker_history: bool,
    /// Warnings about history a client can cause (a broker read failing).
    history_warnings: crate::logging::Throttle,
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
/// ([`SocketOptions`](crate::SocketOptions)`::max_broadcast_bytes`,
/// `max_broadcasts_per_second`, `max_broadcast_bytes_per_second` and
/// `max_topic_broadcast_bytes_per_second`). A `handle_in` that propagates a limit
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
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::pubsub::BroadcastError;
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
    /// The connection's channels broadcast more than
    /// `max_broadcast_bytes_per_second` this second. From `handle_in` with
    /// `?`, answered `{"reason": "too many broadcast bytes", "max_bytes_per_second": N}`.
    #[error("more than {max_bytes_per_second} bytes broadcast in one second on this connection")]
    BytesRateLimited {
        /// The limit.
        max_bytes_per_second: usize,
    },
    /// The clients of this node broadcast more than
    /// `max_topic_broadcast_bytes_per_second` on this topic this second.
    /// From `handle_in` with `?`, answered
    /// `{"reason": "too many broadcast bytes on this topic", "max_bytes_per_second": N}`.
    #[error("more than {max_bytes_per_second} bytes broadcast in one second on this topic")]
    TopicBytesRateLimited {
        /// The limit.
        max_bytes_per_second: usize,
    },
    /// The broker to other nodes is up but cannot keep up with this node:
    /// nobody, here or elsewhere, got the broadcast. From `handle_in` with
    /// `?`, the client's message is answered `error` with
    /// `{"reason": "broker busy"}`.
    #[error("the broker to other nodes is busy; the broadcast was not sent")]
    BrokerBusy,
    /// The topic keeps its history at the broker, and the broker is away:
    /// a broadcast cannot get a position without it, so nobody got it.
    /// From `handle_in` with `?`, the client's message is answered `error`
    /// with `{"reason": "broker unavailable"}`.
    #[error("the broker that keeps this topic's history is unavailable; the broadcast was not sent")]
    BrokerUnavailable,
}

impl PubSub {
    /// A single-node PubSub.
    pub fn local() -> Self {
        Self::with_adapter(Local)
    }

    /// A PubSub that also reaches other nodes through `adapter`.
    ///
    /// With a multi-node adapter this may start background tasks, so call
    /// it inside a tokio runtime.
    pub fn with_adapter(adapter: impl Adapter) -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect();
        let multi_node = adapter.is_multi_node();
        let broker_history = multi_node && adapter.keeps_history();
        let inner = Inner {
            shards,
            adapter: Box::new(adapter),
            multi_node,
            services: Mutex::default(),
            fanout: crate::metrics::Fanout::default(),
            patterns: history::Patterns::default(),
            streams: history::Streams::default(),
            broker_history,
            history_warnings: crate::logging::Throttle::new(5, Duration::from_secs(10), "history warnings"),
        };
        let pubsub = PubSub { inner: Arc::new(inner) };
        pubsub.inner.adapter.start(pubsub.clone());
        pubsub
    }

    /// Whether the adapter reaches other nodes.
    pub fn is_multi_node(&self) -> bool {
        self.inner.multi_node
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
        self.broadcast_except(None, topic, event, payload.into_payload()?)
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
        self.broadcast_except(Some(from), topic, event, payload.into_payload()?)
    }

    /// Other nodes first: a broadcast their broker refuses is refused as a
    /// whole, before anyone here got it.
    fn broadcast_except(
        &self,
        except: Option<ConnId>,
        topic: &str,
        event: &str,
        payload: Payload,
    ) -> Result<(), BroadcastError> {
        if let Some(history) = self.inner.patterns.of(topic) {
            return self.broadcast_kept(except, topic, event, payload, history);
        }
        if !self.inner.multi_node {
            self.deliver(topic, event, &payload, except);
            return Ok(());
        }
        let message = BroadcastMessage { topic: topic.to_owned(), event: event.to_owned(), payload };
        self.inner.adapter.publish(&message).map_err(|error| match error {
            PublishError::Busy => BroadcastError::BrokerBusy,
            PublishError::Unavailable => BroadcastError::BrokerUnavailable,
        })?;
        self.deliver(topic, event, &message.payload, except);
        Ok(())
    }

    /// Broadcasts to the subscribers on this node only.
    pub fn local_broadcast(&self, topic: &str, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        self.deliver(topic, event, &payload.into_payload()?, None);
        Ok(())
    }

    /// Delivers a broadcast that arrived from another node to the
    /// subscribers on this one. For [`Adapter`] implementations. On a topic
    /// with history kept in memory (an adapter that keeps none), this node
    /// gives it a position in its own stream.
    pub fn deliver_local(&self, message: &BroadcastMessage) {
        if !self.inner.broker_history {
            if let Some(history) = self.inner.patterns.of(&message.topic) {
                return self.keep_here(None, &message.topic, &message.event, message.payload.clone(), history);
            }
        }
        self.deliver(&message.topic, &message.event, &message.payload, None);
    }

    /// Sends a broadcast to the other nodes only (a service replicating
    /// its own state, as presence does).
    pub fn publish_remote(&self, topic: &str, event: &str, payload: Payload) -> Result<(), PublishError> {
        // A single node has no one to tell (and pays no copy of the topic
        // and event for it).
        if !self.inner.multi_node {
            return Ok(());
        }
        let message = BroadcastMessage { topic: topic.to_owned(), event: event.to_owned(), payload };
        self.inner.adapter.publish(&message)
    }

    /// The broker adapter's counters, if it keeps any.
    pub fn broker_stats(&self) -> Option<BrokerStats> {
        self.inner.adapter.stats()
    }

    /// Whether broadcasts from other nodes reach this node right now
    /// ([`Adapter::is_receiving`]).
    pub fn is_receiving(&self) -> bool {
        self.inner.adapter.is_receiving()
    }

    /// Holds this node's interest in `topic` and waits (at most
    /// [`READY_WAIT`]) until broadcasts on it from other nodes reach this
    /// node. A join calls it before subscribing, so that once its client is
    /// told "ok", broadcasts from every node reach it. `None` on a single
    /// node.
    pub(crate) async fn hold(&self, topic: &str) -> Option<Hold> {
        if !self.inner.multi_node {
            return None;
        }
        self.inner.adapter.interest(topic, Interest::Gained);
        let hold = Hold { pubsub: self.clone(), topic: topic.into() };
        if let Some(ready) = self.inner.adapter.ready(topic) {
            if tokio::time::timeout(READY_WAIT, ready).await.is_err() {
                tracing::warn!(topic, "the broker did not confirm the subscription in time; joining anyway");
            }
        }
        Some(hold)
    }

    /// The service of type `T` built on this PubSub, made by `start` on
    /// first use: one per PubSub, shared by every endpoint using it (this
    /// is how presence attaches to a PubSub without the PubSub knowing it).
    /// `start` runs at most once per type, and must not ask this PubSub
    /// for a service itself.
    pub fn service<T: Send + Sync + 'static>(&self, start: impl FnOnce(&PubSub) -> Arc<T>) -> Arc<T> {
        let mut services = self.inner.services.lock();
        let service = match services.get(&TypeId::of::<T>()) {
            Some(service) => service.clone(),
            None => {
                let made: Arc<dyn Any + Send + Sync> = start(self);
                services.insert(TypeId::of::<T>(), made.clone());
                made
            }
        };
        drop(services);
        service.downcast::<T>().unwrap_or_else(|_| unreachable!("services are keyed by their type"))
    }

    /// The service of type `T`, if one was started.
    pub fn service_if_started<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let service = self.inner.services.lock().get(&TypeId::of::<T>()).cloned()?;
        service.downcast::<T>().ok()
    }

    /// Subscribes `outbox` to `topic` as a connection's channel would, with
    /// no intercepts: broadcasts are queued on it as `serializer` encodes
    /// them. For benchmarks and tests that need many subscribers without
    /// sockets.
    #[doc(hidden)]
    pub fn subscribe_outbox(&self, topic: &str, outbox: Arc<Outbox>, serializer: Serializer) {
        self.subscribe(topic, Subscriber::new(outbox.id(), serializer, outbox));
    }

    /// A handle that does not keep the PubSub alive (for a service's own
    /// tasks, which should end with it).
    pub fn downgrade(&self) -> WeakPubSub {
        WeakPubSub(Arc::downgrade(&self.inner))
    }

    /// How many connections on this node subscribe to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.shard(topic).read().get(topic).map_or(0, |s| s.list.len())
    }

    /// The `n` topics with the most subscribers on this node, largest
    /// first (ties by name), among those `keep` accepts: what a dashboard
    /// shows. Computed when asked, by one pass over every topic (each shard
    /// read-locked in turn), keeping only `n` at a time; nothing is counted
    /// in between.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use std::sync::Arc;
    /// use phx_channels::outbox::Outbox;
    /// use phx_channels::protocol::Serializer;
    /// use phx_channels::pubsub::PubSub;
    ///
    /// let pubsub = PubSub::local();
    /// for (topic, subscribers) in [("room:a", 3), ("room:b", 1), ("room:c", 2), ("internal", 5)] {
    ///     for _ in 0..subscribers {
    ///         pubsub.subscribe_outbox(topic, Arc::new(Outbox::new(1024)), Serializer::V2);
    ///     }
    /// }
    /// let largest = pubsub.largest_topics(2, |topic| topic.starts_with("room:"));
    /// assert_eq!(largest, vec![("room:a".to_owned(), 3), ("room:c".to_owned(), 2)]);
    /// ```
    pub fn largest_topics(&self, n: usize, mut keep: impl FnMut(&str) -> bool) -> Vec<(String, usize)> {
        use std::cmp::Reverse;
        if n == 0 {
            return Vec::new();
        }
        // A min-heap of the `n` largest so far: its top is the one to beat.
        let mut largest: std::collections::BinaryHeap<Reverse<(usize, Reverse<Arc<str>>)>> =
            std::collections::BinaryHeap::with_capacity(n + 1);
        for shard in self.inner.shards.iter() {
            let shard = shard.read();
            for (topic, subscribers) in shard.iter() {
                let count = subscribers.list.len();
                // Ties go to the name first in order, whatever the shards' order.
                let beats = largest.len() < n
                    || largest.peek().is_some_and(|Reverse((least, Reverse(name)))| {
                        count > *least || (count == *least && **topic < **name)
                    });
                if beats && keep(topic) {
                    largest.push(Reverse((count, Reverse(topic.clone()))));
                    if largest.len() > n {
                        largest.pop();
                    }
                }
            }
        }
        let mut largest: Vec<(String, usize)> =
            largest.into_iter().map(|Reverse((count, Reverse(topic)))| (topic.to_string(), count)).collect();
        largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        largest
    }

    fn deliver(&self, topic: &str, event: &str, payload: &Payload, except: Option<ConnId>) {
        let shard = self.shard(topic).read();
        let Some(subscribers) = shard.get(topic) else { return };
        // One encoding per serializer, made on first need and shared by
        // every subscriber using that serializer.
        let mut encoded: [Option<Option<Frame>>; 2] = [None, None];
        let mut delivered = 0;
        for sub in &subscribers.list {
            if Some(sub.id) == except {
                continue;
            }
            delivered += 1;
            if sub.wants_raw(event) {
                sub.sink.raw(sub.tag, topic, event, payload);
                continue;
            }
            let frame = encoded[sub.serializer.index()].get_or_insert_with(|| {
                let out = Outgoing::Broadcast { topic, event, payload, position: None };
                match sub.serializer.encode(&out) {
                    Ok(frame) => Some(frame),
                    Err(error) => {
                        // Once per broadcast, not per subscriber.
                        tracing::warn!(topic = ?crate::logging::clip(topic), event = ?crate::logging::clip(event), %error, serializer = ?sub.serializer, "broadcast not delivered to the subscribers of this serializer");
                        None
                    }
                }
            });
            if let Some(frame) = frame {
                sub.sink.frame(frame);
            }
        }
        drop(shard);
        self.inner.fanout.broadcasts.incr();
        self.inner.fanout.deliveries.add(delivered);
    }

    /// What this PubSub counted (in every endpoint's snapshot).
    pub(crate) fn fanout(&self) -> &crate::metrics::Fanout {
        &self.inner.fanout
    }

    /// Subscribes to `topic`. A connection holds at most one subscription
    /// per topic: one with a larger [tag](Subscriber::tag) replaces it,
    /// one with a smaller or equal tag is ignored.
    pub fn subscribe(&self, topic: &str, subscriber: Subscriber) {
        self.subscribe_then(topic, subscriber, || {});
    }

    /// Subscribes, running `then` while no broadcast on the topic can be
    /// delivered: a join reply queued there reaches the client before any
    /// broadcast the subscription brings.
    pub(crate) fn subscribe_then(&self, topic: &str, subscriber: Subscriber, then: impl FnOnce()) -> bool {
        let mut shard = self.shard(topic).write();
        let subscribers = match shard.get_mut(topic) {
            Some(subscribers) => subscribers,
            None => {
                if self.inner.multi_node {
                    self.inner.adapter.interest(topic, Interest::Gained);
                }
                shard.entry(Arc::from(topic)).or_default()
            }
        };
        let installed = match subscribers.position(subscriber.id) {
            Some(at) if subscribers.list[at].tag < subscriber.tag => {
                subscribers.list[at] = subscriber;
                true
            }
            Some(_) => false,
            None => {
                subscribers.push(subscriber);
                true
            }
        };
        then();
        installed
    }

    /// Removes the subscription of `id` to `topic` if it is still the one
    /// tagged `tag`.
    pub fn unsubscribe(&self, topic: &str, id: ConnId, tag: u64) {
        if self.unsubscribe_quietly(topic, id, tag) {
            self.unfollowed(topic);
        }
    }

    /// [`PubSub::unsubscribe`] but for what follows a topic's last
    /// subscriber leaving; `true` if it was the last.
    fn unsubscribe_quietly(&self, topic: &str, id: ConnId, tag: u64) -> bool {
        let mut shard = self.shard(topic).write();
        let Some(subscribers) = shard.get_mut(topic) else { return false };
        if let Some(at) = subscribers.position(id).filter(|&at| subscribers.list[at].tag == tag) {
            subscribers.remove(at);
        }
        if !subscribers.list.is_empty() {
            return false;
        }
        shard.remove(topic);
        if self.inner.multi_node {
            self.inner.adapter.interest(topic, Interest::Lost);
        }
        true
    }
}

/// A join's hold on its topic's interest ([`PubSub::hold`]), released when
/// dropped (by then the join's own subscription holds the topic).
pub(crate) struct Hold {
    pubsub: PubSub,
    topic: Box<str>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.pubsub.inner.adapter.interest(&self.topic, Interest::Lost);
    }
}

/// A [`PubSub`] that may have been dropped.
#[derive(Clone)]
pub struct WeakPubSub(std::sync::Weak<Inner>);

impl WeakPubSub {
    /// The PubSub, if it is still alive.
    pub fn upgrade(&self) -> Option<PubSub> {
        self.0.upgrade().map(|inner| PubSub { inner })
    }
}

impl std::fmt::Debug for WeakPubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakPubSub").finish_non_exhaustive()
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

    fn subscriber(serializer: Serializer, tag: u64) -> (Subscriber, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(1 << 20));
        (Subscriber::new(outbox.id(), serializer, outbox.clone()).tag(tag), outbox)
    }

    fn drain(outbox: &Outbox) -> Vec<Frame> {
        outbox.take().unwrap().into_iter().collect()
    }

    #[test]
    fn encodes_once_per_serializer_and_shares_the_bytes() {
        let pubsub = PubSub::local();
        let subs: Vec<_> =
            [Serializer::V2, Serializer::V2, Serializer::V1].into_iter().map(|s| subscriber(s, 1)).collect();
        for (s, _) in &subs {
            pubsub.subscribe("t", s.clone());
        }
        pubsub.broadcast("t", "e", json!({"a": 1})).unwrap();
        let a = drain(&subs[0].1);
        let b = drain(&subs[1].1);
        let c = drain(&subs[2].1);
        assert_eq!(a[0].as_text(), Some(r#"[null,null,"t","e",{"a":1}]"#));
        // Same allocation, not merely equal bytes.
        assert_eq!(a[0].as_bytes().as_ptr(), b[0].as_bytes().as_ptr());
        assert_eq!(c[0].as_text(), Some(r#"{"topic":"t","event":"e","payload":{"a":1},"ref":null}"#));
    }

    #[test]
    fn broadcast_from_skips_the_sender_and_other_topics_get_nothing() {
        let pubsub = PubSub::local();
        let ((a, a_out), (b, b_out), (other, other_out)) =
            (subscriber(Serializer::V2, 1), subscriber(Serializer::V2, 1), subscriber(Serializer::V2, 1));
        pubsub.subscribe("t", a.clone());
        pubsub.subscribe("t", b);
        pubsub.subscribe("u", other);
        pubsub.broadcast_from(a.id, "t", "e", Payload::empty()).unwrap();
        assert!(drain(&a_out).is_empty());
        assert_eq!(drain(&b_out).len(), 1);
        assert!(drain(&other_out).is_empty());
    }

    #[test]
    fn one_subscription_per_connection_newest_tag_wins() {
        let pubsub = PubSub::local();
        let (old, _out) = subscriber(Serializer::V2, 1);
        let new = old.clone().tag(2);
        pubsub.subscribe("t", old.clone());
        pubsub.subscribe("t", new);
        pubsub.subscribe("t", old.clone());
        assert_eq!(pubsub.subscriber_count("t"), 1);
        // the stale tag cannot remove the newer subscription
        pubsub.unsubscribe("t", old.id, 1);
        assert_eq!(pubsub.subscriber_count("t"), 1);
        pubsub.unsubscribe("t", old.id, 2);
        assert_eq!(pubsub.subscriber_count("t"), 0);
    }

    #[test]
    fn large_topics_stay_consistent_through_joins_and_leaves() {
        let pubsub = PubSub::local();
        let subs: Vec<_> = (0..200).map(|_| subscriber(Serializer::V2, 1)).collect();
        for (s, _) in &subs {
            pubsub.subscribe("big", s.clone());
        }
        // leave every third, resubscribe a newer tag of every fifth
        for (i, (s, _)) in subs.iter().enumerate() {
            if i % 3 == 0 {
                pubsub.unsubscribe("big", s.id, 1);
            } else if i % 5 == 0 {
                pubsub.subscribe("big", s.clone().tag(2));
            }
        }
        let staying = (0..200).filter(|i| i % 3 != 0).count();
        assert_eq!(pubsub.subscriber_count("big"), staying);
        pubsub.broadcast("big", "e", json!({})).unwrap();
        for (i, (_, out)) in subs.iter().enumerate() {
            assert_eq!(drain(out).len(), usize::from(i % 3 != 0), "subscriber {i}");
        }
        for (s, _) in &subs {
            pubsub.unsubscribe("big", s.id, 1);
            pubsub.unsubscribe("big", s.id, 2);
        }
        assert_eq!(pubsub.subscriber_count("big"), 0);
    }

    /// A sink that records what it is handed raw.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u64, String, String)>>, Mutex<usize>);

    impl Sink for Recorder {
        fn frame(&self, _frame: &Frame) {
            *self.1.lock() += 1;
        }
        fn raw(&self, tag: u64, topic: &str, event: &str, _payload: &Payload) {
            self.0.lock().push((tag, topic.to_owned(), event.to_owned()));
        }
    }

    #[test]
    fn raw_events_reach_the_sink_raw_and_the_rest_as_frames() {
        let pubsub = PubSub::local();
        let sink = Arc::new(Recorder::default());
        let id = ConnId::unique();
        pubsub.subscribe("t", Subscriber::new(id, Serializer::V2, sink.clone()).tag(7).raw_events(&["secret"]));
        pubsub.broadcast("t", "secret", json!({})).unwrap();
        pubsub.broadcast("t", "open", json!({})).unwrap();
        assert_eq!(*sink.0.lock(), vec![(7, "t".to_owned(), "secret".to_owned())]);
        assert_eq!(*sink.1.lock(), 1);

        let all = Arc::new(Recorder::default());
        pubsub.subscribe("svc", Subscriber::new(ConnId::unique(), Serializer::V2, all.clone()).raw());
        pubsub.broadcast("svc", "a", json!({})).unwrap();
        pubsub.broadcast("svc", "b", json!({})).unwrap();
        assert_eq!(all.0.lock().len(), 2);
        assert_eq!(*all.1.lock(), 0);
    }

    #[test]
    fn services_are_made_once_per_pubsub() {
        let pubsub = PubSub::local();
        assert!(pubsub.service_if_started::<String>().is_none());
        let a = pubsub.service(|_| Arc::new("first".to_owned()));
        let b = pubsub.service(|_| Arc::new("second".to_owned()));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*b, "first");
        assert!(PubSub::local().service_if_started::<String>().is_none());
    }

    #[tokio::test]
    async fn adapters_see_every_broadcast_made_here() {
        #[derive(Default, Clone)]
        struct Spy(Arc<Mutex<Vec<BroadcastMessage>>>);
        impl Adapter for Spy {
            fn publish(&self, message: &BroadcastMessage) -> Result<(), PublishError> {
                self.0.lock().push(message.clone());
                Ok(())
            }
        }
        let spy = Spy::default();
        let pubsub = PubSub::with_adapter(spy.clone());
        pubsub.broadcast("t", "e", json!({"x": 1})).unwrap();
        pubsub.local_broadcast("t", "local", Payload::empty()).unwrap();
        pubsub.deliver_local(&BroadcastMessage {
            topic: "t".into(),
            event: "remote".into(),
            payload: Payload::empty(),
        });
        let seen = spy.0.lock();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].event, "e");
    }
}
