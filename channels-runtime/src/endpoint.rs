//! [`Endpoint`]: the sockets of an application, served over HTTP.
//!
//! ```no_run
//! # use phx_channels_runtime as phx_channels;
//! # use phx_channels::{endpoint::Endpoint, channel::{Routes, Route}, connect::*};
//! # use std::sync::atomic::{AtomicU64, Ordering};
//! # struct UserSocket;
//! /// The application's state: whatever `connect`, the channels and the
//! /// app's own HTTP routes share.
//! #[derive(Default)]
//! struct App { visits: AtomicU64 }
//!
//! impl Connect for UserSocket {
//!     type State = App;
//!     type Assigns = ();
//!     async fn connect(_: &Params, _: &ConnectInfo, app: &App) -> Result<(), Refuse> {
//!         app.visits.fetch_add(1, Ordering::Relaxed);
//!         Ok(())
//!     }
//! }
//! # impl Routes for UserSocket { const ROUTES: &'static [Route<Self>] = &[]; }
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use axum::{extract::State, routing::get, Router};
//!
//! let endpoint = Endpoint::with_state(App::default())
//!     .socket("/socket", UserSocket)
//!     // The app's own routes see the same state, as axum's `State`:
//!     .merge(Router::new().route(
//!         "/visits",
//!         get(|State(app): State<Arc<App>>| async move { app.visits.load(Ordering::Relaxed).to_string() }),
//!     ));
//!
//! // Broadcast from anywhere, e.g. an HTTP handler:
//! endpoint.broadcast("comments:42", "comments:42:new", serde_json::json!({"comment": {}})).unwrap();
//!
//! endpoint.serve("127.0.0.1:4000").await
//! # }
//! ```

use std::any::Any;
use std::sync::Arc;

use axum::routing::any;
use axum::Router;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::channel::Routes;
use crate::connect::Connect;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::options::SocketOptions;
use crate::protocol::IntoPayload;
use crate::pubsub::{BroadcastError, PubSub};
use crate::registry::Registry;
use crate::server::{self, ServerOptions};
use crate::transport::budget::Budget;
use crate::transport::raw::{self, RawSocket};
use crate::transport::{longpoll, websocket, Mount};

/// Adds one mounted socket's routes to the router being built.
type MountSocket = Arc<dyn Fn(Router, &Parts) -> Router + Send + Sync>;

/// What every mounted socket shares, as the router is built.
struct Parts {
    pubsub: PubSub,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    budget: Arc<Budget>,
    state: Arc<dyn Any + Send + Sync>,
}

impl Parts {
    /// What a socket mounted with `options` needs.
    fn mount(&self, options: SocketOptions) -> Mount {
        Mount {
            pubsub: self.pubsub.clone(),
            options,
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            budget: self.budget.clone(),
            state: self.state.clone(),
        }
    }
}

/// An application's sockets, their PubSub, the application's state `St`
/// (`()` for none), and any other routes to serve beside them. Cheap to
/// clone; clones share the PubSub and the state.
///
/// The state is given once ([`Endpoint::with_state`]) and held in one
/// `Arc`: `connect`, `id`, every channel callback
/// ([`Socket::state`](crate::socket::Socket::state)) and the routes given
/// to [`Endpoint::merge`] (as axum's `State<Arc<St>>`) all see that one
/// value. Two endpoints never share state unless given the same `Arc`.
pub struct Endpoint<St = ()> {
    state: Arc<St>,
    pubsub: PubSub,
    sockets: Vec<MountSocket>,
    routes: Vec<Router<Arc<St>>>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    /// Bytes of half-received messages, across the endpoint's sockets.
    budget: Arc<Budget>,
    server: ServerOptions,
    /// What `serve` wraps connections in, if anything.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls>,
}

impl<St> Clone for Endpoint<St> {
    fn clone(&self) -> Self {
        Endpoint {
            state: self.state.clone(),
            pubsub: self.pubsub.clone(),
            sockets: self.sockets.clone(),
            routes: self.routes.clone(),
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            budget: self.budget.clone(),
            server: self.server,
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
        }
    }
}

impl<St> std::fmt::Debug for Endpoint<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("state", &std::any::type_name::<St>())
            .field("sockets", &self.sockets.len())
            .field("routes", &self.routes.len())
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new()
    }
}

impl Endpoint {
    /// An endpoint without application state, on the in-process PubSub.
    pub fn new() -> Self {
        Endpoint::with_state(())
    }
}

impl<St: Send + Sync + 'static> Endpoint<St> {
    /// An endpoint whose sockets share `state` (a value, or an `Arc` the
    /// app keeps a clone of), on the in-process PubSub.
    pub fn with_state(state: impl Into<Arc<St>>) -> Self {
        Endpoint {
            state: state.into(),
            pubsub: PubSub::local(),
            sockets: Vec::new(),
            routes: Vec::new(),
            metrics: Arc::default(),
            registry: Arc::default(),
            budget: Budget::new(ServerOptions::default().max_inflight_bytes),
            server: ServerOptions::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Uses `pubsub` (e.g. one on Redis, for several nodes) instead of the
    /// in-process one, for every socket of the endpoint.
    #[must_use]
    pub fn with_pubsub(mut self, pubsub: PubSub) -> Self {
        self.pubsub = pubsub;
        self
    }

    /// The application's state.
    pub fn state(&self) -> &Arc<St> {
        &self.state
    }

    /// Mounts a socket at `path`: WebSocket at `{path}/websocket` (and
    /// LongPoll at `{path}/longpoll` when [`SocketOptions::longpoll`] is on).
    #[must_use]
    pub fn socket<S: Connect<State = St> + Routes>(self, path: &str, socket: S) -> Self {
        self.socket_with(path, socket, SocketOptions::default())
    }

    /// Mounts a socket with non-default limits.
    #[must_use]
    pub fn socket_with<S: Connect<State = St> + Routes>(
        mut self,
        path: &str,
        _socket: S,
        options: SocketOptions,
    ) -> Self {
        let path = path.trim_end_matches('/').to_owned();
        self.sockets.push(Arc::new(move |router: Router, parts: &Parts| {
            // The topics of channels declared with `history(..)` keep it.
            crate::channel::keep_histories::<S>(&parts.pubsub);
            let longpoll = options.longpoll;
            let mount = Arc::new(parts.mount(options.clone()));
            let mut router = router;
            if longpoll {
                let sessions = longpoll::Sessions::<S>::new(mount.clone());
                router =
                    router.route(&format!("{path}/longpoll"), any(move |req| longpoll::handle(sessions.clone(), req)));
            }
            router.route(&format!("{path}/websocket"), any(move |req| websocket::upgrade::<S>(mount.clone(), req)))
        }));
        self
    }

    /// Mounts a raw transport at `path`: a handler of plain WebSocket
    /// messages at `{path}/websocket` (see [`crate::transport::raw`]),
    /// with the default limits.
    #[must_use]
    pub fn raw_socket<T: RawSocket<State = St>>(self, path: &str, socket: T) -> Self {
        self.raw_socket_with(path, socket, SocketOptions::default())
    }

    /// Mounts a raw transport with non-default limits (the framing,
    /// idle and outbound limits, the origin check; the rest of
    /// [`SocketOptions`] is for Phoenix sockets).
    #[must_use]
    pub fn raw_socket_with<T: RawSocket<State = St>>(mut self, path: &str, _socket: T, options: SocketOptions) -> Self {
        let path = path.trim_end_matches('/').to_owned();
        self.sockets.push(Arc::new(move |router: Router, parts: &Parts| {
            let mount = Arc::new(parts.mount(options.clone()));
            router.route(&format!("{path}/websocket"), any(move |req| raw::upgrade::<T>(mount.clone(), req)))
        }));
        self
    }

    /// Mounts the live dashboard ([`crate::dashboard`]) at `path`, behind
    /// `guard`: the page at `path`, its socket at `{path}/socket`. Off
    /// unless mounted; while no page watches, it costs nothing but its
    /// routes (and, on several nodes, one subscription to answer other
    /// nodes' watchers).
    ///
    /// ```no_run
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::dashboard::TokenGuard;
    /// use phx_channels::endpoint::Endpoint;
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let token = std::env::var("DASHBOARD_TOKEN").expect("a secret for the dashboard");
    /// // Open http://127.0.0.1:4000/dashboard?token=<the secret>
    /// Endpoint::new().dashboard("/dashboard", TokenGuard::new(token)).serve("127.0.0.1:4000").await
    /// # }
    /// ```
    #[must_use]
    pub fn dashboard(mut self, path: &str, guard: impl crate::dashboard::Guard) -> Self {
        let dashboard = crate::dashboard::Dashboard::new(path, guard);
        self.sockets.push(Arc::new(move |router: Router, parts: &Parts| {
            dashboard.mount(router, &parts.pubsub, &parts.metrics, &parts.registry, &parts.budget)
        }));
        self
    }

    /// Adds the application's own routes (pages, an API) to serve beside
    /// the sockets. They may extract the endpoint's state as axum's
    /// `State<Arc<St>>`.
    #[must_use]
    pub fn merge(mut self, routes: Router<Arc<St>>) -> Self {
        self.routes.push(routes);
        self
    }

    /// The sockets (and merged routes) as an axum router, to nest in an
    /// existing application. Each call builds a fresh router (LongPoll
    /// sessions belong to the router they were opened on).
    pub fn router(&self) -> Router {
        // Exported from the start, at 0, to the recorder installed by now.
        self.metrics.export();
        self.pubsub.fanout().export();
        if self.pubsub.is_multi_node() {
            // Every node gossips presence, also one that tracks nothing
            // itself: its clients still see the others' presences.
            crate::presence::Presence::attach(&self.pubsub);
        }
        let parts = Parts {
            pubsub: self.pubsub.clone(),
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            budget: self.budget.clone(),
            state: self.state.clone(),
        };
        let sockets = self.sockets.iter().fold(Router::new(), |router, mount| mount(router, &parts));
        self.routes.iter().fold(sockets, |router, routes| router.merge(routes.clone().with_state(self.state.clone())))
    }

    /// The endpoint's PubSub.
    pub fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }

    /// Broadcasts `event` to every subscriber of `topic` on every node, from
    /// outside any channel. Broadcasting `disconnect` to a socket id closes
    /// every connection with that id.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        self.pubsub.broadcast(topic, event, payload)
    }

    /// Broadcasts to the subscribers on this node only.
    pub fn local_broadcast(&self, topic: &str, event: &str, payload: impl IntoPayload) -> Result<(), BroadcastError> {
        self.pubsub.local_broadcast(topic, event, payload)
    }

    /// The endpoint's counters at this moment, without any recorder.
    ///
    /// The same figures (and durations, by channel and event) also go to
    /// the [`metrics`](https://docs.rs/metrics) facade's recorder, when the
    /// application installs one before the endpoint serves: see
    /// `docs/observability.md` for the names, and for serving them to
    /// Prometheus.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::endpoint::Endpoint;
    ///
    /// let endpoint = Endpoint::new();
    /// let now = endpoint.metrics();
    /// assert_eq!((now.connections_open, now.joins, now.broadcasts), (0, 0, 0));
    /// ```
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot(self.pubsub.fanout())
    }

    /// Caps the connections (WebSocket and LongPoll) open at once across
    /// the endpoint's sockets; over it, connects get HTTP 503. Default: no
    /// cap beyond the process's file descriptor limit.
    #[must_use]
    pub fn max_connections(self, max: usize) -> Self {
        self.registry.set_max(max);
        self
    }

    /// Sets the server's timeouts, its shutdown drain, and what clients
    /// may hold ([`ServerOptions`]).
    #[must_use]
    pub fn server_options(mut self, options: ServerOptions) -> Self {
        self.budget.set_max(options.max_inflight_bytes);
        self.registry.set_max_per_source(options.max_connections_per_source);
        self.server = options;
        self
    }

    /// Serves HTTPS and WSS instead of HTTP and WS ([`Endpoint::serve`] and
    /// friends; a router served by the app's own server is the app's to
    /// wrap). Keep a clone of `tls` to [`reload`](crate::tls::Tls::reload)
    /// the certificate while the endpoint serves. See `docs/tls.md`.
    ///
    /// ```no_run
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::endpoint::Endpoint;
    /// use phx_channels::tls::Tls;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let tls = Tls::from_pem_files("cert.pem", "key.pem")?;
    /// Endpoint::new().tls(tls).serve("0.0.0.0:443").await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: crate::tls::Tls) -> Self {
        self.tls = Some(tls);
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
        let router = self.router();
        #[cfg(feature = "tls")]
        let tls = self.tls.as_ref().map(crate::tls::Tls::acceptor);
        #[cfg(not(feature = "tls"))]
        let tls = None;
        server::serve(listener, router, self.registry, self.metrics, self.server, tls, shutdown).await
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
