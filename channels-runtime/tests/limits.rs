//! Limits, contained faults and graceful shutdown, over real sockets.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::time::Duration;

use phx_channels_runtime::channel::Terminate;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::server::ServerOptions;
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{serve, serve_with, Received};

#[tokio::test]
async fn a_panicking_connect_is_refused_with_500_and_the_server_carries_on() {
    let s = support::server().await;
    assert_eq!(s.refused_status("vsn=2.0.0&token=panic").await, 500);
    let mut c = s.v2().await;
    c.send(json!([null, "1", "phoenix", "heartbeat", {}])).await;
    assert_eq!(c.json().await[1], "1");
}

#[tokio::test]
async fn the_connection_cap_answers_503() {
    let s = serve_with(Endpoint::new().max_connections(2), SocketOptions::default()).await;
    let a = s.v2().await;
    let _b = s.v2().await;
    assert_eq!(s.refused_status("vsn=2.0.0").await, 503);
    drop(a);
    support::eventually("the dropped connection frees its place", || s.endpoint.connections() < 2).await;
    let _c = s.v2().await;
}

// The window is the runtime's own clock: the paused clock steps over it.
#[tokio::test(start_paused = true)]
async fn joins_per_second_are_limited() {
    let s = serve(SocketOptions { max_joins_per_second: 5, ..SocketOptions::default() }).await;
    let mut c = s.v2().await;
    for i in 0..5 {
        assert_eq!(c.join(&i.to_string(), &format!("echo:{i}")).await[4]["status"], "ok");
    }
    assert_eq!(
        c.join("9", "echo:9").await,
        json!(["9", "9", "echo:9", "phx_reply", {"status": "error", "response": {"reason": "too many joins"}}])
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.join("10", "echo:10").await[4]["status"], "ok");
}

// The header-read timeout runs on the runtime's clock: the paused clock
// steps over it while the client waits.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_sends_its_headers_is_cut_off() {
    let options = ServerOptions { handshake_timeout: Duration::from_millis(300), ..ServerOptions::default() };
    let s = serve_with(Endpoint::new().server_options(options), SocketOptions::default()).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server should have closed the silent connection");
}

#[tokio::test]
async fn graceful_shutdown_drains_sockets_with_1012_and_terminates_channels() {
    let options =
        ServerOptions { drain_period: Duration::from_millis(200), drain_batch: 1, ..ServerOptions::default() };
    let endpoint = Endpoint::new().server_options(options).socket("/socket", support::TestSocket);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(endpoint.clone().serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
    let mut clients = Vec::new();
    for i in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut c = support::Client::from(ws);
        c.join("1", &format!("echo:t-drain{i}")).await;
        clients.push(c);
    }
    assert_eq!(endpoint.connections(), 3);
    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    // Each socket's next frame is the close frame, 1012, and then the
    // connection ends; one socket per batch, spread over the drain period.
    let mut last_closed = Duration::ZERO;
    for c in &mut clients {
        assert_eq!(c.recv().await, Received::Closed(Some(1012)));
        last_closed = last_closed.max(started.elapsed());
        assert_eq!(c.recv().await, Received::Closed(None), "the connection ends after the close frame");
    }
    // Three batches over 200 ms: the last waits two pauses of 200/3 ms.
    assert!(last_closed >= Duration::from_millis(133), "all drained at once, in {last_closed:?}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns in bounded time")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    for i in 0..3 {
        let topic = format!("echo:t-drain{i}");
        for _ in 0..100 {
            if !support::terminated(&topic).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(support::terminated(&topic), [Terminate::Shutdown]);
    }
    // nothing listens any more
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_topic_over_the_length_limit_is_refused_at_join() {
    let s = support::server().await;
    let mut c = s.v2().await;
    // Refused with the reason, before any channel or subscription exists
    // (100 joins of 2 MB topics held 600 MB).
    let long = format!("echo:{}", "x".repeat(2_000_000));
    let refused = c.join("1", &long).await;
    assert_eq!(refused[4], json!({"status": "error", "response": {"reason": "topic too long", "max": 1024}}));
    assert_eq!(refused[2], long.as_str(), "the reply names the topic, so phoenix.js finds its channel");
    let at_limit = format!("echo:{}", "x".repeat(1024 - 5));
    assert_eq!(c.join("2", &at_limit).await[4]["status"], "ok");
    let m = s.endpoint.metrics();
    assert_eq!((m.channels_open, m.joins_refused, m.inputs_refused), (1, 1, 1));
    assert_eq!(s.endpoint.pubsub().subscriber_count(&long), 0);
}

#[tokio::test]
async fn a_source_over_its_connection_cap_is_answered_503_at_once() {
    let options = ServerOptions { max_connections_per_source: 3, ..ServerOptions::default() };
    let s = serve_with(Endpoint::new().server_options(options), SocketOptions::default()).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(s.v2().await);
    }
    // A fourth from the same address: a plain 503 with Retry-After, sent
    // before the request is read, not a client left hanging.
    let (status, head, _) = support::http(s.addr, "GET", "/socket/websocket?vsn=2.0.0", &[], "").await;
    assert_eq!(status, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert_eq!(s.refused_status("vsn=2.0.0").await, 503);
    assert_eq!(s.endpoint.metrics().connections_refused, 2);
    // One leaves: its place is free again.
    drop(open.pop());
    support::eventually("the dropped connection frees its place", || s.endpoint.connections() < 3).await;
    open.push(s.v2().await);
    assert_eq!(s.endpoint.connections(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_joining_at_once_gets_batched_diffs() {
    // Every join of a room made every member a diff: 2 000 members joining
    // at once were 4 million frames, and a bystander waited 2.6 s for its
    // heartbeat. Diffs are batched per room per broadcast period (100 ms).
    const MEMBERS: usize = 300;
    let s = support::server().await;
    let topic = "echo:storm";
    let mut first = abuse_helpers::Raw::v2(s.addr).await;
    assert_eq!(first.join("1", topic).await[4]["status"], "ok");
    assert!(first.text(format!(r#"["1","t","{topic}","track","m-first"]"#)).await);
    let mut bystander = abuse_helpers::Raw::v2(s.addr).await;
    assert_eq!(bystander.join("1", "echo:elsewhere").await[4]["status"], "ok");

    let members: Vec<_> = (0..MEMBERS)
        .map(|i| {
            let addr = s.addr;
            tokio::spawn(async move {
                let mut c = abuse_helpers::Raw::v2(addr).await;
                assert_eq!(c.join("1", topic).await[4]["status"], "ok");
                assert!(c.text(format!(r#"["1","t","{topic}","track","m{i}"]"#)).await);
                // Reads what it gets until told to stop (dropped).
                while !matches!(c.next().await, abuse_helpers::Got::Closed(_) | abuse_helpers::Got::Timeout) {}
            })
        })
        .collect();

    // The first member sees every member join, in how many diffs?
    let mut joined = std::collections::HashSet::new();
    let mut diffs = 0;
    let mut slowest = Duration::ZERO;
    let mut beat = 0;
    while joined.len() < MEMBERS {
        let frame = first.json().await;
        if frame[3] == "presence_diff" {
            diffs += 1;
            joined.extend(frame[4]["joins"].as_object().unwrap().keys().filter(|k| *k != "m-first").cloned());
            let sent = std::time::Instant::now();
            beat += 1;
            bystander.heartbeat(&beat.to_string()).await;
            slowest = slowest.max(sent.elapsed());
        }
    }
    println!(
        "{MEMBERS} members joining at once: {diffs} diffs to the first; a bystander's slowest heartbeat {slowest:?}"
    );
    assert!(diffs < MEMBERS / 5, "{diffs} diffs for {MEMBERS} joins");
    for member in members {
        member.abort();
    }
}
