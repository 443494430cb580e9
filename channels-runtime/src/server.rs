//! The HTTP server loop behind [`Endpoint::serve`](crate::endpoint::Endpoint::serve):
//! accepts TCP connections, tunes them for a real-time server, serves the
//! router on them, and shuts down gracefully.
//!
//! - `TCP_NODELAY`: frames are small and latency matters; Nagle's algorithm
//!   would hold them back.
//! - TCP keepalive: a peer that vanished without a FIN (a half-open
//!   connection) is found and reaped by the kernel even if the socket has
//!   no heartbeat timeout running (LongPoll, a handshake in progress).
//! - A handshake timeout: a client must send its request headers within
//!   it, so slow or silent clients cannot pin file descriptors; and a body
//!   timeout: a request's body must arrive whole within it, so a client
//!   that sends headers and withholds the body cannot either.
//! - Running out of file descriptors does not spin: accepting pauses.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::registry::Registry;

/// How the server treats connections and shuts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Time a client has to send its request headers.
    pub handshake_timeout: Duration,
    /// Time a request's body has to arrive whole, from the end of its
    /// headers. Over it, reading the body fails (LongPoll answers HTTP 408)
    /// and the connection closes once the answer is written.
    pub body_timeout: Duration,
    /// How long graceful shutdown spends closing sockets (Phoenix's drainer:
    /// in batches spread over this period), before the rest are dropped.
    pub drain_period: Duration,
    /// How many sockets are closed per batch while draining.
    pub drain_batch: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            drain_period: Duration::from_secs(10),
            drain_batch: 1000,
        }
    }
}

fn tune(stream: &TcpStream) {
    // Best effort: a socket that refuses these options still works.
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    registry: Arc<Registry>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // HTTP/1.1 only: WebSocket upgrades and phoenix.js's LongPoll use it,
    // and its header timeout runs from the connection's first moment.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(options.handshake_timeout);
    // Tells connections still serving HTTP requests to finish up, and
    // waits for them. (Not hyper-util's `GracefulShutdown`: it only watches
    // its auto connection, whose HTTP/2 preface sniffing reads the first
    // bytes before hyper's header timer starts, so a silent client would
    // never be cut off.)
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: wait for descriptors to free up.
                    tracing::warn!(%error, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tune(&stream);
        let router = router.clone();
        let body_timeout = options.body_timeout;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let mut router = router.clone();
            let deadline = tokio::time::Instant::now() + body_timeout;
            async move { router.call(request.map(|body| axum::body::Body::new(Deadline::new(body, deadline)))).await }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let closing = closing.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, %peer, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(open = registry.len(), "shutting down: draining sockets");
    registry.drain(options.drain_batch, options.drain_period).await;
    // In-flight HTTP requests (long polls included) finish; idle
    // keep-alive connections close. Upgraded sockets were drained above.
    // (An upgraded connection's task has ended: hyper handed its socket on.)
    closing.cancel();
    connections.close();
    if tokio::time::timeout(Duration::from_secs(2), connections.wait()).await.is_err() {
        tracing::info!(open = connections.len(), "http connections still open after 2 s of shutdown; leaving them");
    }
    Ok(())
}

/// A request body did not arrive whole within [`ServerOptions::body_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
pub(crate) struct BodyTimeout;

impl BodyTimeout {
    /// Whether `error`, or what caused it, is a body timeout.
    pub(crate) fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(error) = next {
            if error.is::<BodyTimeout>() {
                return true;
            }
            next = error.source();
        }
        false
    }
}

/// A request body that must arrive whole by a deadline. The timer is only
/// made once the body keeps the reader waiting, so requests whose body is
/// already there (most, and every WebSocket upgrade) cost no timer.
struct Deadline<B> {
    inner: B,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Deadline<B> {
    fn new(inner: B, deadline: tokio::time::Instant) -> Self {
        Deadline { inner, deadline, timer: None }
    }
}

impl<B> hyper::body::Body for Deadline<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Raises this process's soft limit on open files to its hard limit and
/// returns the new limit. Each connection is a file descriptor, and the
/// default soft limit (often 1024) is far below what a server can hold;
/// call this at start.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// let limit = phx_channels::server::raise_fd_limit().unwrap();
/// assert!(limit >= 256);
/// ```
#[cfg(unix)]
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit` writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `setrlimit` only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}
