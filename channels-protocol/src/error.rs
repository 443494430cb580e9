//! Why a frame could not be decoded, or a message encoded.

/// Why a frame could not be decoded. The connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a JSON frame of the negotiated shape.
    #[error("malformed {version} frame: {detail}")]
    Json {
        /// `V1` or `V2`.
        version: &'static str,
        /// serde_json's account of the problem.
        detail: String,
    },
    /// A binary frame that is truncated or not a client push.
    #[error("malformed binary frame: {0}")]
    Binary(&'static str),
    /// A binary frame on a connection that negotiated V1.
    #[error("binary frames need the V2 serializer (vsn=2.0.0)")]
    BinaryNotSupported,
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Binary payloads travel only in V2 binary frames.
    #[error("binary payloads need the V2 serializer (vsn=2.0.0)")]
    BinaryNotSupported,
    /// A binary frame header field is longer than one length byte allows.
    #[error("`{field}` is {len} bytes; binary frames allow at most 255")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}
