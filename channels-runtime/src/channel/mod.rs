//! Channels: the [`Channel`] trait that `#[channel]` implements, and how a
//! joined channel runs.
//!
//! Every joined topic of every connection is isolated as its own process
//! is in Phoenix, without costing a task: its state waits in its
//! connection between messages, and each message runs as a future of its
//! own, polled by the connection's task. A panic in a handler ends that
//! channel alone: the client gets `phx_error` for the topic and rejoins,
//! while the connection and its other channels carry on. A handler that
//! awaits (a database, another service) holds back only its own channel's
//! later messages, as a busy Phoenix channel process does.

mod instance;

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::changeset::validator::Validate;
use crate::changeset::{Messages, Valid};
use crate::connect::Connect;
use crate::connection::Connection;
use crate::crash::Crash;
use crate::describe::{ChannelShape, JoinTypes};
use crate::protocol::{IntoPayload, Payload, PayloadError};
use crate::pubsub::History;
use crate::reply::{self, Reply};
use crate::router::{Topic, TopicPattern};
use crate::socket::Socket;

pub use crate::mailbox::{ChannelGone, ChannelRef, Info};
pub(crate) use instance::{Joined, Step};

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

    /// Answers `phx_join`: `Ok((response, state))` joins; a [`JoinError`]
    /// refuses (the client gets the refusal's response) or crashes the join.
    fn join(
        topic: Topic,
        payload: Payload,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<(Payload, Self), JoinError>> + Send;

    /// Answers every other client event on the joined topic. `Err` crashes
    /// the channel.
    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<Reply, Crash>> + Send;

    /// The events [`Channel::handle_in`] answers, as the `event` label of
    /// its duration in the exported metrics (`#[channel]` lists its
    /// `#[handle_in]` events here). Any other event is counted as `other`,
    /// so a client cannot make the number of series grow.
    const EVENTS: &'static [&'static str] = &[];

    /// The channel's name in the exported metrics and logs: its type's
    /// name without the module path.
    fn name() -> &'static str {
        let full = std::any::type_name::<Self>();
        let plain = full.split('<').next().unwrap_or(full);
        plain.rsplit("::").next().unwrap_or(plain)
    }

    /// The history its topics keep (`#[channel(history(..))]`): the
    /// endpoint keeps it for the topics of the channel's routes, so a
    /// client that lost its connection is sent what it missed when it
    /// rejoins with its last position (`docs/recovery.md`). `None` (the
    /// default): broadcasts are not kept.
    const HISTORY: Option<History> = None;

    /// Broadcast events this channel wants to see in
    /// [`Channel::handle_out`] instead of having them sent straight to its
    /// client (Phoenix's `intercept`). Every other event stays on the
    /// encode-once fastlane.
    const INTERCEPTS: &'static [&'static str] = &[];

    /// Receives an intercepted broadcast, once per subscriber: push it
    /// (changed or not) with [`Socket::push`], or drop it. The default
    /// pushes it unchanged. A reply status is meaningless here and ignored;
    /// [`Reply::stop`] stops the channel; `Err` crashes it.
    fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<Reply, Crash>> + Send {
        socket.push_frame(event, payload);
        std::future::ready(Ok(Reply::none()))
    }

    /// Receives a message sent with [`ChannelRef::send`] or
    /// [`Socket::send_after`]. The default logs it and carries on.
    fn handle_info(
        &mut self,
        info: Info,
        socket: &mut Socket<Self::Socket>,
    ) -> impl Future<Output = Result<Reply, Crash>> + Send {
        tracing::warn!(topic = ?crate::logging::clip(socket.topic()), message = info.type_name(), "no handle_info for this message; dropped");
        std::future::ready(Ok(Reply::none()))
    }

    /// Called once when the channel ends, with why. Panics here are caught
    /// and logged.
    fn terminate(&mut self, reason: &Terminate, socket: &mut Socket<Self::Socket>) -> impl Future<Output = ()> + Send {
        let _ = (reason, socket);
        std::future::ready(())
    }

    /// The types of the channel's join, events and pushes, for generated
    /// client types ([`typescript`](crate::typescript)). `#[channel]` writes
    /// it from the handlers' signatures; the default says nothing (any
    /// event, untyped).
    fn describe() -> ChannelShape {
        ChannelShape::untyped(short_type_name::<Self>())
    }
}

/// `Room` for `my_app::chans::Room<u8>`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path)
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
    /// A handler panicked or returned `Err`: the error, with its sources.
    Crashed(Crash),
    /// The endpoint is shutting down.
    Shutdown,
    /// This node missed broadcasts of the channel's topic (which keeps
    /// history) that its client was owed: a broker subscription dropped,
    /// or the broker lost its stream. The client gets `phx_error` and
    /// rejoins with its last position, to be sent what it missed or told
    /// that it cannot be.
    Resync,
}

/// What a user's `join` returns: `Ok((response, state))` to join, or
/// `Err(JoinError)` to refuse. The response is any [`IntoPayload`]:
/// `json!(..)`, `&value` of a `Serialize` type, or a binary payload.
///
/// `?` works on any error: the join is refused with `{"reason": "<the
/// error's message>"}`.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::channel::{Join, JoinError};
/// use serde_json::json;
///
/// #[derive(Debug)]
/// struct Comments { topic_id: u64 }
///
/// fn join(rest: &str) -> Join<Comments> {
///     if rest == "0" {
///         return Err(JoinError::reason("invalid topic"));
///     }
///     let topic_id = rest.parse()?; // refused with the parse error's message
///     Ok((json!({"hey": "there"}), Comments { topic_id }))
/// }
/// assert!(join("42").is_ok());
/// assert_eq!(join("0").unwrap_err().response().unwrap().as_json(), Some(r#"{"reason":"invalid topic"}"#));
/// assert_eq!(
///     join("abc").unwrap_err().response().unwrap().as_json(),
///     Some(r#"{"reason":"invalid digit found in string"}"#)
/// );
/// ```
pub type Join<C, R = serde_json::Value> = Result<(R, C), JoinError>;

/// Why a join did not happen: refused with a response the client reads
/// (Phoenix's `{:error, reply}`), or crashed (the client reads
/// `{"reason": "join crashed"}` and the error is logged, as when a Phoenix
/// `join/3` raises).
///
/// - [`JoinError::new`]: refuse with this response (`json!(..)`, `&value`);
/// - [`JoinError::reason`]: refuse with `{"reason": reason}`;
/// - `?` on any `std::error::Error`: refuse with `{"reason": "<its
///   message>"}`, its source chain kept for the log. Its message reaches
///   the client: for errors that must stay on the server (a database
///   error, say), use [`JoinError::crash`];
/// - [`JoinError::crash`]: crash the join.
#[must_use = "a JoinError does nothing unless returned from `join`"]
pub struct JoinError(pub(crate) JoinFailure);

pub(crate) enum JoinFailure {
    Refused { response: Payload, source: Option<crate::crash::BoxError> },
    Crashed(Crash),
}

impl JoinError {
    /// Refuses the join with `response` as the error reply's response.
    pub fn new(response: impl IntoPayload) -> Self {
        match response.into_payload() {
            Ok(response) => JoinError(JoinFailure::Refused { response, source: None }),
            Err(error) => JoinError::crash(format!("join refusal could not be encoded: {error}")),
        }
    }

    /// Refuses the join with `{"reason": reason}`, the shape of Phoenix's
    /// own refusals.
    pub fn reason(reason: impl AsRef<str>) -> Self {
        JoinError(JoinFailure::Refused { response: reply::reason(reason.as_ref()), source: None })
    }

    /// Crashes the join: the client gets `{"reason": "join crashed"}`, the
    /// error (with its sources) is logged.
    pub fn crash(error: impl Into<crate::crash::BoxError>) -> Self {
        JoinError(JoinFailure::Crashed(Crash::from(error)))
    }

    /// The response a refusal sends; `None` for a crash.
    pub fn response(&self) -> Option<&Payload> {
        match &self.0 {
            JoinFailure::Refused { response, .. } => Some(response),
            JoinFailure::Crashed(_) => None,
        }
    }

    /// The crash, if the join crashed.
    pub fn as_crash(&self) -> Option<&Crash> {
        match &self.0 {
            JoinFailure::Crashed(crash) => Some(crash),
            JoinFailure::Refused { .. } => None,
        }
    }

    /// The error a refusal was made from with `?`, for logs.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.0 {
            JoinFailure::Refused { source, .. } => source.as_deref(),
            JoinFailure::Crashed(_) => None,
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JoinError {
    fn from(error: E) -> Self {
        let response = reply::reason(&error.to_string());
        JoinError(JoinFailure::Refused { response, source: Some(Box::new(error)) })
    }
}

/// A crashed callback (a panic in `join`) crashes the join.
impl From<Crash> for JoinError {
    fn from(crash: Crash) -> Self {
        JoinError(JoinFailure::Crashed(crash))
    }
}

impl std::fmt::Debug for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            JoinFailure::Refused { response, source } => {
                f.debug_struct("Refused").field("response", response).field("source", source).finish()
            }
            JoinFailure::Crashed(crash) => f.debug_tuple("Crashed").field(crash).finish(),
        }
    }
}

/// Converts what a user's `join` returns into what [`Channel::join`]
/// answers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a join result",
    label = "`join` must return `Join<Self>`, i.e. `Result<(response, Self), JoinError>`",
    note = "return `Ok((json!(..), Self {{ .. }}))` to join or `Err(JoinError::reason(..))` to refuse"
)]
pub trait IntoJoin<C> {
    /// The encoded response and state, or why there is none.
    fn into_join(self) -> Result<(Payload, C), JoinError>;
}

/// The generated types read a join's response type from `Join<Self, R>`.
impl<R, C> JoinTypes for Result<(R, C), JoinError> {
    type Response = R;
}

impl<C, R: IntoPayload> IntoJoin<C> for Result<(R, C), JoinError> {
    fn into_join(self) -> Result<(Payload, C), JoinError> {
        let (response, channel) = self?;
        match response.into_payload() {
            Ok(response) => Ok((response, channel)),
            Err(error) => Err(JoinError::crash(format!("join response could not be encoded: {error}"))),
        }
    }
}

/// Turns a payload into a handler's argument type: any `DeserializeOwned`
/// type, [`Payload`] itself for handlers that want the raw payload, or
/// [`Valid`] for one checked against its rules.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a payload",
    label = "payload arguments must implement `serde::Deserialize`",
    note = "add `#[derive(serde::Deserialize)]` to `{Self}`, or take `serde_json::Value` or `Payload`",
    note = "a `Valid<T>` argument needs `#[derive(serde::Deserialize, validator::Validate)]` on `T`"
)]
///
/// `Via` tells the ways apart, so that [`Payload`] (a type of the protocol
/// crate) can be taken raw beside every `Deserialize` type; an impl of your
/// own leaves it at its default, `impl FromPayload for MyType`.
pub trait FromPayload<Via = ()>: Sized {
    /// Decodes the payload, or says what to answer instead.
    fn from_payload(payload: Payload) -> Result<Self, Rejection>;
}

/// The `Via` of [`FromPayload`] for every `Deserialize` type.
#[doc(hidden)]
pub enum Deserialized {}

impl<T: DeserializeOwned> FromPayload<Deserialized> for T {
    fn from_payload(payload: Payload) -> Result<Self, Rejection> {
        payload.decode().map_err(Rejection::from)
    }
}

impl FromPayload for Payload {
    fn from_payload(payload: Payload) -> Result<Self, Rejection> {
        Ok(payload)
    }
}

/// A payload checked against its rules: answered with Ecto's
/// `{"errors": {field: [message, ..]}}` instead of running the handler when
/// any field fails.
impl<T: DeserializeOwned + Validate, M: Messages> FromPayload for Valid<T, M> {
    fn from_payload(payload: Payload) -> Result<Self, Rejection> {
        Valid::from_payload(&payload).map_err(|errors| {
            let message = format!("invalid payload: {errors}");
            Rejection::new(errors.into_payload(), message)
        })
    }
}

/// A type a [`Valid`] argument can check: one with `validator::Validate`
/// rules. `#[channel]` decodes a `Valid<T>` argument through
/// [`ValidPayload::valid_from_payload`], so a `T` without rules is reported
/// as that, at the argument, and nothing else is.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no rules to check: `Valid<{Self}>` needs `validator::Validate` on `{Self}`",
    label = "`Valid<..>` checks this payload against its type's `#[validate(..)]` rules",
    note = "add `#[derive(serde::Deserialize, validator::Validate)]` to `{Self}` and rules such as `#[validate(length(min = 1))]` to its fields, or take `{Self}` without `Valid<..>`"
)]
pub trait ValidRules: Validate {}

impl<T: Validate + ?Sized> ValidRules for T {}

/// [`FromPayload`] of a `Valid<T, M>` argument, with `T`'s rules asked for
/// first (see [`ValidRules`]): `#[channel]` decodes `Valid<T>` arguments
/// with `<Valid<T> as ValidPayload>::valid_from_payload`.
pub trait ValidPayload: Sized {
    /// The checked type, `T`.
    type Checked;

    /// Decodes and checks the payload, or says what to answer instead.
    fn valid_from_payload(payload: Payload) -> Result<Self, Rejection>
    where
        Self::Checked: ValidRules + DeserializeOwned;
}

impl<T, M: Messages> ValidPayload for Valid<T, M> {
    type Checked = T;

    fn valid_from_payload(payload: Payload) -> Result<Self, Rejection>
    where
        T: ValidRules + DeserializeOwned,
    {
        <Valid<T, M> as FromPayload>::from_payload(payload)
    }
}

/// A payload a handler's argument type refused: the error reply the client
/// gets instead of the handler running.
#[derive(Debug, Clone)]
pub struct Rejection(Rejected);

#[derive(Debug, Clone)]
enum Rejected {
    /// Did not decode: answered `{"reason": "invalid payload", "path", "message"}`
    /// (or `"invalid join params"` for a join).
    Invalid(PayloadError),
    /// Decoded but refused (validation): answered with this response.
    Response { response: Payload, message: String },
}

impl Rejection {
    /// A rejection answered with `response`; `message` says why in logs.
    pub fn new(response: Payload, message: impl Into<String>) -> Self {
        Rejection(Rejected::Response { response, message: message.into() })
    }

    /// The error response for a `handle_in` event.
    pub fn into_reply(self) -> Reply {
        match self.0 {
            Rejected::Invalid(error) => Reply::invalid_payload(&error),
            Rejected::Response { response, .. } => Reply::error(response),
        }
    }

    /// The refusal for a join.
    pub(crate) fn into_join_error(self) -> JoinError {
        match self.0 {
            Rejected::Invalid(error) => {
                #[derive(Serialize)]
                struct Invalid<'a> {
                    reason: &'static str,
                    path: &'a str,
                    message: &'a str,
                }
                JoinError::new(&Invalid { reason: "invalid join params", path: error.path(), message: error.message() })
            }
            Rejected::Response { response, .. } => JoinError::new(response),
        }
    }
}

impl From<PayloadError> for Rejection {
    fn from(error: PayloadError) -> Self {
        Rejection(Rejected::Invalid(error))
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Rejected::Invalid(error) => write!(f, "{error}"),
            Rejected::Response { message, .. } => f.write_str(message),
        }
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

/// Keeps, on `pubsub`, the history of every route of `S` whose channel
/// declares one.
pub(crate) fn keep_histories<S: Routes>(pubsub: &crate::pubsub::PubSub) {
    for route in S::ROUTES {
        if let Some(history) = route.history() {
            pubsub.keep_history(route.pattern().as_str(), history);
        }
    }
}

/// A route: a topic pattern and the channel it starts.
pub struct Route<S: Connect> {
    pattern: TopicPattern,
    join: fn(Start<S>) -> Step<S>,
    describe: fn() -> ChannelShape,
    history: Option<History>,
}

impl<S: Connect> Route<S> {
    /// A route to channel type `C`, for use in [`Routes::ROUTES`].
    pub const fn new<C: Channel<Socket = S>>(pattern: &'static str) -> Self {
        Route {
            pattern: TopicPattern::new(pattern),
            join: instance::join::<C>,
            describe: C::describe,
            history: C::HISTORY,
        }
    }

    /// The history the route's topics keep ([`Channel::HISTORY`]).
    pub fn history(&self) -> Option<History> {
        self.history
    }

    /// The types of the route's channel ([`Channel::describe`]).
    pub fn shape(&self) -> ChannelShape {
        (self.describe)()
    }

    /// The topic pattern.
    pub fn pattern(&self) -> &TopicPattern {
        &self.pattern
    }

    /// The step that joins a channel of this route.
    pub(crate) fn join(&self, start: Start<S>) -> Step<S> {
        (self.join)(start)
    }
}

impl<S: Connect> std::fmt::Debug for Route<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route").field("pattern", &self.pattern).finish_non_exhaustive()
    }
}

/// Everything a channel needs to join.
pub(crate) struct Start<S: Connect> {
    pub(crate) topic: Topic,
    /// The join_ref exactly as the client sent it (echoed in the join reply,
    /// `phx_close` and `phx_error`).
    pub(crate) join_ref: Option<Arc<str>>,
    pub(crate) msg_ref: Option<String>,
    pub(crate) payload: Payload,
    pub(crate) assigns: S::Assigns,
    pub(crate) state: Arc<S::State>,
    pub(crate) conn: Arc<Connection>,
    pub(crate) generation: u64,
}
