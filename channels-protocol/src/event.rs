//! The events and the topic the protocol reserves.

/// Event a client sends to join a topic.
pub const PHX_JOIN: &str = "phx_join";
/// Event a client sends to leave a topic.
pub const PHX_LEAVE: &str = "phx_leave";
/// Event of every reply the server sends.
pub const PHX_REPLY: &str = "phx_reply";
/// Event telling the client a channel ended gracefully (do not rejoin).
pub const PHX_CLOSE: &str = "phx_close";
/// Event telling the client a channel died (rejoin).
pub const PHX_ERROR: &str = "phx_error";
/// Keep-alive event, only on topic [`PHOENIX_TOPIC`].
pub const HEARTBEAT: &str = "heartbeat";
/// The topic reserved for heartbeats.
pub const PHOENIX_TOPIC: &str = "phoenix";

/// Event names a channel may not handle itself: the runtime owns them.
pub const RESERVED_EVENTS: [&str; 6] = [PHX_JOIN, PHX_LEAVE, PHX_REPLY, PHX_CLOSE, PHX_ERROR, HEARTBEAT];

/// Event of the frame a server sends, on a topic with history, right after
/// the join reply of a client that asked for positions: the payload says
/// whether what the client missed follows (`{"recovered": true, ..}`) and
/// the frame's `ref` is the position the client is at once it is read.
/// See [`Position`](crate::Position).
pub const PHX_RECOVERY: &str = "phx_recovery";

/// Event of the text frame that follows a **binary** broadcast on a topic
/// with history, to a client that asked for positions: its `ref` is the
/// binary broadcast's position (binary frames have no `ref` field).
pub const PHX_POSITION: &str = "phx_position";

/// The join parameter with which a client asks for positions on a topic
/// with history: `null` (start now) or the last position it saw
/// (`"epoch:offset"`), to be sent what it missed since.
pub const POSITION_PARAM: &str = "phx_position";
