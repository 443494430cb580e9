//! The Rust client against this project's server in TLS (`wss://`), over
//! real loopback sockets, with a CA the tests make: the app's own roots
//! trusted, `https://` URLs taken as phoenix.js does, an untrusted
//! certificate refused with a clear error, and a certificate reloaded
//! while the server runs. And compression (`SocketBuilder::compress`,
//! against `SocketOptions::compress`), plain and TLS: the server's
//! broadcasts arrive compressed and are read as any other, a client that
//! does not offer it gets them plain from the same broadcast, the client's
//! own pushes reach the server compressed (seen by a proxy between them)
//! and are answered, and a message that inflates past the client's
//! `max_message_size` breaks the connection instead of growing.

#[path = "../../channels-runtime/tests/support/pki.rs"]
mod pki;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use phx_channels_client::{Backoff, JoinError, Socket, SocketBuilder, SocketError, SocketEvent, Tls};
use phx_channels_protocol::Payload;
use phx_channels_runtime::channel::{Channel as ServerChannel, JoinError as ServerJoinError, Route, Routes};
use phx_channels_runtime::connect::{Connect, ConnectInfo, Params, Refuse};
use phx_channels_runtime::crash::Crash;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::reply::Reply;
use phx_channels_runtime::router::Topic;
use phx_channels_runtime::socket::Socket as ServerSocket;
use phx_channels_runtime::tls::{Tls as ServerTls, TlsError as ServerTlsError};
use phx_channels_runtime::SocketOptions;
use phx_channels_wire::frame::{Header, Role};
use pki::Ca;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

struct AppSocket;

impl Connect for AppSocket {
    type State = ();
    type Assigns = ();

    async fn connect(_: &Params, _: &ConnectInfo, _: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

impl Routes for AppSocket {
    const ROUTES: &'static [Route<Self>] = &[Route::new::<Echo>("echo:*")];
}

/// Answers `ping` with its payload; `big` also pushes `{"zeros": "000…"}`
/// of the size asked for.
struct Echo;

impl ServerChannel for Echo {
    type Socket = AppSocket;

    async fn join(_: Topic, _: Payload, _: &mut ServerSocket<AppSocket>) -> Result<(Payload, Self), ServerJoinError> {
        Ok((json!({"secure": true}).into(), Echo))
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ServerSocket<AppSocket>,
    ) -> Result<Reply, Crash> {
        if event == "big" {
            let size = payload.decode::<Value>()?["size"].as_u64().unwrap_or(0);
            socket.push("big", json!({"zeros": "0".repeat(usize::try_from(size)?)}))?;
        }
        Ok(Reply::ok(payload))
    }
}

/// Serves the app in TLS with `tls` on a free loopback port; the port.
async fn serve(tls: ServerTls) -> u16 {
    serve_with(Some(tls), SocketOptions::default()).await.1
}

/// Serves the app (in TLS with `tls`) with `options`; the endpoint and the port.
async fn serve_with(tls: Option<ServerTls>, options: SocketOptions) -> (Endpoint, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut endpoint = Endpoint::new().socket_with("/socket", AppSocket, options);
    if let Some(tls) = tls {
        endpoint = endpoint.tls(tls);
    }
    tokio::spawn(endpoint.clone().serve_with_shutdown(listener, std::future::pending()));
    (endpoint, port)
}

const WAIT: Duration = Duration::from_secs(10);

fn quick(url: &str) -> SocketBuilder {
    Socket::builder(url).reconnect_after(Backoff::steps([Duration::from_millis(50)], Duration::from_millis(100)))
}

/// Joins `echo:1` and has a ping answered.
async fn ping(socket: &Socket) -> Result<Value, JoinError> {
    let (channel, reply): (_, Value) = timeout(WAIT, socket.channel("echo:1").join(json!({}))).await.expect("join")?;
    assert_eq!(reply, json!({"secure": true}));
    let pong = timeout(WAIT, channel.push("ping", json!({"n": 7}))).await.expect("ping").unwrap();
    Ok(pong.decode().unwrap())
}

/// The TLS error a join failed with.
fn tls_error(joined: Result<Value, JoinError>) -> String {
    match joined {
        Err(JoinError::Connect(SocketError::Tls(why))) => why,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn wss_and_https_urls_reach_a_tls_server_that_the_apps_ca_signed() {
    let ca = Ca::new("phx-channels test CA");
    let (cert, key) = ca.server(&["localhost"]);
    let port = serve(ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()).await;
    let trust = Tls::roots_pem(ca.pem.as_bytes()).unwrap();
    for url in [format!("wss://localhost:{port}/socket"), format!("https://localhost:{port}/socket/")] {
        let socket = quick(&url).tls(trust.clone()).connect();
        assert_eq!(ping(&socket).await.unwrap(), json!({"n": 7}), "{url}");
        socket.disconnect();
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_with_a_clear_error_at_once() {
    let ca = Ca::new("phx-channels test CA");
    let (cert, key) = ca.server(&["localhost"]);
    let port = serve(ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()).await;
    // Mozilla's roots (the default) do not know the tests' CA; nor does
    // another private CA.
    let other = Tls::roots_pem(Ca::new("another CA").pem.as_bytes()).unwrap();
    for builder in
        [quick(&format!("wss://localhost:{port}/socket")), quick(&format!("wss://localhost:{port}/socket")).tls(other)]
    {
        let socket = builder.connect();
        let started = std::time::Instant::now();
        let why = tls_error(ping(&socket).await);
        assert!(why.contains("UnknownIssuer"), "{why}");
        assert!(started.elapsed() < Duration::from_secs(5), "the join waited {:?} for its timeout", started.elapsed());
        socket.disconnect();
    }
    // A certificate for another name.
    let trust = Tls::roots_pem(ca.pem.as_bytes()).unwrap();
    let socket = quick(&format!("wss://127.0.0.1:{port}/socket")).tls(trust).connect();
    let why = tls_error(ping(&socket).await);
    assert!(why.contains("not valid for name"), "{why}");
    socket.disconnect();
}

#[tokio::test]
async fn a_reloaded_certificate_is_served_from_the_next_handshake_without_a_restart() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let dir = pki::temp_dir();
    let (cert_path, key_path) = pki::write(&dir, &old_ca.server(&["localhost"]));
    let tls = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
    let port = serve(tls.clone()).await;
    let url = format!("wss://localhost:{port}/socket");
    // A fresh client configuration per connection: one that connected
    // before would resume its TLS session, which skips the certificate.
    let trust = |ca: &Ca| Tls::roots_pem(ca.pem.as_bytes()).unwrap();

    let before = quick(&url).tls(trust(&old_ca)).connect();
    let (channel, _): (_, Value) = timeout(WAIT, before.channel("echo:1").join(json!({}))).await.unwrap().unwrap();
    assert!(tls_error(ping(&quick(&url).tls(trust(&new_ca)).connect()).await).contains("UnknownIssuer"));

    // Renewed on disk (by another CA, so that the clients can tell), then
    // reloaded.
    pki::write(&dir, &new_ca.server(&["localhost"]));
    tls.reload().unwrap();
    assert_eq!(ping(&quick(&url).tls(trust(&new_ca)).connect()).await.unwrap(), json!({"n": 7}));
    assert!(tls_error(ping(&quick(&url).tls(trust(&old_ca)).connect()).await).contains("UnknownIssuer"));
    // The connection made before is still open on the old certificate.
    let pong = timeout(WAIT, channel.push("ping", json!({"still": "here"}))).await.unwrap().unwrap();
    assert_eq!(pong.decode::<Value>().unwrap(), json!({"still": "here"}));

    // A file half-written is refused, and the certificate served stays.
    std::fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    assert!(matches!(tls.reload(), Err(ServerTlsError::NoCertificate(_))));
    assert_eq!(ping(&quick(&url).tls(trust(&new_ca)).connect()).await.unwrap(), json!({"n": 7}));
    let _ = std::fs::remove_dir_all(&dir);
}

fn compressing() -> SocketOptions {
    SocketOptions { compress: true, ..SocketOptions::default() }
}

/// A broadcast of about 2.7 KB of JSON.
fn comments() -> Value {
    comments_of(60)
}

/// `{"comments": [...]}` with `n` comments (45 bytes each).
fn comments_of(n: usize) -> Value {
    let list: Vec<Value> =
        (0..n).map(|i| json!({"id": i, "user": format!("user-{}", i % 7), "body": "a comment"})).collect();
    json!({ "comments": list })
}

/// Joins `echo:1` with each builder's socket, broadcasts once, and returns
/// what each received.
async fn broadcast_to(endpoint: &Endpoint, builders: Vec<SocketBuilder>) -> Vec<Value> {
    let mut streams = Vec::new();
    let mut sockets = Vec::new();
    for builder in builders {
        let socket = builder.connect();
        let (channel, _): (_, Value) = timeout(WAIT, socket.channel("echo:1").join(json!({}))).await.unwrap().unwrap();
        streams.push(channel.on("comments"));
        sockets.push(socket);
    }
    endpoint.broadcast("echo:1", "comments", comments()).unwrap();
    let mut got = Vec::new();
    for stream in &mut streams {
        got.push(timeout(WAIT, stream.recv()).await.unwrap().unwrap().decode().unwrap());
    }
    for socket in sockets {
        socket.disconnect();
    }
    got
}

#[tokio::test]
async fn broadcasts_arrive_compressed_and_are_read_as_any_other() {
    let (endpoint, port) = serve_with(None, compressing()).await;
    let url = format!("ws://127.0.0.1:{port}/socket");
    let builders =
        vec![Socket::builder(&url).compress(true), Socket::builder(&url).compress(true), Socket::builder(&url)];
    let got = broadcast_to(&endpoint, builders).await;
    assert_eq!(got, vec![comments(), comments(), comments()]);
    // Compressed once, for the two clients that offered it.
    assert_eq!(endpoint.metrics().messages_compressed, 1);
}

#[tokio::test]
async fn over_tls_too_and_an_untrusted_certificate_is_still_a_tls_error() {
    let ca = Ca::new("phx-channels test CA");
    let (cert, key) = ca.server(&["localhost"]);
    let (endpoint, port) =
        serve_with(Some(ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()), compressing()).await;
    let url = format!("wss://localhost:{port}/socket");
    let trust = Tls::roots_pem(ca.pem.as_bytes()).unwrap();
    let got = broadcast_to(&endpoint, vec![Socket::builder(&url).tls(trust).compress(true)]).await;
    assert_eq!(got, vec![comments()]);
    assert_eq!(endpoint.metrics().messages_compressed, 1);
    // Mozilla's roots do not know the tests' CA.
    let socket = Socket::builder(&url).compress(true).connect();
    let joined = timeout(WAIT, socket.channel("echo:1").join::<Value>(json!({}))).await.unwrap();
    match joined {
        Err(JoinError::Connect(SocketError::Tls(why))) => {
            assert!(why.contains("UnknownIssuer"), "{why}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    socket.disconnect();
}

/// A push that inflates past the client's limit (1 MB of zeros, about
/// 1 KB compressed, against 100 KB) breaks the connection: the client says
/// so and connects again.
#[tokio::test]
async fn a_message_that_inflates_past_the_limit_breaks_the_connection() {
    let (_endpoint, port) = serve_with(None, compressing()).await;
    let socket =
        Socket::builder(format!("ws://127.0.0.1:{port}/socket")).compress(true).max_message_size(100_000).connect();
    let mut events = socket.events();
    let (channel, _): (_, Value) = timeout(WAIT, socket.channel("echo:1").join(json!({}))).await.unwrap().unwrap();
    drop(channel.push("big", json!({"size": 1_000_000})));
    let why = timeout(WAIT, async {
        loop {
            if let Some(SocketEvent::Error(error)) = events.recv().await {
                return error.to_string();
            }
        }
    })
    .await
    .expect("an error within 10 s");
    assert!(why.contains("exceeds the limit of 100000"), "{why}");
    // Under the limit, the same connection's successor reads it.
    let mut big = channel.on("big");
    drop(channel.push("big", json!({"size": 50_000})));
    let got: Value = timeout(WAIT, big.recv()).await.unwrap().unwrap().decode().unwrap();
    assert_eq!(got["zeros"].as_str().map(str::len), Some(50_000));
    socket.disconnect();
}

/// A frame a client sent, as a proxy between it and the server saw it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    rsv1: bool,
    opcode: u8,
    /// Its bytes on the wire, header included.
    bytes: usize,
}

/// A TCP proxy on a free loopback port to the server's `port`: it passes
/// bytes both ways as they come, and reads the frames each client sends
/// after its upgrade request. Its port, and the frames seen.
async fn proxy(port: u16) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let via = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let frames = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
            let frames = frames.clone();
            tokio::spawn(async move {
                let (mut buf, mut read, mut upgraded) = (Vec::new(), [0; 8192], false);
                loop {
                    let n = from_client.read(&mut read).await.unwrap_or(0);
                    if n == 0 || to_server.write_all(&read[..n]).await.is_err() {
                        return;
                    }
                    buf.extend_from_slice(&read[..n]);
                    if !upgraded {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        buf.drain(..end + 4);
                        upgraded = true;
                    }
                    while let Ok(Some((header, at))) = Header::parse(&buf, Role::Server, true) {
                        let bytes = at + usize::try_from(header.len).unwrap();
                        if buf.len() < bytes {
                            break;
                        }
                        buf.drain(..bytes);
                        frames.lock().unwrap().push(Seen { rsv1: header.rsv1, opcode: header.opcode, bytes });
                    }
                }
            });
        }
    });
    (via, seen)
}

/// A push of 4 KiB of JSON from a client that compresses reaches the
/// server compressed (RSV1, in a fraction of its size, as a proxy between
/// them sees it), and its reply (the same payload, compressed by the
/// server) comes back whole; from a client that does not, nothing is
/// compressed either way. Prints the bytes on the wire for BENCHMARKS.md.
#[tokio::test]
async fn pushes_go_compressed_and_their_replies_come_back() {
    let (endpoint, port) = serve_with(None, compressing()).await;
    let payload = comments_of(91);
    let size = serde_json::to_string(&payload).unwrap().len();
    assert!(size >= 4096, "{size}");
    for compress in [true, false] {
        let (via, seen) = proxy(port).await;
        let socket = Socket::builder(format!("ws://127.0.0.1:{via}/socket")).compress(compress).connect();
        let (channel, _): (_, Value) = timeout(WAIT, socket.channel("echo:1").join(json!({}))).await.unwrap().unwrap();
        let reply = timeout(WAIT, channel.push("ping", payload.clone())).await.unwrap().unwrap();
        assert_eq!(reply.decode::<Value>().unwrap(), payload);
        socket.disconnect();
        let seen = seen.lock().unwrap().clone();
        let push = seen.iter().max_by_key(|frame| frame.bytes).copied().expect("frames from the client");
        assert_eq!(push.opcode, 0x1, "{seen:?}");
        if compress {
            assert!(push.rsv1 && push.bytes < size / 4, "{push:?} for {size} bytes of JSON");
            // The join, short, went as it was.
            assert!(seen.iter().any(|frame| !frame.rsv1), "{seen:?}");
        } else {
            assert!(seen.iter().all(|frame| !frame.rsv1), "{seen:?}");
            assert!(push.bytes > size, "{push:?}");
        }
        // The server compressed the reply once, for the client that asked.
        assert_eq!(endpoint.metrics().messages_compressed, 1);
        eprintln!("a push of {size} bytes of JSON, compress({compress}): {} bytes on the wire", push.bytes);
    }
}
