//! What every broker adapter shares (Redis, Redis Cluster, NATS), so each
//! engine only says how to talk to its broker:
//!
//! - the **envelope** a broadcast crosses in ([`envelope`](super::envelope));
//! - **names**: how topics map to broker channels ([`Routing`]);
//! - **interest**: which broker channels this node needs right now, kept
//!   as counts and reconciled against what the broker has confirmed, so a
//!   node receives only the topics it has subscribers for, and a join can
//!   wait for its topic's subscription;
//! - the bounded **publish queue**, drained in batches (one round trip per
//!   batch, not per broadcast), which pushes back ([`PublishError::Busy`])
//!   instead of dropping what it acknowledged, and keeps what it holds
//!   through a short outage ([`RETAIN`]); a broker that stalls but answers
//!   within [`STALL`] is slow, not away;
//! - **outages**: what could not reach other nodes while the broker was
//!   away is counted, and logged once when the outage starts and once when
//!   it ends, never once per message.
//!
//! An engine implements [`Publish`] and [`Subscribe`]; [`publisher`] and
//! [`subscriber`] are the loops around them (connect, back off, reconnect,
//! resubscribe).

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::envelope::{decode_any, encode, encode_kept, node_id, Decoded, NodeId};
use super::history::Epochs;
use super::{BroadcastMessage, BrokerStats, History, Interest as Change, PubSub, PublishError, Ready, WeakPubSub};
use crate::outbox::ConnId;

/// How topics map to broker channels (Redis channels, NATS subjects).
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::pubsub::Routing;
///
/// // the default: a node receives exactly the topics it has subscribers for
/// assert_eq!(Routing::default(), Routing::Topic);
/// // at most 256 broker subscriptions per node, whatever the topics
/// let _bounded = Routing::Shards(256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Routing {
    /// One broker channel per topic: a node subscribes to each topic it has
    /// subscribers for, and receives nothing else.
    #[default]
    Topic,
    /// Topics hashed over this many broker channels: a node subscribes to
    /// the shards holding its topics (at most this many subscriptions), and
    /// receives the other topics of those shards too, to drop them.
    Shards(u16),
}

/// What a broker channel is named after.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    /// A topic ([`Routing::Topic`]).
    Topic(&'a str),
    /// A shard of topics ([`Routing::Shards`]).
    Shard(u16),
}

/// Topic → broker channel, for one engine's naming rules.
pub(crate) struct Names {
    namespace: String,
    routing: Routing,
    /// The engine's name for a key in a namespace.
    format: fn(&str, Key<'_>) -> String,
    /// For an engine whose topics with history travel elsewhere (NATS:
    /// JetStream): the channel of such a topic, per topic whatever the
    /// routing.
    kept: Option<fn(&str, &str) -> String>,
}

impl Names {
    pub(crate) fn new(namespace: &str, routing: Routing, format: fn(&str, Key<'_>) -> String) -> Self {
        Names { namespace: namespace.to_owned(), routing, format, kept: None }
    }

    /// Topics with history go to `kept(namespace, topic)`.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn with_kept(mut self, kept: fn(&str, &str) -> String) -> Self {
        self.kept = Some(kept);
        self
    }

    pub(crate) fn channel(&self, topic: &str) -> Arc<str> {
        let key = match self.routing {
            Routing::Topic => Key::Topic(topic),
            Routing::Shards(n) => Key::Shard(shard_of(topic, n)),
        };
        (self.format)(&self.namespace, key).into()
    }
}

/// The shard of a topic: FNV-1a, so every node and every version agrees.
fn shard_of(topic: &str, shards: u16) -> u16 {
    let hash = topic.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    // In range by the modulo.
    #[allow(clippy::cast_possible_truncation)]
    let shard = (hash % u64::from(shards.max(1))) as u16;
    shard
}

// ---------------------------------------------------------------- interest

/// Which broker channels this node needs (counts of topics and waiting
/// joins per channel), and which the broker has confirmed.
pub(crate) struct Interest {
    state: Mutex<InterestState>,
    /// Wakes the subscriber task: wanted channels changed.
    changed: Notify,
    /// Wakes joins waiting in [`Interest::ready`].
    confirmed: Notify,
}

#[derive(Default)]
struct InterestState {
    wanted: HashMap<Arc<str>, u32>,
    /// Channels whose wanted-ness flipped since the subscriber last looked.
    dirty: HashSet<Arc<str>>,
    /// Subscribed at the broker, as far as the subscriber task knows.
    subscribed: HashSet<Arc<str>>,
    /// Whether the subscriber task is connected and caught up.
    up: bool,
}

impl Interest {
    fn new() -> Self {
        Interest { state: Mutex::default(), changed: Notify::new(), confirmed: Notify::new() }
    }

    fn change(&self, channel: Arc<str>, change: Change) {
        let mut state = self.state.lock();
        let flipped = match change {
            Change::Gained => {
                let count = state.wanted.entry(channel.clone()).or_insert(0);
                *count += 1;
                *count == 1
            }
            Change::Lost => match state.wanted.get_mut(&channel) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    state.wanted.remove(&channel);
                    true
                }
                None => false,
            },
        };
        if flipped {
            state.dirty.insert(channel);
            drop(state);
            self.changed.notify_one();
        }
    }

    fn settled(&self, channel: &str) -> bool {
        let state = self.state.lock();
        !state.up || state.subscribed.contains(channel) || !state.wanted.contains_key(channel)
    }

    fn ready(self: &Arc<Self>, channel: Arc<str>) -> Option<Ready> {
        if self.settled(&channel) {
            return None;
        }
        let me = self.clone();
        Some(Box::pin(async move {
            loop {
                let confirmed = me.confirmed.notified();
                tokio::pin!(confirmed);
                confirmed.as_mut().enable();
                if me.settled(&channel) {
                    return;
                }
                confirmed.await;
            }
        }))
    }

    /// (Re)connected: everything wanted is to be subscribed afresh.
    pub(crate) fn resubscribe_all(&self) -> Vec<Arc<str>> {
        let mut state = self.state.lock();
        state.dirty.clear();
        state.subscribed.clear();
        state.wanted.keys().cloned().collect()
    }

    /// Waits for changes: channels to subscribe, and to unsubscribe.
    pub(crate) async fn changes(&self) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
        loop {
            {
                let mut state = self.state.lock();
                if !state.dirty.is_empty() {
                    let dirty = std::mem::take(&mut state.dirty);
                    let (add, remove) = dirty.into_iter().partition(|c| state.wanted.contains_key(c));
                    return (add, remove);
                }
            }
            self.changed.notified().await;
        }
    }

    /// The broker confirmed these subscriptions and unsubscriptions; the
    /// subscriber is caught up.
    pub(crate) fn confirm(&self, added: &[Arc<str>], removed: &[Arc<str>]) {
        let mut state = self.state.lock();
        for channel in removed {
            state.subscribed.remove(channel);
        }
        state.subscribed.extend(added.iter().cloned());
        state.up = true;
        drop(state);
        self.confirmed.notify_waiters();
    }

    /// The subscriber lost its broker: nothing is confirmed, and joins do
    /// not wait for a broker that is away.
    pub(crate) fn down(&self) {
        let mut state = self.state.lock();
        state.up = false;
        state.subscribed.clear();
        drop(state);
        self.confirmed.notify_waiters();
    }

    fn subscriptions(&self) -> usize {
        self.state.lock().subscribed.len()
    }

    fn is_up(&self) -> bool {
        self.state.lock().up
    }
}

// ---------------------------------------------------------------- outages

/// One side of an engine (publishing or subscribing): logs an outage once
/// when it starts and once when it ends.
pub(crate) struct Outage {
    what: &'static str,
    engine: &'static str,
    since: Mutex<Option<Instant>>,
    ever_up: AtomicBool,
}

impl Outage {
    fn new(engine: &'static str, what: &'static str) -> Self {
        Outage { what, engine, since: Mutex::new(None), ever_up: AtomicBool::new(false) }
    }

    /// Starts an outage, unless one is going on; `true` if it started.
    fn fail(&self, error: &dyn Display) -> bool {
        let mut since = self.since.lock();
        if since.is_some() {
            return false;
        }
        *since = Some(Instant::now());
        let (engine, what) = (self.engine, self.what);
        tracing::warn!(%error, "{engine} unavailable for {what}; retrying with backoff (logged once per outage)");
        true
    }

    /// Ends an outage; how long it lasted, if one was going on after the
    /// broker had been reached before (a comeback, not the first connect).
    fn recover(&self) -> Option<Duration> {
        let started = self.since.lock().take();
        let was_up = self.ever_up.swap(true, Ordering::Relaxed);
        started.filter(|_| was_up).map(|since| since.elapsed())
    }

    fn is_on(&self) -> bool {
        self.since.lock().is_some()
    }

    /// How long the current outage has lasted, if one is going on.
    fn lasted(&self) -> Option<Duration> {
        self.since.lock().map(|since| since.elapsed())
    }
}

// ---------------------------------------------------------------- shared

/// Broadcasts waiting to be published; past this, broadcasts are refused
/// ([`PublishError::Busy`]) while the broker is up.
pub(crate) const QUEUE: usize = 16_384;

/// Publishes sent to the broker in one round trip, at most.
pub(crate) const BATCH: usize = 1024;

/// How long broadcasts queued when the broker went away wait for it to
/// come back, before they are dropped (and counted).
pub(crate) const RETAIN: Duration = Duration::from_secs(10);

/// How long a broker may take to answer before it counts as away: a broker
/// that stalls (a slow disk, a pause) but answers within this is up, and
/// broadcasts are pushed back meanwhile rather than dropped.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) const STALL: Duration = Duration::from_secs(5);

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One broadcast on its way to the broker.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) channel: Arc<str>,
    /// The envelope; for a broadcast of a topic with history, its part
    /// before the position (the broker writes the position in).
    pub(crate) bytes: Bytes,
    /// A broadcast of a topic whose history the broker keeps.
    pub(crate) kept: Option<Box<KeptOut>>,
}

/// What the broker needs to keep a broadcast and give it its position
/// (the topic, event and kind for Redis's stream entry; JetStream takes
/// the envelope as it is).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct KeptOut {
    pub(crate) topic: String,
    pub(crate) event: String,
    pub(crate) binary: bool,
    /// The envelope's part after the position: the payload.
    pub(crate) payload: Bytes,
    pub(crate) history: History,
}

/// The engine-independent half of a broker adapter: an engine's
/// [`Adapter`](super::Adapter) methods delegate here.
pub(crate) struct Broker {
    engine: &'static str,
    node: NodeId,
    names: Names,
    interest: Arc<Interest>,
    /// Counted here and in the application's `metrics` recorder.
    counters: crate::metrics::Broker,
    publishing: Outage,
    subscribing: Outage,
    /// Broadcasts dropped so far when the current publish outage started.
    dropped_at_outage: AtomicU64,
    busy: AtomicBool,
    queue: mpsc::Sender<Outbound>,
    queued: Mutex<Option<mpsc::Receiver<Outbound>>>,
    /// Epochs for the streams this node finds without one (Redis: JetStream
    /// names its own).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    epochs: Epochs,
    /// The node's PubSub, to tell topics with history apart.
    local: std::sync::OnceLock<WeakPubSub>,
    /// The topics (and their history) of the channels of topics with
    /// history this node is subscribed to, for engines that keep them
    /// elsewhere ([`Names::with_kept`]).
    kept_channels: Mutex<HashMap<Arc<str>, (String, History)>>,
    /// The epoch this node proposes for a stream found without one, made
    /// anew once a stream took it (so no epoch is used twice).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    proposal: Mutex<Arc<str>>,
}

impl Broker {
    pub(crate) fn new(engine: &'static str, names: Names) -> Arc<Self> {
        let (queue, queued) = mpsc::channel(QUEUE);
        let epochs = Epochs::new();
        let proposal = Mutex::new(epochs.make());
        Arc::new(Broker {
            engine,
            node: node_id(),
            names,
            interest: Arc::new(Interest::new()),
            counters: crate::metrics::Broker::default(),
            publishing: Outage::new(engine, "publishing"),
            subscribing: Outage::new(engine, "subscribing"),
            dropped_at_outage: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            queue,
            queued: Mutex::new(Some(queued)),
            epochs,
            proposal,
            local: std::sync::OnceLock::new(),
            kept_channels: Mutex::default(),
        })
    }

    /// The broker channel of `topic`: its own, for a topic with history on
    /// an engine that keeps those elsewhere.
    fn channel_of(&self, topic: &str) -> Arc<str> {
        if let Some(kept) = self.names.kept {
            let local = self.local.get().and_then(WeakPubSub::upgrade);
            if local.is_some_and(|p| p.history_of(topic).is_some()) {
                return kept(&self.names.namespace, topic).into();
            }
        }
        self.names.channel(topic)
    }

    /// The topic and history of a channel of a topic with history, for an
    /// engine that keeps them elsewhere.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn kept_channel(&self, channel: &str) -> Option<(String, History)> {
        self.kept_channels.lock().get(channel).cloned()
    }

    /// The epoch to propose for a stream found without one. A node never
    /// proposes an epoch a stream took before (a broker that lost its data
    /// must not get an old epoch back): a fresh one is made whenever the
    /// broker says it took the proposal ([`Broker::epoch_taken`]), and a
    /// fresh one per process.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn epoch_proposal(&self) -> Arc<str> {
        self.proposal.lock().clone()
    }

    /// A stream took `epoch`: this node proposes another from now on.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn epoch_taken(&self, epoch: &str) {
        let mut proposal = self.proposal.lock();
        if **proposal == *epoch {
            *proposal = self.epochs.make();
        }
    }

    /// The broker channel of `topic`.
    pub(crate) fn channel(&self, topic: &str) -> Arc<str> {
        self.channel_of(topic)
    }

    /// [`Adapter::publish_kept`](super::Adapter::publish_kept): refused while
    /// the broker is away (it gives the position).
    pub(crate) fn publish_kept(
        &self,
        message: &BroadcastMessage,
        history: &History,
        except: Option<ConnId>,
    ) -> Result<(), PublishError> {
        if self.publishing.is_on() {
            self.counters.refused.add(1);
            return Err(PublishError::Unavailable);
        }
        let (head, payload) = encode_kept(&self.node, message, except);
        let kept = KeptOut {
            topic: message.topic.clone(),
            event: message.event.clone(),
            binary: matches!(message.payload, crate::protocol::Payload::Binary(_)),
            payload,
            history: *history,
        };
        let outbound = Outbound { channel: self.channel_of(&message.topic), bytes: head, kept: Some(Box::new(kept)) };
        self.enqueue(outbound)
    }

    fn enqueue(&self, outbound: Outbound) -> Result<(), PublishError> {
        match self.queue.try_send(outbound) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.refused.add(1);
                if !self.busy.swap(true, Ordering::Relaxed) {
                    let engine = self.engine;
                    tracing::warn!(queued = QUEUE, "{engine} cannot keep up: broadcasts are refused until its queue drains (logged once per episode)");
                }
                Err(PublishError::Busy)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.dropped.add(1);
                Ok(())
            }
        }
    }

    /// [`Adapter::publish`](super::Adapter::publish).
    pub(crate) fn publish(&self, message: &BroadcastMessage) -> Result<(), PublishError> {
        if self.publishing.is_on() {
            // At most once across nodes: while the broker is away, a
            // broadcast reaches this node's subscribers only.
            self.counters.dropped.add(1);
            return Ok(());
        }
        let outbound =
            Outbound { channel: self.names.channel(&message.topic), bytes: encode(&self.node, message), kept: None };
        self.enqueue(outbound)
    }

    /// [`Adapter::interest`](super::Adapter::interest).
    pub(crate) fn interest(&self, topic: &str, change: Change) {
        let channel = self.channel_of(topic);
        if self.names.kept.is_some() && change == Change::Gained {
            if let Some(history) = self.local.get().and_then(WeakPubSub::upgrade).and_then(|p| p.history_of(topic)) {
                self.kept_channels.lock().entry(channel.clone()).or_insert_with(|| (topic.to_owned(), history));
            }
        }
        self.interest.change(channel, change);
    }

    /// The broker no longer holds a subscription to `channel`.
    pub(crate) fn forget_channel(&self, channel: &str) {
        if self.names.kept.is_some() {
            self.kept_channels.lock().remove(channel);
        }
    }

    /// [`Adapter::ready`](super::Adapter::ready).
    pub(crate) fn ready(&self, topic: &str) -> Option<Ready> {
        self.interest.ready(self.channel_of(topic))
    }

    /// [`Adapter::is_receiving`](super::Adapter::is_receiving).
    pub(crate) fn is_receiving(&self) -> bool {
        self.interest.is_up()
    }

    /// [`Adapter::stats`](super::Adapter::stats).
    pub(crate) fn stats(&self) -> BrokerStats {
        let c = &self.counters;
        BrokerStats {
            published: c.published.get(),
            received: c.received.get(),
            dropped: c.dropped.get(),
            refused: c.refused.get(),
            reconnects: c.reconnects.get(),
            subscriptions: self.interest.subscriptions() as u64,
        }
    }

    /// Exports how many subscriptions the broker confirmed, after a change.
    fn count_subscriptions(&self) {
        self.counters.subscriptions.set(self.interest.subscriptions() as u64);
    }

    /// Starts the engine's publisher and subscriber loops, once.
    pub(crate) fn start(self: &Arc<Self>, local: &PubSub, publish: impl Publish, subscribe: impl Subscribe) {
        let _ = self.local.set(local.downgrade());
        let Some(queued) = self.queued.lock().take() else { return };
        tokio::spawn(publisher(self.clone(), publish, queued));
        tokio::spawn(subscriber(self.clone(), subscribe, local.downgrade()));
    }

    /// Hands a message from the broker to this node's subscribers.
    pub(crate) fn deliver(&self, local: &PubSub, bytes: &[u8]) {
        match decode_any(bytes, &self.node) {
            Ok(Some(Decoded::Plain(message))) => {
                self.counters.received.add(1);
                local.deliver_local(&message);
            }
            Ok(Some(Decoded::Kept { message, position, except })) => {
                self.counters.received.add(1);
                local.deliver_kept(&message, &position, except);
            }
            Ok(None) => {}
            Err(error) => {
                let engine = self.engine;
                tracing::warn!(%error, "malformed message from {engine} ignored");
            }
        }
    }

    fn lost(&self, n: usize) {
        self.counters.dropped.add(n as u64);
    }

    fn publish_failed(&self, error: &dyn Display) {
        if self.publishing.fail(error) {
            self.dropped_at_outage.store(self.counters.dropped.get(), Ordering::Relaxed);
        }
    }

    fn publish_recovered(&self) {
        if let Some(lasted) = self.publishing.recover() {
            self.counters.reconnects.add(1);
            let dropped = self.counters.dropped.get() - self.dropped_at_outage.load(Ordering::Relaxed);
            let engine = self.engine;
            tracing::warn!(
                ?lasted,
                dropped,
                "{engine} back for publishing; broadcasts made meanwhile reached this node only"
            );
        }
    }
}

/// The [`Adapter`](super::Adapter) and `Debug` of an engine built on
/// [`Broker`] (a struct with `broker`, `namespace` and `routing` fields):
/// each engine says only how it starts its publisher and subscriber, the
/// rest is the broker core's.
macro_rules! engine_adapter {
    ($engine:ident, |$me:ident, $local:ident| $start:expr) => {
        impl $crate::pubsub::Adapter for $engine {
            fn publish(&self, message: &$crate::pubsub::BroadcastMessage) -> Result<(), $crate::pubsub::PublishError> {
                self.broker.publish(message)
            }

            fn start(&self, $local: $crate::pubsub::PubSub) {
                let $me = self;
                $start
            }

            fn interest(&self, topic: &str, change: $crate::pubsub::Interest) {
                self.broker.interest(topic, change);
            }

            fn ready(&self, topic: &str) -> Option<$crate::pubsub::Ready> {
                self.broker.ready(topic)
            }

            fn stats(&self) -> Option<$crate::pubsub::BrokerStats> {
                Some(self.broker.stats())
            }

            fn is_receiving(&self) -> bool {
                self.broker.is_receiving()
            }

            fn keeps_history(&self) -> bool {
                true
            }

            fn publish_kept(
                &self,
                message: &$crate::pubsub::BroadcastMessage,
                history: &$crate::pubsub::History,
                except: Option<$crate::outbox::ConnId>,
            ) -> Result<(), $crate::pubsub::PublishError> {
                self.broker.publish_kept(message, history, except)
            }

            fn read_history(
                &self,
                topic: &str,
                history: &$crate::pubsub::History,
                after: Option<&$crate::protocol::Position>,
            ) -> $crate::pubsub::HistoryRead {
                self.read_history_at_broker(topic, history, after)
            }
        }

        impl std::fmt::Debug for $engine {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($engine))
                    .field("namespace", &self.namespace)
                    .field("routing", &self.routing)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use engine_adapter;

/// How an engine publishes.
pub(crate) trait Publish: Send + Sync + 'static {
    /// A connection to publish on.
    type Conn: Send;
    /// What goes wrong.
    type Error: Display + Send;
    /// Connects (or reconnects).
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;
    /// Publishes a batch in one round trip, in order; `Ok` once the broker
    /// took all of it, but for the broadcasts it refuses one by one while
    /// staying connected (over its size limit, say): `Ok(refused)`, those
    /// counted as dropped, the rest as published.
    fn send(
        &self,
        conn: &mut Self::Conn,
        batch: &[Outbound],
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;
}

/// How an engine subscribes: a control half and a stream of messages, so
/// both can be used at once.
pub(crate) trait Subscribe: Send + Sync + 'static {
    /// Subscribes and unsubscribes.
    type Control: Send;
    /// Yields messages.
    type Messages: Send;
    /// What goes wrong.
    type Error: Display + Send;
    /// Connects (or reconnects), with no subscriptions.
    fn connect(&self) -> impl Future<Output = Result<(Self::Control, Self::Messages), Self::Error>> + Send;
    /// Subscribes to channels; `Ok` once the broker confirmed them.
    fn subscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;
    /// Unsubscribes from channels.
    fn unsubscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;
    /// The next message's bytes; `None` when the connection is lost.
    fn next<'a>(&'a self, messages: &'a mut Self::Messages) -> impl Future<Output = Option<Bytes>> + Send + 'a;
}

/// Publishes queued broadcasts in batches; while the broker is away,
/// counts what arrives as dropped.
async fn publisher<P: Publish>(broker: Arc<Broker>, engine: P, mut queued: mpsc::Receiver<Outbound>) {
    let mut backoff = BACKOFF_START;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut conn = match engine.connect().await {
            Ok(conn) => conn,
            Err(error) => {
                broker.publish_failed(&error);
                // What was acknowledged before the broker went away waits for
                // it a while (a restart, a failover); past that it is stale.
                if broker.publishing.lasted().is_some_and(|lasted| lasted > RETAIN) {
                    broker.lost(drain(&mut queued));
                }
                if queued.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        broker.publish_recovered();
        backoff = BACKOFF_START;
        loop {
            batch.clear();
            if queued.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            match engine.send(&mut conn, &batch).await {
                Ok(refused) => {
                    let refused = refused.min(batch.len());
                    broker.lost(refused);
                    broker.counters.published.add((batch.len() - refused) as u64);
                    broker.busy.store(false, Ordering::Relaxed);
                }
                Err(error) => {
                    // The batch in flight may or may not have reached the
                    // broker: count it as not.
                    broker.publish_failed(&error);
                    broker.lost(batch.len());
                    break;
                }
            }
        }
    }
}

/// Drops everything queued, returning how much.
fn drain(queued: &mut mpsc::Receiver<Outbound>) -> usize {
    let mut n = 0;
    while queued.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// Keeps this node subscribed to the channels it needs and delivers what
/// arrives; resubscribes everything after a reconnect.
async fn subscriber<S: Subscribe>(broker: Arc<Broker>, engine: S, local: WeakPubSub) {
    let mut backoff = BACKOFF_START;
    loop {
        if local.upgrade().is_none() {
            return;
        }
        let (mut control, mut messages) = match engine.connect().await {
            Ok(session) => session,
            Err(error) => {
                broker.subscribing.fail(&error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let all = broker.interest.resubscribe_all();
        if let Err(error) = engine.subscribe(&mut control, &all).await {
            broker.subscribing.fail(&error);
            tokio::time::sleep(backoff).await;
            continue;
        }
        broker.interest.confirm(&all, &[]);
        broker.count_subscriptions();
        if let Some(lasted) = broker.subscribing.recover() {
            broker.counters.reconnects.add(1);
            let engine = broker.engine;
            tracing::warn!(
                ?lasted,
                channels = all.len(),
                "{engine} back for subscribing; broadcasts from other nodes flow again"
            );
            // What was missed meanwhile on topics with history: their
            // clients that take positions rejoin, and recover it.
            if let Some(local) = local.upgrade() {
                local.history_interrupted();
            }
        }
        backoff = BACKOFF_START;
        let lost: String = loop {
            tokio::select! {
                message = engine.next(&mut messages) => {
                    let Some(bytes) = message else { break "the subscription connection closed".to_owned() };
                    let Some(local) = local.upgrade() else { return };
                    broker.deliver(&local, &bytes);
                }
                (add, remove) = broker.interest.changes() => {
                    if !remove.is_empty() {
                        if let Err(error) = engine.unsubscribe(&mut control, &remove).await {
                            break error.to_string();
                        }
                        for channel in &remove {
                            broker.forget_channel(channel);
                        }
                    }
                    if !add.is_empty() {
                        if let Err(error) = engine.subscribe(&mut control, &add).await {
                            break error.to_string();
                        }
                    }
                    broker.interest.confirm(&add, &remove);
                    broker.count_subscriptions();
                }
            }
        };
        broker.interest.down();
        broker.count_subscriptions();
        broker.subscribing.fail(&lost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        assert_eq!(shard_of("comments:1", 64), shard_of("comments:1", 64));
        assert!((0..1000).all(|i| shard_of(&format!("t{i}"), 7) < 7));
        let used: HashSet<u16> = (0..1000).map(|i| shard_of(&format!("t{i}"), 16)).collect();
        assert_eq!(used.len(), 16, "1000 topics spread over every shard");
        let names = Names::new("ns", Routing::Shards(4), |ns, key| match key {
            Key::Topic(t) => format!("{ns}:t:{t}"),
            Key::Shard(s) => format!("{ns}:s:{s}"),
        });
        assert!(names.channel("x").starts_with("ns:s:"));
    }

    #[tokio::test]
    async fn interest_is_counted_and_joins_wait_for_confirmation() {
        let interest = Arc::new(Interest::new());
        let a: Arc<str> = "a".into();
        // broker away: nobody waits
        interest.change(a.clone(), Change::Gained);
        assert!(interest.ready(a.clone()).is_none());
        assert_eq!(interest.resubscribe_all(), vec![a.clone()]);
        interest.confirm(std::slice::from_ref(&a), &[]);
        assert!(interest.ready(a.clone()).is_none());

        // a second reason for `a` flips nothing; a new channel waits
        interest.change(a.clone(), Change::Gained);
        let b: Arc<str> = "b".into();
        interest.change(b.clone(), Change::Gained);
        let ready = interest.ready(b.clone()).expect("b is not confirmed yet");
        let waiting = tokio::spawn(ready);
        let (add, remove) = interest.changes().await;
        assert_eq!((add.clone(), remove), (vec![b.clone()], vec![]));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        interest.confirm(&add, &[]);
        waiting.await.unwrap();

        // `a` is dropped only when its last reason goes
        interest.change(a.clone(), Change::Lost);
        interest.change(b.clone(), Change::Lost);
        let (add, remove) = interest.changes().await;
        assert_eq!((add, remove), (vec![], vec![b.clone()]));
        interest.change(a.clone(), Change::Lost);
        let (_, remove) = interest.changes().await;
        assert_eq!(remove, vec![a]);
    }
}
