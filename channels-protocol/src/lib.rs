//! The Phoenix Channels wire protocol: messages, payloads, frames and the
//! V1, V2 and binary serializers, in both directions, with no server and no
//! runtime. The `phx-channels` server and client are built on it; a proxy,
//! a load generator or a recorder of Phoenix traffic can use it alone.
//!
//! A connection negotiates one [`Serializer`] from its `vsn` query parameter
//! ([`Serializer::negotiate`]) and keeps it for every frame in both
//! directions:
//!
//! - **V2** (`vsn=2.0.0`, phoenix.js's default): text frames holding a JSON
//!   array `[join_ref, ref, topic, event, payload]`, and binary frames for raw
//!   byte payloads.
//! - **V1** (`vsn=1.0.0`, or no `vsn`): text frames holding a JSON object
//!   `{"topic", "event", "payload", "ref"}`; server frames never carry
//!   `join_ref`.
//!
//! ```
//! use phx_channels_protocol::{Outgoing, Payload, Serializer};
//!
//! let v2 = Serializer::negotiate(Some("2.0.0")).unwrap();
//! let msg = v2.decode_text(br#"["3","3","comments:42","phx_join",{}]"#).unwrap();
//! assert_eq!(msg.event, "phx_join");
//!
//! let ok = Payload::json(&serde_json::json!({"hey": "there"})).unwrap();
//! let frame = v2
//!     .encode(&Outgoing::Reply {
//!         join_ref: Some("3"),
//!         msg_ref: Some("3"),
//!         topic: "comments:42",
//!         status: "ok",
//!         response: &ok,
//!     })
//!     .unwrap();
//! assert_eq!(
//!     frame.as_bytes(),
//!     br#"["3","3","comments:42","phx_reply",{"status":"ok","response":{"hey":"there"}}]"#
//! );
//! ```
//!
//! The modules, one concept each: [`event`] (the reserved events),
//! [`payload`] (JSON or bytes, and what can be sent as one), [`position`]
//! (where a broadcast stands in its topic's history), [`message`]
//! (what each side sends), [`frame`] (a server message inside its whole
//! WebSocket frame), [`serializer`] (V1, V2 and binary, negotiated from
//! `vsn`) and [`error`]. Everything is also at the crate's root.

#![deny(missing_docs)]

mod binary;
pub mod error;
pub mod event;
pub mod frame;
mod json;
pub mod message;
pub mod payload;
pub mod position;
pub mod serializer;

pub use error::{DecodeError, EncodeError};
pub use event::{
    HEARTBEAT, PHOENIX_TOPIC, PHX_CLOSE, PHX_ERROR, PHX_JOIN, PHX_LEAVE, PHX_POSITION, PHX_RECOVERY, PHX_REPLY,
    POSITION_PARAM, RESERVED_EVENTS,
};
pub use frame::{opcode, Frame, FrameKind};
pub use message::{ClientFrame, Message, Outgoing, ServerMessage, ServerReply};
pub use payload::{IntoPayload, Payload, PayloadError};
pub use position::{Position, PositionError, MAX_EPOCH_LEN, MAX_POSITION_LEN};
pub use serializer::Serializer;

#[cfg(test)]
mod tests;
