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
    stream.write_all(support::longpoll_post_head(s.addr, &token, 100).as_bytes()).await.unwrap();
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

#[tokio::test(start_paused = true)]
async fn a_body_announced_over_the_limit_is_refused_at_once() {
    let s = serve(SocketOptions { longpoll: true, ..SocketOptions::default() }).await;
    let opened = s.longpoll("GET", "vsn=2.0.0", "application/json", "").await;
    let token = opened["token"].as_str().unwrap().to_owned();
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    // 100 MB announced, nothing sent: answered 413 before any byte of it
    // (the paused clock would otherwise step to the body timeout's 408).
    stream.write_all(support::longpoll_post_head(s.addr, &token, 100_000_000).as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_eq!(s.endpoint.metrics().inputs_refused, 1);
}

#[tokio::test]
async fn bodies_in_flight_share_the_endpoints_budget() {
    let options = phx_channels_runtime::server::ServerOptions {
        max_inflight_bytes: 10_000_000,
        ..phx_channels_runtime::server::ServerOptions::default()
    };
    let endpoint = phx_channels_runtime::endpoint::Endpoint::new().server_options(options);
    let s = support::serve_with(endpoint, SocketOptions { longpoll: true, ..SocketOptions::default() }).await;
    let opened = s.longpoll("GET", "vsn=2.0.0", "application/json", "").await;
    let token = opened["token"].as_str().unwrap().to_owned();
    let body = format!(r#"[null,"1","phoenix","heartbeat",{{"pad":"{}"}}]"#, "x".repeat(6_999_000));
    let head = |len: usize| support::longpoll_post_head(s.addr, &token, len);
    // A 7 MB body, all but its end sent: it holds 7 MB of the 10 MB.
    let mut first = TcpStream::connect(s.addr).await.unwrap();
    first.write_all(head(body.len()).as_bytes()).await.unwrap();
    first.write_all(&body.as_bytes()[..body.len() - 10]).await.unwrap();
    // Another 7 MB body does not fit: 503 with Retry-After, at once.
    support::eventually("the first body is being read", || s.endpoint.metrics().inputs_refused == 0).await;
    let mut second = TcpStream::connect(s.addr).await.unwrap();
    second.write_all(head(body.len()).as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), second.read_to_end(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.to_ascii_lowercase().contains("retry-after"), "{response}");
    assert_eq!(s.endpoint.metrics().inputs_refused, 1);
    // The first one finishes and is answered; its bytes are given back, so
    // the same body now goes through.
    first.write_all(&body.as_bytes()[body.len() - 10..]).await.unwrap();
    let mut response = vec![0; 64];
    let n = first.read(&mut response).await.unwrap();
    assert!(response[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response[..n]));
    let answered = s.longpoll("POST", &format!("vsn=2.0.0&token={token}"), "application/json", &body).await;
    assert_eq!(answered["status"], 200);
}

#[tokio::test(start_paused = true)]
async fn a_source_that_opens_sessions_fast_is_refused_and_unpolled_sessions_go_quickly() {
    let s = serve(SocketOptions { longpoll: true, ..SocketOptions::default() }).await;
    // One source opening sessions as fast as it can: the first ones open,
    // the rest of the second are refused as phoenix.js retries (503).
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let (status, head, body) = http(s.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[], "").await;
        match status {
            200 => opened
                .push(serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_owned()),
            503 => {
                assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {head}"),
        }
    }
    assert_eq!((opened.len(), refused), (20, 80));
    assert_eq!(s.endpoint.metrics().connections_refused, 80);
    // One session polls, as phoenix.js does at once; the others never do.
    let polled = opened[0].clone();
    let poller = tokio::spawn({
        let addr = s.addr;
        async move {
            loop {
                let query = format!("/socket/longpoll?vsn=2.0.0&token={polled}");
                let (status, _, body) = http(addr, "GET", &query, &[], "").await;
                assert_eq!(status, 200);
                if serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"] == 410 {
                    return;
                }
            }
        }
    });
    // Never-polled sessions end within half a poll window (5 s), not after
    // one and a half (15 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(s.endpoint.connections(), 1, "never-polled sessions still held");
    poller.abort();
}
