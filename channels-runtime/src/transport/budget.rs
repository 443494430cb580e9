//! The endpoint's budget of bytes in flight: what clients have announced
//! and not finished sending, across every connection.
//!
//! A WebSocket frame header can announce up to the message limit
//! ([`SocketOptions::max_frame_size`](crate::SocketOptions::max_frame_size),
//! 10 MB) and its payload then arrive as slowly as the client likes; a
//! LongPoll `POST` can do the same with its body. Each is bounded on its
//! own, but a thousand of them are not: every partly received message
//! holds the bytes that arrived, until it completes. The budget bounds
//! them together ([`ServerOptions::max_inflight_bytes`](crate::server::ServerOptions::max_inflight_bytes)).
//!
//! - A message takes its announced size from the budget when it cannot be
//!   read at once (a frame whose payload has not all arrived, the frames of
//!   a fragmented message gathered so far, a request body as it is read),
//!   and gives it back when it completes or its connection ends (a
//!   [`Hold`] dropped).
//! - A message over [`SMALL`] that would take the budget over its limit
//!   is refused: the WebSocket closes with 1013 ("try again later": the
//!   message itself was within the limits, the server is busy), a
//!   LongPoll `POST` gets HTTP 503 with `Retry-After`. Smaller messages are
//!   always let in (and counted): a connection holds at most one, and
//!   refusing a heartbeat because others upload would close honest
//!   clients for someone else's doing.
//!
//! With no limit (0) nothing is counted: the hot path does no atomic work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Messages up to this size (their announced total) are never refused by
/// the budget, only counted.
pub(crate) const SMALL: usize = 64 * 1024;

/// The bytes in flight of one endpoint, and their limit.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// 0: no limit, nothing counted.
    max: AtomicUsize,
    used: AtomicUsize,
}

/// A message that would take the budget over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{wanted} bytes in flight would take the server over its limit of {max}")]
pub(crate) struct Busy {
    /// The message's announced size so far.
    pub(crate) wanted: usize,
    /// The endpoint's limit.
    pub(crate) max: usize,
}

impl Budget {
    /// A budget of `max` bytes (0: none).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Budget { max: AtomicUsize::new(max), used: AtomicUsize::new(0) })
    }

    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more for a message whose announced size, these bytes
    /// included, is `total`.
    pub(crate) fn take(self: &Arc<Self>, bytes: usize, total: usize) -> Result<Hold, Busy> {
        let mut hold = Hold::none();
        hold.grow(self, bytes, total)?;
        Ok(hold)
    }
}

/// Bytes a message holds in the [`Budget`], given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Hold {
    /// Holds nothing.
    pub(crate) const fn none() -> Self {
        Hold { budget: None, bytes: 0 }
    }

    /// Takes `bytes` more from `budget` for a message whose announced size,
    /// these bytes included, is `total`. Refused (nothing taken) when the
    /// message is larger than [`SMALL`] and the budget would go over.
    pub(crate) fn grow(&mut self, budget: &Arc<Budget>, bytes: usize, total: usize) -> Result<(), Busy> {
        let max = budget.max.load(Ordering::Relaxed);
        if max == 0 || bytes == 0 {
            return Ok(());
        }
        let before = budget.used.fetch_add(bytes, Ordering::AcqRel);
        if total > SMALL && before.saturating_add(bytes) > max {
            budget.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Busy { wanted: total, max });
        }
        if self.budget.is_none() {
            self.budget = Some(budget.clone());
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Takes over what `other` holds (a frame's bytes joining its message).
    pub(crate) fn absorb(&mut self, mut other: Hold) {
        if other.bytes == 0 {
            return;
        }
        if self.budget.is_none() {
            self.budget = other.budget.take();
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_messages_over_the_budget_are_refused_small_ones_counted() {
        let budget = Budget::new(200_000);
        let a = budget.take(150_000, 150_000).unwrap();
        assert_eq!(budget.used(), 150_000);
        assert_eq!(budget.take(100_000, 100_000).unwrap_err(), Busy { wanted: 100_000, max: 200_000 });
        assert_eq!(budget.used(), 150_000, "a refusal takes nothing");
        // Small ones go in even past the limit.
        let small = budget.take(60_000, 60_000).unwrap();
        assert_eq!(budget.used(), 210_000);
        drop((a, small));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_message_grows_its_hold_frame_by_frame() {
        let budget = Budget::new(100_000);
        let mut message = budget.take(40_000, 40_000).unwrap();
        let frame = budget.take(40_000, 80_000).unwrap();
        message.absorb(frame);
        assert_eq!((message.bytes(), budget.used()), (80_000, 80_000));
        assert!(message.grow(&budget, 40_000, 120_000).is_err());
        drop(message);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn without_a_limit_nothing_is_counted() {
        let budget = Budget::new(0);
        let hold = budget.take(usize::MAX / 2, usize::MAX / 2).unwrap();
        assert_eq!((hold.bytes(), budget.used()), (0, 0));
    }
}
