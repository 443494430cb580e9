//! The socket's task: it owns the connection and every channel's state,
//! and does what phoenix.js's `Socket`, `Channel` and `Push` do, in one
//! place, so no state is shared behind locks.
//!
//! The handles ([`Socket`](super::Socket), [`Channel`](super::Channel))
//! send it [`Command`]s; it answers through the oneshot each carries. Its
//! timers (heartbeat, reconnect, rejoin, join and push timeouts) are
//! instants it keeps, and it sleeps until the nearest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::backoff::Backoff;
use crate::command::Command;
use crate::error::{JoinError, SocketError};
use crate::events::{Event, Listeners};
use crate::link::{self, Link, Reader, Target};
use crate::options::{OnRefused, SocketBuilder};
use crate::push::PushError;
use crate::queue::{self, Bound};
use crate::recovery::Tracker;
use crate::state::{ChannelState, ConnectionState, SocketEvent};
use phx_channels_protocol::{
    EncodeError, Message, Payload, Position, Serializer, ServerMessage, ServerReply, HEARTBEAT, PHOENIX_TOPIC,
    PHX_CLOSE, PHX_ERROR, PHX_JOIN, PHX_LEAVE,
};

type Opening = Pin<Box<dyn Future<Output = Result<(Link, Reader), SocketError>> + Send>>;

/// How long a connection must stay open for the reconnect backoff to start
/// again from its first step: a server that closes every connection right
/// after opening it (or sends something the client closes it for) is
/// tried ever more slowly, not every 10 ms.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// At most this many events (phoenix.js's whole `Channel` callbacks
/// registered before the join, in effect) wait in a channel's backlog for
/// the streams made after the join.
const BACKLOG_EVENTS: usize = 256;

/// The connection, in phoenix.js's terms: closed (maybe with a reconnect
/// scheduled), connecting, or open.
enum Conn {
    Closed { retry_at: Option<Instant> },
    Connecting(Opening),
    Open { link: Link, reader: Reader, close: Option<(u16, String)>, opened_at: Instant },
}

/// What woke the task.
enum Wake {
    Command(Option<Command>),
    Opened(Result<(Link, Reader), SocketError>),
    Frame(Option<Result<WsMessage, tungstenite::Error>>),
    Timer,
}

/// A frame waiting for the connection to open (phoenix.js's `sendBuffer`).
struct Queued {
    message: Message,
    /// The channel it belongs to: dropped if that channel rejoined or
    /// closed meanwhile (phoenix.js's `isOutdated`), leaves excepted.
    channel: Option<u64>,
}

/// A push waiting for its channel to be joined (phoenix.js's
/// `pushBuffer`).
struct Buffered {
    event: String,
    payload: Payload,
    timeout: Duration,
    deadline: Instant,
    reply: oneshot::Sender<Result<Payload, PushError>>,
}

/// Who waits for the reply of a message sent.
enum Waiter {
    Push(oneshot::Sender<Result<Payload, PushError>>),
    /// A leave: the channel closes on its reply or timeout.
    Leave(oneshot::Sender<Result<(), PushError>>),
    /// The leave phoenix.js sends after a join timed out: nobody waits.
    Nobody,
}

struct InFlight {
    channel: u64,
    timeout: Duration,
    deadline: Instant,
    waiter: Waiter,
}

/// One channel's state (phoenix.js's `Channel` and its `joinPush`).
struct Chan {
    topic: String,
    params: Payload,
    timeout: Duration,
    state: ChannelState,
    state_tx: watch::Sender<ChannelState>,
    /// The ref of the current join push, `None` once it is reset.
    join_ref: Option<String>,
    /// When the join push in flight times out.
    join_deadline: Option<Instant>,
    /// The caller of the first join, and when it gives up.
    first_join: Option<(Instant, oneshot::Sender<Result<Payload, JoinError>>)>,
    rejoin_tries: u32,
    rejoin_at: Option<Instant>,
    buffer: Vec<Buffered>,
    listeners: Listeners,
    /// Recovering on a topic with history: its position.
    tracker: Option<Tracker>,
    position_tx: watch::Sender<Option<Position>>,
}

impl Chan {
    fn set_state(&mut self, state: ChannelState) {
        self.state = state;
        self.state_tx.send_replace(state);
    }

    /// phoenix.js's `isMember`: the message is for this channel's topic and,
    /// when it names a join, for its current join.
    fn is_member(&self, topic: &str, join_ref: Option<&str>) -> bool {
        self.topic == topic && join_ref.is_none_or(|j| self.join_ref.as_deref() == Some(j))
    }
}

struct Heartbeat {
    at: Instant,
    pending: Option<String>,
}

pub(crate) struct Driver {
    target: Target,
    serializer: Serializer,
    connect_timeout: Duration,
    heartbeat_interval: Duration,
    reconnect_after: Backoff,
    rejoin_after: Backoff,
    on_refused: OnRefused,
    max_message_size: usize,
    backlog: Bound,
    commands: mpsc::UnboundedReceiver<Command>,
    connection_tx: watch::Sender<ConnectionState>,
    conn: Conn,
    reconnect_tries: u32,
    refs: u64,
    send_buffer: Vec<Queued>,
    heartbeat: Option<Heartbeat>,
    channels: BTreeMap<u64, Chan>,
    in_flight: HashMap<String, InFlight>,
    deadlines: BTreeSet<(Instant, String)>,
    socket_listeners: Vec<queue::Sender<SocketEvent>>,
    /// Why the last connection attempt failed, while none succeeded since:
    /// what a join waiting for the connection is told at its timeout.
    last_error: Option<SocketError>,
    /// Why the socket stopped trying ([`OnRefused::stop`], an invalid
    /// request): later joins fail with it.
    stopped: Option<SocketError>,
}

impl Driver {
    pub fn new(
        target: Target,
        options: SocketBuilder,
        commands: mpsc::UnboundedReceiver<Command>,
        connection_tx: watch::Sender<ConnectionState>,
    ) -> Self {
        Driver {
            target,
            serializer: options.serializer,
            connect_timeout: options.timeout,
            heartbeat_interval: options.heartbeat_interval,
            reconnect_after: options.reconnect_after,
            rejoin_after: options.rejoin_after,
            on_refused: options.on_refused,
            max_message_size: options.max_message_size,
            backlog: Bound { items: BACKLOG_EVENTS.min(options.event_buffer.items), bytes: options.event_buffer.bytes },
            commands,
            connection_tx,
            conn: Conn::Closed { retry_at: None },
            reconnect_tries: 0,
            refs: 0,
            send_buffer: Vec::new(),
            heartbeat: None,
            channels: BTreeMap::new(),
            in_flight: HashMap::new(),
            deadlines: BTreeSet::new(),
            socket_listeners: Vec::new(),
            last_error: None,
            stopped: None,
        }
    }

    pub async fn run(mut self) {
        self.start_connecting();
        loop {
            let deadline = self.next_deadline();
            let wake = tokio::select! {
                command = self.commands.recv() => Wake::Command(command),
                wake = next_on(&mut self.conn) => wake,
                () = sleep_until(deadline) => Wake::Timer,
            };
            match wake {
                Wake::Command(Some(Command::Disconnect)) | Wake::Command(None) => break,
                Wake::Command(Some(command)) => self.command(command),
                Wake::Opened(Ok((link, reader))) => self.opened(link, reader),
                Wake::Opened(Err(error)) => self.connect_failed(error),
                Wake::Frame(frame) => self.frame(frame),
                Wake::Timer => self.timers(Instant::now()),
            }
        }
        self.shut_down();
    }

    // ---------------------------------------------------------------- connection

    fn start_connecting(&mut self) {
        let open = Link::open(self.target.clone(), self.connect_timeout, self.max_message_size);
        self.conn = Conn::Connecting(Box::pin(open));
        self.connection_tx.send_replace(ConnectionState::Connecting);
    }

    fn is_open(&self) -> bool {
        matches!(self.conn, Conn::Open { .. })
    }

    /// phoenix.js's `onConnOpen`.
    fn opened(&mut self, link: Link, reader: Reader) {
        tracing::debug!(url = %self.target.url, "client connected");
        self.conn = Conn::Open { link, reader, close: None, opened_at: Instant::now() };
        self.connection_tx.send_replace(ConnectionState::Open);
        // The tries restart once this connection has proved stable
        // (`connection_lost`), not now.
        self.last_error = None;
        self.heartbeat = Some(Heartbeat { at: Instant::now() + self.heartbeat_interval, pending: None });
        for queued in std::mem::take(&mut self.send_buffer) {
            let outdated = queued.channel.is_some_and(|id| match self.channels.get(&id) {
                Some(chan) => queued.message.join_ref != chan.join_ref && queued.message.event != PHX_LEAVE,
                None => queued.message.event != PHX_LEAVE,
            });
            if !outdated {
                self.send_logged(queued.message, queued.channel);
            }
        }
        self.notify(SocketEvent::Open);
        let errored: Vec<u64> = self
            .channels
            .iter_mut()
            .filter_map(|(id, chan)| {
                chan.rejoin_tries = 0;
                chan.rejoin_at = None;
                (chan.state == ChannelState::Errored).then_some(*id)
            })
            .collect();
        for id in errored {
            self.rejoin(id);
        }
    }

    /// A connection attempt failed: a refusal fails the joins waiting for
    /// the connection at once, and is retried or not as the app chose; any
    /// other failure is retried (an invalid request excepted).
    fn connect_failed(&mut self, error: SocketError) {
        tracing::debug!(url = %self.target.url, %error, "client connection failed");
        self.notify(SocketEvent::Error(error.clone()));
        let retry = match &error {
            SocketError::Refused(refusal) => {
                self.fail_first_joins(&error);
                self.on_refused.retries(refusal)
            }
            SocketError::Tls(_) => {
                // Nothing will change by waiting for it: the app hears now.
                self.fail_first_joins(&error);
                true
            }
            SocketError::InvalidRequest(_) => false,
            _ => true,
        };
        if retry {
            self.last_error = Some(error);
            self.schedule_reconnect();
        } else {
            self.stop(error);
        }
    }

    /// Every channel whose first join waits for the connection fails
    /// with `error`, and is gone.
    fn fail_first_joins(&mut self, error: &SocketError) {
        let waiting: Vec<u64> =
            self.channels.iter().filter(|(_, c)| c.first_join.is_some()).map(|(id, _)| *id).collect();
        for id in waiting {
            if let Some((_, first)) = self.channels.get_mut(&id).and_then(|c| c.first_join.take()) {
                let _ = first.send(Err(JoinError::Connect(error.clone())));
            }
            self.close_channel(id, "cannot connect");
        }
    }

    /// The socket gives up for good: as `disconnect`, but later joins are
    /// told why.
    fn stop(&mut self, error: SocketError) {
        tracing::info!(url = %self.target.url, %error, "client socket stopped");
        self.fail_first_joins(&error);
        self.send_buffer.clear();
        self.shut_down();
        // The socket's event streams end, as they do after `disconnect`.
        self.socket_listeners.clear();
        self.stopped = Some(error);
    }

    fn schedule_reconnect(&mut self) {
        self.reconnect_tries = self.reconnect_tries.saturating_add(1);
        let retry_at = Instant::now() + self.reconnect_after.delay(self.reconnect_tries);
        self.conn = Conn::Closed { retry_at: Some(retry_at) };
        self.connection_tx.send_replace(ConnectionState::Closed);
    }

    /// The open connection ended (or was given up): phoenix.js's
    /// `onConnClose` and `triggerChanError`.
    fn connection_lost(&mut self, reason: String) {
        let code = match std::mem::replace(&mut self.conn, Conn::Closed { retry_at: None }) {
            Conn::Open { close, opened_at, .. } => {
                if opened_at.elapsed() >= STABLE_AFTER {
                    self.reconnect_tries = 0;
                }
                close
            }
            _ => None,
        };
        self.heartbeat = None;
        for chan in self.channels.values_mut() {
            if matches!(chan.state, ChannelState::Joined | ChannelState::Joining) {
                error_channel(chan);
            }
        }
        let (code, reason) = match code {
            Some((code, server_reason)) => (Some(code), if server_reason.is_empty() { reason } else { server_reason }),
            None => (None, reason),
        };
        self.notify(SocketEvent::Close { code, reason });
        self.schedule_reconnect();
    }

    fn notify(&mut self, event: SocketEvent) {
        self.socket_listeners.retain(|tx| tx.send(event.clone(), 0));
    }

    fn make_ref(&mut self) -> String {
        self.refs = self.refs.wrapping_add(1);
        self.refs.to_string()
    }

    /// phoenix.js's `Socket.push`: sent if open, else buffered (and
    /// encoded when it is sent).
    fn send(&mut self, message: Message, channel: Option<u64>) -> Result<(), EncodeError> {
        let Conn::Open { link, .. } = &self.conn else {
            self.send_buffer.push(Queued { message, channel });
            return Ok(());
        };
        let frame = self.serializer.encode_client(&message)?;
        // A writer gone means the connection is closing: its reader ends
        // next, and the socket reconnects.
        link.send(frame);
        Ok(())
    }

    /// [`Driver::send`] for the socket's own frames, which always encode
    /// (a topic too long for a binary frame cannot be: they are JSON).
    fn send_logged(&mut self, message: Message, channel: Option<u64>) {
        let (topic, event) = (message.topic.clone(), message.event.clone());
        if let Err(error) = self.send(message, channel) {
            tracing::warn!(%topic, %event, %error, "cannot encode");
        }
    }

    // ---------------------------------------------------------------- commands

    fn command(&mut self, command: Command) {
        match command {
            Command::Join { id, topic, params, timeout, state, reply, recover, position } => {
                if let Some(error) = &self.stopped {
                    let _ = reply.send(Err(JoinError::Connect(error.clone())));
                    return;
                }
                let now = Instant::now();
                let chan = Chan {
                    topic,
                    params,
                    timeout,
                    state: ChannelState::Closed,
                    state_tx: state,
                    join_ref: None,
                    join_deadline: None,
                    first_join: Some((now + timeout, reply)),
                    rejoin_tries: 0,
                    rejoin_at: None,
                    buffer: Vec::new(),
                    listeners: Listeners::new(self.backlog),
                    tracker: recover.map(Tracker::new),
                    position_tx: position,
                };
                self.channels.insert(id, chan);
                self.rejoin(id);
            }
            Command::Push { id, event, payload, timeout, reply } => {
                let open = self.is_open();
                let Some(chan) = self.channels.get_mut(&id) else {
                    let _ = reply.send(Err(PushError::Closed));
                    return;
                };
                if chan.state == ChannelState::Joined && open {
                    self.push(id, event, payload, timeout, Waiter::Push(reply));
                } else {
                    let deadline = Instant::now() + timeout;
                    chan.buffer.push(Buffered { event, payload, timeout, deadline, reply });
                }
            }
            Command::Subscribe { id, filter, tx } => {
                if let Some(chan) = self.channels.get_mut(&id) {
                    chan.listeners.subscribe(filter, tx);
                }
            }
            Command::Leave { id, timeout, reply } => self.leave(id, timeout, reply),
            // A stopped socket has no more events: the stream ends at once.
            Command::SocketEvents(tx) if self.stopped.is_none() => self.socket_listeners.push(tx),
            Command::SocketEvents(_) => {}
            // Handled by the loop.
            Command::Disconnect => {}
        }
    }

    /// Sends a channel's push now, and waits for its reply.
    fn push(&mut self, id: u64, event: String, payload: Payload, timeout: Duration, waiter: Waiter) {
        let Some((join_ref, topic)) = self.channels.get(&id).map(|c| (c.join_ref.clone(), c.topic.clone())) else {
            return;
        };
        let msg_ref = self.make_ref();
        let message = Message { join_ref, msg_ref: Some(msg_ref.clone()), topic, event, payload };
        if let Err(error) = self.send(message, Some(id)) {
            if let Waiter::Push(reply) = waiter {
                let _ = reply.send(Err(error.into()));
            }
            return;
        }
        let deadline = Instant::now() + timeout;
        self.deadlines.insert((deadline, msg_ref.clone()));
        self.in_flight.insert(msg_ref, InFlight { channel: id, timeout, deadline, waiter });
    }

    /// phoenix.js's `Channel.rejoin`: a new join push.
    fn rejoin(&mut self, id: u64) {
        let Some(topic) = self.channels.get(&id).filter(|c| c.state != ChannelState::Leaving).map(|c| c.topic.clone())
        else {
            return;
        };
        self.leave_open_topic(id, &topic);
        let join_ref = self.make_ref();
        let Some(chan) = self.channels.get_mut(&id) else { return };
        chan.set_state(ChannelState::Joining);
        chan.join_ref = Some(join_ref.clone());
        chan.join_deadline = Some(Instant::now() + chan.timeout);
        let payload = match &mut chan.tracker {
            Some(tracker) => {
                tracker.interrupted();
                tracker.params(&chan.params)
            }
            None => chan.params.clone(),
        };
        let message = Message {
            join_ref: Some(join_ref.clone()),
            msg_ref: Some(join_ref),
            topic,
            event: PHX_JOIN.to_owned(),
            payload,
        };
        self.send_logged(message, Some(id));
    }

    /// phoenix.js's `leaveOpenTopic`: a second join of a topic replaces the
    /// first (the server would close it anyway).
    fn leave_open_topic(&mut self, id: u64, topic: &str) {
        let duplicates: Vec<u64> = self
            .channels
            .iter()
            .filter(|(other, c)| {
                **other != id && c.topic == topic && matches!(c.state, ChannelState::Joined | ChannelState::Joining)
            })
            .map(|(other, _)| *other)
            .collect();
        for other in duplicates {
            tracing::debug!(topic, "leaving duplicate topic");
            let timeout = self.channels.get(&other).map_or(Duration::ZERO, |c| c.timeout);
            let (reply, _) = oneshot::channel();
            self.leave(other, timeout, reply);
        }
    }

    /// phoenix.js's `Channel.leave`.
    fn leave(&mut self, id: u64, timeout: Duration, reply: oneshot::Sender<Result<(), PushError>>) {
        let open = self.is_open();
        let Some(chan) = self.channels.get_mut(&id) else {
            let _ = reply.send(Ok(()));
            return;
        };
        let joined = chan.state == ChannelState::Joined;
        chan.rejoin_at = None;
        chan.join_deadline = None;
        chan.set_state(ChannelState::Leaving);
        if open && joined {
            self.push(id, PHX_LEAVE.to_owned(), Payload::empty(), timeout, Waiter::Leave(reply));
        } else {
            // Nothing to tell the server: the leave is done here.
            self.close_channel(id, "leave");
            let _ = reply.send(Ok(()));
        }
    }

    // ---------------------------------------------------------------- frames

    fn frame(&mut self, frame: Option<Result<WsMessage, tungstenite::Error>>) {
        let decoded = match frame {
            Some(Ok(WsMessage::Text(text))) => self.serializer.decode_server_text(text.as_bytes()),
            Some(Ok(WsMessage::Binary(bytes))) => self.serializer.decode_server_binary(&bytes),
            Some(Ok(WsMessage::Close(close))) => {
                if let (Conn::Open { close: seen, .. }, Some(close)) = (&mut self.conn, close) {
                    *seen = Some((u16::from(close.code), close.reason.to_string()));
                }
                return;
            }
            // Pings are answered by tungstenite.
            Some(Ok(_)) => return,
            Some(Err(error)) => {
                let error = link::read_error(&error);
                if let (SocketError::MessageTooLarge { .. }, Conn::Open { link, .. }) = (&error, &self.conn) {
                    // RFC 6455 §7.4.1: 1009, a message too big to process.
                    link.close_with(1009, "message too big");
                }
                self.notify(SocketEvent::Error(error.clone()));
                return self.connection_lost(error.to_string());
            }
            None => return self.connection_lost("connection closed".to_owned()),
        };
        match decoded {
            Ok(ServerMessage::Reply(reply)) => self.reply(reply),
            Ok(ServerMessage::Event(message)) => self.event(message),
            Err(error) => tracing::warn!(%error, "skipping a frame the client cannot decode"),
        }
    }

    fn reply(&mut self, reply: ServerReply) {
        let Some(msg_ref) = reply.msg_ref.as_deref() else {
            return tracing::debug!(topic = %reply.topic, "reply without a ref");
        };
        if reply.topic == PHOENIX_TOPIC {
            if let Some(heartbeat) = self.heartbeat.as_mut().filter(|h| h.pending.as_deref() == Some(msg_ref)) {
                heartbeat.pending = None;
                heartbeat.at = Instant::now() + self.heartbeat_interval;
            }
            return;
        }
        let joining = self.channels.iter().find_map(|(id, c)| {
            (c.state == ChannelState::Joining
                && c.join_ref.as_deref() == Some(msg_ref)
                && c.is_member(&reply.topic, reply.join_ref.as_deref()))
            .then_some(*id)
        });
        if let Some(id) = joining {
            return self.join_reply(id, reply);
        }
        let is_member = self.in_flight.get(msg_ref).is_some_and(|f| {
            self.channels.get(&f.channel).is_some_and(|c| c.is_member(&reply.topic, reply.join_ref.as_deref()))
        });
        if !is_member {
            return tracing::debug!(topic = %reply.topic, msg_ref, "dropping a reply nobody waits for");
        }
        let Some(flight) = self.in_flight.remove(msg_ref) else { return };
        self.deadlines.remove(&(flight.deadline, msg_ref.to_owned()));
        let outcome = if reply.status == "ok" {
            Ok(reply.response)
        } else {
            Err(PushError::Reply { status: reply.status, response: reply.response })
        };
        self.settle(flight, outcome);
    }

    /// A push's outcome goes to whoever waits for it.
    fn settle(&mut self, flight: InFlight, outcome: Result<Payload, PushError>) {
        match flight.waiter {
            Waiter::Push(reply) => {
                let _ = reply.send(outcome);
            }
            Waiter::Leave(reply) => {
                self.close_channel(flight.channel, "leave");
                let _ = reply.send(outcome.map(drop));
            }
            Waiter::Nobody => {}
        }
    }

    fn join_reply(&mut self, id: u64, reply: ServerReply) {
        let open = self.is_open();
        let Some(chan) = self.channels.get_mut(&id) else { return };
        chan.join_deadline = None;
        if reply.status == "ok" {
            chan.set_state(ChannelState::Joined);
            chan.rejoin_tries = 0;
            chan.rejoin_at = None;
            if let Some((_, first)) = chan.first_join.take() {
                let _ = first.send(Ok(reply.response));
            }
            let now = Instant::now();
            for push in std::mem::take(&mut chan.buffer) {
                if push.deadline > now {
                    self.push(id, push.event, push.payload, push.timeout, Waiter::Push(push.reply));
                }
            }
            return;
        }
        if let Some((_, first)) = chan.first_join.take() {
            let _ = first.send(Err(JoinError::Refused(reply.response)));
            return self.close_channel(id, "join refused");
        }
        tracing::debug!(topic = %chan.topic, "rejoin refused");
        chan.set_state(ChannelState::Errored);
        if open {
            schedule_rejoin(chan, &self.rejoin_after);
        }
    }

    fn event(&mut self, message: Message) {
        let open = self.is_open();
        let members: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, c)| c.is_member(&message.topic, message.join_ref.as_deref()))
            .map(|(id, _)| *id)
            .collect();
        if members.is_empty() {
            return tracing::debug!(topic = %message.topic, event = %message.event, "no channel for this event");
        }
        for id in members {
            let Some(chan) = self.channels.get_mut(&id) else { continue };
            let event = Event {
                event: message.event.clone(),
                payload: message.payload.clone(),
                join_ref: chan.join_ref.clone(),
                position: None,
            };
            match &mut chan.tracker {
                Some(tracker) => {
                    for event in tracker.track(&message, event) {
                        chan.listeners.deliver(event);
                    }
                    if chan.position_tx.borrow().as_ref() != tracker.position.as_ref() {
                        chan.position_tx.send_replace(tracker.position.clone());
                    }
                }
                None => chan.listeners.deliver(event),
            }
            match message.event.as_str() {
                PHX_CLOSE => self.close_channel(id, "closed by the server"),
                PHX_ERROR => {
                    tracing::debug!(topic = %chan.topic, "channel errored");
                    error_channel(chan);
                    if open {
                        schedule_rejoin(chan, &self.rejoin_after);
                    }
                }
                _ => {}
            }
        }
    }

    /// phoenix.js's `onClose`: the channel is removed.
    fn close_channel(&mut self, id: u64, why: &str) {
        let Some(mut chan) = self.channels.remove(&id) else { return };
        tracing::debug!(topic = %chan.topic, why, "channel closed");
        chan.set_state(ChannelState::Closed);
        chan.listeners.close();
        if let Some((_, first)) = chan.first_join.take() {
            let _ = first.send(Err(JoinError::Closed));
        }
        for push in chan.buffer.drain(..) {
            let _ = push.reply.send(Err(PushError::Closed));
        }
    }

    // ---------------------------------------------------------------- timers

    fn next_deadline(&self) -> Option<Instant> {
        let conn = match &self.conn {
            Conn::Closed { retry_at } => *retry_at,
            _ => None,
        };
        let heartbeat = self.heartbeat.as_ref().map(|h| h.at);
        let push = self.deadlines.first().map(|(at, _)| *at);
        let channels = self.channels.values().flat_map(|c| {
            let first = c.first_join.as_ref().map(|(at, _)| *at);
            let buffered = c.buffer.iter().map(|p| p.deadline).min();
            [c.join_deadline, c.rejoin_at, first, buffered].into_iter().flatten()
        });
        [conn, heartbeat, push].into_iter().flatten().chain(channels).min()
    }

    fn timers(&mut self, now: Instant) {
        if matches!(self.conn, Conn::Closed { retry_at: Some(at) } if at <= now) {
            self.start_connecting();
        }
        if self.heartbeat.as_ref().is_some_and(|h| h.at <= now) {
            self.heartbeat_due(now);
        }
        self.push_timeouts(now);
        let ids: Vec<u64> = self.channels.keys().copied().collect();
        for id in ids {
            self.channel_timers(id, now);
        }
    }

    /// phoenix.js's `sendHeartbeat` and `heartbeatTimeout`.
    fn heartbeat_due(&mut self, now: Instant) {
        if self.heartbeat.as_ref().is_some_and(|h| h.pending.is_some()) {
            tracing::info!(url = %self.target.url, "heartbeat timeout: reconnecting");
            if let Conn::Open { link, .. } = std::mem::replace(&mut self.conn, Conn::Closed { retry_at: None }) {
                link.kill();
            }
            return self.connection_lost("heartbeat timeout".to_owned());
        }
        let msg_ref = self.make_ref();
        self.heartbeat = Some(Heartbeat { at: now + self.heartbeat_interval, pending: Some(msg_ref.clone()) });
        let message = Message {
            join_ref: None,
            msg_ref: Some(msg_ref),
            topic: PHOENIX_TOPIC.to_owned(),
            event: HEARTBEAT.to_owned(),
            payload: Payload::empty(),
        };
        self.send_logged(message, None);
    }

    fn push_timeouts(&mut self, now: Instant) {
        while let Some((at, msg_ref)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(flight) = self.in_flight.remove(&msg_ref) {
                let timeout = flight.timeout;
                self.settle(flight, Err(PushError::Timeout(timeout)));
            }
        }
        for chan in self.channels.values_mut() {
            let (expired, waiting) = std::mem::take(&mut chan.buffer).into_iter().partition(|p| p.deadline <= now);
            chan.buffer = waiting;
            for push in expired {
                let _ = push.reply.send(Err(PushError::Timeout(push.timeout)));
            }
        }
    }

    fn channel_timers(&mut self, id: u64, now: Instant) {
        let open = self.is_open();
        let Some(chan) = self.channels.get_mut(&id) else { return };
        if chan.first_join.as_ref().is_some_and(|(at, _)| *at <= now) {
            // Not connected since the last attempt failed: that is why.
            let error = match &self.last_error {
                Some(error) if !open => JoinError::Connect(error.clone()),
                _ => JoinError::Timeout(chan.timeout),
            };
            if let Some((_, first)) = chan.first_join.take() {
                let _ = first.send(Err(error));
            }
            self.join_timed_out(id);
            return self.close_channel(id, "join timeout");
        }
        if chan.join_deadline.is_some_and(|at| at <= now) {
            tracing::debug!(topic = %chan.topic, "rejoin timeout");
            self.join_timed_out(id);
            let Some(chan) = self.channels.get_mut(&id) else { return };
            chan.set_state(ChannelState::Errored);
            if open {
                schedule_rejoin(chan, &self.rejoin_after);
            }
            return;
        }
        if chan.rejoin_at.is_some_and(|at| at <= now) {
            chan.rejoin_at = None;
            if open {
                self.rejoin(id);
            }
        }
    }

    /// phoenix.js's join `"timeout"`: a leave for the join the server may
    /// still be working on, and the join push reset.
    fn join_timed_out(&mut self, id: u64) {
        let Some(chan) = self.channels.get_mut(&id) else { return };
        chan.join_deadline = None;
        let timeout = chan.timeout;
        if self.is_open() {
            self.push(id, PHX_LEAVE.to_owned(), Payload::empty(), timeout, Waiter::Nobody);
        }
        if let Some(chan) = self.channels.get_mut(&id) {
            chan.join_ref = None;
        }
    }

    // ---------------------------------------------------------------- the end

    fn shut_down(&mut self) {
        if let Conn::Open { link, .. } = std::mem::replace(&mut self.conn, Conn::Closed { retry_at: None }) {
            link.close();
            self.notify(SocketEvent::Close { code: None, reason: "disconnected".to_owned() });
        }
        self.heartbeat = None;
        self.connection_tx.send_replace(ConnectionState::Closed);
        let ids: Vec<u64> = self.channels.keys().copied().collect();
        for id in ids {
            self.close_channel(id, "socket disconnected");
        }
        for (_, flight) in self.in_flight.drain() {
            match flight.waiter {
                Waiter::Push(reply) => {
                    let _ = reply.send(Err(PushError::Closed));
                }
                Waiter::Leave(reply) => {
                    let _ = reply.send(Ok(()));
                }
                Waiter::Nobody => {}
            }
        }
    }
}

/// phoenix.js's `onError`: a join under way is reset, and the channel is
/// errored (the caller schedules the rejoin when connected).
fn error_channel(chan: &mut Chan) {
    if chan.state == ChannelState::Joining {
        chan.join_ref = None;
        chan.join_deadline = None;
    }
    chan.set_state(ChannelState::Errored);
}

/// phoenix.js's `rejoinTimer.scheduleTimeout()`.
fn schedule_rejoin(chan: &mut Chan, backoff: &Backoff) {
    chan.rejoin_tries = chan.rejoin_tries.saturating_add(1);
    chan.rejoin_at = Some(Instant::now() + backoff.delay(chan.rejoin_tries));
}

/// What the connection has for the task: its handshake's outcome, or its
/// next frame; nothing while it is closed.
async fn next_on(conn: &mut Conn) -> Wake {
    match conn {
        Conn::Closed { .. } => std::future::pending().await,
        Conn::Connecting(opening) => Wake::Opened(opening.as_mut().await),
        Conn::Open { reader, .. } => Wake::Frame(reader.next().await),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
