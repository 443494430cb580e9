//! The presence CRDT: one node's replica, as a pure state machine.
//!
//! Every node owns the entries it tracked and is their only writer. Its
//! state is versioned by a clock that grows with every change, so a node's
//! view of another node is simply "that node's entries at the newest clock
//! heard of", and merging two views keeps the newer one: a state-based CRDT
//! whose merge is a max by clock. Replication follows Phoenix.Tracker:
//!
//! - a change is gossiped at once as a **delta** from clock *n* to *n + 1*;
//! - every node gossips a **heartbeat** with its clock at a fixed interval;
//! - a receiver that finds a gap (a delta that does not start at the clock
//!   it knows, or a heartbeat ahead of it) asks for a **transfer** of the
//!   owner's whole state, which replaces its view of that node;
//! - a node not heard from for the down period is declared down and its
//!   entries leave everywhere.
//!
//! Messages may be lost, duplicated, delayed and reordered; views converge
//! once they flow again (see the property test below).
//!
//! Nothing here does I/O: callers feed messages and the current time in,
//! and get back messages to gossip and the presence diffs to broadcast.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A node, named at random when it starts.
pub(crate) type ReplicaId = String;

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
    Delta { replica: ReplicaId, from: u64, to: u64, joins: Vec<Entry>, leaves: Vec<String> },
    /// `replica` is alive at `clock`.
    Heartbeat { replica: ReplicaId, clock: u64 },
    /// `from` asks `replica` for its whole state.
    TransferRequest { replica: ReplicaId, from: ReplicaId },
    /// The whole state of `replica` at `clock`.
    Transfer { replica: ReplicaId, clock: u64, entries: Vec<Entry> },
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
    clock: u64,
    entries: HashMap<String, Entry>,
    last_heard: u64,
}

/// One node's replica.
#[derive(Debug)]
pub(crate) struct Replica {
    me: ReplicaId,
    clock: u64,
    local: HashMap<String, (Owner, Entry)>,
    remotes: HashMap<ReplicaId, Remote>,
}

/// The result of a local change: what to gossip and what to broadcast.
pub(crate) struct Change {
    pub(crate) gossip: Gossip,
    pub(crate) diffs: Diffs,
}

impl Replica {
    pub(crate) fn new(me: ReplicaId) -> Self {
        Replica { me, clock: 0, local: HashMap::new(), remotes: HashMap::new() }
    }

    fn find_local(&self, owner: Owner, topic: &str, key: &str) -> Option<String> {
        self.local.iter().find(|(_, (o, e))| *o == owner && e.topic == topic && e.key == key).map(|(r, _)| r.clone())
    }

    fn change(&mut self, joins: Vec<Entry>, leaves: Vec<Entry>) -> Change {
        let from = self.clock;
        self.clock += 1;
        let mut diffs = Diffs::new();
        for e in &joins {
            add_join(&mut diffs, e);
        }
        for e in &leaves {
            add_leave(&mut diffs, e);
        }
        let leaves = leaves.iter().map(|e| e.phx_ref().to_owned()).collect();
        Change { gossip: Gossip::Delta { replica: self.me.clone(), from, to: self.clock, joins, leaves }, diffs }
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

    /// This node's heartbeat.
    pub(crate) fn heartbeat(&self) -> Gossip {
        Gossip::Heartbeat { replica: self.me.clone(), clock: self.clock }
    }

    /// Applies gossip from another node. Returns gossip to send back (a
    /// transfer request or a transfer) and the diffs to broadcast locally.
    pub(crate) fn receive(&mut self, gossip: Gossip, now: u64) -> (Vec<Gossip>, Diffs) {
        let mut diffs = Diffs::new();
        let mut replies = Vec::new();
        match gossip {
            Gossip::Delta { replica, .. } | Gossip::Heartbeat { replica, .. } | Gossip::Transfer { replica, .. }
                if replica == self.me => {}
            Gossip::Delta { replica, from, to, joins, leaves } => {
                let remote = self.remotes.entry(replica.clone()).or_default();
                remote.last_heard = now;
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
                    replies.push(Gossip::TransferRequest { replica, from: self.me.clone() });
                }
            }
            Gossip::Heartbeat { replica, clock } => {
                let remote = self.remotes.entry(replica.clone()).or_default();
                remote.last_heard = now;
                if clock > remote.clock {
                    replies.push(Gossip::TransferRequest { replica, from: self.me.clone() });
                }
            }
            Gossip::TransferRequest { replica, .. } => {
                if replica == self.me {
                    replies.push(self.transfer());
                }
            }
            Gossip::Transfer { replica, clock, entries } => {
                let remote = self.remotes.entry(replica).or_default();
                remote.last_heard = now;
                if clock > remote.clock {
                    let new: HashMap<String, Entry> =
                        entries.into_iter().map(|e| (e.phx_ref().to_owned(), e)).collect();
                    for (r, e) in &remote.entries {
                        if !new.contains_key(r) {
                            add_leave(&mut diffs, e);
                        }
                    }
                    for (r, e) in &new {
                        if !remote.entries.contains_key(r) {
                            add_join(&mut diffs, e);
                        }
                    }
                    remote.entries = new;
                    remote.clock = clock;
                }
            }
        }
        (replies, diffs)
    }

    fn transfer(&self) -> Gossip {
        let entries = self.local.values().map(|(_, e)| e.clone()).collect();
        Gossip::Transfer { replica: self.me.clone(), clock: self.clock, entries }
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
        let mut r = Replica::new("a".into());
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
        let (mut a, mut b) = (Replica::new("a".into()), Replica::new("b".into()));
        let c1 = a.track((1, 1), "t", "k1", Map::new(), "A1".into()).unwrap();
        let c2 = a.track((1, 1), "t", "k2", Map::new(), "A2".into()).unwrap();
        // b misses the first delta: it asks for a transfer
        let (replies, diffs) = b.receive(c2.gossip, 0);
        assert!(diffs.is_empty());
        assert_eq!(replies, vec![Gossip::TransferRequest { replica: "a".into(), from: "b".into() }]);
        let (transfer, _) = a.receive(replies[0].clone(), 0);
        let (_, diffs) = b.receive(transfer[0].clone(), 0);
        assert_eq!(diffs["t"].joins.len(), 2);
        // the late first delta is ignored
        let (_, diffs) = b.receive(c1.gossip, 0);
        assert!(diffs.is_empty());
        assert_eq!(a.all(), b.all());
    }

    #[test]
    fn silent_nodes_are_declared_down_and_their_presences_leave() {
        let (mut a, mut b) = (Replica::new("a".into()), Replica::new("b".into()));
        let c = a.track((1, 1), "t", "k", Map::new(), "A1".into()).unwrap();
        b.receive(c.gossip, 1_000);
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
            let nodes = (0..n).map(|i| Replica::new(format!("n{i}"))).collect();
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
                    if let Ok(c) =
                        self.nodes[node].track((channel, 0), &format!("t{topic}"), &format!("k{key}"), Map::new(), r)
                    {
                        self.gossip(node, c.gossip);
                    }
                }
                Op::Untrack { node, channel, topic, key } if self.alive[node] => {
                    if let Some(c) = self.nodes[node].untrack((channel, 0), &format!("t{topic}"), &format!("k{key}")) {
                        self.gossip(node, c.gossip);
                    }
                }
                Op::Leave { node, channel } if self.alive[node] => {
                    if let Some(c) = self.nodes[node].untrack_owner((channel, 0)) {
                        self.gossip(node, c.gossip);
                    }
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
