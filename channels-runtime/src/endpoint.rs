//! [`Endpoint`]: the sockets of an application, served over HTTP.
//!
//! ```no_run
//! # use channels_runtime::{endpoint::Endpoint, channel::{Routes, Route}, connect::*};
//! # struct UserSocket;
//! # impl Connect for UserSocket { type Assigns = ();
//! #   async fn connect(_: &Params, _: &ConnectInfo) -> Result<(), Refuse> { Ok(()) } }
//! # impl Routes for UserSocket { const ROUTES: &'static [Route<Self>] = &[]; }
//! # async fn run() -> std::io::Result<()> {
//! let endpoint = Endpoint::new().socket("/socket", UserSocket);
//!
//! // Broadcast from anywhere, e.g. an HTTP handler:
//! endpoint.broadcast("comments:42", "comments:42:new", &serde_json::json!({"comment": {}})).unwrap();
//!
//! endpoint.serve("127.0.0.1:4000").await
//! # }
//! ```

use std::sync::Arc;

use axum::routing::any;
use axum::Router;
use serde::Serialize;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::channel::Routes;
use crate::connect::Connect;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::options::SocketOptions;
use crate::pubsub::{BroadcastError, PubSub};
use crate::registry::Registry;
use crate::server::{self, ServerOptions};
use crate::transport::{longpoll, websocket, Mount};

/// An application's sockets, their PubSub, and any other routes to serve
/// beside them. Cheap to clone; clones share the PubSub.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pubsub: PubSub,
    router: Router,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    server: ServerOptions,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new()
    }
}

impl Endpoint {
    /// An endpoint with the in-process PubSub.
    pub fn new() -> Self {
        Endpoint::with_pubsub(PubSub::local())
    }

    /// An endpoint with the given PubSub (e.g. one on Redis, for several nodes).
    pub fn with_pubsub(pubsub: PubSub) -> Self {
        Endpoint {
            pubsub,
            router: Router::new(),
            metrics: Arc::default(),
            registry: Arc::default(),
            server: ServerOptions::default(),
        }
    }

    /// Mounts a socket at `path`: WebSocket at `{path}/websocket` (and
    /// LongPoll at `{path}/longpoll` when [`SocketOptions::longpoll`] is on).
    pub fn socket<S: Connect + Routes>(self, path: &str, socket: S) -> Self {
        self.socket_with(path, socket, SocketOptions::default())
    }

    /// Mounts a socket with non-default limits.
    pub fn socket_with<S: Connect + Routes>(mut self, path: &str, _socket: S, options: SocketOptions) -> Self {
        let longpoll = options.longpoll;
        let mount = Arc::new(Mount {
            pubsub: self.pubsub.clone(),
            options,
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
        });
        let path = path.trim_end_matches('/');
        if longpoll {
            let sessions = longpoll::Sessions::<S>::new(mount.clone());
            self.router =
                self.router.route(&format!("{path}/longpoll"), any(move |req| longpoll::handle(sessions.clone(), req)));
        }
        self.router = self
            .router
            .route(&format!("{path}/websocket"), any(move |req| websocket::upgrade::<S>(mount.clone(), req)));
        self
    }

    /// Adds the application's own routes (pages, an API) to serve beside
    /// the sockets.
    #[must_use]
    pub fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    /// The sockets (and merged routes) as an axum router, to nest in an
    /// existing application.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The endpoint's PubSub.
    pub fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }

    /// Broadcasts `event` to every subscriber of `topic` on every node, from
    /// outside any channel. Broadcasting `disconnect` to a socket id closes
    /// every connection with that id.
    pub fn broadcast<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &str,
        payload: &T,
    ) -> Result<(), BroadcastError> {
        self.pubsub.broadcast(topic, event, payload)
    }

    /// Broadcasts to the subscribers on this node only.
    pub fn local_broadcast<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &str,
        payload: &T,
    ) -> Result<(), BroadcastError> {
        self.pubsub.local_broadcast(topic, event, crate::protocol::Payload::json(payload)?);
        Ok(())
    }

    /// The endpoint's counters, for a metrics exporter.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Caps the connections (WebSocket and LongPoll) open at once across
    /// the endpoint's sockets; over it, connects get HTTP 503. Default: no
    /// cap beyond the process's file descriptor limit.
    #[must_use]
    pub fn max_connections(self, max: usize) -> Self {
        self.registry.set_max(max);
        self
    }

    /// Sets the handshake timeout and the shutdown drain.
    #[must_use]
    pub fn server_options(mut self, options: ServerOptions) -> Self {
        self.server = options;
        self
    }

    /// Connections open now (WebSocket and LongPoll).
    pub fn connections(&self) -> usize {
        self.registry.len()
    }

    /// Binds `addr` and serves until ctrl-c or SIGTERM, then shuts down
    /// gracefully (see [`Endpoint::serve_with_shutdown`]).
    pub async fn serve(self, addr: impl ToSocketAddrs) -> std::io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.serve_on(listener).await
    }

    /// Serves on a listener already bound (e.g. to learn its port first),
    /// until ctrl-c or SIGTERM.
    pub async fn serve_on(self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then stops accepting, closes the
    /// open sockets in batches over the drain period (WebSocket close 1012,
    /// so clients reconnect elsewhere; channels terminate with
    /// `Terminate::Shutdown`), and returns.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        server::serve(listener, self.router, self.registry, self.server, shutdown).await
    }
}

/// Completes on ctrl-c, or SIGTERM on unix (what process managers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
