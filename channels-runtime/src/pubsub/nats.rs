//! The NATS adapter: broadcasts (and presence gossip) shared by every node
//! that uses the same NATS server (or cluster) and namespace.
//!
//! Built on the `async-nats` crate (the official, tokio-native client). A
//! node subscribes only to the topics it has subscribers for: a subject per
//! topic (`{namespace}.t.{topic}`), or per shard of topics with
//! [`Routing::Shards`] (`{namespace}.s.{shard}`). Namespace and topic are
//! each escaped into one subject token, so any topic is safe (`.`, `*`, `>`
//! and whitespace never reach NATS raw). Publishes go out many per round
//! trip, and a join waits until NATS confirmed its topic's subscription, so
//! a client told "ok" gets every broadcast sent from any node after that.
//!
//! Across nodes delivery is at most once. While NATS is away, local
//! delivery carries on untouched; broadcasts made meanwhile reach this node
//! only, and are counted ([`BrokerStats::dropped`]) and logged once per
//! outage; none are queued to be sent later. While NATS is up but slower
//! than this node, broadcasts are refused before anyone gets them
//! ([`BroadcastError::BrokerBusy`]) rather than acknowledged and dropped. A
//! broadcast larger than the server's `max_payload` (1 MB unless configured)
//! is delivered on this node, not sent, counted as dropped and logged; the
//! connection is unaffected. Both connections come back on their own with
//! backoff, and every subscription is renewed.
//!
//! ```no_run
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::pubsub::{Nats, PubSub};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pubsub = PubSub::with_adapter(Nats::new("nats://127.0.0.1:4222")?);
//! # Ok(()) }
//! ```
//!
//! [`BrokerStats::dropped`]: super::BrokerStats::dropped
//! [`BroadcastError::BrokerBusy`]: super::BroadcastError::BrokerBusy

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::PublishErrorKind::{InvalidSubject, MaxPayloadExceeded};
use async_nats::{Client, ConnectOptions, Event, ReconnectToServer, ServerAddr};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::broker::{engine_adapter, Broker, Key, Names, Outbound, Publish, Subscribe};
use super::nats_history::{self, HistoryStorage};
use super::{History, HistoryRead, Routing};
use crate::protocol::Position;

/// The namespace used unless another is given.
const DEFAULT_NAMESPACE: &str = "channels";

/// How long NATS has to echo a confirmation probe before the connection is
/// given up as broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one connection attempt may take; the broker core retries with
/// its own backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages from all subscriptions waiting for the subscriber loop.
const MESSAGES: usize = 8192;

/// Longer escaped tokens are replaced by a hash, so subjects stay far below
/// the server's control line limit (4 KiB by default).
const MAX_TOKEN: usize = 200;

/// Why a [`Nats`] adapter could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// A server URL did not parse.
    #[error("invalid NATS server URL {url:?}: {source}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        #[source]
        source: std::io::Error,
    },
    /// The URL list was empty.
    #[error("no NATS server URL given")]
    NoServer,
}

/// The NATS adapter for [`PubSub`](super::PubSub): one NATS server, or a cluster through
/// any of its servers.
pub struct Nats {
    servers: Arc<Servers>,
    namespace: String,
    routing: Routing,
    broker: Arc<Broker>,
    storage: HistoryStorage,
    /// The connection history is read on, made on first use.
    reader: Arc<tokio::sync::Mutex<Option<Client>>>,
}

impl Nats {
    /// An adapter for the NATS server at `url` (e.g.
    /// `nats://127.0.0.1:4222`; several servers of a cluster separated by
    /// commas), in the default namespace, routing by topic. Credentials in
    /// a URL (`nats://user:password@host` or `nats://token@host`) are used
    /// for every server. Connecting happens in the background, and again
    /// whenever the connection is lost; only the URL is checked here.
    pub fn new(url: &str) -> Result<Self, NatsError> {
        let addrs = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<ServerAddr>().map_err(|source| NatsError::Url { url: s.to_owned(), source }))
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(NatsError::NoServer);
        }
        // async-nats leaves a URL's credentials unused: they are passed on
        // explicitly.
        let auth = addrs.iter().find_map(|addr| {
            let user = addr.username().map(percent_decode)?;
            Some(match addr.password() {
                Some(password) => Auth::User(user, percent_decode(password)),
                None => Auth::Token(user),
            })
        });
        Ok(Self::build(Arc::new(Servers { addrs, auth }), DEFAULT_NAMESPACE, Routing::Topic, HistoryStorage::File))
    }

    fn build(servers: Arc<Servers>, namespace: &str, routing: Routing, storage: HistoryStorage) -> Self {
        let names = Names::new(namespace, routing, subject_name).with_kept(nats_history::kept_subject);
        let broker = Broker::new("nats", names);
        Nats { servers, namespace: namespace.to_owned(), routing, broker, storage, reader: Arc::default() }
    }

    /// Where JetStream keeps the history of topics that have one
    /// ([`PubSub::keep_history`](super::PubSub::keep_history)): on disk
    /// (the default: it survives a restart of the server) or in memory.
    /// Every node sharing a namespace must use the same.
    #[must_use]
    pub fn history_storage(self, storage: HistoryStorage) -> Self {
        Self::build(self.servers, &self.namespace, self.routing, storage)
    }

    /// Reads a topic's JetStream stream
    /// ([`Adapter::read_history`](super::Adapter::read_history)).
    fn read_history_at_broker(&self, topic: &str, history: &History, after: Option<&Position>) -> HistoryRead {
        let target = Target::new(&self.servers, &self.namespace);
        let (reader, storage) = (self.reader.clone(), self.storage);
        let subject = self.broker.channel(topic).to_string();
        let (history, after) = (*history, after.cloned());
        Box::pin(async move {
            let client = {
                let mut reader = reader.lock().await;
                match &*reader {
                    Some(client) if client.connection_state() == async_nats::connection::State::Connected => {
                        client.clone()
                    }
                    _ => {
                        let session = Session::connect(&target, "history reader")
                            .await
                            .map_err(|e| super::HistoryUnavailable(e.to_string()))?;
                        *reader = Some(session.client.clone());
                        session.client
                    }
                }
            };
            let js = async_nats::jetstream::new(client);
            nats_history::read(&js, &subject, &history, storage, after.as_ref()).await
        })
    }

    /// Nodes share broadcasts exactly when they share the server (or
    /// cluster) and the namespace (several apps can share one NATS).
    /// Default: `channels`. Any string will do: it is escaped into one
    /// subject token.
    #[must_use]
    pub fn namespace(self, namespace: &str) -> Self {
        Self::build(self.servers, namespace, self.routing, self.storage)
    }

    /// How topics map to NATS subjects (default [`Routing::Topic`]). Every
    /// node sharing a namespace must use the same routing.
    #[must_use]
    pub fn routing(self, routing: Routing) -> Self {
        Self::build(self.servers, &self.namespace, routing, self.storage)
    }
}

engine_adapter!(Nats, |me, local| {
    let target = || Target::new(&me.servers, &me.namespace);
    let publisher = Publisher { target: target(), oversized: AtomicBool::new(false), storage: me.storage };
    let subscriber = Subscriber { target: target(), broker: me.broker.clone(), storage: me.storage };
    me.broker.start(&local, publisher, subscriber);
});

// ---------------------------------------------------------------- subjects

/// `{namespace}.t.{topic}` or `{namespace}.s.{shard}`, namespace and topic
/// each one [`token`].
fn subject_name(namespace: &str, key: Key<'_>) -> String {
    match key {
        Key::Topic(topic) => format!("{}.t.{}", token(namespace), token(topic)),
        Key::Shard(shard) => format!("{}.s.{shard}", token(namespace)),
    }
}

/// Bytes that stand for themselves in a token; every other byte (`%`
/// included) becomes `%XX`, so distinct texts give distinct tokens, and no
/// token holds `.`, `*`, `>` or whitespace.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b':' | b'-')
}

/// `text` as one NATS subject token.
///
/// The empty text is `%` (an escape never stands alone). A text whose
/// escaped form is over [`MAX_TOKEN`] bytes is `~` (never plain) and a hash:
/// two such texts could share a subject, which costs only bandwidth, as
/// with shards: the envelope names the topic, and a node hands a broadcast
/// to that topic's subscribers only.
pub(crate) fn token(text: &str) -> Cow<'_, str> {
    if text.is_empty() {
        return Cow::Borrowed("%");
    }
    if text.len() <= MAX_TOKEN && text.bytes().all(is_plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for byte in text.bytes() {
        if out.len() > MAX_TOKEN {
            return Cow::Owned(hashed(text));
        }
        if is_plain(byte) {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    if out.len() > MAX_TOKEN {
        return Cow::Owned(hashed(text));
    }
    Cow::Owned(out)
}

/// `~{len}-{fnv1a64}`: stable across nodes and versions.
fn hashed(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("~{}-{hash:016x}", text.len())
}

// ---------------------------------------------------------------- sessions

/// The servers of a [`Nats`] adapter, and how to log in.
struct Servers {
    addrs: Vec<ServerAddr>,
    auth: Option<Auth>,
}

enum Auth {
    User(String, String),
    Token(String),
}

/// `%XX` escapes decoded (as in URL user info); anything else kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where one side (publishing or subscribing) connects.
struct Target {
    servers: Arc<Servers>,
    /// The next server to try.
    turn: Arc<AtomicUsize>,
    /// The namespace's token, for probe subjects.
    namespace: String,
}

impl Target {
    fn new(servers: &Arc<Servers>, namespace: &str) -> Self {
        Target {
            servers: servers.clone(),
            turn: Arc::new(AtomicUsize::new(0)),
            namespace: token(namespace).into_owned(),
        }
    }
}

/// What goes wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("cannot connect: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("cannot publish: {0}")]
    Publish(#[from] async_nats::PublishError),
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("cannot flush: {0}")]
    Flush(#[from] async_nats::client::FlushError),
    #[error("the connection to NATS was lost")]
    Lost,
    #[error("NATS did not confirm within {0:?}")]
    Unconfirmed(Duration),
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// One connection to NATS, used until it is lost, then dropped for a new
/// one: the broker core's loops own reconnecting, so that what is lost
/// meanwhile is counted and every subscription is renewed.
struct Session {
    client: Client,
    /// Cancelled when the connection drops; never reset.
    lost: CancellationToken,
    /// Our own subject, echoed back to us: the round trip that tells what
    /// was sent before it has been handled by the server.
    probe: async_nats::Subscriber,
    probe_subject: String,
    probes: u64,
    /// Topic streams this session made sure exist.
    streams: std::collections::HashSet<String>,
}

impl Session {
    async fn connect(target: &Target, role: &str) -> Result<Self, Failure> {
        let lost = CancellationToken::new();
        let lost_on_event = lost.clone();
        let slow_logged = Arc::new(AtomicBool::new(false));
        let turn = target.turn.clone();
        let options = match &target.servers.auth {
            Some(Auth::User(user, password)) => ConnectOptions::with_user_and_password(user.clone(), password.clone()),
            Some(Auth::Token(token)) => ConnectOptions::with_token(token.clone()),
            None => ConnectOptions::new(),
        };
        let client = options
            .name(format!("phx-channels {role}"))
            .connection_timeout(CONNECT_TIMEOUT)
            // Reconnecting on its own, async-nats would queue publishes for
            // later and renew subscriptions behind the core's back. 0 means
            // "forever", so 1 is the least: the session is abandoned at the
            // first `Disconnected`, and an abandoned client that does get
            // back has nothing left to send or receive, and exits.
            .max_reconnects(1)
            // One server per attempt, the next one each time, at once: the
            // core's loops back off between attempts. (Chosen here, running
            // out of attempts is quiet; async-nats's own choice logs an
            // error every time, once per connection per outage.)
            .reconnect_to_server_callback(move |pool, _info| {
                let turn = turn.clone();
                async move {
                    let n = turn.fetch_add(1, Ordering::Relaxed);
                    pool.get(n % pool.len().max(1))
                        .map(|server| ReconnectToServer { addr: server.addr.clone(), delay: Some(Duration::ZERO) })
                }
            })
            .event_callback(move |event| {
                on_event(event, &lost_on_event, &slow_logged);
                std::future::ready(())
            })
            .connect(target.servers.addrs.clone())
            .await?;
        // Under the namespace, so an account allowed `{namespace}.>` needs
        // nothing more; unique (the inbox's random id), so only this
        // connection hears it.
        let inbox = client.new_inbox();
        let id = inbox.rsplit('.').next().unwrap_or(&inbox);
        let probe_subject = format!("{}.p.{id}", target.namespace);
        let probe = client.subscribe(probe_subject.clone()).await?;
        Ok(Session { client, lost, probe, probe_subject, probes: 0, streams: Default::default() })
    }

    /// JetStream on this connection.
    fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }

    /// Waits for the server to have handled everything sent before: NATS
    /// acknowledges neither PUB nor SUB, and `flush` only empties the
    /// socket buffer, so a probe goes round through the server (after all
    /// that came before it, in order) and back.
    async fn confirm(&mut self) -> Result<(), Failure> {
        self.probes += 1;
        let mark = Bytes::copy_from_slice(&self.probes.to_be_bytes());
        self.client.publish(self.probe_subject.clone(), mark.clone()).await?;
        self.client.flush().await?;
        let echoed = async {
            loop {
                match self.probe.next().await {
                    // An older probe, answered late.
                    Some(message) if message.payload != mark => {}
                    Some(_) => return Ok(()),
                    None => return Err(Failure::Lost),
                }
            }
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, echoed).await.map_err(|_| Failure::Unconfirmed(CONFIRM_TIMEOUT))?
    }

    /// Runs `work` unless the connection is lost first.
    async fn unless_lost<T>(
        lost: &CancellationToken,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        tokio::select! {
            biased;
            () = lost.cancelled() => Err(Failure::Lost),
            result = work => result,
        }
    }
}

/// What a session makes of async-nats's connection events.
fn on_event(event: Event, lost: &CancellationToken, slow_logged: &AtomicBool) {
    match event {
        // `ClientError`s come from reconnect attempts: after a disconnect.
        Event::Disconnected | Event::Closed | Event::ClientError(_) => lost.cancel(),
        // async-nats drops what a full subscription buffer cannot take.
        Event::SlowConsumer(_) if !slow_logged.swap(true, Ordering::Relaxed) => {
            tracing::warn!(
                "messages from NATS dropped: this node reads slower than they arrive (logged once per connection)"
            );
        }
        Event::ServerError(error) => tracing::warn!(%error, "NATS reported an error"),
        _ => {}
    }
}

// ---------------------------------------------------------------- publishing

struct Publisher {
    target: Target,
    /// Whether an oversized broadcast was logged already.
    oversized: AtomicBool,
    storage: HistoryStorage,
}

impl Publish for Publisher {
    type Conn = Session;
    type Error = Failure;

    async fn connect(&self) -> Result<Self::Conn, Self::Error> {
        Session::connect(&self.target, "publisher").await
    }

    async fn send(&self, session: &mut Self::Conn, batch: &[Outbound]) -> Result<usize, Self::Error> {
        let lost = session.lost.clone();
        Session::unless_lost(&lost, self.publish(session, batch)).await
    }
}

impl Publisher {
    async fn publish(&self, session: &mut Session, batch: &[Outbound]) -> Result<usize, Failure> {
        let mut refused = 0;
        let mut acks = Vec::new();
        for outbound in batch {
            let subject = async_nats::Subject::from(&*outbound.channel);
            if let Some(kept) = &outbound.kept {
                // JetStream gives it its position (its stream's sequence);
                // the acks are awaited together, after the batch is sent.
                if !session.streams.contains(&*outbound.channel) {
                    nats_history::ensure(&session.jetstream(), &outbound.channel, &kept.history, self.storage)
                        .await
                        .map_err(Failure::JetStream)?;
                    session.streams.insert(outbound.channel.to_string());
                }
                let data = nats_history::data(&outbound.bytes, &kept.payload);
                match session.jetstream().publish(subject, data).await {
                    Ok(ack) => acks.push(ack),
                    Err(error) => return Err(Failure::JetStream(error.to_string())),
                }
                continue;
            }
            match session.client.publish(subject, outbound.bytes.clone()).await {
                Ok(()) => {}
                // Checked before sending (the server would close the
                // connection over it): only this broadcast is lost.
                Err(error) if matches!(error.kind(), MaxPayloadExceeded | InvalidSubject) => {
                    refused += 1;
                    if self.oversized.swap(true, Ordering::Relaxed) {
                        tracing::debug!(%error, subject = %outbound.channel, "broadcast not sent to NATS");
                    } else {
                        tracing::warn!(
                            %error,
                            subject = %outbound.channel,
                            "broadcast not sent to NATS, delivered on this node only; counted as dropped (logged once)"
                        );
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        for ack in acks {
            if let Err(error) = ack.await {
                // A stream gone (the server lost it): made again next time.
                session.streams.clear();
                return Err(Failure::JetStream(error.to_string()));
            }
        }
        session.confirm().await?;
        Ok(refused)
    }
}

// ---------------------------------------------------------------- subscribing

struct Subscriber {
    target: Target,
    broker: Arc<Broker>,
    storage: HistoryStorage,
}

/// The subscribing half: the session, and a forwarding task per subject.
struct Control {
    session: Session,
    forwards: HashMap<Arc<str>, Forward>,
    into: mpsc::Sender<Bytes>,
}

/// The receiving half: what every subscription forwards, in one stream.
struct Messages {
    from: mpsc::Receiver<Bytes>,
    lost: CancellationToken,
}

/// A task moving one subscription's messages into [`Messages`].
struct Forward {
    /// Sent: unsubscribe at the server. Dropped (the session is dropped):
    /// just stop.
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Forward {
    /// `epoch`: the subscription is to a topic stream's republished
    /// messages, of that epoch.
    fn spawn(
        subscription: async_nats::Subscriber,
        into: mpsc::Sender<Bytes>,
        lost: CancellationToken,
        epoch: Option<String>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        Forward { stop, task: tokio::spawn(forward(subscription, into, stopped, lost, epoch)) }
    }
}

async fn forward(
    mut subscription: async_nats::Subscriber,
    into: mpsc::Sender<Bytes>,
    mut stop: oneshot::Receiver<()>,
    lost: CancellationToken,
    epoch: Option<String>,
) {
    let unsubscribe = loop {
        let message = tokio::select! {
            biased;
            stopped = &mut stop => break stopped.is_ok(),
            message = subscription.next() => message,
        };
        let Some(message) = message else {
            // The client's connection task gave up: so has this session.
            lost.cancel();
            return;
        };
        let bytes = match &epoch {
            None => message.payload,
            Some(epoch) => match nats_history::republished(epoch, &message) {
                Some(bytes) => bytes,
                None => continue,
            },
        };
        // Stop is watched while waiting here too: the subscriber loop may be
        // awaiting this very task, not reading.
        tokio::select! {
            biased;
            stopped = &mut stop => break stopped.is_ok(),
            sent = into.send(bytes) => if sent.is_err() { return },
        }
    };
    if unsubscribe {
        // Queued before the caller's confirmation probe, so confirmed by it.
        let _ = subscription.unsubscribe().await;
    }
}

impl Subscribe for Subscriber {
    type Control = Control;
    type Messages = Messages;
    type Error = Failure;

    async fn connect(&self) -> Result<(Self::Control, Self::Messages), Self::Error> {
        let session = Session::connect(&self.target, "subscriber").await?;
        let lost = session.lost.clone();
        let (into, from) = mpsc::channel(MESSAGES);
        Ok((Control { session, forwards: HashMap::new(), into }, Messages { from, lost }))
    }

    async fn subscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> Result<(), Self::Error> {
        let lost = control.session.lost.clone();
        Session::unless_lost(&lost, async {
            for channel in channels {
                if control.forwards.contains_key(channel) {
                    continue;
                }
                // A topic with history: its stream's republished messages
                // (the stream made if it is new), in the stream's order.
                let (subject, epoch) = match self.broker.kept_channel(channel) {
                    Some((_, history)) => {
                        let js = control.session.jetstream();
                        let (_, epoch) = nats_history::ensure(&js, channel, &history, self.storage)
                            .await
                            .map_err(Failure::JetStream)?;
                        (nats_history::live_subject(channel), Some(epoch))
                    }
                    None => (channel.to_string(), None),
                };
                let subscription = control.session.client.subscribe(subject).await?;
                let forward = Forward::spawn(subscription, control.into.clone(), lost.clone(), epoch);
                control.forwards.insert(channel.clone(), forward);
            }
            control.session.confirm().await
        })
        .await
    }

    async fn unsubscribe<'a>(
        &'a self,
        control: &'a mut Self::Control,
        channels: &'a [Arc<str>],
    ) -> Result<(), Self::Error> {
        let lost = control.session.lost.clone();
        Session::unless_lost(&lost, async {
            let stopping: Vec<JoinHandle<()>> = channels
                .iter()
                .filter_map(|channel| control.forwards.remove(channel))
                .map(|forward| {
                    let _ = forward.stop.send(());
                    forward.task
                })
                .collect();
            for task in stopping {
                // Each has queued its UNSUB once it ends.
                let _ = task.await;
            }
            control.session.confirm().await
        })
        .await
    }

    async fn next<'a>(&'a self, messages: &'a mut Self::Messages) -> Option<Bytes> {
        tokio::select! {
            biased;
            () = messages.lost.cancelled() => None,
            message = messages.from.recv() => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn safe(subject: &str) -> bool {
        subject.split('.').all(|t| !t.is_empty() && t != "*" && t != ">")
            && !subject.bytes().any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>')
    }

    fn unescape(token: &str) -> String {
        if token == "%" {
            String::new()
        } else {
            percent_decode(token)
        }
    }

    const TRICKY: &[&str] = &[
        "",
        "%",
        "%25",
        "%2E",
        ".",
        "a.b",
        "a%2Eb",
        "*",
        ">",
        "a.*",
        "a.>",
        "room:lobby",
        "room lobby",
        "room\tlobby",
        "room\r\nlobby",
        "ü",
        "%C3%BC",
        "~",
        "~3-0",
        "comments:42",
        "users_socket:u1",
        "a-b_c:d",
    ];

    #[test]
    fn tokens_are_safe_injective_and_round_trip() {
        let mut seen = HashSet::new();
        for topic in TRICKY {
            let token = token(topic);
            assert!(safe(&token), "{topic:?} → {token:?}");
            assert!(!token.contains('.'), "{topic:?} → {token:?}");
            assert_eq!(unescape(&token), *topic, "round trip of {topic:?}");
            assert!(seen.insert(token.into_owned()), "{topic:?} shares its token");
        }
        assert_eq!(token("comments:42"), "comments:42", "common topics stay readable");
        assert_eq!(token("a.b"), "a%2Eb");
        assert_eq!(token("%"), "%25");
    }

    #[test]
    fn long_topics_are_hashed_into_a_short_safe_token() {
        let long = "x.".repeat(500);
        let hashed = token(&long);
        assert!(hashed.starts_with('~') && hashed.len() < 40 && safe(&hashed), "{hashed}");
        assert_eq!(hashed, token(&long), "stable");
        assert_ne!(hashed, token(&"x.".repeat(501)));
        // just under the limit: escaped, not hashed
        let fits = "a".repeat(MAX_TOKEN);
        assert_eq!(token(&fits), fits);
        assert!(token(&"a".repeat(MAX_TOKEN + 1)).starts_with('~'));
        assert!(token(&".".repeat(MAX_TOKEN / 3)).starts_with('%'));
        assert!(token(&".".repeat(MAX_TOKEN / 3 + 1)).starts_with('~'));
    }

    #[test]
    fn subjects_per_topic_and_per_shard() {
        assert_eq!(subject_name("channels", Key::Topic("room:1")), "channels.t.room:1");
        assert_eq!(subject_name("my app", Key::Topic("a.b")), "my%20app.t.a%2Eb");
        assert_eq!(subject_name("channels", Key::Shard(7)), "channels.s.7");
        for topic in TRICKY {
            let subject = subject_name("n.s", Key::Topic(topic));
            assert!(safe(&subject), "{subject:?}");
            assert_eq!(subject.split('.').count(), 3, "{subject:?}");
        }
        let names = Names::new("ns", Routing::Shards(8), subject_name);
        assert!(names.channel("anything").starts_with("ns.s."));
    }

    #[test]
    fn urls_are_checked_up_front() {
        assert!(Nats::new("nats://127.0.0.1:4222").is_ok());
        assert!(Nats::new("127.0.0.1:4222").is_ok(), "the scheme defaults to nats://");
        assert!(Nats::new("nats://a:4222, nats://b:4222").is_ok());
        assert!(matches!(Nats::new(""), Err(NatsError::NoServer)));
        assert!(matches!(Nats::new("nats://[::1"), Err(NatsError::Url { .. })));
        let nats = Nats::new("nats://app:p%40ss@a:4222,nats://b:4222").unwrap();
        assert!(matches!(&nats.servers.auth, Some(Auth::User(u, p)) if u == "app" && p == "p@ss"));
        let nats = Nats::new("nats://s3cr3t@a:4222").unwrap();
        assert!(matches!(&nats.servers.auth, Some(Auth::Token(t)) if t == "s3cr3t"));
        assert!(Nats::new("nats://a:4222").unwrap().servers.auth.is_none());
        let nats = Nats::new("nats://127.0.0.1:4222").unwrap().namespace("app").routing(Routing::Shards(4));
        assert_eq!((nats.namespace.as_str(), nats.routing), ("app", Routing::Shards(4)));
    }
}
