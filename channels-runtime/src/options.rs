//! [`SocketOptions`]: the limits and policies of a mounted socket.

use std::time::Duration;

use crate::origin::CheckOrigin;

/// The limits and policies of a socket, given to
/// [`Endpoint::socket_with`](crate::endpoint::Endpoint::socket_with).
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use std::time::Duration;
/// use phx_channels::{origin::CheckOrigin, SocketOptions};
///
/// let options = SocketOptions {
///     max_channels: 20,
///     idle_timeout: Duration::from_secs(90),
///     check_origin: CheckOrigin::allow(["https://example.com"]).unwrap(),
///     ..SocketOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Channels one connection may have joined at once (Phoenix ≥ 1.8.9:
    /// 100). A join over the limit is answered
    /// `{"reason":"too many channels joined"}`.
    pub max_channels: usize,
    /// The longest topic a client may join, in bytes; 0: unlimited. A
    /// longer one is refused at join with
    /// `{"reason": "topic too long", "max": max_topic_bytes}`, before any
    /// channel or subscription is made for it (every reply, presence
    /// state and diff on a topic echoes it: 100 joins of 2 MB topics held
    /// 600 MB). Phoenix sets no limit; Centrifugo's `channel_max_length`
    /// is 255. Default: 1 KiB, far above an id-based topic
    /// (`"room:" + uuid` is 41 bytes, an Absinthe subscription's topic 83).
    pub max_topic_bytes: usize,
    /// Joins one connection may make per second (0: unlimited); more are
    /// answered `{"reason":"too many joins"}` (phoenix.js retries on its
    /// rejoin back-off). The default leaves room for a reconnect that
    /// rejoins `max_channels` channels at once.
    pub max_joins_per_second: u32,
    /// A connection that sends nothing for this long is closed (1001, so
    /// phoenix.js reconnects). Phoenix: 60 s; phoenix.js heartbeats every 30 s.
    /// A client is heard when a message of its completes, not on every
    /// byte: a message must arrive whole within this long of the last one
    /// (10 MB in 60 s is 170 KB/s), so that one dripped a byte at a time
    /// cannot hold its buffer.
    pub idle_timeout: Duration,
    /// The largest message a client may send; larger ones close the
    /// connection with 1009. Phoenix (websock_adapter ≥ 0.6): 10 MB.
    pub max_frame_size: usize,
    /// Bytes that may wait to be written to one client before it counts as
    /// a slow consumer and is disconnected (1008). A single frame larger
    /// than this closes the connection the same way rather than being
    /// queued.
    pub max_outbound_bytes: usize,
    /// Which web pages may open the socket. Default: the server's own host
    /// and loopback hosts.
    pub check_origin: CheckOrigin,
    /// Serve the LongPoll transport at `<path>/longpoll` too (off by
    /// default, as in Phoenix; phoenix.js falls back to it where WebSockets
    /// are blocked).
    pub longpoll: bool,
    /// How long a LongPoll `GET` is held open when nothing is queued;
    /// a session with no poll for 1.5 × this long ends. Phoenix: 10 s.
    pub longpoll_window: Duration,
    /// LongPoll sessions this socket holds at once (each also counts toward
    /// [`Endpoint::max_connections`](crate::endpoint::Endpoint::max_connections)).
    /// A session opened over it is refused with HTTP 503 and `Retry-After`,
    /// whose body phoenix.js reads as a lost server: it retries with its
    /// back-off.
    pub max_longpoll_sessions: usize,
    /// The largest payload, in encoded bytes (JSON text or binary), that a
    /// channel may broadcast from a [`Socket`](crate::socket::Socket)
    /// (`broadcast`, `broadcast_from`, `local_broadcast`); 0: unlimited.
    /// One client's payload goes to every subscriber, so this bounds what
    /// one message can make the server fan out: without it a sender of
    /// large messages fills its readers' outbound queues until they are
    /// closed as slow consumers.
    ///
    /// A larger broadcast fails with
    /// [`BroadcastError::TooLarge`](crate::pubsub::BroadcastError::TooLarge).
    /// When a `handle_in` returns it (with `?`), the channel does not
    /// crash: the message is answered `error` with
    /// `{"reason": "broadcast too large", "max": max_broadcast_bytes}`;
    /// inside `join`, the join is refused with that response.
    /// Broadcasts made by the application itself
    /// ([`Endpoint::broadcast`](crate::endpoint::Endpoint::broadcast),
    /// [`PubSub::broadcast`](crate::pubsub::PubSub::broadcast)) are not
    /// limited. Default: 64 KiB.
    pub max_broadcast_bytes: usize,
    /// The largest presence meta a channel may track or update, in encoded
    /// JSON bytes, its key included; 0: unlimited. Every member of the
    /// topic receives each meta in a `presence_diff`, and every later
    /// joiner in its `presence_state`.
    ///
    /// A larger one fails with
    /// [`PresenceError::MetaTooLarge`](crate::presence::PresenceError::MetaTooLarge);
    /// propagated from `handle_in`, the message is answered `error` with
    /// `{"reason": "presence meta too large", "max": max_presence_meta_bytes}`
    /// and the channel keeps running. Default: 4 KiB.
    pub max_presence_meta_bytes: usize,
    /// Broadcasts the channels of one connection may make per second,
    /// together (a fixed one-second window); 0: unlimited. Over it,
    /// broadcasts fail with
    /// [`BroadcastError::RateLimited`](crate::pubsub::BroadcastError::RateLimited);
    /// propagated from `handle_in`, the message is answered `error` with
    /// `{"reason": "too many broadcasts", "max_per_second": max_broadcasts_per_second}`.
    /// Default: 100.
    pub max_broadcasts_per_second: u32,
    /// Bytes the channels of one connection may broadcast per second,
    /// together (a fixed one-second window; a broadcast counts its
    /// payload, topic and event); 0: unlimited. Every subscriber gets each
    /// broadcast, so this is what one sender can make every reader of its
    /// topics download: under a reader's rate, readers are not closed as
    /// slow consumers by one sender (at 100 broadcasts of 64 KiB a second,
    /// the limits above let one member push 6.5 MB/s to every member).
    /// Over it, broadcasts fail with
    /// [`BroadcastError::RateLimited`](crate::pubsub::BroadcastError::RateLimited);
    /// propagated from `handle_in`, the message is answered `error` with
    /// `{"reason": "too many broadcast bytes", "max_bytes_per_second": N}`.
    /// The first broadcast of a window always fits (it is bounded by
    /// `max_broadcast_bytes`), so a payload larger than this goes out at
    /// most once a second rather than never. Default: 256 KiB.
    pub max_broadcast_bytes_per_second: usize,
    /// Bytes the clients of this node may broadcast per second on one
    /// topic, together (whoever sends: many senders on one topic are held
    /// to what one reader of it can take); 0: unlimited. Over it,
    /// broadcasts fail the same way, answered
    /// `{"reason": "too many broadcast bytes on this topic", "max_bytes_per_second": N}`
    /// (the first broadcast of a topic's window always fits). The
    /// application's own broadcasts are not limited. Default: 512 KiB.
    pub max_topic_broadcast_bytes_per_second: usize,
    /// LongPoll sessions one client address may open per second (a fixed
    /// one-second window; an IPv4 address or an IPv6 /64); 0: unlimited.
    /// Over it, the open is refused like a full socket: HTTP 503 with
    /// `Retry-After`, which phoenix.js retries with its back-off. A
    /// session never polled after it opened ends after half the poll
    /// window (phoenix.js polls at once). Default: 20.
    pub max_longpoll_opens_per_second: u32,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            max_channels: 100,
            max_topic_bytes: 1024,
            max_joins_per_second: 200,
            idle_timeout: Duration::from_secs(60),
            max_frame_size: 10_000_000,
            max_outbound_bytes: 8 * 1024 * 1024,
            check_origin: CheckOrigin::default(),
            longpoll: false,
            longpoll_window: Duration::from_secs(10),
            max_longpoll_sessions: 10_000,
            max_broadcast_bytes: 64 * 1024,
            max_presence_meta_bytes: 4 * 1024,
            max_broadcasts_per_second: 100,
            max_broadcast_bytes_per_second: 256 * 1024,
            max_topic_broadcast_bytes_per_second: 512 * 1024,
            max_longpoll_opens_per_second: 20,
        }
    }
}
