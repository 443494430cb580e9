//! A push's reply: what [`Channel::push`](super::Channel::push) returns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::error::Described;
use phx_channels_protocol::{EncodeError, Payload, PayloadError};

/// Why a push got no `ok` reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The server answered with another status than `ok` (`error`, as a
    /// rule); its response is here.
    #[error("the server answered `{status}`: {}", Described(.response))]
    Reply {
        /// The status, e.g. `error`.
        status: String,
        /// The response body.
        response: Payload,
    },
    /// No reply within the push's timeout (phoenix.js's `"timeout"`). A
    /// push made while the socket was disconnected or the channel was
    /// rejoining times out too when it could not be sent within it.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The channel was closed (left, closed by the server, or the socket
    /// disconnected) before the reply came.
    #[error("the channel is closed")]
    Closed,
    /// The payload is not JSON-serializable.
    #[error("the payload cannot be encoded as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The payload cannot go in a frame (bytes over the V1 serializer, a
    /// binary header field over 255 bytes).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The `ok` response does not fit the type asked for ([`Push::reply`]).
    #[error("the reply does not fit the type asked for: {0}")]
    Decode(#[from] PayloadError),
}

impl PushError {
    /// The reason of an error reply: the `reason` string of its response
    /// (`{"reason": "unknown event"}`, Phoenix's convention), `None` for
    /// another error or another shape of response.
    ///
    /// ```
    /// use phx_channels_client::{Payload, PushError};
    /// use serde_json::json;
    ///
    /// let error = PushError::Reply { status: "error".into(), response: Payload::from(json!({"reason": "too fast"})) };
    /// assert_eq!(error.reason().as_deref(), Some("too fast"));
    /// assert_eq!(error.to_string(), "the server answered `error`: too fast");
    /// ```
    pub fn reason(&self) -> Option<String> {
        match self {
            PushError::Reply { response, .. } => crate::error::reason_of(response),
            _ => None,
        }
    }
}

/// The reply to a push: a future of the `ok` response.
///
/// The push is sent when [`Channel::push`] is called (or buffered until
/// the socket is connected and the channel joined), whether or not this is
/// awaited: drop it to push without waiting for the reply.
///
/// ```no_run
/// # async fn demo(chan: phx_channels_client::Channel) -> Result<(), Box<dyn std::error::Error>> {
/// use serde_json::json;
///
/// // The raw response…
/// let response = chan.push("ping", json!({"n": 1})).await?;
/// // … or decoded into a type of yours.
/// #[derive(serde::Deserialize)]
/// struct Pong { n: u32 }
/// let pong: Pong = chan.push("ping", json!({"n": 1})).reply().await?;
/// # let _ = (response, pong.n); Ok(()) }
/// ```
///
/// [`Channel::push`]: super::Channel::push
#[derive(Debug)]
#[must_use = "the push is sent either way; await it for the reply"]
pub struct Push {
    state: State,
}

#[derive(Debug)]
enum State {
    Waiting(oneshot::Receiver<Result<Payload, PushError>>),
    Failed(Option<PushError>),
}

impl Push {
    pub(crate) fn waiting(reply: oneshot::Receiver<Result<Payload, PushError>>) -> Self {
        Push { state: State::Waiting(reply) }
    }

    pub(crate) fn failed(error: PushError) -> Self {
        Push { state: State::Failed(Some(error)) }
    }

    /// The `ok` response decoded into `R`.
    pub async fn reply<R: DeserializeOwned>(self) -> Result<R, PushError> {
        Ok(self.await?.decode()?)
    }
}

impl Future for Push {
    type Output = Result<Payload, PushError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            // The socket's task dropping the sender means it ended.
            State::Waiting(reply) => Pin::new(reply).poll(cx).map(|r| r.unwrap_or(Err(PushError::Closed))),
            State::Failed(error) => Poll::Ready(Err(error.take().unwrap_or(PushError::Closed))),
        }
    }
}
