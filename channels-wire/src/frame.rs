//! Frame headers (RFC 6455 §5.2) for either side, and masking (§5.3).
//!
//! A server reads masked frames and writes unmasked ones; a client the
//! other way round. The header says whether the frame is the first of a
//! compressed message (RSV1, when permessage-deflate was negotiated:
//! RFC 7692 §6).

/// The opcodes of RFC 6455 §5.2.
pub mod opcode {
    /// The next frame of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text message (its first frame).
    pub const TEXT: u8 = 0x1;
    /// A binary message (its first frame).
    pub const BINARY: u8 = 0x2;
    /// A close frame.
    pub const CLOSE: u8 = 0x8;
    /// A ping.
    pub const PING: u8 = 0x9;
    /// A pong, the answer to a ping.
    pub const PONG: u8 = 0xA;
}

use opcode::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};

/// The RSV1 bit of a frame's first byte: set on the first frame of a
/// message compressed by permessage-deflate (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
pub const MAX_HEADER: usize = 14;

/// Which side reads the frames: a server reads a client's (masked), a
/// client a server's (unmasked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads masked frames, writes unmasked ones.
    Server,
    /// Reads unmasked frames, writes masked ones.
    Client,
}

/// The peer broke the framing rules: the connection closes with 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub &'static str);

/// A frame header as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The last frame of its message.
    pub fin: bool,
    /// RSV1: the first frame of a compressed message.
    pub rsv1: bool,
    /// The opcode ([`opcode`]).
    pub opcode: u8,
    /// The masking key; zeros for an unmasked frame (masking with zeros
    /// changes nothing).
    pub mask: [u8; 4],
    /// The payload's length, as announced.
    pub len: u64,
}

impl Header {
    /// Parses the header at the start of `buf`, as `reader` reads them;
    /// `Ok(None)` until all of it has arrived. Returns the header and its
    /// length in bytes. `compressed` says whether permessage-deflate was
    /// negotiated (without it, RSV1 is an error).
    pub fn parse(buf: &[u8], reader: Role, compressed: bool) -> Result<Option<(Header, usize)>, ProtocolError> {
        let [first, second, ..] = *buf else { return Ok(None) };
        let opcode = first & 0x0F;
        if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err(ProtocolError("reserved opcode"));
        }
        let rsv1 = first & RSV1 != 0;
        if first & 0x30 != 0 || (rsv1 && !compressed) {
            return Err(ProtocolError("reserved bits set (no extension was negotiated that uses them)"));
        }
        if rsv1 && !matches!(opcode, TEXT | BINARY) {
            return Err(ProtocolError("RSV1 set on a frame that does not start a message"));
        }
        let masked = second & 0x80 != 0;
        match reader {
            Role::Server if !masked => return Err(ProtocolError("a client frame must be masked")),
            Role::Client if masked => return Err(ProtocolError("a server frame must not be masked")),
            _ => {}
        }
        let (len, at) = match second & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => (u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let fin = first & 0x80 != 0;
        if !masked {
            return Ok(Some((Header { fin, rsv1, opcode, mask: [0; 4], len }, at)));
        }
        let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
        let header = Header { fin, rsv1, opcode, mask: [mask[0], mask[1], mask[2], mask[3]], len };
        Ok(Some((header, at + 4)))
    }

    /// Whether this is a control frame (close, ping, pong).
    pub fn is_control(&self) -> bool {
        self.opcode >= CLOSE
    }
}

/// Writes a frame header into `out` and returns its length: `first` is the
/// first byte (FIN, RSV1 and the opcode), `mask` the masking key of a
/// client frame (`None` for a server frame).
///
/// ```
/// use phx_channels_wire::frame::{write_header, MAX_HEADER};
///
/// let mut header = [0; MAX_HEADER];
/// let n = write_header(&mut header, 0x81, 300, Some([1, 2, 3, 4]));
/// assert_eq!(&header[..n], &[0x81, 0xFE, 0x01, 0x2C, 1, 2, 3, 4]);
/// ```
pub fn write_header(out: &mut [u8; MAX_HEADER], first: u8, len: usize, mask: Option<[u8; 4]>) -> usize {
    out[0] = first;
    let masked = if mask.is_some() { 0x80 } else { 0 };
    let at = match len {
        // The match arms bound `len`, so the casts keep every bit.
        0..=125 => {
            out[1] = masked | len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = masked | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = masked | 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    match mask {
        Some(mask) => {
            out[at..at + 4].copy_from_slice(&mask);
            at + 4
        }
        None => at,
    }
}

/// XORs `data` with `mask` (RFC 6455 §5.3), `data` starting `offset`
/// bytes into the payload: a payload can be unmasked piece by piece as
/// it arrives. Eight bytes at a time.
///
/// ```
/// use phx_channels_wire::frame::apply_mask;
///
/// let mask = [0x37, 0xfa, 0x21, 0x3d];
/// let mut whole = *b"Hello, world";
/// apply_mask(&mut whole, mask, 0);
/// let mut pieces = *b"Hello, world";
/// let (a, b) = pieces.split_at_mut(5);
/// apply_mask(a, mask, 0);
/// apply_mask(b, mask, 5);
/// assert_eq!(whole, pieces);
/// ```
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    if mask == [0; 4] {
        return;
    }
    let shift = offset % 4;
    let mask = [mask[shift], mask[(shift + 1) % 4], mask[(shift + 2) % 4], mask[(shift + 3) % 4]];
    let word = u32::from_ne_bytes(mask);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let (chunks, rest) = data.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ wide).to_ne_bytes();
    }
    for (i, byte) in rest.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_matches_the_bytewise_rule_at_any_offset() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..=255).collect();
        for len in [0, 1, 7, 8, 9, 31, 256] {
            for offset in 0..4 {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, mask, offset);
                let slow: Vec<u8> = data[..len].iter().enumerate().map(|(i, b)| b ^ mask[(i + offset) % 4]).collect();
                assert_eq!(fast, slow, "len {len}, offset {offset}");
            }
        }
    }

    #[test]
    fn headers_round_trip_for_both_sides() {
        for len in [0usize, 125, 126, 65_535, 65_536, 1 << 20] {
            for (role, mask) in [(Role::Server, Some([9, 8, 7, 6])), (Role::Client, None)] {
                let mut out = [0; MAX_HEADER];
                let n = write_header(&mut out, 0x80 | RSV1 | opcode::BINARY, len, mask);
                let (header, at) = Header::parse(&out[..n], role, true).unwrap().unwrap();
                assert_eq!(at, n);
                assert_eq!(header.len, len as u64);
                assert!(header.fin && header.rsv1);
                assert_eq!(header.mask, mask.unwrap_or([0; 4]));
                for cut in 0..n {
                    assert_eq!(Header::parse(&out[..cut], role, true).unwrap(), None);
                }
            }
        }
    }

    #[test]
    fn what_each_side_refuses() {
        let refused = |bytes: &[u8], role, compressed| Header::parse(bytes, role, compressed).unwrap_err().0;
        assert!(refused(&[0x81, 0x00], Role::Server, false).contains("masked"));
        assert!(refused(&[0x81, 0x80, 0, 0, 0, 0], Role::Client, false).contains("must not be masked"));
        assert!(refused(&[0xC1, 0x00], Role::Client, false).contains("reserved bits"));
        assert!(refused(&[0xA1, 0x00], Role::Client, true).contains("reserved bits"));
        assert!(refused(&[0xC0, 0x00], Role::Client, true).contains("RSV1"));
        assert!(refused(&[0xC9, 0x00], Role::Client, true).contains("RSV1"));
        assert!(refused(&[0x83, 0x00], Role::Client, false).contains("reserved opcode"));
        assert!(Header::parse(&[0xC1, 0x00], Role::Client, true).unwrap().is_some());
    }
}
