//! Nothing due is dropped when the server closes a connection: what was
//! queued for a client before a protocol error, a slow-consumer close or a
//! shutdown is written before the close frame, on the plain TCP path
//! (`Endpoint::serve`) and on the generic path (a router served by
//! `axum::serve`, as behind TLS) alike. Over real loopback sockets, read
//! by a hand-rolled client that sees every frame.

#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::TestSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Which way the endpoint is served.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// `Endpoint::serve`: the connection keeps its `TcpStream`.
    Plain,
    /// `axum::serve` of the endpoint's router: hyper's IO, the generic path.
    Generic,
}

/// Serves `endpoint` on a free port, the way `path` says; the shutdown
/// trigger ends a plain server (the generic one has none).
async fn serve(endpoint: Endpoint, path: Path) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    match path {
        Path::Plain => {
            let shutdown = async move {
                let _ = stopped.await;
            };
            tokio::spawn(endpoint.serve_with_shutdown(listener, shutdown));
        }
        Path::Generic => {
            let router = endpoint.router();
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
    }
    (addr, stop)
}

fn endpoint(options: SocketOptions) -> Endpoint {
    Endpoint::new().socket_with("/socket", TestSocket, options)
}

/// A client frame, masked with the all-zero key (valid, and leaves the
/// payload as it is).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// A client whose socket takes at most `rcvbuf` bytes before the server's
/// writes stop.
async fn small_window(addr: SocketAddr, rcvbuf: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    raw_ws::upgrade(socket.connect(addr).await.unwrap(), addr).await
}

/// The next server frame: its opcode and payload.
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let [first, second] = [stream.read_u8().await?, stream.read_u8().await?];
        let len = match second & 0x7F {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        stream.read_exact(&mut payload).await?;
        std::io::Result::Ok((first & 0x0F, payload))
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("a frame within 10 s").expect("a frame")
}

/// The code of a close frame's payload.
fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

/// Reads text frames until a close frame: how many, each checked to carry
/// the next `n` in order, and the close code.
async fn count_until_close(stream: &mut TcpStream, what: &str) -> (u64, u16) {
    let mut received = 0;
    loop {
        match read_frame(stream).await {
            (0x1, text) => {
                let got: serde_json::Value = serde_json::from_slice(&text).unwrap();
                assert_eq!(got[4]["n"], received, "{what}: in order");
                received += 1;
            }
            (0x8, close) => return (received, close_code(&close)),
            (opcode, _) => panic!("{what}: opcode {opcode}"),
        }
    }
}

/// A heartbeat and, in the same write, a frame that breaks the protocol:
/// the heartbeat's reply was queued before the error, and arrives before
/// the close frame (1002). Many times over: on the generic path the
/// connection's loop could see the bad frame before its outbox, and the
/// reply was then dropped about half the time.
#[tokio::test]
async fn a_reply_queued_before_a_protocol_error_goes_out_before_the_close() {
    for path in [Path::Plain, Path::Generic] {
        let (addr, _stop) = serve(endpoint(SocketOptions::default()), path).await;
        for round in 0..30 {
            let mut stream = raw_ws::upgraded(addr).await;
            let heartbeat = json!([null, round.to_string(), "phoenix", "heartbeat", {}]).to_string();
            let mut bytes = client_frame(0x81, heartbeat.as_bytes());
            // Opcode 3 is reserved.
            bytes.extend(client_frame(0x83, b""));
            stream.write_all(&bytes).await.unwrap();
            let (opcode, reply) = read_frame(&mut stream).await;
            assert_eq!(
                opcode,
                0x1,
                "{path:?}, round {round}: the reply first, got {:?}",
                String::from_utf8_lossy(&reply)
            );
            let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
            assert_eq!(reply[1], round.to_string(), "{path:?}: {reply}");
            let (opcode, close) = read_frame(&mut stream).await;
            assert_eq!((opcode, close_code(&close)), (0x8, 1002), "{path:?}, round {round}");
        }
    }
}

/// A client that stops reading is closed as a slow consumer (1008) once
/// its backlog passes `max_outbound_bytes`; what was queued before is
/// written before the close frame when it reads again, in order. The
/// backlog (8 MiB) is more than the kernel can hold for it (the socket's
/// send buffer tops out at 4 MiB here): it gets what was queued, not only
/// what was already in the kernel.
#[tokio::test]
async fn what_a_slow_consumer_was_owed_goes_out_before_its_close() {
    let limit = 8 * 1024 * 1024;
    let pad = "p".repeat(64 * 1024);
    for path in [Path::Plain, Path::Generic] {
        let e = endpoint(SocketOptions { max_outbound_bytes: limit, ..SocketOptions::default() });
        let (addr, _stop) = serve(e.clone(), path).await;
        let mut stream = small_window(addr, 4096).await;
        let join = json!(["1", "1", "echo:slow", "phx_join", {}]).to_string();
        stream.write_all(&client_frame(0x81, join.as_bytes())).await.unwrap();
        assert_eq!(read_frame(&mut stream).await.0, 0x1);
        let mut sent = 0;
        while e.metrics().slow_consumers == 0 {
            assert!(sent < 1000, "{path:?}: no slow-consumer close after {sent} broadcasts");
            e.broadcast("echo:slow", "flood", json!({"n": sent, "pad": pad})).unwrap();
            sent += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (received, code) = count_until_close(&mut stream, &format!("{path:?}")).await;
        assert_eq!(code, 1008, "{path:?}");
        let owed = (limit / (pad.len() + 100)) as u64;
        assert!(received >= owed, "{path:?}: {received} frames before the close, of {sent}; owed at least {owed}");
    }
}

/// Broadcasts queued for a client that had not read them yet when the
/// server shut down are written before its close frame (1012).
#[tokio::test]
async fn what_was_queued_before_a_shutdown_goes_out_before_1012() {
    let e = endpoint(SocketOptions::default());
    let (addr, stop) = serve(e.clone(), Path::Plain).await;
    let mut stream = small_window(addr, 4096).await;
    let join = json!(["1", "1", "echo:drain", "phx_join", {}]).to_string();
    stream.write_all(&client_frame(0x81, join.as_bytes())).await.unwrap();
    assert_eq!(read_frame(&mut stream).await.0, 0x1);
    // 6 MiB: more than the kernel holds, less than the outbound limit.
    let pad = "d".repeat(64 * 1024);
    let total = 96;
    for n in 0..total {
        e.broadcast("echo:drain", "queued", json!({"n": n, "pad": pad})).unwrap();
    }
    stop.send(()).unwrap();
    assert_eq!(count_until_close(&mut stream, "shutdown").await, (total, 1012));
}
