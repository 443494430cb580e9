//! Raw transports: a handler of plain WebSocket messages mounted on an
//! endpoint path, as Phoenix's `Phoenix.Socket.Transport` is: no topics,
//! no channels, no Phoenix frames, only the messages the client sends and
//! what the handler answers.
//!
//! It runs on the same stack as a Phoenix socket: the handshake and its
//! origin check, the connection cap, the framing and its limits
//! (`SocketOptions::max_frame_size`, `idle_timeout`,
//! `max_outbound_bytes`), the close handshake, the metrics, TLS and
//! compression. What it does not use of [`SocketOptions`] (channels,
//! joins, LongPoll, broadcasts) is ignored.
//!
//! Phoenix's `EchoSocket`, the example of its documentation:
//!
//! ```no_run
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::connect::{ConnectInfo, Params, Refuse};
//! use phx_channels::endpoint::Endpoint;
//! use phx_channels::transport::raw::{Handled, RawConn, RawMessage, RawSocket};
//!
//! struct EchoSocket;
//!
//! impl RawSocket for EchoSocket {
//!     type State = ();
//!
//!     async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<Self, Refuse> {
//!         Ok(EchoSocket)
//!     }
//!
//!     fn handle_in(&mut self, message: RawMessage, _conn: &RawConn) -> Handled {
//!         Handled::Reply(message)
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! // ws://127.0.0.1:4000/echo/websocket
//! Endpoint::new().raw_socket("/echo", EchoSocket).serve("127.0.0.1:4000").await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tracing::Instrument;
use tungstenite::protocol::frame::coding::CloseCode;

use super::websocket::{self, End, Service, Traced, Upgrading};
use super::wire::Incoming;
use super::Mount;
use crate::connect::{ConnectInfo, Params, Refuse};
use crate::metrics::Metrics;
use crate::outbox::{CloseReason, Closed, ConnId, Outbox};
use crate::protocol::opcode::{BINARY, TEXT};
use crate::protocol::Frame;

/// A handler of raw WebSocket messages, one value per connection
/// (Phoenix's `Phoenix.Socket.Transport`): [`RawSocket::connect`] accepts
/// a connection and makes its handler (Phoenix's `connect/1` and
/// `init/1`), [`RawSocket::handle_in`] takes each message
/// (`handle_in/2`), [`RawSocket::terminate`] hears the end
/// (`terminate/2`). Pings are answered and close frames handled by the
/// transport.
///
/// Mounted with [`Endpoint::raw_socket`](crate::endpoint::Endpoint::raw_socket)
/// at `{path}/websocket`, as Phoenix mounts a transport.
pub trait RawSocket: Send + Sized + 'static {
    /// The application's state, the endpoint's (`()` for none).
    type State: Send + Sync + 'static;

    /// Accepts or refuses a connection; `params` are its query parameters.
    /// A refusal answers the upgrade with HTTP 403 (or the status the
    /// [`Refuse`] carries); a panic, with 500.
    fn connect(
        params: &Params,
        info: &ConnectInfo,
        state: &Self::State,
    ) -> impl Future<Output = Result<Self, Refuse>> + Send;

    /// Handles a message from the client, on the connection's task: what
    /// it returns is sent before the next message is read. To send from
    /// elsewhere (another task, a timer), keep a clone of `conn`.
    fn handle_in(&mut self, message: RawMessage, conn: &RawConn) -> Handled;

    /// The connection ended. The default does nothing.
    fn terminate(&mut self, reason: Ended) {
        let _ = reason;
    }
}

/// A message, as the client sent it or as it is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMessage {
    /// A text message: UTF-8 (checked as it arrived).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl RawMessage {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        RawMessage::Text(Bytes::from(text.into()))
    }

    /// A binary message.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        RawMessage::Binary(bytes.into())
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            // Checked as UTF-8 when it arrived, or made from a `String`.
            RawMessage::Text(bytes) => std::str::from_utf8(bytes).ok(),
            RawMessage::Binary(_) => None,
        }
    }

    /// The message's bytes, text or binary.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RawMessage::Text(bytes) | RawMessage::Binary(bytes) => bytes,
        }
    }

    fn frame(&self) -> Frame {
        match self {
            RawMessage::Text(bytes) => Frame::raw(TEXT, bytes),
            RawMessage::Binary(bytes) => Frame::raw(BINARY, bytes),
        }
    }
}

/// What [`RawSocket::handle_in`] does with a message (Phoenix's return
/// values of `handle_in/2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Nothing to send (`{:ok, state}`).
    Ok,
    /// Sends this message to the client (`{:reply, :ok, {:text, text},
    /// state}`).
    Reply(RawMessage),
    /// Closes the connection with this code and reason (`{:stop, reason,
    /// state}`): 1000 for a normal end, 4000–4999 for the application's
    /// own. A code that may not be sent (1005, 1006, 2000, ...) closes with
    /// 1011. What was sent before goes out first.
    Close(u16, String),
}

/// Why a raw connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// The client closed, went away, or broke the protocol; or the handler
    /// or the server closed it.
    Closed,
    /// The endpoint is shutting down (the client was sent 1012).
    Shutdown,
}

/// A raw connection, to send it messages: cheap to clone, usable from any
/// task. What is sent goes out in order, straight to the socket when
/// nothing waits before it; a client that reads too slowly is closed at
/// `SocketOptions::max_outbound_bytes` (1008), as any other.
#[derive(Debug, Clone)]
pub struct RawConn {
    outbox: Arc<Outbox>,
}

impl RawConn {
    /// The connection's id, unique in the process.
    pub fn id(&self) -> ConnId {
        self.outbox.id()
    }

    /// Sends a message; `Err` once the connection is closing.
    pub fn send(&self, message: &RawMessage) -> Result<(), Closed> {
        self.outbox.push(message.frame())
    }

    /// Closes the connection (1001, "disconnected") after what was sent
    /// before.
    pub fn close(&self) {
        self.outbox.close(CloseReason::Disconnect);
    }

    /// Whether the connection is closing.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }
}

/// Answers `GET {path}/websocket` of a raw socket.
pub(crate) async fn upgrade<T: RawSocket>(mount: Arc<Mount>, mut req: Request) -> Response {
    let Upgrading { handshake, params, info, span, traceparent, source } = match Upgrading::new(&mount, &req, None) {
        Ok(upgrading) => upgrading,
        Err(refused) => return refused.into_response(),
    };
    let admitted = async {
        super::room(&mount)?;
        super::contained(&mount, T::connect(&params, &info, &mount.state_of::<T::State>())).await
    }
    .instrument(span.clone())
    .await;
    let handler = match super::counted(&mount, admitted) {
        Ok(handler) => handler,
        Err(status) => return status.into_response(),
    };
    let Some(on_upgrade) = websocket::on_upgrade(&mut req) else {
        return (StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded").into_response();
    };
    let traced = Traced { span, traceparent, source };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let outbox = Arc::new(Outbox::new(mount.options.max_outbound_bytes));
                let registration = mount.registry.register(&outbox, traced.source);
                let service = Raw { handler, conn: RawConn { outbox } };
                websocket::serve(mount, registration, upgraded, service, traced.span);
            }
            Err(error) => tracing::debug!(%error, "upgrade failed"),
        }
    });
    handshake.response()
}

/// A raw handler, serving one connection.
struct Raw<T> {
    handler: T,
    conn: RawConn,
}

impl<T: RawSocket> Service for Raw<T> {
    fn outbox(&self) -> &Arc<Outbox> {
        &self.conn.outbox
    }

    fn receive(&mut self, message: Incoming, metrics: &Metrics) -> Option<End> {
        let message = match message {
            Incoming::Text(text) => RawMessage::Text(text),
            Incoming::Binary(bytes) => RawMessage::Binary(bytes),
            Incoming::Ping(_) | Incoming::Pong | Incoming::Close(_) => return None,
        };
        metrics.messages_in.incr();
        let handled = std::panic::AssertUnwindSafe(|| self.handler.handle_in(message, &self.conn));
        match std::panic::catch_unwind(handled) {
            Ok(Handled::Ok) => None,
            // A reply the outbox refuses is for a connection that is
            // closing: the loop ends it.
            Ok(Handled::Reply(reply)) => self.conn.send(&reply).err().and(None),
            Ok(Handled::Close(code, reason)) => {
                let code = if phx_channels_wire::close::is_allowed(code) { code } else { 1011 };
                Some(End::Close(CloseCode::from(code), reason))
            }
            Err(panic) => {
                let message = crate::panics::message(&*panic);
                tracing::error!(panic = ?crate::logging::clip(message), "a raw socket's handle_in panicked");
                Some(End::Close(CloseCode::Error, "internal error".to_owned()))
            }
        }
    }

    fn drive(&mut self) -> impl Future<Output = ()> + Send {
        // A raw handler has no work of its own: it answers messages.
        std::future::pending()
    }

    fn finish(mut self, shutdown: bool) {
        let reason = if shutdown { Ended::Shutdown } else { Ended::Closed };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handler.terminate(reason))).is_err() {
            tracing::error!("a raw socket's terminate panicked");
        }
    }
}
