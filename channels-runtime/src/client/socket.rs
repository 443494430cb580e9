//! The client socket: one connection to a Phoenix endpoint, kept open.

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;
use super::channel::ChannelBuilder;
use super::driver::{Command, Driver};
use super::link::Target;
use crate::protocol::Serializer;

/// phoenix.js's `DEFAULT_TIMEOUT`: joins and pushes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// phoenix.js's `heartbeatIntervalMs`.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Whether the socket's connection is open, as phoenix.js's
/// `connectionState()` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// A handshake is under way.
    Connecting,
    /// Open: frames go out at once.
    Open,
    /// Not connected: waiting to reconnect, or disconnected for good.
    Closed,
}

/// What happened to the socket's connection (phoenix.js's `onOpen`,
/// `onClose`, `onError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    /// A connection opened (the first one, or a reconnect).
    Open,
    /// The open connection ended; the socket reconnects unless it was
    /// disconnected.
    Close {
        /// The close code the server sent, if it sent a close frame.
        code: Option<u16>,
        /// Why: the server's close reason, or what the client saw.
        reason: String,
    },
    /// A connection attempt failed (refused, unreachable, timed out) or
    /// the connection broke.
    Error(String),
}

/// What the handles share with the socket's task.
#[derive(Debug)]
pub(super) struct Shared {
    pub commands: mpsc::UnboundedSender<Command>,
    pub next_channel: AtomicU64,
    pub serializer: Serializer,
    pub timeout: Duration,
    connection: watch::Receiver<ConnectionState>,
}

/// How a [`Socket`] connects: [`Socket::builder`].
#[derive(Debug, Clone)]
#[must_use = "nothing connects until `connect` is called"]
pub struct SocketBuilder {
    endpoint: String,
    params: Vec<(String, String)>,
    auth_token: Option<String>,
    pub(super) serializer: Serializer,
    pub(super) timeout: Duration,
    pub(super) heartbeat_interval: Duration,
    pub(super) reconnect_after: Backoff,
    pub(super) rejoin_after: Backoff,
}

impl SocketBuilder {
    /// A connect param, sent in the query string (`?token=…&vsn=2.0.0`).
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// The auth token, sent as phoenix.js's `authToken` option sends it:
    /// in `Sec-WebSocket-Protocol`, `phoenix, base64url.bearer.phx.<base64>`
    /// (read on the server with `ConnectInfo::auth_token`), not in the URL.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// The serializer: V2 (`vsn=2.0.0`, JSON arrays and binary frames) by
    /// default, as phoenix.js; V1 (`vsn=1.0.0`, JSON objects) on request.
    pub fn serializer(mut self, serializer: Serializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// The default timeout of joins and pushes, and of each connection
    /// attempt's handshake (10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often to send a heartbeat (30 s). A heartbeat still unanswered
    /// when the next one is due means the connection went silent: it is
    /// dropped, and the socket reconnects.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// The delays between connection attempts ([`Backoff::reconnect`]).
    pub fn reconnect_after(mut self, backoff: Backoff) -> Self {
        self.reconnect_after = backoff;
        self
    }

    /// The delays between rejoins of an errored channel
    /// ([`Backoff::rejoin`]).
    pub fn rejoin_after(mut self, backoff: Backoff) -> Self {
        self.rejoin_after = backoff;
        self
    }

    /// Starts the socket's task, which connects at once and keeps the
    /// connection open, and returns the socket. Needs a tokio runtime.
    pub fn connect(self) -> Socket {
        let target = Target::new(&self.endpoint, &self.params, self.auth_token.as_deref(), self.serializer);
        let (commands, inbox) = mpsc::unbounded_channel();
        let (connection_tx, connection) = watch::channel(ConnectionState::Connecting);
        let shared = Arc::new(Shared {
            commands,
            next_channel: AtomicU64::new(0),
            serializer: self.serializer,
            timeout: self.timeout,
            connection,
        });
        tokio::spawn(Driver::new(target, self, inbox, connection_tx).run());
        Socket { shared }
    }
}

/// A Phoenix socket: one WebSocket connection to an endpoint, on which
/// channels are joined. Cheap to clone; every clone is the same socket.
///
/// Like phoenix.js's `Socket`, it heartbeats, reconnects with a backoff
/// when the connection drops or goes silent, buffers what is sent while
/// disconnected, and rejoins its channels after a reconnect.
///
/// ```no_run
/// # use phx_channels_runtime as phx_channels;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
/// use phx_channels::client::Socket;
/// use serde_json::{json, Value};
///
/// let socket = Socket::builder("ws://127.0.0.1:4000/socket").param("user_id", "7").connect();
/// let (chan, reply): (_, Value) = socket.channel("comments:42").join(json!({})).await?;
/// println!("joined: {reply}");
///
/// let mut new_comments = chan.on("comments:42:new");
/// chan.push("comment:add", json!({"content": "hello"})).await?;
/// if let Some(comment) = new_comments.next().await {
///     println!("{comment:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Socket {
    shared: Arc<Shared>,
}

impl Socket {
    /// A socket for the endpoint's URL, e.g. `ws://127.0.0.1:4000/socket`
    /// (`/websocket` and the query are added, as phoenix.js does).
    pub fn builder(endpoint: impl Into<String>) -> SocketBuilder {
        SocketBuilder {
            endpoint: endpoint.into(),
            params: Vec::new(),
            auth_token: None,
            serializer: Serializer::V2,
            timeout: DEFAULT_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT,
            reconnect_after: Backoff::reconnect(),
            rejoin_after: Backoff::rejoin(),
        }
    }

    /// `Socket::builder(endpoint).connect()`: phoenix.js's defaults.
    pub fn connect(endpoint: impl Into<String>) -> Socket {
        Self::builder(endpoint).connect()
    }

    /// A channel for `topic`, to [join](ChannelBuilder::join).
    pub fn channel(&self, topic: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder::new(self.shared.clone(), topic.into())
    }

    /// The serializer in use.
    pub fn serializer(&self) -> Serializer {
        self.shared.serializer
    }

    /// Whether the connection is open now.
    pub fn connection_state(&self) -> ConnectionState {
        *self.shared.connection.borrow()
    }

    /// Every change of [`Socket::connection_state`].
    pub fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.shared.connection.clone()
    }

    /// The socket's events from now on: opens, closes, errors.
    pub fn events(&self) -> SocketEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.shared.commands.send(Command::SocketEvents(tx));
        SocketEvents { rx }
    }

    /// Closes the connection (after what is already queued) and ends the
    /// socket: no reconnect; every channel is closed, pending pushes fail
    /// with `Closed`, event streams end.
    pub fn disconnect(&self) {
        let _ = self.shared.commands.send(Command::Disconnect);
    }
}

/// A stream of [`SocketEvent`]s ([`Socket::events`]); it ends with the
/// socket.
#[derive(Debug)]
pub struct SocketEvents {
    rx: mpsc::UnboundedReceiver<SocketEvent>,
}

impl SocketEvents {
    /// The next event, `None` once the socket ended.
    pub async fn recv(&mut self) -> Option<SocketEvent> {
        self.rx.recv().await
    }
}

impl Stream for SocketEvents {
    type Item = SocketEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SocketEvent>> {
        self.rx.poll_recv(cx)
    }
}
