//! The `discuss` app: its socket, channels and model, as a module the
//! server (`main.rs`) mounts and the channel tests
//! (`tests/discuss_channels.rs`) drive with `channels::testing`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use channels::prelude::*;
use serde::{Deserialize, Deserializer};

socket! {
    /// The socket clients connect to at `/socket`.
    pub UserSocket {
        channel "comments:*" => CommentsChannel;
        channel "room:*"     => RoomChannel;
    }
}

/// What a connection carries: who it is, if it said.
#[derive(Clone, Debug)]
pub struct User {
    id: Option<String>,
}

impl Connect for UserSocket {
    type Assigns = User;

    async fn connect(params: &Params, _info: &ConnectInfo) -> Result<User, Refuse> {
        if params.get("token") == Some("invalid") {
            return Err(Refuse::forbidden().reason("invalid token"));
        }
        Ok(User { id: params.get("user_id").map(str::to_owned) })
    }

    fn id(user: &User) -> Option<String> {
        user.id.as_ref().map(|id| format!("users_socket:{id}"))
    }
}

/// A comment as stored. Only `content` ever leaves the server, like
/// `@derive {Jason.Encoder, only: [:content]}` on a Phoenix schema.
#[derive(Clone, Debug, Encode)]
#[encode(only = [content])]
pub struct Comment {
    content: String,
    user_id: Option<String>,
    inserted_at: SystemTime,
}

/// Comments of every topic, oldest first, kept in memory.
static COMMENTS: LazyLock<Mutex<HashMap<String, Vec<Comment>>>> = LazyLock::new(Default::default);

fn comments_of(topic_id: &str) -> Vec<Comment> {
    COMMENTS.lock().unwrap_or_else(|e| e.into_inner()).get(topic_id).cloned().unwrap_or_default()
}

fn store(topic_id: &str, comment: Comment) {
    COMMENTS.lock().unwrap_or_else(|e| e.into_inner()).entry(topic_id.to_owned()).or_default().push(comment);
}

/// `comments:N`, N all digits (any length: it is an id, not a number).
pub struct CommentsChannel {
    topic_id: String,
}

/// The `comment:add` payload. `content` that is missing, null or not a
/// string reads as `None`, so the handler answers with a validation error
/// rather than a decoding one.
#[derive(Deserialize)]
pub struct NewComment {
    #[serde(default, deserialize_with = "string_or_none")]
    content: Option<String>,
}

fn string_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

#[channel(socket = UserSocket)]
impl CommentsChannel {
    async fn join(topic: Topic, _params: Value, _socket: &mut Socket<UserSocket>) -> Join<Self> {
        let id = topic.rest();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(json!({"reason": "invalid topic"}));
        }
        let comments = comments_of(id);
        Ok((json!({"hey": "there", "comments": comments}), CommentsChannel { topic_id: id.to_owned() }))
    }

    #[handle_in("comment:add")]
    async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
        let Some(content) = new.content.filter(|c| !c.trim().is_empty()) else {
            return Ok(Reply::error(json!({"errors": {"content": ["can't be blank"]}})));
        };
        let comment = Comment { content, user_id: socket.assigns().id.clone(), inserted_at: SystemTime::now() };
        tracing::info!(topic = self.topic_id, user = ?comment.user_id, at = ?comment.inserted_at, "comment added");
        store(&self.topic_id, comment.clone());
        socket.broadcast(&format!("comments:{}:new", self.topic_id), &json!({"comment": comment}))?;
        Ok(Reply::ok(json!({})))
    }

    /// Echoes any payload, unchanged.
    #[handle_in("ping")]
    async fn ping(&mut self, payload: Payload) -> Reply {
        Reply::payload(Status::Ok, payload)
    }

    /// Dies on purpose: the client gets `phx_error` for this topic alone.
    #[handle_in("crash")]
    async fn crash(&mut self, _payload: Payload) -> Reply {
        panic!("crash requested by the client on comments:{}", self.topic_id)
    }
}

/// `room:NAME`: who is here, and shouting.
pub struct RoomChannel {
    name: String,
}

/// Sent by a room to itself from `join`, so presence work runs right after
/// the join reply (Phoenix's `send(self(), :after_join)`).
struct AfterJoin;

fn unix_seconds() -> String {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default().to_string()
}

#[derive(Deserialize)]
pub struct RoomParams {
    #[serde(default, deserialize_with = "string_or_none")]
    name: Option<String>,
}

#[derive(Deserialize)]
pub struct Shout {
    #[serde(default)]
    body: Value,
}

#[channel(socket = UserSocket)]
impl RoomChannel {
    async fn join(_topic: Topic, params: RoomParams, socket: &mut Socket<UserSocket>) -> Join<Self> {
        let Some(name) = params.name else {
            return Err(json!({"reason": "name required"}));
        };
        // The channel is running as long as this is; the send cannot fail.
        let _ = socket.channel_ref().send(AfterJoin);
        Ok((json!({}), RoomChannel { name }))
    }

    /// Tracks this user (everyone gets a `presence_diff`), then pushes the
    /// whole `presence_state` to this client.
    #[handle_info]
    async fn after_join(&mut self, _: AfterJoin, socket: &mut Socket<UserSocket>) -> Result<(), PresenceError> {
        Presence::track(socket, &self.name, json!({"online_at": unix_seconds()}))?;
        let state = Presence::list(socket);
        // Only a payload that is not JSON can fail to push; this one is.
        let _ = socket.push("presence_state", &state);
        Ok(())
    }

    #[handle_in("shout")]
    async fn shout(&mut self, shout: Shout, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
        socket.broadcast("shout", &json!({"from": self.name, "body": shout.body}))?;
        Ok(Reply::ok(json!({})))
    }
}
