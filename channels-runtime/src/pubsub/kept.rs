//! Broadcasts on topics with history: positions on the way out, and the
//! hand-over that sends a rejoining client what it missed before anything
//! live, exactly once and in order.
//!
//! On a topic with history every broadcast is appended to its stream and
//! delivered **under the stream's lock**: offsets reach every subscriber in
//! order, and a rejoin that takes the same lock to read what it missed and
//! subscribe sees each broadcast either in what it reads or live after it,
//! never both, never neither. With a broker the broker assigns positions
//! and this node's mirror of the stream is fed in the broker's order; a
//! rejoin first makes sure the mirror reaches back to its position
//! (reading the broker's stream after subscribing to it, Centrifugo's
//! order), then hands over the same way.
//!
//! Subscribers that did not ask for positions get the frames they always
//! got (`ref` null), encoded once per serializer as on any topic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;

use super::history::{read_entry, Asked, Entry, Kept, NotRecovered, Plan, Stream};
use super::{BroadcastError, BroadcastMessage, History, Hold, PubSub, PublishError, Subscriber};
use crate::outbox::ConnId;
use crate::protocol::{Frame, Outgoing, Payload, Position, Serializer, PHX_POSITION};

/// What an adapter read of a topic's stream at the broker
/// ([`Adapter::read_history`](super::Adapter::read_history)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadHistory {
    /// The stream's epoch.
    pub epoch: String,
    /// The offset of its last broadcast (0 before the first).
    pub top: u64,
    /// The kept broadcasts after the position asked for, oldest first,
    /// offsets consecutive and ending at `top`: `(offset, event, payload)`.
    /// Empty when none was asked for, or when the position asked for is of
    /// another epoch or no longer kept (the first one tells which).
    pub messages: Vec<(u64, String, Payload)>,
}

/// Why a topic's stream could not be read from the broker.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the history could not be read: {0}")]
pub struct HistoryUnavailable(pub String);

/// The future [`Adapter::read_history`](super::Adapter::read_history) returns.
pub type HistoryRead = Pin<Box<dyn Future<Output = Result<ReadHistory, HistoryUnavailable>> + Send + 'static>>;

/// One broadcast a rejoin is about to be sent
/// ([`Recovery::missed`]).
#[derive(Debug, Clone)]
pub struct Missed {
    position: Position,
    kept: Arc<Kept>,
}

impl Missed {
    /// Its position.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// Its event.
    pub fn event(&self) -> &str {
        &self.kept.event
    }

    /// Its payload.
    pub fn payload(&self) -> &Payload {
        &self.kept.payload
    }
}

/// What a client that asked for positions is about to be sent, as its
/// channel's `join` sees it ([`Socket::recovery`](crate::socket::Socket::recovery)):
/// `join` may refuse the join, or decline to recover and send the state
/// some other way.
///
/// The broadcasts listed are those kept when `join` was called; any made
/// while it runs follow them, as they would have reached a client that
/// never left.
#[derive(Debug, Clone)]
pub struct Recovery {
    asked: Option<Position>,
    outcome: Result<Vec<Missed>, NotRecovered>,
}

impl Recovery {
    /// The position the client gave, if it gave a valid one.
    pub fn asked(&self) -> Option<&Position> {
        self.asked.as_ref()
    }

    /// Whether what the client missed is kept, and follows the join reply.
    pub fn is_recovered(&self) -> bool {
        self.outcome.is_ok()
    }

    /// Why not, if it is not.
    pub fn not_recovered(&self) -> Option<NotRecovered> {
        self.outcome.as_ref().err().copied()
    }

    /// The broadcasts the client missed, oldest first (empty when it
    /// missed none, or is not recovered).
    pub fn missed(&self) -> &[Missed] {
        self.outcome.as_deref().unwrap_or_default()
    }
}

fn asked_position(asked: &Asked) -> Option<Position> {
    match asked {
        Asked::After(position) => Some(position.clone()),
        Asked::Now | Asked::Invalid => None,
    }
}

/// How a rejoin was handed over, for the `phx_recovery` frame.
#[derive(Debug, Clone)]
pub(crate) struct Handover {
    /// Where the client stands: the position before the first broadcast
    /// this join sends it (`None` on a topic without history).
    pub(crate) start: Option<Position>,
    pub(crate) outcome: Result<usize, NotRecovered>,
}

/// A rejoin on a topic with history, prepared before its channel's `join`
/// runs: this node's copy of the stream reaches back to the client's
/// position (or cannot), and the node's broker subscription is up. Dropped
/// without [`PubSub::subscribe_kept`] (a refused join), it lets go.
pub(crate) struct Prepared {
    pubsub: PubSub,
    topic: Box<str>,
    history: History,
    asked: Asked,
    stream: Arc<Mutex<Stream>>,
    recovery: Recovery,
    /// Keeps the broker subscription while the join runs.
    hold: Option<Hold>,
    declined: bool,
}

impl Prepared {
    /// What `join` sees.
    pub(crate) fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// `join` declined to recover: the client starts now, told why.
    pub(crate) fn decline(&mut self) {
        self.declined = true;
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let left = {
            let mut stream = self.stream.lock();
            stream.preparing -= 1;
            stream.preparing == 0
        };
        if left && self.pubsub.inner.broker_history && self.pubsub.subscriber_count(&self.topic) == 0 {
            // A mirror nobody follows is not fed: it goes.
            self.pubsub.inner.streams.remove_if(&self.topic, |s| s.preparing == 0);
        }
    }
}

/// A broadcast's frames for a subscriber that takes positions
/// ([`Sink::positioned`](super::Sink::positioned)): the frame, and after a
/// binary one the `phx_position` frame that carries its position.
#[derive(Clone, Debug)]
pub struct KeptFrames(pub(crate) Frame, pub(crate) Option<Frame>);

impl KeptFrames {
    fn encode(serializer: Serializer, topic: &str, event: &str, payload: &Payload, position: &str) -> Option<Self> {
        let out = Outgoing::Broadcast { topic, event, payload, position: Some(position) };
        let frame = match serializer.encode(&out) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(topic, event, %error, ?serializer, "broadcast not delivered to the subscribers of this serializer");
                return None;
            }
        };
        let after = matches!(payload, Payload::Binary(_)).then(|| {
            let empty = Payload::empty();
            let out = Outgoing::Broadcast { topic, event: PHX_POSITION, payload: &empty, position: Some(position) };
            serializer.encode(&out).ok()
        });
        Some(KeptFrames(frame, after.flatten()))
    }

    /// The frames, in order.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        std::iter::once(&self.0).chain(self.1.as_ref())
    }
}

/// A broadcast's encodings, made on first need: plain (`ref` null) and
/// with its position, per serializer.
#[derive(Default)]
struct Encodings {
    plain: [Option<Option<Frame>>; 2],
    kept: [Option<Option<KeptFrames>>; 2],
}

impl Encodings {
    fn plain(&mut self, serializer: Serializer, topic: &str, event: &str, payload: &Payload) -> Option<&Frame> {
        self.plain[serializer.index()]
            .get_or_insert_with(|| {
                let out = Outgoing::Broadcast { topic, event, payload, position: None };
                serializer.encode(&out).ok()
            })
            .as_ref()
    }

    fn kept(&mut self, serializer: Serializer, topic: &str, at: &Delivery<'_>) -> Option<&KeptFrames> {
        self.kept[serializer.index()]
            .get_or_insert_with(|| KeptFrames::encode(serializer, topic, at.event, at.payload, &at.text))
            .as_ref()
    }
}

/// One broadcast with its position, on its way to subscribers.
struct Delivery<'a> {
    event: &'a str,
    payload: &'a Payload,
    position: &'a Position,
    text: String,
}

impl<'a> Delivery<'a> {
    fn new(event: &'a str, payload: &'a Payload, position: &'a Position) -> Self {
        Delivery { event, payload, position, text: position.to_string() }
    }
}

impl PubSub {
    /// Keeps the broadcasts of the topics `pattern` matches (an exact
    /// topic, or a prefix ending in `*`), as `history` says, and gives them
    /// positions: a client that joins one of them with the join param
    /// `phx_position` is sent what it missed since its last position, before
    /// anything live. See `docs/recovery.md`.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use std::time::Duration;
    /// use phx_channels::pubsub::{History, PubSub};
    ///
    /// let pubsub = PubSub::local();
    /// pubsub.keep_history("comments:*", History::new(100, Duration::from_secs(300)));
    /// assert!(pubsub.history_of("comments:42").is_some());
    /// assert!(pubsub.history_of("room:lobby").is_none());
    /// pubsub.broadcast("comments:42", "new", &serde_json::json!({"n": 1})).unwrap();
    /// assert_eq!(pubsub.history_top("comments:42").map(|p| p.offset()), Some(1));
    /// ```
    pub fn keep_history(&self, pattern: &str, history: History) {
        self.inner.patterns.add(pattern, history);
    }

    /// The history `topic` keeps, if it keeps one.
    pub fn history_of(&self, topic: &str) -> Option<History> {
        self.inner.patterns.of(topic)
    }

    /// The position of the last broadcast of `topic` this node knows, if
    /// it keeps or mirrors its stream.
    pub fn history_top(&self, topic: &str) -> Option<Position> {
        self.inner.streams.get(topic)?.lock().top()
    }

    /// How many streams this node keeps or mirrors.
    pub fn history_streams(&self) -> usize {
        self.inner.streams.len()
    }

    /// A broadcast on a topic with history.
    pub(super) fn broadcast_kept(
        &self,
        except: Option<ConnId>,
        topic: &str,
        event: &str,
        payload: Payload,
        history: History,
    ) -> Result<(), BroadcastError> {
        let message = BroadcastMessage { topic: topic.to_owned(), event: event.to_owned(), payload };
        if self.inner.broker_history {
            // The broker gives it its position and hands it to every node,
            // this one included, in its order.
            return self.inner.adapter.publish_kept(&message, &history, except).map_err(|error| match error {
                PublishError::Busy => BroadcastError::BrokerBusy,
                PublishError::Unavailable => BroadcastError::BrokerUnavailable,
            });
        }
        if self.inner.multi_node {
            self.inner.adapter.publish(&message).map_err(|error| match error {
                PublishError::Busy => BroadcastError::BrokerBusy,
                PublishError::Unavailable => BroadcastError::BrokerUnavailable,
            })?;
        }
        self.keep_here(except, topic, event, message.payload, history);
        Ok(())
    }

    /// The memory engine: this node gives the broadcast its position,
    /// delivers it and keeps it, under the stream's lock.
    pub(super) fn keep_here(
        &self,
        except: Option<ConnId>,
        topic: &str,
        event: &str,
        payload: Payload,
        history: History,
    ) {
        let stream = self.stream(topic, &history, true);
        let mut stream = stream.lock();
        let at = stream.next();
        self.deliver_at(topic, &Delivery::new(event, &payload, &at), except, &stream.stopped);
        stream.append(at.offset(), event, payload, &history);
    }

    /// The stream of `topic`, made if missing (sweeping streams gone quiet).
    fn stream(&self, topic: &str, history: &History, own: bool) -> Arc<Mutex<Stream>> {
        let me = self.downgrade();
        let history = *history;
        self.inner.streams.get_or_make(topic, own, move |topic, stream| {
            // Called with the streams' shard locked: a try, never a wait,
            // for the topic's subscribers (the other order is taken
            // elsewhere).
            let Some(pubsub) = me.upgrade() else { return false };
            let quiet = pubsub.shard(topic).try_read().is_some_and(|shard| !shard.contains_key(topic));
            quiet && stream.is_idle(&history)
        })
    }

    /// Delivers a broadcast of a topic with history that the broker gave
    /// `position`, to this node's subscribers; `except` (a connection of
    /// this node) does not get it. For [`Adapter`](super::Adapter)s that
    /// keep history ([`Adapter::keeps_history`](super::Adapter::keeps_history)),
    /// which must hand this node every broadcast of a topic it is
    /// subscribed to, in the broker's order.
    ///
    /// A broadcast this node already has (an offset it passed) is dropped.
    /// One that skips offsets, or comes in another epoch, means this node
    /// missed some: the clients that take positions are made to rejoin
    /// (their channels end with `phx_error`), which sends them what they
    /// missed or tells them it is gone.
    pub fn deliver_kept(&self, message: &BroadcastMessage, position: &Position, except: Option<ConnId>) {
        let topic = message.topic.as_str();
        let Some(stream) = self.inner.streams.get(topic) else {
            // Nobody here takes positions on it: plain frames.
            return self.deliver(topic, &message.event, &message.payload, except);
        };
        let history = self.history_of(topic).unwrap_or_default();
        let mut stream = stream.lock();
        let offset = position.offset();
        match stream.epoch() {
            Some(epoch) if **epoch == *position.epoch() && offset <= stream.top().map_or(0, |p| p.offset()) => {
                // Read from the broker before it came live: already here.
                return;
            }
            Some(epoch) if **epoch == *position.epoch() && offset == stream.top().map_or(0, |p| p.offset()) + 1 => {}
            Some(_) => {
                tracing::warn!(topic, at = %position, "broadcasts of this topic were missed (a gap or a new epoch at the broker): its clients that take positions rejoin to recover");
                self.resync(topic, &mut stream);
                stream.reset(Some(position.epoch_arc().clone()), offset.saturating_sub(1));
            }
            None => stream.reset(Some(position.epoch_arc().clone()), offset.saturating_sub(1)),
        }
        self.deliver_at(topic, &Delivery::new(&message.event, &message.payload, position), except, &stream.stopped);
        stream.append(offset, &message.event, message.payload.clone(), &history);
    }

    /// The broker's subscription came back after an outage: broadcasts may
    /// have been missed, on any topic. Every mirror starts again, and every
    /// client that takes positions rejoins (to recover what it missed). For
    /// [`Adapter`](super::Adapter)s that keep history.
    pub fn history_interrupted(&self) {
        for (topic, stream) in self.inner.streams.all() {
            let mut stream = stream.lock();
            self.resync(&topic, &mut stream);
            stream.reset(None, 0);
        }
    }

    /// Tells the subscriptions of `topic` that take positions to rejoin,
    /// and stops delivering to them (under the stream's lock).
    fn resync(&self, topic: &str, stream: &mut Stream) {
        let shard = self.shard(topic).read();
        let Some(subscribers) = shard.get(topic) else { return };
        for sub in subscribers.list.iter().filter(|s| s.positions) {
            if !stream.stopped.contains(&sub.id) {
                stream.stopped.push(sub.id);
                sub.sink.resync(sub.tag, topic);
            }
        }
    }

    /// Delivers one broadcast of a topic with history to its subscribers:
    /// plain frames to those that did not ask for positions, frames with
    /// the position to those that did (through their channel, in order
    /// with its `handle_out`, when it intercepts events).
    fn deliver_at(&self, topic: &str, at: &Delivery<'_>, except: Option<ConnId>, stopped: &[ConnId]) {
        let shard = self.shard(topic).read();
        let mut delivered = 0;
        if let Some(subscribers) = shard.get(topic) {
            let mut encodings = Encodings::default();
            for sub in &subscribers.list {
                if Some(sub.id) == except || (sub.positions && stopped.contains(&sub.id)) {
                    continue;
                }
                delivered += 1;
                hand(sub, topic, at, &mut encodings);
            }
        }
        drop(shard);
        self.inner.fanout.broadcasts.incr();
        self.inner.fanout.deliveries.add(delivered);
    }

    /// Prepares a rejoin on a topic with history: holds the node's broker
    /// subscription, brings this node's copy of the stream back to the
    /// client's position if it can, and says what the join would be sent.
    pub(crate) async fn prepare(&self, topic: &str, history: History, asked: Asked) -> Prepared {
        let hold = self.hold(topic).await;
        let broker = self.inner.broker_history;
        let stream = self.stream(topic, &history, !broker);
        lock(&stream).await.preparing += 1;
        if broker {
            let covered = {
                let stream = lock(&stream).await;
                match &asked {
                    Asked::After(after) => stream.covers(after),
                    Asked::Now | Asked::Invalid => stream.epoch().is_some(),
                }
            };
            if !covered {
                let after = asked_position(&asked);
                match self.inner.adapter.read_history(topic, &history, after.as_ref()).await {
                    Ok(read) => self.merge_read(topic, &stream, read, &history),
                    Err(error) => {
                        if self.inner.history_warnings.allow() {
                            tracing::warn!(topic = ?crate::logging::clip(topic), %error, "history unavailable: a rejoin is not recovered");
                        }
                    }
                }
            }
        }
        let recovery = {
            let mut stream = lock(&stream).await;
            stream.touch();
            let plan = stream.plan(&asked, &history);
            let start = plan.start;
            let outcome = plan.outcome.map(|offsets| {
                stream
                    .entries(&offsets)
                    .filter_map(|e| Some(Missed { position: start.as_ref()?.at(e.offset), kept: e.kept.clone() }))
                    .collect()
            });
            Recovery { asked: asked_position(&asked), outcome }
        };
        Prepared { pubsub: self.clone(), topic: topic.into(), history, asked, stream, recovery, hold, declined: false }
    }

    /// What a broker read goes into this node's mirror.
    fn merge_read(&self, topic: &str, stream: &Mutex<Stream>, read: ReadHistory, history: &History) {
        let Ok(at) = Position::new(read.epoch.as_str(), read.top) else {
            tracing::warn!(topic = ?crate::logging::clip(topic), "the broker's history has an invalid epoch; ignored");
            return;
        };
        // Only what the broker vouches for: consecutive, ending at `top`.
        let mut messages = read.messages;
        let consecutive = messages.iter().rev().zip((0..=read.top).rev()).all(|((offset, ..), want)| *offset == want);
        if !consecutive {
            tracing::warn!(topic = ?crate::logging::clip(topic), "the broker's history is not consecutive; ignored");
            messages.clear();
        }
        let read: Vec<_> =
            messages.into_iter().map(|(offset, event, payload)| read_entry(offset, event, payload)).collect();
        let mut stream = stream.lock();
        if !stream.merge(at.epoch_arc(), at.offset(), read, history) {
            tracing::debug!(topic = ?crate::logging::clip(topic), "this node's mirror started again from the broker's stream");
        }
    }

    /// Subscribes a rejoin prepared by [`PubSub::prepare`] and hands it
    /// over: under the stream's lock, `then` (the join reply and the
    /// `phx_recovery` frame), what the client missed, and from then on
    /// every live broadcast, each exactly once and in order.
    pub(crate) async fn subscribe_kept(
        &self,
        mut prepared: Prepared,
        subscriber: Subscriber,
        then: impl FnOnce(&Handover),
    ) {
        let stream = prepared.stream.clone();
        let mut stream = lock(&stream).await;
        stream.stopped.retain(|id| *id != subscriber.id);
        let asked = if prepared.declined { Asked::Now } else { self.sent_here(&prepared, &subscriber, &mut stream) };
        let mut plan: Plan = stream.plan(&asked, &prepared.history);
        if prepared.declined {
            plan.outcome = Err(NotRecovered::Declined);
        }
        let handover = Handover {
            start: plan.start.clone(),
            outcome: plan.outcome.clone().map(|offsets| stream.entries(&offsets).count()),
        };
        let topic = prepared.topic.clone();
        // The join reply before anything the subscription brings ...
        let installed = self.subscribe_then(&topic, subscriber.clone(), || then(&handover));
        // ... and what it missed before anything live: this topic's
        // broadcasts wait for the stream's lock (other topics need not wait
        // for the replay). A join a newer one of the same connection has
        // overtaken sends nothing more: the newer one is the channel now.
        if let (true, Ok(offsets), Some(start)) = (installed, &plan.outcome, &plan.start) {
            let mut replayed = 0;
            for entry in stream.entries(offsets) {
                replay(&subscriber, &topic, entry, &start.at(entry.offset));
                replayed += 1;
            }
            self.inner.fanout.deliveries.add(replayed);
        }
        stream.touch();
        drop(stream);
        // The subscription holds the broker's now.
        prepared.hold.take();
    }

    /// What a rejoin asked, or further when its own connection was sent
    /// more of the stream by an earlier join of the topic (phoenix.js may
    /// join again on the same connection while an earlier join's broadcasts
    /// are on their way, and they reach it before this join's reply, their
    /// positions with them). An earlier subscription still here was sent
    /// everything up to the top (or, through its channel, up to what the
    /// channel handed on, and hands on nothing more); one already gone left
    /// what it was sent in [`Stream::sent`].
    fn sent_here(&self, prepared: &Prepared, subscriber: &Subscriber, stream: &mut Stream) -> Asked {
        let earlier = {
            let shard = self.shard(&prepared.topic).read();
            shard.get(&*prepared.topic).and_then(|subs| {
                let old = &subs.list[subs.position(subscriber.id)?];
                if !old.positions || old.tag >= subscriber.tag || stream.stopped.contains(&old.id) {
                    return None;
                }
                if old.raw_all || !old.raw_events.is_empty() {
                    old.sink.hand_over(old.tag)
                } else {
                    stream.top().map(|top| top.offset())
                }
            })
        };
        let sent = earlier.or_else(|| stream.take_sent(subscriber.id));
        match (&prepared.asked, sent, stream.epoch()) {
            (Asked::After(after), Some(sent), Some(epoch))
                if **epoch == *after.epoch()
                    && sent > after.offset()
                    && sent <= stream.top().map_or(0, |t| t.offset()) =>
            {
                Asked::After(after.at(sent))
            }
            _ => prepared.asked.clone(),
        }
    }

    /// Ends a subscription that takes positions: under the stream's lock,
    /// so that what it was sent is known exactly; when a newer join of the
    /// same connection `displaced` it, that is kept for the newer join's
    /// hand-over ([`PubSub::subscribe_kept`]). `handed`: for a channel that
    /// takes its broadcasts through itself, the offset it handed on last.
    pub(crate) async fn unsubscribe_kept(
        &self,
        topic: &str,
        id: ConnId,
        tag: u64,
        displaced: bool,
        handed: Option<u64>,
    ) {
        let Some(stream) = self.inner.streams.get(topic) else {
            return self.unsubscribe(topic, id, tag);
        };
        let mut stream = lock(&stream).await;
        let emptied = self.unsubscribe_quietly(topic, id, tag);
        if displaced {
            let sent = handed.or_else(|| stream.top().map(|top| top.offset()));
            if let Some(sent) = sent {
                stream.record_sent(id, sent);
            }
        }
        drop(stream);
        if emptied {
            self.unfollowed(topic);
        }
    }

    /// A topic's subscriber count went to zero: its mirror is not fed any
    /// more (the broker subscription goes), so it goes too, unless a rejoin
    /// is being prepared on it (then it starts again from the broker).
    pub(super) fn unfollowed(&self, topic: &str) {
        if !self.inner.broker_history {
            return;
        }
        if let Some(stream) = self.inner.streams.get(topic) {
            let mut stream = stream.lock();
            if stream.preparing > 0 {
                stream.reset(None, 0);
                return;
            }
        }
        self.inner.streams.remove_if(topic, |s| s.preparing == 0);
    }
}

/// Locks a stream from a task without holding up its worker thread while a
/// broadcast, which holds the lock for its whole fan-out, is under way: the
/// other tasks of the worker run meanwhile.
async fn lock(stream: &Mutex<Stream>) -> parking_lot::MutexGuard<'_, Stream> {
    loop {
        if let Some(guard) = stream.try_lock() {
            return guard;
        }
        tokio::task::yield_now().await;
    }
}

/// Hands a kept broadcast to a rejoining subscriber, its V2 frames made
/// once for every rejoin that replays it.
fn replay(sub: &Subscriber, topic: &str, entry: &Entry, at: &Position) {
    let kept = &entry.kept;
    let delivery = Delivery::new(&kept.event, &kept.payload, at);
    let mut encodings = Encodings::default();
    if sub.positions && sub.serializer == Serializer::V2 {
        let frames = kept
            .v2
            .get_or_init(|| KeptFrames::encode(Serializer::V2, topic, &kept.event, &kept.payload, &delivery.text));
        encodings.kept[Serializer::V2.index()] = Some(frames.clone());
    }
    hand(sub, topic, &delivery, &mut encodings);
}

/// Hands one broadcast to one subscriber of its topic.
fn hand(sub: &Subscriber, topic: &str, at: &Delivery<'_>, encodings: &mut Encodings) {
    let raw = sub.wants_raw(at.event);
    if !sub.positions {
        if raw {
            sub.sink.raw(sub.tag, topic, at.event, at.payload);
        } else if let Some(frame) = encodings.plain(sub.serializer, topic, at.event, at.payload) {
            sub.sink.frame(frame);
        }
        return;
    }
    // A channel that intercepts events gets all of them through itself, so
    // that what its handle_out pushes keeps its place among the rest.
    let ordered = raw || sub.raw_all || !sub.raw_events.is_empty();
    if ordered {
        let frames = if raw { None } else { encodings.kept(sub.serializer, topic, at) };
        sub.sink.positioned(sub.tag, topic, at.event, at.payload, at.position, frames);
    } else if let Some(frames) = encodings.kept(sub.serializer, topic, at) {
        for frame in frames.frames() {
            sub.sink.frame(frame);
        }
    }
}

/// What an adapter that keeps no history answers when asked to read it.
pub(crate) fn no_history() -> HistoryRead {
    Box::pin(std::future::ready(Err(HistoryUnavailable("this adapter keeps no history".to_owned()))))
}
