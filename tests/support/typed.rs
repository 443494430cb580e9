//! Typed channels shared by `tests/typescript.rs` (what they render to) and
//! `tests/wire_types.rs` (what they send, checked against that): Encode's
//! wire names, ts-rs's serde renames, `Option`, `Vec`, nested types, enums,
//! untyped handlers, typed replies and errors, declared pushes, presence,
//! a hand-written channel.
//!
//! Included with `#[path]` by the test files that need it.

#![allow(dead_code)]

use std::collections::HashMap;

use phx_channels::describe::{PresenceDiff, PresenceState};
use phx_channels::prelude::*;
use phx_channels::{IntoReply, TypedReply};
use serde::Deserialize;
use ts_rs::TS;

socket! {
    pub Typed {
        channel "notes:*" => Notes;
        channel "lobby" => Lobby<u8>;
        channel "lobby:*" => Lobby<String>;
        channel "raw:*" => Raw;
    }
}

impl Connect for Typed {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

/// Encoded under its wire names: camelCase, a rename, a field left out
/// when `None`, one left out always.
#[derive(Encode)]
#[encode(rename_all = "camelCase", except = [secret])]
pub struct Note {
    note_id: u64,
    #[encode(rename = "by")]
    author_name: String,
    #[encode(skip_none)]
    edited_at: Option<String>,
    parent_id: Option<u64>,
    tags: Vec<String>,
    replies: Vec<Reply2>,
    votes: HashMap<String, Vote>,
    secret: String,
}

/// Nested in `Note`, with a name only TypeScript needs quoted.
#[derive(Encode)]
#[encode(rename_all = "kebab-case")]
pub struct Reply2 {
    reply_text: &'static str,
}

/// An enum from ts-rs, serde's tagging respected.
#[derive(serde::Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Vote {
    Up,
    Down { reason: Option<String> },
}

/// A payload from ts-rs, serde renames respected.
#[derive(Deserialize, TS, validator::Validate)]
#[serde(rename_all = "camelCase")]
pub struct NewNote {
    body_text: String,
    #[serde(rename = "vote")]
    first_vote: Option<Vote>,
}

/// A payload that says nothing of TypeScript: `unknown`, still compiles.
#[derive(Deserialize)]
pub struct Opaque {
    _x: u8,
}

/// Checked, but without TypeScript: the payload is `unknown`, its
/// rejection still `ValidationErrors`.
#[derive(Deserialize, validator::Validate)]
pub struct Unruly {
    #[validate(length(min = 1))]
    _x: String,
}

/// A typed error reply.
#[derive(Encode)]
pub struct Full {
    limit: u32,
}

#[derive(Encode)]
pub struct NoteJoined {
    notes: Vec<Note>,
}

#[derive(Deserialize, TS)]
pub struct NotesParams {
    since: Option<u64>,
}

pub struct Notes;

/// A note with every kind of field set (`edited` decides the optional one).
pub fn note(id: u64, edited: bool) -> Note {
    Note {
        note_id: id,
        author_name: "ada".into(),
        edited_at: edited.then(|| "yesterday".into()),
        parent_id: (id > 1).then_some(1),
        tags: vec!["a".into()],
        replies: vec![Reply2 { reply_text: "hi" }],
        votes: HashMap::from([("ada".into(), Vote::Up), ("bob".into(), Vote::Down { reason: None })]),
        secret: "s3cret".into(),
    }
}

#[channel(socket = Typed, out = ["notes:*:new" => Note, "cleared" => Value])]
impl Notes {
    async fn join(_topic: Topic, _params: NotesParams) -> Join<Self, NoteJoined> {
        Ok((NoteJoined { notes: vec![note(1, true), note(2, false)] }, Notes))
    }

    /// `"full"` is refused with `Full`; anything else is added and
    /// broadcast on `<topic>:new`.
    #[handle_in("add")]
    async fn add(
        &mut self,
        new: Valid<NewNote>,
        socket: &mut Socket<Typed>,
    ) -> Result<TypedReply<Note, Full>, BroadcastError> {
        if new.into_inner().body_text == "full" {
            return Ok(TypedReply::error(Full { limit: 3 }));
        }
        socket.broadcast(&format!("{}:new", socket.topic()), note(3, false))?;
        Ok(TypedReply::ok(note(3, true)))
    }

    #[handle_in("plain")]
    async fn plain(&mut self, _new: NewNote) -> TypedReply<Reply2> {
        TypedReply::ok(Reply2 { reply_text: "ok" })
    }

    #[handle_in("opaque")]
    async fn opaque(&mut self, _payload: Opaque) -> Reply {
        Reply::none()
    }

    #[handle_in("unruly")]
    async fn unruly(&mut self, _payload: Valid<Unruly>) {}

    /// Pushes `cleared`, replies nothing.
    #[handle_in("silent")]
    #[handle_in("quiet")]
    fn silent(&mut self, _payload: Value, socket: &mut Socket<Typed>) -> Result<(), BroadcastError> {
        socket.push("cleared", json!({"by": "ada"}))
    }

    #[handle_in("raw")]
    async fn raw(&mut self, payload: Payload) -> impl IntoReply {
        Reply::ok(payload)
    }
}

pub struct Lobby<T>(T);

#[channel(socket = Typed)]
impl<T: Default + Send + 'static> Lobby<T> {
    fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Lobby(T::default())))
    }

    #[handle_in("hello")]
    fn hello(&self, _payload: Value) -> Reply {
        Reply::ok(json!({}))
    }
}

/// A channel implemented by hand says nothing: any event, untyped.
pub struct Raw;

impl Channel for Raw {
    type Socket = Typed;

    async fn join(_topic: Topic, _payload: Payload, _socket: &mut Socket<Typed>) -> Result<(Payload, Self), JoinError> {
        Ok((Payload::from(json!({})), Raw))
    }

    async fn handle_in(
        &mut self,
        _event: &str,
        _payload: Payload,
        _socket: &mut Socket<Typed>,
    ) -> Result<Reply, Crash> {
        Ok(Reply::none())
    }
}

socket! {
    pub Clean {
        channel "room:*" => Room;
    }
}

impl Connect for Clean {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

/// A presence meta.
#[derive(Encode)]
pub struct Online {
    online_at: String,
}

pub struct Room;

/// Sent by a room to itself from `join`: track, then push the state.
struct AfterJoin;

#[channel(socket = Clean, out = [
    "presence_state" => PresenceState<Online>,
    "presence_diff" => PresenceDiff<Online>,
    "note" => Note,
    "any" => Value,
])]
impl Room {
    async fn join(_topic: Topic, _params: NotesParams, socket: &mut Socket<Clean>) -> Join<Self, NoteJoined> {
        let _ = socket.channel_ref().send(AfterJoin);
        Ok((NoteJoined { notes: vec![note(7, false)] }, Room))
    }

    #[handle_info]
    fn after_join(&mut self, _: AfterJoin, socket: &mut Socket<Clean>) -> Result<(), PresenceError> {
        let key = socket.topic().rest().to_owned();
        Presence::track(socket, &key, Online { online_at: "1795618976".into() })?;
        let _ = socket.push("presence_state", Presence::list(socket));
        Ok(())
    }

    /// `"full"` is refused with `Full`; anything else pushes `note` and
    /// `any` and is answered with the note.
    #[handle_in("add")]
    async fn add(
        &mut self,
        new: Valid<NewNote>,
        socket: &mut Socket<Clean>,
    ) -> Result<TypedReply<Note, Full>, BroadcastError> {
        if new.into_inner().body_text == "full" {
            return Ok(TypedReply::error(Full { limit: 3 }));
        }
        socket.push("note", note(8, true))?;
        socket.push("any", json!([1, "two", null]))?;
        Ok(TypedReply::ok(note(8, false)))
    }

    #[handle_in("echo")]
    async fn echo(&mut self, payload: Payload) -> TypedReply<Payload> {
        TypedReply::ok(payload)
    }

    #[handle_in("bye")]
    fn bye(&mut self, _payload: Value) {}
}
