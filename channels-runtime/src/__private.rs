//! What the macros of `channels` expand into. Not public API: names here
//! may change in any release.

pub use crate::channel::{Channel, FromPayload, IntoJoin, JoinResult, Route, Routes};
pub use crate::connect::Connect;
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
