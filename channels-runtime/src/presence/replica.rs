//! The presence CRDT: one node's replica, as a pure state machine.
//!
//! Every node owns the entries it tracked and is their only writer. Its
//! state is versioned by a clock that grows with every change, so a node's
//! view of another node is simply "that node's entries at the newest clock
//! heard of", and merging two views keeps the newer one: a state-based CRDT
//! whose merge is a max by clock. Replication follows Phoenix.Tracker:
//!
//! - changes are gossiped as **deltas** from clock *n* to *m*, batched:
//!   every change since the last delta goes out in the next one (Phoenix's
//!   `broadcast_period`), so a burst of joins is a few messages, not one
//!   per join;
//! - every node gossips a **heartbeat** with the clock of its last delta at
//!   a fixed interval (a few dozen bytes, whatever the number of presences);
//! - a receiver that finds a gap (a delta that does not start at the clock
//!   it knows, or a heartbeat ahead of it) asks for a **transfer** of the
//!   owner's whole state, which replaces its view of that node;
//! - a node not heard from for the down period is declared down and its
//!   entries leave everywhere;
//! - a node carries its name and the time it started (its *incarnation*):
//!   a node restarted under the same name replaces its previous life at
//!   once, whose entries leave, and gossip still in flight from that
//!   previous life is ignored.
//!
//! Messages may be lost, duplicated, delayed and reordered; views converge
//! once they flow again (see the property test below).
//!
//! Nothing here does I/O: callers feed messages and the current time in,
//! and get back messages to gossip and the presence diffs to broadcast.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A node's name: given, or random when it starts.
pub(crate) type ReplicaId = String;

/// When a node started (microseconds since the epoch): tells a node's
/// lives apart when it restarts under the same name.
pub(crate) type Vsn = u64;

/// Entries per transfer message: a node with many presences sends its
/// state in parts, each well under a broker's message limit (NATS: 1 MB).
pub(crate) const TRANSFER_PART: usize = 1000;

/// A delta holding this many changes goes out at once, before the period
/// ends, for the same reason.
pub(crate) const DELTA_MAX: usize = 1000;

/// Parts of one transfer, at most (a hundred million presences): a
/// transfer announcing more is not from a node of ours, and is ignored
/// before anything is allocated for it.
const MAX_PARTS: u32 = 100_000;

/// Who tracked an entry on this node: a connection and its channel
/// instance, so the entry leaves when that channel ends.
pub(crate) type Owner = (u64, u64);

/// One tracked presence: `key` on `topic`, with its meta (`phx_ref`
/// included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) meta: Map<String, Value>,
}

impl Entry {
    fn phx_ref(&self) -> &str {
        self.meta.get("phx_ref").and_then(Value::as_str).unwrap_or_default()
    }
}

/// What replicas tell each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Gossip {
    /// `replica` moved from clock `from` to `to` by these changes.
    Delta { replica: ReplicaId, vsn: Vsn, from: u64, to: u64, joins: Vec<Entry>, leaves: Vec<String> },
    /// `replica` is alive, its last delta at `clock`.
    Heartbeat { replica: ReplicaId, vsn: Vsn, clock: u64 },
    /// `from` asks `replica` for its whole state.
    TransferRequest { replica: ReplicaId, from: ReplicaId },
    /// Part `part` (of `parts`) of the whole state of `replica` at `clock`.
    Transfer { replica: ReplicaId, vsn: Vsn, clock: u64, part: u32, parts: u32, entries: Vec<Entry> },
}

/// Presence changes on one topic, as `presence_diff` carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TopicDiff {
    pub(crate) joins: Vec<(String, Map<String, Value>)>,
    pub(crate) leaves: Vec<(String, Map<String, Value>)>,
}

/// Diffs by topic, in a stable order.
pub(crate) type Diffs = BTreeMap<String, TopicDiff>;

fn add_join(diffs: &mut Diffs, e: &Entry) {
    diffs.entry(e.topic.clone()).or_default().joins.push((e.key.clone(), e.meta.clone()));
}

fn add_leave(diffs: &mut Diffs, e: &Entry) {
    diffs.entry(e.topic.clone()).or_default().leaves.push((e.key.clone(), e.meta.clone()));
}

/// Why a track or update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// The same channel already tracks this key on this topic.
    #[error("`{key}` is already tracked on `{topic}` by this channel; use update")]
    AlreadyTracked {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
    },
    /// Nothing to update: this channel does not track this key.
    #[error("`{key}` is not tracked on `{topic}` by this channel")]
    NotTracked {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
    },
    /// Metas are JSON objects.
    #[error("a presence meta must serialize to a JSON object")]
    MetaNotAnObject,
    /// The meta (with its key) is larger than the socket's
    /// `max_presence_meta_bytes`. Propagated from `handle_in`, the message
    /// is answered `error` with `{"reason": "presence meta too large",
    /// "max": N}` and the channel keeps running.
    #[error("presence meta of {size} bytes (key included) is over the limit of {max} bytes")]
    MetaTooLarge {
        /// The encoded meta's size plus the key's, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
}

#[derive(Debug, Default)]
struct Remote {
    vsn: Vsn,
    clock: u64,
    entries: HashMap<String, Entry>,
    last_heard: u64,
    /// Parts of a transfer being received: its clock and entries so far.
    incoming: Option<Incoming>,
}

#[derive(Debug)]
struct Incoming {
    clock: u64,
    parts: u32,
    received: Vec<bool>,
    entries: Vec<Entry>,
}

/// Changes not yet gossiped: everything since the clock of the last delta.
#[derive(Debug, Default)]
struct Pending {
    joins: Vec<Entry>,
    leaves: Vec<String>,
}

/// One node's replica.
#[derive(Debug)]
pub(crate) struct Replica {
    me: ReplicaId,
    vsn: Vsn,
    clock: u64,
    /// The clock of the last delta sent.
    sent: u64,
    pending: Pending,
    local: HashMap<String, (Owner, Entry)>,
    remotes: HashMap<ReplicaId, Remote>,
    /// Whether another live node was seen using this node's name.
    warned_duplicate: bool,
}

/// The result of a local change: the diffs to broadcast here (the change
/// reaches other nodes with the next [`Replica::flush`]).
pub(crate) struct Change {
    pub(crate) diffs: Diffs,
}

impl Replica {
    pub(crate) fn new(me: ReplicaId, vsn: Vsn) -> Self {
        Replica {
            me,
            vsn,
            clock: 0,
            sent: 0,
            pending: Pending::default(),
            local: HashMap::new(),
            remotes: HashMap::new(),
            warned_duplicate: false,
        }
    }

    /// The delta of every change since the last one, if any.
    pub(crate) fn flush(&mut self) -> Option<Gossip> {
        if self.clock == self.sent {
            return None;
        }
        let Pending { joins, leaves } = std::mem::take(&mut self.pending);
        let from = std::mem::replace(&mut self.sent, self.clock);
        Some(Gossip::Delta { replica: self.me.clone(), vsn: self.vsn, from, to: self.clock, joins, leaves })
    }

    /// Changes waiting for the next delta.
    pub(crate) fn pending(&self) -> usize {
        self.pending.joins.len() + self.pending.leaves.len()
    }

    fn find_local(&self, owner: Owner, topic: &str, key: &str) -> Option<String> {
        self.local.iter().find(|(_, (o, e))| *o == owner && e.topic == topic && e.key == key).map(|(r, _)| r.clone())
    }

    fn change(&mut self, joins: Vec<Entry>, leaves: Vec<Entry>) -> Change {
        self.clock += 1;
        let mut diffs = Diffs::new();
        for e in &leaves {
            add_leave(&mut diffs, e);
            // Joined and left within one delta: it never needs to cross.
            match self.pending.joins.iter().position(|j| j.phx_ref() == e.phx_ref()) {
                Some(at) => {
                    self.pending.joins.swap_remove(at);
                }
                None => self.pending.leaves.push(e.phx_ref().to_owned()),
            }
        }
        for e in joins {
            add_join(&mut diffs, &e);
            self.pending.joins.push(e);
        }
        Change { diffs }
    }

    /// Tracks `key` on `topic` for `owner`, with a fresh `phx_ref`.
    pub(crate) fn track(
        &mut self,
        owner: Owner,
        topic: &str,
        key: &str,
        mut meta: Map<String, Value>,
        phx_ref: String,
    ) -> Result<Change, PresenceError> {
        if self.find_local(owner, topic, key).is_some() {
            return Err(PresenceError::AlreadyTracked { topic: topic.to_owned(), key: key.to_owned() });
        }
        meta.insert("phx_ref".to_owned(), Value::String(phx_ref.clone()));
        let entry = Entry { topic: topic.to_owned(), key: key.to_owned(), meta };
        self.local.insert(phx_ref, (owner, entry.clone()));
        Ok(self.change(vec![entry], Vec::new()))
    }

    /// Replaces the meta of a tracked key: one diff with the new meta
    /// joining (`phx_ref_prev` set) and the old one leaving.
    pub(crate) fn update(
        &mut self,
        owner: Owner,
        topic: &str,
        key: &str,
        mut meta: Map<String, Value>,
        phx_ref: String,
    ) -> Result<Change, PresenceError> {
        let Some(old_ref) = self.find_local(owner, topic, key) else {
            return Err(PresenceError::NotTracked { topic: topic.to_owned(), key: key.to_owned() });
        };
        let (_, old) = self.local.remove(&old_ref).expect("found just above");
        meta.insert("phx_ref".to_owned(), Value::String(phx_ref.clone()));
        meta.insert("phx_ref_prev".to_owned(), Value::String(old_ref));
        let entry = Entry { topic: topic.to_owned(), key: key.to_owned(), meta };
        self.local.insert(phx_ref, (owner, entry.clone()));
        Ok(self.change(vec![entry], vec![old]))
    }

    /// Untracks `key` on `topic` for `owner`, if tracked.
    pub(crate) fn untrack(&mut self, owner: Owner, topic: &str, key: &str) -> Option<Change> {
        let r = self.find_local(owner, topic, key)?;
        let (_, entry) = self.local.remove(&r)?;
        Some(self.change(Vec::new(), vec![entry]))
    }

    /// Untracks everything `owner` tracked (its channel ended).
    pub(crate) fn untrack_owner(&mut self, owner: Owner) -> Option<Change> {
        let refs: Vec<String> = self.local.iter().filter(|(_, (o, _))| *o == owner).map(|(r, _)| r.clone()).collect();
        if refs.is_empty() {
            return None;
        }
        let leaves = refs.iter().filter_map(|r| self.local.remove(r)).map(|(_, e)| e).collect();
        Some(self.change(Vec::new(), leaves))
    }

    /// This node's heartbeat: the clock of its last delta (changes not
    /// sent yet are no gap for anyone).
    pub(crate) fn heartbeat(&self) -> Gossip {
        Gossip::Heartbeat { replica: self.me.clone(), vsn: self.vsn, clock: self.sent }
    }

    /// The remote `name` as of incarnation `vsn`, heard from `now`; `None`
    /// for gossip of an earlier life (or of this node). A later life
    /// replaces the earlier one, whose entries leave.
    fn heard(&mut self, name: &str, vsn: Vsn, now: u64, diffs: &mut Diffs) -> Option<&mut Remote> {
        if name == self.me {
            // An earlier life's gossip still in flight is no concern.
            if vsn > self.vsn && !self.warned_duplicate {
                self.warned_duplicate = true;
                tracing::warn!(
                    node = name,
                    "another node gossips presence under this node's name; node names must be unique"
                );
            }
            return None;
        }
        let remote = self.remotes.entry(name.to_owned()).or_insert_with(|| Remote { vsn, ..Remote::default() });
        if vsn < remote.vsn {
            return None;
        }
        if vsn > remote.vsn {
            tracing::info!(node = name, "a node came back under the same name; its previous presences leave");
            for e in remote.entries.values() {
                add_leave(diffs, e);
            }
            *remote = Remote { vsn, ..Remote::default() };
        }
        remote.last_heard = now;
        Some(remote)
    }

    /// Applies gossip from another node. Returns gossip to send back (a
    /// transfer request, or this node's last delta and its state) and the
    /// diffs to broadcast locally.
    pub(crate) fn receive(&mut self, gossip: Gossip, now: u64) -> (Vec<Gossip>, Diffs) {
        let mut diffs = Diffs::new();
        let mut replies = Vec::new();
        let me = self.me.clone();
        match gossip {
            Gossip::Delta { replica, vsn, from, to, joins, leaves } => {
                let Some(remote) = self.heard(&replica, vsn, now, &mut diffs) else { return (replies, diffs) };
                if from == remote.clock {
                    for r in &leaves {
                        if let Some(e) = remote.entries.remove(r) {
                            add_leave(&mut diffs, &e);
                        }
                    }
                    for e in joins {
                        add_join(&mut diffs, &e);
                        remote.entries.insert(e.phx_ref().to_owned(), e);
                    }
                    remote.clock = to;
                } else if from > remote.clock {
                    replies.push(Gossip::TransferRequest { replica, from: me });
                }
            }
            Gossip::Heartbeat { replica, vsn, clock } => {
                let Some(remote) = self.heard(&replica, vsn, now, &mut diffs) else { return (replies, diffs) };
                if clock > remote.clock {
                    replies.push(Gossip::TransferRequest { replica, from: me });
                }
            }
            Gossip::TransferRequest { replica, .. } => {
                if replica == self.me {
                    // The state is sent at the clock of a delta: changes
                    // still pending go first, in their own delta.
                    replies.extend(self.flush());
                    replies.extend(self.transfer());
                }
            }
            Gossip::Transfer { replica, vsn, clock, part, parts, entries } => {
                let Some(remote) = self.heard(&replica, vsn, now, &mut diffs) else { return (replies, diffs) };
                if clock > remote.clock {
                    if let Some(whole) = collect(remote, clock, part, parts, entries) {
                        replace(remote, clock, whole, &mut diffs);
                    }
                }
            }
        }
        (replies, diffs)
    }

    /// This node's whole state, in parts.
    fn transfer(&self) -> Vec<Gossip> {
        let entries: Vec<Entry> = self.local.values().map(|(_, e)| e.clone()).collect();
        let chunks: Vec<Vec<Entry>> = if entries.is_empty() {
            vec![Vec::new()]
        } else {
            entries.chunks(TRANSFER_PART).map(<[Entry]>::to_vec).collect()
        };
        let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        chunks
            .into_iter()
            .zip(0..)
            .map(|(entries, part)| Gossip::Transfer {
                replica: self.me.clone(),
                vsn: self.vsn,
                clock: self.sent,
                part,
                parts,
                entries,
            })
            .collect()
    }

    /// Counts every known node as heard from `now`: while this node hears
    /// nobody (its broker subscription is down), silence says nothing of
    /// the others.
    pub(crate) fn hear_all(&mut self, now: u64) {
        for remote in self.remotes.values_mut() {
            remote.last_heard = now;
        }
    }

    /// Declares down every node not heard from since `now - down_period`:
    /// its entries leave.
    pub(crate) fn reap(&mut self, now: u64, down_period: u64) -> Diffs {
        let mut diffs = Diffs::new();
        let down: Vec<ReplicaId> = self
            .remotes
            .iter()
            .filter(|(_, r)| now.saturating_sub(r.last_heard) >= down_period)
            .map(|(id, _)| id.clone())
            .collect();
        for id in down {
            if let Some(remote) = self.remotes.remove(&id) {
                for e in remote.entries.values() {
                    add_leave(&mut diffs, e);
                }
            }
        }
        diffs
    }

    /// This node's name, the entries it tracks, and the entries and nodes
    /// it knows of (itself included).
    pub(crate) fn stats(&self) -> super::PresenceStats {
        let remote: usize = self.remotes.values().map(|r| r.entries.len()).sum();
        super::PresenceStats {
            node: self.me.clone(),
            tracked_here: self.local.len(),
            tracked: self.local.len() + remote,
            nodes: self.remotes.len() + 1,
        }
    }

    /// Every entry on `topic` seen from this node: key → metas.
    pub(crate) fn list(&self, topic: &str) -> BTreeMap<String, Vec<Map<String, Value>>> {
        let mut map: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
        let local = self.local.values().map(|(_, e)| e);
        let remote = self.remotes.values().flat_map(|r| r.entries.values());
        for e in local.chain(remote).filter(|e| e.topic == topic) {
            map.entry(e.key.clone()).or_default().push(e.meta.clone());
        }
        for metas in map.values_mut() {
            metas.sort_by(|a, b| a.get("phx_ref").map(Value::to_string).cmp(&b.get("phx_ref").map(Value::to_string)));
        }
        map
    }

    /// Every entry this node knows of, by `phx_ref` (for tests).
    #[cfg(test)]
    fn all(&self) -> BTreeMap<String, Entry> {
        let local = self.local.values().map(|(_, e)| e);
        let remote = self.remotes.values().flat_map(|r| r.entries.values());
        local.chain(remote).map(|e| (e.phx_ref().to_owned(), e.clone())).collect()
    }
}

/// Adds a part of a transfer; the whole state once every part is in.
fn collect(remote: &mut Remote, clock: u64, part: u32, parts: u32, entries: Vec<Entry>) -> Option<Vec<Entry>> {
    let parts = parts.max(1);
    if parts > MAX_PARTS || part >= parts {
        return None;
    }
    if remote.incoming.as_ref().is_none_or(|i| i.clock != clock || i.parts != parts) {
        remote.incoming = Some(Incoming { clock, parts, received: vec![false; parts as usize], entries: Vec::new() });
    }
    let incoming = remote.incoming.as_mut()?;
    let seen = incoming.received.get_mut(part as usize)?;
    if std::mem::replace(seen, true) {
        return None;
    }
    incoming.entries.extend(entries);
    if incoming.received.iter().all(|r| *r) {
        return remote.incoming.take().map(|i| i.entries);
    }
    None
}

/// Replaces the view of a remote with its whole state at `clock`.
fn replace(remote: &mut Remote, clock: u64, entries: Vec<Entry>, diffs: &mut Diffs) {
    let new: HashMap<String, Entry> = entries.into_iter().map(|e| (e.phx_ref().to_owned(), e)).collect();
    for (r, e) in &remote.entries {
        if !new.contains_key(r) {
            add_leave(diffs, e);
        }
    }
    for (r, e) in &new {
        if !remote.entries.contains_key(r) {
            add_join(diffs, e);
        }
    }
    remote.entries = new;
    remote.clock = clock;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn meta(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn track_update_untrack_produce_phoenix_diffs() {
        let mut r = Replica::new("a".into(), 1);
        let c = r.track((1, 1), "room:x", "ada", meta(json!({"online_at": "1"})), "R1".into()).unwrap();
        assert_eq!(c.diffs["room:x"].joins, vec![("ada".to_owned(), meta(json!({"online_at": "1", "phx_ref": "R1"})))]);
        assert!(r.track((1, 1), "room:x", "ada", Map::new(), "R9".into()).is_err());
        // the same key from another channel (another tab) is a second meta
        r.track((2, 1), "room:x", "ada", Map::new(), "R2".into()).unwrap();
        assert_eq!(r.list("room:x")["ada"].len(), 2);

        let c = r.update((1, 1), "room:x", "ada", meta(json!({"status": "away"})), "R3".into()).unwrap();
        let d = &c.diffs["room:x"];
        assert_eq!(d.joins[0].1, meta(json!({"status": "away", "phx_ref": "R3", "phx_ref_prev": "R1"})));
        assert_eq!(d.leaves[0].1, meta(json!({"online_at": "1", "phx_ref": "R1"})));

        let c = r.untrack_owner((1, 1)).unwrap();
        assert_eq!(c.diffs["room:x"].leaves.len(), 1);
        assert!(r.untrack_owner((1, 1)).is_none());
        assert_eq!(r.list("room:x")["ada"].len(), 1);
    }

    #[test]
    fn deltas_replicate_and_gaps_ask_for_a_transfer() {
        let (mut a, mut b) = (Replica::new("a".into(), 1), Replica::new("b".into(), 1));
        a.track((1, 1), "t", "k1", Map::new(), "A1".into()).unwrap();
        let d1 = a.flush().unwrap();
        a.track((1, 1), "t", "k2", Map::new(), "A2".into()).unwrap();
        let d2 = a.flush().unwrap();
        assert!(a.flush().is_none(), "nothing new, no delta");
        // b misses the first delta: it asks for a transfer
        let (replies, diffs) = b.receive(d2, 0);
        assert!(diffs.is_empty());
        assert_eq!(replies, vec![Gossip::TransferRequest { replica: "a".into(), from: "b".into() }]);
        let (transfer, _) = a.receive(replies[0].clone(), 0);
        let (_, diffs) = b.receive(transfer[0].clone(), 0);
        assert_eq!(diffs["t"].joins.len(), 2);
        // the late first delta is ignored
        let (_, diffs) = b.receive(d1, 0);
        assert!(diffs.is_empty());
        assert_eq!(a.all(), b.all());
    }

    #[test]
    fn changes_are_batched_into_one_delta() {
        let (mut a, mut b) = (Replica::new("a".into(), 1), Replica::new("b".into(), 1));
        for i in 0..100 {
            a.track((1, i), "t", &format!("k{i}"), Map::new(), format!("A{i}")).unwrap();
        }
        // joined and left before the delta went out: never crosses
        a.untrack((1, 7), "t", "k7").unwrap();
        a.track((1, 200), "t", "late", Map::new(), "L".into()).unwrap();
        a.update((1, 200), "t", "late", Map::new(), "L2".into()).unwrap();
        // a heartbeat before the delta shows no gap
        let (replies, _) = b.receive(a.heartbeat(), 0);
        assert!(replies.is_empty());
        let delta = a.flush().unwrap();
        let Gossip::Delta { joins, leaves, .. } = &delta else { unreachable!() };
        assert_eq!((joins.len(), leaves.len()), (100, 0));
        let (replies, diffs) = b.receive(delta, 0);
        assert!(replies.is_empty());
        assert_eq!(diffs["t"].joins.len(), 100);
        assert_eq!(a.all(), b.all());
        assert!(b.receive(a.heartbeat(), 0).0.is_empty(), "caught up");
    }

    #[test]
    fn large_states_transfer_in_parts() {
        let (mut a, mut b) = (Replica::new("a".into(), 1), Replica::new("b".into(), 1));
        let n = TRANSFER_PART * 2 + 10;
        for i in 0..n {
            a.track((1, i as u64), "t", &format!("k{i}"), Map::new(), format!("A{i}")).unwrap();
        }
        a.flush();
        let (request, _) = b.receive(a.heartbeat(), 0);
        let (parts, _) = a.receive(request[0].clone(), 0);
        assert_eq!(parts.len(), 3);
        // out of order, one duplicated: applied once, when whole
        let mut joined = 0;
        for part in [&parts[2], &parts[0], &parts[0], &parts[1]] {
            let (_, diffs) = b.receive(part.clone(), 0);
            joined += diffs.get("t").map_or(0, |d| d.joins.len());
        }
        assert_eq!(joined, n);
        assert_eq!(a.all(), b.all());
    }

    #[test]
    fn a_transfer_announcing_absurd_parts_is_ignored() {
        let mut b = Replica::new("b".into(), 1);
        for (part, parts) in [(0, u32::MAX), (5, 2)] {
            let entries = vec![Entry { topic: "t".into(), key: "k".into(), meta: Map::new() }];
            let transfer = Gossip::Transfer { replica: "a".into(), vsn: 1, clock: 1, part, parts, entries };
            let (_, diffs) = b.receive(transfer, 0);
            assert!(diffs.is_empty());
        }
        assert!(b.remotes["a"].incoming.is_none(), "nothing allocated for it");
    }

    #[test]
    fn a_node_restarted_under_its_name_replaces_its_previous_life() {
        let (mut old, mut b) = (Replica::new("a".into(), 1), Replica::new("b".into(), 1));
        old.track((1, 1), "t", "ghost", Map::new(), "G".into()).unwrap();
        let stale = old.flush().unwrap();
        b.receive(stale.clone(), 0);
        assert_eq!(b.list("t").len(), 1);
        // "a" crashes and comes back: its first heartbeat ends the old life
        let mut new = Replica::new("a".into(), 2);
        let (replies, diffs) = b.receive(new.heartbeat(), 10);
        assert_eq!(diffs["t"].leaves.len(), 1, "the ghost leaves at once");
        assert!(replies.is_empty(), "the new life has nothing yet");
        assert!(b.list("t").is_empty());
        // gossip of the old life still in flight is ignored
        assert!(b.receive(stale, 20).1.is_empty());
        new.track((2, 1), "t", "fresh", Map::new(), "F".into()).unwrap();
        b.receive(new.flush().unwrap(), 30);
        assert_eq!(b.list("t").keys().collect::<Vec<_>>(), vec!["fresh"]);
    }

    #[test]
    fn silent_nodes_are_declared_down_and_their_presences_leave() {
        let (mut a, mut b) = (Replica::new("a".into(), 1), Replica::new("b".into(), 1));
        a.track((1, 1), "t", "k", Map::new(), "A1".into()).unwrap();
        b.receive(a.flush().unwrap(), 1_000);
        assert!(b.reap(20_000, 30_000).is_empty());
        let diffs = b.reap(31_000, 30_000);
        assert_eq!(diffs["t"].leaves.len(), 1);
        assert!(b.list("t").is_empty());
    }

    /// One step of a random run.
    #[derive(Debug, Clone)]
    enum Op {
        Track { node: usize, channel: u64, topic: u8, key: u8 },
        Untrack { node: usize, channel: u64, topic: u8, key: u8 },
        Leave { node: usize, channel: u64 },
        Crash { node: usize },
        Restart { node: usize },
        Flush { node: usize },
        Heartbeat { node: usize },
        Deliver { message: usize, to: usize },
        Duplicate { message: usize },
        Drop { message: usize },
    }

    fn op(nodes: usize) -> impl Strategy<Value = Op> {
        let n = 0..nodes;
        prop_oneof![
            4 => (n.clone(), 0..3u64, 0..2u8, 0..3u8).prop_map(|(node, channel, topic, key)| Op::Track { node, channel, topic, key }),
            2 => (n.clone(), 0..3u64, 0..2u8, 0..3u8).prop_map(|(node, channel, topic, key)| Op::Untrack { node, channel, topic, key }),
            1 => (n.clone(), 0..3u64).prop_map(|(node, channel)| Op::Leave { node, channel }),
            1 => n.clone().prop_map(|node| Op::Crash { node }),
            1 => n.clone().prop_map(|node| Op::Restart { node }),
            3 => n.clone().prop_map(|node| Op::Flush { node }),
            2 => n.clone().prop_map(|node| Op::Heartbeat { node }),
            8 => (any::<usize>(), n.clone()).prop_map(|(message, to)| Op::Deliver { message, to }),
            1 => any::<usize>().prop_map(|message| Op::Duplicate { message }),
            1 => any::<usize>().prop_map(|message| Op::Drop { message }),
        ]
    }

    /// A network of replicas whose messages wait in a pool until a random
    /// step delivers (to one node), duplicates or drops them.
    struct Net {
        nodes: Vec<Replica>,
        alive: Vec<bool>,
        /// (message, nodes that still have to receive it)
        pool: Vec<(Gossip, Vec<usize>)>,
        now: u64,
        refs: u64,
    }

    impl Net {
        fn new(n: usize) -> Self {
            let nodes = (0..n).map(|i| Replica::new(format!("n{i}"), 1)).collect();
            Net { nodes, alive: vec![true; n], pool: Vec::new(), now: 0, refs: 0 }
        }

        fn gossip(&mut self, from: usize, g: Gossip) {
            let to = (0..self.nodes.len()).filter(|&i| i != from).collect();
            self.pool.push((g, to));
        }

        fn deliver(&mut self, index: usize, to: usize) {
            if self.pool.is_empty() {
                return;
            }
            let index = index % self.pool.len();
            let (g, targets) = &mut self.pool[index];
            let Some(pos) = targets.iter().position(|&t| t == to) else { return };
            targets.remove(pos);
            let g = g.clone();
            if self.pool[index].1.is_empty() {
                self.pool.remove(index);
            }
            if !self.alive[to] {
                return;
            }
            let (replies, _) = self.nodes[to].receive(g, self.now);
            for r in replies {
                self.gossip(to, r);
            }
        }

        fn apply(&mut self, op: Op) {
            self.now += 100;
            match op {
                Op::Track { node, channel, topic, key } if self.alive[node] => {
                    self.refs += 1;
                    let r = format!("ref{}", self.refs);
                    let _ =
                        self.nodes[node].track((channel, 0), &format!("t{topic}"), &format!("k{key}"), Map::new(), r);
                }
                Op::Untrack { node, channel, topic, key } if self.alive[node] => {
                    self.nodes[node].untrack((channel, 0), &format!("t{topic}"), &format!("k{key}"));
                }
                Op::Leave { node, channel } if self.alive[node] => {
                    self.nodes[node].untrack_owner((channel, 0));
                }
                Op::Flush { node } if self.alive[node] => {
                    if let Some(delta) = self.nodes[node].flush() {
                        self.gossip(node, delta);
                    }
                }
                // a crashed node comes back under its name, empty, as a new life
                Op::Restart { node } if !self.alive[node] => {
                    let vsn = self.nodes[node].vsn + 1;
                    self.nodes[node] = Replica::new(format!("n{node}"), vsn);
                    self.alive[node] = true;
                }
                // keep at least one node alive
                Op::Crash { node } if self.alive.iter().filter(|a| **a).count() > 1 => self.alive[node] = false,
                Op::Heartbeat { node } if self.alive[node] => {
                    let hb = self.nodes[node].heartbeat();
                    self.gossip(node, hb);
                }
                Op::Deliver { message, to } => self.deliver(message, to),
                Op::Duplicate { message } if !self.pool.is_empty() => {
                    let m = self.pool[message % self.pool.len()].clone();
                    self.pool.push(m);
                }
                Op::Drop { message } if !self.pool.is_empty() => {
                    let len = self.pool.len();
                    self.pool.remove(message % len);
                }
                _ => {}
            }
        }

        /// Lets the network heal: deliver everything, heartbeat, reap the
        /// dead, until nothing more moves.
        fn settle(&mut self) {
            let down_period = 10_000;
            for _round in 0..4 {
                for i in 0..self.nodes.len() {
                    if self.alive[i] {
                        if let Some(delta) = self.nodes[i].flush() {
                            self.gossip(i, delta);
                        }
                        let hb = self.nodes[i].heartbeat();
                        self.gossip(i, hb);
                    }
                }
                while let Some((g, targets)) = self.pool.pop() {
                    for to in targets {
                        if self.alive[to] {
                            let (replies, _) = self.nodes[to].receive(g.clone(), self.now);
                            for r in replies {
                                self.gossip(to, r);
                            }
                        }
                    }
                }
                self.now += down_period / 2 + 1;
                for i in 0..self.nodes.len() {
                    if self.alive[i] {
                        let now = self.now;
                        self.nodes[i].reap(now, down_period);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn replicas_converge(ops in proptest::collection::vec(op(3), 0..120)) {
            let mut net = Net::new(3);
            for op in ops {
                net.apply(op);
            }
            net.settle();
            // what the live nodes themselves track
            let mut truth = BTreeMap::new();
            for (i, node) in net.nodes.iter().enumerate() {
                if net.alive[i] {
                    for (_, e) in node.local.values() {
                        truth.insert(e.phx_ref().to_owned(), e.clone());
                    }
                }
            }
            for (i, node) in net.nodes.iter().enumerate() {
                if net.alive[i] {
                    prop_assert_eq!(&node.all(), &truth, "node {} diverged", i);
                }
            }
        }
    }
}
