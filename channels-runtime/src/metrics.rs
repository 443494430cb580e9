//! An endpoint's figures, kept two ways.
//!
//! - Through the [`metrics`] facade, the Rust ecosystem's standard: every
//!   figure goes to whatever recorder the application installs
//!   (`metrics-exporter-prometheus`, StatsD, OpenTelemetry…). With no
//!   recorder installed nothing is recorded, and a figure costs one relaxed
//!   atomic add. Install the recorder before the endpoint serves: each
//!   figure takes its handle from the recorder on first use.
//! - As a [`MetricsSnapshot`] of the same counters
//!   ([`Endpoint::metrics`](crate::endpoint::Endpoint::metrics)), which
//!   needs no recorder (tests, the dashboard, an app's own stats route).
//!
//! What is exported, all prefixed `channels_` (`_total` for counters):
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `connections_accepted_total` | counter | |
//! | `connections_refused_total` | counter | `reason`: `origin`, `vsn`, `limit`, `connect`, `crash`, `source`, `rate` |
//! | `inputs_refused_total` | counter | `reason`: `malformed_frame`, `protocol_error`, `invalid_utf8`, `message_too_large`, `inflight_budget`, `body_too_large`, `body_timeout`, `body_malformed`, `topic_too_long` |
//! | `connections_open` | gauge | |
//! | `longpoll_sessions` | gauge | |
//! | `joins_total` | counter | `channel`, `outcome`: `ok`, `refused`, `crashed` |
//! | `join_duration_seconds` | histogram | `channel` |
//! | `channels_open` | gauge | |
//! | `handle_in_duration_seconds` | histogram | `channel`, `event` (`other` for an event the channel does not declare) |
//! | `crashes_total` | counter | `channel`, `callback`: `join`, `handle_in`, `handle_out`, `handle_info`, `terminate` |
//! | `messages_in_total` | counter | |
//! | `frames_out_total`, `bytes_out_total` | counter | |
//! | `outbound_queued_bytes` | gauge | |
//! | `broadcasts_total`, `deliveries_total` | counter | |
//! | `malformed_frames_total`, `slow_consumers_total`, `fanout_refused_total` | counter | |
//! | `broker_messages_total` | counter | `direction`: `out`, `in` |
//! | `broker_dropped_total`, `broker_refused_total`, `broker_reconnects_total` | counter | |
//! | `broker_subscriptions` | gauge | |
//!
//! Labels come only from the application's code (channel type names, the
//! events a channel declares), never from what a client sends, so a client
//! cannot make the number of series grow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use serde::Serialize;

/// A label set of an exported figure.
type Labels = &'static [(&'static str, &'static str)];

/// A counter: an atomic for the snapshot, and the recorder's handle.
pub(crate) struct Count {
    value: AtomicU64,
    name: &'static str,
    labels: Labels,
    help: &'static str,
    exported: OnceLock<metrics::Counter>,
}

impl Count {
    const fn new(name: &'static str, labels: Labels, help: &'static str) -> Self {
        Count { value: AtomicU64::new(0), name, labels, help, exported: OnceLock::new() }
    }

    fn define(name: &'static str, help: &'static str) -> Self {
        Count::new(name, &[], help)
    }

    pub(crate) fn incr(&self) {
        self.add(1);
    }

    fn exported(&self) -> &metrics::Counter {
        self.exported.get_or_init(|| {
            metrics::describe_counter!(self.name, self.help);
            metrics::counter!(self.name, self.labels)
        })
    }

    /// Registers the figure with the recorder now, so that it is exported
    /// (as 0) before anything is counted.
    pub(crate) fn export(&self) {
        self.exported();
    }

    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.exported().increment(n);
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A gauge: a current value that goes up and down.
pub(crate) struct Level {
    value: AtomicU64,
    name: &'static str,
    help: &'static str,
    exported: OnceLock<metrics::Gauge>,
}

impl Level {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Level { value: AtomicU64::new(0), name, help, exported: OnceLock::new() }
    }

    fn define(name: &'static str, help: &'static str) -> Self {
        Level::new(name, help)
    }

    fn exported(&self) -> &metrics::Gauge {
        self.exported.get_or_init(|| {
            metrics::describe_gauge!(self.name, self.help);
            metrics::gauge!(self.name)
        })
    }

    pub(crate) fn export(&self) {
        self.exported();
    }

    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn decr(&self) {
        self.sub(1);
    }

    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        // Precision is lost only past 2^53, far beyond any queue or count.
        #[allow(clippy::cast_precision_loss)]
        self.exported().increment(n as f64);
    }

    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn set(&self, n: u64) {
        self.value.store(n, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        self.exported().set(n as f64);
    }

    pub(crate) fn sub(&self, n: u64) {
        self.value.fetch_sub(n, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        self.exported().decrement(n as f64);
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A figure of the snapshot only: exported labelled by channel, through
/// [`channel`].
pub(crate) struct Tally(AtomicU64);

impl Tally {
    /// Exported elsewhere, under `_name`, with labels.
    fn define(_name: &'static str, _help: &'static str) -> Self {
        Tally(AtomicU64::new(0))
    }

    fn export(&self) {}

    pub(crate) fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a connection was refused: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The `Origin` header is not allowed.
    Origin,
    /// The `vsn` parameter names no serializer.
    Vsn,
    /// The endpoint is at its connection cap.
    Limit,
    /// The application's `connect` refused.
    Connect,
    /// The application's `connect` panicked.
    Crash,
    /// The client's address is at
    /// [`ServerOptions::max_connections_per_source`](crate::server::ServerOptions::max_connections_per_source),
    /// or the process is out of file descriptors.
    Source,
    /// The client's address opens LongPoll sessions faster than
    /// [`SocketOptions::max_longpoll_opens_per_second`](crate::SocketOptions::max_longpoll_opens_per_second).
    Rate,
}

/// A reason a figure is counted by: its index among its kind's labels.
pub(crate) trait Reason: Copy {
    /// The reason's place in its label sets.
    fn index(self) -> usize;
}

impl Reason for Refusal {
    fn index(self) -> usize {
        self as usize
    }
}

/// A counter per reason, each exported with its own `reason` label.
pub(crate) struct ByReason<R, const N: usize>([Count; N], std::marker::PhantomData<R>);

impl<R: Reason, const N: usize> ByReason<R, N> {
    fn new(name: &'static str, help: &'static str, labels: &'static [[(&'static str, &'static str); 1]; N]) -> Self {
        ByReason(std::array::from_fn(|i| Count::new(name, &labels[i], help)), std::marker::PhantomData)
    }

    pub(crate) fn incr(&self, reason: R) {
        self.0[reason.index()].incr();
    }

    fn total(&self) -> u64 {
        self.0.iter().map(Count::get).sum()
    }

    fn export(&self) {
        self.0.iter().for_each(Count::export);
    }
}

/// Refused connections, by reason.
pub(crate) type Refusals = ByReason<Refusal, 7>;

/// The label set of each [`Refusal`], in its order.
static REFUSAL_LABELS: [[(&str, &str); 1]; 7] = [
    [("reason", "origin")],
    [("reason", "vsn")],
    [("reason", "limit")],
    [("reason", "connect")],
    [("reason", "crash")],
    [("reason", "source")],
    [("reason", "rate")],
];

impl Default for Refusals {
    fn default() -> Self {
        ByReason::new("channels_connections_refused_total", "Connections refused, by reason", &REFUSAL_LABELS)
    }
}

/// Why a client's input was refused (its connection closed, its request
/// or its join refused): the `reason` label of `inputs_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// A frame the serializer cannot decode.
    MalformedFrame,
    /// A WebSocket protocol error.
    ProtocolError,
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// A message over `SocketOptions::max_frame_size`.
    MessageTooLarge,
    /// A message, or a LongPoll body, over the endpoint's in-flight budget.
    InflightBudget,
    /// A LongPoll body over its limit (413).
    BodyTooLarge,
    /// A LongPoll body that did not arrive within `body_timeout` (408).
    BodyTimeout,
    /// A LongPoll body that does not decode (400).
    BodyMalformed,
    /// A join on a topic over `SocketOptions::max_topic_bytes`.
    TopicTooLong,
}

impl Reason for Rejection {
    fn index(self) -> usize {
        self as usize
    }
}

/// The label set of each [`Rejection`], in its order.
static REJECTION_LABELS: [[(&str, &str); 1]; 9] = [
    [("reason", "malformed_frame")],
    [("reason", "protocol_error")],
    [("reason", "invalid_utf8")],
    [("reason", "message_too_large")],
    [("reason", "inflight_budget")],
    [("reason", "body_too_large")],
    [("reason", "body_timeout")],
    [("reason", "body_malformed")],
    [("reason", "topic_too_long")],
];

/// Refused inputs, by reason.
pub(crate) type Rejections = ByReason<Rejection, 9>;

impl Default for Rejections {
    fn default() -> Self {
        ByReason::new(
            "channels_inputs_refused_total",
            "Client inputs refused (a frame, a message, a LongPoll body, a join's topic), by reason",
            &REJECTION_LABELS,
        )
    }
}

macro_rules! metrics {
    ($( $(#[doc = $doc:literal])* $kind:ident $name:ident = $exported:literal, )*) => {
        /// The live figures of one endpoint.
        pub(crate) struct Metrics {
            $( pub(crate) $name: $kind, )*
            pub(crate) connections_refused: Refusals,
            pub(crate) inputs_refused: Rejections,
            /// The throttles of the log lines a peer can trigger at will.
            pub(crate) lines: crate::logging::Lines,
        }

        impl Default for Metrics {
            fn default() -> Self {
                Metrics {
                    $( $name: $kind::define($exported, concat!($($doc),*).trim_ascii()), )*
                    connections_refused: Refusals::default(),
                    inputs_refused: Rejections::default(),
                    lines: crate::logging::Lines::default(),
                }
            }
        }

        /// The counters of an endpoint at one moment. Totals only grow;
        /// `*_open`, `longpoll_sessions` and `outbound_queued_bytes` are
        /// current values.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $( $(#[doc = $doc])* pub $name: u64, )*
            /// Connections refused (origin, `vsn`, the connection caps, the
            /// LongPoll open rate, or `connect`).
            pub connections_refused: u64,
            /// Client inputs refused: malformed or oversized frames and
            /// messages, messages over the in-flight budget, LongPoll
            /// bodies refused, joins on topics over the length limit.
            pub inputs_refused: u64,
            /// Broadcasts delivered on this node (from here or from other
            /// nodes), counted once each however many subscribers got them.
            pub broadcasts: u64,
            /// Broadcast frames handed to subscribers on this node.
            pub deliveries: u64,
        }

        impl MetricsSnapshot {
            /// Whether the field named `field` is a current value (it goes
            /// up and down); every other field is a total that only grows.
            ///
            /// ```
            /// # use phx_channels_runtime as phx_channels;
            /// use phx_channels::MetricsSnapshot;
            ///
            /// assert!(MetricsSnapshot::is_current("connections_open"));
            /// assert!(MetricsSnapshot::is_current("outbound_queued_bytes"));
            /// assert!(!MetricsSnapshot::is_current("joins"));
            /// ```
            pub fn is_current(field: &str) -> bool {
                match field {
                    $( stringify!($name) => metrics!(@current $kind), )*
                    _ => false,
                }
            }
        }

        impl Metrics {
            /// Registers every figure with the application's recorder (the
            /// endpoint does, as it starts serving), so that all are
            /// exported from the start, at 0.
            pub(crate) fn export(&self) {
                $( self.$name.export(); )*
                self.connections_refused.export();
                self.inputs_refused.export();
            }

            pub(crate) fn snapshot(&self, fanout: &Fanout) -> MetricsSnapshot {
                MetricsSnapshot {
                    $( $name: self.$name.get(), )*
                    connections_refused: self.connections_refused.total(),
                    inputs_refused: self.inputs_refused.total(),
                    broadcasts: fanout.broadcasts.get(),
                    deliveries: fanout.deliveries.get(),
                }
            }
        }

        impl std::fmt::Debug for Metrics {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Metrics")
                    $( .field(stringify!($name), &self.$name.get()) )*
                    .field("connections_refused", &self.connections_refused.total())
                    .field("inputs_refused", &self.inputs_refused.total())
                    .finish()
            }
        }
    };
    (@current Level) => { true };
    (@current $kind:ident) => { false };
}

metrics! {
    /// Connections accepted by `connect`.
    Count connections_accepted = "channels_connections_accepted_total",
    /// Connections open now.
    Level connections_open = "channels_connections_open",
    /// LongPoll sessions open now (also counted in `connections_open`).
    Level longpoll_sessions = "channels_longpoll_sessions",
    /// Channels joined.
    Tally joins = "channels_joins_total",
    /// Joins refused by the channel, the channel cap or no route.
    Tally joins_refused = "channels_joins_total",
    /// Joins whose `join` panicked or failed.
    Tally join_crashes = "channels_joins_total",
    /// Channels joined now.
    Level channels_open = "channels_channels_open",
    /// Channels that crashed after joining.
    Tally channel_crashes = "channels_crashes_total",
    /// Client messages received (heartbeats included).
    Count messages_in = "channels_messages_in_total",
    /// Frames written to clients.
    Count frames_out = "channels_frames_out_total",
    /// Bytes of frames written to clients.
    Count bytes_out = "channels_bytes_out_total",
    /// Bytes of frames queued for WebSocket clients, not yet written.
    Level outbound_queued_bytes = "channels_outbound_queued_bytes",
    /// Connections closed for sending a malformed or oversized frame.
    Count malformed_frames = "channels_malformed_frames_total",
    /// Connections closed for falling too far behind.
    Count slow_consumers = "channels_slow_consumers_total",
    /// Broadcasts and presence tracks a channel was refused for going over
    /// a fan-out limit (size or rate).
    Count fanout_refused = "channels_fanout_refused_total",
}

/// What a PubSub counts, whichever endpoints share it.
pub(crate) struct Fanout {
    pub(crate) broadcasts: Count,
    pub(crate) deliveries: Count,
}

impl Fanout {
    pub(crate) fn export(&self) {
        self.broadcasts.export();
        self.deliveries.export();
    }
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout {
            broadcasts: Count::new(
                "channels_broadcasts_total",
                &[],
                "Broadcasts delivered on this node, once each however many subscribers got them",
            ),
            deliveries: Count::new(
                "channels_deliveries_total",
                &[],
                "Broadcast frames handed to subscribers on this node",
            ),
        }
    }
}

/// What a broker adapter counts, mirrored to the recorder as it counts.
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) struct Broker {
    pub(crate) published: Count,
    pub(crate) received: Count,
    pub(crate) dropped: Count,
    pub(crate) refused: Count,
    pub(crate) reconnects: Count,
    pub(crate) subscriptions: Level,
}

#[cfg(any(feature = "redis", feature = "nats"))]
impl Default for Broker {
    fn default() -> Self {
        const MESSAGES: &str = "channels_broker_messages_total";
        const MESSAGES_HELP: &str = "Broadcasts carried by the broker, by direction";
        Broker {
            published: Count::new(MESSAGES, &[("direction", "out")], MESSAGES_HELP),
            received: Count::new(MESSAGES, &[("direction", "in")], MESSAGES_HELP),
            dropped: Count::new(
                "channels_broker_dropped_total",
                &[],
                "Broadcasts that stayed on this node while the broker was away",
            ),
            refused: Count::new(
                "channels_broker_refused_total",
                &[],
                "Broadcasts refused because the broker could not keep up",
            ),
            reconnects: Count::new(
                "channels_broker_reconnects_total",
                &[],
                "Broker connections that came back after an outage",
            ),
            subscriptions: Level::new("channels_broker_subscriptions", "Broker subscriptions held now"),
        }
    }
}

/// The channel-level figures, labelled by channel type (and event),
/// through the recorder only. Their handles are taken once per channel type
/// (a registry lookup per figure costs more than the rest of a reply), and
/// kept for the life of the process: there are as many as the program has
/// channel types.
pub(crate) mod channel {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::LazyLock;

    use parking_lot::RwLock;

    use super::Instant;

    /// How a join ended: the `outcome` label.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Outcome {
        Ok = 0,
        Refused = 1,
        Crashed = 2,
    }

    /// The recorder's handles of one channel type.
    pub(crate) struct Figures {
        name: &'static str,
        joins: [metrics::Counter; 3],
        join_duration: metrics::Histogram,
        /// One per event the channel declares, searched in order (a
        /// channel declares a handful).
        events: Box<[(&'static str, metrics::Histogram)]>,
        other: metrics::Histogram,
    }

    static ALL: LazyLock<RwLock<HashMap<TypeId, &'static Figures, ById>>> = LazyLock::new(RwLock::default);

    /// A `TypeId` is a hash already: SipHash over it again was a fifth of
    /// what the figures cost a reply.
    type ById = std::hash::BuildHasherDefault<TypeIdHasher>;

    #[derive(Default)]
    struct TypeIdHasher(u64);

    impl std::hash::Hasher for TypeIdHasher {
        fn finish(&self) -> u64 {
            self.0
        }

        fn write(&mut self, bytes: &[u8]) {
            // However `TypeId` writes itself, every byte counts.
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }

        fn write_u64(&mut self, n: u64) {
            self.0 ^= n;
        }
    }

    /// The figures of the channel type `id`, made on its first use.
    pub(crate) fn of(id: TypeId, name: fn() -> &'static str, events: &'static [&'static str]) -> &'static Figures {
        if let Some(figures) = ALL.read().get(&id) {
            return figures;
        }
        ALL.write().entry(id).or_insert_with(|| Box::leak(Box::new(Figures::new(name(), events))))
    }

    /// Joins refused before they reached a channel (their rate, the
    /// channel cap, no route): channel `none`.
    pub(crate) fn unrouted() -> &'static Figures {
        /// Stands for no channel type in the map.
        struct Unrouted;
        of(TypeId::of::<Unrouted>(), || "none", &[])
    }

    impl Figures {
        fn new(name: &'static str, events: &'static [&'static str]) -> Self {
            describe();
            let joins = ["ok", "refused", "crashed"]
                .map(|outcome| metrics::counter!("channels_joins_total", "channel" => name, "outcome" => outcome));
            let handled = |event: &'static str| metrics::histogram!("channels_handle_in_duration_seconds", "channel" => name, "event" => event);
            Figures {
                name,
                joins,
                join_duration: metrics::histogram!("channels_join_duration_seconds", "channel" => name),
                events: events.iter().map(|&event| (event, handled(event))).collect(),
                other: handled("other"),
            }
        }

        /// The channel's name, as its label.
        pub(crate) fn name(&self) -> &'static str {
            self.name
        }

        /// A join ended after starting at `started`.
        pub(crate) fn joined(&self, outcome: Outcome, started: Instant) {
            self.joins[outcome as usize].increment(1);
            self.join_duration.record(started.elapsed());
        }

        /// A `handle_in` of `event` ran from `started` until now; an event
        /// the channel does not declare is counted as `other`.
        pub(crate) fn handled(&self, event: &str, started: Instant) {
            let histogram = self.events.iter().find(|(declared, _)| *declared == event).map_or(&self.other, |(_, h)| h);
            histogram.record(started.elapsed());
        }

        /// A callback crashed (rare: its handle is looked up each time).
        pub(crate) fn crashed(&self, callback: &'static str) {
            metrics::counter!("channels_crashes_total", "channel" => self.name, "callback" => callback).increment(1);
        }
    }

    /// Describes the channel-level figures to the recorder, once.
    fn describe() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            metrics::describe_counter!("channels_joins_total", "Joins, by channel and outcome");
            metrics::describe_histogram!(
                "channels_join_duration_seconds",
                metrics::Unit::Seconds,
                "Time from a join's arrival to its reply"
            );
            metrics::describe_histogram!(
                "channels_handle_in_duration_seconds",
                metrics::Unit::Seconds,
                "Time a handle_in took, by channel and event"
            );
            metrics::describe_counter!("channels_crashes_total", "Channel callbacks that panicked or failed");
        });
    }
}
