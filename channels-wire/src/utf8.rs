//! UTF-8 checked as it arrives (RFC 6455 §8.1): a text message is refused
//! at the first byte that cannot be part of valid UTF-8, in whichever
//! fragment or read it comes, not when the message ends. A sequence cut at
//! the end of a piece is not an error: its rest may come next.

/// The bytes are not UTF-8, whatever may follow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("text is not valid UTF-8")]
pub struct Invalid;

/// The state of a text being checked piece by piece: the start of a
/// sequence cut at the end of the last piece (at most 3 bytes).
///
/// ```
/// use phx_channels_wire::utf8::Utf8;
///
/// let text = "añb€".as_bytes();
/// for cut in 0..=text.len() {
///     let mut utf8 = Utf8::default();
///     utf8.feed(&text[..cut]).unwrap();
///     utf8.feed(&text[cut..]).unwrap();
///     utf8.finish().unwrap();
/// }
/// // Cut inside "€": the first piece alone is not finished.
/// let mut utf8 = Utf8::default();
/// utf8.feed(&text[..5]).unwrap();
/// assert!(utf8.finish().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8 {
    carry: [u8; 4],
    len: u8,
}

/// How long a sequence starting with `lead` is (a lead that starts a valid
/// prefix: the carry only ever holds one).
fn width(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

impl Utf8 {
    /// Checks the next piece of the text.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Invalid> {
        if self.len > 0 {
            let have = usize::from(self.len);
            let take = (width(self.carry[0]) - have).min(bytes.len());
            self.carry[have..have + take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let carried = &self.carry[..have + take];
            match std::str::from_utf8(carried) {
                Ok(_) => self.len = 0,
                // Still cut short: the piece ended inside the sequence.
                Err(error) if error.error_len().is_none() => {
                    self.len = (have + take) as u8;
                    return Ok(());
                }
                Err(_) => return Err(Invalid),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(error) if error.error_len().is_none() => {
                let rest = &bytes[error.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                // A cut sequence is at most 3 bytes.
                self.len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// The text ended: a sequence still cut short is an error.
    pub fn finish(&self) -> Result<(), Invalid> {
        if self.len == 0 {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// Whether a sequence is cut short, waiting for its rest.
    pub fn is_cut(&self) -> bool {
        self.len > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fed in pieces of every size, the verdict is `from_utf8`'s, and an
    /// invalid text is refused no later than the piece holding the byte
    /// that makes it invalid.
    #[test]
    fn pieces_agree_with_from_utf8_and_fail_fast() {
        let samples: Vec<Vec<u8>> = vec![
            "κόσμε".as_bytes().to_vec(),
            "a€𝄞b".as_bytes().to_vec(),
            vec![0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64],
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xE0, 0x80],
            vec![0xC0, 0xAF],
            vec![0xF0, 0x9F, 0x98],
            vec![b'a', 0xFF, b'b'],
        ];
        for sample in samples {
            let verdict = std::str::from_utf8(&sample);
            for piece in 1..=sample.len() {
                let mut utf8 = Utf8::default();
                let mut failed_at = None;
                for (i, chunk) in sample.chunks(piece).enumerate() {
                    if utf8.feed(chunk).is_err() {
                        failed_at = Some(i * piece + chunk.len());
                        break;
                    }
                }
                let ok = failed_at.is_none() && utf8.finish().is_ok();
                assert_eq!(ok, verdict.is_ok(), "{sample:x?} in pieces of {piece}");
                if let (Err(error), Some(at)) = (verdict, failed_at) {
                    let bad = error.valid_up_to() + error.error_len().unwrap_or(0);
                    // Refused by the piece holding the byte that shows it is bad.
                    assert!(at <= bad + piece, "{sample:x?} in pieces of {piece}: refused at {at}, bad by {bad}");
                }
            }
        }
    }
}
