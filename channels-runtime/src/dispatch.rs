//! The per-connection dispatcher (Phoenix's socket process, and the
//! scheduler of its channel processes): it takes every decoded client
//! message of one connection, answers heartbeats, starts, leaves and
//! displaces channels, and runs their handlers.
//!
//! Channels have no task of their own. Each joined channel is a slot here:
//! its state while it waits for mail, or the one [`Step`] (a handler's
//! future) that is running, and the mail that waits behind that step.
//! The connection's task polls the steps ([`Dispatcher::drive`]) beside its
//! reads and writes, so a ping, a `handle_in` that replies or an
//! intercepted broadcast runs without waking any other task, while a
//! handler that awaits holds back only its own channel: per-channel order,
//! and no channel waits for another. Heartbeats never wait for a channel.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::channel::{Joined, Routes, Start, Step};
use crate::connect::Connect;
use crate::connection::Connection;
use crate::fanout::FanoutLimits;
use crate::logging::{clip, Line};
use crate::mailbox::Mail;
use crate::metrics::{Metrics, Rejection};
use crate::options::SocketOptions;
use crate::outbox::Outbox;
use crate::protocol::{Message, Outgoing, Payload, Serializer, HEARTBEAT, PHOENIX_TOPIC, PHX_JOIN, PHX_LEAVE};
use crate::pubsub::PubSub;
use crate::reply::{self, Status};
use crate::router::Topic;
use crate::trace::TraceParent;

/// One channel instance of the connection.
struct Slot<S: Connect> {
    topic: Arc<str>,
    /// The join_ref it was joined with, to drop stale messages.
    join_ref: Option<Arc<str>>,
    generation: u64,
    /// Still the channel of its topic: false once left or displaced (it is
    /// ending, and a new join of the topic is a fresh channel).
    attached: bool,
    /// Its join has not answered yet.
    joining: bool,
    run: Run<S>,
    /// Mail waiting for the running step to finish, in arrival order.
    queue: VecDeque<Mail>,
}

/// Where a channel is.
enum Run<S: Connect> {
    /// Waiting for mail.
    Idle(Box<dyn Joined<S>>),
    /// A step runs, owning the instance.
    Busy(Step<S>),
    /// Between the two, for an instant.
    Moving,
}

/// What polling a slot came to.
enum Polled {
    /// Nothing could move.
    Waiting,
    /// Steps finished; the slot goes on.
    Progressed,
    /// The channel ended; the slot was removed.
    Ended,
}

/// The channels of one connection and the steps they run.
struct Channels<S: Connect> {
    conn: Arc<Connection>,
    slots: Vec<Slot<S>>,
}

impl<S: Connect> Channels<S> {
    fn attached(&self, topic: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.attached && *s.topic == *topic)
    }

    /// Runs whatever can run: mail from other tasks is handed to its
    /// channels, and every running step is polled (a connection has few
    /// channels, and most are idle). `Ready` if anything moved.
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut progress = false;
        let mut i = 0;
        while i < self.slots.len() {
            match self.poll_slot(i, cx) {
                Polled::Ended => progress = true,
                Polled::Progressed => {
                    progress = true;
                    i += 1;
                }
                Polled::Waiting => i += 1,
            }
        }
        // After the steps: a step may have made the mailbox (its first
        // `ChannelRef`), and must find this task registered with it.
        if let Some(mailbox) = self.conn.mailbox_if_used() {
            if let Poll::Ready(letters) = mailbox.poll_take(cx) {
                for (to, mail) in letters {
                    // Mail for a channel that ended is dropped, as a message
                    // to a dead process.
                    if let Some(slot) = self.slots.iter_mut().find(|s| s.generation == to) {
                        slot.queue.push_back(mail);
                    }
                }
                progress = true;
            }
        }
        if progress {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn poll_slot(&mut self, i: usize, cx: &mut Context<'_>) -> Polled {
        let mut polled = Polled::Waiting;
        let slot = &mut self.slots[i];
        loop {
            if let Run::Idle(_) = slot.run {
                let Some(mail) = slot.queue.pop_front() else { return polled };
                if let Run::Idle(instance) = std::mem::replace(&mut slot.run, Run::Moving) {
                    slot.run = Run::Busy(instance.step(mail));
                }
            }
            let Run::Busy(step) = &mut slot.run else { return polled };
            match step.as_mut().poll(cx) {
                Poll::Pending => return polled,
                Poll::Ready(Some(instance)) => {
                    slot.run = Run::Idle(instance);
                    slot.joining = false;
                    polled = Polled::Progressed;
                }
                Poll::Ready(None) => {
                    let slot = self.slots.swap_remove(i);
                    if slot.joining {
                        refuse_queued(&self.conn, &slot);
                    }
                    return Polled::Ended;
                }
            }
        }
    }
}

/// After a refused join, answers what the client sent meanwhile as if the
/// topic had never been joined.
fn refuse_queued<S: Connect>(conn: &Connection, slot: &Slot<S>) {
    for mail in &slot.queue {
        if let Mail::In { msg_ref, .. } = mail {
            conn.send(&Outgoing::Reply {
                join_ref: None,
                msg_ref: msg_ref.as_deref(),
                topic: &slot.topic,
                status: Status::Error.as_str(),
                response: &reply::reason("unmatched topic"),
            });
        }
    }
}

/// Routes the messages of one connection and runs its channels.
pub(crate) struct Dispatcher<S: Connect + Routes> {
    channels: Channels<S>,
    assigns: S::Assigns,
    state: Arc<S::State>,
    next_generation: u64,
    max_channels: usize,
    /// 32 bits: every connection holds it (a limit above 4 GiB saturates).
    max_topic_bytes: u32,
    join_rate: JoinRate,
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

/// What a transport gives a new connection's dispatcher, beside the
/// application's assigns and state.
pub(crate) struct Wiring {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) serializer: Serializer,
    pub(crate) pubsub: PubSub,
    pub(crate) metrics: Arc<Metrics>,
    /// The client's trace context, if it sent one.
    pub(crate) traceparent: Option<TraceParent>,
}

impl<S: Connect + Routes> Dispatcher<S> {
    /// A dispatcher for a freshly accepted connection; subscribes it to its
    /// socket id so `disconnect` broadcasts reach it.
    pub(crate) fn new(assigns: S::Assigns, state: Arc<S::State>, wiring: Wiring, options: &SocketOptions) -> Self {
        let Wiring { outbox, serializer, pubsub, metrics, traceparent } = wiring;
        let id: Option<Arc<str>> = S::id(&assigns, &state).map(Arc::from);
        let limits = FanoutLimits::new(options, &pubsub);
        let conn = Connection::open(outbox, serializer, pubsub, id, metrics, limits, traceparent);
        let join_rate = JoinRate { limit: options.max_joins_per_second, window: tokio::time::Instant::now(), count: 0 };
        Dispatcher {
            channels: Channels { conn, slots: Vec::new() },
            assigns,
            state,
            next_generation: 1,
            max_channels: options.max_channels,
            max_topic_bytes: u32::try_from(options.max_topic_bytes).unwrap_or(u32::MAX),
            join_rate,
        }
    }

    fn conn(&self) -> &Arc<Connection> {
        &self.channels.conn
    }

    /// The socket's id (`Connect::id`), if it has one.
    pub(crate) fn socket_id(&self) -> Option<&str> {
        self.conn().id.as_deref()
    }

    /// The connection's outbox.
    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.conn().outbox
    }

    /// Runs the connection's channel work: steps that are ready (handlers
    /// of messages already dispatched, or in flight) and mail from other
    /// tasks and timers. The transport polls it beside its reads and writes
    /// (it is cancel-safe); it completes whenever it made progress.
    pub(crate) async fn drive(&mut self) {
        poll_fn(|cx| self.channels.poll_work(cx)).await;
    }

    /// The connection is over: every channel terminates, with
    /// `Terminate::Shutdown` if the endpoint is shutting down, else with
    /// `Terminate::Closed`, after the mail it already has. What cannot
    /// finish at once (a handler in flight, an `async` terminate) finishes
    /// in a task of its own.
    pub(crate) fn finish(mut self, shutdown: bool) {
        let channels = std::mem::take(&mut self.channels.slots);
        finish(Channels { conn: self.conn().clone(), slots: channels }, shutdown);
    }

    /// Handles one client message. Handlers it starts run on the next
    /// [`Dispatcher::drive`].
    pub(crate) fn dispatch(&mut self, msg: Message) {
        self.conn().metrics.messages_in.incr();
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
        self.conn().send(&Outgoing::Reply {
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

    /// A non-null join_ref that differs from the channel's is stale: the
    /// message belongs to an earlier join (Phoenix ≥ 1.8.3 drops it).
    fn is_stale(slot: &Slot<S>, msg: &Message) -> bool {
        msg.join_ref.is_some() && msg.join_ref.as_deref() != slot.join_ref.as_deref()
    }

    /// Detaches the channel at `at` from its topic and tells it why.
    fn detach(&mut self, at: usize, mail: Mail) {
        let slot = &mut self.channels.slots[at];
        slot.attached = false;
        slot.queue.push_back(mail);
    }

    /// A join refused before it reached a channel (its rate, the channel
    /// cap, no route): exported as channel `none`.
    fn refused_before_routing(&self) {
        self.conn().metrics.joins_refused.incr();
        crate::metrics::channel::unrouted()
            .joined(crate::metrics::channel::Outcome::Refused, std::time::Instant::now());
    }

    fn join(&mut self, msg: Message) {
        // A join refused for flooding must not cost the client the channel it
        // already has on the topic: checked before the newest join displaces it.
        if !self.join_rate.allow() {
            if self.conn().metrics.lines.allow(Line::JoinRate) {
                tracing::warn!(topic = ?clip(&msg.topic), limit = self.join_rate.limit, "{}", Line::JoinRate.what());
            }
            self.refused_before_routing();
            let join_ref = msg.join_ref.as_deref();
            return self.reply(join_ref, &msg, Status::Error, &reply::reason("too many joins"));
        }
        // Before anything is made for the topic: every reply, presence
        // state and diff on it would echo it.
        let max_topic = self.max_topic_bytes as usize;
        if max_topic != 0 && msg.topic.len() > max_topic {
            let metrics = &self.conn().metrics;
            metrics.inputs_refused.incr(Rejection::TopicTooLong);
            if metrics.lines.allow(Line::TopicTooLong) {
                tracing::warn!(topic = ?clip(&msg.topic), max = max_topic, "{}", Line::TopicTooLong.what());
            }
            self.refused_before_routing();
            let join_ref = msg.join_ref.as_deref();
            let response = Payload::json(&serde_json::json!({"reason": "topic too long", "max": max_topic}));
            return self.reply(
                join_ref,
                &msg,
                Status::Error,
                &response.unwrap_or_else(|_| reply::reason("topic too long")),
            );
        }
        if let Some(old) = self.channels.attached(&msg.topic) {
            // The newest join wins; the old instance sends phx_close.
            self.detach(old, Mail::Displaced);
        }
        let Some(route) = S::ROUTES.iter().find(|r| r.pattern().matches(&msg.topic)) else {
            if self.conn().metrics.lines.allow(Line::Unmatched) {
                tracing::warn!(topic = ?clip(&msg.topic), "{}", Line::Unmatched.what());
            }
            self.refused_before_routing();
            return self.unmatched(&msg);
        };
        if self.channels.slots.iter().filter(|s| s.attached).count() >= self.max_channels {
            if self.conn().metrics.lines.allow(Line::ChannelLimit) {
                tracing::warn!(topic = ?clip(&msg.topic), limit = self.max_channels, "{}", Line::ChannelLimit.what());
            }
            self.refused_before_routing();
            let join_ref = msg.join_ref.as_deref();
            return self.reply(join_ref, &msg, Status::Error, &reply::reason("too many channels joined"));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let Message { join_ref, msg_ref, topic, payload, .. } = msg;
        let join_ref: Option<Arc<str>> = join_ref.map(Arc::from);
        let topic = Topic::new(topic, route.pattern());
        let step = route.join(Start {
            topic: topic.clone(),
            join_ref: join_ref.clone(),
            msg_ref,
            payload,
            assigns: self.assigns.clone(),
            state: self.state.clone(),
            conn: self.conn().clone(),
            generation,
        });
        // Most connections join one or two topics: grow by one rather than
        // keep room for four idle slots.
        self.channels.slots.reserve_exact(1);
        self.channels.slots.push(Slot {
            topic: topic.shared().clone(),
            join_ref,
            generation,
            attached: true,
            joining: true,
            run: Run::Busy(step),
            queue: VecDeque::new(),
        });
    }

    fn leave(&mut self, msg: Message) {
        match self.channels.attached(&msg.topic) {
            Some(at) if Self::is_stale(&self.channels.slots[at], &msg) => {
                tracing::debug!(topic = ?clip(&msg.topic), "leave with a stale join_ref dropped");
            }
            Some(at) => self.detach(at, Mail::Leave { msg_ref: msg.msg_ref }),
            // Leaving a topic that is not joined is fine: ok, echoing the
            // client's join_ref.
            None => self.reply(msg.join_ref.as_deref(), &msg, Status::Ok, &Payload::empty()),
        }
    }

    fn forward(&mut self, msg: Message) {
        let Some(at) = self.channels.attached(&msg.topic) else {
            tracing::debug!(topic = ?clip(&msg.topic), event = ?clip(&msg.event), "message for a topic not joined");
            return self.unmatched(&msg);
        };
        let slot = &mut self.channels.slots[at];
        if Self::is_stale(slot, &msg) {
            tracing::debug!(topic = ?clip(&msg.topic), event = ?clip(&msg.event), "message with a stale join_ref dropped");
            return;
        }
        let Message { msg_ref, event, payload, .. } = msg;
        slot.queue.push_back(Mail::In { msg_ref, event, payload });
    }
}

/// Ends every channel of a connection that is over, in this task if that
/// takes no waiting, else in a task of its own.
fn finish<S: Connect>(mut channels: Channels<S>, shutdown: bool) {
    channels.conn.close();
    if channels.slots.is_empty() {
        return;
    }
    for slot in &mut channels.slots {
        slot.queue.push_back(if shutdown { Mail::Shutdown } else { Mail::Closed });
    }
    // One pass with no waker: what it finishes is done here; what is left
    // is polled again, at once, by its own task.
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    while channels.poll_work(&mut cx).is_ready() && !channels.slots.is_empty() {}
    if channels.slots.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime (a test socket dropped outside one): the channels go
        // without their terminate, but leave nothing subscribed.
        for slot in &channels.slots {
            channels.conn.pubsub.unsubscribe(&slot.topic, channels.conn.outbox.id(), slot.generation);
        }
        return;
    };
    runtime.spawn(async move {
        poll_fn(|cx| {
            let _ = channels.poll_work(cx);
            if channels.slots.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    });
}

impl<S: Connect + Routes> Drop for Dispatcher<S> {
    fn drop(&mut self) {
        // A dispatcher dropped without `finish` (a test socket, a LongPoll
        // session that timed out) still ends its channels properly.
        let slots = std::mem::take(&mut self.channels.slots);
        finish(Channels { conn: self.conn().clone(), slots }, false);
    }
}

/// What a [`Driven`] dispatcher is told.
enum Command {
    Message(Message),
    Finish { shutdown: bool },
}

/// A dispatcher in a task of its own, for connections whose transport has
/// no task to run it in (a LongPoll session lives between HTTP requests; a
/// test socket lives in the test).
pub(crate) struct Driven {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
}

impl Driven {
    /// Starts the dispatcher's task, in the connection's `span`; it ends
    /// once [`Driven::finish`] is called or the handle is dropped (its
    /// channels terminate `Closed`).
    pub(crate) fn spawn<S: Connect + Routes>(mut dispatcher: Dispatcher<S>, span: tracing::Span) -> Self {
        let (commands, mut inbox) = tokio::sync::mpsc::unbounded_channel();
        let task = async move {
            loop {
                tokio::select! {
                    command = inbox.recv() => match command {
                        Some(Command::Message(msg)) => dispatcher.dispatch(msg),
                        Some(Command::Finish { shutdown }) => return dispatcher.finish(shutdown),
                        None => return dispatcher.finish(false),
                    },
                    () = dispatcher.drive() => {}
                }
            }
        };
        crate::trace::spawn_in(span, task);
        Driven { commands }
    }

    /// Hands the dispatcher one client message.
    pub(crate) fn dispatch(&self, msg: Message) {
        // The task ends only after `finish`; nothing to dispatch to then.
        let _ = self.commands.send(Command::Message(msg));
    }

    /// Ends the connection's channels (see [`Dispatcher::finish`]).
    pub(crate) fn finish(&self, shutdown: bool) {
        let _ = self.commands.send(Command::Finish { shutdown });
    }
}
