//! How a socket connects and behaves: [`SocketBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::Refusal;
use crate::queue::Bound;
use phx_channels_protocol::Serializer;

/// phoenix.js's `DEFAULT_TIMEOUT`: joins and pushes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// phoenix.js's `heartbeatIntervalMs`.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// The largest message the server may send (16 MiB): above this project's
/// server's inbound limit (10 MB), so an echo of a large push fits, and a
/// quarter of tungstenite's 64 MiB.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;
/// What one event stream holds at most before it drops its oldest events.
const DEFAULT_EVENT_BUFFER: Bound = Bound { items: 1_024, bytes: 16 << 20 };

/// How a [`Socket`](crate::Socket) connects: [`Socket::builder`](crate::Socket::builder).
#[derive(Debug, Clone)]
#[must_use = "nothing connects until `connect` is called"]
pub struct SocketBuilder {
    pub(crate) endpoint: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) auth_token: Option<String>,
    pub(crate) serializer: Serializer,
    pub(crate) timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) reconnect_after: Backoff,
    pub(crate) rejoin_after: Backoff,
    pub(crate) on_refused: OnRefused,
    pub(crate) max_message_size: usize,
    pub(crate) event_buffer: Bound,
    pub(crate) compress: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
}

impl SocketBuilder {
    /// A builder with phoenix.js's defaults.
    pub(crate) fn new(endpoint: String) -> Self {
        SocketBuilder {
            endpoint,
            params: Vec::new(),
            auth_token: None,
            serializer: Serializer::V2,
            timeout: DEFAULT_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT,
            reconnect_after: Backoff::reconnect(),
            rejoin_after: Backoff::rejoin(),
            on_refused: OnRefused::retry(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            event_buffer: DEFAULT_EVENT_BUFFER,
            compress: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// What a `wss://` (or `https://`) endpoint's certificate is checked
    /// against: Mozilla's roots by default ([`Tls::webpki_roots`]), the
    /// app's own CA with [`Tls::roots_pem`], or any rustls configuration
    /// ([`Tls::from_config`]: client certificates, the system's roots).
    ///
    /// ```no_run
    /// use phx_channels_client::{Socket, Tls};
    ///
    /// # fn demo(ca_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    /// let socket = Socket::builder("https://chat.internal/socket").tls(Tls::roots_pem(ca_pem)?).connect();
    /// # drop(socket); Ok(()) }
    /// ```
    ///
    /// [`Tls::webpki_roots`]: crate::Tls::webpki_roots
    /// [`Tls::roots_pem`]: crate::Tls::roots_pem
    /// [`Tls::from_config`]: crate::Tls::from_config
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// A connect param, sent in the query string (`?token=…&vsn=2.0.0`).
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// The auth token, sent as phoenix.js's `authToken` option sends it:
    /// in `Sec-WebSocket-Protocol`, `phoenix, base64url.bearer.phx.<base64>`,
    /// not in the URL.
    ///
    /// Servers that take it: this project's (`ConnectInfo::auth_token`
    /// reads it), and Phoenix 1.8 or later with `auth_token: true` on the
    /// socket (`connect_info[:auth_token]`). Phoenix 1.7 and earlier, or a
    /// socket without that option, answer the upgrade without the
    /// subprotocol and the connection fails with
    /// [`SocketError::Handshake`]`("Server sent no subprotocol")`, as it does
    /// for phoenix.js; send the token as a [`param`](Self::param) to those.
    ///
    /// [`SocketError::Handshake`]: crate::SocketError::Handshake
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
    ///
    /// The count of tries starts again only once a connection has stayed
    /// open for 10 s: a server that closes every connection right after
    /// opening it is tried ever more slowly, not every 10 ms.
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

    /// What to do when the server refuses a connection (answers the
    /// upgrade with an HTTP error status, as Phoenix answers 403 when
    /// `connect` refuses): retry with the reconnect backoff (the default,
    /// as phoenix.js), stop, or decide from the [`Refusal`].
    ///
    /// Either way the refusal is told where the app waits: every join
    /// waiting for the connection fails at once with
    /// [`JoinError::Connect`]`(`[`SocketError::Refused`]`)`, and
    /// [`Socket::events`] gets [`SocketEvent::Error`] with it. A server
    /// that is down ([`SocketError::Unreachable`]) is always retried.
    ///
    /// ```no_run
    /// use phx_channels_client::{OnRefused, Socket};
    ///
    /// // A bot whose token was refused has nothing to retry for, but a
    /// // server that is overloaded or restarting (5xx, 429) does.
    /// let socket = Socket::builder("ws://127.0.0.1:4000/socket")
    ///     .param("token", "…")
    ///     .on_refused(OnRefused::retry_if(|refusal| refusal.status >= 500 || refusal.status == 429))
    ///     .connect();
    /// # drop(socket);
    /// ```
    ///
    /// [`JoinError::Connect`]: crate::JoinError::Connect
    /// [`SocketError::Refused`]: crate::SocketError::Refused
    /// [`SocketError::Unreachable`]: crate::SocketError::Unreachable
    /// [`Socket::events`]: crate::Socket::events
    /// [`SocketEvent::Error`]: crate::SocketEvent::Error
    pub fn on_refused(mut self, policy: OnRefused) -> Self {
        self.on_refused = policy;
        self
    }

    /// The largest message the server may send (16 MiB). A larger one is
    /// not read: the connection is closed with 1009 ("message too big"),
    /// [`SocketEvent::Error`]`(`[`SocketError::MessageTooLarge`]`)` is
    /// reported, and the socket reconnects.
    ///
    /// [`SocketEvent::Error`]: crate::SocketEvent::Error
    /// [`SocketError::MessageTooLarge`]: crate::SocketError::MessageTooLarge
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Offer permessage-deflate (RFC 7692), as browsers do: a server that
    /// compresses (`SocketOptions::compress` on this project's server,
    /// `compress: true` on Phoenix's) sends its larger messages compressed,
    /// and the client inflates them, within
    /// [`max_message_size`](Self::max_message_size) as they inflate (a
    /// message that inflates past it breaks the connection, which
    /// reconnects). Once the server agreed, the client compresses what it
    /// sends too, as a browser does: each message of 256 bytes or more (up
    /// to `max_message_size`; longer ones go as they are) on its own, within
    /// the window the server asked for, unless it does not shrink. Off by
    /// default. The offer is
    /// `permessage-deflate; client_no_context_takeover; client_max_window_bits`.
    ///
    /// ```no_run
    /// use phx_channels_client::Socket;
    ///
    /// let socket = Socket::builder("wss://example.com/socket").compress(true).connect();
    /// # drop(socket);
    /// ```
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// How many events one stream ([`Channel::on`], [`Channel::events`],
    /// [`Presence`]) keeps for its reader at most (1 024). The socket never
    /// waits for a stream: one read too slowly drops its oldest events and
    /// says how many ([`Lagged`], [`RecvError::Lagged`]) before the next.
    ///
    /// [`Channel::on`]: crate::Channel::on
    /// [`Channel::events`]: crate::Channel::events
    /// [`Presence`]: crate::Presence
    /// [`Lagged`]: crate::Lagged
    /// [`RecvError::Lagged`]: crate::RecvError::Lagged
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer.items = events.max(1);
        self
    }

    /// How many bytes (event names and payloads) one stream keeps for its
    /// reader at most (16 MiB), as [`event_buffer`](Self::event_buffer)
    /// counts events. The newest event is always kept, whatever its size.
    pub fn event_buffer_bytes(mut self, bytes: usize) -> Self {
        self.event_buffer.bytes = bytes;
        self
    }
}

/// What a socket does when the server refuses a connection:
/// [`SocketBuilder::on_refused`].
#[derive(Clone)]
pub struct OnRefused(Policy);

#[derive(Clone)]
enum Policy {
    Retry,
    Stop,
    RetryIf(Arc<dyn Fn(&Refusal) -> bool + Send + Sync>),
}

impl OnRefused {
    /// Retry with the reconnect backoff, as phoenix.js does (the default):
    /// for a refusal that may pass (a token about to be valid, a server
    /// shedding load).
    pub fn retry() -> Self {
        OnRefused(Policy::Retry)
    }

    /// Stop: the socket makes no more attempts, as after
    /// [`Socket::disconnect`](crate::Socket::disconnect) (its channels are
    /// closed, its streams end), and later joins fail with the refusal.
    pub fn stop() -> Self {
        OnRefused(Policy::Stop)
    }

    /// Retry when `retry` says so, stop otherwise.
    pub fn retry_if(retry: impl Fn(&Refusal) -> bool + Send + Sync + 'static) -> Self {
        OnRefused(Policy::RetryIf(Arc::new(retry)))
    }

    /// Whether to retry after `refusal`.
    pub(crate) fn retries(&self, refusal: &Refusal) -> bool {
        match &self.0 {
            Policy::Retry => true,
            Policy::Stop => false,
            Policy::RetryIf(retry) => retry(refusal),
        }
    }
}

impl fmt::Debug for OnRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Policy::Retry => "OnRefused::Retry",
            Policy::Stop => "OnRefused::Stop",
            Policy::RetryIf(_) => "OnRefused::RetryIf(fn)",
        })
    }
}
