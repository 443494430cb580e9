//! A test socket with hand-written channels, served on a free port, and a
//! raw WebSocket client that sees the exact frames.

#![allow(dead_code)]

pub mod redis_server;

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Mutex;

use futures_util::{SinkExt, StreamExt};
use phx_channels_runtime::channel::{Channel, Info, JoinError, Route, Routes, Terminate};
use phx_channels_runtime::connect::{Connect, ConnectInfo, Params, Refuse};
use phx_channels_runtime::crash::Crash;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::presence::Presence;
use phx_channels_runtime::protocol::Payload;
use phx_channels_runtime::reply::Reply;
use phx_channels_runtime::router::Topic;
use phx_channels_runtime::socket::Socket;
use phx_channels_runtime::SocketOptions;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct TestSocket;

impl Connect for TestSocket {
    type State = ();
    type Assigns = Option<String>;

    async fn connect(params: &Params, _info: &ConnectInfo, _state: &()) -> Result<Self::Assigns, Refuse> {
        match params.get("token") {
            Some("invalid") => Err(Refuse::forbidden()),
            Some("panic") => panic!("connect panics on purpose"),
            _ => Ok(params.get("user_id").map(str::to_owned)),
        }
    }

    fn id(user: &Self::Assigns, _state: &()) -> Option<String> {
        user.as_ref().map(|u| format!("users_socket:{u}"))
    }
}

impl Routes for TestSocket {
    const ROUTES: &'static [Route<Self>] = &[
        Route::new::<Echo>("echo:*"),
        Route::new::<Echo>("exact"),
        Route::new::<Kept>("kept:*"),
        Route::new::<KeptOut>("keptout:*"),
    ];
}

/// Every `terminate` call on an `echo:t-*` topic: (topic, reason).
pub static TERMINATED: Mutex<Vec<(String, Terminate)>> = Mutex::new(Vec::new());

pub fn terminated(topic: &str) -> Vec<Terminate> {
    TERMINATED.lock().unwrap().iter().filter(|(t, _)| t == topic).map(|(_, r)| r.clone()).collect()
}

/// A message for `handle_info`.
pub struct Tick(pub u32);

/// Gates that hold a join or a handler until the test opens them, one per
/// topic: the test decides when the slow work ends, no clock to race.
static GATES: Mutex<Vec<(String, std::sync::Arc<tokio::sync::Notify>)>> = Mutex::new(Vec::new());

fn gate(topic: &str) -> std::sync::Arc<tokio::sync::Notify> {
    let mut gates = GATES.lock().unwrap();
    if let Some((_, gate)) = gates.iter().find(|(t, _)| t == topic) {
        return gate.clone();
    }
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    gates.push((topic.to_owned(), gate.clone()));
    gate
}

/// Lets the join of `echo:gated*`, or the `gated` handler, on `topic` finish.
pub fn open_gate(topic: &str) {
    gate(topic).notify_one();
}

/// Lets the pending `later` reply go.
static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Answers by event name, so tests can ask for each behaviour.
pub struct Echo;

impl Channel for Echo {
    type Socket = TestSocket;

    const INTERCEPTS: &'static [&'static str] = &["secret", "filtered"];

    async fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<TestSocket>,
    ) -> Result<Reply, Crash> {
        if event == "secret" {
            let mut value: Value = payload.decode()?;
            value["mine"] = json!(socket.join_ref());
            socket.push(event, &value)?;
        }
        Ok(Reply::none())
    }

    async fn handle_info(&mut self, info: Info, socket: &mut Socket<TestSocket>) -> Result<Reply, Crash> {
        match info.downcast::<Tick>() {
            Ok(Tick(n)) => socket.push("tick", json!({"n": n}))?,
            Err(other) => return Err(format!("unexpected {}", other.type_name()).into()),
        }
        Ok(Reply::none())
    }

    async fn terminate(&mut self, reason: &Terminate, socket: &mut Socket<TestSocket>) {
        // Only the topics of the tests that read it: a soak ends hundreds of
        // thousands of channels, and would grow this list as if we leaked.
        if socket.topic().starts_with("echo:t-") {
            TERMINATED.lock().unwrap().push((socket.topic().to_string(), reason.clone()));
        }
    }

    async fn join(
        topic: Topic,
        payload: Payload,
        socket: &mut Socket<TestSocket>,
    ) -> Result<(Payload, Self), JoinError> {
        track_after_join(&payload, socket)?;
        match topic.rest() {
            "refuse" => Err(JoinError::reason("refused")),
            "panic" => panic!("join panics on purpose"),
            "fail" => Err(JoinError::crash("join failed on purpose")),
            rest if rest.starts_with("gated") => {
                gate(socket.topic()).notified().await;
                Ok((Payload::empty(), Echo))
            }
            "slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok((Payload::empty(), Echo))
            }
            "broadcast" => {
                // A broadcast during join, bounded like any other.
                socket.broadcast("hello", &payload.decode::<Value>()?)?;
                Ok((Payload::empty(), Echo))
            }
            "push" => {
                // A push during join goes out after the join reply.
                socket.push("welcome", json!({"early": true}))?;
                Ok((payload, Echo))
            }
            _ => Ok((payload, Echo)),
        }
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<TestSocket>,
    ) -> Result<Reply, Crash> {
        match event {
            "ping" => Ok(Reply::ok(payload)),
            "traceparent" => {
                tracing::info!("handler asked for its trace");
                Ok(Reply::ok(json!({ "traceparent": socket.traceparent().map(ToString::to_string) })))
            }
            "shout" => {
                socket.broadcast("shout", &payload.decode::<Value>()?)?;
                Ok(Reply::ok(json!({})))
            }
            "admit" => {
                // Admitted now, sent after an await (or dropped unsent).
                let payload = payload.decode::<Value>()?;
                let broadcast = socket.admit_broadcast("shout", &payload)?;
                tokio::task::yield_now().await;
                if payload["send"] == true {
                    broadcast.send()?;
                }
                Ok(Reply::ok(json!({})))
            }
            "relay" => {
                // The payload as received, bytes unchanged.
                socket.broadcast_from("relayed", payload)?;
                Ok(Reply::ok(json!({})))
            }
            "shout_from" => {
                socket.broadcast_from("shout", json!({"from": "other"}))?;
                Ok(Reply::ok(json!({})))
            }
            "push" => {
                socket.push("pushed", json!({"n": 1}))?;
                Ok(Reply::none())
            }
            "stop" => Ok(Reply::ok(json!({"bye": true})).and_stop()),
            "crash" => panic!("crash on purpose"),
            "fail" => Err("handler failed".into()),
            "later" => {
                // Answered from another task once the test sends `release`:
                // no timing to race against.
                let socket_ref = socket.socket_ref().ok_or("no socket_ref in handle_in")?;
                tokio::spawn(async move {
                    RELEASE.notified().await;
                    socket_ref.reply(Reply::ok(json!({"later": true})));
                });
                Ok(Reply::none())
            }
            "release" => {
                RELEASE.notify_one();
                Ok(Reply::ok(json!({})))
            }
            "bytes" => match payload {
                Payload::Binary(bytes) => Ok(Reply::ok(json!({"len": bytes.len()}))),
                Payload::Json(_) => Ok(Reply::error(json!({"reason": "expected bytes"}))),
            },
            "track" => {
                let key = payload.decode::<String>()?;
                Presence::track(socket, &key, json!({"k": key}))?;
                Ok(Reply::ok(Presence::list(socket)))
            }
            "track_after_join" => {
                let key = payload.decode::<String>()?;
                Presence::track_after_join(socket, &key, json!({"k": key}))?;
                Ok(Reply::ok(json!({})))
            }
            "tick" => {
                socket.send_after(Duration::from_millis(50), Tick(1));
                Ok(Reply::ok(json!({})))
            }
            "tell" => {
                let me = socket.channel_ref();
                tokio::spawn(async move { me.send(Tick(7)) });
                Ok(Reply::ok(json!({})))
            }
            "tell_wrong" => {
                socket.channel_ref().send("not a tick")?;
                Ok(Reply::ok(json!({})))
            }
            "gated" => {
                gate(socket.topic()).notified().await;
                Ok(Reply::ok(json!({"gated": true})))
            }
            _ => Ok(Reply::unknown_event()),
        }
    }
}

/// A join whose params say `{"track": key or [key, ..], "meta": m}` tracks
/// each key with `m` (`{"k": key}` by default) right after its reply;
/// `"track_now": key` tracks one at once, in `join`.
fn track_after_join(payload: &Payload, socket: &mut Socket<TestSocket>) -> Result<(), JoinError> {
    let Ok(Value::Object(params)) = payload.decode::<Value>() else { return Ok(()) };
    if let Some(key) = params.get("track_now").and_then(Value::as_str) {
        Presence::track(socket, key, json!({"now": true}))?;
    }
    let keys = match params.get("track") {
        Some(Value::String(key)) => vec![key.clone()],
        Some(Value::Array(keys)) => keys.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => return Ok(()),
    };
    for key in keys {
        let meta = params.get("meta").cloned().unwrap_or_else(|| json!({"k": key}));
        Presence::track_after_join(socket, &key, meta)?;
    }
    Ok(())
}

/// Waits until `done` holds, failing the test after 3 s: for what the server
/// does after a peer goes away, which no frame announces.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not within 3 s: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
}

pub async fn serve(options: SocketOptions) -> Server {
    serve_with(Endpoint::new(), options).await
}

pub async fn serve_with(endpoint: Endpoint, options: SocketOptions) -> Server {
    let endpoint = endpoint.socket_with("/socket", TestSocket, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoint.clone().serve_on(listener));
    Server { addr, endpoint }
}

pub async fn server() -> Server {
    serve(SocketOptions::default()).await
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server sent next.
#[derive(Debug, PartialEq)]
pub enum Received {
    Json(Value),
    Binary(Vec<u8>),
    Closed(Option<u16>),
}

/// A plain HTTP/1.1 request; returns (status, headers, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// A WebSocket upgrade request with these extra headers and query; the
/// HTTP status it is answered with.
pub async fn upgrade_status(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> u16 {
    let mut all = vec![
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    all.extend_from_slice(headers);
    http(addr, "GET", &format!("/socket/websocket?{query}"), &all, "").await.0
}

/// The head of a LongPoll `POST` of session `token` announcing a body
/// of `len` bytes (the body is the caller's to send).
pub fn longpoll_post_head(addr: SocketAddr, token: &str, len: usize) -> String {
    format!(
        "POST /socket/longpoll?vsn=2.0.0&token={token} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

impl Server {
    /// A LongPoll request; returns the JSON body (every answer is HTTP 200).
    pub async fn longpoll(&self, method: &str, query: &str, content_type: &str, body: &str) -> Value {
        let path = format!("/socket/longpoll?{query}");
        let (status, head, body) = http(self.addr, method, &path, &[("content-type", content_type)], body).await;
        assert_eq!(status, 200, "{head}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/socket/websocket?{query}", self.addr)
    }

    pub async fn connect(&self, query: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(self.url(query)).await.unwrap();
        Client { ws }
    }

    pub async fn v2(&self) -> Client {
        self.connect("vsn=2.0.0").await
    }

    /// Connects with an `Origin` header; `Err(status)` when refused.
    pub async fn connect_from(&self, origin: &str) -> Result<Client, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.url("vsn=2.0.0").into_client_request().unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    /// The HTTP status of an upgrade attempt that is refused.
    pub async fn refused_status(&self, query: &str) -> u16 {
        match tokio_tungstenite::connect_async(self.url(query)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(other) => panic!("expected an HTTP refusal, got {other}"),
            Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
        }
    }
}

impl From<WebSocketStream<MaybeTlsStream<TcpStream>>> for Client {
    fn from(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Client { ws }
    }
}

impl Client {
    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next frame, failing the test after 3 s.
    pub async fn recv(&mut self) -> Received {
        self.recv_within(Duration::from_secs(3)).await.expect("no frame within 3 s")
    }

    pub async fn recv_within(&mut self, within: Duration) -> Option<Received> {
        loop {
            let next = tokio::time::timeout(within, self.ws.next()).await.ok()?;
            return Some(match next {
                Some(Ok(Message::Text(t))) => Received::Json(serde_json::from_str(t.as_str()).unwrap()),
                Some(Ok(Message::Binary(b))) => Received::Binary(b.to_vec()),
                Some(Ok(Message::Close(frame))) => Received::Closed(frame.map(|f: CloseFrame| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Received::Closed(None),
            });
        }
    }

    /// The next JSON frame.
    pub async fn json(&mut self) -> Value {
        match self.recv().await {
            Received::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for `ms` milliseconds.
    pub async fn silent(&mut self, ms: u64) {
        if let Some(frame) = self.recv_within(Duration::from_millis(ms)).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// The close code the server closed with.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.recv().await {
                Received::Closed(code) => return code,
                Received::Json(_) | Received::Binary(_) => continue,
            }
        }
    }

    /// Joins `topic` with join_ref = ref = `jr` and returns the reply.
    pub async fn join(&mut self, jr: &str, topic: &str) -> Value {
        self.send(json!([jr, jr, topic, "phx_join", {}])).await;
        self.json().await
    }
}

/// A channel whose topics keep their last 5 broadcasts for a minute
/// (`docs/recovery.md`). Its join answers what it saw of the recovery
/// (`{"saw": {"recovered", "missed", "reason"}}`); on `kept:refuse*` it
/// refuses a rejoin that missed more than 2 broadcasts, on `kept:decline*`
/// it declines to recover.
pub struct Kept;

/// How many broadcasts the test channels' topics keep.
pub const KEPT: usize = 5;

fn saw_recovery(socket: &Socket<TestSocket>) -> Value {
    match socket.recovery() {
        None => json!(null),
        Some(r) => json!({
            "recovered": r.is_recovered(),
            "missed": r.missed().len(),
            "reason": r.not_recovered().map(|n| n.as_str()),
            "events": r.missed().iter().map(|m| m.event()).collect::<Vec<_>>(),
        }),
    }
}

impl Channel for Kept {
    type Socket = TestSocket;

    const HISTORY: Option<phx_channels_runtime::pubsub::History> =
        Some(phx_channels_runtime::pubsub::History::new(KEPT, Duration::from_secs(60)));

    async fn join(
        topic: Topic,
        _payload: Payload,
        socket: &mut Socket<TestSocket>,
    ) -> Result<(Payload, Self), JoinError> {
        let saw = saw_recovery(socket);
        if topic.rest().starts_with("refuse") && socket.recovery().is_some_and(|r| r.missed().len() > 2) {
            return Err(JoinError::new(json!({"reason": "reload", "saw": saw})));
        }
        if topic.rest().starts_with("decline") {
            socket.decline_recovery();
        }
        Ok((json!({"saw": saw}).into(), Kept))
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<TestSocket>,
    ) -> Result<Reply, Crash> {
        match event {
            "shout" => {
                socket.broadcast("shout", payload)?;
                Ok(Reply::ok(json!({})))
            }
            "shout_from" => {
                socket.broadcast_from("shout", payload)?;
                Ok(Reply::ok(json!({})))
            }
            _ => Ok(Reply::unknown_event()),
        }
    }
}

/// [`Kept`] intercepting `secret`: its `handle_out` adds `"seen": true`, and
/// drops `filtered`.
pub struct KeptOut;

impl Channel for KeptOut {
    type Socket = TestSocket;

    const HISTORY: Option<phx_channels_runtime::pubsub::History> =
        Some(phx_channels_runtime::pubsub::History::new(KEPT, Duration::from_secs(60)));
    const INTERCEPTS: &'static [&'static str] = &["secret", "filtered"];

    async fn join(
        _topic: Topic,
        _payload: Payload,
        socket: &mut Socket<TestSocket>,
    ) -> Result<(Payload, Self), JoinError> {
        Ok((json!({"saw": saw_recovery(socket)}).into(), KeptOut))
    }

    async fn handle_in(
        &mut self,
        _event: &str,
        _payload: Payload,
        _socket: &mut Socket<TestSocket>,
    ) -> Result<Reply, Crash> {
        Ok(Reply::unknown_event())
    }

    async fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<TestSocket>,
    ) -> Result<Reply, Crash> {
        if event == "secret" {
            let mut value: Value = payload.decode()?;
            value["seen"] = json!(true);
            socket.push(event, &value)?;
        }
        Ok(Reply::none())
    }
}
