//! `discuss` on its databases, over real sockets: a SQLite file of its own
//! and a real PostgreSQL server (`support::postgres`), with nodes served
//! in-process on free loopback ports and the Rust client.
//!
//! - comments survive a restart, on both backends;
//! - paging and the limits on what is kept hold on both;
//! - a comment whose broadcast the fan-out limits refused is not kept;
//! - a PostgreSQL stopped mid-test is an error reply, not a hung client,
//!   and the comments come back with it;
//! - two nodes on one PostgreSQL and one Redis serve the same comments;
//! - a storm of joins on one topic shares its reads of the latest comments.

#[path = "../examples/discuss/app.rs"]
#[allow(dead_code)] // the admin routes are tested in discuss_channels.rs
mod app;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::StreamExt;
use phx_channels::client::{Channel, PushError, Socket};
use phx_channels::pubsub::Redis;
use phx_channels::{Endpoint, PubSub, SocketOptions};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use app::store::{Limits, Store, TIMEOUT};
use app::{App, UserSocket};
use support::abuse_helpers::Logs;
use support::postgres::Postgres;
use support::redis_server::RedisServer;
use support::TempSqlite;

/// What every test of this file logs (one subscriber for the process: a
/// thread's own would miss the lines of callsites another thread
/// registered at the same moment).
fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(logs.clone()).finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
}

/// A `discuss` node: the app on a database, served on a free port.
struct Node {
    addr: SocketAddr,
    app: Arc<App>,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

async fn node_with(url: &str, pubsub: PubSub, options: SocketOptions, limits: Limits) -> Node {
    logs();
    let store = Store::connect(url, limits).await.unwrap_or_else(|e| panic!("{url}: {e:#}"));
    let app = Arc::new(App::new(store, pubsub.clone(), None));
    let endpoint = Endpoint::with_state(app.clone()).with_pubsub(pubsub).socket_with("/socket", UserSocket, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        endpoint
            .serve_with_shutdown(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Node { addr, app, stop, served }
}

async fn node(url: &str) -> Node {
    node_with(url, PubSub::local(), SocketOptions::default(), Limits::default()).await
}

impl Node {
    /// A client connected to this node.
    fn client(&self) -> Socket {
        Socket::connect(format!("ws://{}/socket", self.addr))
    }

    /// Stops serving and closes the database, as a node shutting down.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.unwrap();
        self.app.comments.close().await;
    }
}

async fn join(socket: &Socket, topic: &str) -> (Channel, Value) {
    socket.channel(topic).join(json!({})).await.unwrap_or_else(|e| panic!("join {topic}: {e}"))
}

/// The contents a join replays.
async fn replayed(socket: &Socket, topic: &str) -> Vec<String> {
    let (channel, reply) = join(socket, topic).await;
    let _ = channel.leave().await;
    contents(&reply)
}

fn contents(reply: &Value) -> Vec<String> {
    let comments = reply["comments"].as_array().unwrap_or_else(|| panic!("no comments in {reply}"));
    comments.iter().map(|c| c["content"].as_str().unwrap().to_owned()).collect()
}

/// The status and response of a push.
async fn push(channel: &Channel, event: &str, payload: Value) -> (String, Value) {
    match channel.push(event, payload).await {
        Ok(response) => ("ok".to_owned(), response.decode().unwrap()),
        Err(PushError::Reply { status, response }) => (status, response.decode().unwrap()),
        Err(other) => panic!("{event}: {other}"),
    }
}

async fn add(channel: &Channel, content: &str) {
    let (status, response) = push(channel, "comment:add", json!({"content": content})).await;
    assert_eq!((status.as_str(), &response), ("ok", &json!({})), "comment:add {content}");
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix}{n}")).collect()
}

/// Two tests of one scenario (an async fn taking a `DATABASE_URL`): on a
/// SQLite file of its own, and on a PostgreSQL server of its own.
macro_rules! on_both_backends {
    ($scenario:ident: $on_sqlite:ident, $on_postgres:ident) => {
        #[tokio::test]
        async fn $on_sqlite() {
            let db = TempSqlite::new();
            $scenario(&db.url()).await;
        }

        #[tokio::test]
        async fn $on_postgres() {
            let pg = Postgres::start();
            $scenario(&pg.url()).await;
        }
    };
}

// ---------------------------------------------------------------- restart

async fn comments_survive_a_restart(url: &str) {
    let first = node(url).await;
    let client = first.client();
    let (channel, reply) = join(&client, "comments:1").await;
    assert_eq!(reply, json!({"hey": "there", "comments": []}));
    for content in ["one", "two", "three ✓"] {
        add(&channel, content).await;
    }
    client.disconnect();
    first.stop().await;

    let second = node(url).await;
    assert_eq!(replayed(&second.client(), "comments:1").await, ["one", "two", "three ✓"]);
    assert!(replayed(&second.client(), "comments:2").await.is_empty());
    second.stop().await;
}

on_both_backends!(comments_survive_a_restart: comments_survive_a_restart_on_sqlite, comments_survive_a_restart_on_postgres);

// ---------------------------------------------------------------- a join storm

/// A node's clients rejoining elsewhere at once: 3 000 joins of one topic
/// ask for its latest comments together. They share reads (each one in a
/// query of its own, they queued past the pool's deadline and were
/// refused), all get the same list, and a comment stored after a read is
/// in the next one.
async fn a_join_storm_shares_its_reads(url: &str) {
    let store = Arc::new(Store::connect(url, Limits::default()).await.unwrap());
    for content in ["one", "two"] {
        store.insert(app::Comment::new(content.into(), Some("u".into()), "7".into())).await.unwrap();
    }
    let before = store.latest_reads();
    let answers = join_all((0..3000).map(|_| {
        let store = Arc::clone(&store);
        async move { store.latest("7", 50).await }
    }))
    .await;
    for answer in &answers {
        assert_eq!(contents(&json!({"comments": answer.as_ref().expect("answered")})), ["one", "two"]);
    }
    let reads = store.latest_reads() - before;
    assert!(reads < 100, "3 000 joins made {reads} reads");

    store.insert(app::Comment::new("three".into(), Some("u".into()), "7".into())).await.unwrap();
    let latest = store.latest("7", 50).await.unwrap();
    assert_eq!(contents(&json!({ "comments": latest })), ["one", "two", "three"]);
}

on_both_backends!(a_join_storm_shares_its_reads: a_join_storm_shares_its_reads_on_sqlite, a_join_storm_shares_its_reads_on_postgres);

// ---------------------------------------------------------------- paging and limits

async fn pages_and_limits(url: &str) {
    let limits = Limits { per_topic: 8, total: 12 };
    let node = node_with(url, PubSub::local(), SocketOptions::default(), limits).await;
    let client = node.client();
    let (a, _) = join(&client, "comments:10").await;
    for n in 0..10 {
        add(&a, &format!("a{n}")).await;
    }
    // Eight kept of ten, paged three at a time, newest first, each page
    // oldest first.
    let (status, page) = push(&a, "comments:before", json!({"limit": 3})).await;
    assert_eq!(status, "ok", "{page}");
    assert_eq!(contents(&page), names("a", 7..10));
    let (_, page) = push(&a, "comments:before", json!({"before": page["next"], "limit": 3})).await;
    assert_eq!(contents(&page), names("a", 4..7));
    let (_, page) = push(&a, "comments:before", json!({"before": page["next"], "limit": 3})).await;
    assert_eq!(contents(&page), names("a", 2..4));
    assert_eq!(page["next"], Value::Null, "a2 is the oldest kept");

    // Twelve kept in all: topic 11's comments push topic 10's oldest out.
    let (b, _) = join(&client, "comments:11").await;
    for n in 0..6 {
        add(&b, &format!("b{n}")).await;
    }
    assert_eq!(replayed(&client, "comments:10").await, names("a", 4..10));
    assert_eq!(replayed(&client, "comments:11").await, names("b", 0..6));
    client.disconnect();
    node.stop().await;
}

on_both_backends!(pages_and_limits: pages_and_limits_on_sqlite, pages_and_limits_on_postgres);

// ---------------------------------------------------------------- refused broadcasts

/// Issue 23, item 7: 300 fast `comment:add`, 200 of them refused "too many
/// broadcasts", and a new joiner was replayed refused ones.
#[tokio::test]
async fn a_comment_whose_broadcast_was_refused_is_not_kept() {
    let db = TempSqlite::new();
    let options = SocketOptions { max_broadcasts_per_second: 3, ..SocketOptions::default() };
    let node = node_with(&db.url(), PubSub::local(), options, Limits::default()).await;
    let (sender, listener) = (node.client(), node.client());
    let (channel, _) = join(&sender, "comments:20").await;
    let (heard, _) = join(&listener, "comments:20").await;
    let mut broadcasts = heard.on("comments:20:new");

    // Sent at once: the channel answers them in order.
    let pushes = (0..10).map(|n| channel.push("comment:add", json!({"content": format!("c{n}")})));
    let mut kept = Vec::new();
    for (n, answer) in join_all(pushes).await.into_iter().enumerate() {
        match answer {
            Ok(_) => kept.push(format!("c{n}")),
            Err(PushError::Reply { response, .. }) => {
                let response: Value = response.decode().unwrap();
                assert_eq!(response, json!({"reason": "too many broadcasts", "max_per_second": 3}));
            }
            Err(other) => panic!("c{n}: {other}"),
        }
    }
    assert!(kept.len() >= 3 && kept.len() < 10, "some refused, some not: {kept:?}");

    let mut heard_contents = Vec::new();
    while heard_contents.len() < kept.len() {
        let payload: Value = broadcasts.next().await.unwrap().expect("no event dropped").decode().unwrap();
        heard_contents.push(payload["comment"]["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(heard_contents, kept, "the listener heard exactly the accepted comments");
    assert_eq!(replayed(&node.client(), "comments:20").await, kept, "a joiner is replayed exactly those");
    sender.disconnect();
    listener.disconnect();
    node.stop().await;
}

// ---------------------------------------------------------------- a database that stops

#[tokio::test]
async fn a_stopped_postgres_is_an_error_reply_and_the_comments_come_back_with_it() {
    let pg = Postgres::start();
    let node = node(&pg.url()).await;
    let (sender, listener) = (node.client(), node.client());
    let (channel, _) = join(&sender, "comments:30").await;
    let (heard, _) = join(&listener, "comments:30").await;
    let mut broadcasts = heard.on("comments:30:new");
    add(&channel, "before").await;

    // What this test's thread logs (the server's tasks run on it).
    let log = logs();
    pg.stop_server();
    let started = Instant::now();
    let joiner = node.client();
    let (added, paged, joined) = tokio::join!(
        push(&channel, "comment:add", json!({"content": "while down"})),
        push(&channel, "comments:before", json!({})),
        joiner.channel("comments:31").join::<Value>(json!({})),
    );
    let unavailable = json!({"reason": "storage unavailable"});
    assert_eq!(added, ("error".to_owned(), unavailable.clone()));
    assert_eq!(paged, ("error".to_owned(), unavailable.clone()));
    assert_eq!(joined.unwrap_err().response().map(|r| r.decode::<Value>().unwrap()), Some(unavailable));
    // The two pushes were answered one after the other, both well within
    // phoenix.js's 10 s push timeout.
    assert!(started.elapsed() < 2 * TIMEOUT + Duration::from_secs(1), "answered after {:?}", started.elapsed());
    // Three failures in fewer lines (one a second at most), each with the
    // cause, counting those it held back.
    // (Only this test's database is a PostgreSQL that fails.)
    let lines = log.lines_with(&["failed: storage unavailable", "backend=\"postgres\""]);
    assert!(!lines.is_empty() && lines.len() < 3, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains("Connection refused")), "{lines:#?}");
    let held_back: usize = lines.iter().map(|l| l.rsplit("held_back=").next().unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(lines.len() + held_back, 3, "{lines:#?}");

    pg.start_server();
    add(&channel, "after").await;
    let mut heard_contents = Vec::new();
    for _ in 0..2 {
        let payload: Value = broadcasts.next().await.unwrap().expect("no event dropped").decode().unwrap();
        heard_contents.push(payload["comment"]["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(heard_contents, ["before", "after"], "nothing broadcast while the database was down");
    assert_eq!(replayed(&node.client(), "comments:30").await, ["before", "after"]);
    sender.disconnect();
    listener.disconnect();
    node.stop().await;
}

/// A SQLite file another process holds the write lock of: every writer is
/// answered within the timeout, the ones waiting for their turn behind
/// another client included, and writes work again once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_answers_every_writer_within_the_timeout() {
    use sqlx::Connection;
    let db = TempSqlite::new();
    let node = node(&db.url()).await;
    let (ada, bob) = (node.client(), node.client());
    let (ada_channel, _) = join(&ada, "comments:50").await;
    let (bob_channel, _) = join(&bob, "comments:51").await;

    let mut holder = sqlx::SqliteConnection::connect(&db.url()).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
    let started = Instant::now();
    let (by_ada, by_bob) = tokio::join!(
        async {
            let answer = push(&ada_channel, "comment:add", json!({"content": "ada"})).await;
            (answer, started.elapsed())
        },
        async {
            let answer = push(&bob_channel, "comment:add", json!({"content": "bob"})).await;
            (answer, started.elapsed())
        },
    );
    let unavailable = ("error".to_owned(), json!({"reason": "storage unavailable"}));
    for (who, (answer, after)) in [("ada", by_ada), ("bob", by_bob)] {
        assert_eq!(answer, unavailable, "{who}");
        assert!(after < TIMEOUT + Duration::from_secs(1), "{who} answered after {after:?}");
    }
    // Readers do not wait for the writer (WAL).
    assert!(replayed(&node.client(), "comments:50").await.is_empty());

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    add(&ada_channel, "ada again").await;
    assert_eq!(replayed(&node.client(), "comments:50").await, ["ada again"]);
    ada.disconnect();
    bob.disconnect();
    node.stop().await;
}

// ---------------------------------------------------------------- two nodes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_and_one_redis_serve_the_same_comments() {
    let pg = Postgres::start();
    let redis = RedisServer::start();
    let on_redis = || PubSub::with_adapter(Redis::new(&redis.url()).unwrap());
    // Started together: one of them runs the migrations.
    let url = pg.url();
    let (a, b) = tokio::join!(
        node_with(&url, on_redis(), SocketOptions::default(), Limits::default()),
        node_with(&url, on_redis(), SocketOptions::default(), Limits::default()),
    );
    let (on_a, on_b) = (a.client(), b.client());
    let (from_a, _) = join(&on_a, "comments:40").await;
    let (to_b, _) = join(&on_b, "comments:40").await;
    let mut heard_on_b = to_b.on("comments:40:new");

    add(&from_a, "from a").await;
    let payload: Value = tokio::time::timeout(Duration::from_secs(5), heard_on_b.next())
        .await
        .expect("the broadcast from node a on node b")
        .unwrap()
        .expect("no event dropped")
        .decode()
        .unwrap();
    assert_eq!(payload, json!({"comment": {"content": "from a"}}));
    add(&to_b, "from b").await;

    // A client new to either node is replayed both, in order.
    assert_eq!(replayed(&b.client(), "comments:40").await, ["from a", "from b"]);
    assert_eq!(replayed(&a.client(), "comments:40").await, ["from a", "from b"]);
    on_a.disconnect();
    on_b.disconnect();
    tokio::join!(a.stop(), b.stop());
}
