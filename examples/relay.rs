//! `relay`: a Yjs-style binary relay, binary payloads as easy as JSON.
//!
//! Clients join `doc:<name>` and push their document updates as binary
//! `update` events (an `ArrayBuffer` in phoenix.js). The channel relays each
//! update's bytes unchanged to the topic's *other* subscribers
//! (`broadcast_from`, V2 binary frames, encoded once whatever their number),
//! and keeps the document's recent updates in the application state
//! ([`Relay`]), so a client that joins later gets them replayed as binary
//! pushes right after its join reply. A JSON `update` is answered with
//! `{"reason": "updates are binary"}`.
//!
//! ```text
//! cargo run --release --example relay -- --port 4200
//! ```
//!
//! ```js
//! import { Socket } from "phoenix";
//! const socket = new Socket("ws://127.0.0.1:4200/socket");
//! socket.connect();
//! const doc = socket.channel("doc:notes");
//! doc.on("update", (bytes) => applyUpdate(new Uint8Array(bytes))); // ArrayBuffer
//! doc.join();
//! doc.push("update", encodeUpdate().buffer);
//! ```
//!
//! Only V2 WebSocket clients (phoenix.js's default) can receive binary
//! payloads: a V1 (`vsn=1.0.0`) or LongPoll subscriber of a document is
//! skipped for these updates and the runtime logs a warning; its
//! connection stays up.
//!
//! What is kept is bounded: per document the last [`MAX_UPDATES`] updates or
//! [`MAX_BYTES`] bytes, whichever comes first, and at most [`MAX_DOCS`]
//! documents (the least recently updated one is dropped for a new one). A
//! real Yjs server would instead merge updates into one state vector; the
//! bounds are what keep this relay's memory fixed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use phx_channels::prelude::*;
use phx_channels::SocketOptions;

socket! {
    /// Anyone may connect; documents are named by their topic.
    pub RelaySocket {
        channel "doc:*" => DocChannel;
    }
}

/// Updates kept per document, at most.
pub const MAX_UPDATES: usize = 100;
/// Bytes of updates kept per document, at most (1 MiB).
pub const MAX_BYTES: usize = 1 << 20;
/// Documents kept, at most.
pub const MAX_DOCS: usize = 1000;

/// The relay's state: the recent updates of each document.
#[derive(Default)]
pub struct Relay {
    docs: Mutex<Docs>,
}

#[derive(Default)]
struct Docs {
    by_topic: HashMap<String, Doc>,
    /// Increases on every update; a document's `touched` says how recently
    /// it was updated, to pick the one to drop.
    clock: u64,
}

#[derive(Default)]
struct Doc {
    /// Binary payloads only, oldest first.
    updates: VecDeque<Payload>,
    bytes: usize,
    touched: u64,
}

impl Relay {
    /// Keeps `update` (`len` bytes) as the newest of `topic`'s updates,
    /// dropping the oldest ones (and the least recently updated document)
    /// past the bounds.
    fn record(&self, topic: &str, update: Payload, len: usize) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.clock += 1;
        let now = docs.clock;
        if !docs.by_topic.contains_key(topic) && docs.by_topic.len() >= MAX_DOCS {
            let oldest = docs.by_topic.iter().min_by_key(|(_, d)| d.touched).map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                docs.by_topic.remove(&oldest);
            }
        }
        let doc = docs.by_topic.entry(topic.to_owned()).or_default();
        doc.touched = now;
        if len > MAX_BYTES {
            // Relayed, but too big to keep: a replay without it would be
            // wrong in the middle, so the history restarts after it.
            doc.updates.clear();
            doc.bytes = 0;
            return;
        }
        doc.updates.push_back(update);
        doc.bytes += len;
        while doc.updates.len() > MAX_UPDATES || doc.bytes > MAX_BYTES {
            match doc.updates.pop_front() {
                Some(old) => doc.bytes -= binary_len(&old),
                None => break,
            }
        }
    }

    /// `topic`'s kept updates, oldest first (cheap clones of the bytes).
    fn history(&self, topic: &str) -> Vec<Payload> {
        let docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.by_topic.get(topic).map(|d| d.updates.iter().cloned().collect()).unwrap_or_default()
    }
}

fn binary_len(payload: &Payload) -> usize {
    match payload {
        Payload::Binary(bytes) => bytes.len(),
        Payload::Json(raw) => raw.get().len(),
    }
}

impl Connect for RelaySocket {
    type State = Relay;
    type Assigns = ();

    async fn connect(_params: &Params, _info: &ConnectInfo, _relay: &Relay) -> Result<(), Refuse> {
        Ok(())
    }
}

/// One document's channel; all its state is in [`Relay`].
pub struct DocChannel;

#[channel(socket = RelaySocket)]
impl DocChannel {
    /// Replays the kept updates: pushes made here go out after the join reply.
    fn join(topic: Topic, _params: Value, socket: &mut Socket<RelaySocket>) -> Join<Self> {
        for update in socket.state().history(topic.as_str()) {
            socket.push("update", update)?;
        }
        Ok((json!({}), DocChannel))
    }

    /// Relays a binary update to the document's other subscribers, unchanged.
    #[handle_in("update")]
    fn update(&mut self, update: Payload, socket: &mut Socket<RelaySocket>) -> Result<Reply, BroadcastError> {
        let Payload::Binary(bytes) = &update else {
            return Ok(Reply::error(json!({"reason": "updates are binary"})));
        };
        let len = bytes.len();
        socket.state().record(socket.topic().as_str(), update.clone(), len);
        socket.broadcast_from("update", update)?;
        Ok(Reply::ok(json!({})))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(4200);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(p)) => port = p.parse()?,
            _ => anyhow::bail!("usage: relay [--port N]"),
        }
    }
    // Document updates are larger than chat messages: let a channel relay
    // up to 1 MiB per broadcast (the default is 64 KiB).
    let options = SocketOptions { max_broadcast_bytes: 1 << 20, ..SocketOptions::default() };
    let endpoint = Endpoint::with_state(Relay::default()).socket_with("/socket", RelaySocket, options);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    endpoint.serve_on(listener).await?;
    Ok(())
}
