//! The WebSocket transport, at `<mount>/websocket`.
//!
//! The handshake is checked in Phoenix's order (serializer negotiation,
//! then the app's `connect`) and refused with a plain HTTP status before any
//! upgrade. An accepted connection is one task that reads frames, hands
//! them to the [`Dispatcher`], and writes whatever its outbox holds in
//! batches.
//!
//! Frames are read and written by [`super::wire`] over hyper's upgraded
//! connection, with buffers that follow the frames in flight: after a large
//! frame, a connection is back to its idle size. Every close frame a client
//! sends is answered with one (RFC 6455 §5.5.1), and a connection the
//! server closes gets its close frame when the socket can take it, within
//! a grace period.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;

use super::wire::{Incoming, ReadError, Reader, Writer};
use super::Mount;
use crate::channel::Routes;
use crate::connect::{Connect, Params};
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::options::SocketOptions;
use crate::outbox::{CloseReason, Outbox};
use crate::protocol::{Frame, FrameKind, Serializer};

/// How long a closing connection has to take its close frame and answer
/// it, before the TCP connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
        let outbox = Arc::new(Outbox::new(options.max_outbound_bytes));
        let registration = registry.register(&outbox);
        let dispatcher = Dispatcher::<S>::new(assigns, state, outbox, serializer, pubsub, &options, metrics.clone());
        Metrics::incr(&metrics.connections_open);
        // Boxed so the spawned task stays small while the connection lives.
        let linger = Box::pin(serve(TokioIo::new(upgraded), dispatcher, serializer, &options, &metrics)).await;
        Metrics::decr(&metrics.connections_open);
        drop(registration);
        if let Some(linger) = linger {
            linger.run().await;
        }
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
    /// The connection broke: nothing more can be sent.
    ClientGone,
    /// The client sent a close frame: answer it with its code (RFC 6455
    /// §5.5.1), then close the TCP connection.
    Answer(Option<u16>),
    /// The server closes with this code and reason, and waits (a bounded
    /// grace) for the client's answer.
    Close(CloseCode, String),
}

type Io = TokioIo<hyper::upgrade::Upgraded>;

/// Serves a connection until it ends; what is left once its close frame
/// is out is returned, to finish without holding a place in the registry.
async fn serve<S: Connect + Routes>(
    io: Io,
    mut dispatcher: Dispatcher<S>,
    serializer: Serializer,
    options: &SocketOptions,
    metrics: &Metrics,
) -> Option<Linger> {
    let idle = options.idle_timeout;
    let (read, write) = tokio::io::split(io);
    let mut reader = Reader::new(read, options.max_frame_size);
    // A write that makes no progress for the idle period ends the
    // connection like a client that says nothing for that long.
    let mut writer = Writer::new(write, idle);
    let outbox = dispatcher.outbox().clone();
    let mut last_seen = Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);

    let end = loop {
        tokio::select! {
            incoming = reader.next() => {
                last_seen = Instant::now();
                match incoming {
                    Ok(Incoming::Ping(payload)) => {
                        if let Err(error) = async { writer.pong(&payload).await?; writer.flush().await }.await {
                            break write_failed(&error);
                        }
                    }
                    Ok(Incoming::Pong) => {}
                    Ok(Incoming::Close(code)) => break End::Answer(code),
                    Ok(message) => {
                        if let Some(end) = receive(message, serializer, &mut dispatcher, metrics) {
                            break end;
                        }
                    }
                    Err(error) => break read_error(error, metrics),
                }
            }
            batch = outbox.next_batch() => {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(reason) => break closed_by(reason, metrics),
                };
                if let Err(end) = write_batch(&mut writer, batch, &outbox, metrics).await {
                    break end;
                }
            }
            () = dispatcher.drive() => {}
            () = &mut idle_timer => {
                let deadline = last_seen + idle;
                if Instant::now() >= deadline {
                    tracing::info!(?idle, "closing an idle connection");
                    break End::Close(CloseCode::Away, "idle timeout".to_owned());
                }
                idle_timer.as_mut().reset(deadline);
            }
        }
    };
    // Channels get no more frames through a connection that is ending.
    let shutdown = outbox.close_reason() == Some(CloseReason::Shutdown);
    outbox.close(CloseReason::Gone);
    dispatcher.finish(shutdown);
    let deadline = Instant::now() + CLOSE_GRACE;
    writer.set_stall(CLOSE_GRACE);
    let (code, reason, answered) = match end {
        End::ClientGone => return None,
        End::Answer(code) => {
            tracing::debug!(?code, "answering the client's close frame");
            (code, String::new(), true)
        }
        End::Close(code, reason) => {
            tracing::debug!(%code, reason, "closing connection");
            (Some(code.into()), reason, false)
        }
    };
    match tokio::time::timeout_at(deadline, writer.close(code, &reason)).await {
        Ok(Ok(())) => Some(Linger { reader, answered, deadline }),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// What is left of a connection once its close frame is out: what the
/// client still sends is read (and dropped) until it closes too, within the
/// grace period. Closing a socket with unread bytes would reset the
/// connection, and the client could lose the close frame.
struct Linger {
    reader: Reader<tokio::io::ReadHalf<Io>>,
    /// The client started the handshake: it only has to close the TCP
    /// connection. Otherwise its close frame is awaited.
    answered: bool,
    deadline: Instant,
}

impl Linger {
    async fn run(self) {
        let Linger { mut reader, answered, deadline } = self;
        let _ = tokio::time::timeout_at(deadline, async {
            if answered {
                let _ = tokio::io::copy(&mut reader.into_inner(), &mut tokio::io::sink()).await;
            } else {
                reader.until_closed().await;
            }
        })
        .await;
    }
}

fn write_failed(error: &std::io::Error) -> End {
    if error.kind() == std::io::ErrorKind::TimedOut {
        tracing::info!("closing a connection that read nothing for the idle period");
    } else {
        tracing::debug!(%error, "write failed");
    }
    End::ClientGone
}

/// Writes every frame of `batch` and flushes once. Once the outbox closes
/// (the client fell behind, a shutdown), the frame on the wire is finished
/// so that the close frame can follow it, within [`CLOSE_GRACE`].
async fn write_batch<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut Writer<W>,
    batch: VecDeque<Frame>,
    outbox: &Outbox,
    metrics: &Metrics,
) -> Result<(), End> {
    Metrics::add(&metrics.frames_out, batch.len() as u64);
    Metrics::add(&metrics.bytes_out, batch.iter().map(|f| f.len() as u64).sum());
    let write = async {
        for frame in batch {
            writer.message(frame.kind() == FrameKind::Binary, frame.bytes()).await?;
            if outbox.is_closed() {
                break;
            }
        }
        writer.flush().await
    };
    tokio::pin!(write);
    let closed = async {
        loop {
            outbox.ready().await;
            if let Some(reason) = outbox.close_reason() {
                return reason;
            }
        }
    };
    tokio::select! {
        written = &mut write => written.map_err(|error| write_failed(&error)),
        reason = closed => {
            let end = closed_by(reason, metrics);
            match tokio::time::timeout(CLOSE_GRACE, write).await {
                Ok(Ok(())) => Err(end),
                Ok(Err(error)) => Err(write_failed(&error)),
                Err(_elapsed) => Err(End::ClientGone),
            }
        }
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
    message: Incoming,
    serializer: Serializer,
    dispatcher: &mut Dispatcher<S>,
    metrics: &Metrics,
) -> Option<End> {
    let (decoded, bytes, binary) = match &message {
        Incoming::Text(text) => (serializer.decode_text(text), text, false),
        Incoming::Binary(bytes) => (serializer.decode_binary(bytes), bytes, true),
        Incoming::Ping(_) | Incoming::Pong | Incoming::Close(_) => return None,
    };
    match decoded {
        Ok(msg) => {
            dispatcher.dispatch(msg);
            None
        }
        Err(error) => {
            tracing::warn!(%error, frame = %preview(bytes), "closing a connection that sent a malformed frame");
            Metrics::incr(&metrics.malformed_frames);
            let code = if binary && serializer == Serializer::V1 { CloseCode::Unsupported } else { CloseCode::Invalid };
            Some(End::Close(code, truncate(error.to_string(), 120)))
        }
    }
}

fn read_error(error: ReadError, metrics: &Metrics) -> End {
    match error {
        // Clients that vanish without a close frame are common (a closed
        // laptop, a killed tab): nothing to warn about.
        ReadError::Io(error) => {
            tracing::debug!(%error, "connection lost");
            End::ClientGone
        }
        ReadError::TooBig { size, max } => {
            Metrics::incr(&metrics.malformed_frames);
            tracing::warn!(size, max, "closing a connection that sent an oversized message");
            End::Close(CloseCode::Size, format!("message of {size} bytes exceeds the limit of {max}"))
        }
        ReadError::Utf8 => {
            Metrics::incr(&metrics.malformed_frames);
            tracing::warn!("closing a connection that sent a text frame that is not UTF-8");
            End::Close(CloseCode::Invalid, "text frame is not valid UTF-8".to_owned())
        }
        ReadError::Protocol(error) => {
            Metrics::incr(&metrics.malformed_frames);
            tracing::warn!(error, "closing a connection that broke the WebSocket protocol");
            End::Close(CloseCode::Protocol, error.to_owned())
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
fn preview(bytes: &[u8]) -> String {
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
        let p = preview("x".repeat(500).as_bytes());
        assert_eq!(p.chars().count(), 81);
        assert_eq!(preview(b"\x00\x01"), "\u{0}\u{1}");
    }
}
