//! Transports: how frames travel between a client and its connection.
//!
//! Everything above the transport (the dispatcher, channels, PubSub) is
//! shared; a transport only moves frames and notices when the client is
//! gone.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, StatusCode};
use futures_util::FutureExt;

use crate::connect::{Connect, Params};
use crate::logging::{clip, Line};
use crate::metrics::{Metrics, Refusal};
use crate::options::SocketOptions;
use crate::protocol::Serializer;
use crate::pubsub::PubSub;
use crate::registry::Registry;

pub(crate) mod budget;
pub(crate) mod longpoll;
pub mod raw;
pub(crate) mod websocket;
pub(crate) mod wire;

/// A socket mounted on an endpoint: what every connection to it needs,
/// whatever its transport.
pub(crate) struct Mount {
    pub(crate) pubsub: PubSub,
    pub(crate) options: SocketOptions,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registry: Arc<Registry>,
    /// The endpoint's budget of bytes in flight.
    pub(crate) budget: Arc<budget::Budget>,
    /// The application's state, an `Arc<S::State>` of the mounted socket:
    /// the transports are not generic over it, the socket's code is.
    pub(crate) state: Arc<dyn Any + Send + Sync>,
}

impl Mount {
    /// The mounted socket's state.
    /// Several nodes: holds the broker's subscription to the socket's id
    /// (waiting for it, as a join does) until the connection subscribes it
    /// itself, so a `disconnect` sent from any node once the client sees
    /// its socket open reaches it. `None` on one node or without an id.
    pub(crate) async fn hold_socket_id<S: Connect>(&self, assigns: &S::Assigns) -> Option<crate::pubsub::Hold> {
        if !self.pubsub.is_multi_node() {
            return None;
        }
        let id = S::id(assigns, &self.state::<S>())?;
        self.pubsub.hold(&id).await
    }

    pub(crate) fn state<S: Connect>(&self) -> Arc<S::State> {
        self.state_of::<S::State>()
    }

    /// The application's state, as the endpoint's type `St`.
    pub(crate) fn state_of<St: Send + Sync + 'static>(&self) -> Arc<St> {
        // The endpoint mounts a socket only with its own state type.
        Arc::clone(&self.state)
            .downcast::<St>()
            .unwrap_or_else(|_| unreachable!("a socket is mounted with an `Arc` of the endpoint's state"))
    }
}

/// Whether the request's `Origin` may open a socket (counted and logged
/// when not). Applies to every transport request, before anything else.
pub(crate) fn origin_allowed(mount: &Mount, headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let allowed = mount.options.check_origin.allows(origin, host);
    if !allowed {
        mount.metrics.connections_refused.incr(Refusal::Origin);
        if mount.metrics.lines.allow(Line::Origin) {
            let origin = origin.map(|origin| tracing::field::debug(clip(origin)));
            tracing::warn!(origin, host = ?clip(host), "{}", Line::Origin.what());
        }
    }
    allowed
}

/// Phoenix's connect checks after the origin, in Phoenix's order, for
/// every transport: the serializer the `vsn` asks for, room under the
/// connection cap, then the application's `connect`. A refusal is the HTTP
/// status that says why (each transport words it its own way).
pub(crate) async fn admit<S: Connect>(
    mount: &Mount,
    params: &Params,
    info: crate::connect::ConnectInfo,
) -> Result<(Serializer, S::Assigns), StatusCode> {
    let admitted = async {
        let Some(serializer) = Serializer::negotiate(params.get("vsn")) else {
            if mount.metrics.lines.allow(Line::Vsn) {
                let vsn = params.get("vsn").map(|vsn| tracing::field::debug(clip(vsn)));
                tracing::info!(vsn, "{}", Line::Vsn.what());
            }
            return Err((Refusal::Vsn, StatusCode::FORBIDDEN));
        };
        room(mount)?;
        let assigns = contained(mount, S::connect(params, &info, &mount.state::<S>())).await?;
        Ok((serializer, assigns))
    }
    .await;
    counted(mount, admitted)
}

/// Whether the endpoint has room for one more connection.
pub(crate) fn room(mount: &Mount) -> Result<(), (Refusal, StatusCode)> {
    if mount.registry.has_room() {
        return Ok(());
    }
    if mount.metrics.lines.allow(Line::ConnectionLimit) {
        tracing::warn!("{}", Line::ConnectionLimit.what());
    }
    Err((Refusal::Limit, StatusCode::SERVICE_UNAVAILABLE))
}

/// Counts an admission, or the refusal and its reason.
pub(crate) fn counted<A>(mount: &Mount, admitted: Result<A, (Refusal, StatusCode)>) -> Result<A, StatusCode> {
    match admitted {
        Ok(admitted) => {
            mount.metrics.connections_accepted.incr();
            Ok(admitted)
        }
        Err((reason, status)) => {
            mount.metrics.connections_refused.incr(reason);
            Err(status)
        }
    }
}

/// What `connect` gets to know about a request (taken before any await:
/// a request body is not `Sync`).
pub(crate) fn connect_info(req: &Request) -> crate::connect::ConnectInfo {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    crate::connect::ConnectInfo::new(peer, req.uri().clone(), req.headers().clone())
}

/// Runs the application's `connect`, containing a panic in it: the client is
/// refused (HTTP 500) and the panic logged, the server carries on.
pub(crate) async fn contained<A>(
    mount: &Mount,
    connect: impl std::future::Future<Output = Result<A, crate::connect::Refuse>>,
) -> Result<A, (Refusal, StatusCode)> {
    match std::panic::AssertUnwindSafe(connect).catch_unwind().await {
        Ok(Ok(assigns)) => Ok(assigns),
        Ok(Err(refusal)) => {
            if mount.metrics.lines.allow(Line::ConnectRefused) {
                let reason = refusal.log_reason().map(|reason| tracing::field::debug(clip(reason)));
                tracing::info!(status = refusal.status().as_u16(), reason, "{}", Line::ConnectRefused.what());
            }
            Err((Refusal::Connect, refusal.status()))
        }
        Err(panic) => {
            if mount.metrics.lines.allow(Line::ConnectPanicked) {
                let message = crate::panics::message(&*panic);
                tracing::error!(panic = ?clip(message), "{}", Line::ConnectPanicked.what());
            }
            Err((Refusal::Crash, StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}
