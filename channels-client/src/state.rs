//! What a handle can observe of the socket's task: the connection's state
//! and events, and each channel's state, as phoenix.js names them.

use crate::error::SocketError;

/// Whether the socket's connection is open, as phoenix.js's
/// `connectionState()` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// A handshake is under way.
    Connecting,
    /// Open: frames go out at once.
    Open,
    /// Not connected: waiting to reconnect, or disconnected for good.
    Closed,
}

/// What happened to the socket's connection (phoenix.js's `onOpen`,
/// `onClose`, `onError`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketEvent {
    /// A connection opened (the first one, or a reconnect).
    Open,
    /// The open connection ended; the socket reconnects unless it was
    /// disconnected.
    Close {
        /// The close code the server sent, if it sent a close frame.
        code: Option<u16>,
        /// Why: the server's close reason, or what the client saw.
        reason: String,
    },
    /// A connection attempt failed (refused with an HTTP status,
    /// unreachable, timed out, …), or the open connection broke (then a
    /// [`SocketEvent::Close`] follows).
    Error(SocketError),
}

/// Where a channel is in its life, as phoenix.js names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// Not joined, and not going to be: left, closed by the server
    /// (`phx_close`), or the socket disconnected.
    Closed,
    /// The channel died (`phx_error`), its rejoin was refused or timed out,
    /// or the connection was lost: it rejoins with the rejoin backoff (at
    /// once when the socket reconnects).
    Errored,
    /// Joined: pushes go out at once.
    Joined,
    /// A join is on its way; pushes wait for its reply.
    Joining,
    /// A leave is on its way.
    Leaving,
}
