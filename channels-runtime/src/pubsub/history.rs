//! History: the broadcasts a topic keeps, so that a client that lost its
//! connection is sent what it missed when it rejoins.
//!
//! A topic keeps history when it matches a pattern given to
//! [`PubSub::keep_history`](super::PubSub::keep_history) (or the route of a
//! channel declared `#[channel(history(..))]`). Its broadcasts then form a
//! **stream**: each gets a [`Position`], an offset one past the previous
//! one and the stream's epoch, and the last [`History::size`] of them, no
//! older than [`History::age`] and within [`History::max_bytes`], are kept.
//!
//! Who assigns positions and keeps the stream is the **engine**: this
//! process in memory (one node, or several nodes through an adapter that
//! keeps no history: then each node counts its own stream, with its own
//! epoch), or the broker (Redis Streams, NATS JetStream), which every node
//! shares. With a broker, each node keeps a *mirror* of the streams its
//! clients follow, fed by the broker in order, so that a rejoin on that
//! node is served without a round trip when the mirror covers it.
//!
//! This module is the bookkeeping: configuration, streams and what a
//! rejoin is owed ([`Plan`]). Delivering is [`PubSub`](super::PubSub)'s.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::clock;
use crate::outbox::ConnId;
use crate::protocol::{Payload, Position};

/// How much of a topic's past is kept: the last `size` broadcasts, none
/// older than `age`, at most `max_bytes` of payload.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use std::time::Duration;
/// use phx_channels::pubsub::History;
///
/// let history = History::new(100, Duration::from_secs(300));
/// assert_eq!((history.size(), history.age()), (100, Duration::from_secs(300)));
/// assert_eq!(History::default(), history);
/// let big = history.max_bytes(8 << 20);
/// assert_eq!(big.bytes(), 8 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    size: u32,
    age_ms: u32,
    max_bytes: u32,
}

/// The longest age kept (the clock's 32-bit milliseconds measure 24 days).
const MAX_AGE: Duration = Duration::from_secs(24 * 24 * 3600);

impl History {
    /// The default of [`History::max_bytes`]: 1 MiB of payload per topic.
    pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

    /// 100 broadcasts, 5 minutes (AnyCable's defaults), 1 MiB.
    pub const DEFAULT: History = History::new(100, Duration::from_secs(300));

    /// Keeps the last `size` broadcasts (at least 1, at most 2^32 - 1), none
    /// older than `age` (at most 24 days), and at most
    /// [`History::DEFAULT_MAX_BYTES`] of payload.
    pub const fn new(size: usize, age: Duration) -> Self {
        History {
            size: clamp_u32(size),
            age_ms: if age.as_secs() > MAX_AGE.as_secs() { clock::ms(MAX_AGE) } else { clock::ms(age) },
            max_bytes: clamp_u32(Self::DEFAULT_MAX_BYTES),
        }
    }

    /// At most `bytes` of payload kept per topic (the oldest go first).
    #[must_use]
    pub const fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = clamp_u32(bytes);
        self
    }

    /// How many broadcasts are kept.
    pub const fn size(&self) -> usize {
        self.size as usize
    }

    /// How long a broadcast is kept.
    pub const fn age(&self) -> Duration {
        Duration::from_millis(self.age_ms as u64)
    }

    /// How many bytes of payload are kept.
    pub const fn bytes(&self) -> usize {
        self.max_bytes as usize
    }
}

/// [`History::DEFAULT`].
impl Default for History {
    fn default() -> Self {
        History::DEFAULT
    }
}

/// `n` in 1..=`u32::MAX`.
const fn clamp_u32(n: usize) -> u32 {
    if n == 0 {
        1
    } else if n as u64 > u32::MAX as u64 {
        u32::MAX
    } else {
        // In range: checked just above.
        #[allow(clippy::cast_possible_truncation)]
        let n = n as u32;
        n
    }
}

// ---------------------------------------------------------------- patterns

/// A topic pattern given to `keep_history`: an exact topic, or a prefix
/// ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    prefix: Box<str>,
    wildcard: bool,
}

impl Pattern {
    fn new(text: &str) -> Self {
        match text.strip_suffix('*') {
            Some(prefix) => Pattern { prefix: prefix.into(), wildcard: true },
            None => Pattern { prefix: text.into(), wildcard: false },
        }
    }

    fn matches(&self, topic: &str) -> bool {
        if self.wildcard {
            topic.starts_with(&*self.prefix)
        } else {
            topic == &*self.prefix
        }
    }
}

/// Which topics keep history: checked on every broadcast, so a PubSub that
/// keeps none pays one relaxed load.
#[derive(Default)]
pub(crate) struct Patterns {
    any: AtomicBool,
    list: RwLock<Vec<(Pattern, History)>>,
}

impl Patterns {
    /// Keeps `history` for the topics `pattern` matches; a pattern given
    /// again takes the new history.
    pub(crate) fn add(&self, pattern: &str, history: History) {
        let pattern = Pattern::new(pattern);
        let mut list = self.list.write();
        match list.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, kept)) => *kept = history,
            None => list.push((pattern, history)),
        }
        self.any.store(true, Ordering::Release);
    }

    /// The history `topic` keeps, if any (the first pattern that matches).
    #[inline]
    pub(crate) fn of(&self, topic: &str) -> Option<History> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.list.read().iter().find(|(p, _)| p.matches(topic)).map(|(_, h)| *h)
    }
}

// ---------------------------------------------------------------- streams

/// One kept broadcast.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    /// What was broadcast, shared with the `join`s shown it.
    pub(crate) kept: Arc<Kept>,
    /// When it was kept ([`clock::now_ms`]).
    at: u32,
}

/// A kept broadcast's event and payload, and its V2 frames with its
/// position, made when it is first sent again (a storm of rejoins encodes
/// each once).
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) event: Box<str>,
    pub(crate) payload: Payload,
    pub(crate) v2: std::sync::OnceLock<Option<super::KeptFrames>>,
}

impl Entry {
    fn new(offset: u64, event: Box<str>, payload: Payload, at: u32) -> Self {
        Entry { offset, kept: Arc::new(Kept { event, payload, v2: std::sync::OnceLock::new() }), at }
    }

    fn size(&self) -> usize {
        match &self.kept.payload {
            Payload::Json(raw) => raw.get().len(),
            Payload::Binary(bytes) => bytes.len(),
        }
    }
}

/// A topic's stream as this node knows it: the whole of it (the memory
/// engine) or a mirror of the broker's.
#[derive(Debug)]
pub(crate) struct Stream {
    /// `None`: a mirror that has heard nothing yet.
    epoch: Option<Arc<str>>,
    /// The offset of the last broadcast known (0 before the first).
    top: u64,
    /// The kept broadcasts, offsets consecutive, the last one at `top`.
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Subscriptions with positions told to rejoin (this node missed
    /// broadcasts they were owed): nothing more is delivered to them.
    pub(crate) stopped: Vec<ConnId>,
    /// What connections were sent by a join a newer join on the same
    /// connection displaced: the offset, for the newer join's hand-over.
    sent: Vec<(ConnId, u64)>,
    /// When the stream was last written or joined ([`clock::now_ms`]).
    used: u32,
    /// Rejoins being prepared on it (a mirror is kept while any is).
    pub(crate) preparing: u32,
}

/// Why a rejoin is not sent what it missed (the `reason` of the
/// `phx_recovery` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotRecovered {
    /// The client gave no position (`null`): it starts now.
    NoPosition,
    /// The position did not parse.
    Invalid,
    /// The position is of another epoch: the stream it counted in is gone
    /// (a restart, a flushed broker, another node's memory, another topic).
    Epoch,
    /// What it missed is no longer kept (too many, or too old).
    Expired,
    /// The position is past the last broadcast: no client was given it.
    Future,
    /// The stream could not be read (its broker is away).
    Unavailable,
    /// The topic keeps no history.
    Off,
    /// The channel's `join` declined to recover
    /// ([`Socket::decline_recovery`](crate::socket::Socket::decline_recovery)).
    Declined,
}

impl NotRecovered {
    /// The reason as the `phx_recovery` frame writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NotRecovered::NoPosition => "none",
            NotRecovered::Invalid => "invalid",
            NotRecovered::Epoch => "epoch",
            NotRecovered::Expired => "expired",
            NotRecovered::Future => "future",
            NotRecovered::Unavailable => "unavailable",
            NotRecovered::Off => "off",
            NotRecovered::Declined => "declined",
        }
    }
}

impl std::fmt::Display for NotRecovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rejoin asked for, read from its `phx_position` join param.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asked {
    /// `null`: positions from now on.
    Now,
    /// What came after this position.
    After(Position),
    /// Something that is not a position.
    Invalid,
}

/// Reads (and removes) the `phx_position` join param: `None` when the
/// client did not send it, and the params `join` sees, without it.
///
/// The params are looked at only when they mention the key, so a join that
/// does not ask pays one substring search; a value that is not `null` or a
/// string of at most [`MAX_POSITION_LEN`](crate::protocol::MAX_POSITION_LEN)
/// bytes that parses as a position is [`Asked::Invalid`].
pub(crate) fn asked_in(params: Payload) -> (Payload, Option<Asked>) {
    use crate::protocol::POSITION_PARAM;
    let Payload::Json(raw) = &params else { return (params, None) };
    if !raw.get().contains(POSITION_PARAM) {
        return (params, None);
    }
    let Ok(mut map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get()) else {
        return (params, None);
    };
    let Some(value) = map.remove(POSITION_PARAM) else { return (params, None) };
    let asked = match value {
        serde_json::Value::Null => Asked::Now,
        serde_json::Value::String(text) => text.parse().map_or(Asked::Invalid, Asked::After),
        _ => Asked::Invalid,
    };
    // Written back from a map that came from JSON: it always encodes.
    let rest = Payload::json(&map).unwrap_or_else(|_| Payload::empty());
    (rest, Some(asked))
}

/// What a (re)join is owed, as of when it was planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Where the client stands once the plan is carried out: the first
    /// broadcast it gets after the join reply is the one after this.
    pub(crate) start: Option<Position>,
    /// `Ok(offsets)`: recovered, these kept offsets follow (perhaps none);
    /// `Err`: why not.
    pub(crate) outcome: Result<std::ops::RangeInclusive<u64>, NotRecovered>,
}

impl Stream {
    fn new(epoch: Option<Arc<str>>) -> Self {
        Stream {
            epoch,
            top: 0,
            entries: VecDeque::new(),
            bytes: 0,
            stopped: Vec::new(),
            sent: Vec::new(),
            used: clock::now_ms(),
            preparing: 0,
        }
    }

    /// The epoch, if known.
    pub(crate) fn epoch(&self) -> Option<&Arc<str>> {
        self.epoch.as_ref()
    }

    /// The position of the last broadcast known.
    pub(crate) fn top(&self) -> Option<Position> {
        self.epoch.as_ref().map(|e| Position::new(e.clone(), self.top).expect("epochs are checked when set"))
    }

    /// The position the next broadcast gets (memory engine).
    pub(crate) fn next(&self) -> Position {
        let epoch = self.epoch.clone().expect("a memory stream has an epoch");
        Position::new(epoch, self.top + 1).expect("epochs are checked when set")
    }

    /// How many broadcasts are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops what `history` no longer keeps.
    pub(crate) fn trim(&mut self, history: &History, now: u32) {
        while let Some(front) = self.entries.front() {
            let over = self.entries.len() > history.size as usize
                || self.bytes > history.max_bytes as usize
                || clock::elapsed_ms(front.at, now) > history.age_ms;
            if !over {
                break;
            }
            let gone = self.entries.pop_front().expect("front exists");
            self.bytes -= gone.size();
        }
    }

    /// Keeps a broadcast at `offset`, which must be `top + 1`.
    pub(crate) fn append(&mut self, offset: u64, event: &str, payload: Payload, history: &History) {
        debug_assert!(self.entries.is_empty() || offset == self.top + 1);
        let now = clock::now_ms();
        let entry = Entry::new(offset, event.into(), payload, now);
        self.bytes += entry.size();
        self.entries.push_back(entry);
        self.top = offset;
        self.used = now;
        self.trim(history, now);
    }

    /// Forgets what is kept: the mirror starts again at `epoch`/`top`
    /// (subscriptions told to rejoin stay stopped).
    pub(crate) fn reset(&mut self, epoch: Option<Arc<str>>, top: u64) {
        self.epoch = epoch;
        self.top = top;
        self.entries.clear();
        self.bytes = 0;
        self.sent.clear();
    }

    /// Keeps what connection `id` was sent, for its next join's hand-over
    /// (a few: each is taken by that join, or soon outdated).
    pub(crate) fn record_sent(&mut self, id: ConnId, offset: u64) {
        const KEEP: usize = 64;
        self.sent.retain(|(other, _)| *other != id);
        if self.sent.len() == KEEP {
            self.sent.remove(0);
        }
        self.sent.push((id, offset));
    }

    /// What connection `id` was sent by a join of it that was displaced.
    pub(crate) fn take_sent(&mut self, id: ConnId) -> Option<u64> {
        let at = self.sent.iter().position(|(other, _)| *other == id)?;
        Some(self.sent.swap_remove(at).1)
    }

    /// Marks the stream as in use now (a join).
    pub(crate) fn touch(&mut self) {
        self.used = clock::now_ms();
    }

    /// The first offset kept (`top + 1` when none is).
    fn first(&self) -> u64 {
        self.entries.front().map_or(self.top.saturating_add(1), |e| e.offset)
    }

    /// Whether this node's copy can tell what comes after `after` without
    /// asking the broker (a mirror may lag the broker or not reach back).
    pub(crate) fn covers(&self, after: &Position) -> bool {
        match &self.epoch {
            Some(epoch) => {
                **epoch == *after.epoch() && after.offset() <= self.top && after.offset() + 1 >= self.first()
            }
            None => false,
        }
    }

    /// What a rejoin that asked `asked` is owed now.
    pub(crate) fn plan(&mut self, asked: &Asked, history: &History) -> Plan {
        self.trim(history, clock::now_ms());
        let start = self.top();
        let not = |reason| Plan { start: start.clone(), outcome: Err(reason) };
        let Some(epoch) = &self.epoch else { return not(NotRecovered::Unavailable) };
        let after = match asked {
            Asked::Now => return not(NotRecovered::NoPosition),
            Asked::Invalid => return not(NotRecovered::Invalid),
            Asked::After(after) => after,
        };
        if **epoch != *after.epoch() {
            return not(NotRecovered::Epoch);
        }
        if after.offset() > self.top {
            return not(NotRecovered::Future);
        }
        if after.offset() + 1 < self.first() {
            return not(NotRecovered::Expired);
        }
        Plan { start: Some(after.clone()), outcome: Ok(after.offset() + 1..=self.top) }
    }

    /// The kept broadcasts at `offsets` (all of them are kept: a plan's
    /// range, checked under the same lock).
    pub(crate) fn entries(&self, offsets: &std::ops::RangeInclusive<u64>) -> impl Iterator<Item = &Entry> {
        let first = self.first();
        let skip = usize::try_from(offsets.start().saturating_sub(first)).unwrap_or(usize::MAX);
        let take = usize::try_from(offsets.end().saturating_sub(*offsets.start()).saturating_add(1)).unwrap_or(0);
        let take = if offsets.is_empty() { 0 } else { take };
        self.entries.iter().skip(skip).take(take)
    }

    /// Puts broadcasts read from the broker (`epoch`, consecutive offsets
    /// ending at `top`) in front of what the mirror heard live since it
    /// subscribed. `false` when they cannot be joined up (another epoch,
    /// or a hole between them), the mirror then taking what was read.
    pub(crate) fn merge(&mut self, epoch: &Arc<str>, top: u64, read: Vec<Entry>, history: &History) -> bool {
        let joined = match &self.epoch {
            None => {
                self.reset(Some(epoch.clone()), top);
                true
            }
            Some(mine) if mine == epoch => {
                // Live broadcasts start at `first`; what was read ends at
                // `top`: they join if nothing lies between.
                if self.entries.is_empty() && self.top <= top {
                    self.top = top;
                    true
                } else {
                    self.first() <= top.saturating_add(1)
                }
            }
            Some(_) => false,
        };
        if !joined {
            self.reset(Some(epoch.clone()), top);
        }
        // In front of what came live, and after it what the broker had
        // that has not come live yet (it will, and be dropped as known).
        let (first, top_before) = (self.first(), self.top);
        let now = clock::now_ms();
        let (before, after): (Vec<Entry>, Vec<Entry>) =
            read.into_iter().filter(|e| e.offset < first || e.offset > top_before).partition(|e| e.offset < first);
        for mut entry in before.into_iter().rev() {
            entry.at = now;
            self.bytes += entry.size();
            self.entries.push_front(entry);
        }
        for mut entry in after {
            if entry.offset == self.top + 1 {
                entry.at = now;
                self.bytes += entry.size();
                self.top = entry.offset;
                self.entries.push_back(entry);
            }
        }
        self.top = self.top.max(top);
        self.trim(history, now);
        joined
    }
}

/// A kept broadcast read from a broker, for [`Stream::merge`].
pub(crate) fn read_entry(offset: u64, event: String, payload: Payload) -> Entry {
    Entry::new(offset, event.into_boxed_str(), payload, clock::now_ms())
}

const SHARDS: usize = 16;

/// One shard of [`Streams`]: streams by topic.
type Shard = Mutex<HashMap<Arc<str>, Arc<Mutex<Stream>>>>;

/// Every stream this node keeps or mirrors, by topic.
pub(crate) struct Streams {
    shards: Box<[Shard]>,
    /// The next shard an insertion sweeps.
    sweep: AtomicU64,
    /// Makes epochs: a random prefix per process, and a counter.
    epochs: Epochs,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            sweep: AtomicU64::new(0),
            epochs: Epochs::new(),
        }
    }
}

impl Streams {
    fn shard(&self, topic: &str) -> &Mutex<HashMap<Arc<str>, Arc<Mutex<Stream>>>> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut hasher);
        // In range by the modulo.
        #[allow(clippy::cast_possible_truncation)]
        let index = (hasher.finish() % SHARDS as u64) as usize;
        &self.shards[index]
    }

    /// The stream of `topic`, if this node has one.
    pub(crate) fn get(&self, topic: &str) -> Option<Arc<Mutex<Stream>>> {
        self.shard(topic).lock().get(topic).cloned()
    }

    /// The stream of `topic`, made if missing: with a fresh epoch when this
    /// node assigns positions (`own`), empty for a mirror. Making one
    /// sweeps one shard of streams gone quiet (`idle` says which may go).
    pub(crate) fn get_or_make(
        &self,
        topic: &str,
        own: bool,
        idle: impl Fn(&str, &mut Stream) -> bool,
    ) -> Arc<Mutex<Stream>> {
        if let Some(stream) = self.get(topic) {
            return stream;
        }
        self.sweep_one(&idle);
        let mut shard = self.shard(topic).lock();
        shard
            .entry(Arc::from(topic))
            .or_insert_with(|| {
                let epoch = own.then(|| self.epochs.make());
                Arc::new(Mutex::new(Stream::new(epoch)))
            })
            .clone()
    }

    /// Removes `topic`'s stream if `gone` says so (under its lock).
    pub(crate) fn remove_if(&self, topic: &str, gone: impl Fn(&Stream) -> bool) {
        let mut shard = self.shard(topic).lock();
        let remove = shard.get(topic).is_some_and(|s| gone(&s.lock()));
        if remove {
            shard.remove(topic);
        }
    }

    /// Every stream, for a pass over all of them.
    pub(crate) fn all(&self) -> Vec<(Arc<str>, Arc<Mutex<Stream>>)> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().iter().map(|(t, s)| (t.clone(), s.clone())).collect::<Vec<_>>())
            .collect()
    }

    /// How many streams this node holds.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn sweep_one(&self, idle: &impl Fn(&str, &mut Stream) -> bool) {
        // Wraps by the modulo.
        #[allow(clippy::cast_possible_truncation)]
        let index = (self.sweep.fetch_add(1, Ordering::Relaxed) % SHARDS as u64) as usize;
        let mut shard = self.shards[index].lock();
        shard.retain(|topic, stream| !stream.try_lock().is_some_and(|mut s| idle(topic, &mut s)));
    }
}

impl Stream {
    /// Whether the stream can go: nothing kept, unused for `history`'s age
    /// (so a client away for less than that still finds its epoch), and no
    /// rejoin being prepared on it. The caller checks for subscribers.
    pub(crate) fn is_idle(&mut self, history: &History) -> bool {
        let now = clock::now_ms();
        self.trim(history, now);
        self.entries.is_empty() && self.preparing == 0 && clock::elapsed_ms(self.used, now) > history.age_ms
    }
}

/// Epochs that never repeat in a process, and almost surely not across
/// processes: a random prefix and a counter, in base 62.
pub(crate) struct Epochs {
    prefix: String,
    counter: AtomicU64,
}

impl Epochs {
    pub(crate) fn new() -> Self {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            seed = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
        }
        Epochs { prefix: base62(u64::from_le_bytes(seed)), counter: AtomicU64::new(0) }
    }

    /// A new epoch (at most 22 characters).
    pub(crate) fn make(&self) -> Arc<str> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}{}", &self.prefix[..self.prefix.len().min(10)], base62(n)))
    }
}

/// `n` in base 62 (`0-9A-Za-z`).
pub(crate) fn base62(mut n: u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(11);
    loop {
        // In range by the modulo.
        #[allow(clippy::cast_possible_truncation)]
        out.push(DIGITS[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
// A plan of nothing missed is the empty range after the asked offset (`9..=8`).
#[allow(clippy::reversed_empty_ranges)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream(own: bool) -> Stream {
        Stream::new(own.then(|| Arc::from("ep")))
    }

    fn keep(s: &mut Stream, n: u64, history: &History) {
        for _ in 0..n {
            let next = s.next();
            s.append(next.offset(), "e", Payload::from(json!({"n": next.offset()})), history);
        }
    }

    fn at(offset: u64) -> Asked {
        Asked::After(Position::new("ep", offset).unwrap())
    }

    #[test]
    fn patterns_match_like_routes_and_cost_nothing_when_none() {
        let patterns = Patterns::default();
        assert_eq!(patterns.of("comments:1"), None);
        patterns.add("comments:*", History::new(10, Duration::from_secs(1)));
        patterns.add("lobby", History::default());
        assert_eq!(patterns.of("comments:1").map(|h| h.size()), Some(10));
        assert_eq!(patterns.of("lobby"), Some(History::default()));
        assert_eq!(patterns.of("lobby:2"), None);
        patterns.add("comments:*", History::new(20, Duration::from_secs(1)));
        assert_eq!(patterns.of("comments:1").map(|h| h.size()), Some(20));
    }

    #[test]
    fn plans_recover_what_is_kept_and_say_why_not_otherwise() {
        let history = History::new(5, Duration::from_secs(60));
        let mut s = stream(true);
        assert_eq!(s.plan(&at(0), &history).outcome, Ok(1..=0), "nothing missed on an empty stream");
        keep(&mut s, 8, &history);
        assert_eq!(s.len(), 5);
        assert_eq!(s.plan(&at(8), &history).outcome, Ok(9..=8));
        let plan = s.plan(&at(4), &history);
        assert_eq!((plan.start.as_ref().map(Position::offset), plan.outcome.clone()), (Some(4), Ok(5..=8)));
        let offsets: Vec<u64> = s.entries(&(5..=8)).map(|e| e.offset).collect();
        assert_eq!(offsets, [5, 6, 7, 8]);
        assert_eq!(s.plan(&at(3), &history).outcome, Ok(4..=8), "exactly the bound");
        assert_eq!(s.plan(&at(2), &history).outcome, Err(NotRecovered::Expired));
        assert_eq!(s.plan(&at(9), &history).outcome, Err(NotRecovered::Future));
        assert_eq!(s.plan(&at(u64::MAX), &history).outcome, Err(NotRecovered::Future));
        let other = Asked::After(Position::new("other", 4).unwrap());
        let plan = s.plan(&other, &history);
        assert_eq!((plan.start.map(|p| p.offset()), plan.outcome), (Some(8), Err(NotRecovered::Epoch)));
        assert_eq!(s.plan(&Asked::Now, &history).outcome, Err(NotRecovered::NoPosition));
        assert_eq!(s.plan(&Asked::Invalid, &history).outcome, Err(NotRecovered::Invalid));
    }

    #[tokio::test(start_paused = true)]
    async fn age_and_bytes_bound_what_is_kept_but_the_top_stays() {
        let history = History::new(100, Duration::from_secs(10)).max_bytes(40);
        let mut s = stream(true);
        keep(&mut s, 3, &history);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(s.plan(&at(3), &history).outcome, Ok(4..=3), "nothing missed: recovered");
        assert_eq!(s.plan(&at(2), &history).outcome, Err(NotRecovered::Expired));
        assert_eq!(s.len(), 0);
        keep(&mut s, 10, &history);
        // {"n":9} is 7 bytes, {"n":10}..{"n":13} 8 each: 39 bytes; one more would pass 40
        assert!(s.bytes <= 40 && s.len() == 5, "{} entries, {} bytes", s.len(), s.bytes);
        assert!(!s.is_idle(&history));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(s.is_idle(&history));
    }

    #[test]
    fn mirrors_merge_what_was_read_with_what_came_live() {
        let history = History::new(10, Duration::from_secs(60));
        let epoch: Arc<str> = Arc::from("ep");
        let read = |range: std::ops::RangeInclusive<u64>| -> Vec<Entry> {
            range.map(|o| read_entry(o, "e".into(), Payload::empty())).collect()
        };
        // live 7, 8 arrived while 3..=6 was being read
        let mut s = stream(false);
        s.reset(Some(epoch.clone()), 6);
        s.append(7, "e", Payload::empty(), &history);
        s.append(8, "e", Payload::empty(), &history);
        assert!(s.merge(&epoch, 6, read(3..=6), &history));
        assert_eq!(s.plan(&at(2), &history).outcome, Ok(3..=8));
        assert!(s.covers(&Position::new("ep", 2).unwrap()));
        assert!(!s.covers(&Position::new("ep", 1).unwrap()));
        // an empty mirror takes what was read
        let mut s = stream(false);
        assert!(s.merge(&epoch, 4, read(2..=4), &history));
        assert_eq!(s.plan(&at(1), &history).outcome, Ok(2..=4));
        // another epoch: the read wins, the mirror says it could not join up
        let mut s = stream(false);
        s.reset(Some(Arc::from("old")), 9);
        assert!(!s.merge(&epoch, 4, read(2..=4), &history));
        assert_eq!(s.epoch().map(|e| &**e), Some("ep"));
    }

    #[test]
    fn the_position_param_is_read_and_removed() {
        let json = |v: serde_json::Value| Payload::from(v);
        let (rest, asked) = asked_in(json(json!({"name": "ann"})));
        assert_eq!((rest.as_json(), asked), (Some(r#"{"name":"ann"}"#), None));
        let (rest, asked) = asked_in(json(json!({"name": "ann", "phx_position": null})));
        assert_eq!((rest.as_json(), asked), (Some(r#"{"name":"ann"}"#), Some(Asked::Now)));
        let (rest, asked) = asked_in(json(json!({"phx_position": "ep:7"})));
        assert_eq!((rest.as_json(), asked), (Some("{}"), Some(Asked::After(Position::new("ep", 7).unwrap()))));
        for hostile in [json!(7), json!(-1), json!("ep:-1"), json!("x".repeat(100_000)), json!({"a": 1}), json!([1])] {
            let (rest, asked) = asked_in(json(json!({"phx_position": hostile})));
            assert_eq!((rest.as_json(), asked), (Some("{}"), Some(Asked::Invalid)));
        }
        // not a key of the params themselves
        let (_, asked) = asked_in(json(json!({"note": "phx_position"})));
        assert_eq!(asked, None);
        let (_, asked) = asked_in(json(json!(["phx_position"])));
        assert_eq!(asked, None);
        let (_, asked) = asked_in(Payload::from(b"phx_position".to_vec()));
        assert_eq!(asked, None);
    }

    #[test]
    fn epochs_are_valid_and_distinct() {
        let epochs = Epochs::new();
        let (a, b) = (epochs.make(), epochs.make());
        assert_ne!(a, b);
        assert!(Position::new(a.clone(), 1).is_ok() && a.len() <= 22, "{a}");
        assert_eq!(base62(0), "0");
        assert_eq!(base62(61), "z");
        assert_eq!(base62(62), "10");
    }
}
