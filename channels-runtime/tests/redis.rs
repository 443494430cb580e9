//! The Redis adapter against a real `redis-server`, started here on a free
//! port: nodes in one process share broadcasts, disconnects and presence,
//! receive only the topics they serve, lose nothing of a burst, and survive
//! a Redis restart.
#![cfg(feature = "redis")]

#[path = "support/multinode.rs"]
mod multinode;
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multinode::{connected, node, until, Make};
use phx_channels_runtime::presence::Presence;
use phx_channels_runtime::pubsub::{PubSub, Redis, Routing};
use serde_json::json;

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required for this test (apt-get install redis-server; ./test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Nodes on this server, in their own namespace.
    fn make(&self, namespace: &str, routing: Routing) -> Make {
        let (url, namespace) = (self.url(), namespace.to_owned());
        Arc::new(move || PubSub::with_adapter(Redis::new(&url).unwrap().namespace(&namespace).routing(routing)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once() {
    let redis = RedisServer::start();
    multinode::broadcasts_cross_nodes_once(redis.make("t1", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once_through_shards() {
    let redis = RedisServer::start();
    multinode::broadcasts_cross_nodes_once(redis.make("t1s", Routing::Shards(8))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reaches_sockets_on_every_node() {
    let redis = RedisServer::start();
    multinode::disconnect_reaches_every_node(redis.make("t2", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_replicates_and_leaves_with_its_channel() {
    let redis = RedisServer::start();
    multinode::presence_replicates(redis.make("t3", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_topics_it_serves() {
    let redis = RedisServer::start();
    multinode::only_interested_nodes_receive(redis.make("t5", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_crosses_whole() {
    let redis = RedisServer::start();
    multinode::a_burst_loses_nothing(redis.make("t6", Routing::Topic), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_counted() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let make = redis.make("t4", Routing::Topic);
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let mut local = a.server.v2().await;
    local.join("1", "echo:r").await;

    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // local delivery keeps working while redis is away
    a.server.endpoint.broadcast("echo:r", "while_down", json!({})).unwrap();
    assert_eq!(local.json().await[3], "while_down");
    until("the lost broadcast counted", Duration::from_secs(5), || a.stats().dropped >= 1).await;

    let _redis = RedisServer::start_on(port);
    until("both nodes reconnected", Duration::from_secs(10), || a.stats().reconnects >= 1 && b.stats().reconnects >= 1)
        .await;
    connected(&a, &b).await;
    // and every broadcast after that crosses
    let mut remote = b.server.v2().await;
    remote.join("1", "echo:after").await;
    for i in 0..20 {
        a.server.endpoint.broadcast("echo:after", "n", json!({"i": i})).unwrap();
    }
    for i in 0..20 {
        assert_eq!(remote.json().await[4]["i"], i);
    }
}

/// While Redis is away no node hears any other: that silence is no death,
/// and presences outlive an outage longer than the down period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presences_outlive_a_broker_outage_longer_than_the_down_period() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let make = redis.make("t7", Routing::Topic);
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let mut on_a = a.server.v2().await;
    on_a.join("1", "echo:outage").await;
    on_a.send(json!(["1", "2", "echo:outage", "track", "ada"])).await;
    let pubsub_b = b.pubsub();
    let listed = move || Presence::list_topic(&pubsub_b, "echo:outage")["ada"].is_object();
    until("ada listed on b", Duration::from_secs(3), &listed).await;

    redis.stop();
    // twice the down period of these nodes (2 s)
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(4) {
        assert!(listed(), "ada left b while b could hear nobody");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _redis = RedisServer::start_on(port);
    connected(&a, &b).await;
    assert!(listed());
}
