//! Channels: the [`Channel`] trait that `#[channel]` implements, and the
//! task each joined channel runs in.
//!
//! Every joined topic of every connection is its own tokio task owning the
//! channel's state, as every joined topic is its own process in Phoenix. A
//! panic in a handler ends that task alone: the client gets `phx_error` for
//! the topic and rejoins, while the connection and its other channels carry
//! on.

mod mailbox;
mod task;

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::connect::Connect;
use crate::protocol::{Payload, PayloadError};
use crate::reply::Reply;
use crate::router::{Topic, TopicPattern};
use crate::socket::{Connection, Socket};

pub(crate) use mailbox::{mailbox, Mail, MailReceiver, MailSender};
pub use mailbox::{ChannelGone, ChannelRef, Info};

/// A channel: the state of one joined topic and its handlers.
///
/// Implemented by `#[channel]` from an inherent impl with a `join` function
/// and `#[handle_in("event")]` methods; implementing it by hand is possible
/// but rarely needed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a channel",
    label = "routes must lead to a channel",
    note = "add `#[channel(socket = YourSocket)]` to an `impl {Self}` block that defines `async fn join(..)`"
)]
pub trait Channel: Sized + Send + 'static {
    /// The socket this channel is routed from.
    type Socket: Connect;

    /// Answers `phx_join`: `Ok(Ok((response, state)))` joins,
    /// `Ok(Err(response))` refuses, `Err` crashes the join with that message.
    fn join(
        topic: Topic,
        payload: Payload,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<JoinResult<Self>, String>> + Send;

    /// Answers every other client event on the joined topic. `Err` crashes
    /// the channel with that message.
    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<Reply, String>> + Send;

    /// Broadcast events this channel wants to see in
    /// [`Channel::handle_out`] instead of having them sent straight to its
    /// client (Phoenix's `intercept`). Every other event stays on the
    /// encode-once fastlane.
    const INTERCEPTS: &'static [&'static str] = &[];

    /// Receives an intercepted broadcast, once per subscriber: push it
    /// (changed or not) with [`Socket::push_payload`], or drop it. The
    /// default pushes it unchanged. A reply status is meaningless here and
    /// ignored; [`Reply::stop`] stops the channel; `Err` crashes it.
    fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<Reply, String>> + Send {
        socket.push_payload(event, payload);
        std::future::ready(Ok(Reply::none()))
    }

    /// Receives a message sent with [`ChannelRef::send`] or
    /// [`Socket::send_after`]. The default logs it and carries on.
    fn handle_info(
        &mut self,
        info: Info,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<Reply, String>> + Send {
        tracing::warn!(topic = %socket.topic(), message = info.type_name(), "no handle_info for this message; dropped");
        std::future::ready(Ok(Reply::none()))
    }

    /// Called once when the channel ends, with why. Panics here are caught
    /// and logged.
    fn terminate(&mut self, reason: &Terminate, socket: &mut Socket<Self::Socket>) -> impl Future<Output = ()> + Send {
        let _ = (reason, socket);
        std::future::ready(())
    }
}

/// Why a channel ended, as [`Channel::terminate`] is told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Terminate {
    /// The client left the topic (`phx_leave`).
    Left,
    /// The connection closed.
    Closed,
    /// A handler asked to stop ([`Reply::stop`]).
    Stopped,
    /// A newer join of the same topic on the same connection replaced it.
    Displaced,
    /// A handler panicked or returned `Err`, with the message.
    Crashed(String),
    /// The endpoint is shutting down.
    Shutdown,
}

/// What [`Channel::join`] produces: the reply response and the channel's
/// state, or the refusal's response.
pub type JoinResult<C> = Result<(Payload, C), Payload>;

/// What a user's `join` returns: `Ok((response, state))` or `Err(response)`,
/// with any serializable response (`serde_json::Value` by default, so
/// `json!` works).
///
/// ```
/// use channels_runtime::channel::Join;
/// use serde_json::json;
///
/// struct Comments { topic_id: u64 }
///
/// fn join(rest: &str) -> Join<Comments> {
///     let topic_id = rest.parse().map_err(|_| json!({"reason": "invalid topic"}))?;
///     Ok((json!({"hey": "there"}), Comments { topic_id }))
/// }
/// assert!(join("42").is_ok());
/// assert!(join("abc").is_err());
/// ```
pub type Join<C, R = serde_json::Value, E = serde_json::Value> = Result<(R, C), E>;

/// Converts what a user's `join` returns into a [`JoinResult`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a join result",
    label = "`join` must return `Join<Self>`, i.e. `Result<(response, Self), error_response>`",
    note = "return `Ok((json!(..), Self {{ .. }}))` to join or `Err(json!(..))` to refuse"
)]
pub trait IntoJoin<C> {
    /// The encoded result, or why it could not be encoded.
    fn into_join(self) -> Result<JoinResult<C>, String>;
}

impl<C, R: Serialize, E: Serialize> IntoJoin<C> for Result<(R, C), E> {
    fn into_join(self) -> Result<JoinResult<C>, String> {
        match self {
            Ok((response, channel)) => Payload::json(&response)
                .map(|p| Ok((p, channel)))
                .map_err(|e| format!("join response could not be encoded: {e}")),
            Err(response) => {
                Payload::json(&response).map(Err).map_err(|e| format!("join refusal could not be encoded: {e}"))
            }
        }
    }
}

/// Turns a payload into a handler's argument type: any `DeserializeOwned`
/// type, or [`Payload`] itself for handlers that want the raw payload.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a payload",
    label = "payload arguments must implement `serde::Deserialize`",
    note = "add `#[derive(serde::Deserialize)]` to `{Self}`, or take `serde_json::Value` or `Payload`"
)]
pub trait FromPayload: Sized {
    /// Decodes the payload.
    fn from_payload(payload: Payload) -> Result<Self, PayloadError>;
}

impl<T: DeserializeOwned> FromPayload for T {
    fn from_payload(payload: Payload) -> Result<Self, PayloadError> {
        payload.decode()
    }
}

impl FromPayload for Payload {
    fn from_payload(payload: Payload) -> Result<Self, PayloadError> {
        Ok(payload)
    }
}

/// Sockets that route topics to channels; implemented by `socket!`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no channel routes",
    label = "not declared with `socket!`",
    note = "declare it with `socket! {{ pub {Self} {{ channel \"topic:*\" => SomeChannel; }} }}`"
)]
pub trait Routes: Connect {
    /// The routes, tried in order.
    const ROUTES: &'static [Route<Self>];
}

/// A route: a topic pattern and the channel it starts.
pub struct Route<S: Connect> {
    pattern: TopicPattern,
    start: fn(Start<S>),
}

impl<S: Connect> Route<S> {
    /// A route to channel type `C`, for use in [`Routes::ROUTES`].
    pub const fn new<C: Channel<Socket = S>>(pattern: &'static str) -> Self {
        Route { pattern: TopicPattern::new(pattern), start: task::spawn::<C> }
    }

    /// The topic pattern.
    pub fn pattern(&self) -> &TopicPattern {
        &self.pattern
    }

    pub(crate) fn start(&self, start: Start<S>) {
        (self.start)(start);
    }
}

impl<S: Connect> std::fmt::Debug for Route<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route").field("pattern", &self.pattern).finish_non_exhaustive()
    }
}

/// Everything a channel task needs to start.
pub(crate) struct Start<S: Connect> {
    pub(crate) topic: Topic,
    /// The join_ref exactly as the client sent it (echoed in the join reply,
    /// `phx_close` and `phx_error`).
    pub(crate) join_ref: Option<String>,
    pub(crate) msg_ref: Option<String>,
    pub(crate) payload: Payload,
    pub(crate) assigns: S::Assigns,
    pub(crate) conn: Arc<Connection>,
    pub(crate) generation: u64,
    pub(crate) mailbox: MailReceiver,
    pub(crate) me: ChannelRef,
}
