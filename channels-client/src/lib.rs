//! A Phoenix client, for Rust services, CLIs, bots and tests that talk to
//! Phoenix servers: this project's, or Elixir ones. It depends on the
//! protocol crate, tokio and a WebSocket client only: no server.
//!
//! It does what phoenix.js does, on the [`protocol`] crate's serializers
//! (the same implementation the `phx-channels` server uses):
//!
//! - [`Socket`]: the endpoint URL, connect params, the auth token in
//!   `Sec-WebSocket-Protocol` as phoenix.js sends it, V2 by default and V1 on
//!   request; a heartbeat that reconnects a connection gone silent;
//!   reconnects with phoenix.js's backoff ([`Backoff`]); frames sent while
//!   disconnected are buffered; open / close / error [`SocketEvent`]s.
//! - [`Channel`]: `join` returns the reply or the refusal, decoded into your
//!   types; `push` returns the reply (`ok`, `error` or timeout); events as a
//!   [`Stream`](futures_util::Stream) per event ([`Channel::on`]) or for all
//!   ([`Channel::events`]); `leave`; rejoins after `phx_error` or a reconnect
//!   with phoenix.js's rejoin backoff; binary payloads both ways (V2).
//! - [`Presence`]: state and diffs synced like phoenix.js's `Presence`.
//!
//! It tells the app what went wrong where the app waits: a refused
//! connection fails the join with its HTTP status ([`JoinError::Connect`],
//! [`SocketError::Refused`]), a server that cannot be reached fails it
//! at its timeout with [`SocketError::Unreachable`]. And a server cannot
//! exhaust it: every event stream is bounded (a stream read too slowly
//! drops its oldest events and says so, [`Lagged`]), messages are limited
//! in size ([`SocketBuilder::max_message_size`]), and a server that drops
//! every connection right after opening it is reconnected ever more
//! slowly.
//!
//! ```no_run
//! use phx_channels_client::Socket;
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Deserialize)]
//! struct Welcome { hey: String }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let socket = Socket::builder("ws://127.0.0.1:4000/socket").param("user_id", "7").connect();
//!     let (chan, welcome): (_, Welcome) = socket.channel("comments:42").join(json!({})).await?;
//!     println!("hey {}", welcome.hey);
//!
//!     let mut new_comments = chan.on("comments:42:new");
//!     chan.push("comment:add", json!({"content": "hello"})).await?;
//!     let comment = new_comments.recv().await?;
//!     println!("{}", comment.as_json().unwrap_or_default());
//!     Ok(())
//! }
//! ```
//!
//! One tokio task per socket owns the connection and every channel; the
//! handles talk to it through channels, so they are cheap to clone and can
//! be used from any task. The socket runs while a handle lives, or until
//! [`Socket::disconnect`].
//!
//! [`protocol`]: crate::protocol

#![deny(missing_docs)]

mod backoff;
mod channel;
mod command;
mod deflate;
mod driver;
mod error;
mod events;
mod link;
mod options;
mod presence;
mod push;
mod queue;
mod recovery;
mod socket;
mod state;
#[cfg(feature = "tls")]
mod tls;

pub use backoff::Backoff;
/// Binary payloads are [`Bytes`] (or `Vec<u8>`): push one, and read one
/// with [`Payload::as_binary`].
pub use bytes::Bytes;
pub use channel::{Channel, ChannelBuilder};
pub use error::{JoinError, Refusal, SocketError};
pub use events::{Event, EventPayloads, Events, Lagged, RecvError};
pub use options::{OnRefused, SocketBuilder};
/// The Phoenix wire protocol (the `phx-channels-protocol` crate).
pub use phx_channels_protocol as protocol;
pub use phx_channels_protocol::{Payload, Position, Serializer};
pub use presence::{sync_diff, sync_state, Presence, PresenceChange, PresenceState};
pub use push::{Push, PushError};
pub use recovery::Recovery;
/// The rustls the client is built with, for [`Tls::from_config`].
#[cfg(feature = "tls")]
pub use rustls;
pub use socket::{Socket, SocketEvents};
pub use state::{ChannelState, ConnectionState, SocketEvent};
#[cfg(feature = "tls")]
pub use tls::{Tls, TlsError};
