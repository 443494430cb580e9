//! Fan-out limits: what one client can make the server send to everyone
//! else (a broadcast's size, a presence meta's size, broadcasts and bytes
//! per second per connection, bytes per second per topic), and the error
//! reply a handler that hits one gets instead of a crash.
//!
//! One client's broadcast is copied to every subscriber's outbound queue;
//! without these, a sender of large or many messages gets its readers
//! closed as slow consumers, not itself. Counting messages is not enough:
//! what a reader must keep up with is bytes, from every sender of its
//! topics.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::json;

use crate::crash::Crash;
use crate::options::SocketOptions;
use crate::presence::PresenceError;
use crate::protocol::Payload;
use crate::pubsub::{BroadcastError, PubSub};

/// The fan-out limits of one connection, shared by all its channels.
pub(crate) struct FanoutLimits {
    // 32 bits: every connection holds these (limits above 4 GiB saturate).
    max_broadcast_bytes: u32,
    max_presence_meta_bytes: u32,
    rate: Mutex<BroadcastRate>,
    /// This node's bytes per topic, when topics are limited.
    topics: Option<Arc<TopicRates>>,
}

/// Broadcasts and bytes allowed per second on one connection (a fixed
/// one-second window, on tokio's clock so tests can pause it).
struct BroadcastRate {
    limit: u32,
    max_bytes: u32,
    max_topic_bytes: u32,
    /// When the window opened ([`crate::clock`]), if one is open.
    window: Option<u32>,
    count: u32,
    bytes: u32,
}

/// Saturates a limit to 32 bits.
fn limit32(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

impl FanoutLimits {
    pub(crate) fn new(options: &SocketOptions, pubsub: &PubSub) -> Self {
        let max_topic_bytes = limit32(options.max_topic_broadcast_bytes_per_second);
        FanoutLimits {
            max_broadcast_bytes: limit32(options.max_broadcast_bytes),
            max_presence_meta_bytes: limit32(options.max_presence_meta_bytes),
            rate: Mutex::new(BroadcastRate {
                limit: options.max_broadcasts_per_second,
                max_bytes: limit32(options.max_broadcast_bytes_per_second),
                max_topic_bytes,
                window: None,
                count: 0,
                bytes: 0,
            }),
            topics: (max_topic_bytes != 0).then(|| pubsub.service(|_| Arc::new(TopicRates::default()))),
        }
    }

    /// Whether a channel of this connection may broadcast `event` with
    /// `payload` on `topic` now; an allowed broadcast counts toward the
    /// rates.
    pub(crate) fn admit_broadcast(&self, topic: &str, event: &str, payload: &Payload) -> Result<(), BroadcastError> {
        let size = match payload {
            Payload::Json(raw) => raw.get().len(),
            Payload::Binary(bytes) => bytes.len(),
        };
        let max = self.max_broadcast_bytes as usize;
        if max != 0 && size > max {
            return Err(BroadcastError::TooLarge { size, max });
        }
        let mut rate = self.rate.lock();
        if rate.limit == 0 && rate.max_bytes == 0 && rate.max_topic_bytes == 0 {
            return Ok(());
        }
        // What every subscriber downloads of it, near enough.
        let weight = limit32(size + topic.len() + event.len());
        let now = crate::clock::now_ms();
        if rate.window.is_none_or(|opened| crate::clock::elapsed_ms(opened, now) >= 1000) {
            rate.window = Some(now);
            rate.count = 0;
            rate.bytes = 0;
        }
        if rate.limit != 0 && rate.count >= rate.limit {
            return Err(BroadcastError::RateLimited { max_per_second: rate.limit });
        }
        // The first broadcast of a window always fits (it is bounded by
        // `max_broadcast_bytes`): a payload larger than the per-second
        // limit goes out at most once a second, instead of never.
        if rate.max_bytes != 0 && rate.bytes > 0 && rate.bytes.saturating_add(weight) > rate.max_bytes {
            return Err(BroadcastError::BytesRateLimited { max_bytes_per_second: rate.max_bytes as usize });
        }
        if let Some(topics) = &self.topics {
            if !topics.admit(topic, weight, rate.max_topic_bytes, now) {
                return Err(BroadcastError::TopicBytesRateLimited {
                    max_bytes_per_second: rate.max_topic_bytes as usize,
                });
            }
        }
        rate.count += 1;
        rate.bytes = rate.bytes.saturating_add(weight);
        Ok(())
    }

    /// The largest presence meta (key included) a channel may track; 0
    /// for no limit.
    pub(crate) fn max_presence_meta_bytes(&self) -> usize {
        self.max_presence_meta_bytes as usize
    }
}

/// The bytes broadcast by clients on each topic of this node in its
/// current one-second window: a service of the node's PubSub, shared by
/// every connection (many senders on one topic are held together). Only
/// topics broadcast on within the last second are kept.
#[derive(Default)]
struct TopicRates {
    windows: Mutex<TopicWindows>,
}

#[derive(Default)]
struct TopicWindows {
    /// When each topic's window opened ([`crate::clock`]) and the bytes
    /// broadcast in it.
    open: HashMap<Box<str>, (u32, u32)>,
    /// Past this many entries, windows that are over are swept.
    sweep_at: usize,
}

impl TopicRates {
    /// Whether `bytes` more may go out on `topic` this second, under `max`
    /// (counted if so).
    fn admit(&self, topic: &str, bytes: u32, max: u32, now: u32) -> bool {
        let over = |opened: u32| crate::clock::elapsed_ms(opened, now) >= 1000;
        let mut windows = self.windows.lock();
        if windows.open.len() >= windows.sweep_at.max(64) {
            windows.open.retain(|_, (opened, _)| !over(*opened));
            windows.sweep_at = windows.open.len() * 2;
        }
        let window = match windows.open.get_mut(topic) {
            Some(window) => window,
            None => windows.open.entry(topic.into()).or_insert((now, 0)),
        };
        if over(window.0) {
            *window = (now, 0);
        }
        if window.1 > 0 && window.1.saturating_add(bytes) > max {
            return false;
        }
        window.1 = window.1.saturating_add(bytes);
        true
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
        Some(BroadcastError::BytesRateLimited { max_bytes_per_second }) => {
            return Some(json!({"reason": "too many broadcast bytes", "max_bytes_per_second": max_bytes_per_second}))
        }
        Some(BroadcastError::TopicBytesRateLimited { max_bytes_per_second }) => {
            return Some(json!({
                "reason": "too many broadcast bytes on this topic",
                "max_bytes_per_second": max_bytes_per_second,
            }))
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

    use std::time::Duration;

    fn limits(max_broadcasts_per_second: u32) -> FanoutLimits {
        FanoutLimits::new(&SocketOptions { max_broadcasts_per_second, ..SocketOptions::default() }, &PubSub::local())
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_window_reopens_after_a_second() {
        let limits = limits(3);
        let payload = Payload::empty();
        assert_eq!((0..10).filter(|_| limits.admit_broadcast("t", "e", &payload).is_ok()).count(), 3);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(limits.admit_broadcast("t", "e", &payload).is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limits.admit_broadcast("t", "e", &payload).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_limited_per_connection_and_per_topic() {
        let pubsub = PubSub::local();
        let options = SocketOptions {
            max_broadcast_bytes_per_second: 1000,
            max_topic_broadcast_bytes_per_second: 1500,
            ..SocketOptions::default()
        };
        let (a, b) = (FanoutLimits::new(&options, &pubsub), FanoutLimits::new(&options, &pubsub));
        let payload = Payload::json(&"x".repeat(396)).unwrap(); // 398 bytes, 400 with "t" and "e"
        let admitted =
            |limits: &FanoutLimits| (0..10).filter(|_| limits.admit_broadcast("t", "e", &payload).is_ok()).count();
        assert_eq!(admitted(&a), 2, "1000 bytes a second for one connection");
        assert_eq!(admitted(&b), 1, "1500 for the topic, whoever sends");
        assert!(matches!(
            b.admit_broadcast("t", "e", &payload),
            Err(BroadcastError::TopicBytesRateLimited { max_bytes_per_second: 1500 })
        ));
        assert!(b.admit_broadcast("other", "e", &payload).is_ok(), "another topic has its own window");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(admitted(&a), 2);
        // One broadcast larger than the per-second limits goes out as the
        // first of its window, and fills it.
        tokio::time::advance(Duration::from_secs(1)).await;
        let large = Payload::json(&"y".repeat(2000)).unwrap();
        assert!(a.admit_broadcast("large", "e", &large).is_ok());
        assert!(a.admit_broadcast("large", "e", &payload).is_err());
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
