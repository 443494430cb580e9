//! The endpoint serving HTTPS and WSS itself (`Endpoint::tls`), over real
//! loopback sockets with a CA the tests make: a WebSocket and a LongPoll
//! session in TLS, a client that opens a connection and never starts its
//! TLS handshake cut off at the handshake timeout, and a shutdown that
//! closes TLS WebSockets with 1012.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::server::ServerOptions;
use phx_channels_runtime::tls::Tls;
use phx_channels_runtime::SocketOptions;
use pki::Ca;
use serde_json::{json, Value};
use support::TestSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// A TLS endpoint with LongPoll on, on a free loopback port; the CA that
/// signed its certificate.
async fn serve(server: ServerOptions) -> (SocketAddr, Ca) {
    let ca = Ca::new("phx-channels test CA");
    let (cert, key) = ca.server(&["localhost"]);
    let tls = Tls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let options =
        SocketOptions { longpoll: true, longpoll_window: Duration::from_millis(500), ..SocketOptions::default() };
    let endpoint = Endpoint::new().socket_with("/socket", TestSocket, options).server_options(server).tls(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoint.serve_with_shutdown(listener, std::future::pending()));
    (addr, ca)
}

/// A TLS connection to `addr` trusting only `ca`, for `localhost`.
async fn tls_connect(addr: SocketAddr, ca: &Ca) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a TLS handshake with the app's CA trusted");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]), "HTTP/1.1 chosen over h2");
    stream
}

/// An HTTPS LongPoll request; the JSON body it is answered with.
async fn longpoll(addr: SocketAddr, ca: &Ca, method: &str, query: &str, body: &str) -> Value {
    let mut stream = tls_connect(addr, ca).await;
    let request = format!(
        "{method} /socket/longpoll?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    // A peer that closes without close_notify is an error to rustls, after
    // the bytes were read: the bytes are what matter here.
    let _ = stream.read_to_string(&mut response).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn a_websocket_over_tls_joins_and_is_answered() {
    let (addr, ca) = serve(ServerOptions::default()).await;
    let stream = tls_connect(addr, &ca).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async("wss://localhost/socket/websocket?vsn=2.0.0", stream).await.unwrap();
    ws.send(Message::text(r#"["1","1","echo:tls","phx_join",{}]"#)).await.unwrap();
    ws.send(Message::text(r#"["1","2","echo:tls","ping",{"over":"tls"}]"#)).await.unwrap();
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        replies.push(serde_json::from_str::<Value>(message.to_text().unwrap()).unwrap());
    }
    assert_eq!(replies[1], json!(["1", "2", "echo:tls", "phx_reply", {"status": "ok", "response": {"over": "tls"}}]));
    // A close is answered with one, in TLS too.
    ws.close(None).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap();
    assert!(matches!(closed, Some(Ok(Message::Close(_))) | None), "{closed:?}");
}

#[tokio::test]
async fn a_longpoll_session_over_https_joins_and_polls_its_reply() {
    let (addr, ca) = serve(ServerOptions::default()).await;
    let opened = longpoll(addr, &ca, "GET", "vsn=2.0.0", "").await;
    assert_eq!(opened["status"], 410, "{opened}");
    let token = opened["token"].as_str().unwrap().to_owned();
    let query = format!("vsn=2.0.0&token={token}");
    let posted = longpoll(addr, &ca, "POST", &query, r#"["1","1","echo:lp","phx_join",{}]"#).await;
    assert_eq!(posted, json!({"status": 200}));
    let polled = longpoll(addr, &ca, "GET", &query, "").await;
    assert_eq!(polled["status"], 200, "{polled}");
    let reply: Value = serde_json::from_str(polled["messages"][0].as_str().unwrap()).unwrap();
    assert_eq!(reply, json!(["1", "1", "echo:lp", "phx_reply", {"status": "ok", "response": {}}]));
}

#[tokio::test]
async fn a_client_that_never_starts_its_tls_handshake_is_cut_off_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let (addr, ca) = serve(ServerOptions { handshake_timeout: timeout, ..ServerOptions::default() }).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after 5 s");
    assert!(started.elapsed() >= timeout - Duration::from_millis(50), "cut off after {:?}", started.elapsed());
    // Plain HTTP to the TLS port gets no HTTP answer either.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await.unwrap();
    assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));
    // And the server still serves TLS clients.
    drop(tls_connect(addr, &ca).await);
}

#[tokio::test]
async fn a_shutdown_closes_tls_websockets_with_1012() {
    let ca = Ca::new("phx-channels test CA");
    let (cert, key) = ca.server(&["localhost"]);
    let tls = Tls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let server = ServerOptions { drain_period: Duration::from_millis(100), ..ServerOptions::default() };
    let endpoint =
        Endpoint::new().socket_with("/socket", TestSocket, SocketOptions::default()).server_options(server).tls(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(endpoint.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    let stream = tls_connect(addr, &ca).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async("wss://localhost/socket/websocket?vsn=2.0.0", stream).await.unwrap();
    ws.send(Message::text(r#"["1","1","echo:bye","phx_join",{}]"#)).await.unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert!(joined.to_text().unwrap().contains("phx_reply"), "{joined:?}");
    stop.send(()).unwrap();
    let mut close = None;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
        if let Message::Close(frame) = message.unwrap() {
            close = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(close, Some(1012), "a TLS WebSocket gets the shutdown's close frame");
    tokio::time::timeout(Duration::from_secs(10), served).await.expect("the server returns").unwrap().unwrap();
}
