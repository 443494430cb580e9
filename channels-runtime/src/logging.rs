//! Log lines a peer cannot inflate: strings it sent are clipped, and a
//! warning it can trigger at will is rate-limited.
//!
//! A client chooses its topics, events and the reasons it sends; logging
//! them whole would let one 9 MB topic make a 9 MB line, and a loop of
//! refused joins make megabytes a second.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;

/// How much of a peer-supplied string a log line keeps.
pub(crate) const CLIP_BYTES: usize = 100;

/// `text` for a log field: its first [`CLIP_BYTES`] bytes (cut on a char
/// boundary), quoted and escaped so it cannot forge lines, and its length
/// when cut. Log it with `?`, like a plain string field.
pub(crate) fn clip(text: &str) -> Clipped<'_> {
    Clipped(text, CLIP_BYTES)
}

/// How much of an error's chain a crash line keeps: the chain is what an
/// operator needs, so it gets more room than a topic, but an error that
/// quotes a peer's input still cannot make a megabyte line.
pub(crate) const CLIP_ERROR_BYTES: usize = 2_000;

/// A handler error's chain for a log field: like [`clip`], with room for
/// the whole chain of any ordinary error.
pub(crate) fn clip_error(text: &str) -> Clipped<'_> {
    Clipped(text, CLIP_ERROR_BYTES)
}

/// A peer-supplied string as a log field (see [`clip`]), and how many
/// bytes of it to keep.
pub(crate) struct Clipped<'a>(&'a str, usize);

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let mut end = text.len().min(self.1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "\"{}\"", text[..end].escape_debug())?;
        if end < text.len() {
            write!(f, "… ({} bytes)", text.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Lets the first `limit` lines of each `interval` through; what it holds
/// back is counted and reported in one line when the next interval opens
/// (or when the throttle is dropped, with its connection).
///
/// Kept to 40 bytes (times in 32-bit milliseconds, see [`crate::clock`]).
pub(crate) struct Throttle {
    limit: u32,
    interval_ms: u32,
    /// Names the lines held back, in the summary.
    what: &'static str,
    state: Mutex<Window>,
}

struct Window {
    open: bool,
    opened: u32,
    logged: u32,
    suppressed: u32,
}

impl Throttle {
    pub(crate) const fn new(limit: u32, interval: Duration, what: &'static str) -> Self {
        let window = Window { open: false, opened: 0, logged: 0, suppressed: 0 };
        Throttle { limit, interval_ms: crate::clock::ms(interval), what, state: Mutex::new(window) }
    }

    /// Whether this line may be logged.
    pub(crate) fn allow(&self) -> bool {
        let now = crate::clock::now_ms();
        let mut window = self.state.lock();
        if !window.open || crate::clock::elapsed_ms(window.opened, now) >= self.interval_ms {
            let suppressed = std::mem::take(&mut window.suppressed);
            *window = Window { open: true, opened: now, logged: 0, suppressed: 0 };
            drop(window);
            self.summarize(suppressed);
            window = self.state.lock();
        }
        if window.logged < self.limit {
            window.logged += 1;
            true
        } else {
            window.suppressed = window.suppressed.saturating_add(1);
            false
        }
    }

    fn summarize(&self, suppressed: u32) {
        if suppressed > 0 {
            let interval = Duration::from_millis(u64::from(self.interval_ms));
            tracing::warn!(suppressed, ?interval, "{}: {suppressed} more suppressed", self.what);
        }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let suppressed = self.state.get_mut().suppressed;
        self.summarize(suppressed);
    }
}

/// How often each [`Line`] is let through: the first of each interval.
pub(crate) const LINE_INTERVAL: Duration = Duration::from_secs(10);

macro_rules! lines {
    ($( $(#[doc = $doc:literal])* $name:ident => $what:literal, )*) => {
        /// The log lines a peer can make the server write at will (a
        /// refusal, a malformed frame, a connection it gets closed): each is
        /// throttled endpoint-wide by [`Lines`], one per [`LINE_INTERVAL`],
        /// and the next one says how many were held back. What a line says
        /// is its [`Line::what`], so that its summary names it the same way.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Line {
            $( $(#[doc = $doc])* $name, )*
        }

        impl Line {
            const ALL: &'static [Line] = &[$(Line::$name,)*];

            /// The line's message.
            pub(crate) const fn what(self) -> &'static str {
                match self {
                    $( Line::$name => $what, )*
                }
            }
        }
    };
}

lines! {
    /// An upgrade or LongPoll request from an `Origin` not allowed.
    Origin => "connect refused: origin not allowed (see SocketOptions::check_origin)",
    /// A `vsn` no serializer speaks.
    Vsn => "connect refused: unsupported vsn",
    /// The endpoint is at `max_connections`.
    ConnectionLimit => "connect refused: the endpoint is at its connection limit",
    /// A source is at `ServerOptions::max_connections_per_source`.
    SourceLimit => "connect refused: the client's address is at ServerOptions::max_connections_per_source",
    /// Out of file descriptors: a connection accepted on the spare one and answered 503.
    OutOfFiles => "connection refused: the process is out of file descriptors",
    /// The application's `connect` refused.
    ConnectRefused => "connect refused",
    /// The application's `connect` panicked.
    ConnectPanicked => "connect panicked",
    /// A LongPoll socket at `max_longpoll_sessions`.
    LongpollFull => "longpoll session refused: the socket is at SocketOptions::max_longpoll_sessions",
    /// A source opening LongPoll sessions faster than allowed.
    LongpollRate => "longpoll session refused: too many LongPoll sessions opened from one address (SocketOptions::max_longpoll_opens_per_second)",
    /// A LongPoll body over the limit, over the in-flight budget, or late.
    LongpollBody => "longpoll body refused",
    /// A LongPoll body that does not decode.
    LongpollMalformed => "malformed longpoll body",
    /// A frame the serializer cannot decode.
    MalformedFrame => "closing a connection that sent a malformed frame",
    /// A message over `max_frame_size`.
    TooLarge => "closing a connection that sent an oversized message",
    /// A message over the endpoint's in-flight budget.
    InflightBudget => "closing a connection whose message does not fit the server's in-flight budget (ServerOptions::max_inflight_bytes)",
    /// Text that is not UTF-8.
    Utf8 => "closing a connection that sent a text frame that is not UTF-8",
    /// A WebSocket protocol error.
    Protocol => "closing a connection that broke the WebSocket protocol",
    /// A client that fell behind `max_outbound_bytes`.
    SlowConsumer => "closing a connection that fell too far behind (SocketOptions::max_outbound_bytes)",
    /// A client silent, or stuck in one message, for the idle timeout.
    Idle => "closing an idle connection",
    /// A client that read nothing for the idle timeout.
    Stalled => "closing a connection that read nothing for the idle period",
    /// Joins over `max_joins_per_second`.
    JoinRate => "join refused: too many joins per second",
    /// A join on a topic no route matches.
    Unmatched => "join on a topic no route matches",
    /// Joins over `max_channels`.
    ChannelLimit => "join refused: too many channels",
    /// A topic over `max_topic_bytes`.
    TopicTooLong => "join refused: topic too long (SocketOptions::max_topic_bytes)",
    /// A join the channel refused.
    JoinRefused => "join refused",
    /// A join whose `phx_position` is not a position.
    InvalidPosition => "join with an invalid phx_position: not recovered",
    /// A handler or join that hit a fan-out limit.
    FanoutLimit => "fan-out limit hit; answered with an error",
    /// The dashboard's page refused.
    DashboardRefused => "dashboard page refused",
}

/// One [`Throttle`] per [`Line`]: an endpoint's, so that however many
/// connections a client opens, each reason logs one line per interval.
pub(crate) struct Lines(Box<[Throttle]>);

impl Default for Lines {
    fn default() -> Self {
        Lines(Line::ALL.iter().map(|line| Throttle::new(1, LINE_INTERVAL, line.what())).collect())
    }
}

impl Lines {
    /// Whether `line` may be logged now.
    pub(crate) fn allow(&self, line: Line) -> bool {
        self.0[line as usize].allow()
    }
}

impl fmt::Debug for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_a_char_boundary_and_says_how_long_it_was() {
        assert_eq!(format!("{:?}", clip("room:1")), r#""room:1""#);
        let long = "é".repeat(80); // 160 bytes; byte 100 falls inside no char
        let clipped = format!("{:?}", clip(&long));
        assert_eq!(clipped, format!("\"{}\"… (160 bytes)", "é".repeat(50)));
        assert_eq!(format!("{:?}", clip("a\nforged line")), r#""a\nforged line""#);
    }

    #[tokio::test(start_paused = true)]
    async fn lets_the_first_lines_of_each_interval_through() {
        let throttle = Throttle::new(3, Duration::from_secs(10), "test lines");
        let allowed = (0..100).filter(|_| throttle.allow()).count();
        assert_eq!(allowed, 3);
        assert_eq!(throttle.state.lock().suppressed, 97);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(throttle.allow());
        assert_eq!(throttle.state.lock().suppressed, 0, "reported when the window opened");
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_line_has_its_own_interval() {
        let lines = Lines::default();
        assert!(lines.allow(Line::Origin));
        assert!(!lines.allow(Line::Origin));
        assert!(lines.allow(Line::Vsn), "another reason is not held back");
        tokio::time::advance(LINE_INTERVAL).await;
        assert!(lines.allow(Line::Origin));
    }
}
