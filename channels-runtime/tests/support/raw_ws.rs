//! For the RSS tests: a hand-rolled WebSocket client that reads into one
//! small buffer (so the figures are the server's memory, not the client's),
//! and glibc tuning that makes RSS count what stays allocated.
//!
//! Included with `#[path]` by the test files that need it.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What ships: `server::return_memory_to_os` (glibc serves blocks from
/// 128 KiB on with their own mapping, given back when freed). Left alone,
/// glibc raises that threshold to the largest block freed (a 5 MB frame),
/// and later 5 MB blocks come from an arena's heap, whose free top
/// `malloc_trim` does not release for non-main arenas: RSS would then count
/// memory that glibc keeps free, not memory in use. The fixed threshold
/// makes RSS count what stays allocated, as in a server that calls it.
pub fn fix_mmap_threshold() {
    assert!(phx_channels_runtime::server::return_memory_to_os());
}

/// A text frame from a client, masked with the all-zero key (valid, and
/// leaves the payload as it is).
pub fn client_text(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// Upgrades (the response is read, nothing else).
pub async fn upgraded(addr: SocketAddr) -> TcpStream {
    upgraded_on(tokio::net::TcpSocket::new_v4().unwrap(), addr).await
}

/// Upgrades over `socket` (e.g. one with a small receive buffer).
pub async fn upgraded_on(socket: tokio::net::TcpSocket, addr: SocketAddr) -> TcpStream {
    upgrade(socket.connect(addr).await.unwrap(), addr).await
}

/// Upgrades a stream connected to `addr` (the response is read, nothing
/// else).
pub async fn upgrade(mut s: TcpStream, addr: SocketAddr) -> TcpStream {
    let request = format!(
        "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// A client upgraded, whose first heartbeat was answered.
pub async fn heartbeat_client(addr: SocketAddr) -> TcpStream {
    let mut c = upgraded(addr).await;
    c.write_all(&client_text(br#"[null,"0","phoenix","heartbeat",{}]"#)).await.unwrap();
    assert!(short_frame(&mut c).await.contains(r#""status":"ok""#));
    c
}

/// A client over a socket whose receive buffer is `bytes`, joined to
/// `topic` (the reply is left unread).
pub async fn joined_with_buffer(addr: SocketAddr, bytes: u32, topic: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(bytes).unwrap();
    let mut c = upgraded_on(socket, addr).await;
    c.write_all(&client_text(format!(r#"["1","1","{topic}","phx_join",{{}}]"#).as_bytes())).await.unwrap();
    c
}

/// Reads one short server frame.
pub async fn short_frame(s: &mut TcpStream) -> String {
    let [_, len] = [s.read_u8().await.unwrap(), s.read_u8().await.unwrap()];
    let mut reply = vec![0; usize::from(len & 0x7f)];
    s.read_exact(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}
