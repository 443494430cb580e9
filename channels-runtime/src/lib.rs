//! The runtime behind [`phx-channels`](https://docs.rs/phx-channels): the Phoenix
//! wire protocol, connection and channel tasks, PubSub and transports.
//!
//! Most applications use it through the `phx-channels` crate and its macros;
//! the modules here are what those macros expand into, and what a hand
//! implementation would use.

#![deny(missing_docs)]

pub mod changeset;
pub mod channel;
mod clock;
pub mod connect;
mod connection;
pub mod crash;
pub mod dashboard;
pub mod describe;
mod dispatch;
pub mod encode;
pub mod endpoint;
mod fanout;
mod logging;
pub mod mailbox;
mod metrics;
mod options;
pub mod origin;
pub mod outbox;
pub mod panics;
pub mod presence;
/// The Phoenix wire protocol (the `phx-channels-protocol` crate):
/// messages, payloads, frames and the serializers.
pub use phx_channels_protocol as protocol;
pub mod pubsub;
mod registry;
pub mod reply;
pub mod router;
pub mod server;
pub mod socket;
mod source;
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;
pub mod token;
pub mod trace;
pub mod transport;
pub mod typescript;

pub use metrics::MetricsSnapshot;
pub use options::SocketOptions;

#[doc(hidden)]
pub mod __private;

#[doc(hidden)]
pub mod __fuzz;
