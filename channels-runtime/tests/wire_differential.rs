//! The runtime's own WebSocket frame reader (transport/wire.rs) against
//! tungstenite's, which is Autobahn-tested upstream: random client byte
//! streams, read in random chunks by both, must give the same messages and
//! control frames and fail at the same point with the same class of error.
//! The comparison, and the differences allowed by design (D1–D4), are in
//! `fuzz/src/ws_frames.rs`, shared with the `ws_frames` fuzz target.
//!
//! `PROPTEST_CASES` raises the number of cases (the default is kept small
//! for debug builds).

#[path = "../../fuzz/src/ws_frames.rs"]
#[allow(dead_code, unreachable_pub)]
mod ws_frames;

use phx_channels_runtime::__fuzz::{decode, write, Failure, Outcome, Send};
use proptest::prelude::*;
use proptest::sample::Index;
use tungstenite::protocol::frame::coding::CloseCode;
use ws_frames::{compare, Expect};

/// How a frame announces its length.
#[derive(Debug, Clone, Copy)]
enum Len {
    /// The shortest encoding (what RFC 6455 §5.2 asks senders for).
    Minimal,
    /// 126 + 16 bits, even for a short payload.
    U16,
    /// 127 + 64 bits, even for a short payload.
    U64,
}

#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: Len,
    /// A length to announce instead of the payload's (64-bit encoding).
    announce: Option<u64>,
    payload: Vec<u8>,
}

impl Frame {
    fn new(opcode: u8, fin: bool, payload: Vec<u8>) -> Self {
        Frame { fin, rsv: 0, opcode, mask: Some([0x5a, 0x01, 0xc3, 0x7e]), len: Len::Minimal, announce: None, payload }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | self.rsv << 4 | self.opcode);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let n = self.payload.len();
        let len = match self.len {
            _ if self.announce.is_some() => Len::U64,
            Len::U16 if n <= 0xFFFF => Len::U16,
            Len::U64 => Len::U64,
            _ if n < 126 => Len::Minimal,
            _ if n <= 0xFFFF => Len::U16,
            _ => Len::U64,
        };
        match len {
            Len::Minimal => out.push(mask_bit | n as u8),
            Len::U16 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::U64 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&self.announce.unwrap_or(n as u64).to_be_bytes());
            }
        }
        match self.mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
            }
            None => out.extend_from_slice(&self.payload),
        }
    }
}

/// Payload lengths: mostly short, sometimes at the length-encoding
/// boundaries.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => 0usize..24,
        1 => prop::sample::select(vec![124usize, 125, 126, 127, 65_535, 65_536]),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    length().prop_flat_map(|n| {
        if n > 200 {
            // Large payloads: one repeated byte keeps generation cheap.
            any::<u8>().prop_map(move |b| vec![b; n]).boxed()
        } else {
            prop::collection::vec(any::<u8>(), n).boxed()
        }
    })
}

/// Text: multi-byte characters, sometimes made invalid (a byte replaced or
/// the last character cut).
fn text() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
        1 => length().prop_map(|n| "é".repeat(n / 2).into_bytes()),
    ];
    (valid, 0u8..8, any::<Index>()).prop_map(|(mut text, corrupt, at)| {
        match corrupt {
            0 if !text.is_empty() => {
                let at = at.index(text.len());
                text[at] = 0xFF;
            }
            1 if text.last().is_some_and(|b| *b >= 0x80) => {
                text.pop();
            }
            _ => {}
        }
        text
    })
}

fn control() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => (prop_oneof![Just(0x9u8), Just(0xAu8)], prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(op, payload)| Frame::new(op, true, payload)),
        1 => prop::collection::vec(any::<u8>(), 120..130).prop_map(|payload| Frame::new(0x9, true, payload)),
    ]
}

/// A frame that announces more than it carries (the rest of the stream
/// becomes its payload), up to 2^64 - 1 bytes; sometimes a continuation of
/// a message that has begun, whose bytes so far add to the announced size.
fn lying() -> impl Strategy<Value = Vec<Frame>> {
    let announce = prop_oneof![
        prop::sample::select(vec![u64::MAX, u64::MAX - 1, 1 << 63, 1 << 32, 70_000, 1_000_000]),
        any::<u64>(),
    ];
    (
        prop::sample::select(vec![0x0u8, 0x1, 0x2, 0x9]),
        any::<bool>(),
        announce,
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(opcode, fin, announce, payload)| {
            let lie = Frame { announce: Some(announce), ..Frame::new(opcode, fin, payload) };
            if opcode == 0x0 {
                vec![Frame::new(0x2, false, vec![1, 2]), lie]
            } else {
                vec![lie]
            }
        })
}

/// A close frame: empty, one byte, or a code (valid or not) and a reason
/// (UTF-8 or not).
fn close() -> impl Strategy<Value = Frame> {
    let code = prop_oneof![
        prop::sample::select(vec![
            0u16, 999, 1000, 1001, 1002, 1004, 1005, 1006, 1011, 1012, 1014, 1015, 1016, 2999, 3000, 4999, 5000
        ]),
        any::<u16>(),
    ];
    let reason = prop_oneof![Just(Vec::new()), text()];
    prop_oneof![
        1 => Just(Vec::new()),
        1 => any::<u8>().prop_map(|b| vec![b]),
        6 => (code, reason).prop_map(|(code, reason)| [code.to_be_bytes().to_vec(), reason].concat()),
    ]
    .prop_map(|payload| Frame::new(0x8, true, payload))
}

/// A message, whole or fragmented at random byte positions (multi-byte
/// characters included), with control frames between fragments.
fn message() -> impl Strategy<Value = Vec<Frame>> {
    let body = prop_oneof![text().prop_map(|t| (0x1u8, t)), bytes().prop_map(|b| (0x2u8, b))];
    (
        body,
        prop::collection::vec(any::<Index>(), 0..4),
        prop::collection::vec(prop::option::weighted(0.3, control()), 4),
    )
        .prop_map(|((opcode, payload), cuts, controls)| {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            cuts.push(payload.len());
            let mut frames = Vec::new();
            let mut from = 0;
            for (i, &to) in cuts.iter().enumerate() {
                let last = i + 1 == cuts.len();
                frames.push(Frame::new(if i == 0 { opcode } else { 0x0 }, last, payload[from..to].to_vec()));
                if let (false, Some(Some(control))) = (last, controls.get(i)) {
                    frames.push(control.clone());
                }
                from = to;
            }
            frames
        })
}

/// Breaks a frame: reserved bits, a reserved or wrong opcode, no mask, a
/// flipped FIN bit, a non-minimal length.
fn mutate(frame: &mut Frame, how: u8, value: u8) {
    match how {
        0 => frame.rsv = value & 0x7,
        1 => frame.opcode = value & 0xF,
        2 => frame.mask = None,
        3 => frame.fin = !frame.fin,
        4 => frame.len = Len::U16,
        5 => frame.len = Len::U64,
        6 => frame.opcode = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF][usize::from(value) % 10],
        _ => {}
    }
}

#[derive(Debug)]
struct Case {
    stream: Vec<u8>,
    chunks: Vec<usize>,
    max: usize,
    cancel: bool,
    exact: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let item = prop_oneof![
        6 => message(),
        2 => control().prop_map(|f| vec![f]),
        1 => close().prop_map(|f| vec![f]),
        1 => lying(),
    ];
    let limits = prop::sample::select(vec![125usize, 126, 1000, 65_535, 65_536, 1 << 20]);
    let chunks = prop_oneof![
        1 => Just(Vec::new()),
        1 => Just(vec![1; 200_000]),
        4 => prop::collection::vec(1usize..17, 0..64),
        1 => prop::collection::vec(1usize..2000, 0..8),
    ];
    (
        prop::collection::vec(item, 1..6),
        prop::collection::vec((0u8..16, any::<u8>()), 0..3),
        prop::option::weighted(0.2, any::<Index>()),
        limits,
        chunks,
        any::<bool>(),
    )
        .prop_map(|(items, mutations, cut, max, chunks, cancel)| {
            let mut frames: Vec<Frame> = items.into_iter().flatten().collect();
            for (how, value) in mutations {
                let at = usize::from(value) % frames.len();
                mutate(&mut frames[at], how, value);
            }
            let total: usize = frames.iter().map(|f| f.payload.len()).sum();
            let lies = frames.iter().any(|f| f.announce.is_some());
            // A close frame with two faults: tungstenite and wire.rs name
            // different ones (D4).
            let double_fault = frames.iter().any(|f| {
                f.opcode == 0x8
                    && matches!(&f.payload[..], [high, low, reason @ ..]
                        if !CloseCode::from(u16::from_be_bytes([*high, *low])).is_allowed()
                            && std::str::from_utf8(reason).is_err())
            });
            let mut stream = Vec::new();
            for frame in &frames {
                frame.encode(&mut stream);
            }
            if let Some(cut) = cut {
                stream.truncate(cut.index(stream.len()));
            }
            Case { stream, chunks, max, cancel, exact: cut.is_none() && !lies && !double_fault && total <= max }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn wire_reads_what_tungstenite_reads(case in case()) {
        compare(&case.stream, &case.chunks, case.max, case.cancel, Expect { exact: case.exact });
    }
}

/// A client frame with the test mask.
fn client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Frame::new(opcode, fin, payload.to_vec()).encode(&mut out);
    out
}

#[test]
fn every_split_point_reads_the_same() {
    let mut stream = client(0x1, false, "añ".as_bytes());
    stream.extend(client(0x9, true, b"ping"));
    stream.extend(client(0x0, true, "€x".as_bytes()));
    stream.extend(client(0x2, true, &[7; 300]));
    let mut long = Vec::new();
    Frame { len: Len::U64, ..Frame::new(0x2, true, vec![1, 2, 3]) }.encode(&mut long);
    Frame { len: Len::U16, ..Frame::new(0x2, true, vec![4]) }.encode(&mut long);
    stream.extend(long);
    stream.extend(client(0x8, true, &[0x03, 0xE8, b'o', b'k']));
    let expected = vec![
        Outcome::Ping(b"ping".to_vec()),
        Outcome::Text("añ€x".as_bytes().to_vec()),
        Outcome::Binary(vec![7; 300]),
        Outcome::Binary(vec![1, 2, 3]),
        Outcome::Binary(vec![4]),
        Outcome::Close(Some(1000)),
    ];
    assert_eq!(decode(&stream, &[], 1000, false).outcomes, expected);
    for at in 0..=stream.len() {
        for cancel in [false, true] {
            assert_eq!(decode(&stream, &[at], 1000, cancel).outcomes, expected, "split at {at}");
            compare(&stream, &[at], 1000, cancel, Expect { exact: true });
        }
    }
    compare(&stream, &vec![1; stream.len()], 1000, true, Expect { exact: true });
}

#[test]
fn a_continuation_announcing_2_pow_64_bytes_is_too_big() {
    let mut stream = client(0x2, false, b"ab");
    // FIN continuation, masked, 64-bit length of u64::MAX, a mask, no payload.
    stream.extend([0x80, 0xFF]);
    stream.extend([0xFF; 8]);
    stream.extend([0; 4]);
    assert_eq!(decode(&stream, &[], 1000, false).outcomes, vec![Outcome::Failed(Failure::TooBig)]);
    compare(&stream, &[], 1000, false, Expect { exact: false });
}

/// The examples of RFC 6455 §5.7, as a server reads them: the masked ones
/// are read, the unmasked ones (what a server sends) refused.
#[test]
fn the_rfc_examples() {
    let hello = vec![b'H', b'e', b'l', b'l', b'o'];
    let masked_text = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(
        decode(&masked_text, &[], 125, false).outcomes,
        [Outcome::Text(hello.clone()), Outcome::Failed(Failure::Eof)]
    );
    let masked_pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(decode(&masked_pong, &[], 125, false).outcomes, [Outcome::Pong, Outcome::Failed(Failure::Eof)]);
    // The 256-byte binary example, with its payload (zeros).
    let binary_256 = [&[0x82, 0x7E, 0x01, 0x00][..], &[0; 256]].concat();
    let unmasked: [&[u8]; 4] = [
        &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f],
        &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        &binary_256,
    ];
    for frame in unmasked {
        assert_eq!(decode(frame, &[], 1 << 20, false).outcomes, [Outcome::Failed(Failure::Protocol)], "{frame:02x?}");
    }
    for stream in [&masked_text[..], &masked_pong[..]].into_iter().chain(unmasked) {
        compare(stream, &[], 1 << 20, false, Expect { exact: true });
    }
}

/// What the server's writer sends, read back by tungstenite as a client:
/// the same frames, every length encoding, small frames gathered and large
/// ones written from where they are.
fn sends() -> impl Strategy<Value = Vec<Send>> {
    let frame = prop_oneof![
        4 => bytes().prop_map(|b| Send::Message(true, b.into())),
        3 => text().prop_filter("valid UTF-8", |t| std::str::from_utf8(t).is_ok()).prop_map(|t| Send::Message(false, t.into())),
        1 => prop::collection::vec(any::<u8>(), 0..126).prop_map(|b| Send::Pong(b.into())),
    ];
    let close = prop_oneof![
        Just(None),
        (prop::sample::select(vec![1000u16, 1001, 1002, 1008, 1009, 1011, 4000]), "\\PC{0,30}")
            .prop_map(|(code, reason)| Some(Send::Close(Some(code), reason))),
        Just(Some(Send::Close(None, String::new()))),
    ];
    (prop::collection::vec(frame, 0..8), close).prop_map(|(mut frames, close)| {
        frames.extend(close);
        frames
    })
}

fn read_as_client(bytes: Vec<u8>) -> Vec<Send> {
    let mut ws = tungstenite::WebSocket::from_raw_socket(
        std::io::Cursor::new(bytes),
        tungstenite::protocol::Role::Client,
        Some(tungstenite::protocol::WebSocketConfig::default().max_message_size(None).max_frame_size(None)),
    );
    let mut got = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => got.push(Send::Message(false, t.as_bytes().to_vec().into())),
            Ok(tungstenite::Message::Binary(b)) => got.push(Send::Message(true, b)),
            Ok(tungstenite::Message::Pong(b)) => got.push(Send::Pong(b)),
            Ok(tungstenite::Message::Close(frame)) => {
                got.push(match frame {
                    Some(f) => Send::Close(Some(f.code.into()), f.reason.as_str().to_owned()),
                    None => Send::Close(None, String::new()),
                });
                return got;
            }
            Ok(other) => panic!("the writer sent {other:?}"),
            // The end of what the writer wrote, with no close frame.
            Err(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
                return got
            }
            Err(e) => panic!("tungstenite refused what the writer sent: {e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn tungstenite_reads_what_wire_writes(frames in sends(), flush_every in 1usize..4) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let bytes = runtime.block_on(write(&frames, flush_every)).unwrap();
        prop_assert_eq!(read_as_client(bytes), frames);
    }
}

#[tokio::test]
async fn every_length_encoding_the_writer_uses_reads_back() {
    let mut frames: Vec<Send> = [0usize, 125, 126, 4096, 4097, 65_535, 65_536, 200_000]
        .iter()
        .map(|&n| Send::Message(true, vec![3; n].into()))
        .collect();
    frames.push(Send::Pong(vec![9; 125].into()));
    frames.push(Send::Close(Some(1009), "too big".to_owned()));
    let bytes = write(&frames, 3).await.unwrap();
    // 7-, 16- and 64-bit lengths, each the shortest that fits (RFC 6455 §5.2).
    assert_eq!(&bytes[..2], &[0x82, 0]);
    assert_eq!(read_as_client(bytes), frames);
}
