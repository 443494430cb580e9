//! The Redis Cluster adapter: broadcasts (and presence gossip) shared by
//! every node that uses the same Redis Cluster (Redis ≥ 7) and namespace.
//!
//! Built on the `redis` crate's async cluster client and Redis 7's
//! **sharded** pub/sub (`SPUBLISH` / `SSUBSCRIBE`): a channel lives on the
//! master owning its slot, so publishing and fan-out spread over the
//! masters instead of every message crossing every node of the cluster, as
//! plain `PUBLISH` does. Channels are named as with [`Redis`]
//! (`{namespace}:t:{topic}`, or `{namespace}:s:{shard}` with
//! [`Routing::Shards`]), without hash tags, so different topics land on
//! different slots. A node subscribes only to the topics it has
//! subscribers for; publishes are pipelined, one pipeline per slot and all
//! slots at once per round trip; a join waits until the cluster confirmed
//! its topic's subscription, so a client told "ok" gets every broadcast
//! sent from any node after that.
//!
//! Across nodes delivery is at most once. While the cluster is away, or
//! one of its masters is failing over, local delivery carries on
//! untouched; broadcasts that could not reach the cluster meanwhile reach
//! this node only, and are counted ([`BrokerStats::dropped`]) and logged
//! once per outage. While the cluster is up but slower than this node,
//! broadcasts are refused before anyone gets them
//! ([`BroadcastError::BrokerBusy`]) rather than acknowledged and dropped.
//! After a connection to any cluster node is lost, and whenever the cluster
//! moves a subscribed channel's slot away, this node reconnects (with
//! backoff) once the cluster says every slot is served and this node
//! reaches every master, and renews every subscription on the masters
//! that own them then; until then the cluster counts as away, for all
//! topics (a failover takes about the cluster's node timeout, plus an
//! election).
//!
//! ```no_run
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::pubsub::{PubSub, RedisCluster};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = RedisCluster::new(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])?;
//! let pubsub = PubSub::with_adapter(cluster.namespace("chat"));
//! # Ok(()) }
//! ```
//!
//! [`Redis`]: super::Redis
//! [`BrokerStats::dropped`]: super::BrokerStats::dropped
//! [`BroadcastError::BrokerBusy`]: super::BroadcastError::BrokerBusy

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{ConnectionInfo, ErrorKind, IntoConnectionInfo, PushInfo, PushKind, RedisError, ServerErrorKind, Value};
use tokio::sync::mpsc;

use super::broker::{engine_adapter, Broker, Names, Outbound, Publish, Subscribe, STALL};
use super::redis::{channel_name, DEFAULT_NAMESPACE};
use super::redis_history::{self, PublishArgs};
use super::{History, HistoryRead, Routing};
use crate::protocol::Position;

/// Commands in flight at once: a slot's (un)subscribe, a master's publishes.
const CONCURRENT: usize = 64;

/// How long one node may take to accept a connection, or to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = STALL;

/// Retries inside the client (after a `MOVED`, a lost node): enough to
/// follow a slot that moved, few enough that a master that is gone turns
/// into an outage in well under a second rather than blocking the
/// publisher (and filling its queue) for the client's default ~20 s.
const RETRIES: u32 = 2;
const RETRY_WAIT_MS: (u64, u64) = (20, 200);

/// The Redis Cluster adapter for [`PubSub`](super::PubSub), on sharded pub/sub
/// (Redis ≥ 7).
pub struct RedisCluster {
    seeds: Arc<[ConnectionInfo]>,
    namespace: String,
    routing: Routing,
    broker: Arc<Broker>,
    /// The connection history is read on, made on first use.
    reader: redis_history::Reader<ClusterConnection>,
}

impl RedisCluster {
    /// An adapter for the cluster reachable at any of `seeds` (node URLs,
    /// e.g. `redis://127.0.0.1:7000`; the other nodes are discovered), in
    /// the default namespace, routing by topic. Connecting happens in the
    /// background, and again whenever a connection is lost. Fails only for
    /// seeds that are not valid Redis URLs, or none.
    pub fn new(seeds: &[&str]) -> Result<Self, redis::RedisError> {
        let seeds = seeds.iter().map(|seed| seed.into_connection_info()).collect::<Result<Vec<_>, _>>()?;
        // Checks what only the builder checks (none, mixed credentials).
        builder(&seeds).build()?;
        Ok(Self::build(seeds.into(), DEFAULT_NAMESPACE, Routing::Topic))
    }

    fn build(seeds: Arc<[ConnectionInfo]>, namespace: &str, routing: Routing) -> Self {
        let broker = Broker::new("redis cluster", Names::new(namespace, routing, channel_name));
        RedisCluster { seeds, namespace: namespace.to_owned(), routing, broker, reader: Arc::default() }
    }

    /// Reads a topic's stream on the master of its slot
    /// ([`Adapter::read_history`](super::Adapter::read_history)).
    fn read_history_at_broker(&self, topic: &str, history: &History, after: Option<&Position>) -> HistoryRead {
        let (seeds, reader, broker) = (self.seeds.clone(), self.reader.clone(), self.broker.clone());
        let keys = redis_history::keys(&self.namespace, &broker.channel(topic), topic);
        let (history, after) = (*history, after.cloned());
        Box::pin(async move {
            let connect = || {
                let seeds = seeds.clone();
                async move { builder(&seeds).build()?.get_async_connection().await }
            };
            redis_history::read_kept(&reader, connect, &broker, &keys, &history, after.as_ref()).await
        })
    }

    /// Nodes share broadcasts exactly when they share the cluster and the
    /// namespace (several apps can share one cluster). Default: `channels`.
    #[must_use]
    pub fn namespace(self, namespace: &str) -> Self {
        Self::build(self.seeds, namespace, self.routing)
    }

    /// How topics map to sharded channels (default [`Routing::Topic`]).
    /// Every node sharing a namespace must use the same routing.
    #[must_use]
    pub fn routing(self, routing: Routing) -> Self {
        Self::build(self.seeds, &self.namespace, routing)
    }
}

engine_adapter!(RedisCluster, |me, local| me.broker.start(
    &local,
    Publisher { seeds: me.seeds.clone(), namespace: me.namespace.clone(), broker: me.broker.clone() },
    Subscriber(me.seeds.clone())
));

fn builder(seeds: &[ConnectionInfo]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.iter().cloned())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(RETRIES)
        .min_retry_wait(RETRY_WAIT_MS.0)
        .max_retry_wait(RETRY_WAIT_MS.1)
}

const SLOTS: usize = 16_384;

/// The cluster's slot of a channel, as the server computes it.
fn slot(channel: &[u8]) -> u16 {
    redis_history::slot(channel)
}

/// Who serves a slot, as the cluster said when this connection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Nobody,
    /// A master, by its index in [`Owners::masters`].
    Master(u16),
    /// A master the cluster gives no usable address for: left to the
    /// client's own slot routing.
    Unaddressed,
}

/// Slot → master.
///
/// Publishes are addressed to masters through this rather than through the
/// client's slot routing: when its connection to a slot's master is down,
/// the client falls back to one of the master's replicas, and a replica
/// takes `SPUBLISH` but hands it to its own subscribers only, so the
/// broadcast would be counted as published and reach nobody.
struct Owners {
    /// Host and port, as `CLUSTER SLOTS` gives them (and the client names
    /// its connections).
    masters: Vec<(String, u16)>,
    slots: Vec<Owner>,
}

impl Owners {
    /// From a `CLUSTER SLOTS` reply; `None` if a slot has no master.
    fn parse(reply: &Value) -> Option<Self> {
        let mut owners = Owners { masters: Vec::new(), slots: vec![Owner::Nobody; SLOTS] };
        let Value::Array(ranges) = reply else { return None };
        for range in ranges {
            let Value::Array(range) = range else { continue };
            let (Some(Value::Int(lo)), Some(Value::Int(hi))) = (range.first(), range.get(1)) else { continue };
            let (Ok(lo), Ok(hi)) = (usize::try_from(*lo), usize::try_from(*hi)) else { continue };
            if lo > hi || hi >= SLOTS {
                continue;
            }
            let address = match range.get(2) {
                Some(Value::Array(node)) => match (node.first(), node.get(1)) {
                    (Some(Value::BulkString(host)), Some(Value::Int(port))) => {
                        let host = String::from_utf8_lossy(host);
                        // "" or a wildcard means "the node you asked", "?" an
                        // unknown one: no address to go by.
                        let usable = !matches!(&*host, "" | "?" | "0.0.0.0" | "::");
                        u16::try_from(*port).ok().filter(|_| usable).map(|port| (host.into_owned(), port))
                    }
                    _ => None,
                },
                _ => None,
            };
            let owner = match address {
                Some(address) => {
                    let index = match owners.masters.iter().position(|m| *m == address) {
                        Some(index) => index,
                        None => {
                            owners.masters.push(address);
                            owners.masters.len() - 1
                        }
                    };
                    Owner::Master(u16::try_from(index).ok()?)
                }
                None => Owner::Unaddressed,
            };
            owners.slots[lo..=hi].fill(owner);
        }
        owners.slots.iter().all(|&o| o != Owner::Nobody).then_some(owners)
    }

    fn routing(&self, master: u16) -> SingleNodeRoutingInfo {
        let (host, port) = &self.masters[usize::from(master)];
        by_address(host, *port)
    }
}

fn by_address(host: &str, port: u16) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::ByAddress { host: host.to_owned(), port }
}

fn cluster_down(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Server(ServerErrorKind::ClusterDown), what))
}

/// Connects, and answers only once every slot has a master this node is
/// connected to: otherwise a fresh connection would "recover" while a
/// master is still failing over, fail again on its first use, and every
/// round of that would log an outage's end and start.
async fn connect(client: &ClusterClient) -> Result<(ClusterConnection, Owners), RedisError> {
    let mut conn = client.get_async_connection().await?;
    let random = || RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
    let info: String =
        redis::from_redis_value(conn.route_command(redis::cmd("CLUSTER").arg("INFO").clone(), random()).await?)?;
    if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
        return Err(cluster_down("the cluster is not serving every slot (cluster_state is not ok)"));
    }
    let slots = conn.route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), random()).await?;
    let owners = Owners::parse(&slots).ok_or_else(|| cluster_down("CLUSTER SLOTS leaves slots without a master"))?;
    // By address, the client answers only from a live connection (a fan-out
    // to all masters would skip the ones it could not reach).
    for (host, port) in &owners.masters {
        conn.route_command(redis::cmd("PING"), RoutingInfo::SingleNode(by_address(host, *port))).await?;
    }
    Ok((conn, owners))
}

/// Channels grouped by slot, each group in its original order: a sharded
/// (un)subscribe may only name channels of one slot.
fn by_slot(channels: &[Arc<str>]) -> Vec<Vec<String>> {
    let mut groups: HashMap<u16, Vec<String>> = HashMap::new();
    for channel in channels {
        groups.entry(slot(channel.as_bytes())).or_default().push(channel.to_string());
    }
    groups.into_values().collect()
}

struct Publisher {
    seeds: Arc<[ConnectionInfo]>,
    namespace: String,
    broker: Arc<Broker>,
}

impl Publish for Publisher {
    type Conn = (ClusterConnection, Owners);
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Conn, Self::Error> {
        let (mut conn, owners) = connect(&builder(&self.seeds).build()?).await?;
        // On every master: the broadcasts of topics with history are
        // EVALSHAs in the masters' pipelines.
        let load = redis::cmd("SCRIPT").arg("LOAD").arg(redis_history::PUBLISH).clone();
        for (host, port) in &owners.masters {
            conn.route_command(load.clone(), RoutingInfo::SingleNode(by_address(host, *port))).await?;
        }
        Ok((conn, owners))
    }

    /// One pipeline per master, all in flight at once; a channel's
    /// publishes stay in order because they go to one master, in one
    /// pipeline.
    async fn send(&self, (conn, owners): &mut Self::Conn, batch: &[Outbound]) -> Result<usize, Self::Error> {
        let mut groups: HashMap<(Owner, Option<u16>), redis::Pipeline> = HashMap::new();
        let proposal = self.broker.epoch_proposal();
        for outbound in batch {
            let slot = slot(outbound.channel.as_bytes());
            let owner = owners.slots[usize::from(slot)];
            // Left to the client's routing, a pipeline must keep to a slot.
            let key = (owner, (owner == Owner::Unaddressed).then_some(slot));
            let pipe = groups.entry(key).or_default();
            match &outbound.kept {
                None => {
                    pipe.cmd("SPUBLISH").arg(&*outbound.channel).arg(&outbound.bytes[..]);
                }
                Some(kept) => {
                    // Its keys are on the channel's slot: one master runs it.
                    let keys = redis_history::keys(&self.namespace, &outbound.channel, &kept.topic);
                    let args = PublishArgs {
                        channel: &outbound.channel,
                        head: &outbound.bytes,
                        payload: &kept.payload,
                        event: &kept.event,
                        binary: kept.binary,
                        history: kept.history,
                        epoch: &proposal,
                        command: "SPUBLISH",
                    };
                    pipe.add_command(redis_history::publish_command(&keys, &args));
                }
            }
        }
        // Owned before anything is awaited, so the future is `Send`.
        let pipelines: Vec<_> = groups
            .into_iter()
            .map(|((owner, slot), pipe)| {
                let routing = match (owner, slot) {
                    (Owner::Master(master), _) => owners.routing(master),
                    (_, slot) => SingleNodeRoutingInfo::SpecificNode(Route::new(slot.unwrap_or(0), SlotAddr::Master)),
                };
                (routing, pipe, conn.clone())
            })
            .collect();
        let proposed = futures_util::stream::iter(pipelines)
            .map(|(routing, pipe, mut conn)| {
                let proposal = proposal.clone();
                async move {
                    let count = pipe.len();
                    let replies = conn.route_pipeline(pipe, 0, count, routing).await?;
                    let mut taken = false;
                    for reply in replies {
                        if let Value::ServerError(error) = reply {
                            return Err(RedisError::from(error));
                        }
                        taken |= redis_history::published_epoch(&reply).as_deref() == Some(&*proposal);
                    }
                    Ok(taken)
                }
            })
            .buffer_unordered(CONCURRENT)
            .try_fold(false, |taken, one| async move { Ok(taken || one) })
            .await?;
        if proposed {
            self.broker.epoch_taken(&proposal);
        }
        // The cluster refuses no broadcast on its own.
        Ok(0)
    }
}

struct Subscriber(Arc<[ConnectionInfo]>);

/// Sunsubscribe confirmations this node asked for, per channel: any other
/// `sunsubscribe` is the cluster dropping a subscription (its slot moved).
type Expected = Arc<Mutex<HashMap<Vec<u8>, u32>>>;

/// One subscription session: a cluster connection (RESP3, pushes to
/// [`Messages`]), renewed whole when any of its node connections is lost.
struct Control {
    conn: ClusterConnection,
    unsubscribing: Expected,
}

struct Messages {
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    unsubscribing: Expected,
}

impl Subscribe for Subscriber {
    type Control = Control;
    type Messages = Messages;
    type Error = RedisError;

    async fn connect(&self) -> Result<(Self::Control, Self::Messages), Self::Error> {
        let (sender, pushes) = mpsc::unbounded_channel();
        let client = builder(&self.0).use_protocol(redis::ProtocolVersion::RESP3).push_sender(sender).build()?;
        let (conn, _) = connect(&client).await?;
        let unsubscribing = Expected::default();
        Ok((Control { conn, unsubscribing: unsubscribing.clone() }, Messages { pushes, unsubscribing }))
    }

    async fn subscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> Result<(), Self::Error> {
        each_slot(&control.conn, channels, |mut conn, names| async move { conn.ssubscribe(names).await }).await
    }

    async fn unsubscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> Result<(), Self::Error> {
        {
            let mut expected = control.unsubscribing.lock();
            for channel in channels {
                *expected.entry(channel.as_bytes().to_vec()).or_insert(0) += 1;
            }
        }
        each_slot(&control.conn, channels, |mut conn, names| async move { conn.sunsubscribe(names).await }).await
    }

    async fn next<'a>(&'a self, messages: &'a mut Self::Messages) -> Option<Bytes> {
        loop {
            let push = messages.pushes.recv().await?;
            match push.kind {
                PushKind::SMessage => {
                    if let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                        return Some(payload.into());
                    }
                }
                // The client repairs a lost node connection itself, but
                // resubscribes it with one SSUBSCRIBE across slots, which
                // the server refuses: a fresh session subscribes right.
                PushKind::Disconnection => return None,
                PushKind::SUnsubscribe => {
                    let Some(Value::BulkString(channel)) = push.data.first() else { continue };
                    let mut expected = messages.unsubscribing.lock();
                    match expected.get_mut(channel) {
                        Some(n) if *n > 1 => *n -= 1,
                        Some(_) => {
                            expected.remove(channel);
                        }
                        // Not asked for: the channel's slot moved to
                        // another master, which knows nothing of it yet.
                        None => return None,
                    }
                }
                _ => {}
            }
        }
    }
}

/// Runs a sharded (un)subscribe per slot, concurrently, each confirmed.
async fn each_slot<F, Fut>(conn: &ClusterConnection, channels: &[Arc<str>], command: F) -> Result<(), RedisError>
where
    F: Fn(ClusterConnection, Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), RedisError>>,
{
    let groups = by_slot(channels);
    futures_util::stream::iter(groups)
        .map(|names| command(conn.clone(), names))
        .buffer_unordered(CONCURRENT)
        .try_collect::<()>()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn slots_match_the_server_and_the_client() {
        // CLUSTER KEYSLOT on Redis 7.0
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}".as_slice()));
        for i in 0..2000 {
            for key in [format!("channels:t:room:{i}"), format!("x{{{i}}}y"), format!("{{}}{i}"), format!("a{{b{i}")] {
                assert_eq!(Slot::new(slot(key.as_bytes())), Some(Slot::for_key(&key)), "{key}");
            }
        }
    }

    #[test]
    fn groups_keep_order_within_a_slot() {
        let names: Vec<Arc<str>> = ["a", "b", "a", "c", "b", "a"].into_iter().map(Arc::from).collect();
        let groups = by_slot(&names);
        assert_eq!(groups.len(), 3, "a, b and c are on different slots");
        for group in &groups {
            assert!(group.iter().all(|n| *n == group[0]));
        }
        assert!(groups.iter().any(|g| g.len() == 3));
    }

    #[test]
    fn owners_cover_every_slot_or_none() {
        let node = |host: &str, port| Value::Array(vec![Value::BulkString(host.into()), Value::Int(port)]);
        let range = |lo, hi, host, port| Value::Array(vec![Value::Int(lo), Value::Int(hi), node(host, port)]);
        let whole = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7000),
            range(5461, 10922, "", 7001),
            range(10923, 16383, "10.0.0.1", 7000),
        ]);
        let owners = Owners::parse(&whole).expect("every slot has a master");
        assert_eq!(owners.masters, vec![("10.0.0.1".to_owned(), 7000)]);
        assert_eq!(owners.slots[0], Owner::Master(0));
        assert_eq!(owners.slots[16383], Owner::Master(0));
        assert_eq!(owners.slots[6000], Owner::Unaddressed);
        let gap = Value::Array(vec![range(0, 5460, "10.0.0.1", 7000), range(5462, 16383, "10.0.0.2", 7000)]);
        assert!(Owners::parse(&gap).is_none());
        assert!(Owners::parse(&Value::Nil).is_none());
    }

    #[test]
    fn seeds_are_checked() {
        assert!(RedisCluster::new(&[]).is_err());
        assert!(RedisCluster::new(&["not a url"]).is_err());
        assert!(RedisCluster::new(&["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]).is_ok());
    }
}
