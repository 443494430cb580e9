//! The Rust client against this project's server in TLS (`wss://`), over
//! real loopback sockets, with a CA the tests make: the app's own roots
//! trusted, `https://` URLs taken as phoenix.js does, an untrusted
//! certificate refused with a clear error, and a certificate reloaded
//! while the server runs.

#[path = "../../channels-runtime/tests/support/pki.rs"]
mod pki;

use std::time::Duration;

use phx_channels_client::{Backoff, JoinError, Socket, SocketBuilder, SocketError, Tls};
use phx_channels_protocol::Payload;
use phx_channels_runtime::channel::{Channel as ServerChannel, JoinError as ServerJoinError, Route, Routes};
use phx_channels_runtime::connect::{Connect, ConnectInfo, Params, Refuse};
use phx_channels_runtime::crash::Crash;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::reply::Reply;
use phx_channels_runtime::router::Topic;
use phx_channels_runtime::socket::Socket as ServerSocket;
use phx_channels_runtime::tls::{Tls as ServerTls, TlsError as ServerTlsError};
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

/// Answers `ping` with its payload.
struct Echo;

impl ServerChannel for Echo {
    type Socket = AppSocket;

    async fn join(_: Topic, _: Payload, _: &mut ServerSocket<AppSocket>) -> Result<(Payload, Self), ServerJoinError> {
        Ok((json!({"secure": true}).into(), Echo))
    }

    async fn handle_in(&mut self, _: &str, payload: Payload, _: &mut ServerSocket<AppSocket>) -> Result<Reply, Crash> {
        Ok(Reply::ok(payload))
    }
}

/// Serves the app in TLS with `tls` on a free loopback port; the port.
async fn serve(tls: ServerTls) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = Endpoint::new().socket("/socket", AppSocket).tls(tls);
    tokio::spawn(endpoint.serve_with_shutdown(listener, std::future::pending()));
    port
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
