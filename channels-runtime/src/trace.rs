//! Traces across the socket: the W3C [`TraceParent`] a client sends with its
//! connect request, and the `tracing` spans every connection and channel
//! runs in.
//!
//! Every connection runs in a `socket` span (`transport`, `peer`, the
//! socket `id`, and `trace_id` when the client sent a trace context), and
//! every step of a joined channel (its join, each message, its end) in a
//! `channel` span inside it (`topic`, `join_ref`, `channel`): what `join`,
//! `handle_in`, `handle_info`, `handle_out` and `terminate` log carries
//! both, whatever the subscriber.
//!
//! A client sends its trace context as the `traceparent` header of the
//! connect request or, since a browser's WebSocket cannot set headers, as
//! the `traceparent` connect parameter (phoenix.js:
//! `new Socket("/socket", {params: {traceparent}})`). Handlers read it with
//! [`Socket::traceparent`](crate::socket::Socket::traceparent). With the
//! `opentelemetry` feature and a `tracing-opentelemetry` layer in the
//! application's subscriber, it also becomes the parent of the connection's
//! span, so the spans join the client's trace (see
//! `docs/observability.md`).

use std::fmt;

/// A W3C Trace Context `traceparent`: which trace a request belongs to, and
/// the span in the caller that made it.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::trace::TraceParent;
///
/// let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(parent.parent_id_hex(), "00f067aa0ba902b7");
/// assert!(parent.is_sampled());
/// assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
///
/// // All-zero ids and the forbidden version ff are not trace contexts.
/// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// assert!(TraceParent::parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value as the W3C recommendation says a
    /// receiver must: version `00` exactly as specified, a later version by
    /// its first four fields; `None` for anything else (a malformed value
    /// is ignored, never an error: the request goes on untraced).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        // version "-" trace-id "-" parent-id "-" flags
        if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version = hex::<1>(&bytes[0..2])?[0];
        if version == 0xff
            || (version == 0 && bytes.len() != 55)
            || (version != 0 && bytes.len() > 55 && bytes[55] != b'-')
        {
            return None;
        }
        let trace_id = hex::<16>(&bytes[3..35])?;
        let parent_id = hex::<8>(&bytes[36..52])?;
        let flags = hex::<1>(&bytes[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, parent_id, flags })
    }

    /// The trace's id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the caller's span that sent the request.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller recorded its side of the trace.
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lowercase hex digits, as logs and trace UIs
    /// show it.
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The parent span's id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        to_hex(&self.parent_id)
    }
}

/// The `traceparent` value (version `00`), to send on to another service.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", to_hex(&self.trace_id), to_hex(&self.parent_id), self.flags)
    }
}

/// Lowercase hex only, as the recommendation requires. Bytes, not `str`
/// slices: a peer's value may put a multi-byte character anywhere.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The span a connection runs in: its transport and peer, its socket id
/// (recorded once `connect` and `id` ran), and the client's trace.
pub(crate) fn connection_span(
    transport: &'static str,
    peer: Option<std::net::SocketAddr>,
    parent: Option<&TraceParent>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "socket",
        transport,
        peer = peer.map(tracing::field::display),
        id = tracing::field::Empty,
        trace_id = parent.map(|p| tracing::field::display(p.trace_id_hex())),
    );
    #[cfg(feature = "opentelemetry")]
    if let Some(parent) = parent {
        otel::set_parent(&span, parent);
    }
    span
}

/// Spawns a connection's task inside its span, or bare when the span is
/// disabled (spans filtered out, or no subscriber): the span would be 40
/// bytes more in every connection's task for nothing.
pub(crate) fn spawn_in<F>(span: tracing::Span, task: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;
    if span.is_disabled() {
        tokio::spawn(task);
    } else {
        tokio::spawn(task.instrument(span));
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceParent;

    /// Makes the client's span the parent of `span`, for the application's
    /// `tracing-opentelemetry` layer (nothing happens without one).
    pub(super) fn set_parent(span: &tracing::Span, parent: &TraceParent) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        // Fails only when the subscriber has no OpenTelemetry layer.
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::TraceParent;

    proptest! {
        /// Whatever a peer sends, parsing never panics, and what parses
        /// prints back as the version-00 form of its first four fields.
        #[test]
        fn any_value_parses_or_is_ignored(value in "\\PC{0,80}", dashes in "[0-9a-f-]{50,70}") {
            for v in [&value, &dashes] {
                if let Some(parent) = TraceParent::parse(v) {
                    prop_assert_eq!(TraceParent::parse(&parent.to_string()), Some(parent));
                }
            }
        }
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_what_the_recommendation_allows() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(parent.flags(), 1);
        assert_eq!(TraceParent::parse(&format!(" {VALID}\t")), Some(parent));
        // A later version: its first four fields, and whatever follows a dash.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-ever").is_some());
        assert!(!TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap().is_sampled());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "00",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
