//! permessage-deflate (RFC 7692): the negotiation, on the server's side.
//!
//! A client offers the extension in `Sec-WebSocket-Extensions`, possibly
//! several times with different parameters, in order of preference; the
//! server takes the first offer it can honour and answers with the
//! parameters it agreed to, or declines them all (the connection is then
//! uncompressed). [`negotiate`] does that for a server that:
//!
//! - always uses `server_no_context_takeover`: each message it sends is
//!   compressed on its own, so a broadcast can be compressed **once** and
//!   the same bytes sent to every subscriber that agreed to the extension
//!   (with context takeover, each connection's compressor would have its
//!   own history, and each subscriber would need its own compression), and
//!   an idle connection keeps no compressor window;
//! - always asks for `client_no_context_takeover` (RFC 7692 §7.1.1.2 lets
//!   a server ask whether or not the client offered it): the server
//!   inflates each message on its own, so an idle connection keeps no
//!   decompressor window either; and bounds the client's window with
//!   `client_max_window_bits` when the client allows that parameter;
//! - compresses with a window of at most the `server_max_window_bits` the
//!   client asks for.
//!
//! An offer with an unknown parameter, a parameter given twice, or a value
//! out of range is declined (RFC 7692 §5.1, §7.1); the next one is tried.
//!
//! The compression itself (inflate bounded by the message limit, deflate
//! of a broadcast once) is not here yet: see `docs/compression.md`.

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const NAME: &str = "permessage-deflate";

/// What the server and the client agreed to for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The client compresses each message on its own (it keeps no window
    /// between messages): always asked for by [`negotiate`].
    pub client_no_context_takeover: bool,
    /// The LZ77 window the client compresses with, at most (8..=15 bits;
    /// 15 when not bounded). The server's inflater needs this much.
    pub client_max_window_bits: u8,
    /// The LZ77 window the server compresses with, at most (8..=15 bits).
    pub server_max_window_bits: u8,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the server's answer.
    pub fn response(&self) -> String {
        let mut answer = format!("{NAME}; server_no_context_takeover");
        if self.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            answer.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        if self.client_max_window_bits < 15 {
            answer.push_str(&format!("; client_max_window_bits={}", self.client_max_window_bits));
        }
        answer
    }
}

/// What a server wants of the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The largest window the server inflates with (8..=15): a client that
    /// allows `client_max_window_bits` is held to it. A client that does
    /// not allow it (it may then use 15) is still taken: RFC 7692 lets a
    /// server refuse only by declining, and 32 KiB per message being
    /// inflated is bounded anyway.
    pub client_max_window_bits: u8,
}

impl Default for Wanted {
    fn default() -> Self {
        Wanted { client_max_window_bits: 15 }
    }
}

/// One parameter of an offer, as written.
fn parameters(offer: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    offer.split(';').skip(1).map(|parameter| match parameter.split_once('=') {
        Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
        None => (parameter.trim(), None),
    })
}

/// A window size parameter's value (8..=15).
fn window_bits(value: &str) -> Option<u8> {
    // RFC 7692 §7.1.2.1: 1*DIGIT, no leading zero.
    if value.starts_with('0') || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// The agreement one offer allows, or `None` if it must be declined.
fn agree(offer: &str, wanted: Wanted) -> Option<Agreed> {
    let mut agreed =
        Agreed { client_no_context_takeover: true, client_max_window_bits: 15, server_max_window_bits: 15 };
    let mut seen = [false; 4];
    let mut client_allows_bound = false;
    for (name, value) in parameters(offer) {
        let index = match name {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        match (index, value) {
            // The server takes no context over anyway.
            (0, None) => {}
            // Asked for anyway.
            (1, None) => {}
            (2, Some(value)) => agreed.server_max_window_bits = window_bits(value)?,
            (3, None) => client_allows_bound = true,
            (3, Some(value)) => {
                // The client says it will use at most this; the server may
                // ask for less.
                client_allows_bound = true;
                agreed.client_max_window_bits = window_bits(value)?;
            }
            _ => return None,
        }
    }
    if client_allows_bound {
        agreed.client_max_window_bits = agreed.client_max_window_bits.min(wanted.client_max_window_bits);
    }
    Some(agreed)
}

/// The agreement for a client's `Sec-WebSocket-Extensions` values (every
/// header line; each may hold several extensions, comma-separated): the
/// first permessage-deflate offer the server can honour, or `None` (no
/// offer, or none acceptable: the connection is uncompressed).
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>, wanted: Wanted) -> Option<Agreed> {
    headers
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter(|offer| offer.split(';').next().is_some_and(|name| name.trim().eq_ignore_ascii_case(NAME)))
        .find_map(|offer| agree(offer, wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str) -> Option<String> {
        negotiate([header], Wanted::default()).map(|agreed| agreed.response())
    }

    #[test]
    fn what_browsers_offer_is_taken_with_no_context_kept_on_either_side() {
        // Chrome and Firefox.
        assert_eq!(
            one("permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        let bounded = negotiate(["permessage-deflate; client_max_window_bits"], Wanted { client_max_window_bits: 10 });
        assert_eq!(
            bounded.unwrap().response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
        );
        // tokio-tungstenite / Autobahn's client with everything asked for.
        assert_eq!(
            one("permessage-deflate; client_no_context_takeover; server_no_context_takeover; server_max_window_bits=9")
                .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"
            )
        );
        assert_eq!(
            one("x-webkit-deflate-frame, permessage-deflate").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn offers_the_rfc_says_to_decline_are_declined_and_the_next_is_tried() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        ] {
            assert_eq!(one(bad), None, "{bad}");
        }
        let second = negotiate(
            ["permessage-deflate; server_max_window_bits=16", "permessage-deflate; client_max_window_bits=12"],
            Wanted::default(),
        );
        assert_eq!(
            second,
            Some(Agreed { client_no_context_takeover: true, client_max_window_bits: 12, server_max_window_bits: 15 })
        );
        assert_eq!(negotiate([], Wanted::default()), None);
        assert_eq!(one("permessage-foo"), None);
    }
}
