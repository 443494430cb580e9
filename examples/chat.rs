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
//! ```

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::post;
use axum::Router;
use channels::prelude::*;
use channels::Tokens;
use serde::Deserialize;

socket! {
    /// Clients connect with `?token=<signed token>`.
    pub ChatSocket {
        channel "chat:*" => ChatRoom;
    }
}

/// Tokens for this socket; in a real app the secret comes from config.
fn tokens() -> &'static Tokens {
    static TOKENS: std::sync::OnceLock<Tokens> = std::sync::OnceLock::new();
    TOKENS.get_or_init(|| Tokens::new(b"chat example secret, 32+ bytes long!", "chat socket"))
}

/// Who is connected.
#[derive(Clone, Debug)]
pub struct Member {
    name: String,
}

impl Connect for ChatSocket {
    type Assigns = Member;

    async fn connect(params: &Params, _info: &ConnectInfo) -> Result<Member, Refuse> {
        let token = params.get("token").ok_or_else(|| Refuse::forbidden().reason("no token"))?;
        let name = tokens()
            .verify::<String>(token, Duration::from_secs(24 * 3600))
            .map_err(|e| Refuse::forbidden().reason(e.to_string()))?;
        Ok(Member { name })
    }

    fn id(member: &Member) -> Option<String> {
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

struct AfterJoin;

#[channel(socket = ChatSocket, intercept = ["message"])]
impl ChatRoom {
    fn join(_topic: Topic, _params: Value, socket: &mut Socket<ChatSocket>) -> Join<Self> {
        let _ = socket.channel_ref().send(AfterJoin);
        Ok((json!({"you": socket.assigns().name}), ChatRoom { muted: HashSet::new() }))
    }

    #[handle_info]
    fn after_join(&mut self, _: AfterJoin, socket: &mut Socket<ChatSocket>) -> Result<(), PresenceError> {
        let name = socket.assigns().name.clone();
        Presence::track(socket, &name, json!({"status": "here"}))?;
        let _ = socket.push("presence_state", &Presence::list(socket));
        Ok(())
    }

    /// Broadcasts a message; every member's `handle_out` sees it.
    #[handle_in("say")]
    fn say(&mut self, say: Say, socket: &mut Socket<ChatSocket>) -> Result<Reply, BroadcastError> {
        socket.broadcast("message", &json!({"from": socket.assigns().name, "text": say.text}))?;
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
        socket.push("message", &json!({"from": from, "text": message["text"], "mine": mine}))
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
        socket.push("reminder", &json!({"text": due.0}))
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
async fn issue_token(Query(q): Query<TokenQuery>) -> Result<String, axum::http::StatusCode> {
    tokens().sign(&q.user).map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// `POST /api/kick?user=NAME`: closes every connection of that member.
async fn kick(State(endpoint): State<Endpoint>, Query(q): Query<TokenQuery>) -> axum::http::StatusCode {
    match endpoint.broadcast(&format!("member:{}", q.user), "disconnect", &json!({})) {
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
    let endpoint = Endpoint::new().socket("/socket", ChatSocket);
    let api = Router::new()
        .route("/api/token", post(issue_token))
        .route("/api/kick", post(kick))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    endpoint.merge(api).serve_on(listener).await?;
    Ok(())
}
