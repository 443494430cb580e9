//! A live dashboard of an endpoint, opt in: mounted by
//! [`Endpoint::dashboard`](crate::endpoint::Endpoint::dashboard) behind a
//! [`Guard`] the application supplies, and absent otherwise.
//!
//! It is one page (HTML, a small JavaScript module and CSS, built into the
//! crate: no build step, nothing from the network) and a socket of its
//! own beside it, under the same path:
//!
//! | path | what |
//! | --- | --- |
//! | `{path}` | the page (guarded) |
//! | `{path}/assets/dashboard.js`, `.../dashboard.css` | its script and style (public: code, no figures) |
//! | `{path}/socket/websocket` | the socket the page joins (guarded) |
//!
//! The page joins one channel, `phx_dashboard:<id>`, and is pushed a row
//! per node every second: the endpoint's counters (connections, channels,
//! joins, messages in and out, slow consumers, crashes, as
//! [`MetricsSnapshot`](crate::MetricsSnapshot) has them) with their
//! per-second rates, the largest topics by subscribers, presences tracked,
//! and the broker's counters. It charts the last two minutes.
//!
//! **Costs nothing while nobody watches.** The tick is the channel's own
//! timer ([`Socket::send_after`](crate::socket::Socket::send_after)): it
//! dies with the channel. With no page joined, no task, timer or sampling
//! runs. The dashboard's own connections are not counted in the figures it
//! shows (its socket keeps counters of its own), though they do count
//! toward [`Endpoint::max_connections`](crate::endpoint::Endpoint::max_connections)
//! and are drained at shutdown like every socket.
//!
//! **One row per node.** When several nodes share a broker, each tick the
//! watcher's node asks the others over the PubSub (`phx_dashboard_ask`, an
//! internal topic every node with a dashboard mounted subscribes to); each
//! answers with a sample of its own on the watcher's topic. A node nobody
//! watches only answers. Nodes are named by their presence node name
//! ([`PresenceOptions::node_name`](crate::presence::PresenceOptions::node_name)).
//!
//! **The guard.** A browser opening a page cannot set headers, so the
//! token travels as `?token=` on the page's URL; the page hands it to its
//! socket the way phoenix.js's `authToken` does (in the WebSocket
//! sub-protocol, so it is in no socket URL or access log). The socket
//! takes it there only: a token in the socket's query is ignored (proxies
//! log URLs). The guard sees both through [`Access::token`], and the
//! request's headers (cookies) and
//! parameters through [`Access::info`] and [`Access::params`]. A page
//! refused gets the refusal's status (401 or 403), a socket refused is an
//! upgrade refused with it.
//!
//! ```no_run
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::connect::Refuse;
//! use phx_channels::dashboard::{Access, TokenGuard};
//! use phx_channels::endpoint::Endpoint;
//!
//! # async fn run() -> std::io::Result<()> {
//! // http://127.0.0.1:4000/dashboard?token=s3cret
//! Endpoint::new().dashboard("/dashboard", TokenGuard::new("s3cret")).serve("127.0.0.1:4000").await?;
//!
//! // Or any check of the app's own, e.g. a session cookie:
//! Endpoint::new()
//!     .dashboard("/ops", |access: &Access<'_>| match access.info().cookie("role") {
//!         Some("ops") => Ok(()),
//!         _ => Err(Refuse::forbidden()),
//!     })
//!     .serve("127.0.0.1:4000")
//!     .await
//! # }
//! ```

mod sample;
mod watch;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::connect::{ConnectInfo, Params, Refuse};
use crate::logging::Line;
use crate::metrics::Metrics;
use crate::options::SocketOptions;
use crate::pubsub::PubSub;
use crate::registry::Registry;
use crate::transport::{self, websocket, Mount};
use sample::Sampler;
use watch::{DashboardSocket, Watch};

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// Decides who may open the dashboard: called for the page and for every
/// connection of its socket. Any `Fn(&Access) -> Result<(), Refuse>`
/// closure is one; [`TokenGuard`] checks a shared secret.
pub trait Guard: Send + Sync + 'static {
    /// `Ok` lets the request in; a [`Refuse`] answers it with its status.
    fn check(&self, access: &Access<'_>) -> Result<(), Refuse>;
}

impl<F> Guard for F
where
    F: Fn(&Access<'_>) -> Result<(), Refuse> + Send + Sync + 'static,
{
    fn check(&self, access: &Access<'_>) -> Result<(), Refuse> {
        self(access)
    }
}

/// A request to open the dashboard, as its [`Guard`] sees it: the page's
/// `GET`, or its socket's upgrade.
#[derive(Debug)]
pub struct Access<'a> {
    params: &'a Params,
    info: &'a ConnectInfo,
    /// The socket's upgrade, not the page.
    socket: bool,
}

impl<'a> Access<'a> {
    /// The page's request, with these query parameters and this
    /// connection information.
    pub fn new(params: &'a Params, info: &'a ConnectInfo) -> Self {
        Access { params, info, socket: false }
    }

    /// The socket's upgrade request.
    pub(crate) fn socket(params: &'a Params, info: &'a ConnectInfo) -> Self {
        Access { params, info, socket: true }
    }

    /// The token the request carries: for the socket, its `authToken`
    /// (which the page sends in the WebSocket sub-protocol) and nothing
    /// else; for the page, the `token` query parameter (how the page
    /// itself is opened: `{path}?token=..`).
    pub fn token(&self) -> Option<&str> {
        if self.socket {
            return self.info.auth_token();
        }
        self.info.auth_token().or_else(|| self.params.get("token"))
    }

    /// Whether this is the socket's upgrade (else the page's request).
    pub fn is_socket(&self) -> bool {
        self.socket
    }

    /// The query parameters.
    pub fn params(&self) -> &Params {
        self.params
    }

    /// The peer, the URI and the headers (cookies included).
    pub fn info(&self) -> &ConnectInfo {
        self.info
    }
}

/// A [`Guard`] that lets in the requests carrying one secret token
/// ([`Access::token`]): without a token, 401; with another, 403.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::connect::{ConnectInfo, Params};
/// use phx_channels::dashboard::{Access, Guard, TokenGuard};
///
/// let guard = TokenGuard::new("s3cret");
/// let info = ConnectInfo::new(None, "/dashboard".parse().unwrap(), Default::default());
/// let check = |query: &str| guard.check(&Access::new(&Params::from_query(query), &info)).map_err(|r| r.status().as_u16());
/// assert_eq!(check("token=s3cret"), Ok(()));
/// assert_eq!(check("token=guess"), Err(403));
/// assert_eq!(check(""), Err(401));
/// ```
pub struct TokenGuard {
    /// The token's MAC: what a given token's MAC is compared with, in
    /// constant time, so neither the token nor its length shows in timing.
    expected: Vec<u8>,
}

impl TokenGuard {
    /// A guard of `token`.
    pub fn new(token: impl AsRef<str>) -> Self {
        TokenGuard { expected: mac(token.as_ref()).finalize().into_bytes().to_vec() }
    }
}

/// The MAC of a token under a fixed key: any key will do, the point is a
/// fixed-length value compared in constant time.
fn mac(token: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(b"phx-channels dashboard token").expect("HMAC takes keys of any length");
    mac.update(token.as_bytes());
    mac
}

impl Guard for TokenGuard {
    fn check(&self, access: &Access<'_>) -> Result<(), Refuse> {
        let Some(token) = access.token() else {
            return Err(Refuse::with_status(StatusCode::UNAUTHORIZED).reason("dashboard: no token"));
        };
        mac(token).verify_slice(&self.expected).map_err(|_| Refuse::forbidden().reason("dashboard: wrong token"))
    }
}

impl std::fmt::Debug for TokenGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGuard").finish_non_exhaustive()
    }
}

/// A dashboard to mount: where, and behind which guard.
pub(crate) struct Dashboard {
    path: String,
    guard: Arc<dyn Guard>,
}

impl Dashboard {
    pub(crate) fn new(path: &str, guard: impl Guard) -> Self {
        Dashboard { path: path.trim_end_matches('/').to_owned(), guard: Arc::new(guard) }
    }

    /// Adds the page, its assets and its socket to `router`, for the
    /// endpoint whose counters are `metrics`.
    pub(crate) fn mount(
        &self,
        router: Router,
        pubsub: &PubSub,
        metrics: &Arc<Metrics>,
        registry: &Arc<Registry>,
        budget: &Arc<crate::transport::budget::Budget>,
    ) -> Router {
        let sampler = Arc::new(Sampler::new(metrics.clone()));
        sample::answer_asks(pubsub, &sampler);
        let watch = Watch { guard: self.guard.clone(), sampler };
        let mount = Arc::new(Mount {
            pubsub: pubsub.clone(),
            // A page joins one channel; a few leave room for reloads.
            options: SocketOptions { max_channels: 4, ..SocketOptions::default() },
            // Its own counters: the dashboard does not show itself.
            metrics: Arc::default(),
            registry: registry.clone(),
            budget: budget.clone(),
            state: Arc::new(watch),
        });
        let path = &self.path;
        let page = Arc::new(PAGE.replace("{{base}}", &html_escape(path)));
        let guard = self.guard.clone();
        let lines = mount.metrics.clone();
        router
            .route(
                if path.is_empty() { "/" } else { path },
                get(move |req: Request| {
                    let (page, guard, lines) = (page.clone(), guard.clone(), lines.clone());
                    async move { serve_page(&page, &*guard, &req, &lines) }
                }),
            )
            .route(
                &format!("{path}/assets/dashboard.js"),
                get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
            )
            .route(&format!("{path}/assets/dashboard.css"), get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
            .route(
                &format!("{path}/socket/websocket"),
                any(move |req| websocket::upgrade::<DashboardSocket>(mount.clone(), req)),
            )
    }
}

/// The page, if the guard lets the request in.
fn serve_page(page: &str, guard: &dyn Guard, req: &Request, metrics: &Metrics) -> Response {
    let params = Params::from_query(req.uri().query().unwrap_or(""));
    let info = transport::connect_info(req);
    if let Err(refusal) = guard.check(&Access::new(&params, &info)) {
        if metrics.lines.allow(Line::DashboardRefused) {
            let reason = refusal.log_reason().map(|reason| tracing::field::debug(crate::logging::clip(reason)));
            tracing::info!(status = refusal.status().as_u16(), reason, "{}", Line::DashboardRefused.what());
        }
        let hint = if refusal.status() == StatusCode::UNAUTHORIZED { " (open it with ?token=...)" } else { "" };
        return (refusal.status(), format!("the dashboard is guarded{hint}\n")).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The token is in the URL: never in a cache, nor sent on as a referrer.
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; connect-src 'self'; img-src 'self' data:"),
        ],
        page.to_owned(),
    )
        .into_response()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The mount path as HTML attribute text (the app's path, not a visitor's).
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}
