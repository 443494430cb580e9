//! `discuss`: topics with comments, pushed live over Phoenix channels.
//!
//! The contract it implements is `shared/conformance/CONTRACT.md`; any
//! Phoenix client (phoenix.js first) can use it unchanged.
//!
//! ```text
//! cargo run --release --example discuss              # http://127.0.0.1:4000
//! cargo run --release --example discuss -- --port 4100 --host 127.0.0.1
//! ```
//!
//! `GET /` is a demo page (`examples/web`) that uses the socket through the
//! official phoenix.js client from npm, which the example serves itself so the
//! page needs no outside network. When `examples/web/node_modules` is missing
//! at start, the example runs `npm ci` there once, in the background.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use channels::prelude::*;
use channels::SocketOptions;
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

#[derive(Deserialize)]
struct DisconnectQuery {
    id: String,
}

/// `POST /api/disconnect?id=SOCKET_ID`: closes every connection with that
/// socket id, from outside any channel.
async fn disconnect(State(endpoint): State<Endpoint>, Query(q): Query<DisconnectQuery>) -> StatusCode {
    match endpoint.broadcast(&q.id, "disconnect", &json!({})) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The demo page's files, found from the crate's directory (not the working
/// directory) so `cargo run --example discuss` works from anywhere.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("web")
}

/// phoenix.js as an ES module, as npm installs it (`examples/web/package.json`
/// pins the version); never copied into the repository.
fn phoenix_mjs() -> PathBuf {
    web_dir().join("node_modules/phoenix/priv/static/phoenix.mjs")
}

/// True while the `npm ci` started by [`install_phoenix_js`] runs, so `/`
/// can say "installing" rather than "run npm ci".
static NPM_RUNNING: AtomicBool = AtomicBool::new(false);

/// On a fresh checkout `examples/web/node_modules` does not exist yet: runs
/// `npm ci` there once, on a thread of its own so the socket serves at once
/// (the page works as soon as it is done). Without npm, or if it fails, the
/// example keeps serving and `/` says what to run.
fn install_phoenix_js() {
    if phoenix_mjs().is_file() {
        return;
    }
    let dir = web_dir();
    tracing::info!(dir = %dir.display(), "phoenix.js is not installed; running `npm ci --no-audit --no-fund` for the demo page");
    NPM_RUNNING.store(true, Ordering::SeqCst);
    std::thread::spawn(move || {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() && phoenix_mjs().is_file() => tracing::info!("npm ci done; the demo page is ready"),
            Ok(s) => tracing::warn!(%s, "npm ci failed; the demo page needs: npm ci --prefix examples/web"),
            Err(e) => tracing::warn!(error = %e, "cannot run npm; the demo page needs: npm ci --prefix examples/web"),
        }
        NPM_RUNNING.store(false, Ordering::SeqCst);
    });
}

/// A file of `examples/web`, read at request time (they are small, and an
/// edited page shows on reload without a rebuild).
fn web_file(path: &Path, content_type: &'static str) -> Response {
    match std::fs::read(path) {
        Ok(bytes) => {
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], bytes).into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, format!("{}: {e}\n", path.display())).into_response(),
    }
}

/// `GET /`: the demo page, or, while phoenix.js is not installed, a short
/// page saying so (the demo cannot work without it).
async fn index() -> Response {
    if phoenix_mjs().is_file() {
        return web_file(&web_dir().join("index.html"), "text/html; charset=utf-8");
    }
    let what = if NPM_RUNNING.load(Ordering::SeqCst) {
        "<p>Installing phoenix.js with <code>npm ci</code>&hellip; reload in a few seconds.</p>"
    } else {
        "<p>phoenix.js is not installed. Run <code>npm ci --prefix examples/web</code>, then reload.</p>"
    };
    let page = format!("<!doctype html><meta charset=utf-8><title>Discuss</title><h1>Discuss</h1>{what}");
    (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
}

/// The demo page and what it loads, beside the socket.
fn web_routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { web_file(&web_dir().join("app.js"), "text/javascript; charset=utf-8") }),
        )
        .route("/assets/style.css", get(|| async { web_file(&web_dir().join("style.css"), "text/css; charset=utf-8") }))
        .route("/assets/phoenix.mjs", get(|| async { web_file(&phoenix_mjs(), "text/javascript; charset=utf-8") }))
}

struct Args {
    host: String,
    port: u16,
}

fn args() -> Result<Args, String> {
    let mut host = "127.0.0.1".to_owned();
    let mut port = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| format!("PORT={p} is not a port number"))?,
        Err(_) => 4000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                let p = it.next().ok_or("--port needs a value")?;
                port = p.parse().map_err(|_| format!("--port {p} is not a port number"))?;
            }
            "--host" => host = it.next().ok_or("--host needs a value")?,
            other => return Err(format!("unknown argument {other}; usage: discuss [--host ADDR] [--port N]")),
        }
    }
    Ok(Args { host, port })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,channels_runtime=info".into()),
        )
        .init();
    let args = args().map_err(anyhow::Error::msg)?;

    let options = SocketOptions { longpoll: true, ..SocketOptions::default() };
    let endpoint = Endpoint::new().socket_with("/socket", UserSocket, options);
    let api = Router::new().route("/api/disconnect", post(disconnect)).with_state(endpoint.clone());
    install_phoenix_js();

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    println!("listening on http://{addr}");
    endpoint.merge(api.merge(web_routes())).serve_on(listener).await?;
    Ok(())
}
