//! The Rust client against this project's server, over real loopback
//! sockets: joins, pushes, broadcasts with phoenix.js peers, rejoin after a
//! crash, reconnect after a restart or a silent connection, buffered pushes,
//! binary payloads, presence.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use phx_channels_client::{
    Backoff, Channel, ChannelState, ConnectionState, JoinError, OnRefused, Presence, PresenceChange, PushError,
    RecvError, Socket, SocketBuilder, SocketError, SocketEvent,
};
use phx_channels_protocol::{Payload, Serializer};
use phx_channels_runtime::channel::{Channel as ServerChannel, JoinError as ServerJoinError, Route, Routes};
use phx_channels_runtime::connect::{Connect, ConnectInfo, Params, Refuse};
use phx_channels_runtime::crash::Crash;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::presence::Presence as ServerPresence;
use phx_channels_runtime::reply::Reply;
use phx_channels_runtime::router::Topic;
use phx_channels_runtime::server::ServerOptions;
use phx_channels_runtime::socket::Socket as ServerSocket;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

// ---------------------------------------------------------------- the server

/// The socket under test: `token=invalid` is refused; the assigns are the
/// auth token phoenix.js-style clients send in `Sec-WebSocket-Protocol`.
struct AppSocket;

impl Connect for AppSocket {
    type State = ();
    type Assigns = Option<String>;

    async fn connect(params: &Params, info: &ConnectInfo, _: &()) -> Result<Option<String>, Refuse> {
        match params.get("token") {
            Some("invalid") => Err(Refuse::forbidden()),
            _ => Ok(info.auth_token().map(str::to_owned)),
        }
    }
}

impl Routes for AppSocket {
    const ROUTES: &'static [Route<Self>] = &[Route::new::<Comments>("comments:*"), Route::new::<Room>("room:*")];
}

/// `comments:N`, as the discuss contract has it, plus a few events for the
/// tests.
struct Comments;

impl ServerChannel for Comments {
    type Socket = AppSocket;

    // Kept for clients that recover; the others see no difference.
    const HISTORY: Option<phx_channels_runtime::pubsub::History> =
        Some(phx_channels_runtime::pubsub::History::new(50, Duration::from_secs(60)));

    async fn join(
        topic: Topic,
        _params: Payload,
        _socket: &mut ServerSocket<AppSocket>,
    ) -> Result<(Payload, Self), ServerJoinError> {
        if topic.rest().is_empty() || !topic.rest().bytes().all(|b| b.is_ascii_digit()) {
            return Err(ServerJoinError::reason("invalid topic"));
        }
        Ok((json!({"hey": "there"}).into(), Comments))
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ServerSocket<AppSocket>,
    ) -> Result<Reply, Crash> {
        match event {
            "comment:add" => {
                let comment: Value = payload.decode()?;
                socket.broadcast(&format!("{}:new", socket.topic()), json!({ "comment": comment }))?;
                Ok(Reply::ok(json!({})))
            }
            "ping" => Ok(Reply::ok(payload)),
            "whoami" => Ok(Reply::ok(json!({ "token": socket.assigns() }))),
            "silence" => Ok(Reply::none()),
            "crash" => panic!("crash requested by the test"),
            // Bytes back as a binary reply, and to everyone as a binary broadcast.
            "bytes" => {
                socket.broadcast("blob", payload.clone())?;
                Ok(Reply::ok(payload))
            }
            _ => Ok(Reply::unknown_event()),
        }
    }
}

/// `room:NAME` with presence: tracks `{"name": U}` after the join and
/// pushes `presence_state`, as discuss's room does.
struct Room;

impl ServerChannel for Room {
    type Socket = AppSocket;

    async fn join(
        _topic: Topic,
        params: Payload,
        socket: &mut ServerSocket<AppSocket>,
    ) -> Result<(Payload, Self), ServerJoinError> {
        let params: Value = params.decode()?;
        let name = params["name"].as_str().ok_or_else(|| ServerJoinError::reason("name required"))?;
        ServerPresence::track_after_join(socket, name, json!({"online_at": "now"}))?;
        Ok((Payload::empty(), Room))
    }

    async fn handle_in(&mut self, _: &str, _: Payload, _: &mut ServerSocket<AppSocket>) -> Result<Reply, Crash> {
        Ok(Reply::unknown_event())
    }
}

/// The server, served on `addr` until dropped (then shut down: its sockets
/// are closed, as a restart does).
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// A server again on the same port (after [`Server::stop`]).
    async fn restart(addr: SocketAddr) -> Server {
        Self::on(TcpListener::bind(addr).await.unwrap())
    }

    fn on(listener: TcpListener) -> Server {
        let addr = listener.local_addr().unwrap();
        let options = ServerOptions { drain_period: Duration::from_millis(50), ..ServerOptions::default() };
        let endpoint = Endpoint::new().socket("/socket", AppSocket).server_options(options);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(endpoint.serve_with_shutdown(listener, async {
            let _ = stopped.await;
        }));
        Server { addr, stop: Some(stop), task }
    }

    fn url(&self) -> String {
        format!("ws://{}/socket", self.addr)
    }

    /// Shuts down and waits until the port is free and every socket closed.
    async fn stop(mut self) -> SocketAddr {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
        self.addr
    }
}

// ---------------------------------------------------------------- helpers

/// Every wait of these tests: far above what the loopback needs.
const WAIT: Duration = Duration::from_secs(5);

/// Short timers, so reconnects and rejoins happen within the test.
fn quick(url: &str) -> SocketBuilder {
    Socket::builder(url)
        .reconnect_after(Backoff::steps([Duration::from_millis(20)], Duration::from_millis(50)))
        .rejoin_after(Backoff::steps([Duration::from_millis(20)], Duration::from_millis(50)))
}

async fn within<F: std::future::IntoFuture>(what: &str, f: F) -> F::Output {
    timeout(WAIT, f).await.unwrap_or_else(|_| panic!("not within {WAIT:?}: {what}"))
}

async fn join(socket: &Socket, topic: &str) -> Channel {
    let (chan, _): (_, Value) = within("join", socket.channel(topic).join(json!({}))).await.unwrap();
    chan
}

async fn wait_state(chan: &Channel, state: ChannelState) {
    let mut states = chan.watch_state();
    within(&format!("channel {state:?}"), states.wait_for(|s| *s == state)).await.unwrap();
}

async fn next_socket_event(events: &mut phx_channels_client::SocketEvents, wanted: &str) -> SocketEvent {
    loop {
        let event = within(wanted, events.recv()).await.expect("socket ended");
        let matches = match &event {
            SocketEvent::Open => wanted == "open",
            SocketEvent::Close { .. } => wanted == "close",
            SocketEvent::Error(_) => wanted == "error",
            other => panic!("an event these tests do not know: {other:?}"),
        };
        if matches {
            return event;
        }
    }
}

// ---------------------------------------------------------------- tests

#[derive(Debug, Deserialize, PartialEq)]
struct Welcome {
    hey: String,
}

#[derive(Debug, Deserialize)]
struct Reason {
    reason: String,
}

#[tokio::test]
async fn join_returns_the_reply_decoded_or_the_refusal() {
    let server = Server::start().await;
    let socket = Socket::connect(server.url());
    let (chan, welcome): (Channel, Welcome) =
        within("join", socket.channel("comments:42").join(json!({}))).await.unwrap();
    assert_eq!(welcome, Welcome { hey: "there".into() });
    assert_eq!((chan.topic(), chan.state()), ("comments:42", ChannelState::Joined));

    let refused = within("refusal", socket.channel("comments:abc").join::<Value>(json!({}))).await.unwrap_err();
    assert!(matches!(refused, JoinError::Refused(_)), "{refused:?}");
    assert_eq!(refused.reason().as_deref(), Some("invalid topic"));
    assert_eq!(refused.to_string(), "join refused: invalid topic");
    let unmatched = within("unmatched", socket.channel("elsewhere:1").join::<Value>(json!({}))).await.unwrap_err();
    assert_eq!(unmatched.reason().as_deref(), Some("unmatched topic"));
    // A shape of your own: decode the response.
    let reason: Reason = unmatched.response().unwrap().decode().unwrap();
    assert_eq!(reason.reason, "unmatched topic");
    // A reply that does not fit the type asked for is an error, not a panic.
    let wrong = within("decode", socket.channel("comments:7").join::<Vec<u8>>(json!({}))).await.unwrap_err();
    assert!(matches!(wrong, JoinError::Decode(_)), "{wrong:?}");
}

#[tokio::test]
async fn pushes_answer_ok_error_or_timeout() {
    #[derive(Deserialize)]
    struct Pong {
        n: u32,
    }
    let server = Server::start().await;
    let socket = Socket::connect(server.url());
    let chan = join(&socket, "comments:1").await;
    let pong: Pong = within("ping", chan.push("ping", json!({"n": 7})).reply()).await.unwrap();
    assert_eq!(pong.n, 7);
    match within("unknown", chan.push("nope", json!({}))).await {
        Err(error @ PushError::Reply { .. }) => {
            assert_eq!(error.to_string(), "the server answered `error`: unknown event");
            assert_eq!(error.reason().as_deref(), Some("unknown event"));
            let PushError::Reply { status, response } = error else { unreachable!() };
            assert_eq!(
                (status.as_str(), response.decode::<Value>().unwrap()),
                ("error", json!({"reason": "unknown event"}))
            );
        }
        other => panic!("{other:?}"),
    }
    let silent = chan.push_with_timeout("silence", json!({}), Duration::from_millis(100));
    assert!(matches!(within("timeout", silent).await, Err(PushError::Timeout(_))));
    // The channel is still fine after a timeout.
    within("ping after", chan.push("ping", json!({}))).await.unwrap();
}

#[tokio::test]
async fn the_auth_token_and_params_reach_connect() {
    let server = Server::start().await;
    let socket = Socket::builder(server.url()).auth_token("user:7/secret+?").connect();
    let chan = join(&socket, "comments:1").await;
    let who: Value = within("whoami", chan.push("whoami", json!({})).reply()).await.unwrap();
    assert_eq!(who, json!({"token": "user:7/secret+?"}));
}

#[tokio::test]
async fn a_refused_connect_fails_the_join_at_once_with_its_status_and_is_retried() {
    let server = Server::start().await;
    let refused = quick(&server.url()).param("token", "invalid").connect();
    let mut events = refused.events();
    // The join's timeout is 10 s; `within` gives it 5.
    let error = within("refusal", refused.channel("comments:1").join::<Value>(json!({}))).await.unwrap_err();
    let JoinError::Connect(SocketError::Refused(refusal)) = &error else { panic!("{error:?}") };
    assert_eq!((refusal.status, refusal.body.as_str()), (403, ""));
    assert_eq!(error.to_string(), "cannot connect: the server refused the connection: HTTP 403 Forbidden");
    // The socket says so too, and tries again (phoenix.js's default).
    let event = next_socket_event(&mut events, "error").await;
    assert_eq!(event, SocketEvent::Error(SocketError::Refused(refusal.clone())));
    next_socket_event(&mut events, "error").await;
    assert_ne!(refused.connection_state(), ConnectionState::Open);
    // A join made meanwhile fails at the next attempt.
    let again = within("refusal", refused.channel("comments:2").join::<Value>(json!({}))).await.unwrap_err();
    assert!(matches!(&again, JoinError::Connect(SocketError::Refused(r)) if r.status == 403), "{again:?}");

    // Stopping is the app's choice.
    let stopped = quick(&server.url()).param("token", "invalid").on_refused(OnRefused::stop()).connect();
    let error = within("refusal", stopped.channel("comments:1").join::<Value>(json!({}))).await.unwrap_err();
    assert!(matches!(&error, JoinError::Connect(SocketError::Refused(r)) if r.status == 403), "{error:?}");
    assert_eq!(stopped.connection_state(), ConnectionState::Closed);
}

#[tokio::test]
async fn the_v1_serializer_works_and_refuses_bytes() {
    let server = Server::start().await;
    let socket = Socket::builder(server.url()).serializer(Serializer::V1).connect();
    let chan = join(&socket, "comments:5").await;
    let mut new = chan.on("comments:5:new");
    within("add", chan.push("comment:add", json!({"content": "v1"}))).await.unwrap();
    let got = within("broadcast", new.recv()).await.unwrap();
    assert_eq!(got.decode::<Value>().unwrap(), json!({"comment": {"content": "v1"}}));
    let bytes = within("bytes", chan.push("bytes", Bytes::from_static(b"x"))).await;
    assert!(matches!(bytes, Err(PushError::Encode(_))), "{bytes:?}");
}

#[tokio::test]
async fn binary_payloads_round_trip() {
    let server = Server::start().await;
    let socket = Socket::connect(server.url());
    let chan = join(&socket, "comments:9").await;
    let mut blobs = chan.on("blob");
    let data = Bytes::from_static(&[0, 1, 2, 254, 255]);
    let reply = within("bytes", chan.push("bytes", data.clone())).await.unwrap();
    assert_eq!(reply, Payload::Binary(data.clone()));
    let blob = within("blob", blobs.recv()).await.unwrap();
    assert_eq!(blob.as_binary(), Some(&data));
}

#[tokio::test]
async fn a_crashed_channel_rejoins_by_itself() {
    let server = Server::start().await;
    let socket = quick(&server.url()).connect();
    let chan = join(&socket, "comments:3").await;
    let mut events = chan.events();
    let mut states = chan.watch_state();
    // No reply comes: the handler dies. The push is sent all the same.
    drop(chan.push_with_timeout("crash", json!({}), Duration::from_millis(200)));
    let error = within("phx_error", events.recv()).await.unwrap();
    assert_eq!(error.event, "phx_error");
    within("errored", states.wait_for(|s| *s == ChannelState::Errored)).await.unwrap();
    within("rejoined", states.wait_for(|s| *s == ChannelState::Joined)).await.unwrap();
    // the new join works, and the socket never reconnected
    let pong: Value = within("ping", chan.push("ping", json!({"again": true})).reply()).await.unwrap();
    assert_eq!(pong, json!({"again": true}));
    assert_eq!(socket.connection_state(), ConnectionState::Open);
}

#[tokio::test]
async fn a_restarted_server_is_reconnected_and_rejoined_and_buffered_pushes_go_out() {
    let server = Server::start().await;
    let socket = quick(&server.url()).connect();
    let mut events = socket.events();
    let chan = join(&socket, "comments:4").await;

    let addr = server.stop().await;
    next_socket_event(&mut events, "close").await;
    wait_state(&chan, ChannelState::Errored).await;

    // Made while the server is down: one waits and goes out after the
    // rejoin, one times out meanwhile (its timeout runs while buffered).
    let buffered = chan.push_with_timeout("ping", json!({"buffered": 1}), Duration::from_secs(4));
    let expired = chan.push_with_timeout("ping", json!({}), Duration::from_millis(50));
    assert!(matches!(within("expired", expired).await, Err(PushError::Timeout(_))));
    let server = Server::restart(addr).await;
    next_socket_event(&mut events, "open").await;
    wait_state(&chan, ChannelState::Joined).await;
    assert_eq!(within("buffered", buffered).await.unwrap().decode::<Value>().unwrap(), json!({"buffered": 1}));
    drop(server);
}

/// Forwards TCP to `to` until frozen: then the connections open at that
/// moment stay open and silent (a half-dead network path), and new ones are
/// forwarded.
async fn proxy(to: SocketAddr) -> (SocketAddr, watch::Sender<u32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (freeze, frozen) = watch::channel(0u32);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let generation = *frozen.borrow();
            let mut frozen = frozen.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(to).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let forward = async {
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                    }
                };
                tokio::select! {
                    () = forward => {}
                    () = async { drop(frozen.wait_for(|g| *g > generation).await) } => {
                        // Silent: hold both ends open, forward nothing.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    (addr, freeze)
}

#[tokio::test]
async fn a_connection_gone_silent_is_dropped_by_the_heartbeat_and_reconnected() {
    let server = Server::start().await;
    let (addr, freeze) = proxy(server.addr).await;
    let socket = quick(&format!("ws://{addr}/socket")).heartbeat_interval(Duration::from_millis(150)).connect();
    let mut events = socket.events();
    let chan = join(&socket, "comments:6").await;
    // heartbeats are answered: still the same connection after a few
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(socket.connection_state(), ConnectionState::Open);

    freeze.send_modify(|g| *g += 1);
    let close = next_socket_event(&mut events, "close").await;
    assert_eq!(close, SocketEvent::Close { code: None, reason: "heartbeat timeout".into() });
    next_socket_event(&mut events, "open").await;
    wait_state(&chan, ChannelState::Joined).await;
    within("ping", chan.push("ping", json!({}))).await.unwrap();
}

#[tokio::test]
async fn leave_closes_the_channel_and_ends_its_streams() {
    let server = Server::start().await;
    let socket = Socket::connect(server.url());
    let chan = join(&socket, "comments:8").await;
    let mut events = chan.events();
    within("leave", chan.leave()).await.unwrap();
    assert_eq!(chan.state(), ChannelState::Closed);
    assert_eq!(within("end", events.recv()).await, Err(RecvError::Closed));
    assert!(matches!(within("push", chan.push("ping", json!({}))).await, Err(PushError::Closed)));

    socket.disconnect();
    let params = json!({});
    let other = socket.channel("comments:9").join::<Value>(&params);
    assert!(matches!(within("after disconnect", other).await, Err(JoinError::Closed)));
}

// ---------------------------------------------------------------- phoenix.js peers

/// A phoenix.js client (`tests/js/lib/client-peer.mjs`) in the same topic;
/// its stdout lines are JSON. Fails loudly when node or the phoenix
/// package is missing: `cd tests/js && npm ci`.
struct Peer {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let js = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/js");
        let module = format!("{js}/node_modules/phoenix/package.json");
        assert!(std::path::Path::new(&module).exists(), "{module} is missing: run `cd tests/js && npm ci`");
        let mut child = tokio::process::Command::new("node")
            .arg(format!("{js}/lib/client-peer.mjs"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is needed for the phoenix.js peer tests");
        let stdout = child.stdout.take().unwrap();
        Peer { child, lines: BufReader::new(stdout).lines() }
    }

    /// The next line that has `key`.
    async fn expect(&mut self, key: &str) -> Value {
        loop {
            let line = within(key, self.lines.next_line()).await.unwrap().unwrap_or_else(|| panic!("peer ended"));
            let value: Value = serde_json::from_str(&line).unwrap();
            assert!(value.get("error").is_none(), "peer failed: {value}");
            if let Some(found) = value.get(key) {
                return found.clone();
            }
        }
    }

    async fn end(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        let _ = within("peer exit", self.child.wait()).await;
    }
}

#[tokio::test]
async fn broadcasts_flow_between_the_rust_client_and_phoenix_js() {
    let server = Server::start().await;
    let mut peer = Peer::spawn(&[&server.url(), "broadcast", "comments:77"]);
    assert_eq!(peer.expect("joined").await, json!({"hey": "there"}));

    let socket = Socket::connect(server.url());
    let chan = join(&socket, "comments:77").await;
    let mut new = chan.on("comments:77:new");
    within("add", chan.push("comment:add", json!({"content": "from Rust"}))).await.unwrap();
    assert_eq!(peer.expect("received").await, json!({"comment": {"content": "from Rust"}}));
    assert_eq!(peer.expect("pushed").await, json!({}));
    let mut contents = Vec::new();
    while contents.len() < 2 {
        let got: Value = within("broadcast", new.recv()).await.unwrap().decode().unwrap();
        contents.push(got["comment"]["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(contents, ["from Rust", "from phoenix.js"]);
    peer.end().await;
}

#[tokio::test]
async fn presence_is_synced_with_phoenix_js_peers() {
    let server = Server::start().await;
    let mut peer = Peer::spawn(&[&server.url(), "presence", "room:lobby", "js"]);
    peer.expect("joined").await;
    assert_eq!(peer.expect("presence").await, json!(["js"]));

    let socket = Socket::connect(server.url());
    let (room, _): (_, Value) =
        within("join", socket.channel("room:lobby").join(json!({"name": "rust"}))).await.unwrap();
    let mut presence = Presence::new(&room);
    let keys = |p: &Presence| p.list().keys().cloned().collect::<Vec<_>>();
    let mut joined = Vec::new();
    loop {
        match within("presence", presence.next()).await.unwrap() {
            PresenceChange::Join { key, .. } => joined.push(key),
            PresenceChange::Sync if keys(&presence) == ["js", "rust"] => break,
            PresenceChange::Leave { .. } | PresenceChange::Sync => {}
        }
    }
    assert!(joined.contains(&"js".to_owned()) && joined.contains(&"rust".to_owned()), "{joined:?}");
    assert_eq!(presence.list()["rust"]["metas"][0]["online_at"], "now");
    // phoenix.js sees the Rust client too
    while peer.expect("presence").await != json!(["js", "rust"]) {}

    // the peer leaves: the Rust side sees it go
    peer.end().await;
    loop {
        if let PresenceChange::Leave { key, current, .. } = within("leave", presence.next()).await.unwrap() {
            assert_eq!((key.as_str(), &current["metas"]), ("js", &json!([])));
            break;
        }
    }
    assert_eq!(keys(&presence), ["rust"]);
}

/// A proxy whose connections can be cut at once (both directions closed),
/// for a client to reconnect through it.
async fn cutting_proxy(to: SocketAddr) -> (SocketAddr, watch::Sender<u32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, cuts) = watch::channel(0u32);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let generation = *cuts.borrow();
            let mut cuts = cuts.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(to).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::select! {
                    _ = tokio::io::copy(&mut cr, &mut sw) => {}
                    _ = tokio::io::copy(&mut sr, &mut cw) => {}
                    _ = cuts.wait_for(|g| *g > generation) => {}
                }
            });
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn a_channel_that_recovers_gets_what_it_missed_exactly_once_across_reconnects() {
    let server = Server::start().await;
    let (addr, cut) = cutting_proxy(server.addr).await;
    let reader = quick(&format!("ws://{addr}/socket")).connect();
    let (chan, welcome): (_, Welcome) =
        within("join", reader.channel("comments:70").recover().join(json!({}))).await.unwrap();
    assert_eq!(welcome.hey, "there", "the join params reach the channel without phx_position");
    let mut comments = chan.events();
    let writer = quick(&server.url()).connect();
    let wchan = join(&writer, "comments:70").await;

    let mut seen = Vec::new();
    let mut reports = Vec::new();
    for round in 0..4u64 {
        for i in 0..5 {
            let n = round * 5 + i;
            within("add", wchan.push("comment:add", json!({"n": n}))).await.unwrap();
            if i == 2 {
                // cut mid-way: what follows is sent while the reader is away
                cut.send_modify(|g| *g += 1);
            }
        }
        while seen.len() < ((round + 1) * 5) as usize {
            let event = within("an event", comments.recv()).await.expect("channel open, nothing dropped");
            match event.event.as_str() {
                "comments:70:new" => {
                    let value: Value = event.payload.decode().unwrap();
                    let position = event.position.expect("a position on every broadcast");
                    seen.push((value["comment"]["n"].as_u64().unwrap(), position.offset()));
                }
                "phx_recovery" => reports.push(event.payload.decode::<phx_channels_client::Recovery>().unwrap()),
                _ => {}
            }
        }
    }
    let expected: Vec<(u64, u64)> = (0..20).map(|n| (n, n + 1)).collect();
    assert_eq!(seen, expected, "every comment once, in order, with its position");
    assert!(reports.len() >= 4, "a phx_recovery for the first join and every rejoin: {reports:?}");
    assert!(!reports[0].recovered && reports[0].reason.as_deref() == Some("none"));
    assert!(reports[1..].iter().all(|r| r.recovered), "{reports:?}");
    assert_eq!(chan.position().map(|p| p.offset()), Some(20));
    drop(server);
}
