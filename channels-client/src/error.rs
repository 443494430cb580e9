//! Why a join did not succeed, and why the socket has no connection.

use std::fmt;
use std::time::Duration;

use phx_channels_protocol::{EncodeError, Payload, PayloadError};

/// How much of a server-supplied text (a refusal's body, a reason, a
/// response) an error shows.
const CLIP: usize = 200;

/// Why a join did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The server refused the join; its response (`{"reason": …}` as a
    /// rule) is here: [`JoinError::reason`] reads the reason.
    #[error("join refused: {}", Described(.0))]
    Refused(Payload),
    /// The socket could not connect: the server refused the connection
    /// ([`SocketError::Refused`], at once, with its HTTP status), or no
    /// connection could be made before the join's timeout (the last
    /// attempt's error: unreachable, handshake failed, …). The channel is
    /// gone.
    #[error("cannot connect: {0}")]
    Connect(SocketError),
    /// No reply within the join's timeout (10 s unless configured), the
    /// time to connect included. The channel is left.
    #[error("no join reply within {0:?}")]
    Timeout(Duration),
    /// The server closed the channel, or the socket disconnected, first.
    #[error("the channel was closed before it joined")]
    Closed,
    /// The params are not JSON-serializable.
    #[error("the join params cannot be encoded as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The params cannot go in a frame (bytes over V1, a topic over 255
    /// bytes in a binary frame).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The join succeeded but its reply does not fit the type asked for;
    /// the channel is left.
    #[error("the join reply does not fit the type asked for: {0}")]
    Decode(#[from] PayloadError),
}

impl JoinError {
    /// The reason of a refused join: the `reason` string of its response
    /// (`{"reason": "unauthorized"}`, Phoenix's convention), `None` for
    /// another error or another shape of response ([`JoinError::response`]
    /// has it).
    ///
    /// ```
    /// use phx_channels_client::{JoinError, Payload};
    /// use serde_json::json;
    ///
    /// let refused = JoinError::Refused(Payload::from(json!({"reason": "invalid topic"})));
    /// assert_eq!(refused.reason().as_deref(), Some("invalid topic"));
    /// assert_eq!(refused.to_string(), "join refused: invalid topic");
    /// ```
    pub fn reason(&self) -> Option<String> {
        self.response().and_then(reason_of)
    }

    /// The response of a refused join, to decode into a type of yours
    /// (`err.response().map(|r| r.decode::<MyRefusal>())`).
    pub fn response(&self) -> Option<&Payload> {
        match self {
            JoinError::Refused(response) => Some(response),
            _ => None,
        }
    }
}

/// Why the socket could not connect, or lost its connection: in
/// [`SocketEvent::Error`](crate::SocketEvent::Error), and in
/// [`JoinError::Connect`] for a join that waited for a connection.
///
/// [`SocketError::Refused`] (the server answered, and said no) and
/// [`SocketError::Unreachable`] (nothing answered) tell a refused client
/// from a server that is down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// The server answered the WebSocket upgrade with an HTTP error status:
    /// it refused the connection (Phoenix answers 403 when the socket's
    /// `connect` refuses, e.g. a bad token). Retried with the reconnect
    /// backoff unless [`SocketBuilder::on_refused`] says otherwise.
    ///
    /// [`SocketBuilder::on_refused`]: crate::SocketBuilder::on_refused
    #[error("{0}")]
    Refused(Refusal),
    /// Nothing answered: the connection was refused by the host (no server
    /// on that port), the host is unreachable, the name did not resolve,
    /// or the connection was reset during the handshake.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The handshake did not finish within the socket's timeout.
    #[error("no WebSocket handshake within {0:?}")]
    Timeout(Duration),
    /// The server answered, but not with the WebSocket handshake asked for:
    /// e.g. "Server sent no subprotocol" when the auth token is sent to a
    /// server that does not take it (Phoenix before 1.8, or a socket without
    /// `auth_token: true`).
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    /// The TLS handshake with a `wss://` server failed: most often its
    /// certificate is not trusted (`invalid peer certificate: UnknownIssuer`:
    /// signed by a CA the client does not trust, see
    /// [`SocketBuilder::tls`]) or not for this host (`NotValidForName`).
    /// Joins waiting for the connection fail with it at once; the socket
    /// retries with the reconnect backoff (a certificate may be renewed).
    ///
    /// [`SocketBuilder::tls`]: crate::SocketBuilder::tls
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The URL, a parameter or the token cannot make a request. Never
    /// retried: the socket stops.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The server sent a message over [`SocketBuilder::max_message_size`]:
    /// the connection was closed (1009, "message too big") and the socket
    /// reconnects.
    ///
    /// [`SocketBuilder::max_message_size`]: crate::SocketBuilder::max_message_size
    #[error("the server sent a message of {size} bytes, over the maximum of {max}")]
    MessageTooLarge {
        /// The message's size, as far as it was announced or read.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// The open connection broke (a read error, a protocol violation).
    #[error("the connection broke: {0}")]
    Broken(String),
}

/// The server's answer to a refused WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The HTTP status, e.g. 403.
    pub status: u16,
    /// The response's body, as text, clipped to 200 characters; empty when
    /// there was none (Phoenix sends none).
    pub body: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, body: &[u8]) -> Self {
        Refusal { status, body: clip(String::from_utf8_lossy(body).trim()) }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server refused the connection: HTTP {}", self.status)?;
        if let Some(phrase) = reason_phrase(self.status) {
            write!(f, " {phrase}")?;
        }
        if !self.body.is_empty() {
            write!(f, ": {}", self.body)?;
        }
        Ok(())
    }
}

/// The statuses a refused upgrade gets, as a rule.
fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// A server's response, for an error message: its `reason` when it has
/// one, else its JSON text, clipped; bytes by their count.
pub(crate) struct Described<'a>(pub &'a Payload);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Payload::Json(raw) => match reason_of(self.0) {
                Some(reason) => f.write_str(&reason),
                None => f.write_str(&clip(raw.get())),
            },
            Payload::Binary(bytes) => write!(f, "{} bytes", bytes.len()),
        }
    }
}

/// The `reason` string of a JSON object, clipped.
pub(crate) fn reason_of(payload: &Payload) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Reason {
        reason: String,
    }
    let raw = payload.as_json()?;
    serde_json::from_str::<Reason>(raw).ok().map(|r| clip(&r.reason))
}

/// At most [`CLIP`] characters of `text`, with `…` when cut.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(CLIP) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_shows_its_reason_or_its_json_clipped() {
        let refused = |v| JoinError::Refused(Payload::from(v));
        assert_eq!(refused(json!({"reason": "invalid topic"})).to_string(), "join refused: invalid topic");
        assert_eq!(refused(json!({"why": [1, 2]})).to_string(), r#"join refused: {"why":[1,2]}"#);
        let long = refused(json!({"reason": "x".repeat(500)})).to_string();
        assert_eq!(long, format!("join refused: {}…", "x".repeat(200)));
        let bytes = JoinError::Refused(Payload::Binary(vec![1, 2, 3].into()));
        assert_eq!(bytes.to_string(), "join refused: 3 bytes");
        assert_eq!(bytes.reason(), None);
        assert_eq!(refused(json!({"reason": 5})).reason(), None);
        assert_eq!(JoinError::Closed.reason(), None);
    }

    #[test]
    fn a_refused_connection_shows_its_status_and_body() {
        let error = JoinError::Connect(SocketError::Refused(Refusal::new(403, b"")));
        assert_eq!(error.to_string(), "cannot connect: the server refused the connection: HTTP 403 Forbidden");
        let body = "é".repeat(300);
        let refusal = Refusal::new(599, format!("  {body}\n").as_bytes());
        assert_eq!(refusal.body.chars().count(), 201, "clipped at a character boundary");
        assert!(refusal.to_string().starts_with("the server refused the connection: HTTP 599: éé"));
    }
}
