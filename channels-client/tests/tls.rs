//! The Rust client against this project's server in TLS (`wss://`), over
//! real loopback sockets, with a CA the tests make: the app's own roots
//! trusted, `https://` URLs taken as phoenix.js does, an untrusted
//! certificate refused with a clear error, and a certificate reloaded
//! while the server runs. And compression (`SocketBuilder::compress`,
//! against `SocketOptions::compress`), plain and TLS: the server's
//! broadcasts arrive compressed and are read as any other, a client that
//! does not offer it gets them plain from the same broadcast, and a message
//! that inflates past the client's `max_message_size` breaks the
//! connection instead of growing.

#[path = "../../channels-runtime/tests/support/pki.rs"]
mod pki;

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
use pki::Ca;
use serde_json::{json, Value};
use tokio::net::TcpListener;
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

/// A broadcast of about 4 KiB of JSON.
fn comments() -> Value {
    let list: Vec<Value> =
        (0..60).map(|i| json!({"id": i, "user": format!("user-{}", i % 7), "body": "a comment"})).collect();
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
