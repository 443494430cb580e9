//! Positions on topics with history: what a channel that recovers keeps of
//! the server's positions, so that each rejoin asks for what it missed and
//! nothing reaches the application twice.
//!
//! The wire contract is in the server's `docs/recovery.md`: the join
//! params carry `phx_position` (the last position seen, or `null`); the
//! join reply is followed by a `phx_recovery` event whose `ref` is where
//! the channel stands; every broadcast after it carries its position in
//! `ref`, and a binary one (whose frame has no `ref`) is followed by a
//! `phx_position` event carrying it.

use serde::Deserialize;

use crate::events::Event;
use phx_channels_protocol::{Message, Payload, Position, PHX_POSITION, PHX_RECOVERY, POSITION_PARAM};

/// What the server said of a rejoin on a topic with history: the payload
/// of its `phx_recovery` event (`chan.on("phx_recovery")`), decoded.
///
/// ```
/// use phx_channels_client::Recovery;
///
/// let json = r#"{"recovered": false, "position": "k3Xb9q:42", "missed": 0, "reason": "expired"}"#;
/// let recovery: Recovery = serde_json::from_str(json).unwrap();
/// assert!(!recovery.recovered);
/// assert_eq!(recovery.reason.as_deref(), Some("expired"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Recovery {
    /// Whether everything missed since the position sent follows (in
    /// order, before anything live). `false`: the application should
    /// reload its state.
    pub recovered: bool,
    /// Where the channel stands once the event is read (`None` on a topic
    /// without history).
    pub position: Option<String>,
    /// How many broadcasts follow.
    #[serde(default)]
    pub missed: usize,
    /// Why not recovered: `none` (no position was sent), `invalid`,
    /// `epoch`, `expired`, `future`, `unavailable`, `off` (no history),
    /// `declined`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A recovering channel's position, and the binary broadcast whose
/// position has not arrived yet.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub(crate) position: Option<Position>,
    /// A binary broadcast waits for the `phx_position` event after it: given
    /// to the application only then, so a connection lost in between
    /// leaves it to the rejoin to send again.
    held: Option<Event>,
}

impl Tracker {
    /// Starts from `position` (or from now, when `None`).
    pub(crate) fn new(position: Option<Position>) -> Self {
        Tracker { position, held: None }
    }

    /// The join params with `phx_position` added (params that are not a
    /// JSON object are sent as they are).
    pub(crate) fn params(&self, params: &Payload) -> Payload {
        let Payload::Json(raw) = params else { return params.clone() };
        let Ok(mut map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get()) else {
            return params.clone();
        };
        let position = self.position.as_ref().map(ToString::to_string);
        map.insert(POSITION_PARAM.to_owned(), position.into());
        Payload::json(&map).unwrap_or_else(|_| params.clone())
    }

    /// The connection or the join was lost: a held binary broadcast is
    /// forgotten (the rejoin sends it again).
    pub(crate) fn interrupted(&mut self) {
        self.held = None;
    }

    /// An event of the channel, as the server sent it: what to give the
    /// application (it, a binary broadcast held before it, or nothing: a
    /// duplicate, a binary broadcast waiting for its position, plumbing).
    pub(crate) fn track(&mut self, message: &Message, event: Event) -> Vec<Event> {
        let position = message.msg_ref.as_deref().filter(|r| Position::looks_like(r)).and_then(|r| self.parse(r));
        let mut out = Vec::new();
        if message.event == PHX_RECOVERY {
            self.held = None;
            // Where the channel stands, whatever it stood at before.
            self.position = position;
            out.push(event);
            return out;
        }
        if message.event == PHX_POSITION {
            if let Some(held) = self.held.take() {
                self.advance(position, held, &mut out);
            }
            return out;
        }
        if let Some(held) = self.held.take() {
            // No position came for it: given as it is.
            tracing::debug!(event = %held.event, "a binary broadcast without its position");
            out.push(held);
        }
        let binary_broadcast = message.join_ref.is_none() && matches!(message.payload, Payload::Binary(_));
        if binary_broadcast && position.is_none() && self.position.is_some() {
            self.held = Some(event);
            return out;
        }
        self.advance(position, event, &mut out);
        out
    }

    /// A position, sharing the current epoch when it is the same (every
    /// broadcast carries one: no allocation for each).
    fn parse(&self, text: &str) -> Option<Position> {
        if let (Some(current), Some((epoch, offset))) = (&self.position, text.rsplit_once(':')) {
            if epoch == current.epoch() && !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit()) {
                return offset.parse().ok().map(|offset| current.at(offset));
            }
        }
        text.parse().ok()
    }

    fn advance(&mut self, position: Option<Position>, mut event: Event, out: &mut Vec<Event>) {
        if let Some(position) = position {
            if let Some(current) = &self.position {
                if current.epoch() == position.epoch() && position.offset() <= current.offset() {
                    // Sent twice (a rejoin racing its own connection): once is enough.
                    return;
                }
            }
            self.position = Some(position.clone());
            event.position = Some(position);
        }
        out.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(event: &str, join_ref: Option<&str>, msg_ref: Option<&str>, payload: Payload) -> Message {
        Message {
            join_ref: join_ref.map(str::to_owned),
            msg_ref: msg_ref.map(str::to_owned),
            topic: "t".into(),
            event: event.into(),
            payload,
        }
    }

    fn run(tracker: &mut Tracker, m: Message) -> Option<(String, Option<u64>)> {
        let event = Event { event: m.event.clone(), payload: m.payload.clone(), join_ref: None, position: None };
        let mut out = tracker.track(&m, event);
        assert!(out.len() <= 1, "{out:?}");
        out.pop().map(|e| (e.event, e.position.map(|p| p.offset())))
    }

    #[test]
    fn positions_advance_duplicates_drop_and_binary_waits_for_its_position() {
        let mut t = Tracker::new(None);
        assert_eq!(t.params(&Payload::from(json!({"a": 1}))).as_json(), Some(r#"{"a":1,"phx_position":null}"#));
        let json = || Payload::from(json!({}));
        assert_eq!(
            run(&mut t, message(PHX_RECOVERY, Some("1"), Some("e:4"), json())),
            Some((PHX_RECOVERY.into(), None))
        );
        assert_eq!(t.position.as_ref().map(Position::offset), Some(4));
        assert_eq!(run(&mut t, message("new", None, Some("e:5"), json())), Some(("new".into(), Some(5))));
        assert_eq!(run(&mut t, message("new", None, Some("e:5"), json())), None, "a duplicate");
        // a push of the channel, and a reply-like ref: no position
        assert_eq!(run(&mut t, message("notice", Some("1"), None, json())), Some(("notice".into(), None)));
        // binary: held until its position
        let bytes = || Payload::from(vec![1u8]);
        assert_eq!(run(&mut t, message("blob", None, None, bytes())), None);
        assert_eq!(run(&mut t, message(PHX_POSITION, None, Some("e:6"), json())), Some(("blob".into(), Some(6))));
        // lost between the two: forgotten, sent again by the rejoin
        assert_eq!(run(&mut t, message("blob", None, None, bytes())), None);
        t.interrupted();
        assert_eq!(run(&mut t, message(PHX_POSITION, None, Some("e:7"), json())), None);
        assert_eq!(t.params(&json()).as_json(), Some(r#"{"phx_position":"e:6"}"#));
        // a new epoch, told by phx_recovery, starts over
        run(&mut t, message(PHX_RECOVERY, Some("2"), Some("f:0"), json()));
        assert_eq!(run(&mut t, message("new", None, Some("f:1"), json())), Some(("new".into(), Some(1))));
    }
}
