//! The Redis adapter: broadcasts (and presence gossip) shared by every node
//! that uses the same Redis server and namespace.
//!
//! Built on the `redis` crate (maintained, tokio-native pub/sub). A node
//! subscribes only to the topics it has subscribers for: a Redis channel
//! per topic (`{namespace}:t:{topic}`), or per shard of topics with
//! [`Routing::Shards`]. Publishes are pipelined, many per round trip, and
//! a join waits until Redis confirmed its topic's subscription, so a
//! client told "ok" gets every broadcast sent from any node after that.
//!
//! Across nodes delivery is at most once. While Redis is away, local
//! delivery carries on untouched; broadcasts made meanwhile reach this
//! node only, and are counted ([`BrokerStats::dropped`]) and logged once
//! per outage. While Redis is up but slower than this node, broadcasts are
//! refused before anyone gets them ([`BroadcastError::BrokerBusy`]) rather
//! than acknowledged and dropped. Both connections come back on their own
//! with backoff, and every subscription is renewed.
//!
//! ```no_run
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::pubsub::{PubSub, Redis};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pubsub = PubSub::with_adapter(Redis::new("redis://127.0.0.1:6379")?);
//! # Ok(()) }
//! ```
//!
//! [`BrokerStats::dropped`]: super::BrokerStats::dropped
//! [`BroadcastError::BrokerBusy`]: super::BroadcastError::BrokerBusy

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use super::broker::{engine_adapter, Broker, Key, Names, Outbound, Publish, Subscribe, STALL};
use super::redis_history::{self, PublishArgs};
use super::{History, HistoryRead, Routing};
use crate::protocol::Position;

/// The namespace used unless another is given.
pub(crate) const DEFAULT_NAMESPACE: &str = "channels";

/// Channels per SUBSCRIBE command when many are (re)subscribed at once.
const SUBSCRIBE_CHUNK: usize = 1000;

/// The Redis adapter for [`PubSub`](super::PubSub): one standalone Redis server (or a
/// primary with replicas behind one address).
pub struct Redis {
    client: redis::Client,
    namespace: String,
    routing: Routing,
    broker: Arc<Broker>,
    /// The connection history is read on, made on first use.
    reader: redis_history::Reader<redis::aio::MultiplexedConnection>,
}

impl Redis {
    /// An adapter for the Redis server at `url` (e.g.
    /// `redis://127.0.0.1:6379`), in the default namespace, routing by
    /// topic. Connecting happens in the background, and again whenever the
    /// connection is lost.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(Self::build(client, DEFAULT_NAMESPACE, Routing::Topic))
    }

    fn build(client: redis::Client, namespace: &str, routing: Routing) -> Self {
        let broker = Broker::new("redis", Names::new(namespace, routing, channel_name));
        Redis { client, namespace: namespace.to_owned(), routing, broker, reader: Arc::default() }
    }

    /// Reads a topic's stream ([`Adapter::read_history`](super::Adapter::read_history)).
    fn read_history_at_broker(&self, topic: &str, history: &History, after: Option<&Position>) -> HistoryRead {
        let (client, reader, broker) = (self.client.clone(), self.reader.clone(), self.broker.clone());
        let keys = redis_history::keys(&self.namespace, &broker.channel(topic), topic);
        let (history, after) = (*history, after.cloned());
        Box::pin(async move {
            let connect = || {
                let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(STALL));
                let client = client.clone();
                async move { client.get_multiplexed_async_connection_with_config(&config).await }
            };
            redis_history::read_kept(&reader, connect, &broker, &keys, &history, after.as_ref()).await
        })
    }

    /// Nodes share broadcasts exactly when they share the server and the
    /// namespace (several apps can share one Redis). Default: `channels`.
    #[must_use]
    pub fn namespace(self, namespace: &str) -> Self {
        Self::build(self.client, namespace, self.routing)
    }

    /// How topics map to Redis channels (default [`Routing::Topic`]). Every
    /// node sharing a namespace must use the same routing.
    #[must_use]
    pub fn routing(self, routing: Routing) -> Self {
        Self::build(self.client, &self.namespace, routing)
    }
}

/// `{namespace}:t:{topic}` or `{namespace}:s:{shard}`.
pub(crate) fn channel_name(namespace: &str, key: Key<'_>) -> String {
    match key {
        Key::Topic(topic) => format!("{namespace}:t:{topic}"),
        Key::Shard(shard) => format!("{namespace}:s:{shard}"),
    }
}

engine_adapter!(Redis, |me, local| me.broker.start(
    &local,
    Publisher { client: me.client.clone(), namespace: me.namespace.clone(), broker: me.broker.clone() },
    Subscriber(me.client.clone())
));

struct Publisher {
    client: redis::Client,
    namespace: String,
    broker: Arc<Broker>,
}

impl Publish for Publisher {
    type Conn = redis::aio::MultiplexedConnection;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Self::Conn, Self::Error> {
        // The crate's default (500 ms) would take a pause of Redis for an
        // outage, and drop the batch in flight.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(STALL));
        let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        // For the broadcasts of topics with history (EVALSHA in pipelines).
        redis_history::scripts().0.load_async(&mut conn).await?;
        Ok(conn)
    }

    async fn send(&self, conn: &mut Self::Conn, batch: &[Outbound]) -> Result<usize, Self::Error> {
        let mut pipe = redis::pipe();
        let proposal = self.broker.epoch_proposal();
        for outbound in batch {
            match &outbound.kept {
                None => {
                    pipe.cmd("PUBLISH").arg(&*outbound.channel).arg(&outbound.bytes[..]).ignore();
                }
                Some(kept) => {
                    let keys = redis_history::keys(&self.namespace, &outbound.channel, &kept.topic);
                    let args = PublishArgs {
                        channel: &outbound.channel,
                        head: &outbound.bytes,
                        payload: &kept.payload,
                        event: &kept.event,
                        binary: kept.binary,
                        history: kept.history,
                        epoch: &proposal,
                        command: "PUBLISH",
                    };
                    pipe.add_command(redis_history::publish_command(&keys, &args));
                }
            }
        }
        // Redis takes all of a batch or fails it whole.
        let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
        if replies.iter().any(|reply| redis_history::published_epoch(reply).as_deref() == Some(&*proposal)) {
            self.broker.epoch_taken(&proposal);
        }
        Ok(0)
    }
}

struct Subscriber(redis::Client);

impl Subscribe for Subscriber {
    type Control = redis::aio::PubSubSink;
    type Messages = redis::aio::PubSubStream;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<(Self::Control, Self::Messages), Self::Error> {
        Ok(self.0.get_async_pubsub().await?.split())
    }

    async fn subscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> Result<(), Self::Error> {
        for names in chunked(channels) {
            control.subscribe(&names).await?;
        }
        Ok(())
    }

    async fn unsubscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> Result<(), Self::Error> {
        for names in chunked(channels) {
            control.unsubscribe(&names).await?;
        }
        Ok(())
    }

    async fn next<'a>(&'a self, messages: &'a mut Self::Messages) -> Option<Bytes> {
        let message = messages.next().await?;
        Some(Bytes::copy_from_slice(message.get_payload_bytes()))
    }
}

/// Channel names, [`SUBSCRIBE_CHUNK`] per command.
fn chunked(channels: &[Arc<str>]) -> impl Iterator<Item = Vec<&str>> {
    channels.chunks(SUBSCRIBE_CHUNK).map(|chunk| chunk.iter().map(|c| &**c).collect())
}
