//! The WebSocket transport, at `<mount>/websocket`.
//!
//! The handshake is checked in Phoenix's order (serializer negotiation,
//! then the app's `connect`) and refused with a plain HTTP status before any
//! upgrade. An accepted connection is one task that reads frames, hands
//! them to the [`Dispatcher`], and writes whatever its outbox holds in
//! batches.
//!
//! Frames are carried by tungstenite (an RFC 6455 implementation tested
//! against the Autobahn suite upstream) over hyper's upgraded connection,
//! configured for small idle connections: a small read buffer, and writes
//! gathered per batch in a buffer that is released afterwards.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message as WsMessage, Utf8Bytes};

use super::coalesce::Coalesce;
use super::Mount;
use crate::channel::Routes;
use crate::connect::{Connect, Params};
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::outbox::{CloseReason, Outbox};
use crate::protocol::{Frame, FrameKind, Serializer};

/// Read buffer per connection. Frames larger than this are read in several
/// steps; idle connections are what a server has most of.
const READ_BUFFER: usize = 512;

type Ws = WebSocketStream<Coalesce<TokioIo<hyper::upgrade::Upgraded>>>;

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// Answers `GET <mount>/websocket`.
pub(crate) async fn upgrade<S: Connect + Routes>(mount: Arc<Mount>, mut req: Request) -> Response {
    if req.method() != Method::GET {
        return plain(StatusCode::BAD_REQUEST, "WebSocket upgrades use GET");
    }
    let headers = req.headers();
    let is_upgrade =
        header_has(headers, header::CONNECTION, "upgrade") && header_has(headers, header::UPGRADE, "websocket");
    if !is_upgrade {
        return plain(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return plain(StatusCode::BAD_REQUEST, "unsupported Sec-WebSocket-Version (expected 13)");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    // phoenix.js ≥ 1.8 offers the `phoenix` sub-protocol when it carries an
    // auth token; a browser aborts unless the server selects it.
    let protocol = header_has(headers, header::SEC_WEBSOCKET_PROTOCOL, "phoenix").then_some("phoenix");

    if !super::origin_allowed(&mount, headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let params = Params::from_query(req.uri().query().unwrap_or(""));
    let (serializer, assigns) = match super::admit::<S>(&mount, &params, super::connect_info(&req)).await {
        Ok(admitted) => admitted,
        Err(status) => return status.into_response(),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return plain(StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded");
    };

    let options = mount.options.clone();
    let pubsub = mount.pubsub.clone();
    let metrics = mount.metrics.clone();
    let registry = mount.registry.clone();
    let state = mount.state::<S>();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => return tracing::debug!(%error, "upgrade failed"),
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(options.max_frame_size))
            .max_frame_size(Some(options.max_frame_size));
        let ws =
            WebSocketStream::from_raw_socket(Coalesce::new(TokioIo::new(upgraded)), Role::Server, Some(config)).await;
        let outbox = Arc::new(Outbox::new(options.max_outbound_bytes));
        let _registration = registry.register(&outbox);
        let dispatcher = Dispatcher::<S>::new(assigns, state, outbox, serializer, pubsub, &options, metrics.clone());
        Metrics::incr(&metrics.connections_open);
        // Boxed so the spawned task stays small while the connection lives.
        Box::pin(serve(ws, dispatcher, serializer, options.idle_timeout, &metrics)).await;
        Metrics::decr(&metrics.connections_open);
    });

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    response
}

/// Why the server ends a connection, with the close frame it sends.
#[derive(Debug)]
enum End {
    /// The client closed, or the connection broke: nothing to send.
    ClientGone,
    /// The server closes with this code and reason.
    Close(CloseCode, String),
}

fn to_ws(frame: Frame) -> WsMessage {
    match frame.kind() {
        FrameKind::Text => {
            // SAFETY: text frames are only made by the serializers from
            // serde_json output, which is always UTF-8 (see `Frame::text`).
            WsMessage::Text(unsafe { Utf8Bytes::from_bytes_unchecked(frame.bytes().clone()) })
        }
        FrameKind::Binary => WsMessage::Binary(frame.bytes().clone()),
    }
}

async fn serve<S: Connect + Routes>(
    mut ws: Ws,
    mut dispatcher: Dispatcher<S>,
    serializer: Serializer,
    idle: std::time::Duration,
    metrics: &Metrics,
) {
    let outbox = dispatcher.outbox().clone();
    let mut last_seen = Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);

    let end = loop {
        tokio::select! {
            incoming = ws.next() => {
                last_seen = Instant::now();
                match incoming {
                    Some(Ok(message)) => {
                        if let Some(end) = receive(message, serializer, &mut dispatcher, metrics) {
                            break end;
                        }
                    }
                    Some(Err(error)) => break read_error(error, metrics),
                    None => break End::ClientGone,
                }
            }
            batch = outbox.next_batch() => {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(reason) => break closed_by(reason, metrics),
                };
                if let Err(end) = write_batch(&mut ws, batch, &outbox, metrics).await {
                    break end;
                }
            }
            () = &mut idle_timer => {
                let deadline = last_seen + idle;
                if Instant::now() >= deadline {
                    tracing::info!(?idle, "closing an idle connection");
                    break End::Close(CloseCode::Away, "idle timeout".to_owned());
                }
                idle_timer.as_mut().reset(deadline.into());
            }
        }
    };
    // Channels get no more frames through a connection that is ending.
    if outbox.close_reason() == Some(CloseReason::Shutdown) {
        dispatcher.shutdown();
    }
    outbox.close(CloseReason::Gone);
    drop(dispatcher);
    match end {
        End::ClientGone => {
            // Completes the closing handshake if the client started it.
            let _ = ws.flush().await;
        }
        End::Close(code, reason) => {
            tracing::debug!(%code, reason, "closing connection");
            let frame = CloseFrame { code, reason: reason.into() };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), ws.close(Some(frame))).await;
        }
    }
}

/// Writes every frame of `batch` and flushes once. Gives up (and closes)
/// if the outbox closes meanwhile, so a client that stopped reading cannot
/// hold the task in a write forever.
async fn write_batch(ws: &mut Ws, batch: VecDeque<Frame>, outbox: &Outbox, metrics: &Metrics) -> Result<(), End> {
    Metrics::add(&metrics.frames_out, batch.len() as u64);
    Metrics::add(&metrics.bytes_out, batch.iter().map(|f| f.len() as u64).sum());
    let write = async {
        for frame in batch {
            ws.feed(to_ws(frame)).await?;
        }
        ws.flush().await
    };
    let closed = async {
        loop {
            outbox.ready().await;
            if let Some(reason) = outbox.close_reason() {
                return reason;
            }
        }
    };
    tokio::select! {
        written = write => written.map_err(|error| {
            tracing::debug!(%error, "write failed");
            End::ClientGone
        }),
        reason = closed => Err(closed_by(reason, metrics)),
    }
}

fn closed_by(reason: CloseReason, metrics: &Metrics) -> End {
    if reason == CloseReason::SlowConsumer {
        tracing::warn!("closing a connection that fell too far behind (SocketOptions::max_outbound_bytes)");
        Metrics::incr(&metrics.slow_consumers);
    }
    End::Close(CloseCode::from(reason.ws_code()), reason.as_str().to_owned())
}

/// Handles one WebSocket message; `Some` ends the connection.
fn receive<S: Connect + Routes>(
    message: WsMessage,
    serializer: Serializer,
    dispatcher: &mut Dispatcher<S>,
    metrics: &Metrics,
) -> Option<End> {
    let decoded = match &message {
        WsMessage::Text(text) => serializer.decode_text(text.as_bytes()),
        WsMessage::Binary(bytes) => serializer.decode_binary(bytes),
        WsMessage::Close(_) => return Some(End::ClientGone),
        // tungstenite answers pings itself.
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => return None,
    };
    match decoded {
        Ok(msg) => {
            dispatcher.dispatch(msg);
            None
        }
        Err(error) => {
            tracing::warn!(%error, frame = %preview(&message), "closing a connection that sent a malformed frame");
            Metrics::incr(&metrics.malformed_frames);
            let code = if matches!(message, WsMessage::Binary(_)) && serializer == Serializer::V1 {
                CloseCode::Unsupported
            } else {
                CloseCode::Invalid
            };
            Some(End::Close(code, truncate(error.to_string(), 120)))
        }
    }
}

fn read_error(error: tungstenite::Error, metrics: &Metrics) -> End {
    use tungstenite::error::{CapacityError, Error, ProtocolError};
    let reset = matches!(error, Error::Protocol(ProtocolError::ResetWithoutClosingHandshake));
    if !reset && matches!(error, Error::Capacity(_) | Error::Utf8(_) | Error::Protocol(_)) {
        Metrics::incr(&metrics.malformed_frames);
    }
    match error {
        Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            tracing::warn!(size, max_size, "closing a connection that sent an oversized message");
            End::Close(CloseCode::Size, format!("message of {size} bytes exceeds the limit of {max_size}"))
        }
        Error::Utf8(_) => {
            tracing::warn!("closing a connection that sent a text frame that is not UTF-8");
            End::Close(CloseCode::Invalid, "text frame is not valid UTF-8".to_owned())
        }
        // Clients that vanish without a close frame are common (a closed
        // laptop, a killed tab): nothing to warn about.
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            tracing::debug!("connection reset without a closing handshake");
            End::ClientGone
        }
        Error::Protocol(error) => {
            tracing::warn!(%error, "closing a connection that broke the WebSocket protocol");
            End::Close(CloseCode::Protocol, truncate(error.to_string(), 120))
        }
        error => {
            tracing::debug!(%error, "connection lost");
            End::ClientGone
        }
    }
}

/// A close reason must fit a control frame (123 bytes).
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The start of a frame, for a log line.
fn preview(message: &WsMessage) -> String {
    let bytes: &[u8] = match message {
        WsMessage::Text(t) => t.as_bytes(),
        WsMessage::Binary(b) => b,
        _ => &[],
    };
    let shown = &bytes[..bytes.len().min(80)];
    let mut s = String::from_utf8_lossy(shown).into_owned();
    if bytes.len() > shown.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let t = truncate(long, 120);
        assert!(t.len() <= 120 && t.is_char_boundary(t.len()));
    }

    #[test]
    fn previews_are_short() {
        let p = preview(&WsMessage::Text("x".repeat(500).into()));
        assert_eq!(p.chars().count(), 81);
        assert_eq!(preview(&WsMessage::Binary(tungstenite::Bytes::from_static(b"\x00\x01"))), "\u{0}\u{1}");
    }
}
