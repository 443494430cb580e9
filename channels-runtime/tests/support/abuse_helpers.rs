//! Helpers for the abuse, panic, slow-consumer and soak tests: process
//! figures (RSS, fds, tokio tasks), a raw WebSocket client that can send
//! frames no well-behaved client would, a log capture, and a wait for the
//! server to forget everything.
//!
//! Included with `#[path]` by the test files that need it (beside `mod support;`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::MetricsSnapshot;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// ------------------------------------------------------------ process figures

extern "C" {
    /// glibc: give freed heap memory back to the system, so RSS reflects
    /// what is still allocated rather than what the allocator kept cached.
    fn malloc_trim(pad: usize) -> i32;
}

/// Resident set size of this process, in bytes, after trimming the heap.
pub fn rss() -> u64 {
    // SAFETY: malloc_trim only releases free memory; always safe to call.
    unsafe { malloc_trim(0) };
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Open file descriptors of this process.
pub fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Tasks alive on the current tokio runtime (the server's and the clients').
pub fn tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One process-wide test at a time where figures are measured: RSS, fds and
/// tasks are per process, and the test harness runs tests in parallel.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits (up to 10 s) until the endpoint has no connection and no channel
/// open and nobody subscribes to `topics`; panics with the figures if not.
pub async fn settle(endpoint: &Endpoint, topics: &[&str]) -> MetricsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = endpoint.metrics();
        let subscribed: Vec<(&str, usize)> =
            topics.iter().map(|t| (*t, endpoint.pubsub().subscriber_count(t))).filter(|(_, n)| *n > 0).collect();
        if m.connections_open == 0 && m.channels_open == 0 && subscribed.is_empty() {
            return m;
        }
        if Instant::now() > deadline {
            panic!(
                "the server kept state: connections_open={} channels_open={} subscribers={subscribed:?}",
                m.connections_open, m.channels_open
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------ raw client

/// What the server sent next, unparsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Closed(Option<u16>),
    Timeout,
}

/// A WebSocket client that sends whatever bytes it is given and reads frames
/// as raw text (the support `Client` parses every frame as a JSON value,
/// which fails for numbers like `1e400` that the server may echo).
pub struct Raw {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// A client whose receive buffer is tiny, so the server's writes to it
/// block as soon as the kernel's buffers fill.
pub async fn non_reader(addr: SocketAddr) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.unwrap();
    Raw { ws }
}

impl Raw {
    pub async fn connect(addr: SocketAddr, query: &str) -> Raw {
        let url = format!("ws://{addr}/socket/websocket?{query}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Raw { ws }
    }

    pub async fn v2(addr: SocketAddr) -> Raw {
        Raw::connect(addr, "vsn=2.0.0").await
    }

    /// Sends a text message; false if the connection is gone.
    pub async fn text(&mut self, text: impl Into<String>) -> bool {
        self.ws.send(Message::text(text.into())).await.is_ok()
    }

    pub async fn binary(&mut self, bytes: Vec<u8>) -> bool {
        self.ws.send(Message::binary(bytes)).await.is_ok()
    }

    /// A text frame with arbitrary bytes (invalid UTF-8 included).
    pub async fn raw_text_frame(&mut self, bytes: Vec<u8>) -> bool {
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.ws.send(Message::Frame(frame)).await.is_ok()
    }

    /// Queues a text message without flushing (for pipelined floods).
    pub async fn feed(&mut self, text: String) {
        self.ws.feed(Message::text(text)).await.unwrap();
    }

    pub async fn flush(&mut self) {
        self.ws.flush().await.unwrap();
    }

    pub async fn next_within(&mut self, within: Duration) -> Got {
        loop {
            let next = match tokio::time::timeout(within, self.ws.next()).await {
                Ok(next) => next,
                Err(_) => return Got::Timeout,
            };
            return match next {
                Some(Ok(Message::Text(t))) => Got::Text(t.as_str().to_owned()),
                Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
                Some(Ok(Message::Close(frame))) => Got::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Got::Closed(None),
            };
        }
    }

    pub async fn next(&mut self) -> Got {
        self.next_within(Duration::from_secs(5)).await
    }

    /// The next text frame; panics on anything else.
    pub async fn next_text(&mut self) -> String {
        match self.next().await {
            Got::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame as JSON.
    pub async fn json(&mut self) -> serde_json::Value {
        let text = self.next_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The close code, skipping any frames before it.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Got::Closed(code) => return code,
                Got::Timeout => panic!("the connection was not closed within 5 s"),
                Got::Text(_) | Got::Binary(_) => continue,
            }
        }
    }

    /// Sends a heartbeat and asserts its ack (skipping other frames).
    pub async fn heartbeat(&mut self, msg_ref: &str) {
        assert!(self.text(format!(r#"[null,"{msg_ref}","phoenix","heartbeat",{{}}]"#)).await, "socket gone");
        let expected = format!(r#"[null,"{msg_ref}","phoenix","phx_reply",{{"status":"ok","response":{{}}}}]"#);
        loop {
            match self.next().await {
                Got::Text(t) if t == expected => return,
                Got::Text(_) | Got::Binary(_) => continue,
                other => panic!("no heartbeat ack for {msg_ref}: {other:?}"),
            }
        }
    }

    /// Joins `topic` with join_ref = ref = `jr`; the reply as JSON.
    pub async fn join(&mut self, jr: &str, topic: &str) -> serde_json::Value {
        self.text(format!(r#"["{jr}","{jr}","{topic}","phx_join",{{}}]"#)).await;
        self.json().await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // drain until the server's close answer
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while self.ws.next().await.is_some() {} }).await;
    }
}

// ------------------------------------------------------------ log capture

#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Lines containing every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text().lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(str::to_owned).collect()
    }

    /// Waits (up to 3 s) for a line containing every one of `needles`.
    pub async fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(line) = self.lines_with(needles).pop() {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line with {needles:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The process-wide log capture (installed on first use, WARN and above).
pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
}
