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

use super::support::{Received, Server, TestSocket};

/// Makes a fresh node's PubSub on the broker under test.
pub type Make = Arc<dyn Fn() -> PubSub + Send + Sync>;

/// One node: a server on its own PubSub.
pub struct Node {
    pub server: Server,
    /// Stops the server ([`Node::kill`]).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
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
    let endpoint = Endpoint::new().with_pubsub(pubsub).socket_with("/socket", TestSocket, SocketOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(endpoint.clone().serve_with_shutdown(listener, async move {
        let _ = stopped.await;
    }));
    Node { server: Server { addr, endpoint }, stop: Some(stop), served: Some(served) }
}

impl Node {
    /// The node goes away: it stops accepting and closes its clients'
    /// connections (they reconnect elsewhere), and its PubSub is dropped.
    pub async fn kill(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let served = self.served.take().expect("a node is killed once");
        tokio::time::timeout(Duration::from_secs(15), served)
            .await
            .expect("the node stops within its drain period")
            .unwrap()
            .unwrap();
    }
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

// ---------------------------------------------------------------- history

/// A join asking for positions (`at`: null, or a position); the join
/// reply and the `phx_recovery` frame after it.
pub async fn join_at(
    client: &mut super::support::Client,
    jr: &str,
    topic: &str,
    at: serde_json::Value,
) -> serde_json::Value {
    client.send(json!([jr, jr, topic, "phx_join", {"phx_position": at}])).await;
    loop {
        let frame = client.json().await;
        if frame[3] == "phx_reply" && frame[1] == jr {
            assert_eq!(frame[4]["status"], "ok", "{frame}");
            break;
        }
    }
    loop {
        let frame = client.json().await;
        if frame[3] == "phx_recovery" {
            return frame;
        }
    }
}

/// The next `n` broadcasts of an event on a topic: (offset, payload `n`).
pub async fn positioned(client: &mut super::support::Client, event: &str, n: usize) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = client.json().await;
        if frame[3] == event {
            let position = frame[1].as_str().unwrap_or_else(|| panic!("no position: {frame}"));
            let offset = position.rsplit_once(':').unwrap().1.parse().unwrap();
            got.push((offset, frame[4]["n"].as_u64().unwrap()));
        }
    }
    got
}

fn epoch_of(position: &serde_json::Value) -> String {
    position.as_str().unwrap().rsplit_once(':').unwrap().0.to_owned()
}

/// Broadcasts `kept:` topics (5 kept) from `node`, until the broker takes
/// them (it is refused while the broker is away).
pub async fn shout_kept(node: &Node, topic: &str, from: u64, n: u64) {
    for i in from..from + n {
        let deadline = Instant::now() + Duration::from_secs(15);
        while node.pubsub().broadcast(topic, "shout", json!({"n": i})).is_err() {
            assert!(Instant::now() < deadline, "the broker never took the broadcast");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The broker gives positions: a broadcast made on either node reaches the
/// clients of both with the same position, in one order; a client whose
/// node is killed rejoins on another node with its last position and is
/// sent what it missed, then live ones: on a node new to the topic (read
/// from the broker's stream) and on one that follows it (from its mirror).
pub async fn a_client_recovers_on_another_node(make: Make) {
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let topic = format!("kept:moved-{}", rand_suffix());
    let mut on_a = a.server.v2().await;
    let recovery = join_at(&mut on_a, "1", &topic, serde_json::Value::Null).await;
    assert_eq!(recovery[4]["reason"], "none", "{recovery}");
    let epoch = epoch_of(&recovery[1]);
    let mut watcher = b.server.v2().await;
    join_at(&mut watcher, "1", &topic, serde_json::Value::Null).await;

    shout_kept(&a, &topic, 1, 1).await;
    shout_kept(&b, &topic, 2, 1).await;
    // the broker orders the two nodes' broadcasts (either may come first),
    // one order for every node
    let seen = positioned(&mut on_a, "shout", 2).await;
    assert_eq!(positioned(&mut watcher, "shout", 2).await, seen, "one order on every node");
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2], "{seen:?}");
    let mut shouts: Vec<u64> = seen.iter().map(|s| s.1).collect();
    shouts.sort_unstable();
    assert_eq!(shouts, [1, 2], "{seen:?}");

    // the client's node is killed: its connection goes with it
    a.kill().await;
    loop {
        match on_a.recv_within(Duration::from_secs(5)).await {
            Some(Received::Closed(_)) => break,
            Some(_) => {}
            None => panic!("the killed node's connection is still open"),
        }
    }
    drop(on_a);
    shout_kept(&b, &topic, 3, 3).await;
    assert_eq!(positioned(&mut watcher, "shout", 3).await, [(3, 3), (4, 4), (5, 5)]);
    // on a node that had no client on the topic: it reads the broker's stream
    let c = node(&make).await;
    connected(&b, &c).await;
    let mut on_c = c.server.v2().await;
    let recovery = join_at(&mut on_c, "7", &topic, json!(format!("{epoch}:2"))).await;
    assert_eq!(recovery[4], json!({"recovered": true, "position": format!("{epoch}:2"), "missed": 3}), "{recovery}");
    assert_eq!(positioned(&mut on_c, "shout", 3).await, [(3, 3), (4, 4), (5, 5)]);
    shout_kept(&b, &topic, 6, 1).await;
    assert_eq!(positioned(&mut on_c, "shout", 1).await, [(6, 6)]);
    // and on the node with a client on it: from what that node kept
    let mut on_b = b.server.v2().await;
    let recovery = join_at(&mut on_b, "7", &topic, json!(format!("{epoch}:4"))).await;
    // (6 may be on its way back from the broker: then it comes live, after 5)
    assert_eq!(recovery[4]["recovered"], true, "{recovery}");
    assert_eq!(recovery[4]["position"], format!("{epoch}:4"), "{recovery}");
    assert_eq!(positioned(&mut on_b, "shout", 2).await, [(5, 5), (6, 6)]);
    on_c.silent(200).await;
    on_b.silent(200).await;
}

/// Beyond what the broker keeps (5 broadcasts on `kept:` topics), a rejoin
/// on either node is told it was not recovered, and goes on live.
pub async fn a_gap_beyond_the_history_is_reported(make: Make) {
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let topic = format!("kept:gap-{}", rand_suffix());
    let mut first = a.server.v2().await;
    let recovery = join_at(&mut first, "1", &topic, serde_json::Value::Null).await;
    let epoch = epoch_of(&recovery[1]);
    shout_kept(&a, &topic, 1, 8).await;
    // A broadcast taken is not yet at the broker: the eight are stored
    // once they come back from it (a topic with history is delivered in
    // the broker's order).
    assert_eq!(positioned(&mut first, "shout", 8).await.len(), 8);
    drop(first);
    let mut back = b.server.v2().await;
    let recovery = join_at(&mut back, "1", &topic, json!(format!("{epoch}:0"))).await;
    assert_eq!(
        recovery[4],
        json!({"recovered": false, "position": format!("{epoch}:8"), "missed": 0, "reason": "expired"}),
        "{recovery}"
    );
    back.silent(200).await;
    // just within: recovered
    let mut within = a.server.v2().await;
    let recovery = join_at(&mut within, "1", &topic, json!(format!("{epoch}:3"))).await;
    assert_eq!(recovery[4]["recovered"], true, "{recovery}");
    assert_eq!(positioned(&mut within, "shout", 5).await, [(4, 4), (5, 5), (6, 6), (7, 7), (8, 8)]);
    shout_kept(&b, &topic, 9, 1).await;
    assert_eq!(positioned(&mut back, "shout", 1).await, [(9, 9)]);
}

/// The broker restarted empty: the stream's past is gone, its epoch
/// changes. A client joined meanwhile is made to rejoin (`phx_error`
/// `resync`), and its rejoin is told it was not recovered (`epoch`).
pub async fn a_broker_restarted_empty_changes_the_epoch<T>(make: Make, restart: impl std::future::Future<Output = T>) {
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let topic = format!("kept:restart-{}", rand_suffix());
    let mut client = a.server.v2().await;
    let recovery = join_at(&mut client, "1", &topic, serde_json::Value::Null).await;
    let epoch = epoch_of(&recovery[1]);
    shout_kept(&b, &topic, 1, 2).await;
    assert_eq!(positioned(&mut client, "shout", 2).await, [(1, 1), (2, 2)]);

    // what `restart` started lives until the test ends
    let _restarted = restart.await;

    // the node's subscription came back: its clients that take positions rejoin
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let frame = client.recv_within(Duration::from_secs(1)).await;
        if let Some(Received::Json(frame)) = &frame {
            if frame[3] == "phx_error" {
                assert_eq!(frame[4], json!({"reason": "resync"}));
                break;
            }
        }
        assert!(Instant::now() < deadline, "no resync after the broker came back");
    }
    connected(&a, &b).await;
    let recovery = join_at(&mut client, "2", &topic, json!(format!("{epoch}:2"))).await;
    assert_eq!(recovery[4]["recovered"], false, "{recovery}");
    assert_eq!(recovery[4]["reason"], "epoch", "{recovery}");
    let new_epoch = epoch_of(&recovery[1]);
    assert_ne!(new_epoch, epoch);
    // and live broadcasts flow again, in the new epoch
    shout_kept(&b, &topic, 3, 1).await;
    let frame = loop {
        let frame = client.json().await;
        if frame[3] == "shout" {
            break frame;
        }
    };
    assert_eq!(epoch_of(&frame[1]), new_epoch);
}

/// Hostile positions against the broker's stream (5 kept, 8 made): each on
/// a fresh connection, so most joins read the broker. A clear answer each
/// (`recovered: false` and why), never a refused join or a crash, and never
/// more than the history's bound replayed.
pub async fn hostile_positions_get_a_clear_answer(make: Make) {
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let topic = format!("kept:hostile-{}", rand_suffix());
    let elsewhere = format!("kept:elsewhere-{}", rand_suffix());
    let mut first = a.server.v2().await;
    let epoch = epoch_of(&join_at(&mut first, "1", &topic, serde_json::Value::Null).await[1]);
    let other_epoch = epoch_of(&join_at(&mut first, "2", &elsewhere, serde_json::Value::Null).await[1]);
    assert_ne!(epoch, other_epoch, "two topics share an epoch");
    drop(first);
    shout_kept(&a, &topic, 1, 8).await;
    let cases = [
        (json!("garbage"), "invalid"),
        (json!(-1), "invalid"),
        (json!({"offset": 1}), "invalid"),
        (json!(format!("{epoch}:-1")), "invalid"),
        (json!(format!("{epoch}:99999999999999999999999")), "invalid"),
        (json!("x".repeat(100_000)), "invalid"),
        (json!(format!("{epoch}:9")), "future"),
        (json!(format!("{epoch}:{}", u64::MAX)), "future"),
        (json!(format!("{other_epoch}:3")), "epoch"),
        (json!("never:1"), "epoch"),
        (json!(format!("{epoch}:0")), "expired"),
    ];
    for (hostile, reason) in cases {
        let mut client = b.server.v2().await;
        let recovery = join_at(&mut client, "1", &topic, hostile.clone()).await;
        let shown = hostile.to_string().chars().take(80).collect::<String>();
        assert_eq!(
            recovery[4],
            json!({"recovered": false, "position": format!("{epoch}:8"), "missed": 0, "reason": reason}),
            "{shown}"
        );
        client.silent(100).await;
    }
    // the oldest position still kept: the history's bound, no more
    let mut client = b.server.v2().await;
    let recovery = join_at(&mut client, "1", &topic, json!(format!("{epoch}:3"))).await;
    assert_eq!(recovery[4], json!({"recovered": true, "position": format!("{epoch}:3"), "missed": 5}), "{recovery}");
    assert_eq!(positioned(&mut client, "shout", 5).await, [(4, 4), (5, 5), (6, 6), (7, 7), (8, 8)]);
    client.silent(200).await;
}
