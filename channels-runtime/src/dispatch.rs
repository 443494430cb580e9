//! The per-connection dispatcher (Phoenix's socket process): it takes every
//! decoded client message of one connection, answers heartbeats, starts,
//! leaves and displaces channels, and hands events to the channel tasks.
//!
//! It never waits on a channel, so a slow join or handler cannot delay a
//! heartbeat ack or another channel. It knows nothing about the transport.

use std::collections::HashMap;
use std::sync::Arc;

use crate::channel::{mailbox, ChannelRef, Mail, MailSender, Routes, Start};
use crate::connect::Connect;
use crate::logging::{clip, Throttle};
use crate::metrics::Metrics;
use crate::options::SocketOptions;
use crate::outbox::Outbox;
use crate::protocol::{Message, Outgoing, Payload, HEARTBEAT, PHOENIX_TOPIC, PHX_JOIN, PHX_LEAVE};
use crate::pubsub::{Delivery, PubSub, Subscriber};
use crate::reply::{self, Status};
use crate::router::Topic;
use crate::socket::Connection;

struct Joined {
    join_ref: Option<String>,
    mailbox: MailSender,
}

impl Joined {
    /// A channel whose task ended (crash, refusal, stop) is no longer joined.
    fn is_alive(&self) -> bool {
        !self.mailbox.is_closed()
    }
}

/// Routes the messages of one connection.
pub(crate) struct Dispatcher<S: Connect + Routes> {
    conn: Arc<Connection>,
    assigns: S::Assigns,
    state: Arc<S::State>,
    channels: HashMap<String, Joined>,
    next_generation: u64,
    max_channels: usize,
    join_rate: JoinRate,
    /// The warnings this connection's client can trigger at will.
    warnings: Throttle,
}

/// Joins allowed per second on one connection (a fixed one-second window).
struct JoinRate {
    limit: u32,
    window: tokio::time::Instant,
    count: u32,
}

impl JoinRate {
    fn allow(&mut self) -> bool {
        if self.limit == 0 {
            return true;
        }
        if self.window.elapsed() >= std::time::Duration::from_secs(1) {
            self.window = tokio::time::Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.limit
    }
}

impl<S: Connect + Routes> Dispatcher<S> {
    /// A dispatcher for a freshly accepted connection; subscribes it to its
    /// socket id so `disconnect` broadcasts reach it.
    pub(crate) fn new(
        assigns: S::Assigns,
        state: Arc<S::State>,
        outbox: Arc<Outbox>,
        serializer: crate::protocol::Serializer,
        pubsub: PubSub,
        options: &SocketOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let id: Option<Arc<str>> = S::id(&assigns, &state).map(Arc::from);
        if let Some(id) = &id {
            let subscriber = Subscriber {
                outbox: outbox.clone(),
                serializer,
                generation: 0,
                delivery: Delivery::Disconnect,
                intercepts: &[],
                channel: None,
            };
            pubsub.subscribe(id, subscriber, || {});
        }
        let limits = crate::fanout::FanoutLimits::new(options);
        let conn = Arc::new(Connection { outbox, serializer, pubsub, id, metrics, limits });
        let join_rate = JoinRate { limit: options.max_joins_per_second, window: tokio::time::Instant::now(), count: 0 };
        Dispatcher {
            conn,
            assigns,
            state,
            channels: HashMap::new(),
            next_generation: 1,
            max_channels: options.max_channels,
            join_rate,
            warnings: Throttle::new(5, std::time::Duration::from_secs(10), "warnings on this connection"),
        }
    }

    /// The connection's outbox.
    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.conn.outbox
    }

    /// Runs the connection's channel work that is not a client message:
    /// handlers still in flight, mail from other tasks and timers. The
    /// transport polls it beside its reads and writes (it is cancel-safe);
    /// it completes whenever it made progress.
    pub(crate) async fn drive(&mut self) {
        std::future::pending::<()>().await;
    }

    /// The connection is over: every channel terminates, with
    /// `Terminate::Shutdown` if the endpoint is shutting down, else with
    /// `Terminate::Closed`. Whatever cannot finish at once (a handler in
    /// flight, an `async` terminate) finishes in a task of its own.
    pub(crate) fn finish(mut self, shutdown: bool) {
        if shutdown {
            self.shutdown();
        }
        self.close();
    }

    /// The endpoint is shutting down: every channel terminates with
    /// `Terminate::Shutdown` (the connection closes with 1012 after).
    pub(crate) fn shutdown(&mut self) {
        for (_, joined) in self.channels.drain() {
            let _ = joined.mailbox.send(Box::new(Mail::Shutdown));
        }
    }

    /// The connection closed: every channel's mailbox closes, and each
    /// terminates with `Terminate::Closed`.
    pub(crate) fn close(&mut self) {
        self.channels.clear();
    }

    /// Handles one client message.
    pub(crate) fn dispatch(&mut self, msg: Message) {
        Metrics::incr(&self.conn.metrics.messages_in);
        if msg.topic == PHOENIX_TOPIC && msg.event == HEARTBEAT {
            return self.reply(None, &msg, Status::Ok, &Payload::empty());
        }
        match msg.event.as_str() {
            PHX_JOIN => self.join(msg),
            PHX_LEAVE => self.leave(msg),
            _ => self.forward(msg),
        }
    }

    fn reply(&self, join_ref: Option<&str>, msg: &Message, status: Status, response: &Payload) {
        self.conn.send(&Outgoing::Reply {
            join_ref,
            msg_ref: msg.msg_ref.as_deref(),
            topic: &msg.topic,
            status: status.as_str(),
            response,
        });
    }

    fn unmatched(&self, msg: &Message) {
        self.reply(None, msg, Status::Error, &reply::reason("unmatched topic"));
    }

    /// The live channel on `topic`, forgetting it if its task has ended.
    fn live(&mut self, topic: &str) -> Option<&Joined> {
        if self.channels.get(topic).is_some_and(|c| !c.is_alive()) {
            self.channels.remove(topic);
        }
        self.channels.get(topic)
    }

    /// A non-null join_ref that differs from the channel's is stale: the
    /// message belongs to an earlier join (Phoenix ≥ 1.8.3 drops it).
    fn is_stale(joined: &Joined, msg: &Message) -> bool {
        msg.join_ref.is_some() && msg.join_ref != joined.join_ref
    }

    fn join(&mut self, msg: Message) {
        // A join refused for flooding must not cost the client the channel it
        // already has on the topic: checked before the newest join displaces it.
        if !self.join_rate.allow() {
            if self.warnings.allow() {
                tracing::warn!(topic = ?clip(&msg.topic), limit = self.join_rate.limit, "join refused: too many joins per second");
            }
            Metrics::incr(&self.conn.metrics.joins_refused);
            let join_ref = msg.join_ref.as_deref();
            return self.reply(join_ref, &msg, Status::Error, &reply::reason("too many joins"));
        }
        if let Some(old) = self.live(&msg.topic) {
            // The newest join wins; the old instance sends phx_close.
            let _ = old.mailbox.send(Box::new(Mail::Displaced));
            self.channels.remove(&msg.topic);
        }
        let Some(route) = S::ROUTES.iter().find(|r| r.pattern().matches(&msg.topic)) else {
            if self.warnings.allow() {
                tracing::warn!(topic = ?clip(&msg.topic), "join on a topic no route matches");
            }
            Metrics::incr(&self.conn.metrics.joins_refused);
            return self.unmatched(&msg);
        };
        self.channels.retain(|_, c| c.is_alive());
        if self.channels.len() >= self.max_channels {
            if self.warnings.allow() {
                tracing::warn!(topic = ?clip(&msg.topic), limit = self.max_channels, "join refused: too many channels");
            }
            Metrics::incr(&self.conn.metrics.joins_refused);
            let join_ref = msg.join_ref.as_deref();
            return self.reply(join_ref, &msg, Status::Error, &reply::reason("too many channels joined"));
        }
        let (sender, mailbox) = mailbox();
        let me = sender.downgrade();
        let generation = self.next_generation;
        self.next_generation += 1;
        let Message { join_ref, msg_ref, topic, payload, .. } = msg;
        self.channels.insert(topic.clone(), Joined { join_ref: join_ref.clone(), mailbox: sender });
        route.start(Start {
            topic: Topic::new(topic, route.pattern()),
            join_ref,
            msg_ref,
            payload,
            assigns: self.assigns.clone(),
            state: self.state.clone(),
            conn: self.conn.clone(),
            generation,
            mailbox,
            me: ChannelRef::new(me),
        });
    }

    fn leave(&mut self, msg: Message) {
        match self.live(&msg.topic) {
            Some(joined) if Self::is_stale(joined, &msg) => {
                tracing::debug!(topic = ?clip(&msg.topic), "leave with a stale join_ref dropped");
            }
            Some(_) => {
                if let Some(joined) = self.channels.remove(&msg.topic) {
                    let _ = joined.mailbox.send(Box::new(Mail::Leave { msg_ref: msg.msg_ref }));
                }
            }
            // Leaving a topic that is not joined is fine: ok, echoing the
            // client's join_ref.
            None => self.reply(msg.join_ref.as_deref(), &msg, Status::Ok, &Payload::empty()),
        }
    }

    fn forward(&mut self, msg: Message) {
        let Some(joined) = self.live(&msg.topic) else {
            tracing::debug!(topic = ?clip(&msg.topic), event = ?clip(&msg.event), "message for a topic not joined");
            return self.unmatched(&msg);
        };
        if Self::is_stale(joined, &msg) {
            tracing::debug!(topic = ?clip(&msg.topic), event = ?clip(&msg.event), "message with a stale join_ref dropped");
            return;
        }
        let Message { msg_ref, event, payload, topic, .. } = msg;
        if let Err(mail) = joined.mailbox.send(Box::new(Mail::In { msg_ref, event, payload })) {
            // The channel ended between the check and the send.
            self.channels.remove(&topic);
            if let Mail::In { msg_ref, event, payload } = *mail {
                self.unmatched(&Message { join_ref: None, msg_ref, topic, event, payload });
            }
        }
    }
}

impl<S: Connect + Routes> Drop for Dispatcher<S> {
    fn drop(&mut self) {
        // Channel tasks end when their mailboxes close (dropped with
        // `channels`); the socket-id subscription is ours to remove.
        if let Some(id) = &self.conn.id {
            self.conn.pubsub.unsubscribe(id, self.conn.outbox.id(), 0);
        }
    }
}
