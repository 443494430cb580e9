//! WebSocket framing (RFC 6455) and permessage-deflate (RFC 7692), without
//! IO: what the `phx-channels` server and its client share about the bytes
//! on a WebSocket, whatever carries them (a TCP stream, TLS, a test's
//! buffer).
//!
//! The modules, one concept each: [`frame`] (headers for either side, and
//! masking), [`deflate`] (permessage-deflate's negotiation), [`utf8`] (text checked as it arrives, so a bad byte is refused
//! in the fragment that holds it), [`close`] (close payloads and the codes
//! that may travel) and [`error`] (why a peer's frames are refused, with
//! the close code for each reason).

#![deny(missing_docs)]

pub mod close;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod utf8;

pub use error::WireError;
