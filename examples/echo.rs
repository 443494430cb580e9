//! `echo`: Phoenix's `EchoSocket`, a raw transport that sends every text
//! and binary message back as it came. The Autobahn|Testsuite runs in
//! `./test.sh` (scripts/autobahn/) are made against it.
//!
//! ```text
//! cargo run --release --example echo -- --port 9001
//! ```
//!
//! Then `ws://127.0.0.1:9001/echo/websocket` echoes.
//!
//! ```js
//! const ws = new WebSocket("ws://127.0.0.1:9001/echo/websocket");
//! ws.onmessage = (event) => console.log(event.data); // "hello"
//! ws.onopen = () => ws.send("hello");
//! ```
//!
//! Options:
//!
//! - `--port N`: the port (default: one the system picks); the URL is
//!   printed on the line `listening on ws://…`.
//! - `--max-message BYTES`: the largest message taken (default 16 MiB, what
//!   Autobahn's sections 1–10 send at most); what may wait to be written
//!   to one client is twice that, so the echo of the largest fits.
//! - `--compress`: permessage-deflate for the clients that offer it
//!   (`SocketOptions::compress`); `--compress-level N` (0–9, default 6).
//! - `--tls`: serves WSS (`wss://127.0.0.1:…/echo/websocket`) with a
//!   self-signed certificate for `localhost` and `127.0.0.1` made at start
//!   (rcgen); `--tls-cert FILE --tls-key FILE` serve those PEM files instead.

use phx_channels::connect::{ConnectInfo, Params, Refuse};
use phx_channels::tls::Tls;
use phx_channels::transport::raw::{Handled, RawConn, RawMessage, RawSocket};
use phx_channels::{Endpoint, SocketOptions};

/// Sends every message back.
struct EchoSocket;

impl RawSocket for EchoSocket {
    type State = ();

    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<Self, Refuse> {
        Ok(EchoSocket)
    }

    fn handle_in(&mut self, message: RawMessage, _conn: &RawConn) -> Handled {
        Handled::Reply(message)
    }
}

/// The value after `--name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let port: u16 = arg("--port").map_or(Ok(0), |p| p.parse()).expect("--port takes a number");
    let max: usize = arg("--max-message").map_or(Ok(16 << 20), |m| m.parse()).expect("--max-message takes a number");
    let compress = std::env::args().any(|a| a == "--compress");
    let compress_level =
        arg("--compress-level").map_or(Ok(6), |l| l.parse()).expect("--compress-level takes a number (0-9)");
    // What waits to be written must hold the echo of the largest message
    // taken, and the one before it: a single frame over the outbound limit
    // closes the connection (1008) rather than being queued.
    let max_outbound_bytes = max.saturating_mul(2).max(SocketOptions::default().max_outbound_bytes);
    let options =
        SocketOptions { max_frame_size: max, max_outbound_bytes, compress, compress_level, ..SocketOptions::default() };
    let mut endpoint = Endpoint::new().raw_socket_with("/echo", EchoSocket, options);
    let tls = match (arg("--tls-cert"), arg("--tls-key")) {
        (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key).map_err(std::io::Error::other)?),
        _ if std::env::args().any(|a| a == "--tls") => Some(self_signed()?),
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    if let Some(tls) = tls {
        endpoint = endpoint.tls(tls);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {scheme}://{}/echo/websocket", listener.local_addr()?);
    endpoint.serve_on(listener).await
}

/// A certificate for `localhost` and `127.0.0.1` that signs itself.
fn self_signed() -> std::io::Result<Tls> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    Tls::from_pem(made.cert.pem().as_bytes(), made.signing_key.serialize_pem().as_bytes())
        .map_err(std::io::Error::other)
}
