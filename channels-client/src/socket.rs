//! The client socket: one connection to a Phoenix endpoint, kept open.

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::{mpsc, watch};

use crate::channel::ChannelBuilder;
use crate::command::{Command, Shared};
use crate::driver::Driver;
use crate::link::Target;
use crate::options::SocketBuilder;
use crate::queue::{self, Bound, Next};
use crate::state::{ConnectionState, SocketEvent};
use phx_channels_protocol::Serializer;

impl SocketBuilder {
    /// Starts the socket's task, which connects at once and keeps the
    /// connection open, and returns the socket. Needs a tokio runtime.
    pub fn connect(self) -> Socket {
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut target = Target::new(&self.endpoint, &self.params, self.auth_token.as_deref(), self.serializer);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            target.tls = tls.clone();
        }
        let (commands, inbox) = mpsc::unbounded_channel();
        let (connection_tx, connection) = watch::channel(ConnectionState::Connecting);
        let shared = Arc::new(Shared {
            commands,
            next_channel: AtomicU64::new(0),
            serializer: self.serializer,
            timeout: self.timeout,
            event_buffer: self.event_buffer,
            connection,
        });
        tokio::spawn(Driver::new(target, self, inbox, connection_tx).run());
        Socket { shared }
    }
}

/// What a [`Socket::events`] stream keeps unread: the latest, the older
/// dropped.
const SOCKET_EVENTS: Bound = Bound { items: 64, bytes: usize::MAX };

/// A Phoenix socket: one WebSocket connection to an endpoint, on which
/// channels are joined. Cheap to clone; every clone is the same socket.
///
/// Like phoenix.js's `Socket`, it heartbeats, reconnects with a backoff
/// when the connection drops or goes silent, buffers what is sent while
/// disconnected, and rejoins its channels after a reconnect.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
/// use phx_channels_client::Socket;
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
        SocketBuilder::new(endpoint.into())
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

    /// The socket's events from now on: opens, closes, errors (a refused
    /// connection with its HTTP status). The stream keeps the latest 64
    /// unread (older ones are dropped), and ends with the socket.
    pub fn events(&self) -> SocketEvents {
        let (tx, rx) = queue::bounded(SOCKET_EVENTS);
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
    rx: queue::Receiver<SocketEvent>,
}

impl SocketEvents {
    /// The next event, `None` once the socket ended.
    pub async fn recv(&mut self) -> Option<SocketEvent> {
        futures_util::StreamExt::next(self).await
    }
}

impl Stream for SocketEvents {
    type Item = SocketEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SocketEvent>> {
        loop {
            match self.rx.poll_next(cx) {
                Poll::Ready(Next::Item(event)) => return Poll::Ready(Some(event)),
                // Older events were dropped: the latest follow.
                Poll::Ready(Next::Lagged(_)) => {}
                Poll::Ready(Next::Closed) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
