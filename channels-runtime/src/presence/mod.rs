//! Presence: who is on a topic, on every node, as Phoenix.Presence.
//!
//! A channel tracks its user under a key with some meta; everyone on the
//! topic gets `presence_diff` broadcasts as keys join and leave, and a
//! joining client is pushed the whole `presence_state`. The frames have
//! Phoenix's exact shapes (`metas`, `phx_ref`, `phx_ref_prev`), so
//! phoenix.js `Presence` works unchanged.
//!
//! What a Phoenix app writes after a join (`send(self(), :after_join)`,
//! then `Presence.track` and `push(socket, "presence_state", ..)` in
//! `handle_info`) is one call from `join`,
//! [`Presence::track_after_join`]:
//!
//! ```ignore
//! #[channel(socket = UserSocket)]
//! impl RoomChannel {
//!     async fn join(_topic: Topic, params: RoomParams, socket: &mut Socket<UserSocket>) -> Join<Self> {
//!         // Right after the join reply: tracked, then the state pushed.
//!         Presence::track_after_join(socket, &params.name, json!({"online_at": now()}))?;
//!         Ok((json!({}), RoomChannel { name: params.name }))
//!     }
//! }
//! ```
//!
//! [`Presence::track`], [`Presence::update`], [`Presence::untrack`] and
//! [`Presence::list`] are there for everything else, from any handler.
//!
//! A presence lives as long as the channel that tracked it: when the
//! channel leaves, crashes or its connection drops, its presences leave.
//!
//! The `presence_diff`s of one topic are batched over
//! [`PresenceOptions::broadcast_period`] (100 ms): one diff per topic per
//! period, with every join and leave of the period, instead of one per
//! change. A room of N members joining at once is then N diffs of one
//! entry to each of N members no more (N² frames: 2 000 joining at once
//! stalled everyone else 2.6 s), but a few diffs per member. phoenix.js's
//! `Presence` merges a diff of many entries as it does one of one (joins
//! first, then leaves, by `phx_ref`), so a key that joins and leaves in
//! one period is shown neither.
//!
//! Across nodes, each node replicates its presences over the PubSub's
//! adapter the way Phoenix.Tracker does: changes are gossiped as deltas
//! batched over [`PresenceOptions::broadcast_period`], heartbeats carry
//! each node's clock so gaps are repaired by a state transfer, and a node
//! that stops sending heartbeats for [`PresenceOptions::down_period`] is
//! declared down, its presences leaving everywhere (within 3.5 s by
//! default). A node restarted under the same [name](PresenceOptions::node_name)
//! replaces its previous life at once.

pub(crate) mod replica;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use replica::PresenceError;
use replica::{Diffs, Gossip, Owner, Replica, TopicDiff};

use crate::outbox::ConnId;
use crate::protocol::{Frame, Payload, Serializer};
use crate::pubsub::{PubSub, Sink, Subscriber, WeakPubSub};

/// The internal topic presence gossip travels on between nodes.
pub(crate) const GOSSIP_TOPIC: &str = "phx_presence:gossip";
const GOSSIP_EVENT: &str = "gossip";

/// The event carrying a joining client's whole presence map.
pub const PRESENCE_STATE: &str = "presence_state";
/// The event carrying presence joins and leaves.
pub const PRESENCE_DIFF: &str = "presence_diff";

/// How presence replicates between nodes.
///
/// The defaults declare a dead node down within 3 s, its presences leaving
/// every other node by 3.5 s (Phoenix: 30 s), for a heartbeat of a few
/// dozen bytes per node every 500 ms, whatever the number of presences.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use std::time::Duration;
/// use phx_channels::presence::PresenceOptions;
///
/// let options = PresenceOptions {
///     node_name: Some("web-1".into()),
///     down_period: Duration::from_secs(10),
///     ..PresenceOptions::default()
/// };
/// assert_eq!(options.heartbeat_interval, Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceOptions {
    /// How often a node gossips its heartbeat (its clock, a few dozen
    /// bytes). Default 500 ms (Phoenix: 1.5 s).
    pub heartbeat_interval: Duration,
    /// A node silent for this long is declared down and its presences
    /// leave. Default 3 s (Phoenix: 30 s).
    pub down_period: Duration,
    /// Changes made on this node reach the other nodes batched over this
    /// interval: one message per interval, however many joins and leaves
    /// (Phoenix's `broadcast_period`); and the clients on this node get
    /// one `presence_diff` per topic per interval, with the topic's joins
    /// and leaves of the interval. Default 100 ms; zero sends every
    /// change on its own, to other nodes and to clients.
    pub broadcast_period: Duration,
    /// This node's name among the nodes (its host or pod name), unique
    /// among live nodes. A node restarted under the same name replaces its
    /// previous life at once: the presences it held before the crash leave
    /// with its first heartbeat, not after the down period. Default: a
    /// random name at every start.
    pub node_name: Option<String>,
}

impl Default for PresenceOptions {
    fn default() -> Self {
        PresenceOptions {
            heartbeat_interval: Duration::from_millis(500),
            down_period: Duration::from_secs(3),
            broadcast_period: Duration::from_millis(100),
            node_name: None,
        }
    }
}

/// One node's presence tracker, a service of its PubSub
/// ([`PubSub::service`]): the replica, and the task that gossips. Made on
/// first use, or by [`Presence::start`] with options; an endpoint whose
/// PubSub reaches other nodes starts it when it serves, so a node that
/// tracks nothing itself still shows its clients the others' presences.
pub(crate) struct Tracker {
    replica: Mutex<Replica>,
    /// This node's changes not yet sent to its clients, by topic, when
    /// batched.
    diffs: Mutex<Diffs>,
    pubsub: WeakPubSub,
    started: Instant,
    /// Whether deltas and diffs wait for the broadcast period (else each
    /// change goes out at once).
    batched: bool,
}

/// This life of the node: when it started, in microseconds since the epoch
/// (a restarted node's is larger).
fn incarnation() -> replica::Vsn {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// Gossip from other nodes, handed to the tracker's task (never handled
/// under the PubSub's lock).
struct GossipInbox(mpsc::UnboundedSender<Payload>);

impl Sink for GossipInbox {
    fn frame(&self, _frame: &Frame) {}

    fn raw(&self, _tag: u64, _topic: &str, _event: &str, payload: &Payload) {
        // The task ended with its PubSub; nothing to do.
        let _ = self.0.send(payload.clone());
    }
}

impl Tracker {
    /// Starts the tracker of `pubsub`: subscribes to the gossip topic and
    /// spawns the task that answers gossip and sends heartbeats.
    fn start(pubsub: &PubSub, options: PresenceOptions) -> Arc<Tracker> {
        let me = match &options.node_name {
            Some(name) => name.clone(),
            None => random_id(12).unwrap_or_else(|| format!("node-{}", std::process::id())),
        };
        let (sender, inbox) = mpsc::unbounded_channel();
        let subscriber = Subscriber::new(ConnId::unique(), Serializer::V2, Arc::new(GossipInbox(sender))).raw();
        pubsub.subscribe(GOSSIP_TOPIC, subscriber);
        let tracker = Arc::new(Tracker {
            replica: Mutex::new(Replica::new(me, incarnation())),
            diffs: Mutex::new(Diffs::new()),
            pubsub: pubsub.downgrade(),
            started: Instant::now(),
            batched: !options.broadcast_period.is_zero(),
        });
        tokio::spawn(run(Arc::downgrade(&tracker), inbox, options));
        tracker
    }

    /// The tracker of `pubsub`, started with default options if it was not.
    pub(crate) fn of(pubsub: &PubSub) -> Arc<Tracker> {
        pubsub.service(|pubsub| Tracker::start(pubsub, PresenceOptions::default()))
    }

    /// The tracker of `pubsub`, if one was started.
    pub(crate) fn if_started(pubsub: &PubSub) -> Option<Arc<Tracker>> {
        pubsub.service_if_started::<Tracker>()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends gossip to the other nodes (never to this one).
    fn gossip(&self, pubsub: &PubSub, gossip: &Gossip) {
        match Payload::json(gossip) {
            Ok(payload) => {
                // A busy broker loses this gossip like a lost message: the
                // next heartbeat shows the gap and a transfer repairs it.
                let _ = pubsub.publish_remote(GOSSIP_TOPIC, GOSSIP_EVENT, payload);
            }
            Err(error) => tracing::error!(%error, "presence gossip could not be encoded"),
        }
    }

    /// A change made here: clients here see it with the next diff of its
    /// topic, other nodes with the next delta (both at once when
    /// unbatched; a delta also when it is full).
    fn apply(
        &self,
        change: impl FnOnce(&mut Replica) -> Result<Option<replica::Change>, PresenceError>,
    ) -> Result<(), PresenceError> {
        let (change, delta) = {
            let mut replica = self.replica.lock();
            let change = change(&mut replica)?;
            let flush = !self.batched || replica.pending() >= replica::DELTA_MAX;
            (change, if flush { replica.flush() } else { None })
        };
        if let Some(pubsub) = self.pubsub.upgrade() {
            if let Some(delta) = &delta {
                self.gossip(&pubsub, delta);
            }
            if let Some(change) = change {
                if self.batched {
                    merge(&mut self.diffs.lock(), change.diffs);
                } else {
                    broadcast_diffs(&pubsub, change.diffs);
                }
            }
        }
        Ok(())
    }

    /// The clients here get the diffs of the period.
    fn flush_diffs(&self, pubsub: &PubSub) {
        let diffs = std::mem::take(&mut *self.diffs.lock());
        broadcast_diffs(pubsub, diffs);
    }

    pub(crate) fn untrack_owner(&self, owner: Owner) {
        // An untrack cannot fail.
        let _ = self.apply(|replica| Ok(replica.untrack_owner(owner)));
    }
}

/// Gossip in, heartbeats out, the silent declared down; ends with the
/// PubSub.
async fn run(tracker: Weak<Tracker>, mut inbox: mpsc::UnboundedReceiver<Payload>, options: PresenceOptions) {
    let mut heartbeat = tokio::time::interval(options.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Unbatched, the deltas go out with their changes: this never fires.
    let period = if options.broadcast_period.is_zero() { Duration::from_secs(3600) } else { options.broadcast_period };
    let mut broadcast = tokio::time::interval(period);
    broadcast.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let down_period = u64::try_from(options.down_period.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::select! {
            received = inbox.recv() => {
                let Some(payload) = received else { return };
                let Some(tracker) = tracker.upgrade() else { return };
                let Some(pubsub) = tracker.pubsub.upgrade() else { return };
                let gossip: Gossip = match payload.decode() {
                    Ok(gossip) => gossip,
                    Err(error) => {
                        tracing::warn!(%error, "malformed presence gossip ignored");
                        continue;
                    }
                };
                let now = tracker.now();
                let (replies, diffs) = tracker.replica.lock().receive(gossip, now);
                for reply in &replies {
                    tracker.gossip(&pubsub, reply);
                }
                broadcast_diffs(&pubsub, diffs);
            }
            _ = broadcast.tick() => {
                let Some(tracker) = tracker.upgrade() else { return };
                let Some(pubsub) = tracker.pubsub.upgrade() else { return };
                let delta = tracker.replica.lock().flush();
                if let Some(delta) = delta {
                    tracker.gossip(&pubsub, &delta);
                }
                tracker.flush_diffs(&pubsub);
            }
            _ = heartbeat.tick() => {
                let Some(tracker) = tracker.upgrade() else { return };
                let Some(pubsub) = tracker.pubsub.upgrade() else { return };
                let now = tracker.now();
                let receiving = pubsub.is_receiving();
                let (delta, beat, diffs) = {
                    let mut replica = tracker.replica.lock();
                    if !receiving {
                        replica.hear_all(now);
                    }
                    (replica.flush(), replica.heartbeat(), replica.reap(now, down_period))
                };
                if let Some(delta) = delta {
                    tracker.gossip(&pubsub, &delta);
                }
                if !diffs.is_empty() {
                    tracing::info!(topics = diffs.len(), "presences of a node declared down leave");
                }
                tracker.gossip(&pubsub, &beat);
                broadcast_diffs(&pubsub, diffs);
            }
        }
    }
}

/// The wire shape of a presence map: `{key: {"metas": [meta, ..]}}`.
fn presence_map(entries: impl IntoIterator<Item = (String, Vec<Map<String, Value>>)>) -> Map<String, Value> {
    entries
        .into_iter()
        .map(|(key, metas)| {
            let metas = metas.into_iter().map(Value::Object).collect();
            let mut entry = Map::new();
            entry.insert("metas".to_owned(), Value::Array(metas));
            (key, Value::Object(entry))
        })
        .collect()
}

fn group(pairs: Vec<(String, Map<String, Value>)>) -> BTreeMap<String, Vec<Map<String, Value>>> {
    let mut grouped: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
    for (key, meta) in pairs {
        grouped.entry(key).or_default().push(meta);
    }
    grouped
}

/// The `presence_diff` payload for one topic.
fn diff_payload(diff: TopicDiff) -> Value {
    let mut payload = Map::new();
    payload.insert("joins".to_owned(), Value::Object(presence_map(group(diff.joins))));
    payload.insert("leaves".to_owned(), Value::Object(presence_map(group(diff.leaves))));
    Value::Object(payload)
}

/// Adds `more` to the diffs waiting in `diffs`: joins after joins, leaves
/// after leaves, in the order they happened.
fn merge(diffs: &mut Diffs, more: Diffs) {
    for (topic, diff) in more {
        let waiting = diffs.entry(topic).or_default();
        waiting.joins.extend(diff.joins);
        waiting.leaves.extend(diff.leaves);
    }
}

/// Broadcasts each topic's diff to the subscribers on this node: every node
/// computes the diffs of its own view, so nothing is sent twice.
fn broadcast_diffs(pubsub: &PubSub, diffs: Diffs) {
    for (topic, diff) in diffs {
        if let Err(error) = pubsub.local_broadcast(&topic, PRESENCE_DIFF, diff_payload(diff)) {
            tracing::error!(%error, "presence diff could not be encoded");
        }
    }
}

fn random_id(bytes: usize) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).ok()?;
    Some(URL_SAFE_NO_PAD.encode(buf))
}

fn meta_object<T: Serialize>(meta: &T) -> Result<Map<String, Value>, PresenceError> {
    match serde_json::to_value(meta) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(PresenceError::MetaNotAnObject),
    }
}

/// Whether the channel's limit lets `meta` under `key` be sent to every
/// member of the topic.
fn admit(scope: &Scope<'_>, key: &str, meta: &Map<String, Value>) -> Result<(), PresenceError> {
    // A map of JSON values always encodes.
    let size = key.len() + serde_json::to_vec(meta).map_or(0, |bytes| bytes.len());
    let max = scope.max_meta_bytes;
    if max != 0 && size > max {
        return Err(PresenceError::MetaTooLarge { size, max });
    }
    Ok(())
}

/// What presence needs of the channel that tracks: its PubSub, its topic,
/// who owns the entries (they leave when that channel ends) and the
/// connection's limit on metas. Implemented by
/// [`Socket`](crate::socket::Socket), which is what handlers pass to
/// [`Presence::track`] and friends.
pub trait PresenceScope {
    #[doc(hidden)]
    fn presence_scope(&self) -> Scope<'_>;

    /// Holds `track` until the join reply is out, then tracks it and pushes
    /// `presence_state`; at once if the reply is out already.
    #[doc(hidden)]
    fn track_after_join(&mut self, track: PendingTrack) -> Result<(), PresenceError>;
}

/// A presence [`Presence::track_after_join`] holds for its channel until the
/// join reply is out: its meta checked already.
#[doc(hidden)]
#[derive(Debug)]
pub struct PendingTrack {
    pub(crate) key: String,
    meta: Map<String, Value>,
}

/// What a joiner's tracks make it push: its own `presence_diff` (when
/// diffs are batched) and the `presence_state`.
pub(crate) struct Tracked {
    /// The joiner's own joins, for the joiner alone, when the topic's diff
    /// waits for the broadcast period; `None` when it went out already.
    pub(crate) own_diff: Option<Value>,
    /// Everyone on the topic, the tracks included.
    pub(crate) state: Value,
}

/// Tracks `tracks` (held by [`Presence::track_after_join`]) in `scope`.
///
/// Phoenix sends a joiner its own `presence_diff` before its
/// `presence_state`. Batched, the topic's diff (the joiner's join in it, for
/// everyone else) goes out at the end of the period, so the joiner gets its
/// own joins pushed here first; the batch repeats them, which clients merge
/// by `phx_ref` as they merge any join they already hold.
pub(crate) fn track_pending(scope: &Scope<'_>, tracks: Vec<PendingTrack>) -> Result<Tracked, PresenceError> {
    let tracker = Tracker::of(scope.pubsub);
    let mut joins = Map::new();
    for PendingTrack { key, meta } in tracks {
        let phx_ref = phx_ref();
        let mut shown = meta.clone();
        shown.insert("phx_ref".to_owned(), Value::String(phx_ref.clone()));
        tracker.apply(|replica| replica.track(scope.owner, scope.topic, &key, meta, phx_ref).map(Some))?;
        let metas = joins.entry(key).or_insert_with(|| serde_json::json!({"metas": []}));
        if let Some(list) = metas.get_mut("metas").and_then(Value::as_array_mut) {
            list.push(Value::Object(shown));
        }
    }
    let own_diff = tracker.batched.then(|| serde_json::json!({"joins": joins, "leaves": {}}));
    Ok(Tracked { own_diff, state: Presence::list_topic(scope.pubsub, scope.topic) })
}

/// A channel's presence scope (see [`PresenceScope`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct Scope<'a> {
    pub(crate) pubsub: &'a PubSub,
    pub(crate) topic: &'a str,
    pub(crate) owner: Owner,
    pub(crate) max_meta_bytes: usize,
}

fn phx_ref() -> String {
    // 12 random bytes, URL-safe: 16 characters, like Phoenix's refs.
    random_id(12).unwrap_or_else(|| format!("{:x}", std::time::Instant::now().elapsed().as_nanos()))
}

/// What one node's presence tracker holds ([`Presence::stats`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PresenceStats {
    /// This node's name among the nodes ([`PresenceOptions::node_name`],
    /// or the random one it started with).
    pub node: String,
    /// Presences tracked by channels on this node.
    pub tracked_here: usize,
    /// Presences this node knows of, on every node.
    pub tracked: usize,
    /// Nodes this node knows of, itself included (nodes declared down are
    /// forgotten).
    pub nodes: usize,
}

/// Presence tracking for channels: Phoenix.Presence's `track`, `update`,
/// `untrack` and `list`, on the channel's topic.
#[derive(Debug)]
pub struct Presence;

impl Presence {
    /// Starts presence on `pubsub` with `options` (call it before serving;
    /// without it, presence starts with the defaults on first use). Returns
    /// `false` if presence had already started on this PubSub, with the
    /// options it started with.
    pub fn start(pubsub: &PubSub, options: PresenceOptions) -> bool {
        let mut started_here = false;
        pubsub.service(|pubsub| {
            started_here = true;
            Tracker::start(pubsub, options)
        });
        started_here
    }

    /// Starts presence on `pubsub` with the defaults unless it runs.
    pub(crate) fn attach(pubsub: &PubSub) {
        Tracker::of(pubsub);
    }

    /// Tracks `key` (e.g. the user's name or id) on the channel's topic
    /// with `meta` (a JSON object; `phx_ref` is added). Everyone on the
    /// topic gets a `presence_diff` with it under `joins`. One channel
    /// tracks a key at most once; use [`Presence::update`] to change it.
    ///
    /// A meta larger than the socket's `max_presence_meta_bytes` (its key
    /// included) is refused with [`PresenceError::MetaTooLarge`].
    pub fn track<T: Serialize>(socket: &impl PresenceScope, key: &str, meta: T) -> Result<(), PresenceError> {
        let scope = socket.presence_scope();
        let meta = meta_object(&meta)?;
        admit(&scope, key, &meta)?;
        Tracker::of(scope.pubsub)
            .apply(|replica| replica.track(scope.owner, scope.topic, key, meta, phx_ref()).map(Some))
    }

    /// Tracks `key` with `meta` right after the join reply, then pushes the
    /// whole `presence_state` to this client: what a Phoenix channel does
    /// with `send(self(), :after_join)` and a `handle_info(:after_join, ..)`
    /// that calls `Presence.track/3` and pushes `Presence.list/1`, in one
    /// call from `join`.
    ///
    /// The client gets Phoenix's frames in Phoenix's order: the join reply,
    /// the `presence_diff` with itself in `joins` (everyone on the topic gets
    /// it), then `presence_state`, which includes itself. The work runs in
    /// the join itself, right after the reply and before any other message
    /// reaches the channel: nothing can come between, and if the join is
    /// refused or crashes, nothing is tracked. Pushes made in `join` go out
    /// before it. Called after the join (from a handler), it tracks and
    /// pushes at once.
    ///
    /// The meta is checked at the call, so `?` in `join` refuses the join
    /// with the error: [`PresenceError::MetaNotAnObject`],
    /// [`PresenceError::MetaTooLarge`] (refused with `{"reason": "presence
    /// meta too large", "max": N}`), or [`PresenceError::AlreadyTracked`]
    /// for a key this channel already holds for after its join. A tracking
    /// that still fails after the reply crashes the channel (`phx_error`,
    /// logged), as `{:ok, _} = Presence.track(..)` does in Phoenix.
    ///
    /// ```ignore
    /// async fn join(_topic: Topic, params: RoomParams, socket: &mut Socket<UserSocket>) -> Join<Self> {
    ///     Presence::track_after_join(socket, &params.name, json!({"online_at": now()}))?;
    ///     Ok((json!({}), RoomChannel { name: params.name }))
    /// }
    /// ```
    pub fn track_after_join<T: Serialize>(
        socket: &mut impl PresenceScope,
        key: &str,
        meta: T,
    ) -> Result<(), PresenceError> {
        let meta = meta_object(&meta)?;
        admit(&socket.presence_scope(), key, &meta)?;
        socket.track_after_join(PendingTrack { key: key.to_owned(), meta })
    }

    /// Replaces the meta of a key this channel tracks: one diff with the
    /// new meta joining (`phx_ref_prev` naming the old) and the old leaving.
    /// Bounded like [`Presence::track`].
    pub fn update<T: Serialize>(socket: &impl PresenceScope, key: &str, meta: T) -> Result<(), PresenceError> {
        let scope = socket.presence_scope();
        let meta = meta_object(&meta)?;
        admit(&scope, key, &meta)?;
        Tracker::of(scope.pubsub)
            .apply(|replica| replica.update(scope.owner, scope.topic, key, meta, phx_ref()).map(Some))
    }

    /// Stops tracking a key this channel tracks; it leaves for everyone.
    pub fn untrack(socket: &impl PresenceScope, key: &str) {
        let scope = socket.presence_scope();
        let Some(tracker) = Tracker::if_started(scope.pubsub) else { return };
        // An untrack cannot fail.
        let _ = tracker.apply(|replica| Ok(replica.untrack(scope.owner, scope.topic, key)));
    }

    /// Everyone on the channel's topic, on every node:
    /// `{key: {"metas": [..]}}`, ready to push as `presence_state`.
    pub fn list(socket: &impl PresenceScope) -> Value {
        let scope = socket.presence_scope();
        Self::list_topic(scope.pubsub, scope.topic)
    }

    /// Everyone on `topic`, from outside any channel.
    pub fn list_topic(pubsub: &PubSub, topic: &str) -> Value {
        let entries = Tracker::of(pubsub).replica.lock().list(topic);
        Value::Object(presence_map(entries))
    }

    /// What presence on `pubsub` holds now, or `None` if it has not
    /// started there (asking does not start it).
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::presence::{Presence, PresenceOptions};
    /// use phx_channels::pubsub::PubSub;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pubsub = PubSub::local();
    /// assert!(Presence::stats(&pubsub).is_none());
    /// Presence::start(&pubsub, PresenceOptions { node_name: Some("web-1".into()), ..PresenceOptions::default() });
    /// let stats = Presence::stats(&pubsub).unwrap();
    /// assert_eq!((stats.node.as_str(), stats.tracked_here, stats.nodes), ("web-1", 0, 1));
    /// # }
    /// ```
    pub fn stats(pubsub: &PubSub) -> Option<PresenceStats> {
        Some(Tracker::if_started(pubsub)?.replica.lock().stats())
    }

    /// Everything a channel instance tracked leaves (it ended).
    pub(crate) fn untrack_owner(pubsub: &PubSub, owner: Owner) {
        if let Some(tracker) = Tracker::if_started(pubsub) {
            tracker.untrack_owner(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_payloads_have_phoenix_shapes() {
        let meta = |r: &str| match json!({"online_at": "1", "phx_ref": r}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let diff = TopicDiff {
            joins: vec![("ada".into(), meta("A")), ("ada".into(), meta("B"))],
            leaves: vec![("bob".into(), meta("C"))],
        };
        assert_eq!(
            diff_payload(diff),
            json!({
                "joins": {"ada": {"metas": [{"online_at": "1", "phx_ref": "A"}, {"online_at": "1", "phx_ref": "B"}]}},
                "leaves": {"bob": {"metas": [{"online_at": "1", "phx_ref": "C"}]}}
            })
        );
        assert_eq!(diff_payload(TopicDiff::default()), json!({"joins": {}, "leaves": {}}));
    }

    #[test]
    fn batched_diffs_keep_every_change_in_order() {
        let meta = |r: &str| match json!({"phx_ref": r}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let diff = |joins: &[(&str, &str)], leaves: &[(&str, &str)]| {
            let pairs = |l: &[(&str, &str)]| l.iter().map(|(k, r)| ((*k).to_owned(), meta(r))).collect();
            Diffs::from([("room:1".to_owned(), TopicDiff { joins: pairs(joins), leaves: pairs(leaves) })])
        };
        let mut waiting = Diffs::new();
        merge(&mut waiting, diff(&[("ada", "A")], &[]));
        merge(&mut waiting, diff(&[("bob", "B")], &[]));
        // ada updates her meta: the new one joins, the old one leaves.
        merge(&mut waiting, diff(&[("ada", "A2")], &[("ada", "A")]));
        merge(&mut waiting, diff(&[], &[("bob", "B")]));
        assert_eq!(
            diff_payload(waiting.remove("room:1").unwrap()),
            json!({
                "joins": {"ada": {"metas": [{"phx_ref": "A"}, {"phx_ref": "A2"}]}, "bob": {"metas": [{"phx_ref": "B"}]}},
                "leaves": {"ada": {"metas": [{"phx_ref": "A"}]}, "bob": {"metas": [{"phx_ref": "B"}]}}
            }),
            "phoenix.js applies the joins, then the leaves: ada is left with A2, bob is gone"
        );
    }

    #[test]
    fn refs_look_like_phoenix_refs() {
        let r = phx_ref();
        assert_eq!(r.len(), 16);
        assert_ne!(r, phx_ref());
    }

    #[test]
    fn metas_must_be_objects() {
        assert!(meta_object(&json!({"a": 1})).is_ok());
        assert_eq!(meta_object(&json!([1])), Err(PresenceError::MetaNotAnObject));
    }
}
