//! phoenix.js's `Presence`: who is in a channel, kept in sync from the
//! server's `presence_state` and `presence_diff` events.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use serde_json::{Map, Value};

use crate::channel::Channel;
use crate::events::{Event, Events, Filter, Lagged, RecvError};

/// The presences of a topic: key → `{"metas": [{"phx_ref": …, …}, …]}`
/// (plus whatever else the server's `fetch` adds), as the server sends them.
pub type PresenceState = BTreeMap<String, Value>;

/// A change [`Presence`] saw (phoenix.js's `onJoin`, `onLeave`, `onSync`).
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceChange {
    /// `key` joined, or one more of its metas did (another tab, another
    /// device).
    Join {
        /// The presence key.
        key: String,
        /// Its presence before, if it was there.
        current: Option<Value>,
        /// The presence that joined, with the new metas only.
        joined: Value,
    },
    /// Some of `key`'s metas left; when none is left, the key is gone.
    Leave {
        /// The presence key.
        key: String,
        /// Its presence after the leave (its remaining metas).
        current: Value,
        /// The presence that left, with the metas that left.
        left: Value,
    },
    /// A state or diff was applied: [`Presence::list`] is up to date.
    Sync,
}

/// A channel's presences, kept in sync like phoenix.js's `Presence`: the
/// `presence_state` replaces the state (diffs that arrive before it, or
/// before the state of a rejoin, wait for it), each `presence_diff` is
/// applied to it.
///
/// Read the changes as a stream (or with [`Presence::next`]); the state is
/// [`Presence::list`].
///
/// Its events are bounded as [`Channel::events`] are: a `Presence` not
/// read for a long time while its room churns drops its oldest events, and
/// says so with `Err(`[`Lagged`]`)` ([`RecvError::Lagged`] from
/// [`Presence::next`]). Its list may then miss joins and leaves until the
/// next `presence_state` (the server sends one with every join, so after a
/// reconnect or a rejoin).
///
/// ```no_run
/// # async fn demo(socket: phx_channels_client::Socket) -> Result<(), Box<dyn std::error::Error>> {
/// use phx_channels_client::{Presence, PresenceChange, RecvError};
/// use serde_json::{json, Value};
///
/// let (room, _): (_, Value) = socket.channel("room:lobby").join(json!({"name": "ann"})).await?;
/// let mut presence = Presence::new(&room);
/// loop {
///     match presence.next().await {
///         Ok(PresenceChange::Sync) => println!("online: {:?}", presence.list().keys().collect::<Vec<_>>()),
///         Ok(_) => {}
///         Err(RecvError::Lagged(n)) => eprintln!("{n} presence events missed: the list may be stale"),
///         Err(RecvError::Closed) => break,
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Presence {
    events: Events,
    state_event: String,
    state: PresenceState,
    /// The join whose state was received: diffs of a later join wait for
    /// that join's state.
    join_ref: Option<String>,
    pending: Vec<Map<String, Value>>,
    changes: VecDeque<PresenceChange>,
}

impl Presence {
    /// Follows `presence_state` and `presence_diff` on `channel`.
    pub fn new(channel: &Channel) -> Self {
        Self::with_events(channel, "presence_state", "presence_diff")
    }

    /// Follows other event names (phoenix.js's `events` option).
    pub fn with_events(channel: &Channel, state_event: &str, diff_event: &str) -> Self {
        let events = channel.subscribe(Filter::Only(vec![state_event.to_owned(), diff_event.to_owned()]));
        Presence {
            events,
            state_event: state_event.to_owned(),
            state: PresenceState::new(),
            join_ref: None,
            pending: Vec::new(),
            changes: VecDeque::new(),
        }
    }

    /// The presences now, by key.
    pub fn list(&self) -> &PresenceState {
        &self.state
    }

    /// The next change; [`RecvError::Lagged`] if events were dropped
    /// before it, [`RecvError::Closed`] once the channel is closed.
    pub async fn next(&mut self) -> Result<PresenceChange, RecvError> {
        match futures_util::StreamExt::next(self).await {
            Some(change) => Ok(change?),
            None => Err(RecvError::Closed),
        }
    }

    fn apply(&mut self, event: Event) {
        let body = match event.payload.decode::<Map<String, Value>>() {
            Ok(body) => body,
            Err(error) => return tracing::warn!(event = %event.event, %error, "skipping a presence event"),
        };
        let mut changes = Vec::new();
        if event.event == self.state_event {
            self.join_ref = event.join_ref;
            sync_state(&mut self.state, body, &mut changes);
            for diff in std::mem::take(&mut self.pending) {
                sync_diff(&mut self.state, &diff, &mut changes);
            }
        } else if self.join_ref.is_none() || self.join_ref != event.join_ref {
            self.pending.push(body);
            return;
        } else {
            sync_diff(&mut self.state, &body, &mut changes);
        }
        self.changes.extend(changes);
        self.changes.push_back(PresenceChange::Sync);
    }
}

impl Stream for Presence {
    type Item = Result<PresenceChange, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(change) = self.changes.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            match Pin::new(&mut self.events).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => self.apply(event),
                Poll::Ready(Some(Err(lagged))) => {
                    tracing::warn!(dropped = lagged.0, "presence events dropped: read too slowly");
                    return Poll::Ready(Some(Err(lagged)));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The metas of a presence (none if the server sent something else).
fn metas(presence: &Value) -> &[Value] {
    presence.get("metas").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn refs(presence: &Value) -> Vec<&Value> {
    metas(presence).iter().filter_map(|m| m.get("phx_ref")).collect()
}

/// `presence` with `metas` in place of its own.
fn with_metas(presence: &Value, metas: Vec<Value>) -> Value {
    let mut presence = presence.clone();
    match presence.as_object_mut() {
        Some(object) => {
            object.insert("metas".to_owned(), Value::Array(metas));
        }
        None => presence = serde_json::json!({ "metas": metas }),
    }
    presence
}

/// phoenix.js's `Presence.syncState`: the difference between `state` and
/// `new_state` is applied as one diff, so joins and leaves are reported.
pub fn sync_state(state: &mut PresenceState, new_state: Map<String, Value>, changes: &mut Vec<PresenceChange>) {
    let mut joins = Map::new();
    let mut leaves = Map::new();
    for (key, presence) in state.iter() {
        if !new_state.contains_key(key) {
            leaves.insert(key.clone(), presence.clone());
        }
    }
    for (key, new_presence) in new_state {
        let Some(current) = state.get(&key) else {
            joins.insert(key, new_presence);
            continue;
        };
        let (new_refs, current_refs) = (refs(&new_presence), refs(current));
        let has_ref = |refs: &[&Value], m: &Value| m.get("phx_ref").is_some_and(|r| refs.contains(&r));
        let joined: Vec<Value> = metas(&new_presence).iter().filter(|m| !has_ref(&current_refs, m)).cloned().collect();
        let left: Vec<Value> = metas(current).iter().filter(|m| !has_ref(&new_refs, m)).cloned().collect();
        if !joined.is_empty() {
            joins.insert(key.clone(), with_metas(&new_presence, joined));
        }
        if !left.is_empty() {
            leaves.insert(key, with_metas(current, left));
        }
    }
    let diff =
        Map::from_iter([("joins".to_owned(), Value::Object(joins)), ("leaves".to_owned(), Value::Object(leaves))]);
    sync_diff(state, &diff, changes);
}

/// phoenix.js's `Presence.syncDiff`: `{"joins": {…}, "leaves": {…}}`
/// applied to `state`.
pub fn sync_diff(state: &mut PresenceState, diff: &Map<String, Value>, changes: &mut Vec<PresenceChange>) {
    let empty = Map::new();
    let part = |name: &str| diff.get(name).and_then(Value::as_object).unwrap_or(&empty);
    for (key, new_presence) in part("joins") {
        let current = state.get(key).cloned();
        let mut presence = new_presence.clone();
        if let Some(current) = &current {
            let joined_refs = refs(&presence);
            let kept: Vec<Value> = metas(current)
                .iter()
                .filter(|m| m.get("phx_ref").is_none_or(|r| !joined_refs.contains(&r)))
                .cloned()
                .collect();
            let all = kept.into_iter().chain(metas(&presence).iter().cloned()).collect();
            presence = with_metas(&presence, all);
        }
        state.insert(key.clone(), presence);
        changes.push(PresenceChange::Join { key: key.clone(), current, joined: new_presence.clone() });
    }
    for (key, left) in part("leaves") {
        let Some(current) = state.get_mut(key) else { continue };
        let gone = refs(left);
        let remaining: Vec<Value> =
            metas(current).iter().filter(|m| m.get("phx_ref").is_none_or(|r| !gone.contains(&r))).cloned().collect();
        let now_empty = remaining.is_empty();
        *current = with_metas(current, remaining);
        changes.push(PresenceChange::Leave { key: key.clone(), current: current.clone(), left: left.clone() });
        if now_empty {
            state.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn state(v: Value) -> PresenceState {
        map(v).into_iter().collect()
    }

    /// The cases of phoenix.js's own presence tests.
    #[test]
    fn sync_state_reports_joins_and_leaves() {
        let mut s = state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}));
        let new =
            map(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}, "u2": {"metas": [{"id": 2, "phx_ref": "2"}]}}));
        let mut changes = Vec::new();
        sync_state(&mut s, new, &mut changes);
        assert_eq!(
            changes,
            [PresenceChange::Join {
                key: "u2".into(),
                current: None,
                joined: json!({"metas": [{"id": 2, "phx_ref": "2"}]})
            }]
        );
        let mut changes = Vec::new();
        sync_state(&mut s, map(json!({"u2": {"metas": [{"id": 2, "phx_ref": "2"}]}})), &mut changes);
        assert_eq!(
            changes,
            [PresenceChange::Leave {
                key: "u1".into(),
                current: json!({"metas": []}),
                left: json!({"metas": [{"id": 1, "phx_ref": "1"}]})
            }]
        );
        assert_eq!(s, state(json!({"u2": {"metas": [{"id": 2, "phx_ref": "2"}]}})));
    }

    #[test]
    fn sync_state_diffs_metas_of_a_key_present_on_both_sides() {
        let mut s = state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.b"}]}}));
        let new = map(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.c"}]}}));
        let mut changes = Vec::new();
        sync_state(&mut s, new, &mut changes);
        assert_eq!(changes.len(), 2);
        assert!(
            matches!(&changes[0], PresenceChange::Join { joined, .. } if joined["metas"] == json!([{"id": 1, "phx_ref": "1.c"}]))
        );
        assert!(
            matches!(&changes[1], PresenceChange::Leave { left, .. } if left["metas"] == json!([{"id": 1, "phx_ref": "1.b"}]))
        );
        assert_eq!(s["u1"]["metas"], json!([{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.c"}]));
    }

    #[test]
    fn sync_diff_adds_metas_before_the_new_ones_and_removes_empty_keys() {
        let mut s = state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}));
        let diff = map(json!({"joins": {"u1": {"metas": [{"id": 1, "phx_ref": "1.2"}]}}, "leaves": {}}));
        sync_diff(&mut s, &diff, &mut Vec::new());
        assert_eq!(s["u1"]["metas"], json!([{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]));
        let diff = map(
            json!({"joins": {}, "leaves": {"u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]}, "nobody": {"metas": []}}}),
        );
        let mut changes = Vec::new();
        sync_diff(&mut s, &diff, &mut changes);
        assert!(s.is_empty());
        assert_eq!(changes.len(), 1, "a leave of a key not present is no change");
    }

    #[test]
    fn malformed_presences_do_not_panic() {
        let mut s = PresenceState::new();
        let diff = map(
            json!({"joins": {"a": 5, "b": {"metas": "x"}, "c": {"metas": [7]}}, "leaves": {"a": {"metas": [{"phx_ref": 1}]}, "b": 3}}),
        );
        sync_diff(&mut s, &diff, &mut Vec::new());
        sync_state(&mut s, map(json!({"a": null, "c": {"metas": [{"phx_ref": []}]}})), &mut Vec::new());
        sync_diff(&mut s, &map(json!({"joins": [], "leaves": null})), &mut Vec::new());
    }
}
