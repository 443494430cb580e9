//! `flood`: what a server flooding pushes makes the client hold. A server
//! in the same process (tokio-tungstenite, Phoenix V2 by hand) answers a
//! push `flood` with 300 000 pushes of about 1 KB, then the reply; the
//! client's `on("flood")` and `events()` streams are never read. Prints the
//! process's RSS before and after (BENCHMARKS.md has the figures):
//!
//! ```text
//! cargo run --release -p phx-channels-client --example flood
//! ```
use futures_util::{SinkExt, StreamExt};
use phx_channels_client::Socket;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const PUSHES: usize = 300_000;

/// `VmHWM` (the peak) and `VmRSS` (now), from `/proc/self/status`.
fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM")).collect::<Vec<_>>().join(", ")
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let pad = "x".repeat(1_000);
        while let Some(Ok(Message::Text(text))) = ws.next().await {
            let Ok([join_ref, msg_ref, topic, event, _]) = serde_json::from_str::<[Value; 5]>(&text) else { break };
            if event == "flood" {
                for i in 0..PUSHES {
                    let push = json!([join_ref, null, topic, "flood", {"i": i, "pad": pad}]);
                    if ws.feed(Message::text(push.to_string())).await.is_err() {
                        return;
                    }
                }
            }
            let reply = json!([join_ref, msg_ref, topic, "phx_reply", {"status": "ok", "response": {}}]);
            if ws.send(Message::text(reply.to_string())).await.is_err() {
                return;
            }
        }
    });
    println!("idle: {}", rss());
    let socket = Socket::connect(format!("ws://{addr}/socket"));
    let (chan, _): (_, Value) = socket.channel("room:1").join(json!({})).await.unwrap();
    let on = chan.on("flood");
    let all = chan.events();
    let started = std::time::Instant::now();
    chan.push_with_timeout("flood", json!({}), std::time::Duration::from_secs(120)).await.unwrap();
    println!("{PUSHES} pushes of 1 KB in {:?}, two unread streams: {}", started.elapsed(), rss());
    println!(
        "the streams hold {} and {} events, {} and {} bytes",
        on.len(),
        all.len(),
        on.buffered_bytes(),
        all.buffered_bytes()
    );
}
