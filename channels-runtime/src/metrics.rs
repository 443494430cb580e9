//! Counters a metrics exporter can read: [`Endpoint::metrics`] returns a
//! [`MetricsSnapshot`] (serializable), to publish with whatever exporter the
//! application uses.
//!
//! [`Endpoint::metrics`]: crate::endpoint::Endpoint::metrics

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! metrics {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// The live counters of one endpoint.
        #[derive(Debug, Default)]
        pub(crate) struct Metrics {
            $( pub(crate) $name: AtomicU64, )*
        }

        /// The counters of an endpoint at one moment. Totals only grow;
        /// `*_open` figures are current values.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Metrics {
            pub(crate) fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

metrics! {
    /// Connections accepted by `connect`.
    connections_accepted,
    /// Connections refused (origin, `vsn` or `connect`).
    connections_refused,
    /// Connections open now.
    connections_open,
    /// Channels joined.
    joins,
    /// Joins refused by the channel, the channel cap or no route.
    joins_refused,
    /// Joins whose `join` panicked or failed.
    join_crashes,
    /// Channels joined now.
    channels_open,
    /// Channels that crashed after joining.
    channel_crashes,
    /// Client messages received (heartbeats included).
    messages_in,
    /// Frames written to clients.
    frames_out,
    /// Bytes of frames written to clients.
    bytes_out,
    /// Connections closed for sending a malformed or oversized frame.
    malformed_frames,
    /// Connections closed for falling too far behind.
    slow_consumers,
    /// Broadcasts and presence tracks a channel was refused for going over
    /// a fan-out limit (size or rate).
    fanout_refused,
}

impl Metrics {
    pub(crate) fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn decr(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}
