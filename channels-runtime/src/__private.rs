//! What the macros of `channels` expand into. Not public API: names here
//! may change in any release.

pub use crate::channel::{Channel, FromPayload, Info, IntoJoin, JoinResult, Route, Routes, Terminate};
pub use crate::connect::Connect;
pub use crate::encode::Encode;
pub use crate::protocol::{Payload, PayloadError};
pub use crate::reply::{IntoReply, Reply};
pub use crate::router::Topic;
pub use crate::socket::Socket;
pub use serde;

/// The join response for join params that do not fit the `join`
/// function's params type.
pub fn invalid_join_params<C>(error: &PayloadError) -> Result<JoinResult<C>, String> {
    #[derive(serde::Serialize)]
    struct Invalid<'a> {
        reason: &'static str,
        path: &'a str,
        message: &'a str,
    }
    let response = Invalid { reason: "invalid join params", path: error.path(), message: error.message() };
    // Three string fields always serialize.
    Ok(Err(Payload::json(&response).expect("a struct of strings always serializes")))
}

/// What a channel's `handle_info` does with a message no `#[handle_info]`
/// method takes: log it and carry on.
pub fn unhandled_info<S: crate::connect::Connect>(info: &Info, socket: &Socket<S>) -> Result<Reply, String> {
    tracing::warn!(topic = %socket.topic(), message = info.type_name(), "no #[handle_info] method takes this message; dropped");
    Ok(Reply::none())
}

/// The crash message for an intercepted broadcast whose payload does not
/// fit the `#[handle_out]` method's type: a bug in the application, not
/// in the client.
pub fn undecodable_broadcast(event: &str, error: &PayloadError) -> String {
    format!("the payload of intercepted broadcast {event:?} does not fit its #[handle_out] method: {error}")
}
