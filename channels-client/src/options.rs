//! How a socket connects and behaves: [`SocketBuilder`].

use std::time::Duration;

use crate::backoff::Backoff;
use phx_channels_protocol::Serializer;

/// phoenix.js's `DEFAULT_TIMEOUT`: joins and pushes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// phoenix.js's `heartbeatIntervalMs`.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

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
        }
    }

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
}
