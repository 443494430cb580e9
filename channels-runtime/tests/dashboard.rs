//! The live dashboard (`Endpoint::dashboard`): its page and socket are
//! guarded, the rows it pushes are the endpoint's own counters (and their
//! rates), nothing runs for it while nobody watches, and with several nodes
//! on a real Redis the watcher sees a row per node.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use phx_channels_runtime::dashboard::TokenGuard;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::SocketOptions;
use serde_json::{json, Value};
use support::{http, serve_with, Client, Server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "s3cret/+?";

async fn dashboard_server(endpoint: Endpoint) -> Server {
    serve_with(endpoint.dashboard("/dashboard", TokenGuard::new(TOKEN)), SocketOptions::default()).await
}

fn socket_url(addr: SocketAddr, query: &str) -> String {
    format!("ws://{addr}/dashboard/socket/websocket?vsn=2.0.0{query}")
}

/// The dashboard's socket, the token sent as the page sends it (phoenix.js's
/// `authToken`: base64url in the sub-protocol list), or `Err(status)`.
async fn watch_socket(addr: SocketAddr, token: Option<&str>) -> Result<Client, u16> {
    use base64::Engine;
    let mut request = socket_url(addr, "").into_client_request().unwrap();
    if let Some(token) = token {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        let protocols = format!("phoenix, base64url.bearer.phx.{encoded}");
        request.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Client::from(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// A watcher joined on `topic`: the join's response and its first row.
async fn watcher(addr: SocketAddr, topic: &str) -> (Client, Value, Value) {
    let mut client = watch_socket(addr, Some(TOKEN)).await.expect("the token opens the socket");
    let reply = client.join("1", topic).await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let row = next_row(&mut client).await;
    (client, reply[4]["response"].clone(), row)
}

async fn next_row(client: &mut Client) -> Value {
    let frame = client.json().await;
    assert_eq!(frame[3], "row", "{frame}");
    frame[4].clone()
}

/// The endpoint's counters, as a row carries them.
fn metrics(endpoint: &Endpoint) -> BTreeMap<String, Value> {
    serde_json::from_value(serde_json::to_value(endpoint.metrics()).unwrap()).unwrap()
}

fn row_metrics(row: &Value) -> BTreeMap<String, Value> {
    serde_json::from_value(row["metrics"].clone()).unwrap()
}

#[tokio::test]
async fn the_page_and_its_socket_refuse_requests_without_the_token() {
    let s = dashboard_server(Endpoint::new()).await;
    let page = |query: &'static str| http(s.addr, "GET", query, &[], "");
    assert_eq!(page("/dashboard").await.0, 401, "no token");
    assert_eq!(page("/dashboard?token=guess").await.0, 403, "a wrong token");
    let (status, head, body) = page("/dashboard?token=s3cret%2F%2B%3F").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"), "{head}");
    assert!(head.to_ascii_lowercase().contains("referrer-policy: no-referrer"), "{head}");
    assert!(body.contains(r#"src="/dashboard/assets/dashboard.js""#), "the page loads its script from the mount");
    assert!(body.contains(r#"data-base="/dashboard""#));
    // The script and style are public (code, no figures), the page's
    // script speaks to the socket under the mount.
    let (status, _, script) = http(s.addr, "GET", "/dashboard/assets/dashboard.js", &[], "").await;
    assert_eq!(status, 200);
    assert!(script.contains("/socket/websocket?vsn=2.0.0"));
    assert_eq!(http(s.addr, "GET", "/dashboard/assets/dashboard.css", &[], "").await.0, 200);

    assert_eq!(watch_socket(s.addr, None).await.err(), Some(401), "a socket without a token");
    assert_eq!(watch_socket(s.addr, Some("guess")).await.err(), Some(403), "a socket with a wrong token");
    assert!(watch_socket(s.addr, Some(TOKEN)).await.is_ok(), "the token in the sub-protocol, as the page sends it");
    // Never in the socket's URL, where proxies and access logs keep it:
    // the page's own `?token=` opens the page only.
    let by_query = tokio_tungstenite::connect_async(socket_url(s.addr, "&token=s3cret%2F%2B%3F")).await;
    match by_query {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a socket with its token in the query was not refused: {:?}", other.map(|_| ())),
    }
    // Refusals count in the dashboard's own counters, not the app's.
    assert_eq!(s.endpoint.metrics().connections_refused, 0);

    // Only watcher topics join.
    let mut client = watch_socket(s.addr, Some(TOKEN)).await.unwrap();
    assert_eq!(client.join("1", "phx_dashboard:no spaces").await[4]["status"], "error");
    assert_eq!(client.join("2", "room:1").await[4]["response"]["reason"], "unmatched topic");
}

#[tokio::test]
async fn an_unmounted_dashboard_is_not_there() {
    let s = serve_with(Endpoint::new(), SocketOptions::default()).await;
    assert_eq!(http(s.addr, "GET", "/dashboard?token=x", &[], "").await.0, 404);
}

// The clock is paused: the ticks come as fast as the test reads them, and
// the rates divide by exactly the tick.
#[tokio::test(start_paused = true)]
async fn rows_carry_the_endpoints_counters_and_their_rates() {
    let s = dashboard_server(Endpoint::new()).await;
    // A scripted session on the app's socket.
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = s.v2().await;
        c.join("1", &format!("echo:room-{i}")).await;
        c.join("2", "echo:lobby").await;
        clients.push(c);
    }
    clients[0].send(json!(["2", "3", "echo:lobby", "shout", {"hi": 1}])).await;
    for c in &mut clients {
        // the reply to the shout, or the shout itself, then what is left
        while c.recv_within(Duration::from_millis(50)).await.is_some() {}
    }

    let (mut watcher, joined, row) = watcher(s.addr, "phx_dashboard:t1").await;
    assert_eq!(joined, json!({"node": "local", "interval_ms": 1000, "multi_node": false}));
    assert_eq!((&row["node"], &row["here"]), (&json!("local"), &json!(true)), "of the node watched from");
    assert_eq!(row_metrics(&row), metrics(&s.endpoint), "the row is the endpoint's counters");
    let figures = row_metrics(&row);
    assert_eq!(figures["connections_open"], 3, "the watcher does not count itself");
    assert_eq!(figures["channels_open"], 6);
    assert_eq!(figures["joins"], 6);
    assert_eq!(row["rates"], Value::Null, "a first sample has no rates");
    assert_eq!(row["topics"][0], json!(["echo:lobby", 3]), "the largest topic first");
    assert_eq!(row["topics"].as_array().unwrap().len(), 4, "internal topics are not listed: {}", row["topics"]);
    assert_eq!(row["presences"], 0);
    assert_eq!(row["broker"], Value::Null);

    // One more second of traffic: two joins and five pings.
    let mut c = s.v2().await;
    c.join("1", "echo:lobby").await;
    c.join("2", "echo:late").await;
    for n in 0..5 {
        c.send(json!(["1", format!("p{n}"), "echo:lobby", "ping", {}])).await;
        assert_eq!(c.json().await[1], format!("p{n}"));
    }
    let row = next_row(&mut watcher).await;
    assert_eq!(row_metrics(&row), metrics(&s.endpoint));
    assert_eq!(row["topics"][0], json!(["echo:lobby", 4]));
    let rates = &row["rates"];
    assert_eq!(rates["joins"], 2.0, "{rates}");
    assert_eq!(rates["messages_in"], 7.0, "two joins and five pings: {rates}");
    assert_eq!(rates["connections_accepted"], 1.0);
    assert_eq!(rates.get("connections_open"), None, "current values have no rate");
    assert!(rates["frames_out"].as_f64().unwrap() >= 7.0, "{rates}");

    // A quiet second: rates fall to zero.
    let row = next_row(&mut watcher).await;
    assert_eq!(row["rates"]["joins"], 0.0);
    assert_eq!(row_metrics(&row)["connections_open"], 4);
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

// Paused: a timer would fire at once, so silence means no timer.
#[tokio::test(start_paused = true)]
async fn nothing_runs_while_nobody_watches() {
    // An endpoint and what lives for its life (its server, its watchdog,
    // started by a first connection) costs as many tasks with a dashboard
    // mounted as without.
    let start = alive_tasks();
    let plain = serve_with(Endpoint::new(), SocketOptions::default()).await;
    let mut warm_plain = plain.v2().await;
    warm_plain.join("1", "echo:warm").await;
    let plain_tasks = alive_tasks() - start;
    let s = dashboard_server(Endpoint::new()).await;
    let mut warm = s.v2().await;
    warm.join("1", "echo:warm").await;
    let before = alive_tasks();
    assert_eq!(before - start - plain_tasks, plain_tasks, "a mounted dashboard runs no task of its own");

    // Nobody watches: ten seconds pass and nothing is spawned.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(alive_tasks(), before, "no task runs for an unwatched dashboard");

    let (mut watcher, _, _) = watcher(s.addr, "phx_dashboard:t2").await;
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        next_row(&mut watcher).await;
    }
    assert_eq!(started.elapsed(), Duration::from_secs(5), "one row a second");
    // The watcher's connection, and its channel's one pending tick.
    assert_eq!(alive_tasks(), before + 2);

    watcher.send(json!(["1", "9", "phx_dashboard:t2", "phx_leave", {}])).await;
    loop {
        let frame = watcher.json().await;
        if frame[3] == "phx_close" {
            break;
        }
    }
    for _ in 0..100 {
        if alive_tasks() == before + 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(alive_tasks(), before + 1, "the tick's timer ended with the channel");
    // Ten seconds on, nothing was pushed: no timer was left behind.
    tokio::time::sleep(Duration::from_secs(10)).await;
    watcher.silent(0).await;
    assert_eq!(alive_tasks(), before + 1);
    drop(watcher);
    support::eventually("the watcher's connection is gone", || alive_tasks() == before).await;
}

/// Two nodes on a real Redis (started here on a free port), each with a
/// dashboard: a watcher on one sees a row for the other with its figures.
#[cfg(feature = "redis")]
mod multinode {
    use std::time::Instant;

    use phx_channels_runtime::presence::{Presence, PresenceOptions};
    use phx_channels_runtime::pubsub::{PubSub, Redis};

    use super::*;

    async fn node(url: &str, name: &str) -> Server {
        let pubsub = PubSub::with_adapter(Redis::new(url).unwrap().namespace("dashboard"));
        let presence = PresenceOptions { node_name: Some(name.into()), ..PresenceOptions::default() };
        assert!(Presence::start(&pubsub, presence));
        dashboard_server(Endpoint::new().with_pubsub(pubsub)).await
    }

    /// The next row of `node` the watcher is pushed, within 10 s.
    async fn row_of(watcher: &mut Client, node: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no row of {node} within 10 s");
            let row = next_row(watcher).await;
            if row["node"] == node {
                return row;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_sees_a_row_per_node_with_its_figures() {
        let redis = support::redis_server::RedisServer::start();
        let url = redis.url();
        let (a, b) = (node(&url, "node-a").await, node(&url, "node-b").await);
        // b serves three clients on one topic, a one client.
        let mut on_b = Vec::new();
        for i in 0..3 {
            let mut c = b.v2().await;
            c.join("1", "echo:busy").await;
            c.send(json!(["1", "2", "echo:busy", "track", format!("user-{i}")])).await;
            // presence diffs come and go before the reply
            while c.json().await[1] != "2" {}
            on_b.push(c);
        }
        let mut on_a = a.v2().await;
        on_a.join("1", "echo:quiet").await;

        let (mut watcher, joined, mine) = watcher(a.addr, "phx_dashboard:multi").await;
        assert_eq!(joined["node"], "node-a");
        assert_eq!(joined["multi_node"], true);
        assert_eq!((&mine["node"], &mine["here"]), (&json!("node-a"), &json!(true)));
        assert_eq!(row_metrics(&mine)["connections_open"], 1);
        assert!(mine["broker"]["published"].is_u64(), "a node's row carries its broker's counters: {mine}");

        let theirs = row_of(&mut watcher, "node-b").await;
        assert_eq!(theirs["here"], false);
        let figures = row_metrics(&theirs);
        assert_eq!(figures["connections_open"], 3, "{theirs}");
        assert_eq!(figures["channels_open"], 3);
        assert_eq!(figures, metrics(&b.endpoint), "b's row is b's counters");
        assert_eq!(theirs["presences"], 3, "presences tracked on b");
        assert_eq!(theirs["topics"][0], json!(["echo:busy", 3]));
        // The second answer of b has rates, on b's clock.
        let again = row_of(&mut watcher, "node-b").await;
        assert_eq!(again["rates"]["joins"], 0.0, "{again}");
        // a's own rows keep coming beside b's.
        assert_eq!(row_of(&mut watcher, "node-a").await["metrics"]["channels_open"], 1);
    }
}

#[tokio::test]
async fn long_topics_are_clipped_in_the_rows() {
    // Topics as long as the app lets them be (no topic limit here): a
    // watcher's row lists the eight largest, each clipped, so the row stays
    // small (eight 1.1 MB names made a 9 MB row, and the watcher was
    // closed 1008 as a slow consumer on its first row).
    let s = serve_with(
        Endpoint::new().dashboard("/dashboard", TokenGuard::new(TOKEN)),
        SocketOptions { max_topic_bytes: 0, ..SocketOptions::default() },
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..8 {
        let mut c = s.v2().await;
        let topic = format!("echo:{i}{}", "x".repeat(1_100_000));
        assert_eq!(c.join("1", &topic).await[4]["status"], "ok");
        clients.push(c);
    }
    let (_watcher, _, row) = watcher(s.addr, "phx_dashboard:long").await;
    let topics = row["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 8);
    for topic in topics {
        let name = topic[0].as_str().unwrap();
        assert!(name.len() < 200 && name.starts_with("echo:") && name.ends_with('…'), "{name}");
    }
    assert!(row.to_string().len() < 16 * 1024, "a row of {} bytes", row.to_string().len());
}
