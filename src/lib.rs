//! # phx-channels: Phoenix Channels for Rust
//!
//! A **socket** routes topics to **channels**; a channel answers `join` when
//! a client joins a topic and `handle_in` for every message after. It speaks
//! Phoenix's wire protocol exactly, so the official `phoenix` JavaScript
//! client (and every other Phoenix client) works unchanged.
//!
//! ```no_run
//! use phx_channels::prelude::*;
//!
//! socket! {
//!     /// The socket browsers connect to at /socket.
//!     pub UserSocket {
//!         channel "comments:*" => CommentsChannel;
//!     }
//! }
//!
//! /// The application's state, shared by every connection and channel.
//! #[derive(Default)]
//! pub struct App { comments: std::sync::Mutex<Vec<String>> }
//!
//! impl Connect for UserSocket {
//!     type State = App;
//!     type Assigns = ();
//!     async fn connect(_params: &Params, _info: &ConnectInfo, _app: &App) -> Result<(), Refuse> {
//!         Ok(())
//!     }
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct NewComment { content: String }
//!
//! #[derive(Encode)]
//! #[encode(only = [content])]
//! struct Comment { content: String, user_id: u64 }
//!
//! struct CommentsChannel;
//!
//! #[channel(socket = UserSocket)]
//! impl CommentsChannel {
//!     async fn join(topic: Topic, _params: Value, _socket: &mut Socket<UserSocket>) -> Join<Self> {
//!         let _id: u64 = topic.rest().parse()?; // `comments:abc` is refused
//!         Ok((json!({"hey": "there"}), CommentsChannel))
//!     }
//!
//!     #[handle_in("comment:add")]
//!     async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
//!         socket.state().comments.lock().unwrap().push(new.content.clone());
//!         let comment = Comment { content: new.content, user_id: 0 };
//!         socket.broadcast("comment:new", json!({ "comment": comment }))?;
//!         Ok(Reply::ok(json!({})))
//!     }
//!
//!     /// Binary payloads relay as easily: the bytes go out unchanged.
//!     #[handle_in("blob")]
//!     async fn blob(&mut self, blob: Payload, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
//!         socket.broadcast_from("blob", blob)?;
//!         Ok(Reply::none())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     Endpoint::with_state(App::default()).socket("/socket", UserSocket).serve("127.0.0.1:4000").await
//! }
//! ```

#![deny(missing_docs)]

pub use phx_channels_macros::{channel, handle_in, handle_info, handle_out, socket, Encode};
pub use phx_channels_runtime::changeset::Valid;
pub use phx_channels_runtime::channel::{Channel, ChannelGone, ChannelRef, Info, Join, JoinError, Terminate};
pub use phx_channels_runtime::connect::{Connect, ConnectInfo, Params, ParamsError, Refuse};
pub use phx_channels_runtime::crash::{BoxError, Crash};
pub use phx_channels_runtime::encode::Encode;
#[allow(deprecated)]
pub use phx_channels_runtime::encode::Encoded;
pub use phx_channels_runtime::endpoint::Endpoint;
pub use phx_channels_runtime::origin::CheckOrigin;
pub use phx_channels_runtime::presence::{Presence, PresenceError, PresenceOptions};
pub use phx_channels_runtime::protocol::{IntoPayload, Payload};
pub use phx_channels_runtime::pubsub::{BroadcastError, PubSub};
pub use phx_channels_runtime::reply::{IntoReply, Reply, Status, TypedReply};
pub use phx_channels_runtime::router::Topic;
pub use phx_channels_runtime::server::ServerOptions;
pub use phx_channels_runtime::socket::{AdmittedBroadcast, Socket, SocketRef, TimerRef};
pub use phx_channels_runtime::token::{TokenError, Tokens};
// Every module of the runtime, by the same name: a path in the runtime's
// documentation (`phx_channels::channel::Routes`) is a path here
// (tests/doc_paths.rs checks it).
/// Serving HTTPS and WSS directly: [`tls::Tls`], given to
/// [`Endpoint::tls`] (the `tls` feature, on by default; docs/tls.md).
#[cfg(feature = "tls")]
pub use phx_channels_runtime::tls;
pub use phx_channels_runtime::{
    changeset, channel, connect, crash, dashboard, describe, encode, endpoint, mailbox, origin, outbox, panics,
    presence, protocol, pubsub, reply, router, server, socket, testing, token, trace, transport, typescript,
};
pub use phx_channels_runtime::{MetricsSnapshot, SocketOptions};

/// A Phoenix client: [`client::Socket`], [`client::Channel`] and
/// [`client::Presence`] over WebSocket (the `client` feature).
#[cfg(feature = "client")]
pub use phx_channels_client as client;

/// Everything a socket module needs, in one import.
pub mod prelude {
    pub use crate::{
        channel, handle_in, handle_info, handle_out, socket, BroadcastError, Channel, ChannelRef, Connect, ConnectInfo,
        Crash, Encode, Endpoint, Info, Join, JoinError, Params, Payload, Presence, PresenceError, PubSub, Refuse,
        Reply, Socket, SocketRef, Status, Terminate, Topic, TypedReply, Valid,
    };
    pub use serde_json::{json, Value};
}

/// The examples of `docs/client.md`, compiled as doctests.
#[cfg(all(doctest, feature = "client"))]
#[doc = include_str!("../docs/client.md")]
struct ClientDocs;

/// The examples of `docs/tls.md`, compiled as doctests.
#[cfg(all(doctest, feature = "client", feature = "tls"))]
#[doc = include_str!("../docs/tls.md")]
struct TlsDocs;

/// The examples of `docs/dashboard.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/dashboard.md")]
struct DashboardDocs;

/// `docs/typescript.md`'s example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/typescript.md")]
struct TypeScriptDocs;

#[doc(hidden)]
pub mod __private {
    pub use phx_channels_runtime::__private::*;
}
