//! Transports: how frames travel between a client and its connection.
//!
//! Everything above the transport (the dispatcher, channels, PubSub) is
//! shared; a transport only moves frames and notices when the client is
//! gone.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::options::SocketOptions;
use crate::pubsub::PubSub;

mod coalesce;
pub(crate) mod longpoll;
pub(crate) mod websocket;

/// A socket mounted on an endpoint: what every connection to it needs,
/// whatever its transport.
pub(crate) struct Mount {
    pub(crate) pubsub: PubSub,
    pub(crate) options: SocketOptions,
    pub(crate) metrics: Arc<Metrics>,
}
