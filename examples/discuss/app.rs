//! The `discuss` app: its socket, channels and model, as a module the
//! server (`main.rs`) mounts and the channel tests
//! (`tests/discuss_channels.rs`) drive with `phx_channels::testing`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use phx_channels::changeset::Messages;
use phx_channels::describe::{PresenceDiff, PresenceState};
use phx_channels::prelude::*;
use serde::Deserialize;
use ts_rs::TS;
use validator::Validate;

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
    type State = App;
    type Assigns = User;

    async fn connect(params: &Params, _info: &ConnectInfo, _app: &App) -> Result<User, Refuse> {
        if params.get("token") == Some("invalid") {
            return Err(Refuse::forbidden().reason("invalid token"));
        }
        Ok(User { id: params.get("user_id").map(str::to_owned) })
    }

    fn id(user: &User, _app: &App) -> Option<String> {
        user.id.as_ref().map(|id| format!("users_socket:{id}"))
    }
}

/// The application's state: given once to the endpoint, reachable from
/// every channel (`socket.state()`) and from the HTTP routes
/// (`State<Arc<App>>`).
pub struct App {
    comments: Comments,
    /// The endpoint's PubSub, for the HTTP routes to broadcast on.
    pub pubsub: PubSub,
    /// The token `POST /api/disconnect` must carry (`Authorization: Bearer ..`);
    /// without one the route is closed.
    admin_token: Option<String>,
}

impl App {
    /// An app with no comments yet, broadcasting on `pubsub`.
    pub fn new(pubsub: PubSub, admin_token: Option<String>) -> Self {
        App { comments: Comments::default(), pubsub, admin_token }
    }
}

/// Whether an admin route may run for a request with this `Authorization`
/// header value.
#[derive(Debug, PartialEq, Eq)]
pub enum Admin {
    /// The bearer token is the admin token.
    Allowed,
    /// No admin token is configured: admin routes are closed.
    Closed,
    /// A missing or wrong token.
    Refused,
}

impl App {
    /// Checks an `Authorization` header value against the admin token.
    pub fn admin(&self, authorization: Option<&str>) -> Admin {
        let Some(expected) = self.admin_token.as_deref() else { return Admin::Closed };
        match authorization.and_then(bearer_token) {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Admin::Allowed,
            _ => Admin::Refused,
        }
    }
}

/// The token of a `Bearer` credential (RFC 6750): the scheme is matched
/// without regard to case (RFC 7235 §2.1: `bearer`, `BEARER`), and is
/// followed by one or more spaces.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Comments a topic keeps (the oldest go first): what a join replays, so
/// a 40-byte join can never make a reply of every comment ever written.
pub const KEPT_PER_TOPIC: usize = 50;
/// Topics kept at once; a new one past it replaces the one written to least
/// recently.
pub const KEPT_TOPICS: usize = 10_000;

/// Comments of every topic, newest last, bounded in both directions.
#[derive(Default)]
struct Comments {
    topics: Mutex<Topics>,
}

#[derive(Default)]
struct Topics {
    by_topic: HashMap<String, (u64, VecDeque<Comment>)>,
    /// Bumped on every write: a topic's last-write stamp, to evict.
    clock: u64,
}

impl Comments {
    fn of(&self, topic_id: &str) -> Vec<Comment> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.by_topic.get(topic_id).map(|(_, c)| c.iter().cloned().collect()).unwrap_or_default()
    }

    fn add(&self, topic_id: &str, comment: Comment) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.clock += 1;
        let now = topics.clock;
        if !topics.by_topic.contains_key(topic_id) && topics.by_topic.len() >= KEPT_TOPICS {
            // O(topics), only when a new topic arrives at the cap.
            if let Some(oldest) = topics.by_topic.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) {
                topics.by_topic.remove(&oldest);
            }
        }
        let (at, comments) = topics.by_topic.entry(topic_id.to_owned()).or_default();
        *at = now;
        if comments.len() == KEPT_PER_TOPIC {
            comments.pop_front();
        }
        comments.push_back(comment);
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

/// `comments:N`, N all digits (any length: it is an id, not a number).
pub struct CommentsChannel {
    topic_id: String,
}

/// The response of a `comments:N` join: the topic's kept comments, oldest
/// first. (Fields in the order `json!` would sort them, as before.)
#[derive(Encode)]
pub struct CommentsJoined {
    comments: Vec<Comment>,
    hey: &'static str,
}

/// The `ok` response of `comment:add`: `{}`.
#[derive(Encode)]
pub struct Added {}

/// What `comments:N:new` broadcasts on `comments:N`.
#[derive(Encode)]
pub struct NewCommentEvent {
    comment: Comment,
}

/// The `comment:add` payload, checked like an Ecto changeset's
/// `cast(params, [:content]) |> validate_required([:content])`: a payload
/// that fails is answered `{"errors": {"content": ["can't be blank"]}}`
/// and the handler does not run.
#[derive(Deserialize, Validate, TS)]
pub struct NewComment {
    /// At most 10 000 characters: what is kept and broadcast stays well
    /// under `SocketOptions::max_broadcast_bytes`.
    #[validate(custom(function = "phx_channels::changeset::not_blank"), length(max = 10_000))]
    content: String,
}

/// The contract answers "can't be blank" for a `content` that is missing,
/// null or not a string alike (Ecto would say "is invalid" for the last).
pub struct BlankIfUnreadable;

impl Messages for BlankIfUnreadable {
    fn invalid(_field: &str) -> String {
        "can't be blank".to_owned()
    }
}

#[channel(socket = UserSocket, out = ["comments:*:new" => NewCommentEvent])]
impl CommentsChannel {
    async fn join(topic: Topic, _params: Value, socket: &mut Socket<UserSocket>) -> Join<Self, CommentsJoined> {
        let id = topic.rest();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(JoinError::reason("invalid topic"));
        }
        let comments = socket.state().comments.of(id);
        Ok((CommentsJoined { comments, hey: "there" }, CommentsChannel { topic_id: id.to_owned() }))
    }

    #[handle_in("comment:add")]
    async fn add(
        &mut self,
        new: Valid<NewComment, BlankIfUnreadable>,
        socket: &mut Socket<UserSocket>,
    ) -> Result<TypedReply<Added>, BroadcastError> {
        let content = new.into_inner().content;
        let comment = Comment { content, user_id: socket.assigns().id.clone(), inserted_at: SystemTime::now() };
        tracing::info!(topic = self.topic_id, user = ?comment.user_id, at = ?comment.inserted_at, "comment added");
        // Kept before it is broadcast: whoever hears of it and joins sees it.
        socket.state().comments.add(&self.topic_id, comment.clone());
        socket.broadcast(&format!("comments:{}:new", self.topic_id), &NewCommentEvent { comment })?;
        Ok(TypedReply::ok(Added {}))
    }

    /// Echoes any payload, JSON or binary, unchanged.
    #[handle_in("ping")]
    async fn ping(&mut self, payload: Payload) -> TypedReply<Payload> {
        TypedReply::ok(payload)
    }

    /// Dies on purpose: the client gets `phx_error` for this topic alone.
    #[handle_in("crash")]
    async fn crash(&mut self, _payload: Payload) {
        panic!("crash requested by the client on comments:{}", self.topic_id)
    }
}

/// The longest member name a room accepts, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// `room:NAME`: who is here, and shouting.
pub struct RoomChannel {
    name: String,
}

fn unix_seconds() -> String {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default().to_string()
}

/// The `shout` payload: `{"body": b}`, any JSON (`null` when missing).
#[derive(Deserialize, TS)]
pub struct Shout {
    #[serde(default)]
    #[ts(optional, as = "Option<Value>")]
    body: Value,
}

/// What `shout` broadcasts. (Fields in the order `json!` would sort them.)
#[derive(Encode)]
pub struct ShoutEvent {
    body: Value,
    from: String,
}

/// The `room:NAME` join params, `{"name": U}`. Read from any JSON, so a
/// join without a name string is refused with `{"reason": "name
/// required"}`, not as params that do not decode.
#[derive(Deserialize, TS)]
#[serde(from = "Value")]
pub struct RoomParams {
    #[ts(type = "string")]
    name: Option<String>,
}

impl From<Value> for RoomParams {
    fn from(params: Value) -> Self {
        RoomParams { name: params.get("name").and_then(Value::as_str).map(str::to_owned) }
    }
}

/// A member's presence meta: since when they are here (Unix seconds, as a
/// string, as the Phoenix app sends it).
#[derive(Encode)]
pub struct Online {
    online_at: String,
}

#[channel(
    socket = UserSocket,
    out = ["shout" => ShoutEvent, "presence_state" => PresenceState<Online>, "presence_diff" => PresenceDiff<Online>],
)]
impl RoomChannel {
    /// Joins with `{"name": U}`; anything else is Phoenix's plain refusal.
    async fn join(_topic: Topic, params: RoomParams, socket: &mut Socket<UserSocket>) -> Join<Self> {
        let Some(name) = params.name else {
            return Err(JoinError::reason("name required"));
        };
        // The name is the presence key every member receives: keep it far
        // under `SocketOptions::max_presence_meta_bytes`.
        if name.len() > MAX_NAME_BYTES {
            return Err(JoinError::reason("name too long"));
        }
        // Right after the join reply: tracked (everyone gets a
        // `presence_diff`), then the whole `presence_state` pushed here.
        Presence::track_after_join(socket, &name, Online { online_at: unix_seconds() })?;
        Ok((json!({}), RoomChannel { name }))
    }

    #[handle_in("shout")]
    async fn shout(
        &mut self,
        shout: Shout,
        socket: &mut Socket<UserSocket>,
    ) -> Result<TypedReply<Added>, BroadcastError> {
        socket.broadcast("shout", &ShoutEvent { body: shout.body, from: self.name.clone() })?;
        Ok(TypedReply::ok(Added {}))
    }
}
