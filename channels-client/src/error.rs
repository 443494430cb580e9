//! Why a join did not succeed.

use std::time::Duration;

use phx_channels_protocol::{EncodeError, Payload, PayloadError};

/// Why a join did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server refused the join; its response (`{"reason": …}` as a
    /// rule) is here, see [`JoinError::reason`].
    #[error("join refused: {0:?}")]
    Refused(Payload),
    /// No reply within the join's timeout (10 s unless configured), the
    /// time to connect included. The channel is left.
    #[error("no join reply within {0:?}")]
    Timeout(Duration),
    /// The server closed the channel, or the socket disconnected, first.
    #[error("the channel was closed before it joined")]
    Closed,
    /// The params are not JSON-serializable.
    #[error("the join params cannot be encoded as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The params cannot go in a frame (bytes over V1, a topic over 255
    /// bytes in a binary frame).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The join succeeded but its reply does not fit the type asked for;
    /// the channel is left.
    #[error("the join reply does not fit the type asked for: {0}")]
    Decode(#[from] PayloadError),
}
