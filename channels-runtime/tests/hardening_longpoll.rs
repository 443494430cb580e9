//! LongPoll against a hostile client, over raw TCP: sessions are capped,
//! and a request that sends its headers but never its body is answered and
//! closed like a client that never sends its headers.

mod support;

use std::time::Duration;

use phx_channels_runtime::SocketOptions;
use support::{http, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn sessions_are_capped_and_the_refusal_makes_phoenix_js_retry() {
    let s = serve(SocketOptions { longpoll: true, max_longpoll_sessions: 3, ..SocketOptions::default() }).await;
    for _ in 0..3 {
        let opened = s.longpoll("GET", "vsn=2.0.0", "application/json", "").await;
        assert_eq!(opened["status"], 410, "{opened}");
    }
    // Over the cap: a real 503 whose body is not a LongPoll answer, which
    // phoenix.js treats as a lost server (it retries with back-off).
    let (status, head, body) = http(s.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[], "").await;
    assert_eq!(status, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err(), "{body}");
    assert_eq!(s.endpoint.connections(), 3);
    // A WebSocket still connects: the cap is LongPoll's own.
    let mut ws = s.v2().await;
    assert_eq!(ws.join("1", "echo:a").await[4]["status"], "ok");
}

#[tokio::test]
async fn the_connection_cap_refuses_a_longpoll_session_as_phoenix_js_retries() {
    let endpoint = phx_channels_runtime::endpoint::Endpoint::new().max_connections(1);
    let s = support::serve_with(endpoint, SocketOptions { longpoll: true, ..SocketOptions::default() }).await;
    let opened = s.longpoll("GET", "vsn=2.0.0", "application/json", "").await;
    assert_eq!(opened["status"], 410, "{opened}");
    let (status, head, _) = http(s.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[], "").await;
    assert_eq!(status, 503, "{head}");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_comes_is_answered_and_closed() {
    let s = serve(SocketOptions { longpoll: true, ..SocketOptions::default() }).await;
    let opened = s.longpoll("GET", "vsn=2.0.0", "application/json", "").await;
    let token = opened["token"].as_str().unwrap().to_owned();
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let request = format!(
        "POST /socket/longpoll?vsn=2.0.0&token={token} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n",
        s.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The paused clock runs ahead while the server waits for the body.
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(600), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the request was still open after 10 minutes");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_is_timed_out_on_any_route() {
    // Not only LongPoll: an application route behind the same server.
    let routes = axum::Router::new().route("/upload", axum::routing::post(|body: String| async move { body }));
    let s =
        support::serve_with(phx_channels_runtime::endpoint::Endpoint::new().merge(routes), SocketOptions::default())
            .await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n\r\nabc", s.addr);
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(600), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the request was still open after 10 minutes");
    // The route's own extractor words the refusal (axum: 400).
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
}
