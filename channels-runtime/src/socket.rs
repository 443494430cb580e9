//! [`Socket`]: what a channel handler sees of its connection (Phoenix's
//! `socket` argument): topic, assigns, and the ways to push and broadcast.

use std::sync::Arc;

use serde::Serialize;

use crate::connect::Connect;
use crate::outbox::Outbox;
use crate::protocol::{Outgoing, Payload, Serializer};
use crate::pubsub::{BroadcastError, PubSub};
use crate::router::Topic;

/// What every channel of one connection shares.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) serializer: Serializer,
    pub(crate) pubsub: PubSub,
    pub(crate) id: Option<Arc<str>>,
}

impl Connection {
    /// Encodes and queues a frame. Failures are logged, never raised: the
    /// client is gone (the outbox is closed) or the payload cannot travel
    /// on this serializer (binary on V1).
    pub(crate) fn send(&self, out: &Outgoing<'_>) {
        match self.serializer.encode(out) {
            Ok(frame) => {
                // A closed outbox means the connection is going away; the
                // channel learns that when its mailbox closes.
                let _ = self.outbox.push(frame);
            }
            Err(error) => tracing::warn!(%error, "frame not sent"),
        }
    }
}

/// A joined channel's view of its connection, passed to every handler.
///
/// ```no_run
/// # use channels_runtime::socket::Socket;
/// # use channels_runtime::connect::Connect;
/// # fn demo<S: Connect>(socket: &mut Socket<S>) -> Result<(), Box<dyn std::error::Error>> {
/// use serde_json::json;
/// socket.push("notice", &json!({"text": "auto-saved"}))?;
/// socket.broadcast("comments:42:new", &json!({"comment": {"content": "hi"}}))?;
/// # Ok(()) }
/// ```
pub struct Socket<S: Connect> {
    topic: Topic,
    join_ref: Option<Arc<str>>,
    assigns: S::Assigns,
    conn: Arc<Connection>,
    /// Pushes made before the join reply went out, sent right after it.
    pending: Option<Vec<(String, Payload)>>,
}

impl<S: Connect> Socket<S> {
    pub(crate) fn new(topic: Topic, join_ref: Option<Arc<str>>, assigns: S::Assigns, conn: Arc<Connection>) -> Self {
        Socket { topic, join_ref, assigns, conn, pending: Some(Vec::new()) }
    }

    /// The topic this channel joined, e.g. `comments:42`.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The ref of the join this channel instance answers to.
    pub fn join_ref(&self) -> Option<&str> {
        self.join_ref.as_deref()
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

    /// Pushes `event` to this channel's client only. A push made inside
    /// `join` is sent right after the join reply.
    pub fn push<T: Serialize + ?Sized>(&mut self, event: &str, payload: &T) -> Result<(), BroadcastError> {
        self.push_payload(event, Payload::json(payload)?);
        Ok(())
    }

    /// Like [`Socket::push`], with a payload already encoded (or binary).
    pub fn push_payload(&mut self, event: &str, payload: Payload) {
        match &mut self.pending {
            Some(pending) => pending.push((event.to_owned(), payload)),
            None => self.conn.send(&Outgoing::Push {
                join_ref: self.join_ref.as_deref(),
                topic: &self.topic,
                event,
                payload: &payload,
            }),
        }
    }

    /// Broadcasts `event` to every subscriber of this channel's topic, this
    /// client included, on every node.
    pub fn broadcast<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<(), BroadcastError> {
        self.conn.pubsub.broadcast(&self.topic, event, payload)
    }

    /// Broadcasts to every subscriber of this channel's topic except this
    /// client.
    pub fn broadcast_from<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<(), BroadcastError> {
        self.conn.pubsub.broadcast_from(self.conn.outbox.id(), &self.topic, event, Payload::json(payload)?);
        Ok(())
    }

    /// Sends the pushes held back while joining; later pushes go out at once.
    pub(crate) fn release_pending(&mut self) {
        for (event, payload) in self.pending.take().unwrap_or_default() {
            self.push_payload(&event, payload);
        }
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
