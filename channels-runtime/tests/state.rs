//! Application state over real sockets: every callback sees the state its
//! endpoint was given, two endpoints in one process never see each other's,
//! and the app's own axum routes share it. Also the frames of `JoinError`
//! refusals and crashes, and the error chain a crash log carries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use phx_channels_runtime::channel::{Channel, Info, JoinError, Route, Routes, Terminate};
use phx_channels_runtime::connect::{Connect, ConnectInfo, Params, Refuse};
use phx_channels_runtime::crash::Crash;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::protocol::Payload;
use phx_channels_runtime::reply::Reply;
use phx_channels_runtime::router::Topic;
use phx_channels_runtime::socket::Socket;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// What each endpoint's callbacks record, to show they all saw it.
#[derive(Default)]
struct App {
    name: String,
    seen: Mutex<Vec<String>>,
}

impl App {
    fn new(name: &str) -> Self {
        App { name: name.to_owned(), seen: Mutex::default() }
    }

    fn saw(&self, what: impl Into<String>) {
        self.seen.lock().unwrap().push(what.into());
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

struct AppSocket;

impl Connect for AppSocket {
    type State = App;
    type Assigns = String;

    async fn connect(params: &Params, _info: &ConnectInfo, app: &App) -> Result<String, Refuse> {
        app.saw("connect");
        Ok(params.get("user").unwrap_or("anonymous").to_owned())
    }

    fn id(user: &String, app: &App) -> Option<String> {
        app.saw("id");
        Some(format!("{}:{user}", app.name))
    }
}

impl Routes for AppSocket {
    const ROUTES: &'static [Route<Self>] = &[Route::new::<Room>("room:*")];
}

struct Room;

/// Sent by `handle_in("tell")` to the channel itself.
struct Told;

#[derive(Debug, thiserror::Error)]
#[error("saving failed")]
struct SaveFailed(#[source] std::io::Error);

impl Channel for Room {
    type Socket = AppSocket;

    const INTERCEPTS: &'static [&'static str] = &["out"];

    async fn join(
        topic: Topic,
        _payload: Payload,
        socket: &mut Socket<AppSocket>,
    ) -> Result<(Payload, Self), JoinError> {
        socket.state().saw("join");
        match topic.rest() {
            "refuse" => Err(JoinError::reason("no entry")),
            "shape" => Err(JoinError::new(json!({"errors": {"topic": ["is closed"]}}))),
            "crash" => Err(JoinError::crash(SaveFailed(std::io::Error::other("disk full")))),
            rest => {
                // `?` on a parse error refuses with its message.
                let _n: u32 = rest.parse()?;
                Ok((Payload::from(json!({"app": socket.state().name})), Room))
            }
        }
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<AppSocket>,
    ) -> Result<Reply, Crash> {
        socket.state().saw(format!("handle_in {event}"));
        match event {
            "who" => Ok(Reply::ok(json!({"app": socket.state().name}))),
            "tell" => {
                socket.channel_ref().send(Told)?;
                Ok(Reply::ok(json!({})))
            }
            "out" => {
                socket.broadcast("out", payload)?;
                Ok(Reply::ok(json!({})))
            }
            "fail" => Err(SaveFailed(std::io::Error::other("disk full")).into()),
            _ => Ok(Reply::unknown_event()),
        }
    }

    async fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<AppSocket>,
    ) -> Result<Reply, Crash> {
        socket.state().saw(format!("handle_out {event}"));
        socket.push(event, payload)?;
        Ok(Reply::none())
    }

    async fn handle_info(&mut self, info: Info, socket: &mut Socket<AppSocket>) -> Result<Reply, Crash> {
        if info.downcast::<Told>().is_ok() {
            socket.state().saw("handle_info");
            socket.push("told", json!({"app": socket.state().name}))?;
        }
        Ok(Reply::none())
    }

    async fn terminate(&mut self, reason: &Terminate, socket: &mut Socket<AppSocket>) {
        let what = match reason {
            Terminate::Crashed(crash) => {
                // The error itself reaches terminate, not a string of it.
                let kept = crash.error().is_some_and(|e| e.downcast_ref::<SaveFailed>().is_some());
                format!("terminate crashed: {crash} (typed: {kept})")
            }
            other => format!("terminate {other:?}"),
        };
        socket.state().saw(what);
    }
}

/// Every line logged in this test binary (a process-wide subscriber: the
/// tests here only add to it).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || LogWriter(writer.clone()))
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn serve(app: Arc<App>) -> SocketAddr {
    logs();
    let routes = Router::new().route("/api/name", get(|State(app): State<Arc<App>>| async move { app.name.clone() }));
    let endpoint = Endpoint::with_state(app).socket("/socket", AppSocket).merge(routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoint.serve_on(listener));
    addr
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, user: &str) -> Ws {
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0&user={user}");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a frame within 5 s");
        if let Some(Ok(Message::Text(text))) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// The reply to `msg_ref`, skipping other frames.
async fn reply(ws: &mut Ws, msg_ref: &str) -> Value {
    loop {
        let frame = next(ws).await;
        if frame[1] == msg_ref && frame[3] == "phx_reply" {
            return frame[4].clone();
        }
    }
}

async fn until(app: &App, what: &str) {
    for _ in 0..500 {
        if app.seen().iter().any(|s| s.starts_with(what)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what:?} never seen; seen: {:?}", app.seen());
}

#[tokio::test]
async fn every_callback_sees_its_own_endpoints_state() {
    let (a, b) = (Arc::new(App::new("a")), Arc::new(App::new("b")));
    let (addr_a, addr_b) = (serve(a.clone()).await, serve(b.clone()).await);

    let mut on_a = connect(addr_a, "ada").await;
    let mut on_b = connect(addr_b, "bob").await;
    send(&mut on_a, json!(["1", "1", "room:1", "phx_join", {}])).await;
    send(&mut on_b, json!(["1", "1", "room:1", "phx_join", {}])).await;
    assert_eq!(reply(&mut on_a, "1").await, json!({"status": "ok", "response": {"app": "a"}}));
    assert_eq!(reply(&mut on_b, "1").await, json!({"status": "ok", "response": {"app": "b"}}));

    send(&mut on_a, json!(["1", "2", "room:1", "who", {}])).await;
    assert_eq!(reply(&mut on_a, "2").await, json!({"status": "ok", "response": {"app": "a"}}));

    send(&mut on_a, json!(["1", "3", "room:1", "tell", {}])).await;
    assert_eq!(reply(&mut on_a, "3").await["status"], "ok");
    assert_eq!(next(&mut on_a).await, json!(["1", null, "room:1", "told", {"app": "a"}]));

    send(&mut on_a, json!(["1", "4", "room:1", "out", {"x": 1}])).await;
    let (mut pushed, mut replied) = (false, false);
    while !(pushed && replied) {
        let frame = next(&mut on_a).await;
        pushed |= frame == json!(["1", null, "room:1", "out", {"x": 1}]);
        replied |= frame[1] == "4";
    }

    send(&mut on_a, json!(["1", "5", "room:1", "phx_leave", {}])).await;
    reply(&mut on_a, "5").await;
    until(&a, "terminate").await;

    let seen_a = a.seen();
    for what in ["connect", "id", "join", "handle_in who", "handle_info", "handle_out out", "terminate Left"] {
        assert!(seen_a.iter().any(|s| s == what), "endpoint a never saw {what:?}: {seen_a:?}");
    }
    // b's state saw b's socket only: its connect, id and join, nothing of a's.
    assert_eq!(b.seen(), ["connect", "id", "join"]);

    // The apps' own routes read the same state.
    for (addr, name) in [(addr_a, "a"), (addr_b, "b")] {
        let body = reqwest_get(addr, "/api/name").await;
        assert_eq!(body, name);
    }
}

/// A GET over plain TCP; the body.
async fn reqwest_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn join_errors_answer_phoenix_frames() {
    let app = Arc::new(App::new("frames"));
    let addr = serve(app.clone()).await;
    let mut ws = connect(addr, "ada").await;
    let cases = [
        ("room:refuse", json!({"reason": "no entry"})),
        ("room:shape", json!({"errors": {"topic": ["is closed"]}})),
        ("room:abc", json!({"reason": "invalid digit found in string"})),
        ("room:crash", json!({"reason": "join crashed"})),
    ];
    for (n, (topic, response)) in cases.into_iter().enumerate() {
        let join_ref = (n + 10).to_string();
        send(&mut ws, json!([join_ref, join_ref, topic, "phx_join", {}])).await;
        let frame = next(&mut ws).await;
        assert_eq!(frame, json!([join_ref, join_ref, topic, "phx_reply", {"status": "error", "response": response}]));
    }
}

#[tokio::test]
async fn a_crash_keeps_its_error_and_sources() {
    let app = Arc::new(App::new("crash"));
    let addr = serve(app.clone()).await;
    let mut ws = connect(addr, "ada").await;
    send(&mut ws, json!(["1", "1", "room:7", "phx_join", {}])).await;
    reply(&mut ws, "1").await;
    send(&mut ws, json!(["1", "2", "room:7", "fail", {}])).await;
    assert_eq!(next(&mut ws).await, json!(["1", "1", "room:7", "phx_error", {"reason": "channel_crash"}]));
    until(&app, "terminate").await;
    let terminated = app.seen().into_iter().find(|s| s.starts_with("terminate")).unwrap();
    assert_eq!(terminated, "terminate crashed: saving failed: disk full (typed: true)");
    // The crash line carries the whole chain, not only the outer message.
    let logs = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    let line = logs.lines().find(|l| l.contains("channel crashed") && l.contains("room:7")).expect("a crash line");
    assert!(line.contains("saving failed: disk full"), "{line}");
}
