//! Channels: the [`Channel`] trait that `#[channel]` implements, and the
//! task each joined channel runs in.
//!
//! Every joined topic of every connection is its own tokio task owning the
//! channel's state, as every joined topic is its own process in Phoenix. A
//! panic in a handler ends that task alone: the client gets `phx_error` for
//! the topic and rejoins, while the connection and its other channels carry
//! on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::connect::Connect;
use crate::protocol::{Outgoing, Payload, PayloadError, PHX_CLOSE, PHX_ERROR};
use crate::pubsub::{Delivery, Subscriber};
use crate::reply::{self, Reply, Status};
use crate::router::{Topic, TopicPattern};
use crate::socket::{Connection, Socket};

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
        Route { pattern: TopicPattern::new(pattern), start: spawn::<C> }
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

/// What a channel task is told after it started.
#[derive(Debug)]
pub(crate) enum Mail {
    /// A client event.
    In { msg_ref: Option<String>, event: String, payload: Payload },
    /// The client left.
    Leave { msg_ref: Option<String> },
    /// A newer join of the same topic on the same connection displaced it.
    Displaced,
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
    pub(crate) mailbox: mpsc::UnboundedReceiver<Mail>,
}

fn spawn<C: Channel>(start: Start<C::Socket>) {
    tokio::spawn(run::<C>(start));
}

/// Why a channel task ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Left,
    Stopped,
    Displaced,
    Closed,
}

/// The life of one joined channel.
async fn run<C: Channel>(start: Start<C::Socket>) {
    let Start { topic, join_ref, msg_ref, payload, assigns, conn, generation, mut mailbox } = start;
    // A join without join_ref (hand-written clients) uses its ref for the
    // channel's later frames, as Phoenix does.
    let channel_ref: Option<Arc<str>> = join_ref.as_deref().or(msg_ref.as_deref()).map(Arc::from);
    let mut socket = Socket::<C::Socket>::new(topic.clone(), channel_ref, assigns, conn.clone());
    let sent_join_ref = join_ref.as_deref();
    let reply = |status: Status, response: &Payload| {
        conn.send(&Outgoing::Reply {
            join_ref: sent_join_ref,
            msg_ref: msg_ref.as_deref(),
            topic: &topic,
            status: status.as_str(),
            response,
        });
    };

    let joined = AssertUnwindSafe(C::join(topic.clone(), payload, &mut socket)).catch_unwind().await;
    let mut channel = match joined {
        Ok(Ok(Ok((response, channel)))) => {
            let subscriber = Subscriber {
                outbox: conn.outbox.clone(),
                serializer: conn.serializer,
                generation,
                delivery: Delivery::Fastlane,
            };
            conn.pubsub.subscribe(topic.shared(), subscriber, || reply(Status::Ok, &response));
            socket.release_pending();
            tracing::debug!(topic = %topic, "joined");
            channel
        }
        Ok(Ok(Err(response))) => {
            reply(Status::Error, &response);
            tracing::debug!(topic = %topic, refusal = ?response, "join refused");
            return refuse_pending(&conn, &topic, mailbox).await;
        }
        Ok(Err(error)) => {
            tracing::error!(topic = %topic, error, "join failed");
            reply(Status::Error, &reply::reason("join crashed"));
            return refuse_pending(&conn, &topic, mailbox).await;
        }
        Err(panic) => {
            tracing::error!(topic = %topic, panic = panic_message(&*panic), "join crashed");
            reply(Status::Error, &reply::reason("join crashed"));
            return refuse_pending(&conn, &topic, mailbox).await;
        }
    };

    let control = |event: &str, payload: &Payload| {
        conn.send(&Outgoing::Control { join_ref: sent_join_ref, topic: &topic, event, payload });
    };
    let unsubscribe = || conn.pubsub.unsubscribe(&topic, conn.outbox.id(), generation);

    let exit = loop {
        let Some(mail) = mailbox.recv().await else { break Exit::Closed };
        match mail {
            Mail::In { msg_ref, event, payload } => {
                let started = std::time::Instant::now();
                let handled = AssertUnwindSafe(channel.handle_in(&event, payload, &mut socket)).catch_unwind().await;
                let crash = match handled {
                    Ok(Ok(reply)) => {
                        tracing::debug!(topic = %topic, event, elapsed = ?started.elapsed(), "handled");
                        if let Some((status, response)) = &reply.status {
                            conn.send(&Outgoing::Reply {
                                join_ref: socket.join_ref(),
                                msg_ref: msg_ref.as_deref(),
                                topic: &topic,
                                status: status.as_str(),
                                response,
                            });
                        }
                        if reply.stop {
                            break Exit::Stopped;
                        }
                        continue;
                    }
                    Ok(Err(error)) => error,
                    Err(panic) => panic_message(&*panic).to_owned(),
                };
                tracing::error!(topic = %topic, event, error = crash, "channel crashed");
                // Close the mailbox first, so the connection sees this
                // channel gone before the client can react to phx_error.
                mailbox.close();
                unsubscribe();
                control(PHX_ERROR, &reply::reason("channel_crash"));
                return;
            }
            Mail::Leave { msg_ref } => {
                unsubscribe();
                conn.send(&Outgoing::Reply {
                    join_ref: socket.join_ref(),
                    msg_ref: msg_ref.as_deref(),
                    topic: &topic,
                    status: Status::Ok.as_str(),
                    response: &Payload::empty(),
                });
                break Exit::Left;
            }
            Mail::Displaced => break Exit::Displaced,
        }
    };
    unsubscribe();
    if exit != Exit::Closed {
        control(PHX_CLOSE, &Payload::empty());
    }
    tracing::debug!(topic = %topic, reason = ?exit, "channel ended");
    drop(channel);
}

/// After a refused join, answers anything the client sent meanwhile as if
/// the topic had never been joined.
async fn refuse_pending(conn: &Connection, topic: &Topic, mut mailbox: mpsc::UnboundedReceiver<Mail>) {
    mailbox.close();
    while let Some(mail) = mailbox.recv().await {
        if let Mail::In { msg_ref, .. } = mail {
            conn.send(&Outgoing::Reply {
                join_ref: None,
                msg_ref: msg_ref.as_deref(),
                topic,
                status: Status::Error.as_str(),
                response: &reply::reason("unmatched topic"),
            });
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}
