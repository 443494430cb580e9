//! Transports: how frames travel between a client and its connection.
//!
//! Everything above the transport (the dispatcher, channels, PubSub) is
//! shared; a transport only moves frames and notices when the client is
//! gone.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::options::SocketOptions;
use crate::pubsub::PubSub;
use crate::registry::Registry;

mod coalesce;
pub(crate) mod longpoll;
pub(crate) mod websocket;

/// A socket mounted on an endpoint: what every connection to it needs,
/// whatever its transport.
pub(crate) struct Mount {
    pub(crate) pubsub: PubSub,
    pub(crate) options: SocketOptions,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registry: Arc<Registry>,
}

/// Runs the application's `connect`, containing a panic in it: the client is
/// refused (HTTP 500) and the panic logged, the server carries on.
pub(crate) async fn connect<S: crate::connect::Connect>(
    params: &crate::connect::Params,
    info: &crate::connect::ConnectInfo,
) -> Result<S::Assigns, axum::http::StatusCode> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(S::connect(params, info)).catch_unwind().await {
        Ok(Ok(assigns)) => Ok(assigns),
        Ok(Err(refusal)) => {
            tracing::info!(status = refusal.status().as_u16(), reason = refusal.log_reason(), "connect refused");
            Err(refusal.status())
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-string panic payload)");
            tracing::error!(panic = message, "connect panicked");
            Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}
