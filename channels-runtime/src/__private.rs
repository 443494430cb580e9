//! What the macros of `channels` expand into. Not public API: names here
//! may change in any release.

pub use crate::channel::{
    Channel, FromPayload, Info, IntoJoin, JoinError, Rejection, Route, Routes, Terminate, ValidPayload,
};
pub use crate::connect::Connect;
pub use crate::crash::Crash;
pub use crate::describe::probe::{
    JoinOf, JoinOfOther, PayloadOf, PayloadOfOther, Probe, RepliesOf, RepliesOfOther, ViaTsRs, ViaTypeScript,
    ViaUnknown,
};
pub use crate::describe::{self, ChannelShape, Declarations, EventShape, TypeScript};
pub use crate::encode::Encode;
pub use crate::protocol::{IntoPayload, Payload};
pub use crate::pubsub::History;
pub use crate::reply::{IntoReply, Reply};
pub use crate::router::Topic;
pub use crate::socket::Socket;
pub use serde;

/// What encoding a payload fails with (named here so that diagnostics keep
/// naming `serde_json`'s types by their own paths).
pub type JsonError = serde_json::Error;

/// The join refusal for join params the `join` function's params type
/// rejects.
pub fn invalid_join_params(rejection: Rejection) -> JoinError {
    rejection.into_join_error()
}

/// What a channel's `handle_info` does with a message no `#[handle_info]`
/// method takes: log it and carry on.
pub fn unhandled_info<S: crate::connect::Connect>(info: &Info, socket: &Socket<S>) -> Result<Reply, Crash> {
    tracing::warn!(topic = ?crate::logging::clip(socket.topic()), message = info.type_name(), "no #[handle_info] method takes this message; dropped");
    Ok(Reply::none())
}

/// The crash message for an intercepted broadcast whose payload does not
/// fit the `#[handle_out]` method's type: a bug in the application, not
/// in the client.
pub fn undecodable_broadcast(event: &str, rejection: &Rejection) -> Crash {
    Crash::from(format!(
        "the payload of intercepted broadcast {event:?} does not fit its #[handle_out] method: {rejection}"
    ))
}

/// Sends an intercepted broadcast that no `#[handle_out]` method takes to
/// the client unchanged.
pub fn push_unchanged<S: crate::connect::Connect>(socket: &mut Socket<S>, event: &str, payload: Payload) {
    socket.push_frame(event, payload);
}
