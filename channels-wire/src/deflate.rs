//! permessage-deflate (RFC 7692): the negotiation, on the server's side
//! ([`negotiate`]) and on the client's ([`accepted`]: what a server's
//! answer agreed to).
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
//! The compression itself, for both sides: [`compress`] deflates one
//! message on its own (what `*_no_context_takeover` allows: the stream is
//! reset after each message), and an [`Inflater`] inflates one message,
//! bounded by the message limit as its output grows. Both keep their zlib
//! state per thread between messages, not per connection: an idle
//! connection holds none.

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

/// The extension's parameters (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parameter {
    ServerNoContextTakeover,
    ClientNoContextTakeover,
    ServerMaxWindowBits,
    ClientMaxWindowBits,
}

/// The parameters of one offer or answer, each with its value as written;
/// `None` when one is unknown or given twice (the offer is declined, the
/// answer cannot be honoured).
fn parameters(extension: &str) -> Option<Vec<(Parameter, Option<&str>)>> {
    let mut seen = Vec::with_capacity(4);
    for parameter in extension.split(';').skip(1) {
        let (name, value) = match parameter.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (parameter.trim(), None),
        };
        let parameter = match name {
            "server_no_context_takeover" => Parameter::ServerNoContextTakeover,
            "client_no_context_takeover" => Parameter::ClientNoContextTakeover,
            "server_max_window_bits" => Parameter::ServerMaxWindowBits,
            "client_max_window_bits" => Parameter::ClientMaxWindowBits,
            _ => return None,
        };
        if seen.iter().any(|(p, _)| *p == parameter) {
            return None;
        }
        seen.push((parameter, value));
    }
    Some(seen)
}

/// The permessage-deflate elements of `Sec-WebSocket-Extensions` values
/// (every header line; each may hold several extensions, comma-separated).
fn elements<'a>(headers: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    headers
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter(|element| element.split(';').next().is_some_and(|name| name.trim().eq_ignore_ascii_case(NAME)))
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
    let mut client_allows_bound = false;
    for (parameter, value) in parameters(offer)? {
        match (parameter, value) {
            // The server takes no context over anyway.
            (Parameter::ServerNoContextTakeover, None) => {}
            // Asked for anyway.
            (Parameter::ClientNoContextTakeover, None) => {}
            (Parameter::ServerMaxWindowBits, Some(value)) => agreed.server_max_window_bits = window_bits(value)?,
            (Parameter::ClientMaxWindowBits, None) => client_allows_bound = true,
            (Parameter::ClientMaxWindowBits, Some(value)) => {
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
    elements(headers).find_map(|offer| agree(offer, wanted))
}

/// What a server's answer to the upgrade agreed to, as the client reads it:
/// the first permessage-deflate extension in the answer's
/// `Sec-WebSocket-Extensions` values (every header line; each may hold
/// several extensions, comma-separated), or `None` when there is none or it
/// cannot be honoured: an unknown parameter, one given twice, a window
/// size missing or out of range (RFC 7692 §5, §7.1). Parameters absent mean
/// what RFC 7692 says: context kept, windows of 15 bits.
///
/// ```
/// use phx_channels_wire::deflate::{accepted, Agreed};
///
/// // Cowboy (Phoenix), asked as a browser asks.
/// let answer = "permessage-deflate; client_no_context_takeover; client_max_window_bits=12";
/// assert_eq!(
///     accepted([answer]),
///     Some(Agreed { client_no_context_takeover: true, client_max_window_bits: 12, server_max_window_bits: 15 })
/// );
/// assert_eq!(accepted(["permessage-deflate; client_max_window_bits"]), None);
/// assert_eq!(accepted(["x-webkit-deflate-frame"]), None);
/// ```
pub fn accepted<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Agreed> {
    let answer = elements(headers).next()?;
    let mut agreed =
        Agreed { client_no_context_takeover: false, client_max_window_bits: 15, server_max_window_bits: 15 };
    for (parameter, value) in parameters(answer)? {
        match (parameter, value) {
            (Parameter::ServerNoContextTakeover, None) => {}
            (Parameter::ClientNoContextTakeover, None) => agreed.client_no_context_takeover = true,
            (Parameter::ServerMaxWindowBits, Some(value)) => agreed.server_max_window_bits = window_bits(value)?,
            (Parameter::ClientMaxWindowBits, Some(value)) => agreed.client_max_window_bits = window_bits(value)?,
            _ => return None,
        }
    }
    Some(agreed)
}

/// Messages shorter than this many bytes are sent uncompressed, by the
/// server and by the client, even on a connection that agreed to the
/// extension: a deflate block's overhead and the work cost more than the
/// few bytes it could save.
pub const COMPRESS_FROM: usize = 256;

/// What the sender strips from the end of each compressed message, and the
/// receiver appends before inflating it (RFC 7692 §7.2.1, §7.2.2): the
/// empty stored block a sync flush ends with.
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The compression level used unless told otherwise (zlib's default).
pub const DEFAULT_LEVEL: u32 = 6;

thread_local! {
    /// This thread's compressor, with its level and window: reset after
    /// each message, so it holds nothing of any connection.
    static COMPRESSOR: std::cell::RefCell<Option<(u32, u8, Compress)>> = const { std::cell::RefCell::new(None) };
    /// An inflater no message is using, for the next one on this thread.
    static SPARE_INFLATER: std::cell::Cell<Option<Box<Decompress>>> = const { std::cell::Cell::new(None) };
}

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Compresses `payload`, one whole message, as permessage-deflate sends
/// it (raw deflate, sync-flushed, [`TRAILER`] stripped), appending to
/// `out`; `level` is zlib's (0..=9), `window_bits` the LZ77 window
/// (9..=15: zlib cannot compress with 8, whose messages go uncompressed).
/// Returns `false`, with `out` as it was, when the message is better sent
/// uncompressed (the output is not smaller) or cannot be compressed.
///
/// ```
/// use phx_channels_wire::deflate::{compress, Inflater};
///
/// let text = br#"{"topic":"room:1","event":"new_msg","payload":{"body":"hello hello hello hello"}}"#;
/// let mut compressed = Vec::new();
/// assert!(compress(text, 6, 15, &mut compressed));
/// assert!(compressed.len() < text.len());
/// let mut inflated = Vec::new();
/// let mut inflater = Inflater::new();
/// inflater.inflate(&compressed, &mut inflated, 1 << 20).unwrap();
/// inflater.finish(&mut inflated, 1 << 20).unwrap();
/// assert_eq!(inflated, text);
/// ```
pub fn compress(payload: &[u8], level: u32, window_bits: u8, out: &mut Vec<u8>) -> bool {
    if !(9..=15).contains(&window_bits) {
        return false;
    }
    let level = level.min(9);
    let start = out.len();
    let done = COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some((l, bits, compressor)) if *l == level && *bits == window_bits => compressor,
            _ => {
                &mut slot
                    .insert((
                        level,
                        window_bits,
                        Compress::new_with_window_bits(Compression::new(level), false, window_bits),
                    ))
                    .2
            }
        };
        compressor.reset();
        // Most JSON compresses to well under half: one growth at most, usually.
        out.reserve(payload.len() / 2 + 64);
        loop {
            let consumed = usize::try_from(compressor.total_in()).unwrap_or(usize::MAX);
            if compressor.compress_vec(&payload[consumed.min(payload.len())..], out, FlushCompress::Sync).is_err() {
                return false;
            }
            let consumed = usize::try_from(compressor.total_in()).unwrap_or(usize::MAX);
            // The flush is complete once all the input is in and the
            // output was not filled up.
            if consumed >= payload.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() - start > payload.len() + 64 {
                return false;
            }
            out.reserve(out.capacity().max(1024));
        }
        true
    });
    let compressed = &out[start..];
    if !done || !compressed.ends_with(&TRAILER) || compressed.len() - TRAILER.len() >= payload.len() {
        out.truncate(start);
        return false;
    }
    out.truncate(out.len() - TRAILER.len());
    true
}

/// Inflates one compressed message, frame by frame, with its output bounded:
/// a message that inflates past the limit is refused
/// ([`WireError::TooBig`], close 1009) as soon as its output passes it, so
/// a decompression bomb costs at most the limit in memory, and the CPU
/// that much output takes.
///
/// Made for one message and dropped after it: its zlib state (a 32 KiB
/// window) goes back to a per-thread spare, so an idle connection keeps
/// none. It inflates with a 15-bit window, which reads what any window
/// the peer agreed to wrote.
pub struct Inflater {
    stream: Option<Box<Decompress>>,
    /// The peer ended the deflate stream (a final block): what follows is
    /// ignored.
    ended: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("ended", &self.ended).finish_non_exhaustive()
    }
}

/// How much the output of an inflation grows at least at a time.
const INFLATE_STEP: usize = 16 * 1024;

impl Inflater {
    /// An inflater for a message (its zlib state is made, or taken from
    /// this thread's spare, on first use).
    pub fn new() -> Self {
        Inflater { stream: None, ended: false }
    }

    /// Inflates `input` (the payload of one frame of the message) onto the
    /// end of `out`, which may hold at most `max` bytes.
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), WireError> {
        self.inflate_counted(input, out, max, |_| Ok::<(), WireError>(()))
    }

    /// The end of the message: inflates the [`TRAILER`] its sender
    /// stripped.
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), WireError> {
        self.inflate(&TRAILER, out, max)
    }

    /// [`Inflater::inflate`], telling `grow` the capacity `out` is about to
    /// grow to before it does (to count it elsewhere: a budget of bytes in
    /// flight); an error from `grow` stops the inflation.
    pub fn inflate_counted<E: From<WireError>>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
        mut grow: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.ended {
            return Ok(());
        }
        let stream = self.stream.get_or_insert_with(|| match SPARE_INFLATER.take() {
            Some(spare) => spare,
            None => Box::new(Decompress::new_with_window_bits(false, 15)),
        });
        let start_in = stream.total_in();
        loop {
            if out.len() == out.capacity() {
                // Room for one byte past the limit: inflating into it says
                // the message is over.
                let ceiling = max.saturating_add(1);
                if out.len() >= ceiling {
                    return Err(WireError::TooBig { size: out.len() as u64, max }.into());
                }
                let target = out.len().saturating_add(out.len().max(INFLATE_STEP)).min(ceiling);
                grow(target)?;
                out.reserve_exact(target - out.len());
            }
            let consumed = usize::try_from(stream.total_in() - start_in).unwrap_or(usize::MAX);
            let rest = &input[consumed.min(input.len())..];
            let before = out.len();
            let status = stream.decompress_vec(rest, out, FlushDecompress::Sync).map_err(|_| WireError::Inflate)?;
            if out.len() > max {
                return Err(WireError::TooBig { size: out.len() as u64, max }.into());
            }
            let consumed = usize::try_from(stream.total_in() - start_in).unwrap_or(usize::MAX);
            match status {
                Status::StreamEnd => {
                    self.ended = true;
                    return Ok(());
                }
                // Everything taken, and room left: all it gives is out.
                _ if consumed >= input.len() && out.len() < out.capacity() => return Ok(()),
                // No progress with room to write: it needs more input.
                Status::BufError if out.len() == before && out.len() < out.capacity() => return Ok(()),
                _ => {}
            }
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            stream.reset(false);
            // Kept for this thread's next message (one spare at most).
            SPARE_INFLATER.set(Some(stream));
        }
    }
}

use crate::error::WireError;

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

    #[test]
    fn a_servers_answer_is_read_as_the_client_reads_it() {
        // Every answer `negotiate` makes reads back as what it agreed to.
        for offer in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
        ] {
            for bits in [9, 15] {
                let agreed = negotiate([offer], Wanted { client_max_window_bits: bits }).unwrap();
                assert_eq!(accepted([agreed.response().as_str()]), Some(agreed), "{offer}, {bits}");
            }
        }
        // The first permessage-deflate, on any line; quoted values.
        assert_eq!(
            accepted(["x-foo", "x-bar, permessage-deflate; client_max_window_bits=\"9\"; server_no_context_takeover"]),
            Some(Agreed { client_no_context_takeover: false, client_max_window_bits: 9, server_max_window_bits: 15 })
        );
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; mystery",
        ] {
            assert_eq!(accepted([bad]), None, "{bad}");
        }
        assert_eq!(accepted([]), None);
    }
}

#[cfg(test)]
mod compression_tests {
    use super::*;

    fn inflate_all(frames: &[&[u8]], max: usize) -> Result<Vec<u8>, WireError> {
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        for frame in frames {
            inflater.inflate(frame, &mut out, max)?;
        }
        inflater.finish(&mut out, max)?;
        Ok(out)
    }

    #[test]
    fn messages_round_trip_whatever_the_window_and_the_fragments() {
        let text: Vec<u8> =
            (0..20_000u32).flat_map(|i| format!("{{\"n\":{},\"body\":\"x\"}},", i % 97).into_bytes()).collect();
        for bits in 9..=15 {
            let mut compressed = Vec::new();
            assert!(compress(&text, 6, bits, &mut compressed), "{bits} bits");
            assert!(compressed.len() < text.len() / 4);
            assert!(!compressed.ends_with(&TRAILER));
            assert_eq!(inflate_all(&[&compressed], usize::MAX).unwrap(), text);
            // Cut in frames anywhere.
            let (a, b) = compressed.split_at(compressed.len() / 3);
            assert_eq!(inflate_all(&[a, &[], b], usize::MAX).unwrap(), text);
        }
        // zlib cannot keep to a 256-byte window: such messages go as they are.
        let mut out = Vec::new();
        assert!(!compress(&text, 6, 8, &mut out) && out.is_empty());
        // Random bytes do not shrink: sent uncompressed.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(!compress(&noise, 6, 15, &mut out) && out.is_empty());
    }

    /// 10 MB of zeros compress to about 10 KB; inflated against a 1 MB
    /// limit, the output stops just past the limit, and its buffer never
    /// grew beyond it.
    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10_000_000];
        let mut bomb = Vec::new();
        assert!(compress(&zeros, 9, 15, &mut bomb));
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        let mut largest = 0;
        let refused = inflater.inflate_counted(&bomb, &mut out, 1_000_000, |to| {
            largest = to;
            Ok::<_, WireError>(())
        });
        assert_eq!(refused, Err(WireError::TooBig { size: 1_000_001, max: 1_000_000 }));
        assert!(largest <= 1_000_001 && out.capacity() <= 1_000_001, "{largest} {}", out.capacity());
        // What `grow` refuses stops it too, before the buffer grows.
        let mut out = Vec::new();
        let stopped = Inflater::new().inflate_counted(&bomb, &mut out, usize::MAX, |to| {
            if to > 100_000 {
                Err(WireError::Protocol("over budget"))
            } else {
                Ok(())
            }
        });
        assert_eq!(stopped, Err(WireError::Protocol("over budget")));
        assert!(out.capacity() <= 100_000);
        // A message exactly at the limit passes.
        let mut exact = Vec::new();
        assert!(compress(&zeros[..50_000], 6, 15, &mut exact));
        assert_eq!(inflate_all(&[&exact], 50_000).unwrap().len(), 50_000);
    }

    #[test]
    fn data_that_is_not_deflate_is_refused() {
        assert_eq!(inflate_all(&[&[0xFF, 0xFF, 0xFF, 0xFF]], 1000), Err(WireError::Inflate));
        assert_eq!(WireError::Inflate.close_code(), 1007);
    }

    /// A sender may end a message with a final block (as a new deflate
    /// stream per message does): what follows it is ignored.
    #[test]
    fn a_final_block_ends_the_message() {
        let mut stream = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(1024);
        stream.compress_vec(b"hello hello hello", &mut out, FlushCompress::Finish).unwrap();
        assert_eq!(inflate_all(&[&out], 1000).unwrap(), b"hello hello hello");
    }
}
