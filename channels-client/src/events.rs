//! A channel's incoming events, fanned out to the streams that asked for
//! them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::queue::{self, Bound, Next};
use phx_channels_protocol::Payload;

/// An event the server sent on a channel: a push or a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event name, e.g. `comments:42:new`.
    pub event: String,
    /// The payload: JSON, or bytes from a V2 binary frame.
    pub payload: Payload,
    /// The channel's join (its `join_ref`) when the event arrived: it
    /// changes with every rejoin, which is how [`Presence`] tells a state
    /// of the current join from one of a previous join.
    ///
    /// [`Presence`]: super::Presence
    pub join_ref: Option<String>,
    /// Its position, on a topic with history, for a channel that recovers
    /// ([`ChannelBuilder::recover`](super::ChannelBuilder::recover)).
    pub position: Option<phx_channels_protocol::Position>,
}

impl Event {
    /// What the event counts for in a stream's byte bound: its name and
    /// its payload.
    pub(crate) fn size(&self) -> usize {
        let payload = match &self.payload {
            Payload::Json(raw) => raw.get().len(),
            Payload::Binary(bytes) => bytes.len(),
        };
        self.event.len() + payload
    }
}

/// Events a stream dropped because it was read too slowly: its buffer
/// ([`SocketBuilder::event_buffer`]) was full when they arrived, and the
/// oldest made room for the newest.
///
/// [`SocketBuilder::event_buffer`]: crate::SocketBuilder::event_buffer
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{0} events dropped: the stream was read too slowly")]
pub struct Lagged(pub u64);

/// Why [`Events::recv`] (or `recv` of another stream) returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RecvError {
    /// This many events were dropped before the next one, because the
    /// stream was read too slowly; the stream goes on with the oldest
    /// event it kept.
    #[error("{0} events dropped: the stream was read too slowly")]
    Lagged(u64),
    /// The channel is closed (left, `phx_close`, the socket disconnected)
    /// and every event was read.
    #[error("the channel is closed")]
    Closed,
}

impl From<Lagged> for RecvError {
    fn from(Lagged(dropped): Lagged) -> Self {
        RecvError::Lagged(dropped)
    }
}

/// Which events a stream wants.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    All,
    Only(Vec<String>),
}

impl Filter {
    fn matches(&self, event: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(events) => events.iter().any(|e| e == event),
        }
    }
}

/// The socket task's end of a stream.
pub(crate) type EventSender = queue::Sender<Event>;

/// The streams of one channel, and the events none of them wanted yet.
pub(crate) struct Listeners {
    streams: Vec<(Filter, EventSender)>,
    /// Events no stream took, for the streams made later: what arrives
    /// between the join reply and the caller's first `on` (a
    /// `presence_state` pushed right after the join, typically) waits here
    /// instead of being lost. Past its bound, the oldest are dropped.
    backlog: VecDeque<Event>,
    backlog_bytes: usize,
    bound: Bound,
}

impl Listeners {
    /// No stream yet; the backlog holds at most `bound`.
    pub fn new(bound: Bound) -> Self {
        Listeners { streams: Vec::new(), backlog: VecDeque::new(), backlog_bytes: 0, bound }
    }

    /// Gives `event` to every stream that wants it, or to the backlog.
    pub fn deliver(&mut self, event: Event) {
        let size = event.size();
        let mut delivered = false;
        self.streams.retain(|(filter, tx)| {
            if !filter.matches(&event.event) {
                return !tx.is_closed();
            }
            let sent = tx.send(event.clone(), size);
            delivered |= sent;
            sent
        });
        if !delivered {
            self.backlog_bytes += size;
            self.backlog.push_back(event);
            while self.backlog.len() > 1
                && (self.backlog.len() > self.bound.items || self.backlog_bytes > self.bound.bytes)
            {
                if let Some(old) = self.backlog.pop_front() {
                    self.backlog_bytes -= old.size();
                }
            }
        }
    }

    /// A new stream: it first gets what the backlog holds for it.
    pub fn subscribe(&mut self, filter: Filter, tx: EventSender) {
        for event in std::mem::take(&mut self.backlog) {
            if filter.matches(&event.event) {
                let size = event.size();
                self.backlog_bytes -= size;
                tx.send(event, size);
            } else {
                self.backlog.push_back(event);
            }
        }
        self.streams.push((filter, tx));
    }

    /// The channel is closed: every stream ends.
    pub fn close(&mut self) {
        self.streams.clear();
        self.backlog.clear();
        self.backlog_bytes = 0;
    }
}

/// A stream of a channel's events ([`Channel::events`]); it ends when the
/// channel closes (left, `phx_close`, the socket disconnected).
///
/// Bounded ([`SocketBuilder::event_buffer`]: 1 024 events or 16 MiB by
/// default): the socket never waits for a stream, so a stream read too
/// slowly drops its oldest events, and says how many with
/// `Err(`[`Lagged`]`)` (from [`Events::recv`]: [`RecvError::Lagged`])
/// before the oldest event it kept.
///
/// [`Channel::events`]: super::Channel::events
/// [`SocketBuilder::event_buffer`]: crate::SocketBuilder::event_buffer
#[derive(Debug)]
pub struct Events {
    rx: queue::Receiver<Event>,
}

impl Events {
    /// A stream, and the sender the socket's task feeds it through.
    pub(crate) fn new(bound: Bound) -> (EventSender, Events) {
        let (tx, rx) = queue::bounded(bound);
        (tx, Events { rx })
    }

    /// The next event; [`RecvError::Lagged`] if events were dropped before
    /// it, [`RecvError::Closed`] once the channel is closed.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        std::future::poll_fn(|cx| self.rx.poll_next(cx)).await.into()
    }

    /// The payloads only.
    pub fn payloads(self) -> EventPayloads {
        EventPayloads(self)
    }

    /// How many events wait to be read.
    pub fn len(&self) -> usize {
        self.rx.buffered().0
    }

    /// Whether no event waits to be read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the waiting events hold (names and payloads).
    pub fn buffered_bytes(&self) -> usize {
        self.rx.buffered().1
    }
}

impl From<Next<Event>> for Result<Event, RecvError> {
    fn from(next: Next<Event>) -> Self {
        match next {
            Next::Item(event) => Ok(event),
            Next::Lagged(dropped) => Err(RecvError::Lagged(dropped)),
            Next::Closed => Err(RecvError::Closed),
        }
    }
}

impl Stream for Events {
    type Item = Result<Event, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next(cx).map(|next| match next {
            Next::Item(event) => Some(Ok(event)),
            Next::Lagged(dropped) => Some(Err(Lagged(dropped))),
            Next::Closed => None,
        })
    }
}

/// The payloads of one event ([`Channel::on`]), bounded as [`Events`] is.
///
/// [`Channel::on`]: super::Channel::on
#[derive(Debug)]
pub struct EventPayloads(Events);

impl EventPayloads {
    /// The next payload; [`RecvError::Lagged`] if events were dropped
    /// before it, [`RecvError::Closed`] once the channel is closed.
    pub async fn recv(&mut self) -> Result<Payload, RecvError> {
        self.0.recv().await.map(|e| e.payload)
    }

    /// How many payloads wait to be read.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no payload waits to be read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes the waiting events hold (names and payloads).
    pub fn buffered_bytes(&self) -> usize {
        self.0.buffered_bytes()
    }
}

impl Stream for EventPayloads {
    type Item = Result<Payload, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx).map(|e| e.map(|e| e.map(|e| e.payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> Event {
        Event { event: name.to_owned(), payload: Payload::empty(), join_ref: None, position: None }
    }

    const WIDE: Bound = Bound { items: 1_000, bytes: 1 << 20 };

    fn subscribe(listeners: &mut Listeners, filter: Filter) -> Events {
        let (tx, events) = Events::new(WIDE);
        listeners.subscribe(filter, tx);
        events
    }

    #[tokio::test]
    async fn events_before_the_first_stream_wait_for_it() {
        let mut listeners = Listeners::new(Bound { items: 256, bytes: 1 << 20 });
        listeners.deliver(ev("a"));
        listeners.deliver(ev("b"));
        let mut only_b = subscribe(&mut listeners, Filter::Only(vec!["b".into()]));
        assert_eq!(only_b.recv().await.unwrap().event, "b");
        listeners.deliver(ev("b"));
        let mut all = subscribe(&mut listeners, Filter::All);
        // "a" waited; the second "b" went to the stream that wants it
        assert_eq!(all.recv().await.unwrap().event, "a");
        listeners.deliver(ev("c"));
        assert_eq!(all.recv().await.unwrap().event, "c");
        assert_eq!(only_b.recv().await.unwrap().event, "b");
        listeners.close();
        assert_eq!(all.recv().await, Err(RecvError::Closed));
    }

    #[test]
    fn the_backlog_is_bounded_in_events_and_bytes() {
        let mut listeners = Listeners::new(Bound { items: 256, bytes: 1 << 20 });
        for i in 0..256 + 10 {
            listeners.deliver(ev(&i.to_string()));
        }
        assert_eq!(listeners.backlog.len(), 256);
        assert_eq!(listeners.backlog.front().unwrap().event, "10");

        // "e" and "{}": 3 bytes each
        let mut listeners = Listeners::new(Bound { items: 256, bytes: 10 });
        for _ in 0..5 {
            listeners.deliver(ev("e"));
        }
        assert_eq!((listeners.backlog.len(), listeners.backlog_bytes), (3, 9));
        let big = Event { payload: Payload::Binary(vec![0; 100].into()), ..ev("big") };
        listeners.deliver(big.clone());
        assert_eq!(listeners.backlog, [big], "the newest event is kept whatever its size");
        assert_eq!(listeners.backlog_bytes, 103);
    }

    #[tokio::test]
    async fn a_slow_stream_drops_its_oldest_events_and_says_how_many() {
        let mut listeners = Listeners::new(WIDE);
        let (tx, mut slow) = Events::new(Bound { items: 4, bytes: 1 << 20 });
        listeners.subscribe(Filter::All, tx);
        let mut fast = subscribe(&mut listeners, Filter::All);
        for i in 0..10 {
            listeners.deliver(ev(&i.to_string()));
            assert_eq!(fast.recv().await.unwrap().event, i.to_string());
        }
        assert_eq!((slow.len(), slow.buffered_bytes()), (4, 4 * 3));
        assert_eq!(slow.recv().await, Err(RecvError::Lagged(6)));
        assert_eq!(slow.recv().await.unwrap().event, "6");
        // the stream form says it the same way
        listeners.deliver(ev("x"));
        let rest: Vec<_> =
            futures_util::StreamExt::collect::<Vec<_>>(futures_util::StreamExt::take(&mut slow, 4)).await;
        let names: Vec<_> = rest.into_iter().map(|e| e.map(|e| e.event)).collect();
        assert_eq!(names, [Ok("7".into()), Ok("8".into()), Ok("9".into()), Ok("x".into())]);
        for _ in 0..6 {
            listeners.deliver(ev("w"));
        }
        assert_eq!(futures_util::StreamExt::next(&mut slow).await, Some(Err(Lagged(2))));
    }
}
