//! # channels: Phoenix Channels for Rust
//!
//! A **socket** routes topics to **channels**; a channel answers `join` when
//! a client joins a topic and `handle_in` for every message after. It speaks
//! Phoenix's wire protocol exactly, so the official `phoenix` JavaScript
//! client (and every other Phoenix client) works unchanged.
//!
//! ```no_run
//! use channels::prelude::*;
//!
//! socket! {
//!     /// The socket browsers connect to at /socket.
//!     pub UserSocket {
//!         channel "comments:*" => CommentsChannel;
//!     }
//! }
//!
//! impl Connect for UserSocket {
//!     type Assigns = ();
//!     async fn connect(_params: &Params, _info: &ConnectInfo) -> Result<(), Refuse> {
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
//!     async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<UserSocket>) -> Join<Self> {
//!         Ok((json!({"hey": "there"}), CommentsChannel))
//!     }
//!
//!     #[handle_in("comment:add")]
//!     async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
//!         let comment = Comment { content: new.content, user_id: 0 };
//!         socket.broadcast("comment:new", &json!({ "comment": comment }))?;
//!         Ok(Reply::ok(json!({})))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     Endpoint::new().socket("/socket", UserSocket).serve("127.0.0.1:4000").await
//! }
//! ```

#![deny(missing_docs)]

pub use channels_macros::{channel, handle_in, handle_info, handle_out, socket, Encode};
pub use channels_runtime::channel::{Channel, ChannelGone, ChannelRef, Info, Join, Terminate};
pub use channels_runtime::connect::{Connect, ConnectInfo, Params, Refuse};
pub use channels_runtime::encode::{Encode, Encoded};
pub use channels_runtime::endpoint::Endpoint;
pub use channels_runtime::origin::CheckOrigin;
pub use channels_runtime::presence::{Presence, PresenceError, PresenceOptions};
pub use channels_runtime::protocol::Payload;
pub use channels_runtime::pubsub::{BroadcastError, PubSub};
pub use channels_runtime::reply::{IntoReply, Reply, Status};
pub use channels_runtime::router::Topic;
pub use channels_runtime::server::ServerOptions;
pub use channels_runtime::socket::{Socket, SocketRef, TimerRef};
pub use channels_runtime::token::{TokenError, Tokens};
pub use channels_runtime::{
    connect, encode, endpoint, origin, outbox, presence, protocol, pubsub, reply, router, server, testing, token,
};
pub use channels_runtime::{MetricsSnapshot, SocketOptions};

/// Everything a socket module needs, in one import.
pub mod prelude {
    pub use crate::{
        channel, handle_in, handle_info, handle_out, socket, BroadcastError, Channel, ChannelRef, Connect, ConnectInfo,
        Encode, Encoded, Endpoint, Info, Join, Params, Payload, Presence, PresenceError, PubSub, Refuse, Reply, Socket,
        SocketRef, Status, Terminate, Topic,
    };
    pub use serde_json::{json, Value};
}

#[doc(hidden)]
pub mod __private {
    pub use channels_runtime::__private::*;
}
