//! What a server actually sends, frame by frame, and whether the generated
//! TypeScript says so: a raw V2 WebSocket client that records every frame
//! it receives and what each answers, and a check of those frames against a
//! socket's rendered module with the pinned `tsc` of `tests/js`.
//!
//! Included with `#[path]` by `tests/wire_types.rs`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use phx_channels::describe::Declarations;
use phx_channels::typescript::RouteShape;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a frame may take to arrive.
const WAIT: Duration = Duration::from_secs(5);

/// A payload as it travelled.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    Binary(Vec<u8>),
}

impl Body {
    pub fn json(&self) -> &Value {
        match self {
            Body::Json(value) => value,
            Body::Binary(bytes) => panic!("expected JSON, got {} bytes", bytes.len()),
        }
    }
}

/// A frame the server sent.
#[derive(Debug, Clone)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub topic: String,
    pub event: String,
    /// For a reply: its status.
    pub status: Option<String>,
    /// For a reply: its response.
    pub payload: Body,
}

/// What a message the client sent was.
#[derive(Debug, Clone)]
pub struct Sent {
    pub topic: String,
    pub event: String,
}

/// A client connection recording everything.
pub struct Wire {
    sink: SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>,
    frames: Arc<Mutex<Vec<Frame>>>,
    arrived: Arc<Notify>,
    next_ref: u64,
    /// ref → what it was; a join's ref is its join_ref.
    pub sent: HashMap<String, Sent>,
    /// topic → the join_ref of its current join.
    joins: HashMap<String, String>,
}

impl Wire {
    /// Connects to `/socket/websocket` with the V2 serializer and `query`.
    pub async fn connect(addr: SocketAddr, query: &str) -> Wire {
        let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0&{query}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("connects");
        let (sink, mut stream) = ws.split();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (into, notify) = (frames.clone(), arrived.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let frame = match message {
                    Message::Text(text) => decode_text(text.as_str()),
                    Message::Binary(bytes) => decode_binary(&bytes),
                    _ => continue,
                };
                into.lock().unwrap().push(frame);
                notify.notify_waiters();
            }
        });
        Wire { sink, frames, arrived, next_ref: 0, sent: HashMap::new(), joins: HashMap::new() }
    }

    fn next_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    /// Joins `topic`; returns the reply's status and response.
    pub async fn join(&mut self, topic: &str, params: Value) -> (String, Body) {
        let join_ref = self.next_ref();
        self.joins.insert(topic.to_owned(), join_ref.clone());
        self.send_text(&join_ref, &join_ref, topic, "phx_join", params).await;
        self.reply(&join_ref).await
    }

    /// Pushes `event` with a JSON payload; returns the reply's status and
    /// response.
    pub async fn push(&mut self, topic: &str, event: &str, payload: Value) -> (String, Body) {
        let msg_ref = self.send(topic, event, payload).await;
        self.reply(&msg_ref).await
    }

    /// Pushes without waiting for a reply; returns the ref.
    pub async fn send(&mut self, topic: &str, event: &str, payload: Value) -> String {
        let msg_ref = self.next_ref();
        let join_ref = self.joins.get(topic).cloned().unwrap_or_default();
        self.send_text(&join_ref, &msg_ref, topic, event, payload).await;
        msg_ref
    }

    /// Pushes `event` with a binary payload (a V2 kind-0 frame).
    pub async fn push_binary(&mut self, topic: &str, event: &str, bytes: &[u8]) -> (String, Body) {
        let msg_ref = self.next_ref();
        let join_ref = self.joins.get(topic).cloned().unwrap_or_default();
        self.sent.insert(msg_ref.clone(), Sent { topic: topic.to_owned(), event: event.to_owned() });
        let mut frame = vec![0, len(&join_ref), len(&msg_ref), len(topic), len(event)];
        for part in [join_ref.as_str(), msg_ref.as_str(), topic, event] {
            frame.extend_from_slice(part.as_bytes());
        }
        frame.extend_from_slice(bytes);
        self.sink.send(Message::Binary(frame.into())).await.expect("sends");
        self.reply(&msg_ref).await
    }

    /// Leaves `topic`, waiting for the server's confirmation.
    pub async fn leave(&mut self, topic: &str) {
        self.push(topic, "phx_leave", json!({})).await;
    }

    async fn send_text(&mut self, join_ref: &str, msg_ref: &str, topic: &str, event: &str, payload: Value) {
        self.sent.insert(msg_ref.to_owned(), Sent { topic: topic.to_owned(), event: event.to_owned() });
        let text = json!([join_ref, msg_ref, topic, event, payload]).to_string();
        self.sink.send(Message::Text(text.into())).await.expect("sends");
    }

    /// Waits for the reply to `msg_ref`.
    pub async fn reply(&self, msg_ref: &str) -> (String, Body) {
        let frame = self
            .wait(|f| f.event == "phx_reply" && f.msg_ref.as_deref() == Some(msg_ref))
            .await
            .unwrap_or_else(|seen| panic!("no reply to {msg_ref} within {WAIT:?}; received: {seen:#?}"));
        (frame.status.clone().unwrap_or_default(), frame.payload)
    }

    /// Waits for `count` frames of `event` on `topic` (pushes or broadcasts)
    /// and returns their payloads.
    pub async fn events(&self, topic: &str, event: &str, count: usize) -> Vec<Body> {
        let matching = |f: &Frame| f.topic == topic && f.event == event;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.arrived.notified();
            let found: Vec<Body> =
                self.frames.lock().unwrap().iter().filter(|f| matching(f)).map(|f| f.payload.clone()).collect();
            if found.len() >= count {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{count} {event} on {topic} within {WAIT:?}? received: {:#?}", self.frames());
            }
        }
    }

    /// Waits for a frame of `event` on `topic` whose payload `matches`.
    pub async fn event_until(&self, topic: &str, event: &str, matches: impl Fn(&Body) -> bool) -> Body {
        let found = self.wait(|f| f.topic == topic && f.event == event && matches(&f.payload)).await;
        found
            .unwrap_or_else(|frames| panic!("no matching {event} on {topic} within {WAIT:?}? received: {frames:#?}"))
            .payload
    }

    async fn wait(&self, matches: impl Fn(&Frame) -> bool) -> Result<Frame, Vec<Frame>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.arrived.notified();
            if let Some(frame) = self.frames.lock().unwrap().iter().find(|f| matches(f)) {
                return Ok(frame.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.frames());
            }
        }
    }

    /// Every frame received so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.sink.close().await;
    }
}

fn len(field: &str) -> u8 {
    u8::try_from(field.len()).expect("a short field")
}

fn opt(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn decode_text(text: &str) -> Frame {
    let frame: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let [join_ref, msg_ref, topic, event, payload] = frame
        .as_array()
        .cloned()
        .unwrap_or_default()
        .try_into()
        .unwrap_or_else(|parts: Vec<Value>| panic!("not a V2 frame of five parts ({} parts): {text}", parts.len()));
    let event = opt(&event).unwrap_or_default();
    let (status, payload) =
        if event == "phx_reply" { (opt(&payload["status"]), payload["response"].clone()) } else { (None, payload) };
    Frame {
        join_ref: opt(&join_ref),
        msg_ref: opt(&msg_ref),
        topic: opt(&topic).unwrap_or_default(),
        event,
        status,
        payload: Body::Json(payload),
    }
}

fn decode_binary(bytes: &[u8]) -> Frame {
    let text = |range: std::ops::Range<usize>| String::from_utf8(bytes[range].to_vec()).expect("UTF-8 fields");
    let some = |s: String| (!s.is_empty()).then_some(s);
    match bytes[0] {
        0 => {
            let (j, t, e) = (bytes[1] as usize, bytes[2] as usize, bytes[3] as usize);
            let mut at = 4;
            let join_ref = text(at..at + j);
            at += j;
            let topic = text(at..at + t);
            at += t;
            let event = text(at..at + e);
            at += e;
            Frame {
                join_ref: some(join_ref),
                msg_ref: None,
                topic,
                event,
                status: None,
                payload: Body::Binary(bytes[at..].to_vec()),
            }
        }
        1 => {
            let (j, r, t, s) = (bytes[1] as usize, bytes[2] as usize, bytes[3] as usize, bytes[4] as usize);
            let mut at = 5;
            let join_ref = text(at..at + j);
            at += j;
            let msg_ref = text(at..at + r);
            at += r;
            let topic = text(at..at + t);
            at += t;
            let status = text(at..at + s);
            at += s;
            Frame {
                join_ref: some(join_ref),
                msg_ref: some(msg_ref),
                topic,
                event: "phx_reply".into(),
                status: Some(status),
                payload: Body::Binary(bytes[at..].to_vec()),
            }
        }
        2 => {
            let (t, e) = (bytes[1] as usize, bytes[2] as usize);
            let topic = text(3..3 + t);
            let event = text(3 + t..3 + t + e);
            Frame {
                join_ref: None,
                msg_ref: None,
                topic,
                event,
                status: None,
                payload: Body::Binary(bytes[3 + t + e..].to_vec()),
            }
        }
        kind => panic!("unknown binary frame kind {kind}"),
    }
}

/// Where a frame sits in a channel's TypeScript type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    Joined,
    Refused,
    Reply(String),
    /// The handler's own error reply.
    Error(String),
    /// The rejection of a `Valid<T>` payload (`{"errors": ..}`).
    Rejected(String),
    /// A push or broadcast, by its declared name (`comments:*:new`).
    Out(String),
}

impl Place {
    /// The TypeScript type of this place in channel type `channel`.
    fn ts(&self, channel: &str, event: &str) -> String {
        let lit = |s: &str| Value::from(s).to_string();
        match self {
            Place::Joined => format!("{channel}[\"joined\"]"),
            Place::Refused => format!("{channel}[\"refused\"]"),
            Place::Reply(e) => format!("{channel}[\"in\"][{}][\"reply\"]", lit(e)),
            Place::Error(e) | Place::Rejected(e) => format!("{channel}[\"in\"][{}][\"error\"]", lit(e)),
            // Indexed by the event as sent: a `*` pattern matches it.
            Place::Out(_) => format!("{channel}[\"out\"][{}]", lit(event)),
        }
    }
}

/// A frame, where it belongs, and what it says of it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub topic: String,
    pub event: String,
    pub place: Place,
    pub payload: Body,
}

/// What one socket's connections received, placed in its channels' types.
pub struct Capture {
    /// The module's name, for files and messages.
    pub name: &'static str,
    pub routes: Vec<RouteShape>,
    pub module: String,
    pub frames: Vec<Checked>,
}

impl Capture {
    /// An empty capture of the socket whose routes these are, rendered to
    /// `module`.
    pub fn new(name: &'static str, routes: Vec<RouteShape>, module: String) -> Capture {
        Capture { name, routes, module, frames: Vec::new() }
    }

    /// Places every frame `wire` received: replies by what they answer,
    /// pushes and broadcasts by their event. Protocol frames (`phx_close`,
    /// `phx_error`, heartbeat and leave replies) are not a channel's types.
    pub fn add(&mut self, wire: &Wire) {
        for frame in wire.frames() {
            let place = if frame.event == "phx_reply" {
                let Some(sent) = frame.msg_ref.as_ref().and_then(|r| wire.sent.get(r)) else {
                    panic!("a reply to nothing sent: {frame:?}")
                };
                let ok = frame.status.as_deref() == Some("ok");
                match sent.event.as_str() {
                    "phx_leave" | "heartbeat" => continue,
                    "phx_join" if ok => Place::Joined,
                    "phx_join" => Place::Refused,
                    event if ok => Place::Reply(event.to_owned()),
                    event => match &frame.payload {
                        Body::Json(v) if v.get("errors").is_some() => Place::Rejected(event.to_owned()),
                        _ => Place::Error(event.to_owned()),
                    },
                }
            } else if frame.event.starts_with("phx_") {
                continue;
            } else {
                let route = self.route(&frame.topic);
                let declared =
                    route.channel.out.as_ref().and_then(|out| {
                        out.iter().map(|(name, _)| *name).find(|name| pattern_matches(name, &frame.event))
                    });
                Place::Out(declared.unwrap_or(frame.event.as_str()).to_owned())
            };
            self.frames.push(Checked { topic: frame.topic, event: frame.event, place, payload: frame.payload });
        }
    }

    fn route(&self, topic: &str) -> &RouteShape {
        self.routes
            .iter()
            .find(|r| pattern_matches(r.pattern, topic))
            .unwrap_or_else(|| panic!("no route of {} takes {topic}", self.name))
    }

    /// The places of every route a test must drive: those whose type says
    /// something (not `unknown`, `never`, or any JSON), as the channels
    /// describe them. Keyed by the route's pattern.
    pub fn required(&self) -> Vec<(&'static str, Place, String)> {
        let mut required = Vec::new();
        for route in &self.routes {
            let shape = &route.channel;
            let mut add = |place: Place, type_fn: phx_channels::describe::TypeFn| {
                let ts = type_fn(&mut Declarations::new());
                if !matches!(ts.as_str(), "unknown" | "never" | "JsonValue" | "JsonOrBinary") {
                    required.push((route.pattern, place, ts));
                }
            };
            add(Place::Joined, shape.join[1]);
            for event in shape.events.iter().flatten() {
                add(Place::Reply(event.event.to_owned()), event.reply);
                add(Place::Error(event.event.to_owned()), event.errors[0]);
                if event.errors[1](&mut Declarations::new()) == "ValidationErrors" {
                    add(Place::Rejected(event.event.to_owned()), event.errors[1]);
                }
            }
            for (name, type_fn) in shape.out.iter().flatten() {
                add(Place::Out((*name).to_owned()), *type_fn);
            }
        }
        required
    }

    /// The required places no frame was seen at.
    pub fn missing(&self) -> Vec<String> {
        self.required()
            .into_iter()
            .filter(|(pattern, place, _)| {
                !self.frames.iter().any(|f| f.place == *place && self.route(&f.topic).pattern == *pattern)
            })
            .map(|(pattern, place, ts)| format!("{}: `{pattern}` {place:?} ({ts})", self.name))
            .collect()
    }

    /// `const` lines assigning each frame to its type, for `tsc`; with the
    /// frame each line is for.
    fn checks(&self) -> (String, Vec<String>) {
        let mut out = format!("import type * as M from \"./{}.js\";\n\n", self.name);
        let mut lines = Vec::new();
        for (n, frame) in self.frames.iter().enumerate() {
            let channel = format!("M.ChannelOf<{}>", Value::from(frame.topic.as_str()));
            let ty = frame.place.ts(&channel, &frame.event);
            let value = match &frame.payload {
                Body::Json(value) => serde_json::to_string_pretty(value).expect("JSON"),
                Body::Binary(bytes) => format!("new ArrayBuffer({})", bytes.len()),
            };
            let what = format!("{} on {}: {:?}", frame.event, frame.topic, frame.place);
            let _ = writeln!(out, "// {what}");
            lines.push(what);
            let _ = writeln!(out, "const f{n}: {ty} = {value};\n");
        }
        (out, lines)
    }
}

/// Whether `pattern` (`room:*`, `comments:*:new`, `lobby`) matches `name`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part) && rest.len() >= part.len();
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The pinned TypeScript compiler of `tests/js` (`npm ci` there, which
/// `./test.sh` runs first). Missing is a failure, never a skip.
pub fn tsc() -> (PathBuf, PathBuf) {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let tsc = js.join("node_modules/typescript/bin/tsc");
    assert!(
        tsc.is_file(),
        "the pinned TypeScript compiler is missing ({}): run `npm ci` in tests/js (./test.sh does)",
        tsc.display()
    );
    (js, tsc)
}

/// Writes each capture's module and frame checks under
/// `tests/js/artifacts/wire-types` and runs `tsc` over them; returns tsc's
/// exit code and output, with each frame's description for the failing
/// lines. `extra` is more `(file name, source)` to check in the same run.
pub fn typecheck(captures: &[&Capture], extra: &[(&str, String)]) -> (i32, String, PathBuf) {
    let (js, tsc) = tsc();
    let dir = js.join("artifacts/wire-types").join(format!("{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("writes the artifacts directory");
    let mut files = Vec::new();
    for capture in captures {
        std::fs::write(dir.join(format!("{}.ts", capture.name)), &capture.module).expect("writes the module");
        let (checks, _) = capture.checks();
        let file = dir.join(format!("{}.frames.ts", capture.name));
        std::fs::write(&file, checks).expect("writes the checks");
        files.push(file);
    }
    for (name, source) in extra {
        let file = dir.join(name);
        std::fs::write(&file, source).expect("writes the check");
        files.push(file);
    }
    let output = std::process::Command::new("node")
        .arg(&tsc)
        .args(["--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext"])
        .args(["--types", "phoenix"])
        .args(&files)
        .current_dir(&js)
        .output()
        .unwrap_or_else(|e| panic!("node runs tsc (Node.js >= 20 must be installed): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text, dir)
}
