//! `floor`: the baseline the `discuss` example is measured against.
//!
//! A bare tokio + tokio-tungstenite server, no framework, answering the same
//! V2 frames as `discuss` for the benchmark scenarios:
//!
//! - `heartbeat` on `phoenix`: reply ok `{}`;
//! - `phx_join` on any topic: reply ok `{"hey":"there","comments":[]}` and
//!   subscribe the connection to the topic;
//! - `phx_leave`: unsubscribe, reply ok `{}`;
//! - `ping`: reply ok with the payload unchanged;
//! - `comment:add` `{"content": c}`: encode `[null,null,T,"T:new",{"comment":{"content":c}}]`
//!   once and hand the same bytes to every connection subscribed to `T`
//!   through its mpsc channel, then reply ok `{}`.
//!
//! WebSocket settings are those a careful user would pick and the same as the
//! framework's (`channels-runtime/src/transport/websocket.rs`):
//!
//! - reads of 4 KiB at most (`read_buffer_size(4096)`; the framework reads
//!   4 KiB at a time too, `READ_CHUNK`, into a buffer of the worker thread's
//!   rather than of the connection, which tungstenite cannot do);
//! - write buffer 0 (`write_buffer_size(0)`: every frame is written
//!   straight through, as the framework's outbox writes each frame to the
//!   socket when nothing is queued before it);
//! - `TCP_NODELAY` on every accepted socket, as the framework's server sets;
//! - one task per connection.
//!
//! ```text
//! floor [--port N] [--host ADDR]     # prints `listening on http://ADDR:N`
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Outbound = mpsc::UnboundedSender<Utf8Bytes>;

/// topic -> (connection id, its outbound channel).
type Topics = HashMap<String, Vec<(u64, Outbound)>>;
static TOPICS: LazyLock<Mutex<Topics>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

type Incoming = (Option<String>, Option<String>, String, String, Box<RawValue>);

fn reply(join_ref: &Option<String>, msg_ref: &Option<String>, topic: &str, status: &str, response: &str) -> String {
    // `response` is JSON already; refs and topic are escaped by serde_json.
    let head = serde_json::to_string(&(join_ref, msg_ref, topic, "phx_reply")).unwrap_or_default();
    let mut out = String::with_capacity(head.len() + response.len() + 32);
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",{\"status\":\"");
    out.push_str(status);
    out.push_str("\",\"response\":");
    out.push_str(response);
    out.push_str("}]");
    out
}

fn broadcast(topic: &str, content: &str) {
    let frame = serde_json::to_string(&(
        None::<()>,
        None::<()>,
        topic,
        format!("{topic}:new"),
        serde_json::json!({"comment": {"content": content}}),
    ))
    .unwrap_or_default();
    // Encoded once; every subscriber gets a reference-counted clone.
    let frame = Utf8Bytes::from(frame);
    let topics = TOPICS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(subs) = topics.get(topic) {
        for (_, tx) in subs {
            let _ = tx.send(frame.clone());
        }
    }
}

fn subscribe(topic: &str, id: u64, tx: &Outbound) {
    let mut topics = TOPICS.lock().unwrap_or_else(|e| e.into_inner());
    let subs = topics.entry(topic.to_owned()).or_default();
    if !subs.iter().any(|(i, _)| *i == id) {
        subs.push((id, tx.clone()));
    }
}

fn unsubscribe(topic: &str, id: u64) {
    let mut topics = TOPICS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(subs) = topics.get_mut(topic) {
        subs.retain(|(i, _)| *i != id);
        if subs.is_empty() {
            topics.remove(topic);
        }
    }
}

/// Handles one client frame; returns the reply to send, if any.
fn handle(text: &str, id: u64, tx: &Outbound, joined: &mut Vec<String>) -> Option<String> {
    let (join_ref, msg_ref, topic, event, payload): Incoming = serde_json::from_str(text).ok()?;
    let out = match event.as_str() {
        "heartbeat" => reply(&join_ref, &msg_ref, &topic, "ok", "{}"),
        "phx_join" => {
            subscribe(&topic, id, tx);
            if !joined.contains(&topic) {
                joined.push(topic.clone());
            }
            reply(&join_ref, &msg_ref, &topic, "ok", r#"{"hey":"there","comments":[]}"#)
        }
        "phx_leave" => {
            unsubscribe(&topic, id);
            joined.retain(|t| *t != topic);
            reply(&join_ref, &msg_ref, &topic, "ok", "{}")
        }
        "ping" => reply(&join_ref, &msg_ref, &topic, "ok", payload.get()),
        "comment:add" => {
            #[derive(serde::Deserialize)]
            struct Add {
                content: Option<String>,
            }
            match serde_json::from_str::<Add>(payload.get()).ok().and_then(|a| a.content) {
                Some(c) if !c.trim().is_empty() => {
                    broadcast(&topic, &c);
                    reply(&join_ref, &msg_ref, &topic, "ok", "{}")
                }
                _ => reply(&join_ref, &msg_ref, &topic, "error", r#"{"errors":{"content":["can't be blank"]}}"#),
            }
        }
        _ => reply(&join_ref, &msg_ref, &topic, "error", r#"{"reason":"unknown event"}"#),
    };
    Some(out)
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // The framework's buffer settings: see the doc comment at the top.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    // The callback's signature is tungstenite's; its error type is large.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/socket/websocket" {
            Ok(resp)
        } else {
            let mut err = ErrorResponse::new(None);
            *err.status_mut() = StatusCode::NOT_FOUND;
            Err(err)
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await else {
        return;
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let mut joined: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(out) = handle(text.as_str(), id, &tx, &mut joined) {
                        if ws.send(Message::Text(out.into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            Some(frame) = rx.recv() => {
                if ws.send(Message::Text(frame)).await.is_err() {
                    break;
                }
            }
        }
    }
    for topic in &joined {
        unsubscribe(topic, id);
    }
}

fn raise_nofile() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    raise_nofile();
    let mut host = "127.0.0.1".to_owned();
    let mut port = 4001u16;
    let mut backlog = 1024;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            "--host" => host = args.next().expect("--host ADDR"),
            "--backlog" => backlog = args.next().and_then(|p| p.parse().ok()).expect("--backlog N"),
            other => panic!("unknown argument {other}; usage: floor [--host ADDR] [--port N] [--backlog N]"),
        }
    }
    let ip: std::net::IpAddr = host.parse().map_err(|_| std::io::Error::other("--host takes an IP address"))?;
    let listener = bench::listen(SocketAddr::new(ip, port), backlog)?;
    let addr: SocketAddr = listener.local_addr()?;
    println!("listening on http://{addr}");
    bench::accept_forever(listener, serve).await
}
