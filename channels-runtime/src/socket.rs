//! [`Socket`]: what a channel handler sees of its connection (Phoenix's
//! `socket` argument): topic, assigns, and the ways to push and broadcast.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::connect::Connect;
use crate::connection::Connection;
use crate::mailbox::{Address, ChannelRef};
use crate::presence::{PendingTrack, PresenceError, PresenceScope, Scope, PRESENCE_DIFF, PRESENCE_STATE};
use crate::protocol::{IntoPayload, Outgoing, Payload, Position, Serializer, PHX_POSITION};
use crate::pubsub::{BroadcastError, Prepared, PubSub, Recovery};
use crate::reply::Reply;
use crate::router::Topic;

/// A joined channel's view of its connection, passed to every handler.
///
/// ```no_run
/// # use phx_channels_runtime as phx_channels;
/// # use phx_channels::socket::Socket;
/// # use phx_channels::connect::Connect;
/// # fn demo<S: Connect>(socket: &mut Socket<S>) -> Result<(), Box<dyn std::error::Error>> {
/// use serde_json::json;
/// socket.push("notice", json!({"text": "auto-saved"}))?;
/// socket.broadcast("comments:42:new", json!({"comment": {"content": "hi"}}))?;
/// // Binary payloads travel the same way (V2 binary frames):
/// socket.broadcast_from("yjs:update", vec![0u8, 1, 2])?;
/// # Ok(()) }
/// ```
pub struct Socket<S: Connect> {
    topic: Topic,
    /// The ref the channel's frames carry: the join's join_ref, or its ref
    /// when the client sent no join_ref (as Phoenix does).
    join_ref: Option<Arc<str>>,
    assigns: S::Assigns,
    state: Arc<S::State>,
    conn: Arc<Connection>,
    /// Which channel instance of the connection this is.
    generation: u64,
    /// The ref of the client message being handled, for `socket_ref`.
    current_ref: Option<Box<str>>,
    /// What few channels use (timers, pushes made while joining): boxed
    /// when first needed, so that a joined channel waiting for mail does
    /// not carry their room.
    extras: std::sync::OnceLock<Box<Extras>>,
    /// The join reply has not gone out yet: pushes wait for it.
    joining: bool,
    /// The client sent a join_ref (echoed as sent by `phx_close` and
    /// `phx_error`, which carry none otherwise).
    join_ref_sent: bool,
    /// Its subscription takes positions (a topic with history, a client
    /// that asked).
    positions: bool,
}

#[derive(Default)]
struct Extras {
    /// Where [`ChannelRef`]s to this channel deliver, once one was taken;
    /// dropped when the channel ends, which is how they learn it.
    address: std::sync::OnceLock<Arc<Address>>,
    /// Pushes made before the join reply went out, sent right after it.
    pending: Vec<(String, Payload)>,
    /// Presences to track right after the join reply (then the state is
    /// pushed): `Presence::track_after_join`.
    tracks: Vec<PendingTrack>,
    timers: Vec<tokio::task::AbortHandle>,
    /// A rejoin on a topic with history, while `join` runs.
    recovery: Option<Prepared>,
    /// The position of the intercepted broadcast `handle_out` is handling,
    /// for a client that takes positions: its pushes carry it.
    position: Option<Position>,
}

impl<S: Connect> Socket<S> {
    pub(crate) fn new(
        topic: Topic,
        join_ref: Option<Arc<str>>,
        join_ref_sent: bool,
        assigns: S::Assigns,
        state: Arc<S::State>,
        conn: Arc<Connection>,
        generation: u64,
    ) -> Self {
        Socket {
            topic,
            join_ref,
            assigns,
            state,
            conn,
            generation,
            current_ref: None,
            extras: std::sync::OnceLock::new(),
            joining: true,
            join_ref_sent,
            positions: false,
        }
    }

    /// The join_ref exactly as the client sent it.
    pub(crate) fn join_ref_as_sent(&self) -> Option<&str> {
        self.join_ref.as_deref().filter(|_| self.join_ref_sent)
    }

    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_init(Box::default);
        self.extras.get_mut().expect("just made")
    }

    /// Who owns what this channel tracks (presences).
    pub(crate) fn owner(&self) -> (u64, u64) {
        (self.conn.outbox.id().get(), self.generation)
    }

    /// Which channel instance of the connection this is.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The topic this channel joined, e.g. `comments:42`.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The ref of the join this channel instance answers to.
    pub fn join_ref(&self) -> Option<&str> {
        self.join_ref.as_deref()
    }

    /// The W3C trace context the client sent with its connect request (the
    /// `traceparent` header or connect parameter), to carry on to the
    /// services a handler calls. See [`crate::trace`].
    pub fn traceparent(&self) -> Option<&crate::trace::TraceParent> {
        self.connection().traceparent.as_deref()
    }

    /// The assigns `connect` returned, as copied into this channel.
    pub fn assigns(&self) -> &S::Assigns {
        &self.assigns
    }

    /// This channel's copy of the assigns; changes stay in this channel, as
    /// `assign/3` in a Phoenix channel does.
    pub fn assigns_mut(&mut self) -> &mut S::Assigns {
        &mut self.assigns
    }

    /// The application's state, as given to the endpoint
    /// ([`Endpoint::with_state`](crate::endpoint::Endpoint::with_state));
    /// shared by every connection, never copied.
    pub fn state(&self) -> &S::State {
        &self.state
    }

    /// The socket id `Connect::id` gave, if any.
    pub fn id(&self) -> Option<&str> {
        self.conn.id.as_deref()
    }

    /// The endpoint's PubSub, to broadcast on other topics.
    pub fn pubsub(&self) -> &PubSub {
        &self.conn.pubsub
    }

    /// The serializer the client negotiated.
    pub fn serializer(&self) -> Serializer {
        self.conn.serializer
    }

    /// Pushes `event` with `payload` (JSON or binary, see [`IntoPayload`])
    /// to this channel's client only. A push made inside `join` is sent
    /// right after the join reply. A binary payload cannot reach a V1 or
    /// LongPoll client: it is dropped there with a warning.
    pub fn push(&mut self, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        self.push_frame(event, payload.into_payload()?);
        Ok(())
    }

    pub(crate) fn push_frame(&mut self, event: &str, payload: Payload) {
        if self.joining {
            return self.extras().pending.push((event.to_owned(), payload));
        }
        let position = self.extras.get().and_then(|e| e.position.as_ref()).map(ToString::to_string);
        let position = position.as_deref();
        let join_ref = self.join_ref.as_deref();
        self.conn.send(&Outgoing::Push { join_ref, topic: &self.topic, event, payload: &payload, position });
        if position.is_some() && matches!(payload, Payload::Binary(_)) {
            // A binary frame has no ref: its position follows in a frame of its own.
            let empty = Payload::empty();
            let topic = &self.topic;
            self.conn.send(&Outgoing::Push { join_ref, topic, event: PHX_POSITION, payload: &empty, position });
        }
    }

    /// What a client rejoining this topic with a position is about to be
    /// sent, seen from `join` (`None` outside `join`, and when the client
    /// did not ask for positions). `join` may refuse the join, or
    /// [decline](Socket::decline_recovery) to recover. See
    /// `docs/recovery.md`.
    ///
    /// ```no_run
    /// # use phx_channels_runtime as phx_channels;
    /// # use phx_channels::socket::Socket;
    /// # use phx_channels::connect::Connect;
    /// # use phx_channels::channel::JoinError;
    /// # fn demo<S: Connect>(socket: &mut Socket<S>) -> Result<(), JoinError> {
    /// if let Some(recovery) = socket.recovery() {
    ///     if recovery.missed().len() > 50 {
    ///         // too much to replay one by one: the join reply carries the state
    ///         socket.decline_recovery();
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn recovery(&self) -> Option<&Recovery> {
        self.extras.get().and_then(|e| e.recovery.as_ref()).map(Prepared::recovery)
    }

    /// Declines the recovery [`Socket::recovery`] describes: the client is
    /// told it was not recovered (`"reason": "declined"`) and gets only
    /// live broadcasts, from the join reply on (the join reply should then
    /// carry the state). Does nothing outside `join`.
    pub fn decline_recovery(&mut self) {
        if let Some(prepared) = self.extras.get_mut().and_then(|e| e.recovery.as_mut()) {
            prepared.decline();
        }
    }

    /// Whether its subscription takes positions.
    pub(crate) fn takes_positions(&self) -> bool {
        self.positions
    }

    /// Its subscription takes positions from now on.
    pub(crate) fn take_positions_now(&mut self) {
        self.positions = true;
    }

    /// Gives `join` the rejoin it answers.
    pub(crate) fn set_recovery(&mut self, prepared: Prepared) {
        self.extras().recovery = Some(prepared);
    }

    /// Takes the rejoin back once `join` is done.
    pub(crate) fn take_recovery(&mut self) -> Option<Prepared> {
        self.extras.get_mut().and_then(|e| e.recovery.take())
    }

    /// The position the pushes of `handle_out` carry, while it runs.
    pub(crate) fn set_position(&mut self, position: Option<Position>) {
        if position.is_some() || self.extras.get().is_some_and(|e| e.position.is_some()) {
            self.extras().position = position;
        }
    }

    /// Broadcasts `event` to every subscriber of this channel's topic, this
    /// client included, on every node. The payload (JSON or binary) is
    /// encoded once per serializer, however many subscribers get it.
    ///
    /// Bounded by the socket's fan-out limits: a payload over
    /// `max_broadcast_bytes`, or a broadcast over `max_broadcasts_per_second`,
    /// `max_broadcast_bytes_per_second` or `max_topic_broadcast_bytes_per_second`
    /// is not sent (see [`BroadcastError`]).
    pub fn broadcast(&self, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        let payload = self.admit(event, payload)?;
        self.conn.pubsub.broadcast(&self.topic, event, payload)
    }

    /// Checks a broadcast against the connection's fan-out limits (counting
    /// it toward the per-second limits, in broadcasts and in bytes) without
    /// sending it yet:
    /// [`AdmittedBroadcast::send`] sends it later, as [`Socket::broadcast`]
    /// would have. For work that must happen only when the broadcast will
    /// go out, between the two: a comment stored only once its broadcast
    /// was admitted, so a refused one (`too many broadcasts`) is not kept.
    /// Dropped unsent, it still counted toward the rate.
    ///
    /// ```no_run
    /// # use phx_channels_runtime as phx_channels;
    /// # use phx_channels::socket::Socket;
    /// # use phx_channels::connect::Connect;
    /// # async fn store(_content: &str) -> Result<(), std::io::Error> { Ok(()) }
    /// # async fn demo<S: Connect>(socket: &mut Socket<S>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use serde_json::json;
    /// // Refused here (a limit) before anything is stored:
    /// let broadcast = socket.admit_broadcast("comments:42:new", json!({"comment": {"content": "hi"}}))?;
    /// store("hi").await?; // an error here sends nothing
    /// broadcast.send()?; // only a busy broker can refuse it now
    /// # Ok(()) }
    /// ```
    pub fn admit_broadcast(&self, event: &str, payload: impl IntoPayload) -> Result<AdmittedBroadcast, BroadcastError> {
        let payload = self.admit(event, payload)?;
        Ok(AdmittedBroadcast {
            pubsub: self.conn.pubsub.clone(),
            topic: self.topic.clone(),
            event: event.to_owned(),
            payload,
        })
    }

    /// The payload, if the connection's fan-out limits let it be broadcast.
    fn admit(&self, event: &str, payload: impl IntoPayload) -> Result<Payload, BroadcastError> {
        let payload = payload.into_payload()?;
        self.conn.limits.admit_broadcast(&self.topic, event, &payload)?;
        Ok(payload)
    }

    /// Broadcasts to every subscriber of this channel's topic except this
    /// client, on every node. With the [`Payload`] a handler received, the
    /// bytes go out unchanged (a relay). Bounded like [`Socket::broadcast`].
    pub fn broadcast_from(&self, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        let payload = self.admit(event, payload)?;
        self.conn.pubsub.broadcast_from(self.conn.outbox.id(), &self.topic, event, payload)
    }

    /// Broadcasts to the subscribers of this channel's topic on this node
    /// only. Bounded like [`Socket::broadcast`].
    pub fn local_broadcast(&self, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        let payload = self.admit(event, payload)?;
        self.conn.pubsub.local_broadcast(&self.topic, event, payload)
    }

    /// A handle to this channel, to send it messages (received in
    /// `handle_info`) from any task.
    pub fn channel_ref(&self) -> ChannelRef {
        let extras = self.extras.get_or_init(Box::default);
        ChannelRef::new(extras.address.get_or_init(|| Address::new(self.conn.mailbox().clone(), self.generation)))
    }

    /// Sends `message` to this channel's `handle_info` after `delay`
    /// (Elixir's `Process.send_after/3`). Pending timers are cancelled when
    /// the channel ends.
    pub fn send_after<M: Any + Send>(&mut self, delay: Duration, message: M) -> TimerRef {
        let me = self.channel_ref();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The channel may have ended meanwhile; nothing to do then.
            let _ = me.send(message);
        })
        .abort_handle();
        let timers = &mut self.extras().timers;
        timers.retain(|t| !t.is_finished());
        timers.push(timer.clone());
        TimerRef(timer)
    }

    /// A reference to the message being handled, to reply to it later from
    /// another task (Phoenix's `socket_ref/1` and `reply/2`). `None`
    /// outside `handle_in`.
    ///
    /// Return [`Reply::none`] from the handler, then call
    /// [`SocketRef::reply`] when the answer is ready.
    pub fn socket_ref(&self) -> Option<SocketRef> {
        self.current_ref.as_ref().map(|msg_ref| SocketRef {
            conn: self.conn.clone(),
            topic: self.topic.shared().clone(),
            join_ref: self.join_ref.clone(),
            msg_ref: msg_ref.to_string(),
        })
    }

    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    pub(crate) fn set_current_ref(&mut self, msg_ref: Option<String>) {
        self.current_ref = msg_ref.map(String::into_boxed_str);
    }

    pub(crate) fn take_current_ref(&mut self) -> Option<String> {
        self.current_ref.take().map(String::from)
    }

    /// What the channel holds beyond its state goes with it: its timers,
    /// and its address (its `ChannelRef`s see it gone).
    pub(crate) fn release(&mut self) {
        // Dropping the extras drops the address.
        for timer in self.extras.take().map(|extras| extras.timers).unwrap_or_default() {
            timer.abort();
        }
    }

    /// Sends the pushes held back while joining (later pushes go out at
    /// once), then tracks the presences held for after the join and pushes
    /// `presence_state`. Called right after the join reply.
    pub(crate) fn release_pending(&mut self) -> Result<(), PresenceError> {
        self.joining = false;
        let Some(extras) = self.extras.get_mut() else { return Ok(()) };
        let pending = std::mem::take(&mut extras.pending);
        let tracks = std::mem::take(&mut extras.tracks);
        for (event, payload) in pending {
            self.push_frame(&event, payload);
        }
        if tracks.is_empty() {
            return Ok(());
        }
        self.track_and_push_state(tracks)
    }

    /// Tracks `tracks`, then pushes everyone on the topic as
    /// `presence_state`: the joiner gets its own `presence_diff` first, as
    /// from Phoenix.
    fn track_and_push_state(&mut self, tracks: Vec<PendingTrack>) -> Result<(), PresenceError> {
        let tracked = crate::presence::track_pending(&self.presence_scope(), tracks)?;
        // Maps of JSON values always encode.
        if let Some(Ok(payload)) = tracked.own_diff.as_ref().map(Payload::json) {
            // As the topic's broadcast would reach this client: no join_ref.
            self.conn.send(&Outgoing::Broadcast {
                topic: &self.topic,
                event: PRESENCE_DIFF,
                payload: &payload,
                position: None,
            });
        }
        if let Ok(payload) = Payload::json(&tracked.state) {
            self.push_frame(PRESENCE_STATE, payload);
        }
        Ok(())
    }
}

impl<S: Connect> PresenceScope for Socket<S> {
    fn presence_scope(&self) -> Scope<'_> {
        Scope {
            pubsub: &self.conn.pubsub,
            topic: &self.topic,
            owner: self.owner(),
            max_meta_bytes: self.conn.limits.max_presence_meta_bytes(),
        }
    }

    fn track_after_join(&mut self, track: PendingTrack) -> Result<(), PresenceError> {
        if !self.joining {
            return self.track_and_push_state(vec![track]);
        }
        if self.extras().tracks.iter().any(|held| held.key == track.key) {
            return Err(PresenceError::AlreadyTracked { topic: self.topic.to_string(), key: track.key });
        }
        self.extras().tracks.push(track);
        Ok(())
    }
}

impl<S: Connect> std::fmt::Debug for Socket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("topic", &self.topic)
            .field("join_ref", &self.join_ref)
            .field("id", &self.conn.id)
            .field("serializer", &self.conn.serializer)
            .finish_non_exhaustive()
    }
}

/// A pending timer made by [`Socket::send_after`].
#[derive(Debug, Clone)]
pub struct TimerRef(tokio::task::AbortHandle);

impl TimerRef {
    /// Cancels the timer; its message is not sent if it has not been yet.
    pub fn cancel(&self) {
        self.0.abort();
    }
}

/// A message to reply to later, from any task: Phoenix's `socket_ref`.
///
/// Made by [`Socket::socket_ref`] inside `handle_in`; the reply frame is the
/// same as an immediate reply.
#[derive(Clone)]
pub struct SocketRef {
    conn: Arc<Connection>,
    topic: Arc<str>,
    join_ref: Option<Arc<str>>,
    msg_ref: String,
}

impl SocketRef {
    /// Sends the reply. A [`Reply::none`] sends nothing; a stop flag is
    /// ignored (only the channel's own handlers can stop it).
    pub fn reply(&self, reply: Reply) {
        if let Some((status, response)) = &reply.status {
            self.conn.send(&Outgoing::Reply {
                join_ref: self.join_ref.as_deref(),
                msg_ref: Some(&self.msg_ref),
                topic: &self.topic,
                status: status.as_str(),
                response,
            });
        }
    }

    /// The topic of the message.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl std::fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketRef").field("topic", &self.topic).field("msg_ref", &self.msg_ref).finish()
    }
}

/// A broadcast the connection's fan-out limits admitted, not sent yet
/// (made by [`Socket::admit_broadcast`]). It owns what it needs, so it can
/// wait across an `.await`.
#[must_use = "an admitted broadcast is sent only by `send`"]
#[derive(Debug)]
pub struct AdmittedBroadcast {
    pubsub: PubSub,
    topic: Topic,
    event: String,
    payload: Payload,
}

impl AdmittedBroadcast {
    /// Broadcasts it to every subscriber of the channel's topic, this
    /// client included, on every node. Only the broker to other nodes can
    /// refuse it now ([`BroadcastError::BrokerBusy`], or on a topic with
    /// history [`BroadcastError::BrokerUnavailable`] while the broker is
    /// away: nobody got it).
    pub fn send(self) -> Result<(), BroadcastError> {
        self.pubsub.broadcast(&self.topic, &self.event, self.payload)
    }
}
