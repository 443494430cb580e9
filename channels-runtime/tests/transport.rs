//! The WebSocket transport over real loopback sockets: frames written
//! straight to a socket by whoever sends them, partial writes finished by
//! the connection's task in order, slow consumers cut off at the limit, and
//! the generic IO path (a router served by `axum::serve`).

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::SocketOptions;
use serde_json::{json, Value};
use support::TestSocket;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client whose socket takes at most `rcvbuf` bytes before the server's
/// writes stop: the kernel holds little for it, so what it does not read
/// stays with the server.
async fn small_window_client(addr: std::net::SocketAddr, rcvbuf: usize) -> WebSocketStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(u32::try_from(rcvbuf).unwrap()).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await.unwrap();
    ws
}

async fn join(ws: &mut WebSocketStream<TcpStream>, topic: &str) {
    ws.send(Message::text(json!(["1", "1", topic, "phx_join", {}]).to_string())).await.unwrap();
    let reply = next_json(ws).await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

async fn next_json(ws: &mut WebSocketStream<TcpStream>) -> Value {
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Broadcasts reach an idle subscriber whole and in order, interleaved
/// with the replies to what it sends, each reply after the broadcasts sent
/// before it was asked for.
#[tokio::test]
async fn broadcasts_to_an_idle_socket_arrive_whole_and_in_order_with_replies() {
    let s = support::server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:order").await;
    for round in 0..50u32 {
        for i in 0..4u32 {
            let n = round * 4 + i;
            // Sizes across every header length: 7-bit, 16-bit and 64-bit.
            let pad = "x".repeat([10, 200, 70_000, 1][i as usize]);
            s.endpoint.broadcast("echo:order", "seq", json!({"n": n, "pad": pad})).unwrap();
        }
        c.send(json!(["1", round.to_string(), "echo:order", "ping", {"round": round}])).await;
        for i in 0..4u32 {
            let got = c.json().await;
            assert_eq!(got[3], "seq", "{got}");
            assert_eq!(got[4]["n"], round * 4 + i);
        }
        let reply = c.json().await;
        assert_eq!(reply[1], round.to_string(), "{reply}");
        assert_eq!(reply[4]["response"]["round"], round);
    }
}

/// A broadcast larger than the socket takes at once is partly written by
/// the broadcaster; the connection's task finishes it, and what was sent
/// after it (a small broadcast, a reply) follows it in order.
#[tokio::test]
async fn a_large_frame_partly_written_is_finished_in_order() {
    let s = support::server().await;
    let mut ws = small_window_client(s.addr, 4096).await;
    join(&mut ws, "echo:large").await;
    let big = "y".repeat(4 * 1024 * 1024);
    s.endpoint.broadcast("echo:large", "big", json!({"pad": big})).unwrap();
    s.endpoint.broadcast("echo:large", "small", json!({"n": 1})).unwrap();
    ws.send(Message::text(json!(["1", "7", "echo:large", "ping", {"after": true}]).to_string())).await.unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(first[3], "big");
    assert_eq!(first[4]["pad"].as_str().map(str::len), Some(big.len()));
    assert_eq!(next_json(&mut ws).await[3], "small");
    let reply = next_json(&mut ws).await;
    assert_eq!((reply[1].as_str(), reply[4]["response"]["after"].as_bool()), (Some("7"), Some(true)));
}

/// A client that stops reading gets what its socket takes, then the rest
/// queues (the frame cut at the socket's edge first) until the backlog
/// reaches `max_outbound_bytes`: it is then closed with 1008, after the
/// frame it was in the middle of. A reader on the same topic is not held
/// up meanwhile.
#[tokio::test]
async fn a_reader_that_stops_is_closed_at_the_limit_and_nobody_waits_for_it() {
    let limit = 256 * 1024;
    let s = support::serve(SocketOptions { max_outbound_bytes: limit, ..SocketOptions::default() }).await;
    let mut stalled = small_window_client(s.addr, 4096).await;
    join(&mut stalled, "echo:flood").await;
    let mut reader = s.v2().await;
    reader.join("1", "echo:flood").await;
    let pad = "z".repeat(3000);
    // Far more than the kernel holds for the stalled client, and than the
    // limit: its backlog must overflow.
    let total = 2000;
    for n in 0..total {
        s.endpoint.broadcast("echo:flood", "flood", json!({"n": n, "pad": pad})).unwrap();
        // The reader keeps up, so the stalled client is the only one behind.
        let got = reader.json().await;
        assert_eq!(got[4]["n"], n);
    }
    support::eventually("the stalled client is cut off", || s.endpoint.metrics().slow_consumers == 1).await;
    // Everything the stalled client gets is whole and in order, then 1008.
    let mut next = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.next()).await.expect("a frame or a close") {
            Some(Ok(Message::Text(t))) => {
                let got: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(got[4]["n"], next, "in order");
                next += 1;
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            other => panic!("unexpected {other:?} after {next} frames"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(next < total, "a stalled client cannot get everything ({next})");
    // The reader is still served.
    reader.send(json!(["1", "9", "echo:flood", "ping", {}])).await;
    assert_eq!(reader.json().await[1], "9");
}

/// A router served by `axum::serve` (not `Endpoint::serve`) hands over a
/// connection that is not a plain `TcpStream`: the generic IO path serves
/// it, joins, broadcasts, pings and closes alike.
#[tokio::test]
async fn the_generic_io_path_serves_a_router_served_elsewhere() {
    let endpoint = Endpoint::new().socket_with("/socket", TestSocket, SocketOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = endpoint.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut c = small_window_client(addr, 1 << 20).await;
    join(&mut c, "echo:generic").await;
    let mut other = small_window_client(addr, 1 << 20).await;
    join(&mut other, "echo:generic").await;
    other.send(Message::text(json!(["1", "2", "echo:generic", "shout", {"hi": 1}]).to_string())).await.unwrap();
    assert_eq!(next_json(&mut c).await[3], "shout");
    let big = "b".repeat(100_000);
    c.send(Message::text(json!(["1", "3", "echo:generic", "ping", {"big": big}]).to_string())).await.unwrap();
    let reply = next_json(&mut c).await;
    assert_eq!(reply[4]["response"]["big"].as_str().map(str::len), Some(100_000));
    c.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), c.next()).await.unwrap() {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"p"),
        other => panic!("expected a pong, got {other:?}"),
    }
    c.send(Message::text(json!([null, "4", "phoenix", "heartbeat", {}]).to_string())).await.unwrap();
    assert_eq!(next_json(&mut c).await[1], "4");
    assert_eq!(endpoint.metrics().connections_open, 2);
    c.close(None).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), c.next()).await.unwrap() {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected the close answered, got {other:?}"),
    }
    drop(other);
    support::eventually("both connections end", || endpoint.metrics().connections_open == 0).await;
}
