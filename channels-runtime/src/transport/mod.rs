//! Transports: how frames travel between a client and its connection.
//!
//! Everything above the transport (the dispatcher, channels, PubSub) is
//! shared; a transport only moves frames and notices when the client is
//! gone.

mod coalesce;
pub mod websocket;
