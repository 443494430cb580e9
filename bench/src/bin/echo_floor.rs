//! `echo_floor`: the baseline the `echo` example (a raw transport,
//! examples/echo.rs) is measured against in Autobahn's section 9
//! (bench/autobahn9.sh): a bare tokio + tokio-tungstenite server that sends
//! every text and binary message back, no framework.
//!
//! Its limits are the example's: messages and frames up to 16 MiB (what
//! section 9 sends at most), `TCP_NODELAY`, one task per connection, and
//! tungstenite's default buffers (a careful user's settings for large
//! messages; the framework reads 4 KiB at a time into a per-thread buffer).
//!
//! ```text
//! echo_floor [--port N]     # prints `listening on ws://127.0.0.1:N/`
//! ```

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The largest message and frame taken, as the example's default.
const MAX: usize = 16 << 20;

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().max_message_size(Some(MAX)).max_frame_size(Some(MAX));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                if ws.send(message).await.is_err() {
                    return;
                }
            }
            // tungstenite answers pings and close frames by itself.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            other => panic!("unknown argument {other}; usage: echo_floor [--port N]"),
        }
    }
    let listener = bench::listen(SocketAddr::from(([127, 0, 0, 1], port)), 1024)?;
    println!("listening on ws://{}/", listener.local_addr()?);
    bench::accept_forever(listener, serve).await
}
