//! The `discuss` app: its socket, channels and model, as a module the
//! server (`main.rs`) mounts and the channel tests
//! (`tests/discuss_channels.rs`, `tests/discuss_db.rs`) drive.

use std::time::{SystemTime, UNIX_EPOCH};

use phx_channels::changeset::Messages;
use phx_channels::describe::{PresenceDiff, PresenceState};
use phx_channels::prelude::*;
use serde::Deserialize;
use sqlx::types::time::{OffsetDateTime, PrimitiveDateTime};
use ts_rs::TS;
use validator::{Validate, ValidationError};

// Beside this file however it is reached (`main.rs`, or a test's `#[path]`).
#[path = "store.rs"]
pub mod store;

use store::{Store, Unavailable};

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
    /// Where the comments are kept.
    pub comments: Store,
    /// The endpoint's PubSub, for the HTTP routes to broadcast on.
    pub pubsub: PubSub,
    /// The token `POST /api/disconnect` must carry (`Authorization: Bearer ..`);
    /// without one the route is closed.
    admin_token: Option<String>,
}

impl App {
    /// An app keeping its comments in `comments`, broadcasting on `pubsub`.
    pub fn new(comments: Store, pubsub: PubSub, admin_token: Option<String>) -> Self {
        App { comments, pubsub, admin_token }
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

/// Comments a join replays: the topic's newest, so a 40-byte join can
/// never make a reply of every comment ever written. Older ones are a
/// `comments:before` away.
pub const REPLAYED: u32 = 50;
/// The most comments one `comments:before` answers: as many as a join
/// replays, so a reply is at most 2 MB (50 comments of 40 000 bytes), far
/// under `SocketOptions::max_outbound_bytes`.
pub const MAX_PAGE: u32 = 50;

/// A comment, as the `comments` table keeps it (the seed's `schema
/// "comments"`: `belongs_to :user`, `belongs_to :topic`, `timestamps()`).
/// Only `content` ever leaves the server, like `@derive {Jason.Encoder,
/// only: [:content]}` on the Phoenix schema: the ids and timestamps are
/// the server's.
#[derive(Clone, Debug, sqlx::FromRow, Encode)]
#[encode(only = [content])]
pub struct Comment {
    id: i64,
    content: String,
    user_id: Option<String>,
    topic_id: String,
    inserted_at: PrimitiveDateTime,
    updated_at: PrimitiveDateTime,
}

impl Comment {
    /// A comment not stored yet (the database gives its id), stamped now
    /// in UTC to the second, as Ecto's `timestamps()` does.
    pub fn new(content: String, user_id: Option<String>, topic_id: String) -> Self {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| OffsetDateTime::now_utc());
        let now = PrimitiveDateTime::new(now.date(), now.time());
        Comment { id: 0, content, user_id, topic_id, inserted_at: now, updated_at: now }
    }
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

/// The error response of a handler whose database failed:
/// `{"reason": "storage unavailable"}` (the cause is in the server's log).
#[derive(Encode)]
pub struct StorageError {
    reason: &'static str,
}

impl From<Unavailable> for StorageError {
    fn from(_: Unavailable) -> Self {
        StorageError { reason: "storage unavailable" }
    }
}

/// The `comments:before` payload: `{"before": cursor, "limit": n}`, both
/// optional.
#[derive(Deserialize, Validate, TS)]
pub struct PageParams {
    /// The `next` of the page before; without it (or `null`), the newest
    /// comments.
    #[serde(default)]
    #[ts(optional = nullable)]
    #[validate(custom(function = "cursor"))]
    before: Option<String>,
    /// How many comments, 1 to 50 (`MAX_PAGE`, the default).
    #[serde(default)]
    #[ts(optional)]
    #[validate(range(min = 1, max = MAX_PAGE))]
    limit: Option<u32>,
}

/// A cursor is the id of the oldest comment of the page that gave it; to
/// the client, an opaque string.
fn cursor(before: &str) -> Result<(), ValidationError> {
    match before.parse::<i64>() {
        Ok(id) if id > 0 && !before.starts_with('+') => Ok(()),
        _ => Err(ValidationError::new("cursor").with_message("is invalid".into())),
    }
}

/// The reply of `comments:before`: up to `limit` comments older than the
/// cursor, oldest first, and the cursor of the page before it (`null` when
/// there is none, at the oldest comment kept).
#[derive(Encode)]
pub struct CommentsPage {
    comments: Vec<Comment>,
    next: Option<String>,
}

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

// `comments:*` keeps its last 100 broadcasts for 5 minutes: a client that
// rejoins with the last position it saw (`phx_position`, docs/recovery.md)
// is sent the comments it missed; one that never asks sees what it always did.
#[channel(socket = UserSocket, out = ["comments:*:new" => NewCommentEvent], history(size = 100, age = "5m"))]
impl CommentsChannel {
    async fn join(topic: Topic, _params: Value, socket: &mut Socket<UserSocket>) -> Join<Self, CommentsJoined> {
        let id = topic.rest();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(JoinError::reason("invalid topic"));
        }
        // A rejoin that recovers keeps the list it had and gets what it
        // missed right after the reply: reading the latest again would only
        // load the database, and most in a reconnect storm, when a node's
        // clients all come back at once (issue 27's failover).
        let comments = if socket.recovery().is_some_and(|r| r.is_recovered()) {
            Vec::new()
        } else {
            // The cause is logged by the store; the client reads the reason.
            let Ok(comments) = socket.state().comments.latest(id, REPLAYED).await else {
                return Err(JoinError::reason("storage unavailable"));
            };
            comments
        };
        Ok((CommentsJoined { comments, hey: "there" }, CommentsChannel { topic_id: id.to_owned() }))
    }

    #[handle_in("comment:add")]
    async fn add(
        &mut self,
        new: Valid<NewComment, BlankIfUnreadable>,
        socket: &mut Socket<UserSocket>,
    ) -> Result<TypedReply<Added, StorageError>, BroadcastError> {
        let comment = Comment::new(new.into_inner().content, socket.assigns().id.clone(), self.topic_id.clone());
        // Kept only when its broadcast goes out, and broadcast only once
        // kept (whoever hears of it and joins then sees it): the fan-out
        // limits first (a refusal stores nothing), then the row, then
        // the broadcast.
        let event = NewCommentEvent { comment };
        let broadcast = socket.admit_broadcast(&format!("comments:{}:new", self.topic_id), &event)?;
        let comments = &socket.state().comments;
        let comment = match comments.insert(event.comment).await {
            Ok(comment) => comment,
            Err(unavailable) => return Ok(TypedReply::error(unavailable.into())),
        };
        if let Err(refused) = broadcast.send() {
            // The broker to other nodes refused it: nobody got it, so it is
            // not kept either. (Should the delete fail too, it is logged;
            // the old comments its insert pruned stay pruned.)
            let _ = comments.delete(comment.id).await;
            return Err(refused);
        }
        tracing::info!(topic = self.topic_id, id = comment.id, user = ?comment.user_id, at = %comment.inserted_at, "comment added");
        Ok(TypedReply::ok(Added {}))
    }

    /// A page of older comments: `{"before": cursor, "limit": n}` (both
    /// optional) answers `{"comments": [..], "next": cursor | null}`, the
    /// comments oldest first. Without `before`, the newest `limit`: the
    /// first page is what a join replays, and its `next` goes on from there.
    #[handle_in("comments:before")]
    async fn before(
        &mut self,
        page: Valid<PageParams>,
        socket: &mut Socket<UserSocket>,
    ) -> TypedReply<CommentsPage, StorageError> {
        let PageParams { before, limit } = page.into_inner();
        let limit = limit.unwrap_or(MAX_PAGE);
        let comments = &socket.state().comments;
        // Validated: a positive integer.
        let found = match before.and_then(|b| b.parse::<i64>().ok()) {
            Some(before) => comments.before(&self.topic_id, before, limit + 1).await,
            None => comments.latest(&self.topic_id, limit + 1).await,
        };
        let mut comments = match found {
            Ok(comments) => comments,
            Err(unavailable) => return TypedReply::error(unavailable.into()),
        };
        // One more than asked for says whether there is a page before.
        let next = if comments.len() > limit as usize {
            comments.remove(0);
            comments.first().map(|oldest| oldest.id.to_string())
        } else {
            None
        };
        TypedReply::ok(CommentsPage { comments, next })
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
