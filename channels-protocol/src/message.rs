//! Messages: what a client sends, what a server sends (before and after a
//! serializer gives it a shape), and a client's encoded frame.

use bytes::Bytes;

use crate::payload::Payload;

/// A message from a client, as decoded from one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The join this message belongs to, as the client sent it.
    pub join_ref: Option<String>,
    /// The client's reference for this message; replies echo it.
    pub msg_ref: Option<String>,
    /// The topic, e.g. `comments:42`.
    pub topic: String,
    /// The event, e.g. `phx_join` or `comment:add`.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

/// A message from the server, as a client decodes it
/// ([`Serializer::decode_server_text`](crate::Serializer::decode_server_text), [`Serializer::decode_server_binary`](crate::Serializer::decode_server_binary)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// A `phx_reply`: the answer to the client message with `msg_ref`.
    Reply(ServerReply),
    /// Any other event: a push, a broadcast, `phx_close`, `phx_error`.
    Event(Message),
}

/// A `phx_reply`, unwrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The join the answered message belongs to (V1 frames carry none).
    pub join_ref: Option<String>,
    /// The ref of the message answered.
    pub msg_ref: Option<String>,
    /// The topic.
    pub topic: String,
    /// `ok` or `error` (any string the server chose).
    pub status: String,
    /// The response body: JSON, or bytes for a V2 binary reply.
    pub response: Payload,
}

/// A client message encoded for the wire ([`Serializer::encode_client`](crate::Serializer::encode_client)),
/// without WebSocket framing: the client's WebSocket library frames and
/// masks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A JSON text message.
    Text(String),
    /// A V2 binary message (kind 0, push).
    Binary(Bytes),
}

/// What the server sends, before a serializer gives it a shape.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// `phx_reply` to the message with `msg_ref`.
    Reply {
        /// The channel's join_ref (`None` for heartbeats and `unmatched topic`).
        join_ref: Option<&'a str>,
        /// The ref of the message answered.
        msg_ref: Option<&'a str>,
        /// The topic.
        topic: &'a str,
        /// `ok` or `error`.
        status: &'a str,
        /// The response body.
        response: &'a Payload,
    },
    /// A push from a channel to its own client: join_ref set, ref null
    /// (or the broadcast's [`Position`](crate::Position), when a channel
    /// pushes an intercepted broadcast of a topic with history to a client
    /// that asked for positions).
    Push {
        /// The channel's join_ref.
        join_ref: Option<&'a str>,
        /// The topic.
        topic: &'a str,
        /// The event.
        event: &'a str,
        /// The payload.
        payload: &'a Payload,
        /// The position written in the `ref` field, if any. Binary frames
        /// (kind 0) have no `ref` field: it is not written there.
        position: Option<&'a str>,
    },
    /// A broadcast delivered through the fastlane: join_ref and ref null
    /// (or, on a topic with history, to a client that asked for positions,
    /// the broadcast's [`Position`](crate::Position) in `ref`).
    Broadcast {
        /// The topic.
        topic: &'a str,
        /// The event.
        event: &'a str,
        /// The payload.
        payload: &'a Payload,
        /// The position written in the `ref` field, if any. Binary frames
        /// (kind 2) have no `ref` field: it is not written there (a server
        /// sends it in a [`PHX_POSITION`](crate::PHX_POSITION) frame after).
        position: Option<&'a str>,
    },
    /// `phx_close` or `phx_error`: the join_ref in both ref fields.
    Control {
        /// The channel's join_ref, as the client sent it with its join.
        join_ref: Option<&'a str>,
        /// The topic.
        topic: &'a str,
        /// [`PHX_CLOSE`](crate::PHX_CLOSE) or [`PHX_ERROR`](crate::PHX_ERROR).
        event: &'a str,
        /// The payload.
        payload: &'a Payload,
    },
}
