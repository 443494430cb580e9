//! What a hostile WebSocket client could do to the server's memory and
//! connection slots, over real sockets: the closing handshake is always
//! completed, a client that never reads cannot pin a write, and one frame
//! cannot go past the outbound limit.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use abuse_helpers::{non_reader, Got, Raw};
use futures_util::SinkExt;
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{serve, server};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

/// Sends a close frame with `code` (valid or not) and returns the close
/// code the server answers with; `None` is a TCP close without a frame,
/// what a browser reports as 1006.
async fn answer_to_close(addr: SocketAddr, code: u16) -> Option<u16> {
    let mut c = Raw::v2(addr).await;
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let frame = Frame::from_payload(FrameHeader::default(), payload.into());
    c.ws.send(Message::Frame(frame)).await.unwrap();
    match c.next().await {
        Got::Closed(code) => code,
        other => panic!("expected the server's close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn every_close_frame_is_answered_with_one() {
    let s = server().await;
    for code in [1000, 1001, 3000, 4000, 4999] {
        assert_eq!(answer_to_close(s.addr, code).await, Some(code), "a client's {code} is echoed");
    }
    for code in [999, 1004, 1005, 1006, 1015, 2999, 5000] {
        assert_eq!(answer_to_close(s.addr, code).await, Some(1002), "an invalid {code} is answered 1002");
    }
}

#[tokio::test]
async fn an_empty_close_frame_is_answered() {
    let s = server().await;
    let mut c = Raw::v2(s.addr).await;
    c.ws.send(Message::Frame(Frame::close(None))).await.unwrap();
    // An empty close frame carries no code; the answer is a close frame
    // too (tungstenite reports its missing code as 1005), not a TCP reset.
    let next = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut c.ws)).await.unwrap();
    assert!(matches!(next, Some(Ok(Message::Close(_)))), "got {next:?}");
}

#[tokio::test]
async fn a_slow_consumer_gets_its_1008_close_frame() {
    let s = serve(SocketOptions { max_outbound_bytes: 256 * 1024, ..SocketOptions::default() }).await;
    let mut c = non_reader(s.addr).await;
    assert_eq!(c.join("1", "echo:slow").await[4]["status"], "ok");
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..2000 {
        s.endpoint.broadcast("echo:slow", "big", json!({ "b": chunk })).unwrap();
        if s.endpoint.metrics().slow_consumers > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(s.endpoint.metrics().slow_consumers, 1, "the client was never too slow");
    // Now it reads what the socket holds: the frames that were on their
    // way, then the close frame, not a reset.
    assert_eq!(c.close_code().await, Some(1008));
}

#[tokio::test(start_paused = true)]
async fn a_write_that_makes_no_progress_for_the_idle_period_closes_the_connection() {
    let idle = Duration::from_secs(60);
    let s = serve(SocketOptions { idle_timeout: idle, ..SocketOptions::default() }).await;
    let mut c = non_reader(s.addr).await;
    assert_eq!(c.join("1", "echo:stall").await[4]["status"], "ok");
    // A 6 MB reply: more than the kernel's socket buffers hold, within the
    // outbound limit. The client never reads it.
    let big = "x".repeat(6_000_000);
    assert!(c.text(format!(r#"["1","2","echo:stall","ping",{{"b":"{big}"}}]"#)).await);
    drop(big);
    tokio::time::sleep(idle / 2).await;
    assert_eq!(s.endpoint.connections(), 1, "closed before the idle period");
    // The paused clock runs ahead while everything waits.
    tokio::time::sleep(idle * 2).await;
    assert_eq!(s.endpoint.connections(), 0, "a write blocked for the idle period still holds the connection");
    drop(c);
}

#[tokio::test]
async fn a_frame_larger_than_the_outbound_limit_closes_the_connection() {
    let s = serve(SocketOptions { max_outbound_bytes: 64 * 1024, ..SocketOptions::default() }).await;
    let mut c = Raw::v2(s.addr).await;
    assert_eq!(c.join("1", "echo:big").await[4]["status"], "ok");
    // Within the limit: answered.
    let small = "x".repeat(1000);
    assert!(c.text(format!(r#"["1","2","echo:big","ping",{{"b":"{small}"}}]"#)).await);
    assert_eq!(c.json().await[4]["status"], "ok");
    // One reply over it is never queued: the connection closes with 1008.
    let big = "x".repeat(100 * 1024);
    assert!(c.text(format!(r#"["1","3","echo:big","ping",{{"b":"{big}"}}]"#)).await);
    match c.next().await {
        Got::Closed(code) => assert_eq!(code, Some(1008)),
        other => panic!("expected a 1008 close, got {}", format!("{other:?}").chars().take(80).collect::<String>()),
    }
}
