//! [`Connection`]: what every channel of one client connection shares, and
//! how broadcasts reach it.
//!
//! A connection is one subscriber to [`PubSub`], whatever its transport:
//! broadcast frames go straight to its outbox (encoded once for all its
//! peers), intercepted events and a `disconnect` on its socket id arrive
//! raw and become mail for its channels or a close.

use std::sync::{Arc, OnceLock};

use crate::fanout::FanoutLimits;
use crate::mailbox::{Mail, Mailbox};
use crate::metrics::Metrics;
use crate::outbox::{CloseReason, Outbox};
use crate::protocol::{Frame, Outgoing, Payload, Position, Serializer};
use crate::pubsub::{KeptFrames, PubSub, Sink, Subscriber, DISCONNECT_EVENT};
use crate::trace::TraceParent;

/// The subscription tag of a connection's socket-id subscription; a
/// channel's subscriptions are tagged with its generation, which starts
/// at 1.
const SOCKET_ID_TAG: u64 = 0;

/// What every channel of one connection shares.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) serializer: Serializer,
    pub(crate) pubsub: PubSub,
    pub(crate) id: Option<Arc<str>>,
    pub(crate) metrics: Arc<Metrics>,
    /// What its channels may make the server fan out.
    pub(crate) limits: FanoutLimits,
    /// Mail from other tasks for its channels; made on first need.
    mailbox: OnceLock<Arc<Mailbox>>,
    /// The client's trace context, boxed: most connections have none.
    pub(crate) traceparent: Option<Box<TraceParent>>,
    /// For its channels that take positions through themselves
    /// (intercepting ones): what each handed on last, and whether a newer
    /// join of its topic took over. Empty for almost every connection.
    handed: parking_lot::Mutex<Vec<Handed>>,
}

/// What a channel that takes positions through itself handed on.
#[derive(Debug)]
struct Handed {
    generation: u64,
    offset: Option<u64>,
    /// A newer join of the topic on this connection took over: what is
    /// still on its way to this channel is dropped.
    silenced: bool,
}

impl Connection {
    /// A connection; subscribes it to its socket id, if it has one, so a
    /// `disconnect` broadcast there closes it.
    pub(crate) fn open(
        outbox: Arc<Outbox>,
        serializer: Serializer,
        pubsub: PubSub,
        id: Option<Arc<str>>,
        metrics: Arc<Metrics>,
        limits: FanoutLimits,
        traceparent: Option<TraceParent>,
    ) -> Arc<Self> {
        let conn = Arc::new(Connection {
            outbox,
            serializer,
            pubsub,
            id,
            metrics,
            limits,
            mailbox: OnceLock::new(),
            traceparent: traceparent.map(Box::new),
            handed: parking_lot::Mutex::default(),
        });
        if let Some(id) = &conn.id {
            conn.pubsub.subscribe(id, conn.subscriber(SOCKET_ID_TAG).raw());
        }
        conn
    }

    /// A subscription of this connection, tagged `tag`.
    pub(crate) fn subscriber(self: &Arc<Self>, tag: u64) -> Subscriber {
        Subscriber::new(self.outbox.id(), self.serializer, self.clone()).tag(tag)
    }

    /// Encodes and queues a frame. Failures are logged, never raised: the
    /// client is gone (the outbox is closed) or the payload cannot travel
    /// on this serializer (binary on V1).
    pub(crate) fn send(&self, out: &Outgoing<'_>) {
        match self.serializer.encode(out) {
            Ok(frame) => {
                // A closed outbox means the connection is going away; its
                // channels learn that from the connection's task.
                let _ = self.outbox.push(frame);
            }
            Err(error) => tracing::warn!(%error, "frame not sent"),
        }
    }

    /// The mailbox of this connection's channels, made on first call.
    /// Only the connection's own task makes it (inside a channel's step),
    /// so that the task is registered with it before any letter arrives.
    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        self.mailbox.get_or_init(Arc::default)
    }

    /// The mailbox, if anything was ever sent to it.
    pub(crate) fn mailbox_if_used(&self) -> Option<&Arc<Mailbox>> {
        self.mailbox.get()
    }

    /// Whether channel `generation` may hand on a broadcast with a position
    /// (a newer join of its topic has not taken over).
    pub(crate) fn may_hand(&self, generation: u64) -> bool {
        !self.handed.lock().iter().any(|h| h.generation == generation && h.silenced)
    }

    /// Channel `generation` handed on the broadcast at `offset`.
    pub(crate) fn handed(&self, generation: u64, offset: u64) {
        let mut handed = self.handed.lock();
        match handed.iter_mut().find(|h| h.generation == generation) {
            Some(h) => h.offset = Some(offset),
            None => handed.push(Handed { generation, offset: Some(offset), silenced: false }),
        }
    }

    /// Channel `generation` ended: what it handed on last.
    pub(crate) fn forget_handed(&self, generation: u64) -> Option<u64> {
        let mut handed = self.handed.lock();
        let at = handed.iter().position(|h| h.generation == generation)?;
        handed.swap_remove(at).offset
    }

    /// The connection is over: its socket-id subscription goes, and mail
    /// for its channels is refused.
    pub(crate) fn close(&self) {
        if let Some(id) = &self.id {
            self.pubsub.unsubscribe(id, self.outbox.id(), SOCKET_ID_TAG);
        }
        if let Some(mailbox) = self.mailbox.get() {
            mailbox.close();
        }
    }
}

impl Sink for Connection {
    fn frame(&self, frame: &Frame) {
        if self.outbox.push_shared(frame).is_err() {
            tracing::trace!("subscriber is closing");
        }
    }

    fn raw(&self, tag: u64, _topic: &str, event: &str, payload: &Payload) {
        if tag == SOCKET_ID_TAG {
            if event == DISCONNECT_EVENT {
                self.outbox.close(CloseReason::Disconnect);
            }
            return;
        }
        // The channel made the mailbox when it subscribed for raw events.
        let Some(mailbox) = self.mailbox_if_used() else { return };
        let out = Mail::Out { event: event.to_owned(), payload: payload.clone(), position: None };
        // A channel that ended is unsubscribing; nothing to deliver.
        let _ = mailbox.post(tag, out);
    }

    fn positioned(
        &self,
        tag: u64,
        _topic: &str,
        event: &str,
        payload: &Payload,
        position: &Position,
        frames: Option<&KeptFrames>,
    ) {
        // The channel made the mailbox when it subscribed for raw events.
        let Some(mailbox) = self.mailbox_if_used() else { return };
        let mail = match frames {
            Some(KeptFrames(frame, after)) => {
                let (frame, after) = (self.outbox.shared(frame), after.as_ref().map(|f| self.outbox.shared(f)));
                Mail::Frames { frame, after, offset: position.offset() }
            }
            None => Mail::Out { event: event.to_owned(), payload: payload.clone(), position: Some(position.clone()) },
        };
        let _ = mailbox.post(tag, mail);
    }

    fn hand_over(&self, tag: u64) -> Option<u64> {
        let mut handed = self.handed.lock();
        match handed.iter_mut().find(|h| h.generation == tag) {
            Some(h) => {
                h.silenced = true;
                h.offset
            }
            None => {
                handed.push(Handed { generation: tag, offset: None, silenced: true });
                None
            }
        }
    }

    fn resync(&self, tag: u64, _topic: &str) {
        // A channel that takes positions made the mailbox when it joined.
        if let Some(mailbox) = self.mailbox_if_used() {
            let _ = mailbox.post(tag, Mail::Resync);
        }
    }
}
