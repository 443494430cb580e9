//! Channel tests without a network, in the manner of `Phoenix.ChannelTest`.
//!
//! A [`TestSocket`] runs the real dispatcher and channels in-process;
//! only the transport is replaced by a queue the test reads. What the test
//! sees is what Phoenix's test process sees:
//!
//! - [`TestChannel::assert_push`] sees every message the client would get
//!   on the topic: the channel's own pushes, and the broadcasts its
//!   subscription forwards to the client (as changed by `handle_out` for
//!   intercepted events; not those it sent itself with `broadcast_from`);
//! - joining a topic also subscribes the test to it (Phoenix's
//!   `subscribe_and_join`), so [`TestChannel::assert_broadcast`] sees every
//!   broadcast on the topic, including those the channel sent with
//!   `broadcast_from`, before any `handle_out`.
//!
//! Assertions wait up to a timeout (1 s by default) and, on failure, panic
//! with what did arrive.
//!
//! ```ignore
//! use phx_channels::testing::TestSocket;
//!
//! #[tokio::test]
//! async fn adding_a_comment_broadcasts_it() {
//!     let mut socket = TestSocket::<UserSocket>::connect(&[("user_id", "7")]).await.unwrap();
//!     let (reply, channel) = socket.join("comments:42", json!({})).await.unwrap();
//!     assert_eq!(reply, json!({"hey": "there", "comments": []}));
//!
//!     let r = channel.push("comment:add", json!({"content": "hi"}));
//!     channel.assert_reply(&r, Status::Ok, json!({})).await;
//!     channel.assert_broadcast("comments:42:new", json!({"comment": {"content": "hi"}})).await;
//! }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use crate::channel::Routes;
use crate::connect::{Connect, ConnectInfo, Params, Refuse};
use crate::dispatch::{Dispatcher, Driven, Wiring};
use crate::metrics::Metrics;
use crate::options::SocketOptions;
use crate::outbox::Outbox;
use crate::protocol::{Frame, Message, Payload, Serializer, PHX_JOIN, PHX_LEAVE, PHX_REPLY};
use crate::pubsub::{PubSub, Subscriber};
use crate::reply::Status;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A frame the test received, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A reply to the message with `msg_ref`.
    Reply {
        /// The topic.
        topic: String,
        /// The ref of the message answered.
        msg_ref: String,
        /// `ok` or `error`.
        status: Status,
        /// The response.
        response: Value,
    },
    /// A push from the channel to its client (or `phx_close` /
    /// `phx_error`): its frame carries the join_ref.
    Push {
        /// The topic.
        topic: String,
        /// The event.
        event: String,
        /// The payload.
        payload: Value,
    },
    /// A broadcast: forwarded to the client by the channel's subscription
    /// (its frame carries no join_ref), or seen on the topic by the test's
    /// own subscription.
    Broadcast {
        /// The topic.
        topic: String,
        /// The event.
        event: String,
        /// The payload.
        payload: Value,
    },
}

impl Received {
    fn decode(frame: &Frame) -> Option<Received> {
        let (join_ref, msg_ref, topic, event, payload): (Option<String>, Option<String>, String, String, Value) =
            serde_json::from_slice(frame.as_bytes()).ok()?;
        if event == PHX_REPLY {
            let Value::Object(mut reply) = payload else { return None };
            let status = reply.remove("status")?.as_str()?.parse().ok()?;
            let response = reply.remove("response")?;
            return Some(Received::Reply { topic, msg_ref: msg_ref.unwrap_or_default(), status, response });
        }
        // A broadcast's ref is null, or its position on a topic with history.
        if join_ref.is_none() && msg_ref.as_deref().is_none_or(crate::protocol::Position::looks_like) {
            Some(Received::Broadcast { topic, event, payload })
        } else {
            Some(Received::Push { topic, event, payload })
        }
    }
}

impl Received {
    /// The payload of a message the client got on `topic` named `event`:
    /// a push, or a broadcast its channel forwarded (what Phoenix's
    /// `assert_push` matches, `%Phoenix.Socket.Message{}`).
    fn pushed(&self, topic: &str, event: &str) -> Option<&Value> {
        match self {
            Received::Push { topic: t, event: e, payload } | Received::Broadcast { topic: t, event: e, payload }
                if t == topic && e == event =>
            {
                Some(payload)
            }
            _ => None,
        }
    }

    fn into_payload(self) -> Option<Value> {
        match self {
            Received::Push { payload, .. } | Received::Broadcast { payload, .. } => Some(payload),
            Received::Reply { .. } => None,
        }
    }
}

impl fmt::Display for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Received::Reply { topic, msg_ref, status, response } => {
                write!(f, "reply to {msg_ref} on {topic}: {status} {response}")
            }
            Received::Push { topic, event, payload } => write!(f, "push {event} on {topic}: {payload}"),
            Received::Broadcast { topic, event, payload } => write!(f, "broadcast {event} on {topic}: {payload}"),
        }
    }
}

/// What the test has received and not yet asserted on.
struct Inbox {
    outbox: Arc<Outbox>,
    frames: Mutex<VecDeque<Received>>,
}

impl Inbox {
    fn new() -> Arc<Self> {
        // Tests may let frames pile up; the limit only guards against a runaway loop.
        Arc::new(Inbox { outbox: Arc::new(Outbox::new(256 * 1024 * 1024)), frames: Mutex::new(VecDeque::new()) })
    }

    fn drain(&self) {
        // A closed outbox holds nothing more to read.
        let batch = self.outbox.take().unwrap_or_default();
        let mut frames = self.frames.lock();
        frames.extend(batch.iter().filter_map(Received::decode));
    }

    /// Waits for the first frame `matches` accepts and removes it.
    async fn expect(&self, timeout: Duration, matches: impl Fn(&Received) -> bool) -> Result<Received, Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain();
            {
                let mut frames = self.frames.lock();
                if let Some(i) = frames.iter().position(&matches) {
                    return Ok(frames.remove(i).expect("the position was just found"));
                }
            }
            if tokio::time::timeout_at(deadline, self.outbox.ready()).await.is_err() {
                self.drain();
                return Err(self.frames.lock().iter().cloned().collect());
            }
        }
    }
}

struct Shared<S: Connect + Routes> {
    dispatcher: Driven,
    inbox: Arc<Inbox>,
    pubsub: PubSub,
    next_ref: Mutex<u64>,
    timeout: Mutex<Duration>,
    socket: std::marker::PhantomData<fn() -> S>,
}

impl<S: Connect + Routes> Shared<S> {
    fn next_ref(&self) -> String {
        let mut next = self.next_ref.lock();
        *next += 1;
        next.to_string()
    }

    fn send(&self, join_ref: Option<&str>, msg_ref: &str, topic: &str, event: &str, payload: Payload) {
        self.dispatcher.dispatch(Message {
            join_ref: join_ref.map(str::to_owned),
            msg_ref: Some(msg_ref.to_owned()),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        });
    }

    fn timeout(&self) -> Duration {
        *self.timeout.lock()
    }
}

/// A connected socket, in-process.
pub struct TestSocket<S: Connect + Routes> {
    shared: Arc<Shared<S>>,
}

/// Builds a [`TestSocket`] with a given state and PubSub: made by
/// [`TestSocket::with_state`] or [`TestSocket::builder`].
pub struct TestSocketBuilder<S: Connect> {
    state: Arc<S::State>,
    pubsub: Option<PubSub>,
}

impl<S: Connect + Routes> TestSocketBuilder<S> {
    /// A PubSub shared with other test sockets. Default: a fresh one.
    #[must_use]
    pub fn pubsub(mut self, pubsub: &PubSub) -> Self {
        self.pubsub = Some(pubsub.clone());
        self
    }

    /// Connects through `S::connect` with these query parameters.
    pub async fn connect(self, params: &[(&str, &str)]) -> Result<TestSocket<S>, Refuse> {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = Params::from_query(&query.join("&"));
        let info = ConnectInfo::new(None, Uri::from_static("/socket/websocket"), HeaderMap::new());
        let assigns = S::connect(&params, &info, &self.state).await?;
        Ok(self.with_assigns(assigns))
    }

    /// A socket with these assigns, without running `connect` (Phoenix's
    /// `socket/3`).
    pub fn with_assigns(self, assigns: S::Assigns) -> TestSocket<S> {
        TestSocket::start(self.state, self.pubsub.unwrap_or_else(PubSub::local), assigns)
    }
}

/// A reference to a pushed message, to assert on its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRef(String);

fn payload_of<T: Serialize>(payload: &T) -> Payload {
    Payload::json(payload).unwrap_or_else(|e| panic!("test payload does not serialize: {e}"))
}

fn value_of<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| panic!("expected value does not serialize: {e}"))
}

fn show(frames: &[Received]) -> String {
    if frames.is_empty() {
        return "nothing".to_owned();
    }
    frames.iter().map(|f| format!("\n    {f}")).collect()
}

/// Waits for the reply to `msg_ref` on `topic`, or panics saying what came.
async fn expect_reply(inbox: &Inbox, timeout: Duration, topic: &str, msg_ref: &str, what: &str) -> (Status, Value) {
    let found = inbox
        .expect(timeout, |f| matches!(f, Received::Reply { topic: t, msg_ref: r, .. } if t == topic && r == msg_ref))
        .await;
    match found {
        Ok(Received::Reply { status, response, .. }) => (status, response),
        Ok(_) => unreachable!("only replies match"),
        Err(seen) => panic!("no reply to {what} on {topic} within {timeout:?}; received: {}", show(&seen)),
    }
}

impl<S: Connect + Routes> TestSocket<S>
where
    S::State: Default,
{
    /// Connects through `S::connect` with these query parameters, on a
    /// fresh in-process PubSub, with the state's `Default`.
    pub async fn connect(params: &[(&str, &str)]) -> Result<Self, Refuse> {
        Self::builder().connect(params).await
    }

    /// A socket with these assigns, without running `connect` (Phoenix's
    /// `socket/3`), with the state's `Default`.
    pub fn with_assigns(assigns: S::Assigns) -> Self {
        Self::builder().with_assigns(assigns)
    }

    /// A builder with the state's `Default`, e.g. to share a PubSub.
    pub fn builder() -> TestSocketBuilder<S> {
        Self::with_state(S::State::default())
    }
}

impl<S: Connect + Routes> TestSocket<S> {
    /// A socket whose `connect` and channels see `state` (a value, or an
    /// `Arc` the test keeps to look at it afterwards):
    ///
    /// ```ignore
    /// let app = Arc::new(App::default());
    /// let pubsub = PubSub::local();
    /// let alice = TestSocket::<UserSocket>::with_state(app.clone())
    ///     .pubsub(&pubsub)
    ///     .connect(&[("user_id", "alice")])
    ///     .await?;
    /// ```
    pub fn with_state(state: impl Into<Arc<S::State>>) -> TestSocketBuilder<S> {
        TestSocketBuilder { state: state.into(), pubsub: None }
    }

    fn start(state: Arc<S::State>, pubsub: PubSub, assigns: S::Assigns) -> Self {
        crate::channel::keep_histories::<S>(&pubsub);
        let inbox = Inbox::new();
        let wiring = Wiring {
            outbox: inbox.outbox.clone(),
            serializer: Serializer::V2,
            pubsub: pubsub.clone(),
            metrics: Arc::new(Metrics::default()),
            traceparent: None,
        };
        let dispatcher = Dispatcher::<S>::new(assigns, state, wiring, &SocketOptions::default());
        let shared = Shared {
            dispatcher: Driven::spawn(dispatcher, tracing::info_span!("socket", transport = "test")),
            inbox,
            pubsub,
            next_ref: Mutex::new(0),
            timeout: Mutex::new(DEFAULT_TIMEOUT),
            socket: std::marker::PhantomData,
        };
        TestSocket { shared: Arc::new(shared) }
    }

    /// How long assertions wait (1 s by default).
    pub fn set_timeout(&self, timeout: Duration) {
        *self.shared.timeout.lock() = timeout;
    }

    /// The PubSub, to broadcast from the test.
    pub fn pubsub(&self) -> &PubSub {
        &self.shared.pubsub
    }

    /// Joins `topic` and subscribes the test to it (Phoenix's
    /// `subscribe_and_join`): the join reply's response and the channel, or
    /// the refusal's response.
    pub async fn join<T: Serialize>(&mut self, topic: &str, payload: T) -> Result<(Value, TestChannel), Value> {
        let observer = Inbox::new();
        let subscriber = Subscriber::new(observer.outbox.id(), Serializer::V2, observer.outbox.clone());
        self.shared.pubsub.subscribe(topic, subscriber);
        let join_ref = self.shared.next_ref();
        self.shared.send(Some(&join_ref), &join_ref, topic, PHX_JOIN, payload_of(&payload));
        let reply = self.wait_reply(topic, &join_ref).await;
        let channel = TestChannel { topic: topic.to_owned(), join_ref, socket: self.shared.clone(), observer };
        match reply {
            (Status::Ok, response) => Ok((response, channel)),
            (_, response) => {
                channel.unsubscribe_observer();
                Err(response)
            }
        }
    }

    async fn wait_reply(&self, topic: &str, msg_ref: &str) -> (Status, Value) {
        expect_reply(&self.shared.inbox, self.shared.timeout(), topic, msg_ref, "the join").await
    }

    /// Closes the connection: every channel terminates with `Closed`, as
    /// when a client disconnects (their `TestChannel`s see nothing more).
    pub fn close(self) {
        self.shared.dispatcher.finish(false);
        self.shared.inbox.outbox.close(crate::outbox::CloseReason::Gone);
    }
}

impl<S: Connect + Routes> fmt::Debug for TestSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestSocket").finish_non_exhaustive()
    }
}

/// A joined channel of a [`TestSocket`].
pub struct TestChannel {
    topic: String,
    join_ref: String,
    socket: Arc<dyn ChannelTransport>,
    observer: Arc<Inbox>,
}

/// What a [`TestChannel`] needs of its socket, whatever the socket type.
trait ChannelTransport: Send + Sync {
    fn send(&self, join_ref: &str, msg_ref: &str, topic: &str, event: &str, payload: Payload);
    fn next_ref(&self) -> String;
    fn inbox(&self) -> &Inbox;
    fn timeout(&self) -> Duration;
    fn pubsub(&self) -> &PubSub;
}

impl<S: Connect + Routes> ChannelTransport for Shared<S> {
    fn send(&self, join_ref: &str, msg_ref: &str, topic: &str, event: &str, payload: Payload) {
        Shared::send(self, Some(join_ref), msg_ref, topic, event, payload);
    }
    fn next_ref(&self) -> String {
        Shared::next_ref(self)
    }
    fn inbox(&self) -> &Inbox {
        &self.inbox
    }
    fn timeout(&self) -> Duration {
        Shared::timeout(self)
    }
    fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }
}

impl TestChannel {
    /// The joined topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Pushes `event` to the channel, as the client would.
    pub fn push<T: Serialize>(&self, event: &str, payload: T) -> PushRef {
        let msg_ref = self.socket.next_ref();
        self.socket.send(&self.join_ref, &msg_ref, &self.topic, event, payload_of(&payload));
        PushRef(msg_ref)
    }

    /// Waits for the reply to `push` and returns its status and response,
    /// for assertions on part of the response:
    ///
    /// ```ignore
    /// let (status, response) = channel.reply(&push).await;
    /// assert_eq!(status, Status::Error);      // or `status == "error"`
    /// assert!(response["errors"]["content"].is_array());
    /// ```
    pub async fn reply(&self, push: &PushRef) -> (Status, Value) {
        let what = format!("push {}", push.0);
        expect_reply(self.socket.inbox(), self.socket.timeout(), &self.topic, &push.0, &what).await
    }

    /// Asserts the reply to `push` has this status and response.
    pub async fn assert_reply<T: Serialize>(&self, push: &PushRef, status: Status, expected: T) {
        let expected = value_of(&expected);
        let (got_status, got) = self.reply(push).await;
        assert!(
            got_status == status && got == expected,
            "reply to push {} on {}:\n  expected {status} {expected}\n  received {got_status} {got}",
            push.0,
            self.topic,
        );
    }

    /// Asserts the client got `event` with this payload on the topic:
    /// pushed by the channel, or a broadcast its subscription forwarded
    /// (Phoenix's `assert_push`, which matches every
    /// `%Phoenix.Socket.Message{}` sent to the client). An intercepted
    /// broadcast is seen as `handle_out` pushed it, or not at all if it
    /// dropped it; a broadcast the channel sent with `broadcast_from` is not
    /// seen here (its client is left out), only by
    /// [`assert_broadcast`](Self::assert_broadcast).
    pub async fn assert_push<T: Serialize>(&self, event: &str, expected: T) {
        let expected = value_of(&expected);
        let timeout = self.socket.timeout();
        let topic = &self.topic;
        let found = self.socket.inbox().expect(timeout, |f| f.pushed(topic, event) == Some(&expected)).await;
        if let Err(seen) = found {
            panic!("expected push {event} {expected} on {topic} within {timeout:?}; received: {}", show(&seen));
        }
    }

    /// Waits for the next `event` the client gets on the topic (as
    /// [`assert_push`](Self::assert_push) sees them) and returns its
    /// payload, for assertions on part of it (Elixir's
    /// `assert_push "e", %{"k" => v}` binding `v`).
    pub async fn next_push(&self, event: &str) -> Value {
        let timeout = self.socket.timeout();
        let topic = &self.topic;
        let found = self.socket.inbox().expect(timeout, |f| f.pushed(topic, event).is_some()).await;
        match found.map(Received::into_payload) {
            Ok(Some(payload)) => payload,
            Ok(None) => unreachable!("only pushes and broadcasts match"),
            Err(seen) => panic!("expected push {event} on {topic} within {timeout:?}; received: {}", show(&seen)),
        }
    }

    /// Waits for the next broadcast of `event` on the topic and returns its
    /// payload.
    pub async fn next_broadcast(&self, event: &str) -> Value {
        let timeout = self.socket.timeout();
        let found =
            self.observer.expect(timeout, |f| matches!(f, Received::Broadcast { event: e, .. } if e == event)).await;
        match found {
            Ok(Received::Broadcast { payload, .. }) => payload,
            Ok(_) => unreachable!("only broadcasts match"),
            Err(seen) => {
                panic!("expected broadcast {event} on {} within {timeout:?}; received: {}", self.topic, show(&seen))
            }
        }
    }

    /// Asserts the client gets no `event` on the topic within `within`
    /// (neither pushed nor forwarded, as [`assert_push`](Self::assert_push)
    /// sees them).
    pub async fn refute_push(&self, event: &str, within: Duration) {
        let topic = &self.topic;
        let found = self.socket.inbox().expect(within, |f| f.pushed(topic, event).is_some()).await;
        if let Ok(push) = found {
            panic!("expected no push {event} on {topic} within {within:?}; received {push}");
        }
    }

    /// Asserts `event` with this payload was broadcast on the topic.
    pub async fn assert_broadcast<T: Serialize>(&self, event: &str, expected: T) {
        let expected = value_of(&expected);
        let timeout = self.socket.timeout();
        let found = self
            .observer
            .expect(
                timeout,
                |f| matches!(f, Received::Broadcast { event: e, payload, .. } if e == event && *payload == expected),
            )
            .await;
        if let Err(seen) = found {
            panic!(
                "expected broadcast {event} {expected} on {} within {timeout:?}; received: {}",
                self.topic,
                show(&seen)
            );
        }
    }

    /// Asserts nothing named `event` is broadcast on the topic within `within`.
    pub async fn refute_broadcast(&self, event: &str, within: Duration) {
        let found =
            self.observer.expect(within, |f| matches!(f, Received::Broadcast { event: e, .. } if e == event)).await;
        if let Ok(broadcast) = found {
            panic!("expected no broadcast {event} on {} within {within:?}; received {broadcast}", self.topic);
        }
    }

    /// Broadcasts on the channel's topic from the test, to every subscriber
    /// the test's own included (Phoenix's `@endpoint.broadcast`): the channel
    /// forwards it to its client (or hands it to `handle_out`), and
    /// [`assert_broadcast`](Self::assert_broadcast) sees it.
    pub fn broadcast<T: Serialize>(&self, event: &str, payload: T) {
        self.socket.pubsub().broadcast(&self.topic, event, payload_of(&payload)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Broadcasts on the channel's topic from the test, to every subscriber
    /// but the test itself (Phoenix's `broadcast_from(socket, ..)` in a
    /// channel test): the channel forwards it to its client (or hands it
    /// to `handle_out`), and [`assert_broadcast`](Self::assert_broadcast)
    /// does not see it.
    pub fn broadcast_from<T: Serialize>(&self, event: &str, payload: T) {
        self.socket
            .pubsub()
            .broadcast_from(self.observer.outbox.id(), &self.topic, event, payload_of(&payload))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Leaves the topic; returns the leave reply's status and response.
    pub async fn leave(self) -> (Status, Value) {
        let push = self.push_reserved(PHX_LEAVE);
        let reply = self.reply(&push).await;
        self.unsubscribe_observer();
        reply
    }

    fn push_reserved(&self, event: &str) -> PushRef {
        let msg_ref = self.socket.next_ref();
        self.socket.send(&self.join_ref, &msg_ref, &self.topic, event, Payload::empty());
        PushRef(msg_ref)
    }

    /// Asserts the channel ended gracefully (`phx_close`).
    pub async fn assert_closed(&self) {
        self.assert_push(crate::protocol::PHX_CLOSE, serde_json::json!({})).await;
    }

    /// Asserts the channel crashed (`phx_error`).
    pub async fn assert_crashed(&self) {
        self.assert_push(crate::protocol::PHX_ERROR, serde_json::json!({"reason": "channel_crash"})).await;
    }

    fn unsubscribe_observer(&self) {
        self.socket.pubsub().unsubscribe(&self.topic, self.observer.outbox.id(), 0);
    }
}

impl Drop for TestChannel {
    fn drop(&mut self) {
        self.unsubscribe_observer();
    }
}

impl fmt::Debug for TestChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestChannel").field("topic", &self.topic).field("join_ref", &self.join_ref).finish()
    }
}
