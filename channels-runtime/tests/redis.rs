//! The Redis adapter against a real `redis-server`, started here on a free
//! port: two nodes in one process share broadcasts, disconnects and
//! presence, and survive a Redis restart.
#![cfg(feature = "redis")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::presence::{Presence, PresenceOptions};
use phx_channels_runtime::pubsub::{PubSub, Redis, RedisStats};
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{serve_with, Server};

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
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Node {
    server: Server,
    stats: Box<dyn Fn() -> RedisStats + Send + Sync>,
}

async fn node(redis: &RedisServer, channel: &str) -> Node {
    let adapter = Redis::with_channel(&redis.url(), channel).unwrap();
    let stats = Box::new(adapter.stats_handle());
    let presence =
        PresenceOptions { heartbeat_interval: Duration::from_millis(100), down_period: Duration::from_secs(2) };
    let pubsub = PubSub::with_adapter(adapter);
    assert!(Presence::start(&pubsub, presence));
    let server = serve_with(Endpoint::new().with_pubsub(pubsub), SocketOptions::default()).await;
    Node { server, stats }
}

async fn until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Both nodes' subscribers are up once a broadcast crosses.
async fn connected(a: &Node, b: &Node) {
    let probe = "probe:connected";
    let mut on_b = b.server.v2().await;
    on_b.join("1", &format!("echo:{probe}")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        a.server.endpoint.broadcast(&format!("echo:{probe}"), "probe", json!({})).unwrap();
        if on_b.recv_within(Duration::from_millis(100)).await.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "nodes never connected through redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "t1").await, node(&redis, "t1").await);
    connected(&a, &b).await;
    let (mut on_a, mut on_b) = (a.server.v2().await, b.server.v2().await);
    on_a.join("1", "echo:x").await;
    on_b.join("1", "echo:x").await;
    on_a.send(json!(["1", "2", "echo:x", "shout", {"from": "a"}])).await;
    let expected = json!([null, null, "echo:x", "shout", {"from": "a"}]);
    assert_eq!(on_a.json().await, expected);
    assert_eq!(on_a.json().await[3], "phx_reply");
    assert_eq!(on_b.json().await, expected);
    // never twice: not on the sender's node, not on the other
    on_a.silent(300).await;
    on_b.silent(0).await;

    // broadcast_from: everyone but the sender, on every node
    on_b.send(json!(["1", "3", "echo:x", "shout_from", {}])).await;
    assert_eq!(on_b.json().await[3], "phx_reply");
    assert_eq!(on_a.json().await, json!([null, null, "echo:x", "shout", {"from": "other"}]));
    on_b.silent(300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reaches_sockets_on_every_node() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "t2").await, node(&redis, "t2").await);
    connected(&a, &b).await;
    let mut on_b = b.server.connect("vsn=2.0.0&user_id=u1").await;
    // A heartbeat answered: the connection is running and subscribed to its
    // socket id (the upgrade's 101 can reach the client before that).
    on_b.send(json!([null, "hb", "phoenix", "heartbeat", {}])).await;
    assert_eq!(on_b.json().await[1], "hb");
    a.server.endpoint.broadcast("users_socket:u1", "disconnect", json!({})).unwrap();
    assert_eq!(on_b.close_code().await, Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_replicates_and_leaves_with_its_channel() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "t3").await, node(&redis, "t3").await);
    connected(&a, &b).await;
    let mut on_a = a.server.v2().await;
    let mut on_b = b.server.v2().await;
    on_a.join("1", "echo:room").await;
    on_b.join("1", "echo:room").await;
    on_a.send(json!(["1", "2", "echo:room", "track", "ada"])).await;
    // b's client sees ada join in a presence_diff from its own node
    let diff = loop {
        let frame = on_b.json().await;
        if frame[3] == "presence_diff" {
            break frame;
        }
    };
    assert_eq!(diff[4]["joins"]["ada"]["metas"][0]["k"], "ada");
    assert_eq!(diff[4]["leaves"], json!({}));
    let pubsub_b = b.server.endpoint.pubsub().clone();
    until("ada listed on b", Duration::from_secs(3), || {
        Presence::list_topic(&pubsub_b, "echo:room")["ada"].is_object()
    })
    .await;
    // a's channel leaves: ada leaves on b too
    on_a.send(json!(["1", "3", "echo:room", "phx_leave", {}])).await;
    until("ada gone from b", Duration::from_secs(3), || {
        Presence::list_topic(&pubsub_b, "echo:room").get("ada").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_counted() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let (a, b) = (node(&redis, "t4").await, node(&redis, "t4").await);
    connected(&a, &b).await;
    let mut local = a.server.v2().await;
    local.join("1", "echo:r").await;

    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // local delivery keeps working while redis is away
    a.server.endpoint.broadcast("echo:r", "while_down", json!({})).unwrap();
    assert_eq!(local.json().await[3], "while_down");
    until("the lost broadcast counted", Duration::from_secs(5), || (a.stats)().dropped >= 1).await;

    let _redis = RedisServer::start_on(port);
    until("both nodes reconnected", Duration::from_secs(10), || {
        (a.stats)().reconnects >= 1 && (b.stats)().reconnects >= 1
    })
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
