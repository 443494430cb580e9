//! The client against servers that misbehave, over real loopback sockets:
//! a server in each test (a tokio `TcpListener` speaking WebSocket through
//! tokio-tungstenite's `accept`, and Phoenix's V2 frames by hand) floods
//! pushes, sends messages over the client's maximum, closes every
//! connection right after opening it, refuses the upgrade, or is not there.
//!
//! They run on the real clock: the connections are real sockets, and a
//! paused clock would fire the handshake timeout while a socket waits on
//! the kernel. Every wait is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phx_channels_client::{
    Backoff, JoinError, OnRefused, RecvError, Socket, SocketBuilder, SocketError, SocketEvent, SocketEvents,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

// ---------------------------------------------------------------- the servers

/// A server on a free loopback port: each accepted connection goes to
/// `serve`, and is counted.
struct Hostile {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Hostile {
    /// `serve` gets each connection's TCP stream, before any handshake.
    async fn tcp<F, Fut>(serve: F) -> Hostile
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        Hostile { addr, accepted }
    }

    /// `serve` gets each connection once its WebSocket handshake is done.
    async fn ws<F, Fut>(serve: F) -> Hostile
    where
        F: Fn(Ws) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::tcp(move |stream| {
            let serve = serve.clone();
            async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                    serve(ws).await;
                }
            }
        })
        .await
    }

    fn url(&self) -> String {
        format!("ws://{}/socket", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A Phoenix V2 message the client sent.
struct Incoming {
    join_ref: Value,
    msg_ref: Value,
    topic: String,
    event: String,
}

/// The next Phoenix message, `None` once the client is gone or sent
/// something else (a close).
async fn next_message(ws: &mut Ws) -> Option<Incoming> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => {
                let [join_ref, msg_ref, topic, event, _payload]: [Value; 5] = serde_json::from_str(&text).ok()?;
                return Some(Incoming {
                    join_ref,
                    msg_ref,
                    topic: topic.as_str()?.to_owned(),
                    event: event.as_str()?.to_owned(),
                });
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            _ => return None,
        }
    }
}

/// A V2 frame.
fn frame(join_ref: &Value, msg_ref: &Value, topic: &str, event: &str, payload: Value) -> Message {
    Message::text(json!([join_ref, msg_ref, topic, event, payload]).to_string())
}

/// `{"status": "ok", "response": {}}` to `message`.
fn ok_reply(message: &Incoming) -> Message {
    let reply = json!({"status": "ok", "response": {}});
    frame(&message.join_ref, &message.msg_ref, &message.topic, "phx_reply", reply)
}

/// Answers joins and heartbeats with `ok`, and every other push with what
/// `on_push` does before its `ok`.
async fn phoenix<F, Fut>(mut ws: Ws, on_push: F)
where
    F: Fn(Ws, Incoming) -> Fut,
    Fut: Future<Output = Ws>,
{
    while let Some(message) = next_message(&mut ws).await {
        if message.event != "phx_join" && message.event != "heartbeat" {
            // on_push answers it
            ws = on_push(ws, message).await;
            continue;
        }
        if ws.send(ok_reply(&message)).await.is_err() {
            return;
        }
    }
}

/// A frame header written by hand: a server's frame is not masked.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => header.push(len as u8),
        126..=0xFFFF => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&len.to_be_bytes());
        }
    }
    header
}

// ---------------------------------------------------------------- helpers

const WAIT: Duration = Duration::from_secs(10);

async fn within<F: std::future::IntoFuture>(what: &str, f: F) -> F::Output {
    timeout(WAIT, f).await.unwrap_or_else(|_| panic!("not within {WAIT:?}: {what}"))
}

async fn next_socket_event(events: &mut SocketEvents) -> SocketEvent {
    within("a socket event", events.recv()).await.expect("the socket ended")
}

/// A client that reconnects and rejoins at once, for servers that drop it.
fn quick(url: &str) -> SocketBuilder {
    Socket::builder(url).reconnect_after(Backoff::steps([], Duration::from_millis(20)))
}

// ---------------------------------------------------------------- a flood of pushes

/// Pushes the server floods the client with, about 1 KB each.
const FLOOD: usize = 10_000;

/// On a push `flood`: `FLOOD` pushes `flood` of about 1 KB each
/// (`{"i": i, "pad": …}`), then the reply, so a client that has the reply
/// has read every push before it.
async fn flooding(ws: Ws) {
    phoenix(ws, |mut ws, push| async move {
        let pad = "x".repeat(1_000);
        for i in 0..FLOOD {
            let message = frame(&push.join_ref, &Value::Null, &push.topic, "flood", json!({"i": i, "pad": pad}));
            if ws.feed(message).await.is_err() {
                return ws;
            }
        }
        let _ = ws.send(ok_reply(&push)).await;
        ws
    })
    .await;
}

#[tokio::test]
async fn unread_streams_stay_bounded_and_are_told_they_lagged() {
    let server = Hostile::ws(flooding).await;
    let socket = Socket::connect(server.url());
    let (chan, _): (_, Value) = within("join", socket.channel("room:1").join(json!({}))).await.unwrap();
    let mut flood = chan.on("flood");
    let mut all = chan.events();

    within("the flood", chan.push_with_timeout("flood", json!({}), WAIT)).await.unwrap();
    // Every push was read (the reply came after them), and neither stream
    // was: each holds its bound (1 024 events), not the 10 000 pushes.
    assert_eq!((flood.len(), all.len()), (1_024, 1_024));
    let bytes = flood.buffered_bytes();
    assert!((1_024 * 1_000..1_024 * 1_100).contains(&bytes), "{bytes} bytes for 1 024 events of about 1 KB");

    // Each is told how many it missed, then goes on from the oldest it kept.
    let dropped = (FLOOD - 1_024) as u64;
    assert_eq!(flood.recv().await, Err(RecvError::Lagged(dropped)));
    assert_eq!(flood.recv().await.unwrap().decode::<Value>().unwrap()["i"], FLOOD - 1_024);
    assert_eq!(all.next().await.unwrap().unwrap_err().0, dropped);
    let event = all.next().await.unwrap().unwrap();
    assert_eq!(
        (event.event.as_str(), event.payload.decode::<Value>().unwrap()["i"].clone()),
        ("flood", json!(FLOOD - 1_024))
    );
}

#[tokio::test]
async fn a_stream_is_bounded_in_bytes_too() {
    let server = Hostile::ws(flooding).await;
    let socket = Socket::builder(server.url()).event_buffer_bytes(64 * 1024).connect();
    let (chan, _): (_, Value) = within("join", socket.channel("room:1").join(json!({}))).await.unwrap();
    let mut flood = chan.on("flood");
    within("the flood", chan.push_with_timeout("flood", json!({}), WAIT)).await.unwrap();
    let (len, bytes) = (flood.len(), flood.buffered_bytes());
    assert!(bytes <= 64 * 1024 && bytes > 64 * 1024 - 1_100, "{bytes} bytes");
    assert_eq!(flood.recv().await, Err(RecvError::Lagged((FLOOD - len) as u64)));
}

// ---------------------------------------------------------------- too large

/// After the join: what `send` writes raw on the socket; then the close
/// code the client sends back goes to `closes`.
fn sending_raw(
    send: impl Fn() -> Vec<u8> + Send + Sync + Clone + 'static,
    closes: mpsc::UnboundedSender<Option<u16>>,
) -> impl Fn(Ws) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + Clone + 'static {
    move |mut ws: Ws| {
        let (send, closes) = (send.clone(), closes.clone());
        Box::pin(async move {
            let Some(join) = next_message(&mut ws).await else { return };
            if ws.send(ok_reply(&join)).await.is_err() || ws.get_mut().write_all(&send()).await.is_err() {
                return;
            }
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(close))) => {
                        let _ = closes.send(close.map(|c| u16::from(c.code)));
                        return;
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        let _ = closes.send(None);
                        return;
                    }
                }
            }
        })
    }
}

#[tokio::test]
async fn a_message_over_the_maximum_closes_the_connection_with_1009_and_reconnects() {
    // Two fragments of 40 KiB: 80 KiB in all, over the 64 KiB asked for.
    let fragment = vec![b'x'; 40 * 1024];
    let message = move || {
        let mut bytes = frame_header(false, 0x1, fragment.len() as u64);
        bytes.extend_from_slice(&fragment);
        bytes.extend(frame_header(true, 0x0, fragment.len() as u64));
        bytes.extend_from_slice(&fragment);
        bytes
    };
    let (closes, mut closed) = mpsc::unbounded_channel();
    let server = Hostile::ws(sending_raw(message, closes)).await;
    let socket = quick(&server.url()).max_message_size(64 * 1024).connect();
    let mut events = socket.events();
    let _joined = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap();

    assert_eq!(next_socket_event(&mut events).await, SocketEvent::Open);
    let too_large = SocketError::MessageTooLarge { size: 80 * 1024, max: 64 * 1024 };
    assert_eq!(next_socket_event(&mut events).await, SocketEvent::Error(too_large.clone()));
    assert_eq!(next_socket_event(&mut events).await, SocketEvent::Close { code: None, reason: too_large.to_string() });
    assert_eq!(within("the close", closed.recv()).await.unwrap(), Some(1009), "closed with 1009, message too big");
    // and the socket carries on: a new connection
    assert_eq!(next_socket_event(&mut events).await, SocketEvent::Open);
}

#[tokio::test]
async fn the_default_maximum_is_16_mib() {
    // A frame announcing 16 MiB + 1: refused from its header, before any
    // of it is read.
    let size = (16 << 20) + 1;
    let (closes, mut closed) = mpsc::unbounded_channel();
    let server = Hostile::ws(sending_raw(move || frame_header(true, 0x1, size as u64), closes)).await;
    let socket = quick(&server.url()).connect();
    let mut events = socket.events();
    let _joined = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap();
    assert_eq!(next_socket_event(&mut events).await, SocketEvent::Open);
    assert_eq!(
        next_socket_event(&mut events).await,
        SocketEvent::Error(SocketError::MessageTooLarge { size, max: 16 << 20 })
    );
    assert_eq!(within("the close", closed.recv()).await.unwrap(), Some(1009));
}

// ---------------------------------------------------------------- dropped at once

#[tokio::test]
async fn a_server_that_drops_every_connection_at_once_is_retried_ever_more_slowly() {
    // Each connection gets 100 KB, then a close: the client reads it, so
    // the connection did open.
    let server = Hostile::ws(|mut ws: Ws| async move {
        let _ = ws.send(Message::binary(vec![0; 100_000])).await;
        let _ = ws.close(None).await;
    })
    .await;
    let socket = Socket::connect(server.url());
    let mut events = socket.events();
    let mut opened = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(SocketEvent::Open)) = timeout(Duration::from_millis(100), events.recv()).await {
            opened += 1;
        }
    }
    // phoenix.js's steps (10, 50, 100, 150, 200, 250, 500, 1 000 ms): 8 or
    // 9 connections in 2 s. Restarting the steps at every open would make
    // one every 10 ms.
    let accepted = server.accepted();
    assert!(opened >= 3, "the client did reconnect: {opened} opens");
    assert!(accepted <= 10, "{accepted} connections in 2 s");
}

#[tokio::test]
async fn the_backoff_restarts_once_a_connection_stayed_open_10_s() {
    // Connections 1 to 8 are dropped at once; the 9th stays open 10.5 s;
    // the rest are dropped at once.
    let count = Arc::new(AtomicUsize::new(0));
    let server = Hostile::ws(move |mut ws: Ws| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 9 {
                tokio::time::sleep(Duration::from_millis(10_500)).await;
            }
            let _ = ws.close(None).await;
        }
    })
    .await;
    let socket = Socket::connect(server.url());
    let mut events = socket.events();
    let mut opened = 0;
    let mut closed_at = Instant::now();
    loop {
        match timeout(Duration::from_secs(20), events.recv()).await.expect("the test's time").unwrap() {
            SocketEvent::Open if opened == 9 => break,
            SocketEvent::Open => opened += 1,
            SocketEvent::Close { .. } => closed_at = Instant::now(),
            _ => {}
        }
    }
    // Without the restart the 10th try would wait 2 s.
    let gap = closed_at.elapsed();
    assert!(gap < Duration::from_millis(1_000), "reconnected {gap:?} after a stable connection closed");
}

// ---------------------------------------------------------------- refused, or not there

/// An HTTP server answering every upgrade with `status` and `body`.
async fn refusing(status: &'static str, body: &'static str) -> Hostile {
    Hostile::tcp(move |mut stream: TcpStream| async move {
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let response =
            format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        let _ = stream.write_all(response.as_bytes()).await;
    })
    .await
}

#[tokio::test]
async fn a_refusal_stops_the_socket_when_the_app_says_so() {
    let server = refusing("401 Unauthorized", "token expired").await;
    let socket = quick(&server.url()).on_refused(OnRefused::stop()).connect();
    let mut events = socket.events();
    let error = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap_err();
    let JoinError::Connect(SocketError::Refused(refusal)) = &error else { panic!("{error:?}") };
    assert_eq!((refusal.status, refusal.body.as_str()), (401, "token expired"));
    assert_eq!(
        error.to_string(),
        "cannot connect: the server refused the connection: HTTP 401 Unauthorized: token expired"
    );
    assert_eq!(next_socket_event(&mut events).await, SocketEvent::Error(SocketError::Refused(refusal.clone())));
    // The socket's events end, and nothing is tried again.
    assert_eq!(within("the end", events.recv()).await, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.accepted(), 1);
    // A later join is told why at once.
    let later = within("join", socket.channel("room:2").join::<Value>(json!({}))).await.unwrap_err();
    assert!(matches!(&later, JoinError::Connect(SocketError::Refused(r)) if r.status == 401), "{later:?}");
}

#[tokio::test]
async fn a_refusal_policy_chooses_by_status() {
    let policy = || OnRefused::retry_if(|refusal| refusal.status >= 500);
    let overloaded = refusing("503 Service Unavailable", "").await;
    let socket = quick(&overloaded.url()).on_refused(policy()).connect();
    let error = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap_err();
    assert_eq!(error.to_string(), "cannot connect: the server refused the connection: HTTP 503 Service Unavailable");
    within("retries", async {
        while overloaded.accepted() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let forbidden = refusing("403 Forbidden", "").await;
    let socket = quick(&forbidden.url()).on_refused(policy()).connect();
    let _ = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(forbidden.accepted(), 1);
}

#[tokio::test]
async fn a_server_that_is_down_fails_the_join_at_its_timeout_as_unreachable() {
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    // nothing listens there now
    let socket = quick(&format!("ws://{addr}/socket")).timeout(Duration::from_millis(300)).connect();
    let mut events = socket.events();
    let started = Instant::now();
    let error = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited for the server: {:?}", started.elapsed());
    assert!(matches!(error, JoinError::Connect(SocketError::Unreachable(_))), "{error:?}");
    assert!(error.to_string().starts_with("cannot connect: cannot reach the server: "), "{error}");
    let event = next_socket_event(&mut events).await;
    assert!(matches!(event, SocketEvent::Error(SocketError::Unreachable(_))), "{event:?}");
}

#[tokio::test]
async fn an_invalid_url_fails_the_join_at_once_and_is_not_retried() {
    let socket = Socket::builder("127.0.0.1:4000/socket").timeout(Duration::from_secs(60)).connect();
    let error = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap_err();
    assert!(matches!(error, JoinError::Connect(SocketError::InvalidRequest(_))), "{error:?}");
    let again = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap_err();
    assert!(matches!(again, JoinError::Connect(SocketError::InvalidRequest(_))), "{again:?}");
}

#[tokio::test]
async fn an_auth_token_to_a_server_that_does_not_take_it_fails_the_handshake() {
    // As Phoenix 1.7 answers: the upgrade, without the subprotocol.
    let server = Hostile::ws(|ws: Ws| async move { phoenix(ws, |ws, _| async move { ws }).await }).await;
    let socket = quick(&server.url()).auth_token("secret").timeout(Duration::from_millis(500)).connect();
    let error = within("join", socket.channel("room:1").join::<Value>(json!({}))).await.unwrap_err();
    let JoinError::Connect(SocketError::Handshake(why)) = &error else { panic!("{error:?}") };
    assert!(why.contains("no subprotocol"), "{why}");
    assert!(server.accepted() >= 1);
}
