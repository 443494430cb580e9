//! The Redis Cluster adapter against a real cluster (3 masters, 3
//! replicas), started here on free loopback ports: nodes in one process
//! share broadcasts, disconnects and presence, receive only the topics they
//! serve, lose nothing of a burst, and come back whole after a master is
//! killed and failed over.
#![cfg(feature = "redis")]

#[path = "support/multinode.rs"]
mod multinode;
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multinode::{connected, connected_through, node, until, Make};
use phx_channels_runtime::pubsub::{PubSub, RedisCluster, Routing};
use serde_json::json;

const NODES: usize = 6;

/// One `redis-server` of the cluster.
struct ClusterNode {
    port: u16,
    child: Option<Child>,
}

/// A node as `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
struct Listed {
    id: String,
    port: u16,
    master: bool,
    /// The master's id, for a replica.
    of: Option<String>,
    slots: Vec<(u16, u16)>,
}

struct Cluster {
    nodes: Vec<ClusterNode>,
    dir: PathBuf,
}

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `NODES` ports whose cluster-bus port (+10000) is free too.
fn ports() -> Vec<u16> {
    // Spread by pid so concurrent test binaries start apart; advanced per
    // cluster so this binary's parallel tests never race for a port.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 500) as u16 * 16;
    let mut found = Vec::new();
    while found.len() < NODES {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % 8_000;
        if free(port) && free(port + 10_000) {
            found.push(port);
        }
    }
    found
}

fn cli(port: u16, args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli is required for this test (apt-get install redis-tools)")
}

fn cli_text(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&cli(port, args).stdout).into_owned()
}

fn state_ok(port: u16) -> bool {
    cli_text(port, &["cluster", "info"]).lines().any(|line| line.trim() == "cluster_state:ok")
}

fn wait(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    fn start() -> Self {
        static N: AtomicU16 = AtomicU16::new(0);
        let dir = std::env::temp_dir().join(format!(
            "channels-redis-cluster-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut cluster = Cluster { nodes: Vec::new(), dir };
        for port in ports() {
            let conf = cluster.dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(&conf)
                .args(["--cluster-node-timeout", "1000", "--save", "", "--appendonly", "no"])
                .args(["--bind", "127.0.0.1", "--dir"])
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is required for this test (apt-get install redis-server)");
            cluster.nodes.push(ClusterNode { port, child: Some(child) });
        }
        for node in &cluster.nodes {
            let port = node.port;
            wait(&format!("redis-server on port {port}"), Duration::from_secs(5), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is required for this test (apt-get install redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_ok();
        // `--cluster create` returns before every node has heard that the
        // replicas replicate: until then a replica is listed as a master
        // without slots.
        wait("every replica known as one", Duration::from_secs(20), || {
            cluster.listed().iter().filter(|n| !n.master && n.of.is_some()).count() == cluster.nodes.len() / 2
        });
        // A replica that never synced cannot be promoted.
        for replica in cluster.listed().into_iter().filter(|n| !n.master) {
            wait(&format!("replica {} synced", replica.port), Duration::from_secs(10), || {
                cli_text(replica.port, &["info", "replication"]).contains("master_link_status:up")
            });
        }
        cluster
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.port).collect()
    }

    /// Every live node says the cluster serves every slot.
    fn wait_ok(&self) {
        for port in self.live_ports() {
            wait(&format!("cluster_state:ok on {port}"), Duration::from_secs(20), || state_ok(port));
        }
    }

    /// The cluster as a live node sees it.
    fn listed(&self) -> Vec<Listed> {
        let port = self.live_ports()[0];
        cli_text(port, &["cluster", "nodes"])
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (id, addr, flags, master) = (fields.first()?, fields.get(1)?, fields.get(2)?, fields.get(3)?);
                let port = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
                let is_master = flags.split(',').any(|f| f == "master");
                let slots = fields[8.min(fields.len())..]
                    .iter()
                    .filter_map(|range| {
                        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                        Some((lo.parse().ok()?, hi.parse().ok()?))
                    })
                    .collect();
                Some(Listed {
                    id: (*id).to_owned(),
                    port,
                    master: is_master,
                    of: (*master != "-").then(|| (*master).to_owned()),
                    slots,
                })
            })
            .collect()
    }

    fn slot(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        cli_text(port, &["cluster", "keyslot", key]).trim().parse().expect("CLUSTER KEYSLOT answers a number")
    }

    fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect()
    }

    /// Nodes on this cluster, in their own namespace.
    fn make(&self, namespace: &str, routing: Routing) -> Make {
        let (seeds, namespace) = (self.seeds(), namespace.to_owned());
        Arc::new(move || {
            let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
            PubSub::with_adapter(RedisCluster::new(&seeds).unwrap().namespace(&namespace).routing(routing))
        })
    }

    fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            // SIGKILL: no goodbye to clients or to the cluster.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once() {
    let cluster = Cluster::start();
    multinode::broadcasts_cross_nodes_once(cluster.make("c1", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_once_through_shards() {
    let cluster = Cluster::start();
    multinode::broadcasts_cross_nodes_once(cluster.make("c1s", Routing::Shards(8))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reaches_sockets_on_every_node() {
    let cluster = Cluster::start();
    multinode::disconnect_reaches_every_node(cluster.make("c2", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_replicates_and_leaves_with_its_channel() {
    let cluster = Cluster::start();
    multinode::presence_replicates(cluster.make("c3", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_topics_it_serves() {
    let cluster = Cluster::start();
    multinode::only_interested_nodes_receive(cluster.make("c5", Routing::Topic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_crosses_whole() {
    let cluster = Cluster::start();
    multinode::a_burst_loses_nothing(cluster.make("c6", Routing::Topic), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_and_failed_over_loses_no_broadcast_sent_after_the_cluster_answers_again() {
    let mut cluster = Cluster::start();
    let namespace = "c4";
    let make = cluster.make(namespace, Routing::Topic);
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;

    // Topics of our own choosing, named so that each master owns some.
    let masters: Vec<Listed> = cluster.listed().into_iter().filter(|n| n.master).collect();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let owner = |slot: u16| masters.iter().position(|m| m.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot)));
    let mut topics: Vec<Vec<String>> = vec![Vec::new(); masters.len()];
    for i in 0.. {
        let topic = format!("echo:fo-{i}");
        let master = owner(cluster.slot(&format!("{namespace}:t:{topic}"))).expect("every slot is served");
        if topics[master].len() < 2 {
            topics[master].push(topic);
        }
        if topics.iter().all(|t| t.len() == 2) {
            break;
        }
    }
    // On each master: one topic b listens to, and for the victim a second
    // one, for the broadcasts made while it is away, and the probe after.
    let victim = masters[0].clone();
    let replica = cluster.listed().into_iter().find(|n| n.of.as_deref() == Some(&victim.id)).expect("a replica");
    let listened: Vec<String> = topics.iter().map(|t| t[0].clone()).collect();
    let mut listeners = Vec::new();
    for topic in &listened {
        let mut on_b = b.server.v2().await;
        assert_eq!(on_b.join("1", topic).await[4]["status"], "ok");
        listeners.push(on_b);
    }
    // every master carries broadcasts before the failure
    for topic in &listened {
        a.server.endpoint.broadcast(topic, "before", json!({})).unwrap();
    }
    for listener in &mut listeners {
        assert_eq!(listener.json().await[3], "before");
    }
    let before = (a.stats(), b.stats());

    cluster.kill(victim.port);
    // While the victim's slots have no master, broadcasts to them reach
    // this node only, and are counted.
    let away = &topics[0][1];
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.stats().dropped == before.0.dropped {
        assert!(Instant::now() < deadline, "no broadcast counted as dropped while a master was dead");
        let _ = a.server.endpoint.broadcast(away, "while_down", json!({}));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replica_port = replica.port;
    let cluster = tokio::task::spawn_blocking(move || {
        wait(&format!("replica {replica_port} promoted"), Duration::from_secs(20), || {
            cli_text(replica_port, &["role"]).starts_with("master")
        });
        cluster.wait_ok();
        cluster
    })
    .await
    .unwrap();

    connected_through(&a, &b, away).await;
    until("both nodes back", Duration::from_secs(10), || {
        a.stats().reconnects > before.0.reconnects && b.stats().reconnects > before.1.reconnects
    })
    .await;
    let back = a.stats();
    // Every master, the promoted one included, carries every broadcast now.
    const N: u64 = 50;
    for i in 0..N {
        for topic in &listened {
            a.server.endpoint.broadcast(topic, "after", json!({"i": i})).unwrap();
        }
    }
    for (listener, topic) in listeners.iter_mut().zip(&listened) {
        for i in 0..N {
            let frame = listener.json().await;
            assert_eq!((&frame[2], &frame[3], &frame[4]["i"]), (&json!(topic), &json!("after"), &json!(i)));
        }
        listener.silent(0).await;
    }
    let after = a.stats();
    assert_eq!(after.dropped, back.dropped, "nothing dropped once the cluster answered again");
    assert!(after.published >= back.published + 3 * N, "{after:?}");
    let promoted = cluster.listed().into_iter().find(|n| n.port == replica_port).expect("the promoted replica");
    assert!(promoted.master && promoted.slots == victim.slots, "{promoted:?} took over {victim:?}");
}

// ---------------------------------------------------------------- history

/// History on a cluster, on one cluster (six servers are slow to start): a
/// client whose node is killed recovers on the other node; a gap beyond
/// the history is reported; and the topics' streams spread over the
/// masters, each on the master of its topic's sharded channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_recovers_on_another_node_reports_gaps_and_spreads_over_the_masters() {
    let cluster = Cluster::start();
    multinode::a_client_recovers_on_another_node(cluster.make("ch1", Routing::Topic)).await;
    multinode::a_gap_beyond_the_history_is_reported(cluster.make("ch2", Routing::Topic)).await;

    let namespace = "ch3";
    let make = cluster.make(namespace, Routing::Topic);
    let (a, b) = (node(&make).await, node(&make).await);
    connected(&a, &b).await;
    let topics: Vec<String> = (0..12).map(|i| format!("kept:spread-{i}")).collect();
    for topic in &topics {
        a.server.endpoint.broadcast(topic, "shout", json!({"n": 1})).unwrap();
    }
    let masters: Vec<Listed> = cluster.listed().into_iter().filter(|n| n.master).collect();
    // every topic's stream and its meta are on the master that owns the
    // slot of the topic's channel (where the script publishes)
    let owner = |slot: u16| masters.iter().find(|m| m.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot)));
    let mut used = std::collections::HashSet::new();
    for topic in &topics {
        let channel_slot = cluster.slot(&format!("{namespace}:t:{topic}"));
        let master = owner(channel_slot).expect("every slot is served");
        let found = || {
            cli_text(master.port, &["--scan", "--pattern", &format!("*{namespace}:h*:{topic}")])
                .lines()
                .filter(|key| cluster.slot(key) == channel_slot)
                .count()
        };
        wait(&format!("{topic}'s stream and meta on port {}", master.port), Duration::from_secs(5), || found() == 2);
        used.insert(master.port);
    }
    assert_eq!(used.len(), masters.len(), "12 topics' streams all on some masters only: {used:?}");
}
