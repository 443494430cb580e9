//! permessage-deflate (RFC 7692, `SocketOptions::compress`) over real
//! loopback sockets, with a client written here that frames, deflates and
//! inflates with `flate2` itself (not through the code under test): the
//! negotiation, messages both ways (whole, fragmented, with a ping in
//! between), small messages left uncompressed, the protocol errors RSV1
//! can make, a decompression bomb refused with 1009, and a broadcast
//! compressed once for all its subscribers.

#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use phx_channels_runtime::connect::{ConnectInfo, Params, Refuse};
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::transport::raw::{Handled, RawConn, RawMessage, RawSocket};
use phx_channels_runtime::SocketOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const RSV1: u8 = 0x40;

/// Sends every message back.
struct Echo;

impl RawSocket for Echo {
    type State = ();

    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<Self, Refuse> {
        Ok(Echo)
    }

    fn handle_in(&mut self, message: RawMessage, _conn: &RawConn) -> Handled {
        Handled::Reply(message)
    }
}

async fn echo(options: SocketOptions) -> (SocketAddr, Endpoint) {
    let endpoint = Endpoint::new().raw_socket_with("/echo", Echo, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoint.clone().serve_on(listener));
    (addr, endpoint)
}

fn compressing() -> SocketOptions {
    SocketOptions { compress: true, ..SocketOptions::default() }
}

/// A message as permessage-deflate sends it: raw deflate, sync-flushed,
/// the trailing `00 00 ff ff` cut.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    loop {
        let at = compress.total_in() as usize;
        compress.compress_vec(&data[at..], &mut out, FlushCompress::Sync).unwrap();
        if compress.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    inflater.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    assert_eq!(inflater.total_in() as usize, input.len(), "inflated whole");
    out
}

/// A WebSocket client that sees the exact frames.
struct Client {
    s: TcpStream,
    /// The server's `Sec-WebSocket-Extensions`, if it sent one.
    extensions: Option<String>,
}

impl Client {
    async fn connect(addr: SocketAddr, path: &str, offer: Option<&str>) -> Client {
        let offer = offer.map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n")).unwrap_or_default();
        let (s, head) = raw_ws::upgrade_at(addr, path, &offer).await;
        let extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim().to_owned())
        });
        Client { s, extensions }
    }

    async fn send(&mut self, first: u8, payload: &[u8]) {
        self.s.write_all(&raw_ws::client_frame(first, payload)).await.unwrap();
    }

    /// The next frame: its first byte and its payload.
    async fn read(&mut self) -> (u8, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(10), async {
            let first = self.s.read_u8().await.unwrap();
            let len = match self.s.read_u8().await.unwrap() {
                126 => u64::from(self.s.read_u16().await.unwrap()),
                127 => self.s.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0; len as usize];
            self.s.read_exact(&mut payload).await.unwrap();
            (first, payload)
        })
        .await
        .expect("a frame within 10 s")
    }

    /// The code of the close frame that comes next.
    async fn close_code(&mut self) -> u16 {
        let (first, payload) = self.read().await;
        assert_eq!(first, 0x80 | CLOSE, "a close frame, got {payload:?}");
        u16::from_be_bytes([payload[0], payload[1]])
    }
}

/// JSON that compresses as channel messages do, of about `n` bytes.
fn json(n: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(format!(r#"{{"id":{i},"user":"user-{}","body":"a comment"}},"#, i % 7).as_bytes());
        i += 1;
    }
    *out.last_mut().unwrap() = b']';
    out
}

#[tokio::test]
async fn offered_and_on_it_is_agreed_with_no_context_kept_either_way() {
    let (addr, _) = echo(compressing()).await;
    // What Chrome and Firefox offer.
    let c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate; client_max_window_bits")).await;
    assert_eq!(
        c.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let c = Client::connect(addr, "/echo/websocket", None).await;
    assert_eq!(c.extensions, None);
    let c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate; unknown_parameter")).await;
    assert_eq!(c.extensions, None, "an offer it cannot take is declined, the connection is not refused");
    // Off by default, as in Phoenix.
    let (plain, _) = echo(SocketOptions::default()).await;
    let c = Client::connect(plain, "/echo/websocket", Some("permessage-deflate; client_max_window_bits")).await;
    assert_eq!(c.extensions, None);
}

#[tokio::test]
async fn messages_travel_compressed_both_ways() {
    let (addr, endpoint) = echo(compressing()).await;
    let mut c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate")).await;
    let text = json(4096);

    // Whole: the echo comes back compressed, much smaller.
    c.send(0x80 | RSV1 | TEXT, &deflate(&text)).await;
    let (first, payload) = c.read().await;
    assert_eq!(first, 0x80 | RSV1 | TEXT);
    assert!(payload.len() < text.len() / 4, "{} bytes for {}", payload.len(), text.len());
    assert_eq!(inflate(&payload), text);

    // Fragmented, with a ping between the fragments.
    let z = deflate(&text);
    let (a, b) = z.split_at(z.len() / 3);
    c.send(RSV1 | BINARY, a).await;
    c.send(0x80 | PING, b"between").await;
    c.send(CONTINUATION, b).await;
    c.send(0x80 | CONTINUATION, &[]).await;
    assert_eq!(c.read().await, (0x80 | PONG, b"between".to_vec()), "control frames are never compressed");
    let (first, payload) = c.read().await;
    assert_eq!(first, 0x80 | RSV1 | BINARY);
    assert_eq!(inflate(&payload), text);

    // Small: sent compressed, echoed as it is (under 256 bytes).
    c.send(0x80 | RSV1 | TEXT, &deflate(b"hello")).await;
    assert_eq!(c.read().await, (0x80 | TEXT, b"hello".to_vec()));
    // Uncompressed from the client is fine too.
    c.send(0x80 | TEXT, &text).await;
    let (first, payload) = c.read().await;
    assert_eq!((first, inflate(&payload)), (0x80 | RSV1 | TEXT, text.clone()));
    assert_eq!(endpoint.metrics().messages_compressed, 3);
}

#[tokio::test]
async fn rsv1_where_it_cannot_be_is_a_protocol_error() {
    let (addr, _) = echo(compressing()).await;
    let z = deflate(&json(1000));
    // Not agreed.
    let mut c = Client::connect(addr, "/echo/websocket", None).await;
    c.send(0x80 | RSV1 | TEXT, &z).await;
    assert_eq!(c.close_code().await, 1002);
    // On a continuation frame.
    let mut c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate")).await;
    c.send(RSV1 | TEXT, &z).await;
    c.send(0x80 | RSV1 | CONTINUATION, &[]).await;
    assert_eq!(c.close_code().await, 1002);
    // On a control frame.
    let mut c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate")).await;
    c.send(0x80 | RSV1 | PING, b"").await;
    assert_eq!(c.close_code().await, 1002);
    // Not deflate data.
    let mut c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate")).await;
    c.send(0x80 | RSV1 | BINARY, &[0xFF; 16]).await;
    assert_eq!(c.close_code().await, 1007);
}

/// 10 MB of zeros compress to about 10 KB: far under the 1 MB message
/// limit as sent, refused with 1009 once inflated past it; the next
/// connection is served as usual.
#[tokio::test]
async fn a_decompression_bomb_is_closed_with_1009() {
    let (addr, endpoint) = echo(SocketOptions { max_frame_size: 1_000_000, ..compressing() }).await;
    let bomb = deflate(&vec![0; 10_000_000]);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    let mut c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate")).await;
    c.send(0x80 | RSV1 | BINARY, &bomb).await;
    assert_eq!(c.close_code().await, 1009);
    assert_eq!(endpoint.metrics().inputs_refused, 1);
    let mut c = Client::connect(addr, "/echo/websocket", Some("permessage-deflate")).await;
    c.send(0x80 | RSV1 | TEXT, &deflate(&json(1000))).await;
    assert_eq!(inflate(&c.read().await.1), json(1000));
}

/// A broadcast to many subscribers that agreed to compression is
/// compressed once (`messages_compressed`), and every one of them gets the
/// same bytes; a subscriber that did not agree gets the plain frame.
#[tokio::test]
async fn a_broadcast_is_compressed_once_for_all_its_subscribers() {
    const SUBSCRIBERS: usize = 50;
    let s = support::serve(compressing()).await;
    let path = "/socket/websocket?vsn=2.0.0";
    let join = br#"["1","1","echo:deflate","phx_join",{}]"#;
    let mut clients = Vec::new();
    for i in 0..=SUBSCRIBERS {
        // The last one does not offer the extension.
        let offer = (i < SUBSCRIBERS).then_some("permessage-deflate; client_max_window_bits");
        let mut c = Client::connect(s.addr, path, offer).await;
        c.send(0x80 | TEXT, join).await;
        let (first, reply) = c.read().await;
        assert_eq!(first, 0x80 | TEXT, "a short reply goes uncompressed");
        assert!(String::from_utf8_lossy(&reply).contains(r#""status":"ok""#));
        clients.push(c);
    }
    let before = s.endpoint.metrics().messages_compressed;
    let payload: serde_json::Value = serde_json::from_slice(&json(4096)).unwrap();
    s.endpoint.broadcast("echo:deflate", "comments", &payload).unwrap();
    let mut compressed = None;
    for c in &mut clients[..SUBSCRIBERS] {
        let (first, bytes) = c.read().await;
        assert_eq!(first, 0x80 | RSV1 | TEXT);
        match &compressed {
            None => compressed = Some(bytes),
            Some(first) => assert_eq!(first, &bytes, "the same compressed bytes for every subscriber"),
        }
    }
    let compressed = compressed.unwrap();
    let (first, plain) = clients[SUBSCRIBERS].read().await;
    assert_eq!(first, 0x80 | TEXT);
    assert_eq!(inflate(&compressed), plain);
    assert!(compressed.len() * 4 < plain.len(), "{} bytes for {}", compressed.len(), plain.len());
    assert_eq!(s.endpoint.metrics().messages_compressed - before, 1, "compressed once for {SUBSCRIBERS} subscribers");
}

/// On a topic with history, a broadcast reaches the subscribers that ask
/// for positions straight from the stream (`kept:`) or, when their channel
/// intercepts events, through its mailbox in its place among them
/// (`keptout:`): compressed once on both paths.
#[tokio::test]
async fn a_broadcast_with_a_position_is_compressed_once_for_all_its_subscribers() {
    for topic in ["kept:deflate", "keptout:deflate"] {
        compressed_once_with_positions(topic).await;
    }
}

async fn compressed_once_with_positions(topic: &str) {
    const SUBSCRIBERS: usize = 10;
    let s = support::serve(compressing()).await;
    let path = "/socket/websocket?vsn=2.0.0";
    let join = format!(r#"["1","1","{topic}","phx_join",{{"phx_position":null}}]"#);
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut c = Client::connect(s.addr, path, Some("permessage-deflate; client_max_window_bits")).await;
        c.send(0x80 | TEXT, join.as_bytes()).await;
        let (_, reply) = c.read().await;
        assert!(String::from_utf8_lossy(&reply).contains(r#""status":"ok""#));
        let (_, recovery) = c.read().await;
        assert!(String::from_utf8_lossy(&recovery).contains("phx_recovery"), "{}", String::from_utf8_lossy(&recovery));
        clients.push(c);
    }
    let before = s.endpoint.metrics().messages_compressed;
    let payload: serde_json::Value = serde_json::from_slice(&json(4096)).unwrap();
    s.endpoint.broadcast(topic, "comments", &payload).unwrap();
    for c in &mut clients {
        let (first, bytes) = c.read().await;
        assert_eq!(first, 0x80 | RSV1 | TEXT);
        let frame: serde_json::Value = serde_json::from_slice(&inflate(&bytes)).unwrap();
        assert!(frame[1].as_str().is_some_and(|p| p.contains(':')), "a position in ref: {frame}");
    }
    let compressions = s.endpoint.metrics().messages_compressed - before;
    assert_eq!(compressions, 1, "{topic}: compressed once for {SUBSCRIBERS} subscribers");
}
