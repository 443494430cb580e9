//! The multi-node suite every broker engine passes (Redis, Redis Cluster,
//! NATS): a test file starts its real broker, says how to make a node's
//! PubSub on it, and calls these. Included with
//! `#[path = "support/multinode.rs"] mod multinode;`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::presence::{Presence, PresenceOptions};
use phx_channels_runtime::pubsub::{BroadcastError, BrokerStats, PubSub};
use phx_channels_runtime::SocketOptions;
use serde_json::json;

use super::support::{serve_with, Received, Server};

/// Makes a fresh node's PubSub on the broker under test.
pub type Make = Arc<dyn Fn() -> PubSub + Send + Sync>;

/// One node: a server on its own PubSub.
pub struct Node {
    pub server: Server,
}

impl Node {
    pub fn stats(&self) -> BrokerStats {
        self.server.endpoint.pubsub().broker_stats().expect("broker adapters keep stats")
    }

    pub fn pubsub(&self) -> PubSub {
        self.server.endpoint.pubsub().clone()
    }
}

/// Presence replicating fast, so tests are short.
pub fn fast_presence() -> PresenceOptions {
    PresenceOptions {
        heartbeat_interval: Duration::from_millis(100),
        down_period: Duration::from_secs(2),
        ..PresenceOptions::default()
    }
}

pub async fn node(make: &Make) -> Node {
    let pubsub = make();
    assert!(Presence::start(&pubsub, fast_presence()));
    let server = serve_with(Endpoint::new().with_pubsub(pubsub), SocketOptions::default()).await;
    Node { server }
}

pub async fn until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Both nodes' subscriptions are up once a broadcast crosses from `a` to `b`.
pub async fn connected(a: &Node, b: &Node) {
    connected_through(a, b, &format!("echo:probe-{}", rand_suffix())).await;
}

/// [`connected`] through a given probe topic (one no client has joined),
/// for brokers where a topic's place matters (a cluster's shards).
pub async fn connected_through(a: &Node, b: &Node, probe: &str) {
    let mut on_b = b.server.v2().await;
    on_b.join("1", probe).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // Busy or away: try again.
        let _ = a.server.endpoint.broadcast(probe, "probe", json!({}));
        if on_b.recv_within(Duration::from_millis(100)).await.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "nodes never connected through the broker");
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Broadcasts and `broadcast_from` reach every node, once.
pub async fn broadcasts_cross_nodes_once(make: Make) {
    let (a, b) = (node(&make).await, node(&make).await);
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

    // binary payloads cross as they are
    let mut binary = b.server.v2().await;
    binary.join("1", "echo:bin").await;
    a.server.endpoint.broadcast("echo:bin", "bytes", vec![0u8, 255, 7]).unwrap();
    match binary.recv_within(Duration::from_secs(5)).await {
        Some(Received::Binary(bytes)) => assert!(bytes.ends_with(&[0, 255, 7]), "{bytes:?}"),
        _ => panic!("a binary broadcast arrives as a binary frame"),
    }
}

/// A socket-id disconnect made on one node closes the socket on another.
pub async fn disconnect_reaches_every_node(make: Make) {
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let mut on_b = b.server.connect("vsn=2.0.0&user_id=u1").await;
    // A heartbeat answered: the connection is running and subscribed to its
    // socket id (the upgrade's 101 can reach the client before that).
    on_b.send(json!([null, "hb", "phoenix", "heartbeat", {}])).await;
    assert_eq!(on_b.json().await[1], "hb");
    // The socket id's subscription was confirmed before the upgrade was
    // answered: one disconnect, right away, reaches it.
    a.server.endpoint.broadcast("users_socket:u1", "disconnect", json!({})).unwrap();
    assert_eq!(on_b.close_code().await, Some(1001));
}

/// Presence made on one node is listed and diffed on the other, and leaves
/// with its channel.
pub async fn presence_replicates(make: Make) {
    let (a, b) = (node(&make).await, node(&make).await);
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
    let pubsub_b = b.pubsub();
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

/// A node gets only the topics it has subscribers for: `c`, subscribed
/// elsewhere, receives none of the broadcasts between `a` and `b`.
pub async fn only_interested_nodes_receive(make: Make) {
    let (a, b, c) = (node(&make).await, node(&make).await, node(&make).await);
    connected(&a, &b).await;
    connected(&a, &c).await;
    let mut on_b = b.server.v2().await;
    on_b.join("1", "echo:served-by-b").await;
    let mut on_c = c.server.v2().await;
    on_c.join("1", "echo:served-by-c").await;
    let (b_before, c_before) = (b.stats().received, c.stats().received);
    const N: u64 = 500;
    for i in 0..N {
        a.server.endpoint.broadcast("echo:served-by-b", "n", json!({"i": i})).unwrap();
    }
    for i in 0..N {
        assert_eq!(on_b.json().await[4]["i"], i);
    }
    let (b_got, c_got) = (b.stats().received - b_before, c.stats().received - c_before);
    assert!(b_got >= N, "b received {b_got} of {N}");
    // c hears presence heartbeats only (a few per 100 ms), none of the N
    assert!(c_got < N / 10, "c received {c_got} messages for a topic it does not serve");
    on_c.silent(0).await;
    // the join of a topic new to a node waits for its subscription: a
    // broadcast right after "ok" arrives
    let mut late = c.server.v2().await;
    late.join("1", "echo:served-by-b").await;
    a.server.endpoint.broadcast("echo:served-by-b", "late", json!({})).unwrap();
    assert_eq!(late.json().await[3], "late");
}

/// A burst as fast as one node acknowledges it reaches the other node
/// whole and in order: pushed back before the ack, never dropped after.
pub async fn a_burst_loses_nothing(make: Make, burst: u64) {
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let mut on_b = b.server.v2().await;
        on_b.join("1", "echo:burst").await;
        listeners.push(on_b);
    }
    let mut refused = 0u64;
    let mut i = 0;
    while i < burst {
        match a.server.endpoint.broadcast("echo:burst", "n", json!({"i": i})) {
            Ok(()) => i += 1,
            Err(BroadcastError::BrokerBusy) => {
                refused += 1;
                tokio::task::yield_now().await;
            }
            Err(other) => panic!("broadcast failed: {other}"),
        }
    }
    for listener in &mut listeners {
        for i in 0..burst {
            let frame = listener.json().await;
            assert_eq!(frame[4]["i"], i, "broadcast {i} of {burst} ({refused} refused and retried)");
        }
    }
    assert_eq!(a.stats().dropped, 0);
}
