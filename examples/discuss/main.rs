//! `discuss`: topics with comments, pushed live over Phoenix channels.
//!
//! The contract it implements is `shared/conformance/CONTRACT.md`; any
//! Phoenix client (phoenix.js first) can use it unchanged.
//!
//! ```text
//! cargo run --release --example discuss              # http://127.0.0.1:4000
//! cargo run --release --example discuss -- --port 4100 --host 127.0.0.1
//! cargo run --example discuss -- typescript --strict tests/js/ts/discuss.ts  # the typed client module
//! ```
//!
//! Several nodes share broadcasts and presence through the broker named in
//! the environment (one of them; without any, the in-process PubSub serves
//! one node):
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example discuss
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,redis://127.0.0.1:7001 cargo run --release --example discuss
//! NATS_URL=nats://127.0.0.1:4222 cargo run --release --example discuss   # nats-server -js: comments:* keep history in JetStream
//! ```
//!
//! Comments are kept in a database, through `sqlx` (`app/store.rs`):
//! `DATABASE_URL` names it, `sqlite://discuss.db` (a file in the working
//! directory, made at the first start) by default; migrations
//! (`examples/discuss/migrations/`) run at start. Nodes that share comments
//! share a PostgreSQL database:
//!
//! ```text
//! DATABASE_URL=sqlite:///var/lib/discuss/comments.db cargo run --release --example discuss
//! DATABASE_URL=postgres://discuss@127.0.0.1/discuss REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example discuss
//! ```
//!
//! A topic keeps its newest `DISCUSS_COMMENTS_PER_TOPIC` comments (default
//! 1 000) and the database its newest `DISCUSS_COMMENTS_KEPT` (default
//! 100 000); older ones are deleted as new ones come.
//!
//! `NODE_NAME` names the node among the others (a node restarted under the
//! same name replaces its previous life at once); `PRESENCE_DOWN_PERIOD_MS`
//! sets how long a silent node's presences survive (default 3 s).
//! `DISCUSS_MAX_BROADCASTS_PER_SECOND` sets the broadcasts one connection
//! may make per second (default 100; 0: unlimited), for benchmarks that
//! push from one client faster than that. `DISCUSS_COMPRESS=1` turns
//! permessage-deflate on (`SocketOptions::compress`: browsers offer it).
//!
//! Connections are capped below the open-file limit, so that a flood gets
//! 503 while the server still has descriptors to answer it with
//! (`DISCUSS_MAX_CONNECTIONS`, default: the limit less 256), and per client
//! address (`DISCUSS_MAX_CONNECTIONS_PER_SOURCE`, default 1000; 0: no cap;
//! leave it at 0 behind a proxy, where every client has its address). At
//! start the example makes memory freed after a spike go back to the system
//! (`server::return_memory_to_os`).
//!
//! `POST /api/disconnect?id=SOCKET_ID` (every connection with that socket id
//! is closed), `GET /api/stats` (the endpoint's and the broker's counters)
//! and `GET /metrics` (every figure of the runtime, in Prometheus's text
//! format, through `metrics-exporter-prometheus`) need
//! `Authorization: Bearer $DISCUSS_ADMIN_TOKEN`; without
//! `DISCUSS_ADMIN_TOKEN` in the environment those routes are closed (403).
//!
//! `GET /dashboard?token=$DISCUSS_DASHBOARD_TOKEN` is the live dashboard
//! (`Endpoint::dashboard`: connections, channels, joins and messages per
//! second, the largest topics, presences, one row per node); without
//! `DISCUSS_DASHBOARD_TOKEN` it is closed (403) like the admin routes.
//!
//! `GET /` is a demo page (`examples/web`) that uses the socket through the
//! official phoenix.js client from npm, which the example serves itself so the
//! page needs no outside network. When `examples/web/node_modules` is missing
//! at start, the example runs `npm ci` there once, in the background.

mod app;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use phx_channels::dashboard::{Access, Guard, TokenGuard};
use phx_channels::prelude::*;
use phx_channels::pubsub::{Nats, Redis, RedisCluster};
use phx_channels::{MetricsSnapshot, PresenceOptions, ServerOptions, SocketOptions};
use serde::Deserialize;

use app::store::{Limits, Store};
use app::{Admin, App, UserSocket};

#[derive(Deserialize)]
struct DisconnectQuery {
    id: String,
}

/// `POST /api/disconnect?id=SOCKET_ID` with `Authorization: Bearer
/// $DISCUSS_ADMIN_TOKEN`: closes every connection with that socket id, from
/// outside any channel. The app's own route, beside the sockets, reading the
/// same state they do.
async fn disconnect(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<DisconnectQuery>) -> StatusCode {
    if let Err(status) = admin(&app, &headers, "POST /api/disconnect") {
        return status;
    }
    match app.pubsub.broadcast(&q.id, "disconnect", json!({})) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `GET /api/stats` with the admin token: this node's endpoint counters
/// (`Endpoint::metrics`) and broker counters (`null` on a single node), for
/// the multi-node and dashboard tests and benchmarks.
fn stats(app: &App, headers: &HeaderMap, metrics: MetricsSnapshot) -> Response {
    if let Err(status) = admin(app, headers, "GET /api/stats") {
        return status.into_response();
    }
    axum::Json(json!({"broker": app.pubsub.broker_stats(), "metrics": metrics})).into_response()
}

/// The dashboard's guard: the token of `DISCUSS_DASHBOARD_TOKEN`, or closed
/// (403) without one, as the admin routes are.
struct DashboardGuard(Option<TokenGuard>);

impl Guard for DashboardGuard {
    fn check(&self, access: &Access<'_>) -> Result<(), Refuse> {
        match &self.0 {
            Some(token) => token.check(access),
            None => {
                tracing::warn!("the dashboard refused: set DISCUSS_DASHBOARD_TOKEN to enable it");
                Err(Refuse::forbidden())
            }
        }
    }
}

/// The runtime's figures for Prometheus: the recorder is installed before
/// the endpoint serves, so every figure finds it.
fn prometheus() -> anyhow::Result<PrometheusHandle> {
    /// Seconds, from 100 µs (a `handle_in` that only replies) to 10 s.
    const DURATION_BUCKETS: [f64; 14] =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &DURATION_BUCKETS)?
        .install_recorder()?;
    // Without the exporter's own HTTP listener, its upkeep (bounding the
    // histograms' memory between scrapes) is ours to run.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `GET /metrics` with the admin token (a Prometheus scrape config sends
/// it as `authorization: {credentials: ...}`).
fn metrics_route(handle: PrometheusHandle) -> Router<Arc<App>> {
    Router::new().route(
        "/metrics",
        get(move |State(app): State<Arc<App>>, headers: HeaderMap| async move {
            if let Err(status) = admin(&app, &headers, "GET /metrics") {
                return status.into_response();
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
        }),
    )
}

fn admin(app: &App, headers: &HeaderMap, route: &str) -> Result<(), StatusCode> {
    match app.admin(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) {
        Admin::Allowed => Ok(()),
        Admin::Closed => {
            tracing::warn!("{route} refused: set DISCUSS_ADMIN_TOKEN to enable it");
            Err(StatusCode::FORBIDDEN)
        }
        Admin::Refused => Err(StatusCode::UNAUTHORIZED),
    }
}

/// The demo page's files, found from the crate's directory (not the working
/// directory) so `cargo run --example discuss` works from anywhere.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("web")
}

/// phoenix.js as an ES module, as npm installs it (`examples/web/package.json`
/// pins the version); never copied into the repository.
fn phoenix_mjs() -> PathBuf {
    web_dir().join("node_modules/phoenix/priv/static/phoenix.mjs")
}

/// True while the `npm ci` started by [`install_phoenix_js`] runs, so `/`
/// can say "installing" rather than "run npm ci".
static NPM_RUNNING: AtomicBool = AtomicBool::new(false);

/// On a fresh checkout `examples/web/node_modules` does not exist yet: runs
/// `npm ci` there once, on a thread of its own so the socket serves at once
/// (the page works as soon as it is done). Without npm, or if it fails, the
/// example keeps serving and `/` says what to run.
fn install_phoenix_js() {
    if phoenix_mjs().is_file() {
        return;
    }
    let dir = web_dir();
    tracing::info!(dir = %dir.display(), "phoenix.js is not installed; running `npm ci --no-audit --no-fund` for the demo page");
    NPM_RUNNING.store(true, Ordering::SeqCst);
    std::thread::spawn(move || {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() && phoenix_mjs().is_file() => tracing::info!("npm ci done; the demo page is ready"),
            Ok(s) => tracing::warn!(%s, "npm ci failed; the demo page needs: npm ci --prefix examples/web"),
            Err(e) => tracing::warn!(error = %e, "cannot run npm; the demo page needs: npm ci --prefix examples/web"),
        }
        NPM_RUNNING.store(false, Ordering::SeqCst);
    });
}

/// A file of `examples/web`, read at request time (they are small, and an
/// edited page shows on reload without a rebuild).
fn web_file(path: &Path, content_type: &'static str) -> Response {
    match std::fs::read(path) {
        Ok(bytes) => {
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], bytes).into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, format!("{}: {e}\n", path.display())).into_response(),
    }
}

/// `GET /`: the demo page, or, while phoenix.js is not installed, a short
/// page saying so (the demo cannot work without it).
async fn index() -> Response {
    if phoenix_mjs().is_file() {
        return web_file(&web_dir().join("index.html"), "text/html; charset=utf-8");
    }
    let what = if NPM_RUNNING.load(Ordering::SeqCst) {
        "<p>Installing phoenix.js with <code>npm ci</code>&hellip; reload in a few seconds.</p>"
    } else {
        "<p>phoenix.js is not installed. Run <code>npm ci --prefix examples/web</code>, then reload.</p>"
    };
    let page = format!("<!doctype html><meta charset=utf-8><title>Discuss</title><h1>Discuss</h1>{what}");
    (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
}

/// The demo page and what it loads, beside the socket.
fn web_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { web_file(&web_dir().join("app.js"), "text/javascript; charset=utf-8") }),
        )
        .route("/assets/style.css", get(|| async { web_file(&web_dir().join("style.css"), "text/css; charset=utf-8") }))
        .route("/assets/phoenix.mjs", get(|| async { web_file(&phoenix_mjs(), "text/javascript; charset=utf-8") }))
}

/// The in-process PubSub, or the broker the environment names.
fn pubsub() -> anyhow::Result<PubSub> {
    let mut presence = PresenceOptions { node_name: env("NODE_NAME"), ..PresenceOptions::default() };
    if let Some(ms) = env("PRESENCE_DOWN_PERIOD_MS") {
        presence.down_period = Duration::from_millis(ms.parse()?);
        presence.heartbeat_interval = presence.heartbeat_interval.min(presence.down_period / 4);
    }
    let engines = [env("REDIS_URL"), env("REDIS_CLUSTER_URLS"), env("NATS_URL")];
    let pubsub = match engines {
        [None, None, None] => PubSub::local(),
        [Some(url), None, None] => {
            tracing::info!(url, "sharing broadcasts and presence through Redis");
            PubSub::with_adapter(Redis::new(&url)?)
        }
        [None, Some(urls), None] => {
            let seeds: Vec<&str> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
            tracing::info!(?seeds, "sharing broadcasts and presence through Redis Cluster");
            PubSub::with_adapter(RedisCluster::new(&seeds)?)
        }
        [None, None, Some(url)] => {
            tracing::info!(url, "sharing broadcasts and presence through NATS");
            PubSub::with_adapter(Nats::new(&url)?)
        }
        _ => anyhow::bail!("set one of REDIS_URL, REDIS_CLUSTER_URLS and NATS_URL, not several"),
    };
    Presence::start(&pubsub, presence);
    Ok(pubsub)
}

/// Where comments go without `DATABASE_URL`: `discuss.db` in the working
/// directory, made (and migrated) at the first start.
const DEFAULT_DATABASE_URL: &str = "sqlite://discuss.db";

/// The comments' database, from `DATABASE_URL` and the limits' variables.
async fn store() -> anyhow::Result<Store> {
    let url = env("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let mut limits = Limits::default();
    if let Some(n) = env("DISCUSS_COMMENTS_PER_TOPIC") {
        limits.per_topic = n.parse()?;
    }
    if let Some(n) = env("DISCUSS_COMMENTS_KEPT") {
        limits.total = n.parse()?;
    }
    // The URL may hold a password: only its scheme is logged.
    let backend = url.split(':').next().unwrap_or_default();
    let store = Store::connect(&url, limits)
        .await
        .map_err(|e| e.context(format!("cannot open the comments' database ({backend}:..., from DATABASE_URL)")))?;
    tracing::info!(backend = store.backend(), ?limits, "comments kept in the database");
    Ok(store)
}

/// A variable of the environment, unless unset or empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

struct Args {
    host: String,
    port: u16,
}

fn args() -> Result<Args, String> {
    let mut host = "127.0.0.1".to_owned();
    let mut port = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| format!("PORT={p} is not a port number"))?,
        Err(_) => 4000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                let p = it.next().ok_or("--port needs a value")?;
                port = p.parse().map_err(|_| format!("--port {p} is not a port number"))?;
            }
            "--host" => host = it.next().ok_or("--host needs a value")?,
            other => return Err(format!("unknown argument {other}; usage: discuss [--host ADDR] [--port N]")),
        }
    }
    Ok(Args { host, port })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `discuss typescript [--strict] FILE`: writes the socket's TypeScript
    // module (docs/typescript.md); `--strict` refuses to write `unknown`.
    match std::env::args().collect::<Vec<_>>().as_slice() {
        [_, command, file] if command == "typescript" => {
            return Ok(std::fs::write(file, phx_channels::typescript::render::<UserSocket>()?)?);
        }
        [_, command, strict, file] if command == "typescript" && strict == "--strict" => {
            return Ok(std::fs::write(file, phx_channels::typescript::render_strict::<UserSocket>()?)?);
        }
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,phx_channels_runtime=info,async_nats=warn".into()),
        )
        .init();
    let args = args().map_err(anyhow::Error::msg)?;
    // Memory a spike of large messages took goes back once they are gone.
    let returned = phx_channels::server::return_memory_to_os();
    tracing::debug!(returned, "freed memory returned to the system");
    // Every connection is a file descriptor; the default soft limit is low.
    let fd_limit = phx_channels::server::raise_fd_limit()?;
    tracing::debug!(fd_limit, "open-file limit");
    // Room under the limit for the listener, the broker's connections and
    // the HTTP connections being answered (503s included).
    let max_connections = match env("DISCUSS_MAX_CONNECTIONS") {
        Some(n) => n.parse()?,
        None => usize::try_from(fd_limit.saturating_sub(256).max(fd_limit / 2)).unwrap_or(usize::MAX),
    };
    let server = ServerOptions {
        max_connections_per_source: match env("DISCUSS_MAX_CONNECTIONS_PER_SOURCE") {
            Some(n) => n.parse()?,
            None => 1000,
        },
        ..ServerOptions::default()
    };

    let mut options = SocketOptions { longpoll: true, ..SocketOptions::default() };
    if let Some(n) = env("DISCUSS_MAX_BROADCASTS_PER_SECOND") {
        options.max_broadcasts_per_second = n.parse()?;
    }
    options.compress = env("DISCUSS_COMPRESS").is_some_and(|v| v == "1");
    let admin_token = env("DISCUSS_ADMIN_TOKEN");
    let prometheus = prometheus()?;
    let pubsub = pubsub()?;
    let app = Arc::new(App::new(store().await?, pubsub.clone(), admin_token));
    let endpoint = Endpoint::with_state(app.clone())
        .with_pubsub(pubsub)
        .socket_with("/socket", UserSocket, options)
        .dashboard("/dashboard", DashboardGuard(env("DISCUSS_DASHBOARD_TOKEN").map(TokenGuard::new)))
        .max_connections(max_connections)
        .server_options(server);
    // A clone shares the endpoint's counters.
    let counters = endpoint.clone();
    let stats = get(move |State(app): State<Arc<App>>, headers: HeaderMap| {
        let metrics = counters.metrics();
        async move { stats(&app, &headers, metrics) }
    });
    let endpoint = endpoint
        .merge(Router::new().route("/api/disconnect", post(disconnect)).route("/api/stats", stats))
        .merge(metrics_route(prometheus))
        .merge(web_routes());
    install_phoenix_js();

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    println!("listening on http://{addr}");
    endpoint.serve_on(listener).await?;
    // Every channel has ended: the last writes are in, SQLite's WAL is
    // folded back into its file.
    app.comments.close().await;
    Ok(())
}
