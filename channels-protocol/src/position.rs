//! Positions in a topic's history: where a broadcast stands in its
//! topic's stream, and where a client stopped.
//!
//! On a topic whose broadcasts the server keeps (its *history*), every
//! broadcast gets a position: an **offset** that grows by one with each
//! broadcast of the topic, and an **epoch** that names the stream the
//! offsets count in. The epoch changes whenever the stream's past is lost
//! (an in-memory store restarted, a broker flushed): an offset is only
//! comparable with offsets of the same epoch.
//!
//! On the wire a position is the string `"<epoch>:<offset>"`: an epoch of 1
//! to 32 ASCII letters, digits, `-` or `_`, a colon, and the offset in
//! decimal. It is never a plain integer, so it never collides with the refs
//! phoenix.js makes (`"1"`, `"2"`, …).
//!
//! ```
//! use phx_channels_protocol::Position;
//!
//! let at: Position = "k3Xb9q:42".parse().unwrap();
//! assert_eq!((at.epoch(), at.offset()), ("k3Xb9q", 42));
//! assert_eq!(at.to_string(), "k3Xb9q:42");
//! assert_eq!(at.next().to_string(), "k3Xb9q:43");
//! assert!(Position::looks_like("k3Xb9q:42"));
//! assert!(!Position::looks_like("42"));
//! // hostile input is refused, whatever its size
//! assert!("x".repeat(10_000).parse::<Position>().is_err());
//! assert!("k3Xb9q:-1".parse::<Position>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest position text accepted (epoch, colon, 20 digits, with room).
pub const MAX_POSITION_LEN: usize = 64;

/// The longest epoch.
pub const MAX_EPOCH_LEN: usize = 32;

/// A position in a topic's history: an epoch and an offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    epoch: Arc<str>,
    offset: u64,
}

/// Why a text is not a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PositionError {
    /// Longer than [`MAX_POSITION_LEN`] bytes.
    #[error("a position is at most {MAX_POSITION_LEN} bytes")]
    TooLong,
    /// No `:` between the epoch and the offset.
    #[error("a position is \"epoch:offset\"")]
    NoColon,
    /// The epoch is empty, too long, or has characters other than ASCII
    /// letters, digits, `-` and `_`.
    #[error("an epoch is 1 to {MAX_EPOCH_LEN} ASCII letters, digits, '-' or '_'")]
    Epoch,
    /// The offset is not a decimal number that fits 64 bits.
    #[error("an offset is a decimal number below 2^64")]
    Offset,
}

/// Whether `epoch` is a valid epoch.
fn valid_epoch(epoch: &str) -> bool {
    !epoch.is_empty()
        && epoch.len() <= MAX_EPOCH_LEN
        && epoch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Position {
    /// A position; fails for an epoch that is not valid on the wire.
    pub fn new(epoch: impl Into<Arc<str>>, offset: u64) -> Result<Self, PositionError> {
        let epoch = epoch.into();
        if !valid_epoch(&epoch) {
            return Err(PositionError::Epoch);
        }
        Ok(Position { epoch, offset })
    }

    /// The epoch: the name of the stream the offset counts in.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The epoch, shared.
    pub fn epoch_arc(&self) -> &Arc<str> {
        &self.epoch
    }

    /// The offset: 0 before the first broadcast, then one more per
    /// broadcast of the topic.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The position of the next broadcast in the same epoch.
    #[must_use]
    pub fn next(&self) -> Self {
        Position { epoch: self.epoch.clone(), offset: self.offset.saturating_add(1) }
    }

    /// The same epoch at another offset.
    #[must_use]
    pub fn at(&self, offset: u64) -> Self {
        Position { epoch: self.epoch.clone(), offset }
    }

    /// Whether a frame's `ref` holds a position (rather than a client's
    /// ref, a plain integer), without checking it fully.
    pub fn looks_like(text: &str) -> bool {
        text.contains(':')
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_POSITION_LEN {
            return Err(PositionError::TooLong);
        }
        let (epoch, offset) = text.rsplit_once(':').ok_or(PositionError::NoColon)?;
        if !valid_epoch(epoch) {
            return Err(PositionError::Epoch);
        }
        // `u64::from_str` takes a leading `+`: only digits are an offset.
        if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PositionError::Offset);
        }
        let offset = offset.parse().map_err(|_| PositionError::Offset)?;
        Ok(Position { epoch: Arc::from(epoch), offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_positions_are_refused() {
        for bad in [
            "",
            "42",
            ":42",
            "e:",
            "e:-1",
            "e:+1",
            "e:1.5",
            "e:18446744073709551616",
            "e f:1",
            "é:1",
            "e:1:2",
            "e\n:1",
            &format!("{}:1", "e".repeat(MAX_EPOCH_LEN + 1)),
            &format!("e:{}", "9".repeat(100)),
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        assert_eq!("e:18446744073709551615".parse::<Position>().unwrap().offset(), u64::MAX);
        assert_eq!(Position::new("a b", 1), Err(PositionError::Epoch));
        let top = Position::new("e", u64::MAX).unwrap();
        assert_eq!(top.next().offset(), u64::MAX, "saturates");
    }
}
