//! `chat`: the rest of the Channel API in one small app.
//!
//! - sign-in with a signed token (`Tokens`), checked in `connect`;
//! - `intercept` + `handle_out`: each client sees its own messages marked
//!   `"mine": true`, and never sees messages from people it muted;
//! - asynchronous replies: `translate` answers later, from another task;
//! - `handle_info` with timers: `remind` pushes a reminder after a delay;
//! - Presence with `update` (status changes) and `terminate` logging why a
//!   channel ended.
//!
//! ```text
//! cargo run --release --example chat -- --port 4100
//! curl -X POST 'http://127.0.0.1:4100/api/token?user=ada'     # a token for ada
//! curl 'http://127.0.0.1:4100/api/rooms'                      # messages said per room
//! ```
//!
//! Its state ([`Chat`]: the token signer, the rooms' counters, the PubSub)
//! is given once to the endpoint and read by `connect`, the channels and
//! the HTTP routes alike.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use phx_channels::prelude::*;
use phx_channels::Tokens;
use serde::Deserialize;

socket! {
    /// Clients connect with `?token=<signed token>`.
    pub ChatSocket {
        channel "chat:*" => ChatRoom;
    }
}

/// The chat application's state.
pub struct Chat {
    /// Signs and checks the sign-in tokens.
    tokens: Tokens,
    /// Messages said in each room since the server started.
    rooms: Mutex<BTreeMap<String, u64>>,
    /// The endpoint's PubSub, for the HTTP routes.
    pubsub: PubSub,
}

impl Chat {
    /// `secret` signs the tokens: in a real app it comes from config
    /// (`CHAT_SECRET` here).
    pub fn new(secret: &[u8], pubsub: PubSub) -> Self {
        Chat { tokens: Tokens::new(secret, "chat socket"), rooms: Mutex::default(), pubsub }
    }
}

/// Who is connected.
#[derive(Clone, Debug)]
pub struct Member {
    name: String,
}

impl Connect for ChatSocket {
    type State = Chat;
    type Assigns = Member;

    async fn connect(params: &Params, _info: &ConnectInfo, chat: &Chat) -> Result<Member, Refuse> {
        let token = params.get("token").ok_or_else(|| Refuse::forbidden().reason("no token"))?;
        let name = chat
            .tokens
            .verify::<String>(token, Duration::from_secs(24 * 3600))
            .map_err(|e| Refuse::forbidden().reason(e.to_string()))?;
        Ok(Member { name })
    }

    fn id(member: &Member, _chat: &Chat) -> Option<String> {
        Some(format!("member:{}", member.name))
    }
}

/// One chat room.
pub struct ChatRoom {
    muted: HashSet<String>,
}

#[derive(Deserialize)]
pub struct Say {
    text: String,
}

#[derive(Deserialize)]
pub struct Mute {
    name: String,
}

#[derive(Deserialize)]
pub struct Remind {
    text: String,
    after_ms: u64,
}

#[derive(Deserialize)]
pub struct Status {
    status: String,
}

/// A reminder coming due, sent by a timer to the channel itself.
struct Due(String);

#[channel(socket = ChatSocket, intercept = ["message"])]
impl ChatRoom {
    fn join(_topic: Topic, _params: Value, socket: &mut Socket<ChatSocket>) -> Join<Self> {
        // Tracked right after the join reply, then `presence_state` pushed.
        let name = socket.assigns().name.clone();
        Presence::track_after_join(socket, &name, json!({"status": "here"}))?;
        Ok((json!({"you": name}), ChatRoom { muted: HashSet::new() }))
    }

    /// Broadcasts a message; every member's `handle_out` sees it.
    #[handle_in("say")]
    fn say(&mut self, say: Say, socket: &mut Socket<ChatSocket>) -> Result<Reply, BroadcastError> {
        socket.broadcast("message", json!({"from": socket.assigns().name, "text": say.text}))?;
        let mut rooms = socket.state().rooms.lock().unwrap_or_else(|e| e.into_inner());
        *rooms.entry(socket.topic().rest().to_owned()).or_default() += 1;
        Ok(Reply::ok(json!({})))
    }

    /// Messages from `name` are no longer pushed to this client.
    #[handle_in("mute")]
    fn mute(&mut self, mute: Mute) -> Reply {
        self.muted.insert(mute.name);
        Reply::ok(json!({"muted": self.muted.len()}))
    }

    /// Runs per subscriber: filter muted senders, mark one's own messages.
    #[handle_out("message")]
    fn message(&mut self, message: Value, socket: &mut Socket<ChatSocket>) -> Result<(), BroadcastError> {
        let from = message["from"].as_str().unwrap_or_default();
        if self.muted.contains(from) {
            return Ok(());
        }
        let mine = from == socket.assigns().name;
        socket.push("message", json!({"from": from, "text": message["text"], "mine": mine}))
    }

    /// Answers later, from another task: the reply is built off the
    /// channel, which meanwhile handles other messages.
    #[handle_in("translate")]
    fn translate(&mut self, say: Say, socket: &mut Socket<ChatSocket>) -> Reply {
        let Some(reply_to) = socket.socket_ref() else { return Reply::error(json!({"reason": "no ref"})) };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let shouted: String = say.text.to_uppercase();
            reply_to.reply(Reply::ok(json!({"text": shouted})));
        });
        Reply::none()
    }

    /// Pushes `reminder` after `after_ms`, through `handle_info`.
    #[handle_in("remind")]
    fn remind(&mut self, remind: Remind, socket: &mut Socket<ChatSocket>) -> Reply {
        socket.send_after(Duration::from_millis(remind.after_ms.min(60_000)), Due(remind.text));
        Reply::ok(json!({}))
    }

    #[handle_info]
    fn due(&mut self, due: Due, socket: &mut Socket<ChatSocket>) -> Result<(), BroadcastError> {
        socket.push("reminder", json!({"text": due.0}))
    }

    /// Changes this member's presence meta: others get one diff with the
    /// new meta joining (`phx_ref_prev` set) and the old one leaving.
    #[handle_in("status")]
    fn status(&mut self, status: Status, socket: &mut Socket<ChatSocket>) -> Result<Reply, PresenceError> {
        let name = socket.assigns().name.clone();
        Presence::update(socket, &name, json!({"status": status.status}))?;
        Ok(Reply::ok(json!({})))
    }

    fn terminate(&mut self, reason: &Terminate, socket: &mut Socket<ChatSocket>) {
        tracing::info!(member = socket.assigns().name, ?reason, "left the room");
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    user: String,
}

/// `POST /api/token?user=NAME`: a signed token for that name. A real app
/// would do this after a login, of course.
async fn issue_token(
    State(chat): State<Arc<Chat>>,
    Query(q): Query<TokenQuery>,
) -> Result<String, axum::http::StatusCode> {
    chat.tokens.sign(&q.user).map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// `GET /api/rooms`: how many messages each room has seen.
async fn rooms(State(chat): State<Arc<Chat>>) -> Json<BTreeMap<String, u64>> {
    Json(chat.rooms.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

/// `POST /api/kick?user=NAME`: closes every connection of that member.
async fn kick(State(chat): State<Arc<Chat>>, Query(q): Query<TokenQuery>) -> axum::http::StatusCode {
    match chat.pubsub.broadcast(&format!("member:{}", q.user), "disconnect", json!({})) {
        Ok(()) => axum::http::StatusCode::NO_CONTENT,
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(4100);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(p)) => port = p.parse()?,
            _ => anyhow::bail!("usage: chat [--port N]"),
        }
    }
    let secret = std::env::var("CHAT_SECRET").unwrap_or_else(|_| "chat example secret, 32+ bytes long!".to_owned());
    let pubsub = PubSub::local();
    let endpoint = Endpoint::with_state(Chat::new(secret.as_bytes(), pubsub.clone()))
        .with_pubsub(pubsub)
        .socket("/socket", ChatSocket)
        .merge(
            Router::new()
                .route("/api/token", post(issue_token))
                .route("/api/rooms", get(rooms))
                .route("/api/kick", post(kick)),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    endpoint.serve_on(listener).await?;
    Ok(())
}
