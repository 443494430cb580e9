//! Fan-out limits: what one client can make the server send to everyone
//! else (a broadcast's size, a presence meta's size, broadcasts per
//! second), and the error reply a handler that hits one gets instead of a
//! crash.
//!
//! One client's broadcast is copied to every subscriber's outbound queue;
//! without these, a sender of large or many messages gets its readers
//! closed as slow consumers, not itself.

use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Duration;

use crate::crash::Crash;
use crate::logging::Throttle;
use crate::options::SocketOptions;
use crate::presence::PresenceError;
use crate::protocol::Payload;
use crate::pubsub::BroadcastError;

/// The fan-out limits of one connection, shared by all its channels.
pub(crate) struct FanoutLimits {
    // 32 bits: every connection holds these (limits above 4 GiB saturate).
    max_broadcast_bytes: u32,
    max_presence_meta_bytes: u32,
    rate: Mutex<BroadcastRate>,
    /// The warnings this connection's client can trigger at will (refusals,
    /// unroutable joins, floods): one budget per connection.
    pub(crate) warnings: Throttle,
}

/// Broadcasts allowed per second on one connection (a fixed one-second
/// window, on tokio's clock so tests can pause it).
struct BroadcastRate {
    limit: u32,
    /// When the window opened ([`crate::clock`]), if one is open.
    window: Option<u32>,
    count: u32,
}

impl FanoutLimits {
    pub(crate) fn new(options: &SocketOptions) -> Self {
        FanoutLimits {
            max_broadcast_bytes: u32::try_from(options.max_broadcast_bytes).unwrap_or(u32::MAX),
            max_presence_meta_bytes: u32::try_from(options.max_presence_meta_bytes).unwrap_or(u32::MAX),
            rate: Mutex::new(BroadcastRate { limit: options.max_broadcasts_per_second, window: None, count: 0 }),
            warnings: Throttle::new(5, Duration::from_secs(10), "warnings on this connection"),
        }
    }

    /// Whether a channel of this connection may broadcast `payload` now;
    /// an allowed broadcast counts toward the rate.
    pub(crate) fn admit_broadcast(&self, payload: &Payload) -> Result<(), BroadcastError> {
        let size = match payload {
            Payload::Json(raw) => raw.get().len(),
            Payload::Binary(bytes) => bytes.len(),
        };
        let max = self.max_broadcast_bytes as usize;
        if max != 0 && size > max {
            return Err(BroadcastError::TooLarge { size, max });
        }
        let mut rate = self.rate.lock();
        if rate.limit == 0 {
            return Ok(());
        }
        let now = crate::clock::now_ms();
        if rate.window.is_none_or(|opened| crate::clock::elapsed_ms(opened, now) >= 1000) {
            rate.window = Some(now);
            rate.count = 0;
        }
        if rate.count >= rate.limit {
            return Err(BroadcastError::RateLimited { max_per_second: rate.limit });
        }
        rate.count += 1;
        Ok(())
    }

    /// The largest presence meta (key included) a channel may track; 0
    /// for no limit.
    pub(crate) fn max_presence_meta_bytes(&self) -> usize {
        self.max_presence_meta_bytes as usize
    }
}

impl std::fmt::Debug for FanoutLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutLimits")
            .field("max_broadcast_bytes", &self.max_broadcast_bytes)
            .field("max_presence_meta_bytes", &self.max_presence_meta_bytes)
            .field("max_broadcasts_per_second", &self.rate.lock().limit)
            .finish_non_exhaustive()
    }
}

/// The error response for a crash that is a fan-out limit being hit
/// (anywhere in the error's source chain, so an application error that
/// wraps one counts too); `None` for any other crash.
pub(crate) fn refusal(crash: &Crash) -> Option<Payload> {
    refusal_in_chain(crash.error().map(|e| e as &(dyn std::error::Error + 'static)))
}

/// [`refusal`] for an error outside a [`Crash`] (a refused join's source).
pub(crate) fn refusal_in_chain(mut error: Option<&(dyn std::error::Error + 'static)>) -> Option<Payload> {
    while let Some(current) = error {
        if let Some(refusal) = refusal_of(current) {
            // Small fixed shapes: they always encode.
            return Payload::json(&refusal).ok();
        }
        error = current.source();
    }
    None
}

fn refusal_of(error: &(dyn std::error::Error + 'static)) -> Option<serde_json::Value> {
    match error.downcast_ref::<BroadcastError>() {
        Some(BroadcastError::TooLarge { max, .. }) => {
            return Some(json!({"reason": "broadcast too large", "max": max}))
        }
        Some(BroadcastError::RateLimited { max_per_second }) => {
            return Some(json!({"reason": "too many broadcasts", "max_per_second": max_per_second}))
        }
        Some(BroadcastError::BrokerBusy) => return Some(json!({"reason": "broker busy"})),
        _ => {}
    }
    match error.downcast_ref::<PresenceError>() {
        Some(PresenceError::MetaTooLarge { max, .. }) => Some(json!({"reason": "presence meta too large", "max": max})),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_broadcasts_per_second: u32) -> FanoutLimits {
        FanoutLimits::new(&SocketOptions { max_broadcasts_per_second, ..SocketOptions::default() })
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_window_reopens_after_a_second() {
        let limits = limits(3);
        let payload = Payload::empty();
        assert_eq!((0..10).filter(|_| limits.admit_broadcast(&payload).is_ok()).count(), 3);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(limits.admit_broadcast(&payload).is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limits.admit_broadcast(&payload).is_ok());
    }

    #[test]
    fn wrapped_limit_errors_are_found_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("saving failed")]
        struct Wrapper(#[source] BroadcastError);
        let crash = Crash::from(Wrapper(BroadcastError::TooLarge { size: 10, max: 5 }));
        let response = refusal(&crash).unwrap();
        assert_eq!(response.as_json(), Some(r#"{"max":5,"reason":"broadcast too large"}"#));
        assert!(refusal(&Crash::from("other")).is_none());
        assert!(refusal(&Crash::panic("boom")).is_none());
    }
}
