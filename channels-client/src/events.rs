//! A channel's incoming events, fanned out to the streams that asked for
//! them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use phx_channels_protocol::Payload;

/// How many events a channel keeps for streams not made yet: what arrives
/// between the join reply and the caller's first `on` (a `presence_state`
/// pushed right after the join, typically) waits here instead of being
/// lost. Past this, the oldest are dropped.
const BACKLOG: usize = 256;

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

/// The streams of one channel, and the events none of them wanted yet.
#[derive(Default)]
pub(crate) struct Listeners {
    streams: Vec<(Filter, mpsc::UnboundedSender<Event>)>,
    backlog: VecDeque<Event>,
}

impl Listeners {
    /// Gives `event` to every stream that wants it, or to the backlog.
    pub fn deliver(&mut self, event: Event) {
        let mut delivered = false;
        self.streams.retain(|(filter, tx)| {
            if !filter.matches(&event.event) {
                return !tx.is_closed();
            }
            let sent = tx.send(event.clone()).is_ok();
            delivered |= sent;
            sent
        });
        if !delivered {
            if self.backlog.len() == BACKLOG {
                self.backlog.pop_front();
            }
            self.backlog.push_back(event);
        }
    }

    /// A new stream: it first gets what the backlog holds for it.
    pub fn subscribe(&mut self, filter: Filter, tx: mpsc::UnboundedSender<Event>) {
        let backlog = std::mem::take(&mut self.backlog);
        for event in backlog {
            if filter.matches(&event.event) {
                let _ = tx.send(event);
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
    }
}

/// A stream of a channel's events ([`Channel::events`]); it ends when the
/// channel closes (left, `phx_close`, the socket disconnected).
///
/// Unbounded: events wait here until read.
///
/// [`Channel::events`]: super::Channel::events
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// A stream, and the sender the socket's task feeds it through.
    pub(crate) fn new() -> (mpsc::UnboundedSender<Event>, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Events { rx })
    }

    /// The next event, `None` once the channel is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The payloads only.
    pub fn payloads(self) -> EventPayloads {
        EventPayloads(self)
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// The payloads of one event ([`Channel::on`]).
///
/// [`Channel::on`]: super::Channel::on
#[derive(Debug)]
pub struct EventPayloads(Events);

impl EventPayloads {
    /// The next payload, `None` once the channel is closed.
    pub async fn recv(&mut self) -> Option<Payload> {
        self.0.recv().await.map(|e| e.payload)
    }
}

impl Stream for EventPayloads {
    type Item = Payload;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Payload>> {
        Pin::new(&mut self.0).poll_next(cx).map(|e| e.map(|e| e.payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> Event {
        Event { event: name.to_owned(), payload: Payload::empty(), join_ref: None, position: None }
    }

    fn subscribe(listeners: &mut Listeners, filter: Filter) -> Events {
        let (tx, events) = Events::new();
        listeners.subscribe(filter, tx);
        events
    }

    #[tokio::test]
    async fn events_before_the_first_stream_wait_for_it() {
        let mut listeners = Listeners::default();
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
        assert_eq!(all.recv().await, None);
    }

    #[test]
    fn the_backlog_is_bounded() {
        let mut listeners = Listeners::default();
        for i in 0..BACKLOG + 10 {
            listeners.deliver(ev(&i.to_string()));
        }
        assert_eq!(listeners.backlog.len(), BACKLOG);
        assert_eq!(listeners.backlog.front().unwrap().event, "10");
    }
}
