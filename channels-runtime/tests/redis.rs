//! The Redis adapter against a real `redis-server`, started here on a free
//! port: nodes in one process share broadcasts, disconnects and presence,
//! receive only the topics they serve, lose nothing of a burst, and survive
//! a Redis restart.
#![cfg(feature = "redis")]

#[path = "support/multinode.rs"]
mod multinode;
mod support;

use support::redis_server::RedisServer;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multinode::{connected, node, until, Make};
use phx_channels_runtime::presence::Presence;
use phx_channels_runtime::pubsub::{BroadcastError, PubSub, Redis, Routing};
use serde_json::json;

/// Nodes on `redis`, in their own namespace.
fn make(redis: &RedisServer, namespace: &str, routing: Routing) -> Make {
    let (url, namespace) = (redis.url(), namespace.to_owned());
    Arc::new(move || PubSub::with_adapter(Redis::new(&url).unwrap().namespace(&namespace).routing(routing)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_node() {
    let redis = RedisServer::start();
    multinode::a_client_recovers_on_another_node(make(&redis, "h1", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_node_through_shards() {
    let redis = RedisServer::start();
    multinode::a_client_recovers_on_another_node(make(&redis, "h1s", Routing::Shards(4))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_beyond_the_history_is_reported() {
    let redis = RedisServer::start();
    multinode::a_gap_beyond_the_history_is_reported(make(&redis, "h2", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_positions_get_a_clear_answer() {
    let redis = RedisServer::start();
    multinode::hostile_positions_get_a_clear_answer(make(&redis, "h4", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_changes_the_epoch() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    let make = make(&redis, "h3", Routing::Topic);
    let restart = async move {
        redis.stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // `--save ""`: it comes back empty
        RedisServer::start_on(port)
    };
    multinode::a_broker_restarted_empty_changes_the_epoch(make, restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once() {
    let redis = RedisServer::start();
    multinode::broadcasts_cross_nodes_once(make(&redis, "t1", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once_through_shards() {
    let redis = RedisServer::start();
    multinode::broadcasts_cross_nodes_once(make(&redis, "t1s", Routing::Shards(8))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reaches_sockets_on_every_node() {
    let redis = RedisServer::start();
    multinode::disconnect_reaches_every_node(make(&redis, "t2", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_replicates_and_leaves_with_its_channel() {
    let redis = RedisServer::start();
    multinode::presence_replicates(make(&redis, "t3", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_topics_it_serves() {
    let redis = RedisServer::start();
    multinode::only_interested_nodes_receive(make(&redis, "t5", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_crosses_whole() {
    let redis = RedisServer::start();
    multinode::a_burst_loses_nothing(make(&redis, "t6", Routing::Topic), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_counted() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    let make = make(&redis, "t4", Routing::Topic);
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
    let port = redis.port();
    let make = make(&redis, "t7", Routing::Topic);
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

/// Redis paused (a slow disk, a fork, a debugger) but not gone: broadcasts
/// are pushed back while the queue is full, and nothing acknowledged is
/// lost once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_pushes_back_and_loses_nothing() {
    let redis = RedisServer::start();
    let make = make(&redis, "t8", Routing::Topic);
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let mut listener = b.server.v2().await;
    listener.join("1", "echo:stall").await;
    let pid = redis.pid().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {sig} {pid}");
    };
    const N: u64 = 30_000;
    let (mut i, mut refused) = (0, 0u64);
    let mut paused_at = None;
    while i < N {
        if i == 1_000 && paused_at.is_none() {
            signal("-STOP");
            paused_at = Some(Instant::now());
        }
        if paused_at.is_some_and(|at| at.elapsed() > Duration::from_secs(2)) {
            signal("-CONT");
            paused_at = Some(Instant::now() + Duration::from_secs(3600));
        }
        match a.server.endpoint.broadcast("echo:stall", "n", json!({"i": i})) {
            Ok(()) => i += 1,
            Err(BroadcastError::BrokerBusy) => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    for i in 0..N {
        assert_eq!(listener.json().await[4]["i"], i, "broadcast {i} ({refused} pushed back)");
    }
    assert!(refused > 0, "the full queue pushed back while Redis was paused");
    assert_eq!(a.stats().dropped, 0);
}
