//! Why a peer's frames are refused, with the close code each reason gets.

/// What the peer sent cannot be taken: the connection closes with
/// [`WireError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The peer broke the framing rules (close with 1002).
    #[error("{0}")]
    Protocol(&'static str),
    /// A text message, or a close reason, that is not UTF-8 (close with
    /// 1007).
    #[error("text is not valid UTF-8")]
    Utf8,
    /// A message over the size limit, as announced, as gathered, or as
    /// inflated (close with 1009).
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooBig {
        /// The size announced (or reached).
        size: u64,
        /// The limit.
        max: usize,
    },
}

impl WireError {
    /// The close code the connection ends with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            WireError::Protocol(_) => 1002,
            WireError::Utf8 => 1007,
            WireError::TooBig { .. } => 1009,
        }
    }
}

impl From<crate::frame::ProtocolError> for WireError {
    fn from(error: crate::frame::ProtocolError) -> Self {
        WireError::Protocol(error.0)
    }
}

impl From<crate::utf8::Invalid> for WireError {
    fn from(_: crate::utf8::Invalid) -> Self {
        WireError::Utf8
    }
}
