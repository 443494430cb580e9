//! The NATS adapter against a real `nats-server`, started here on a free
//! port: nodes in one process share broadcasts, disconnects and presence,
//! receive only the topics they serve, lose nothing of a burst, survive a
//! NATS restart, and refuse a broadcast over the server's payload limit
//! without losing the connection.
#![cfg(feature = "nats")]

#[path = "support/multinode.rs"]
mod multinode;
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multinode::{connected, node, until, Make};
use phx_channels_runtime::pubsub::{Nats, PubSub, Routing};
use serde_json::json;

struct NatsServer {
    child: Child,
    port: u16,
    /// JetStream's store, removed with the server.
    store: Option<std::path::PathBuf>,
}

impl NatsServer {
    fn start_on(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is required for this test (apt-get install nats-server; ./test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer { child, port, store: None }
    }

    /// A server with JetStream (`-js`), its store in a fresh directory: a
    /// server started again this way on the same port comes back empty.
    fn start_js_on(port: u16) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let store = std::env::temp_dir().join(format!("channels-nats-js-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&store).expect("a temporary directory");
        let mut server = Self::start_on(port, &["-js", "-sd", store.to_str().expect("a UTF-8 temporary path")]);
        server.store = Some(store);
        server
    }

    fn start_with(extra: &[&str]) -> Self {
        Self::start_on(Self::free_port(), extra)
    }

    fn start() -> Self {
        Self::start_with(&[])
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Nodes on this server, in their own namespace.
    fn make(&self, namespace: &str, routing: Routing) -> Make {
        let (url, namespace) = (self.url(), namespace.to_owned());
        Arc::new(move || PubSub::with_adapter(Nats::new(&url).unwrap().namespace(&namespace).routing(routing)))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(store) = &self.store {
            let _ = std::fs::remove_dir_all(store);
        }
    }
}

// ---------------------------------------------------------------- history (JetStream)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_node() {
    let nats = NatsServer::start_js_on(NatsServer::free_port());
    multinode::a_client_recovers_on_another_node(nats.make("h1", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_node_through_shards() {
    let nats = NatsServer::start_js_on(NatsServer::free_port());
    multinode::a_client_recovers_on_another_node(nats.make("h1s", Routing::Shards(4))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_beyond_the_history_is_reported() {
    let nats = NatsServer::start_js_on(NatsServer::free_port());
    multinode::a_gap_beyond_the_history_is_reported(nats.make("h2", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_positions_get_a_clear_answer() {
    let nats = NatsServer::start_js_on(NatsServer::free_port());
    multinode::hostile_positions_get_a_clear_answer(nats.make("h4", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restarted_empty_changes_the_epoch() {
    let mut nats = NatsServer::start_js_on(NatsServer::free_port());
    let port = nats.port;
    let make = nats.make("h3", Routing::Topic);
    let restart = async move {
        nats.stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // a fresh store: JetStream comes back without the topic's stream
        let back = NatsServer::start_js_on(port);
        drop(nats);
        back
    };
    multinode::a_broker_restarted_empty_changes_the_epoch(make, restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once() {
    let nats = NatsServer::start();
    multinode::broadcasts_cross_nodes_once(nats.make("t1", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once_through_shards() {
    let nats = NatsServer::start();
    multinode::broadcasts_cross_nodes_once(nats.make("t1s", Routing::Shards(8))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reaches_sockets_on_every_node() {
    let nats = NatsServer::start();
    multinode::disconnect_reaches_every_node(nats.make("t2", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_replicates_and_leaves_with_its_channel() {
    let nats = NatsServer::start();
    multinode::presence_replicates(nats.make("t3", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_topics_it_serves() {
    let nats = NatsServer::start();
    multinode::only_interested_nodes_receive(nats.make("t5", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_crosses_whole() {
    let nats = NatsServer::start();
    multinode::a_burst_loses_nothing(nats.make("t6", Routing::Topic), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_is_survived_and_counted() {
    let mut nats = NatsServer::start();
    let port = nats.port;
    let make = nats.make("t4", Routing::Topic);
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let mut local = a.server.v2().await;
    local.join("1", "echo:r").await;

    nats.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // local delivery keeps working while NATS is away
    a.server.endpoint.broadcast("echo:r", "while_down", json!({})).unwrap();
    assert_eq!(local.json().await[3], "while_down");
    until("the lost broadcast counted", Duration::from_secs(5), || a.stats().dropped >= 1).await;

    let _nats = NatsServer::start_on(port, &[]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_allowed_only_its_namespace_is_enough() {
    let config = std::env::temp_dir().join(format!("nats-permissions-{}.conf", std::process::id()));
    let permissions = r#"{ publish: "t9.>", subscribe: "t9.>" }"#;
    std::fs::write(
        &config,
        format!("authorization {{ users = [ {{ user: app, password: secret, permissions: {permissions} }} ] }}\n"),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c", config.to_str().unwrap()]);
    // read at startup: no longer needed
    let _ = std::fs::remove_file(&config);
    let url = format!("nats://app:secret@127.0.0.1:{}", nats.port);
    let make: Make = Arc::new(move || PubSub::with_adapter(Nats::new(&url).unwrap().namespace("t9")));
    multinode::broadcasts_cross_nodes_once(make).await;
}

/// Subscriptions the server holds, from its monitoring endpoint.
fn server_subscriptions(monitor: u16) -> u64 {
    use std::io::{Read, Write};
    let mut http = std::net::TcpStream::connect(("127.0.0.1", monitor)).expect("the monitoring port answers");
    http.write_all(b"GET /subsz HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).unwrap();
    let body = response.split("\r\n\r\n").nth(1).expect("an HTTP body");
    let subsz: serde_json::Value = serde_json::from_str(body).expect("/subsz is JSON");
    subsz["num_subscriptions"].as_u64().expect("num_subscriptions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_topic_unsubscribes_at_the_server() {
    let monitor = NatsServer::free_port();
    let nats = NatsServer::start_with(&["-m", &monitor.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", monitor)).is_err() {
        assert!(Instant::now() < deadline, "the monitoring port never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let make = nats.make("t8", Routing::Topic);
    let a = node(&make).await;
    let mut client = a.server.v2().await;
    // One node, one client: nothing else (un)subscribes meanwhile, once
    // both connections are up (the publisher's holds a probe subscription).
    until("the node connected", Duration::from_secs(5), || {
        let stats = a.stats();
        stats.subscriptions >= 1 && stats.published >= 1
    })
    .await;
    let before = server_subscriptions(monitor);
    let held = a.stats().subscriptions;

    client.join("1", "echo:left-later").await;
    assert_eq!(a.stats().subscriptions, held + 1);
    assert_eq!(server_subscriptions(monitor), before + 1, "the join waited for the server's SUB");
    client.send(json!(["1", "2", "echo:left-later", "phx_leave", {}])).await;
    until("the topic unsubscribed", Duration::from_secs(5), || a.stats().subscriptions == held).await;
    // confirmed means the server has dropped it
    assert_eq!(server_subscriptions(monitor), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_over_max_payload_is_dropped_not_fatal() {
    // A small limit (set in a config file: there is no flag for it), so a
    // broadcast that passes the endpoint's own limits is over it.
    let config = std::env::temp_dir().join(format!("nats-max-payload-{}.conf", std::process::id()));
    std::fs::write(&config, "max_payload: 4096\n").unwrap();
    let nats = NatsServer::start_with(&["-c", config.to_str().unwrap()]);
    // read at startup: no longer needed
    let _ = std::fs::remove_file(&config);
    let make = nats.make("t7", Routing::Topic);
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let mut local = a.server.v2().await;
    local.join("1", "echo:big").await;
    let mut remote = b.server.v2().await;
    remote.join("1", "echo:big").await;
    let dropped = a.stats().dropped;

    a.server.endpoint.broadcast("echo:big", "big", json!({"x": "y".repeat(8192)})).unwrap();
    // delivered on its own node, counted as dropped, not sent
    assert_eq!(local.json().await[3], "big");
    until("the oversized broadcast counted", Duration::from_secs(5), || a.stats().dropped == dropped + 1).await;
    // the connection survived: what follows crosses, with no reconnect
    a.server.endpoint.broadcast("echo:big", "small", json!({})).unwrap();
    assert_eq!(remote.json().await[3], "small");
    assert_eq!(a.stats().reconnects, 0);
}
