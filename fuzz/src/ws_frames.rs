//! The runtime's WebSocket frame reader against tungstenite's, on the same
//! client bytes. Shared by the `ws_frames` fuzz target (through
//! `src/lib.rs`) and `channels-runtime/tests/wire_differential.rs`.
//!
//! tungstenite is the reference: it is Autobahn-tested upstream. The two
//! must read the same messages and control frames and fail at the same
//! point, with the same class of error, except where they differ by
//! design (each difference is named where it is allowed, below):
//!
//! - D1 — an invalid close code: tungstenite hands over a close frame with
//!   1002 "Protocol violation" (and answers with it); wire.rs fails with a
//!   protocol error, which the transport answers with 1002 too.
//! - D2 — a frame with several faults: tungstenite checks the reserved
//!   opcode, then the frame size, then the mask, the reserved bits, the
//!   control-frame rules, the fragmentation state and the message size;
//!   wire.rs checks bits, opcode, mask, control rules, fragmentation state,
//!   then size. When one of the faults is the size limit, one says 1009 and
//!   the other 1002.
//! - D3 — wire.rs refuses what the header shows before the payload arrives,
//!   and text that is not UTF-8 in the part of a payload that arrived;
//!   tungstenite reads the whole payload first (all but the opcode and the
//!   frame size). On a stream that ends inside such a frame, wire.rs reports
//!   the fault and tungstenite a reset.
//! - D4 — a close frame with an invalid code and a reason that is not
//!   UTF-8: tungstenite checks the reason first (1007), wire.rs the code
//!   (1002). (Invalid UTF-8 in a fragmented text message fails at the
//!   fragment that holds it on both sides: Autobahn 6.4.x's "fail fast".)
//!
//! Also by design, and kept out of the inputs rather than allowed: wire.rs
//! does not apply the size limit to control frames (at most 125 bytes), so
//! limits are at least 125 here.

use std::io::{self, Read, Write};

use phx_channels_runtime::__fuzz::{decode, decode_fed, Decoded, Failure, Outcome};
use tungstenite::error::{Error, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::Message;

/// What tungstenite read: the outcomes, and whether the last one is a close
/// frame it made up for an invalid close code (D1).
pub struct Reference {
    /// As [`decode`] reports them.
    pub outcomes: Vec<Outcome>,
    /// The last outcome is tungstenite's stand-in for an invalid close code.
    pub replaced_close: bool,
}

/// The client's bytes in chunks; what tungstenite writes back is dropped.
struct Client<'a> {
    data: &'a [u8],
    chunks: std::slice::Iter<'a, usize>,
}

impl Read for Client<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.chunks.next().copied().unwrap_or(usize::MAX).max(1);
        let n = chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Write for Client<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `stream` with tungstenite as the runtime configured it before it
/// had its own framing: message and frame limit both `max_message`.
///
/// # Panics
///
/// On an error no client bytes should produce.
pub fn reference(stream: &[u8], chunks: &[usize], max_message: usize) -> Reference {
    let config = WebSocketConfig::default().max_message_size(Some(max_message)).max_frame_size(Some(max_message));
    let client = Client { data: stream, chunks: chunks.iter() };
    let mut ws = WebSocket::from_raw_socket(client, Role::Server, Some(config));
    let mut outcomes = Vec::new();
    loop {
        let (outcome, replaced_close) = match ws.read() {
            Ok(Message::Text(text)) => (Outcome::Text(text.as_bytes().to_vec()), false),
            Ok(Message::Binary(bytes)) => (Outcome::Binary(bytes.to_vec()), false),
            Ok(Message::Ping(bytes)) => (Outcome::Ping(bytes.to_vec()), false),
            Ok(Message::Pong(_)) => (Outcome::Pong, false),
            Ok(Message::Close(None)) => (Outcome::Close(None), false),
            Ok(Message::Close(Some(frame))) => {
                let replaced = frame.code == CloseCode::Protocol && frame.reason.as_str() == "Protocol violation";
                (Outcome::Close(Some(frame.code.into())), replaced)
            }
            Ok(Message::Frame(_)) => panic!("tungstenite reads no raw frames"),
            Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => (Outcome::Failed(Failure::Eof), false),
            Err(Error::Protocol(_)) => (Outcome::Failed(Failure::Protocol), false),
            Err(Error::Capacity(_)) => (Outcome::Failed(Failure::TooBig), false),
            Err(Error::Utf8(_)) => (Outcome::Failed(Failure::Utf8), false),
            Err(other) => panic!("tungstenite failed in an unexpected way: {other:?}"),
        };
        let end = matches!(outcome, Outcome::Close(_) | Outcome::Failed(_));
        outcomes.push(outcome);
        if end {
            return Reference { outcomes, replaced_close };
        }
    }
}

/// Which of the differences the caller knows cannot arise. With `exact`,
/// the stream is whole (no frame cut off by its end), no message can reach
/// the limit, and no close frame has both an invalid code and a reason that
/// is not UTF-8: D2, D3 and the close-frame case of D4 are not allowed.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// D2, D3 and the close-frame case of D4 cannot arise.
    pub exact: bool,
}

/// Decodes `stream` both ways, whole and in `chunks` (cancelling the read
/// at every suspension when `cancel`), and panics where the results
/// disagree beyond D1–D4.
///
/// # Panics
///
/// On a disagreement, naming both sides.
pub fn compare(stream: &[u8], chunks: &[usize], max_message: usize, cancel: bool, expect: Expect) {
    let whole = decode(stream, &[], max_message, false);
    let chunked = decode(stream, chunks, max_message, cancel);
    assert_eq!(whole, chunked, "wire.rs depends on chunking {chunks:?} (cancel: {cancel})");
    let fed = decode_fed(stream, chunks, max_message);
    assert_eq!(whole, fed, "the plain-TCP path's feeding reads otherwise, chunks {chunks:?}");
    let reference = reference(stream, chunks, max_message);
    if let Err(why) = agree(&reference, &whole, expect) {
        panic!(
            "wire.rs and tungstenite disagree ({why}), limit {max_message}\n  tungstenite: {:?}\n  wire.rs:     {:?}\n  stream: {stream:02x?}",
            Short(&reference.outcomes),
            Short(&whole.outcomes),
        );
    }
}

/// Whether wire.rs's outcomes `ours` agree with tungstenite's.
fn agree(reference: &Reference, ours: &Decoded, expect: Expect) -> Result<(), &'static str> {
    let theirs = &reference.outcomes;
    let ours = &ours.outcomes[..];
    let same = theirs.iter().zip(ours).take_while(|(a, b)| a == b).count();
    if same == theirs.len() && same == ours.len() {
        return Ok(());
    }
    let (Some(their_last), Some(our_next)) = (theirs.get(same), ours.get(same)) else {
        return Err("one side ends early");
    };
    let both_last = same + 1 == theirs.len() && same + 1 == ours.len();
    match (their_last, our_next) {
        // D1
        (Outcome::Close(Some(1002)), Outcome::Failed(Failure::Protocol)) if reference.replaced_close && both_last => {
            Ok(())
        }
        // D4
        (Outcome::Failed(Failure::Utf8), Outcome::Failed(Failure::Protocol)) if both_last && !expect.exact => Ok(()),
        // D2
        (Outcome::Failed(Failure::Protocol), Outcome::Failed(Failure::TooBig))
        | (Outcome::Failed(Failure::TooBig), Outcome::Failed(Failure::Protocol))
            if both_last && !expect.exact =>
        {
            Ok(())
        }
        // D3
        (Outcome::Failed(Failure::Eof), Outcome::Failed(Failure::Protocol | Failure::TooBig | Failure::Utf8))
            if both_last && !expect.exact =>
        {
            Ok(())
        }
        _ => Err("different outcomes"),
    }
}

/// Outcomes with long payloads shortened, for failure messages.
struct Short<'a>(&'a [Outcome]);

impl std::fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |b: &[u8]| format!("{} bytes {:02x?}", b.len(), &b[..b.len().min(8)]);
        f.debug_list()
            .entries(self.0.iter().map(|o| match o {
                Outcome::Text(b) => format!("Text({})", short(b)),
                Outcome::Binary(b) => format!("Binary({})", short(b)),
                Outcome::Ping(b) => format!("Ping({})", short(b)),
                other => format!("{other:?}"),
            }))
            .finish()
    }
}

/// The fuzz input: a limit, a chunking, then the client's bytes.
///
/// Byte 0 picks the limit; byte 1 the chunking (its low 7 bits seed chunk
/// sizes of 1 to 16 bytes, 0 meaning one piece; its high bit cancels the
/// read at every suspension). The stream may be anything, so D2 and D3 are
/// allowed.
pub fn ws_frames(data: &[u8]) {
    const LIMITS: [usize; 6] = [125, 126, 1000, 65_535, 65_536, 1 << 20];
    let [limit, chunking, stream @ ..] = data else { return };
    let max = LIMITS[usize::from(*limit) % LIMITS.len()];
    let mut seed = u32::from(chunking & 0x7F);
    let chunks: Vec<usize> = if seed == 0 {
        Vec::new()
    } else {
        (0..stream.len())
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as usize % 16 + 1
            })
            .collect()
    };
    compare(stream, &chunks, max, chunking & 0x80 != 0, Expect { exact: false });
}
