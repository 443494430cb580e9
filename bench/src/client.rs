//! The generators' side of a Phoenix V2 WebSocket (`loadgen`, `multinode`,
//! `cluster`): connecting from a spread of source addresses, writing and
//! reading frames, and a node's `GET /api/stats`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A generator's WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Any error, for the generators' plumbing.
pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// The parts of a server frame the generators look at:
/// `[join_ref, ref, topic, event, payload]`.
pub type Parsed<'a> = (Option<&'a str>, Option<&'a str>, &'a str, &'a str, &'a RawValue);

/// Opens `url` on `addr` from source address 127.0.0.(2 + idx mod 254), so
/// ephemeral ports never run out; read buffer 4 KiB, write buffer 0,
/// `TCP_NODELAY`.
pub async fn connect_url(addr: SocketAddr, url: &str, idx: usize) -> Result<Ws, AnyError> {
    let ip = Ipv4Addr::new(127, 0, 0, 2 + (idx % 254) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip.into(), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}

/// Opens a `discuss` node's `/socket` (V2) from source address number `idx`.
pub async fn connect_node(node: SocketAddr, idx: usize) -> Result<Ws, AnyError> {
    connect_url(node, &format!("ws://{node}/socket/websocket?vsn=2.0.0"), idx).await
}

/// A V2 text frame.
pub fn frame(join_ref: Option<&str>, msg_ref: &str, topic: &str, event: &str, payload: &str) -> Message {
    let jr = join_ref.map_or_else(|| "null".to_owned(), |j| format!("\"{j}\""));
    Message::Text(format!("[{jr},\"{msg_ref}\",\"{topic}\",\"{event}\",{payload}]").into())
}

/// `GET /api/stats` of a node: its `broker` object, or None (no token, an
/// old node without the route, a single node).
pub async fn broker_stats(node: SocketAddr, token: Option<&str>) -> Option<Value> {
    let token = token?;
    let get = async {
        let mut tcp = TcpStream::connect(node).await.ok()?;
        let req = format!(
            "GET /api/stats HTTP/1.1\r\nHost: {node}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        let v: Value = serde_json::from_str(body.trim()).ok()?;
        Some(v["broker"].clone()).filter(|b| b.is_object())
    };
    tokio::time::timeout(Duration::from_secs(5), get).await.ok().flatten()
}
