//! The HTTP server loop behind [`Endpoint::serve`](crate::endpoint::Endpoint::serve):
//! accepts TCP connections, tunes them for a real-time server, serves the
//! router on them, and shuts down gracefully.
//!
//! - `TCP_NODELAY`: frames are small and latency matters; Nagle's algorithm
//!   would hold them back.
//! - TCP keepalive: a peer that vanished without a FIN (a half-open
//!   connection) is found and reaped by the kernel even if the socket has
//!   no heartbeat timeout running (LongPoll, a handshake in progress).
//! - A handshake timeout: a client must finish its TLS handshake (with
//!   `Endpoint::tls`), then send its request headers, each within it, so
//!   slow or silent clients cannot pin file descriptors; and a body
//!   timeout: a request's body must arrive whole within it, so a client
//!   that sends headers and withholds the body cannot either.
//! - A per-source cap ([`ServerOptions::max_connections_per_source`]):
//!   a client address over it is answered 503 as its connection is
//!   accepted, before its request is read.
//! - Running out of file descriptors does not leave clients hanging in the
//!   listen queue until their own timeout: the server keeps one descriptor
//!   spare, accepts on it, answers 503 and closes; and it does not spin:
//!   accepting pauses.

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

use crate::logging::Line;
use crate::metrics::{Metrics, Refusal};
use crate::registry::Registry;

/// How the server treats connections and shuts down, and what it lets
/// clients hold.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::server::ServerOptions;
///
/// let options = ServerOptions { max_connections_per_source: 1000, ..ServerOptions::default() };
/// assert_eq!(options.max_inflight_bytes, 128 * 1024 * 1024);
/// ```
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
    /// Bytes of half-received messages the endpoint holds at once, across
    /// every connection: WebSocket messages whose frames have not all
    /// arrived, and LongPoll `POST` bodies being read. A message larger than
    /// 64 KiB that would go over it is refused as it starts (its header, or
    /// its `Content-Length`): the WebSocket closes with 1013 ("try again
    /// later"), the `POST` gets HTTP 503 with `Retry-After`. Smaller ones
    /// are never refused by it. Each connection is bounded by
    /// [`SocketOptions::max_frame_size`](crate::SocketOptions::max_frame_size);
    /// this bounds them together (a thousand clients each holding most of
    /// a 9 MB frame held 8.6 GB). Applies to every router of the endpoint,
    /// served by [`Endpoint::serve`](crate::endpoint::Endpoint::serve) or
    /// not. 0: no limit. Default: 128 MiB.
    pub max_inflight_bytes: usize,
    /// Connections one client address (an IPv4 address, or an IPv6 /64)
    /// may hold at once: HTTP connections being served, WebSockets and
    /// LongPoll sessions. A connection over it is answered HTTP 503 with
    /// `Retry-After` as it is accepted, before its request is read. Behind
    /// a proxy or a load balancer every client has the proxy's address:
    /// leave it off there. 0: no cap. Default: 0.
    pub max_connections_per_source: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            drain_period: Duration::from_secs(10),
            drain_batch: 1000,
            max_inflight_bytes: 128 * 1024 * 1024,
            max_connections_per_source: 0,
        }
    }
}

/// Serves HTTP on one connection (upgrades included) until it ends, or
/// finishes its requests once the server is `closing`.
async fn http<I, S>(builder: &http1::Builder, io: I, service: S, closing: &CancellationToken, peer: SocketAddr)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(io, service).with_upgrades();
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

/// What wraps each accepted connection in TLS
/// ([`Endpoint::tls`](crate::endpoint::Endpoint::tls)); without the `tls`
/// feature, nothing can.
#[cfg(feature = "tls")]
pub(crate) type Acceptor = tokio_rustls::TlsAcceptor;
/// What wraps each accepted connection in TLS: without the `tls` feature,
/// nothing can.
#[cfg(not(feature = "tls"))]
pub(crate) type Acceptor = std::convert::Infallible;

/// Serves `router` on `listener` (in TLS with `tls`) until `shutdown`
/// completes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    options: ServerOptions,
    tls: Option<Acceptor>,
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
    let mut spare = open_spare();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if out_of_files(&error) && spare.is_some() => {
                    // The client is told (503), rather than left waiting in
                    // the listen queue for descriptors to free up.
                    drop(spare.take());
                    // The client waiting now, not one that comes later.
                    if let Ok((socket, _)) = socket2::SockRef::from(&listener).accept() {
                        metrics.connections_refused.incr(Refusal::Source);
                        if metrics.lines.allow(Line::OutOfFiles) {
                            tracing::warn!(%error, "{}", Line::OutOfFiles.what());
                        }
                        refuse(socket.into());
                    }
                    spare = open_spare();
                    continue;
                }
                Err(error) => {
                    // EMFILE and friends: wait for descriptors to free up.
                    if metrics.lines.allow(Line::OutOfFiles) {
                        tracing::warn!(%error, "accept failed; pausing");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    spare = spare.or_else(open_spare);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(serving) = registry.serve(peer.ip()) else {
            metrics.connections_refused.incr(Refusal::Source);
            if metrics.lines.allow(Line::SourceLimit) {
                tracing::warn!(%peer, "{}", Line::SourceLimit.what());
            }
            if let Ok(stream) = stream.into_std() {
                refuse(stream);
            }
            continue;
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
        let closing = closing.clone();
        let builder = builder.clone();
        #[cfg_attr(not(feature = "tls"), allow(clippy::clone_on_copy))]
        let tls = tls.clone();
        let handshake_timeout = options.handshake_timeout;
        connections.spawn(async move {
            // The source's count holds while hyper serves the connection
            // (until it ends, or is handed over as a WebSocket, which
            // counts on its own).
            let _serving = serving;
            match tls {
                None => http(&builder, TokioIo::new(stream), service, &closing, peer).await,
                #[cfg(feature = "tls")]
                Some(acceptor) => {
                    // The TLS handshake has the handshake timeout too (then
                    // hyper's header timer starts): a client that opens a
                    // connection and says nothing holds it no longer than
                    // one that sends no headers.
                    let started = tokio::time::Instant::now();
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => http(&builder, TokioIo::new(stream), service, &closing, peer).await,
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, elapsed = ?started.elapsed(), "no TLS handshake in time"),
                    }
                }
                #[cfg(not(feature = "tls"))]
                Some(never) => match never {},
            }
            #[cfg(not(feature = "tls"))]
            let _ = handshake_timeout;
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

/// A descriptor kept open for the moment the process runs out of them: it
/// is closed to accept the client waiting, that client is refused, and it
/// is opened again.
fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Whether an accept failed for want of file descriptors.
fn out_of_files(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// Refuses a connection just accepted: answers HTTP 503 with
/// `Retry-After`, without waiting for anything, and closes it. What its
/// client already sent is read first (closing a socket with unread bytes
/// resets it, and the client could lose the answer).
fn refuse(mut stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n\
        Content-Length: 19\r\nConnection: close\r\n\r\nserver busy, retry\n";
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = stream.write(BUSY);
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

/// Makes memory freed after a spike go back to the operating system at
/// once; call it at start, before serving. Returns whether it applied.
///
/// With glibc's allocator (Linux), a block of 128 KiB or more (a large
/// frame, a large body) is then always served by a mapping of its own,
/// returned to the system when freed. Left alone, glibc raises that
/// threshold to the largest block freed so far, and later large blocks
/// come from its arenas, which keep what they held: 100 clients that each
/// echoed one 5 MB message left a server at 386 MB after they all left,
/// instead of its 8 MB idle size. Blocks under 128 KiB (the frames of
/// ordinary traffic) are allocated as before: the hot path does not
/// change. Elsewhere (another allocator, another C library) it does
/// nothing and returns `false`.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// # #[cfg(all(target_os = "linux", target_env = "gnu"))]
/// assert!(phx_channels::server::return_memory_to_os());
/// ```
pub fn return_memory_to_os() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's own default threshold, kept fixed.
        const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only changes the allocator's tuning, and is safe
        // to call at any time.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
