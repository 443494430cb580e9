//! Close frames' payloads (RFC 6455 §5.5.1, §7.4).

use crate::error::WireError;

/// Whether `code` may be sent in a close frame: the codes RFC 6455 defines
/// for the wire, 1012 (restart) and 1013 (try again later), and the ranges
/// for libraries and applications (3000 to 4999). The same set as
/// tungstenite's, which the runtime's reader is tested against.
///
/// ```
/// use phx_channels_wire::close::is_allowed;
///
/// assert!(is_allowed(1000) && is_allowed(1009) && is_allowed(4000));
/// // 1005 and 1006 only report what happened; they never travel.
/// assert!(!is_allowed(1005) && !is_allowed(1006) && !is_allowed(2000));
/// ```
pub fn is_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// The code and reason of a close frame's payload: `None` for an empty
/// one; an error for a one-byte payload, a code that may not be sent, or
/// a reason that is not UTF-8.
///
/// ```
/// use phx_channels_wire::close::parse;
///
/// assert_eq!(parse(&[0x03, 0xE8, b'b', b'y', b'e']), Ok(Some((1000, "bye"))));
/// assert_eq!(parse(&[]), Ok(None));
/// assert!(parse(&[0x03, 0xED]).is_err()); // 1005
/// ```
pub fn parse(payload: &[u8]) -> Result<Option<(u16, &str)>, WireError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WireError::Protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_allowed(code) {
                return Err(WireError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WireError::Utf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// The payload of a close frame with `code` and `reason` (none without a
/// code). The reason is cut, at a character boundary, to fit a control
/// frame (123 bytes).
///
/// ```
/// use phx_channels_wire::close::payload;
///
/// assert_eq!(payload(Some(1000), "bye"), [0x03, 0xE8, b'b', b'y', b'e']);
/// assert!(payload(None, "ignored").is_empty());
/// assert_eq!(payload(Some(1000), &"é".repeat(100)).len(), 2 + 122);
/// ```
pub fn payload(code: Option<u16>, reason: &str) -> Vec<u8> {
    let Some(code) = code else { return Vec::new() };
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}
