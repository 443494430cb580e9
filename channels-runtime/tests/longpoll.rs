//! The LongPoll transport over plain HTTP, against shared/PROTOCOL.md §12
//! and the frames of a real Phoenix server.

mod support;

use std::time::{Duration, Instant};

use phx_channels_runtime::SocketOptions;
use serde_json::{json, Value};
use support::{http, serve, Server};

async fn longpoll_server(window_ms: u64) -> Server {
    serve(SocketOptions {
        longpoll: true,
        longpoll_window: Duration::from_millis(window_ms),
        ..SocketOptions::default()
    })
    .await
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// Opens a session; returns its token.
async fn open(s: &Server, query: &str) -> String {
    let opened = s.longpoll("GET", query, JSON, "").await;
    assert_eq!(opened["status"], 410, "{opened}");
    assert_eq!(opened["messages"], json!([]));
    opened["token"].as_str().unwrap().to_owned()
}

/// Polls and returns the decoded frames.
async fn poll(s: &Server, token: &str) -> (u64, Vec<Value>) {
    let polled = s.longpoll("GET", &format!("vsn=2.0.0&token={token}"), JSON, "").await;
    let frames = polled["messages"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|m| serde_json::from_str(m.as_str().expect("messages are JSON strings")).unwrap())
        .collect();
    (polled["status"].as_u64().unwrap(), frames)
}

async fn post(s: &Server, token: &str, content_type: &str, body: &str) -> Value {
    s.longpoll("POST", &format!("vsn=2.0.0&token={token}"), content_type, body).await
}

#[tokio::test]
async fn a_session_joins_pushes_and_polls_replies() {
    let s = longpoll_server(2000).await;
    let token = open(&s, "vsn=2.0.0&user_id=lp1").await;
    assert_eq!(post(&s, &token, JSON, r#"["1","1","echo:lp","phx_join",{}]"#).await, json!({"status": 200}));
    let body = "[\"1\",\"2\",\"echo:lp\",\"ping\",{\"a\":1}]\n[null,\"3\",\"phoenix\",\"heartbeat\",{}]\n";
    assert_eq!(post(&s, &token, NDJSON, body).await, json!({"status": 200}));
    let (status, mut frames) = poll(&s, &token).await;
    assert_eq!(status, 200);
    while frames.len() < 3 {
        frames.extend(poll(&s, &token).await.1);
    }
    // The heartbeat is answered by the connection itself, the others by the
    // channel task: only the order within the channel is guaranteed.
    let channel: Vec<_> = frames.iter().filter(|f| f[2] == "echo:lp").cloned().collect();
    assert_eq!(
        channel,
        [
            json!(["1", "1", "echo:lp", "phx_reply", {"status": "ok", "response": {}}]),
            json!(["1", "2", "echo:lp", "phx_reply", {"status": "ok", "response": {"a": 1}}]),
        ]
    );
    assert!(frames.contains(&json!([null, "3", "phoenix", "phx_reply", {"status": "ok", "response": {}}])));
}

#[tokio::test]
async fn an_empty_window_answers_204() {
    let s = longpoll_server(300).await;
    let token = open(&s, "vsn=2.0.0").await;
    let started = Instant::now();
    let polled = s.longpoll("GET", &format!("vsn=2.0.0&token={token}"), JSON, "").await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(polled, json!({"status": 204, "token": token, "messages": []}));
}

#[tokio::test]
async fn broadcasts_reach_websocket_and_longpoll_subscribers_alike() {
    let s = longpoll_server(2000).await;
    let token = open(&s, "vsn=2.0.0").await;
    post(&s, &token, JSON, r#"["1","1","echo:mixed","phx_join",{}]"#).await;
    poll(&s, &token).await;
    let mut ws = s.v2().await;
    ws.join("5", "echo:mixed").await;
    ws.send(json!(["5", "6", "echo:mixed", "shout", {"from": "ws"}])).await;
    let broadcast = json!([null, null, "echo:mixed", "shout", {"from": "ws"}]);
    assert_eq!(ws.json().await, broadcast);
    let (_, frames) = poll(&s, &token).await;
    assert_eq!(frames, [broadcast]);
}

#[tokio::test]
async fn binary_frames_arrive_base64_in_ndjson() {
    let s = longpoll_server(2000).await;
    let token = open(&s, "vsn=2.0.0").await;
    post(&s, &token, JSON, r#"["3","3","echo:b","phx_join",{}]"#).await;
    poll(&s, &token).await;
    // kind 0 push: join_ref "3", ref "9", topic "echo:b", event "bytes", 4 payload bytes
    let mut frame = vec![0u8, 1, 1, 6, 5];
    frame.extend_from_slice(b"39echo:bbytes\x00\x01\x02\xff");
    use base64::Engine;
    let line = base64::engine::general_purpose::STANDARD.encode(&frame);
    assert_eq!(post(&s, &token, NDJSON, &format!("{line}\n")).await, json!({"status": 200}));
    let (_, frames) = poll(&s, &token).await;
    assert_eq!(frames[0], json!(["3", "9", "echo:b", "phx_reply", {"status": "ok", "response": {"len": 4}}]));
}

#[tokio::test]
async fn refusals_and_unknown_tokens() {
    let s = longpoll_server(2000).await;
    // connect refused: 403 in the body, HTTP 200
    assert_eq!(s.longpoll("GET", "vsn=2.0.0&token=invalid", JSON, "").await, json!({"status": 403}));
    assert_eq!(s.longpoll("GET", "vsn=3.0.0", JSON, "").await, json!({"status": 403}));
    // POST with an unknown token: 410
    assert_eq!(post(&s, "garbage", JSON, "[]").await, json!({"status": 410}));
    // GET with an unknown token opens a new session
    let reopened = s.longpoll("GET", "vsn=2.0.0&token=garbage", JSON, "").await;
    assert_eq!(reopened["status"], 410);
    assert_ne!(reopened["token"], "garbage");
}

#[tokio::test]
async fn the_session_token_may_come_in_a_header() {
    let s = longpoll_server(300).await;
    let token = open(&s, "vsn=2.0.0").await;
    let (_, _, body) = http(
        s.addr,
        "POST",
        "/socket/longpoll?vsn=2.0.0",
        &[("x-phoenix-longpoll-token", &token), ("content-type", JSON)],
        r#"[null,"1","phoenix","heartbeat",{}]"#,
    )
    .await;
    assert_eq!(body, r#"{"status":200}"#);
}

// Session expiry runs on the runtime's clock: the paused clock steps over it.
#[tokio::test(start_paused = true)]
async fn sessions_without_polls_expire_and_their_channels_end() {
    let s = longpoll_server(200).await;
    let token = open(&s, "vsn=2.0.0").await;
    post(&s, &token, JSON, r#"["1","1","echo:expire","phx_join",{}]"#).await;
    assert_eq!(s.endpoint.metrics().channels_open, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.endpoint.metrics().connections_open, 0);
    assert_eq!(s.endpoint.metrics().channels_open, 0);
    assert_eq!(post(&s, &token, JSON, "[]").await, json!({"status": 410}));
}

#[tokio::test]
async fn disconnect_ends_a_longpoll_session() {
    let s = longpoll_server(2000).await;
    let token = open(&s, "vsn=2.0.0&user_id=lp9").await;
    s.endpoint.broadcast("users_socket:lp9", "disconnect", json!({})).unwrap();
    let (status, _) = poll(&s, &token).await;
    assert_eq!(status, 410, "a session that is gone answers 410 (phoenix.js then reconnects)");
}

#[tokio::test]
async fn preflight_and_methods() {
    let s = longpoll_server(2000).await;
    let (status, head, _) =
        http(s.addr, "OPTIONS", "/socket/longpoll", &[("access-control-request-headers", "x-phoenix-authtoken")], "")
            .await;
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("access-control-allow-headers: x-phoenix-authtoken"), "{head}");
    assert!(head.contains("access-control-allow-methods: get, post, options"), "{head}");
    let (status, _, _) = http(s.addr, "PUT", "/socket/longpoll", &[], "").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn foreign_origins_get_403_in_the_body() {
    let s = longpoll_server(2000).await;
    let (status, _, body) =
        http(s.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[("origin", "https://evil.example")], "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":403}"#));
}

#[tokio::test]
async fn longpoll_is_off_unless_enabled() {
    let s = support::server().await;
    let (status, _, _) = http(s.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[], "").await;
    assert_eq!(status, 404);
}
