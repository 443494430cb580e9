//! What a hostile WebSocket client could do to the server's memory and
//! connection slots, over real sockets: the closing handshake is always
//! completed, a client that never reads cannot pin a write, and one frame
//! cannot go past the outbound limit.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use abuse_helpers::{non_reader, Got, Raw};
use futures_util::SinkExt;
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{serve, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

#[tokio::test(start_paused = true)]
async fn a_message_dripped_a_byte_at_a_time_is_closed_at_the_idle_timeout() {
    let idle = Duration::from_secs(60);
    let s = serve(SocketOptions { idle_timeout: idle, ..SocketOptions::default() }).await;
    let mut c = raw_ws::upgraded(s.addr).await;
    // A 100 KB message, all but its last 100 bytes at once, then one byte
    // every 30 s: the socket is never silent for the idle timeout, but the
    // message never finishes.
    let frame = raw_ws::client_text(&vec![b'x'; 100_000]);
    let (sent, drip) = frame.split_at(frame.len() - 100);
    c.write_all(sent).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut closed_after = None;
    for byte in drip.chunks(1).take(10) {
        tokio::time::sleep(idle / 2).await;
        if s.endpoint.connections() == 0 {
            closed_after = Some(started.elapsed());
            break;
        }
        c.write_all(byte).await.unwrap();
    }
    let closed_after = closed_after.expect("a message dripped for 300 s still held its connection");
    assert!(closed_after <= idle + idle / 2, "closed only after {closed_after:?}");
    // With a close frame that says why (1001: phoenix.js reconnects).
    let mut head = [0u8; 4];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!((head[0], u16::from_be_bytes([head[2], head[3]])), (0x88, 1001));
}

// On the real clock: short, and free of the paused clock's jumps between
// a write and its read.
#[tokio::test]
async fn a_large_message_that_keeps_coming_is_not_idle() {
    // The other side of the rule above: a client that finishes a message
    // now and then, whatever their size, is heard.
    let idle = Duration::from_millis(1000);
    let s = serve(SocketOptions { idle_timeout: idle, ..SocketOptions::default() }).await;
    let mut c = raw_ws::upgraded(s.addr).await;
    let heartbeat = |pad: usize| {
        raw_ws::client_text(format!(r#"[null,"1","phoenix","heartbeat",{{"p":"{}"}}]"#, "x".repeat(pad)).as_bytes())
    };
    for _ in 0..4 {
        let frame = heartbeat(50_000);
        let (a, b) = frame.split_at(frame.len() / 2);
        c.write_all(a).await.unwrap();
        tokio::time::sleep(idle / 4).await;
        c.write_all(b).await.unwrap();
        let reply = raw_ws::short_frame(&mut c).await;
        assert!(reply.contains(r#""status":"ok""#), "{reply}");
        tokio::time::sleep(idle / 4).await;
    }
    assert_eq!(s.endpoint.connections(), 1);
}

/// A client that stops reading while `6 MB` of reply wait for it: joined,
/// asked for the reply, and never read (a tiny receive buffer).
async fn paused_reader(s: &support::Server) -> tokio::net::TcpStream {
    let mut c = raw_ws::joined_with_buffer(s.addr, 4096, "echo:paused").await;
    let big = "x".repeat(6_000_000);
    c.write_all(&raw_ws::client_text(format!(r#"["1","2","echo:paused","ping",{{"b":"{big}"}}]"#).as_bytes()))
        .await
        .unwrap();
    c
}

/// Reads everything the server sends until it closes: the close code of
/// the last frame, if it was a close frame.
async fn read_to_close(c: &mut tokio::net::TcpStream) -> Option<u16> {
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all).await;
    // Walk the server's (unmasked) frames.
    let mut at = 0;
    let mut last = None;
    while at + 2 <= all.len() {
        let (op, len7) = (all[at] & 0x0F, all[at + 1] & 0x7F);
        let (len, head) = match len7 {
            126 => (u16::from_be_bytes([all[at + 2], all[at + 3]]) as usize, 4),
            127 => (u64::from_be_bytes(all[at + 2..at + 10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        if at + head + len > all.len() {
            return None;
        }
        last = (op == 0x8).then(|| u16::from_be_bytes([all[at + head], all[at + head + 1]]));
        at += head + len;
    }
    last
}

#[tokio::test(start_paused = true)]
async fn a_paused_reader_gets_its_close_frame_if_it_reads_within_the_grace() {
    let idle = Duration::from_secs(60);
    let s = serve(SocketOptions { idle_timeout: idle, ..SocketOptions::default() }).await;
    let mut c = paused_reader(&s).await;
    // The watchdog closes it at the idle timeout; the client comes back
    // two seconds later and reads what was waiting, then the close frame.
    tokio::time::sleep(idle + Duration::from_secs(2)).await;
    // The clock runs again: paused, it would jump past the close grace
    // whenever the runtime waits for the socket while 6 MB are read (a run
    // under load saw the connection reset before its close frame).
    tokio::time::resume();
    assert_eq!(read_to_close(&mut c).await, Some(1001), "no close frame after what was waiting");
    support::eventually("the connection is gone", || s.endpoint.connections() == 0).await;
}

#[tokio::test(start_paused = true)]
async fn a_reader_paused_past_the_grace_is_reset() {
    let idle = Duration::from_secs(60);
    let s = serve(SocketOptions { idle_timeout: idle, ..SocketOptions::default() }).await;
    let mut c = paused_reader(&s).await;
    // Still paused when the grace ends: the server gives up on the close
    // frame, and resets the socket rather than leave the kernel retrying
    // to send what it queued.
    tokio::time::sleep(idle * 2).await;
    assert_eq!(s.endpoint.connections(), 0);
    let mut rest = Vec::new();
    let read = c.read_to_end(&mut rest).await;
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "read {read:?} ({} bytes) instead of a reset",
        rest.len()
    );
}
