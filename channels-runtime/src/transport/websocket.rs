//! The WebSocket transport, at `<mount>/websocket`.
//!
//! The handshake is checked in Phoenix's order (serializer negotiation,
//! then the app's `connect`) and refused with a plain HTTP status before any
//! upgrade. An accepted connection is one task that reads frames, hands
//! them to the [`Dispatcher`], and writes whatever its outbox holds in
//! batches.
//!
//! Over a plain TCP stream (what [`crate::server`] serves), the upgraded
//! connection is taken back from hyper as its `TcpStream`:
//!
//! - reads wait for readiness and go into a per-thread buffer; only the
//!   unfinished part of a frame stays with the connection
//!   ([`super::wire::Decoder`]), so an idle connection holds no read buffer;
//! - writes go through the [`Outbox`], which writes a frame straight to the
//!   socket when nothing is queued before it: a broadcast reaches an idle
//!   subscriber without waking its task. While the connection's own task
//!   runs (a batch of incoming frames, channel work), what it sends is
//!   corked and goes out in one write when it is done.
//!
//! Other IO types (an app serving the endpoint's router itself, behind TLS)
//! are read and written by [`super::wire`]'s [`Reader`] and [`Writer`].
//! Either way, buffers follow the frames in flight: after a large frame, a
//! connection is back to its idle size. Every close frame a client sends is
//! answered with one (RFC 6455 §5.5.1), and a connection the server closes
//! gets its close frame when the socket can take it, within a grace period.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;
use tungstenite::protocol::frame::coding::CloseCode;

use super::wire::{close_frame, pong_frame, Decoder, Incoming, ReadError, Reader, Writer};
use super::Mount;
use crate::channel::Routes;
use crate::connect::{Connect, ConnectInfo, Params};
use crate::dispatch::{Dispatcher, Wiring};
use crate::logging::{clip, Line};
use crate::metrics::{Metrics, Rejection};
use crate::outbox::{CloseReason, Outbox};
use crate::protocol::{Frame, Serializer};
use crate::registry::Registration;
use crate::source::Source;
use crate::trace::{self, TraceParent};

/// How long a closing connection has to take its close frame and answer
/// it, before the TCP connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// Why a request gets no upgrade: its HTTP status, and what the body says.
pub(crate) struct NotUpgraded(StatusCode, Option<&'static str>);

impl IntoResponse for NotUpgraded {
    fn into_response(self) -> Response {
        match self.1 {
            Some(why) => plain(self.0, why),
            None => self.0.into_response(),
        }
    }
}

/// What a valid upgrade request asks for, and the answer it gets once the
/// connection is admitted.
pub(crate) struct Handshake {
    accept: String,
    /// The sub-protocol selected, if any.
    protocol: Option<&'static str>,
}

impl Handshake {
    /// Checks an upgrade request (method, headers, origin); a request that
    /// cannot be upgraded gets its HTTP answer. `protocol` is the
    /// sub-protocol selected when the client offers it.
    pub(crate) fn check(mount: &Mount, req: &Request, protocol: Option<&'static str>) -> Result<Self, NotUpgraded> {
        let bad = |why| Err(NotUpgraded(StatusCode::BAD_REQUEST, Some(why)));
        if req.method() != Method::GET {
            return bad("WebSocket upgrades use GET");
        }
        let headers = req.headers();
        let is_upgrade =
            header_has(headers, header::CONNECTION, "upgrade") && header_has(headers, header::UPGRADE, "websocket");
        if !is_upgrade {
            return bad("expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)");
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return bad("unsupported Sec-WebSocket-Version (expected 13)");
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return bad("missing Sec-WebSocket-Key");
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let protocol = protocol.filter(|p| header_has(headers, header::SEC_WEBSOCKET_PROTOCOL, p));
        if !super::origin_allowed(mount, headers) {
            return Err(NotUpgraded(StatusCode::FORBIDDEN, None));
        }
        Ok(Handshake { accept, protocol })
    }

    /// The `101 Switching Protocols` answer.
    pub(crate) fn response(&self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = self.protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        }
        response
    }
}

/// An upgrade request that can be upgraded, taken apart for admission.
pub(crate) struct Upgrading {
    pub(crate) handshake: Handshake,
    pub(crate) params: Params,
    pub(crate) info: ConnectInfo,
    pub(crate) span: tracing::Span,
    pub(crate) traceparent: Option<TraceParent>,
    /// The source the connection counts for, while a per-source cap is set.
    pub(crate) source: Option<Source>,
}

impl Upgrading {
    /// Checks `req` ([`Handshake::check`]) and reads what `connect` gets.
    pub(crate) fn new(mount: &Mount, req: &Request, protocol: Option<&'static str>) -> Result<Self, NotUpgraded> {
        let handshake = Handshake::check(mount, req, protocol)?;
        let params = Params::from_query(req.uri().query().unwrap_or(""));
        let info = super::connect_info(req);
        let source = mount.registry.counted_source(info.peer_addr().map(|addr| addr.ip()));
        let span = trace::connection_span("websocket", info.peer_addr(), info.traceparent());
        let traceparent = info.traceparent().copied();
        Ok(Upgrading { handshake, params, info, span, traceparent, source })
    }
}

/// Answers `GET <mount>/websocket`.
pub(crate) async fn upgrade<S: Connect + Routes>(mount: Arc<Mount>, mut req: Request) -> Response {
    // phoenix.js ≥ 1.8 offers the `phoenix` sub-protocol when it carries an
    // auth token; a browser aborts unless the server selects it.
    let Upgrading { handshake, params, info, span, traceparent, source } =
        match Upgrading::new(&mount, &req, Some("phoenix")) {
            Ok(upgrading) => upgrading,
            Err(refused) => return refused.into_response(),
        };
    let admitted = super::admit::<S>(&mount, &params, info).instrument(span.clone()).await;
    let (serializer, assigns) = match admitted {
        Ok(admitted) => admitted,
        Err(status) => return status.into_response(),
    };
    let Some(on_upgrade) = on_upgrade(&mut req) else {
        return plain(StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded");
    };
    let hold = mount.hold_socket_id::<S>(&assigns).await;

    // A short task waits for hyper to hand the connection over, and starts
    // the connection's own task.
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => start::<S>(mount, upgraded, serializer, assigns, Traced { span, traceparent, source }),
            Err(error) => tracing::debug!(%error, "upgrade failed"),
        }
        drop(hold);
    });

    handshake.response()
}

/// What hyper hands the connection over with, once the `101` is sent.
pub(crate) fn on_upgrade(req: &mut Request) -> Option<hyper::upgrade::OnUpgrade> {
    req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>()
}

/// The span a connection runs in, the trace context its client sent, and
/// the source it counts for (while a per-source cap is set).
pub(crate) struct Traced {
    pub(crate) span: tracing::Span,
    pub(crate) traceparent: Option<TraceParent>,
    pub(crate) source: Option<Source>,
}

/// What a connection does with the messages it reads: Phoenix channels
/// (a [`Dispatcher`] and its serializer), or a raw handler
/// ([`super::raw`]). The connection's loop (reading, writing, limits,
/// closing) is the same for both.
pub(crate) trait Service: Send + 'static {
    /// The outbox the connection writes.
    fn outbox(&self) -> &Arc<Outbox>;

    /// Handles one text or binary message; `Some` ends the connection.
    fn receive(&mut self, message: Incoming, metrics: &Metrics) -> Option<End>;

    /// The service's own work (its channels), polled beside the socket.
    fn drive(&mut self) -> impl Future<Output = ()> + Send;

    /// The connection is over (`shutdown`: the endpoint is shutting down).
    fn finish(self, shutdown: bool);
}

/// Phoenix channels over a WebSocket.
struct Channels<S: Connect + Routes> {
    dispatcher: Dispatcher<S>,
    serializer: Serializer,
}

impl<S: Connect + Routes> Service for Channels<S> {
    fn outbox(&self) -> &Arc<Outbox> {
        self.dispatcher.outbox()
    }

    fn receive(&mut self, message: Incoming, metrics: &Metrics) -> Option<End> {
        receive(message, self.serializer, &mut self.dispatcher, metrics)
    }

    fn drive(&mut self) -> impl Future<Output = ()> + Send {
        self.dispatcher.drive()
    }

    fn finish(self, shutdown: bool) {
        self.dispatcher.finish(shutdown);
    }
}

/// Why the server ends a connection, with the close frame it sends.
#[derive(Debug)]
pub(crate) enum End {
    /// The connection broke: nothing more can be sent.
    ClientGone,
    /// The client sent a close frame: answer it with its code (RFC 6455
    /// §5.5.1), then close the TCP connection.
    Answer(Option<u16>),
    /// The server closes with this code and reason, and waits (a bounded
    /// grace) for the client's answer.
    Close(CloseCode, String),
    /// The server refuses what the client sent (a frame it cannot read, or
    /// one it will not): it closes with this code and reason, and drops
    /// whatever else comes, unread (it cannot be framed any more), until
    /// the client closes or the grace ends.
    Refuse(CloseCode, String),
}

/// What a connection needs of its socket's options while it lives.
#[derive(Clone, Copy)]
struct Limits {
    /// A client silent this long, or a write making no progress this long,
    /// ends the connection.
    idle: Duration,
    max_frame: usize,
}

/// Starts the task of an upgraded connection to a Phoenix socket:
/// registered, with its dispatcher (see [`serve`]).
fn start<S: Connect + Routes>(
    mount: Arc<Mount>,
    upgraded: hyper::upgrade::Upgraded,
    serializer: Serializer,
    assigns: S::Assigns,
    traced: Traced,
) {
    let options = &mount.options;
    let outbox = Arc::new(Outbox::new(options.max_outbound_bytes));
    let registration = mount.registry.register(&outbox, traced.source);
    let wiring = Wiring {
        outbox: outbox.clone(),
        serializer,
        pubsub: mount.pubsub.clone(),
        metrics: mount.metrics.clone(),
        traceparent: traced.traceparent,
    };
    let dispatcher = Dispatcher::<S>::new(assigns, mount.state::<S>(), wiring, options);
    let span = traced.span;
    if let Some(id) = dispatcher.socket_id() {
        span.record("id", id);
    }
    serve(mount, registration, upgraded, Channels { dispatcher, serializer }, span);
}

/// Serves an upgraded connection with `service` in its own task, over its
/// TCP stream when hyper gives it back, else over hyper's IO.
///
/// The task's future is the connection's state while it lives, in the
/// task's own allocation (nothing else is allocated for it): it is made by
/// plain functions returning `async move` blocks, so that no argument is
/// stored twice (an `async fn` keeps its arguments beside the locals they
/// move into), and what only a closing connection needs is boxed then.
pub(crate) fn serve<V: Service>(
    mount: Arc<Mount>,
    registration: Registration,
    upgraded: hyper::upgrade::Upgraded,
    service: V,
    span: tracing::Span,
) {
    let outbox = service.outbox().clone();
    mount.metrics.connections_open.incr();
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(hyper::upgrade::Parts { io, read_buf, .. }) => {
            // Bytes the client sent after its request, that hyper read: a
            // copy, so that hyper's read buffer (8 KiB, which `read_buf`
            // shares even when empty) is freed now.
            let early = (!read_buf.is_empty()).then(|| read_buf.to_vec());
            drop(read_buf);
            let (read, write) = io.into_inner().into_split();
            outbox.attach(write, mount.metrics.clone());
            mount.registry.watch_idle(&outbox, mount.options.idle_timeout);
            drop(outbox);
            let connection = serve_tcp(mount, registration, read, early, service);
            tracing::trace!(bytes = std::mem::size_of_val(&connection), "a TCP connection's state");
            trace::spawn_in(span, connection);
        }
        Err(upgraded) => {
            let connection = serve_generic(mount, registration, TokioIo::new(upgraded), service);
            trace::spawn_in(span, connection);
        }
    }
}

/// The end of every connection, once its close frame is out: it leaves the
/// registry, then lingers (if it may) without holding a place there.
async fn leave<R: AsyncRead + Unpin>(mount: &Mount, registration: Registration, linger: Option<Linger<R>>) {
    mount.metrics.connections_open.decr();
    drop(registration);
    if let Some(linger) = linger {
        linger.run().await;
    }
}

/// A connection over another IO type than a plain TCP stream (rare: boxed).
async fn serve_generic<V: Service, I: AsyncRead + AsyncWrite + Send + 'static>(
    mount: Arc<Mount>,
    registration: Registration,
    io: I,
    service: V,
) {
    let limits = Limits { idle: mount.options.idle_timeout, max_frame: mount.options.max_frame_size };
    let decoder = Decoder::new(limits.max_frame).with_budget(mount.budget.clone());
    let linger = Box::pin(serve_io(io, decoder, service, limits, &mount.metrics)).await;
    leave(&mount, registration, linger).await;
}

/// Bytes read from a socket at a time, into a buffer of the thread's: no
/// connection keeps one (the floor reads in chunks of the same size).
const READ_CHUNK: usize = 4096;

thread_local! {
    /// The read buffer of the connections polled on this thread. Taken out
    /// while in use; a connection polled while another holds it (it never
    /// happens on one thread) would get a fresh one.
    static SCRATCH: Cell<Option<Box<[u8; READ_CHUNK]>>> = const { Cell::new(None) };
}

/// What became of a TCP connection's socket.
enum Event {
    /// Bytes arrived, in the thread's read buffer.
    Read(Box<[u8; READ_CHUNK]>, usize),
    /// Bytes of a large payload arrived, read straight into its buffer.
    Direct,
    /// The client closed its side.
    Eof,
    /// The socket can take the frames waiting for it.
    Writable,
}

/// Waits for the socket: bytes to read or, with `blocked`, room to write.
/// Reads go through tokio's `poll_read`, which knows that a read that did
/// not fill the buffer emptied the socket (no read that only says so).
fn poll_socket(
    cx: &mut Context<'_>,
    read: &mut OwnedReadHalf,
    decoder: &mut Decoder,
    blocked: bool,
) -> Poll<std::io::Result<Event>> {
    if blocked && read.as_ref().poll_write_ready(cx)?.is_ready() {
        return Poll::Ready(Ok(Event::Writable));
    }
    if let Some((data, limit)) = decoder.direct().filter(|(_, limit)| *limit >= READ_CHUNK) {
        let mut data = bytes::BufMut::limit(data, limit);
        return match tokio_util::io::poll_read_buf(Pin::new(read), cx, &mut data)? {
            Poll::Ready(0) => Poll::Ready(Ok(Event::Eof)),
            Poll::Ready(_) => Poll::Ready(Ok(Event::Direct)),
            Poll::Pending => Poll::Pending,
        };
    }
    let mut scratch = SCRATCH.take().unwrap_or_else(|| Box::new([0; READ_CHUNK]));
    let mut buf = ReadBuf::new(&mut scratch[..]);
    match Pin::new(read).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) => {
            let n = buf.filled().len();
            if n == 0 {
                SCRATCH.set(Some(scratch));
                return Poll::Ready(Ok(Event::Eof));
            }
            Poll::Ready(Ok(Event::Read(scratch, n)))
        }
        Poll::Ready(Err(error)) => {
            SCRATCH.set(Some(scratch));
            Poll::Ready(Err(error))
        }
        Poll::Pending => {
            SCRATCH.set(Some(scratch));
            Poll::Pending
        }
    }
}

/// How a connection ended, with the bytes it had read and not decoded
/// (for [`Linger`]). Boxed: a connection keeps room for it while it lives.
type Ended = Box<(End, Vec<u8>)>;

/// What a connection does with the messages it reads.
///
/// The client is heard (for the idle timeout) when a message completes, or
/// when nothing unfinished is left: bytes of a message that never
/// completes (one byte every 30 s) do not keep a connection alive, so a
/// started message must finish within the idle timeout.
struct Receiver<'a, V: Service> {
    service: &'a mut V,
    metrics: &'a Metrics,
}

impl<V: Service> Receiver<'_, V> {
    /// Decodes every message in `input` and handles it; `Some` ends the
    /// connection, with what was not decoded yet.
    fn take(&mut self, decoder: &mut Decoder, mut input: &[u8], outbox: &Outbox) -> Option<Ended> {
        let mut completed = false;
        loop {
            let incoming = match decoder.decode(&mut input) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => {
                    if completed || !decoder.mid_message() {
                        outbox.heard();
                    }
                    return None;
                }
                Err(error) => return Some(Box::new((read_error(error, self.metrics), input.to_vec()))),
            };
            // A control frame in the middle of a fragmented message does
            // not finish it.
            completed |= !matches!(incoming, Incoming::Ping(_) | Incoming::Pong) || !decoder.in_message();
            let end = match incoming {
                // In order with everything else the connection writes. A
                // pong the outbox refuses is for a connection that is
                // closing: the outbox says why, and the loop ends it.
                Incoming::Ping(payload) => outbox.push(pong_frame(&payload)).err().and(None),
                Incoming::Pong => None,
                Incoming::Close(code) => Some(End::Answer(code)),
                message => self.service.receive(message, self.metrics),
            };
            if let Some(end) = end {
                return Some(Box::new((end, input.to_vec())));
            }
        }
    }
}

/// A TCP connection's state while it is served, in one place so that the
/// loop serving it borrows one thing (a future keeps a pointer for every
/// local it borrows, and this one is alive as long as the connection).
struct Live<V: Service> {
    mount: Arc<Mount>,
    read: OwnedReadHalf,
    decoder: Decoder,
    service: V,
    outbox: Arc<Outbox>,
    /// How the connection ended, once it has.
    ended: Option<Ended>,
}

impl<V: Service> Live<V> {
    fn receiver(&mut self) -> (Receiver<'_, V>, &mut Decoder, &Outbox) {
        let receiver = Receiver { service: &mut self.service, metrics: &self.mount.metrics };
        (receiver, &mut self.decoder, &self.outbox)
    }

    /// Handles what the socket did; `Some` ends the connection.
    fn on_socket(&mut self, event: std::io::Result<Event>) -> Option<Ended> {
        match event {
            Ok(Event::Read(scratch, n)) => {
                let (mut receiver, decoder, outbox) = self.receiver();
                let ended = receiver.take(decoder, &scratch[..n], outbox);
                SCRATCH.set(Some(scratch));
                ended
            }
            Ok(Event::Direct) => {
                let (mut receiver, decoder, outbox) = self.receiver();
                receiver.take(decoder, &[], outbox)
            }
            Ok(Event::Eof) => {
                let end = read_error(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()), &self.mount.metrics);
                Some(Box::new((end, Vec::new())))
            }
            Ok(Event::Writable) => match self.outbox.flush() {
                Ok(progress) => {
                    if progress {
                        // Writes that move are not stalled, however slowly.
                        self.outbox.set_stalled(Some(crate::outbox::now_ms()));
                    }
                    None
                }
                Err(error) => Some(Box::new((write_failed(&error, &self.mount.metrics), Vec::new()))),
            },
            Err(error) => Some(Box::new((read_error(ReadError::Io(error), &self.mount.metrics), Vec::new()))),
        }
    }

    /// Serves the connection until it ends: how, and what it had read and
    /// not decoded. Idle and stalled connections are closed by the
    /// registry's watchdog ([`crate::registry::Registry::watch_idle`]),
    /// through the outbox: no timer waits here.
    async fn run(&mut self) -> (End, Vec<u8>) {
        loop {
            if let Some(ended) = self.ended.take() {
                break *ended;
            }
            let blocked = self.outbox.is_blocked();
            if !blocked {
                self.outbox.set_stalled(None);
            } else if !self.outbox.is_stalled() {
                self.outbox.set_stalled(Some(crate::outbox::now_ms()));
            }
            tokio::select! {
                event = std::future::poll_fn(|cx| poll_socket(cx, &mut self.read, &mut self.decoder, blocked)) => {
                    self.ended = self.on_socket(event);
                }
                () = self.outbox.ready() => {
                    if let Some(reason) = self.outbox.close_reason() {
                        break (closed_by(reason, &self.mount.metrics), Vec::new());
                    }
                    // Frames were queued for the task to write.
                    if let Err(error) = self.outbox.flush() {
                        break (write_failed(&error, &self.mount.metrics), Vec::new());
                    }
                }
                () = self.service.drive() => {}
            }
        }
    }
}

/// Serves a connection over its TCP stream until it ends, then leaves
/// (see [`leave`]).
fn serve_tcp<V: Service>(
    mount: Arc<Mount>,
    registration: Registration,
    read: OwnedReadHalf,
    early: Option<Vec<u8>>,
    service: V,
) -> impl Future<Output = ()> + Send {
    let outbox = service.outbox().clone();
    let decoder = Decoder::new(mount.options.max_frame_size).with_budget(mount.budget.clone());
    let mut live = Live { mount, read, decoder, service, outbox, ended: None };
    // Before the task: what it keeps is only what the bytes left unfinished.
    if let Some(early) = early {
        let (mut receiver, decoder, outbox) = live.receiver();
        live.ended = receiver.take(decoder, &early, outbox);
    }
    async move {
        let (end, rest) = {
            let outbox = live.outbox.clone();
            let main = live.run();
            // Polled with the outbox corked: what this task queues while it runs
            // (replies to a batch of frames, channel work, pongs) goes out in one
            // write when the poll ends, and broadcasts that arrive meanwhile queue
            // behind it in order. While the task waits, pushes write through.
            let mut main = std::pin::pin!(main);
            std::future::poll_fn(|cx| {
                outbox.cork();
                let polled = main.as_mut().poll(cx);
                outbox.uncork();
                polled
            })
            .await
        };
        let Live { mount, read, decoder, service, outbox, .. } = live;
        // Channels get no more frames through a connection that is ending.
        let shutdown = outbox.close_reason() == Some(CloseReason::Shutdown);
        outbox.close(CloseReason::Gone);
        service.finish(shutdown);
        let (write, due) = outbox.detach();
        drop(outbox);
        // Boxed: only a closing connection needs room for it.
        Box::pin(async move {
            let linger = match (write, closing(end)) {
                (Some(mut write), Some((code, reason, answered))) => {
                    // What was due (the rest of a frame partly on the wire,
                    // then what was queued), then the close frame.
                    let close = async {
                        for bytes in due {
                            write.write_all(&bytes).await?;
                        }
                        write.write_all(close_frame(code, &reason).wire()).await?;
                        write.shutdown().await
                    };
                    let deadline = Instant::now() + CLOSE_GRACE;
                    match tokio::time::timeout_at(deadline, close).await {
                        Ok(Ok(())) => Some(Linger { reader: Reader::resume(read, decoder, &rest), answered, deadline }),
                        Ok(Err(_)) => None,
                        Err(_) => {
                            reset(&read);
                            None
                        }
                    }
                }
                _ => None,
            };
            leave(&mount, registration, linger).await;
        })
        .await;
    }
}

/// Closes a connection whose close frame could not be written within the
/// grace (its client reads nothing) with a reset: a plain close would leave
/// the kernel holding what was queued for it, and retrying to send it, for
/// minutes after the server is done with it.
fn reset(read: &OwnedReadHalf) {
    let _ = socket2::SockRef::from(read.as_ref()).set_linger(Some(Duration::ZERO));
}

/// The close frame a connection ends with, and whether it answers the
/// client's; `None` when nothing more can be sent.
fn closing(end: End) -> Option<(Option<u16>, String, bool)> {
    match end {
        End::ClientGone => None,
        End::Answer(code) => {
            tracing::debug!(?code, "answering the client's close frame");
            Some((code, String::new(), true))
        }
        End::Close(code, reason) => {
            tracing::debug!(%code, reason, "closing connection");
            Some((Some(code.into()), reason, false))
        }
        End::Refuse(code, reason) => {
            tracing::debug!(%code, reason, "closing connection");
            Some((Some(code.into()), reason, true))
        }
    }
}

/// Serves a connection over any IO type until it ends (the generic path:
/// the connection's task writes every frame); what is left once its close
/// frame is out is returned.
async fn serve_io<V: Service, I: AsyncRead + AsyncWrite + Send + 'static>(
    io: I,
    decoder: Decoder,
    mut service: V,
    limits: Limits,
    metrics: &Metrics,
) -> Option<Linger<tokio::io::ReadHalf<I>>> {
    let idle = limits.idle;
    let (read, write) = tokio::io::split(io);
    let mut reader = Reader::resume(read, decoder, &[]);
    // A write that makes no progress for the idle period ends the
    // connection like a client that says nothing for that long.
    let mut writer = Writer::new(write, idle);
    let outbox = service.outbox().clone();
    let mut last_seen = Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);

    let end = loop {
        tokio::select! {
            incoming = reader.next() => {
                // Heard when a message completes (see `Receiver`): a ping
                // in the middle of a fragmented message is not one.
                if !matches!(incoming, Ok(Incoming::Ping(_) | Incoming::Pong)) || !reader.in_message() {
                    last_seen = Instant::now();
                }
                match incoming {
                    Ok(Incoming::Ping(payload)) => {
                        metrics.frames_out.incr();
                        if let Err(error) = async { writer.frame(&pong_frame(&payload)).await?; writer.flush().await }.await {
                            break write_failed(&error, metrics);
                        }
                    }
                    Ok(Incoming::Pong) => {}
                    Ok(Incoming::Close(code)) => break End::Answer(code),
                    Ok(message) => {
                        if let Some(end) = service.receive(message, metrics) {
                            break end;
                        }
                    }
                    Err(error) => break read_error(error, metrics),
                }
            }
            batch = outbox.next_batch() => {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(reason) => break closed_by(reason, metrics),
                };
                if let Err(end) = write_batch(&mut writer, batch, &outbox, metrics).await {
                    break end;
                }
            }
            () = service.drive() => {}
            () = &mut idle_timer => {
                let deadline = last_seen + idle;
                if Instant::now() >= deadline {
                    if metrics.lines.allow(Line::Idle) {
                        tracing::info!(?idle, "{}", Line::Idle.what());
                    }
                    break End::Close(CloseCode::Away, "idle timeout".to_owned());
                }
                idle_timer.as_mut().reset(deadline);
            }
        }
    };
    // Channels get no more frames through a connection that is ending.
    let shutdown = outbox.close_reason() == Some(CloseReason::Shutdown);
    outbox.close(CloseReason::Gone);
    service.finish(shutdown);
    let deadline = Instant::now() + CLOSE_GRACE;
    writer.set_stall(CLOSE_GRACE);
    let (code, reason, answered) = closing(end)?;
    // What was queued before the end was due: it goes before the close frame.
    let due = outbox.take_due();
    let close = async {
        for frame in &due {
            writer.frame(frame).await?;
        }
        writer.close(code, &reason).await
    };
    match tokio::time::timeout_at(deadline, close).await {
        Ok(Ok(())) => Some(Linger { reader, answered, deadline }),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// What is left of a connection once its close frame is out: what the
/// client still sends is read (and dropped) until it closes too, within the
/// grace period. Closing a socket with unread bytes would reset the
/// connection, and the client could lose the close frame.
struct Linger<R> {
    reader: Reader<R>,
    /// The client started the handshake: it only has to close the TCP
    /// connection. Otherwise its close frame is awaited.
    answered: bool,
    deadline: Instant,
}

impl<R: AsyncRead + Unpin> Linger<R> {
    async fn run(self) {
        let Linger { mut reader, answered, deadline } = self;
        let _ = tokio::time::timeout_at(deadline, async {
            if answered {
                let _ = tokio::io::copy(&mut reader.into_inner(), &mut tokio::io::sink()).await;
            } else {
                reader.until_closed().await;
            }
        })
        .await;
    }
}

fn write_failed(error: &std::io::Error, metrics: &Metrics) -> End {
    if error.kind() == std::io::ErrorKind::TimedOut {
        if metrics.lines.allow(Line::Stalled) {
            tracing::info!("{}", Line::Stalled.what());
        }
    } else {
        tracing::debug!(%error, "write failed");
    }
    End::ClientGone
}

/// Writes every frame of `batch` and flushes once. Once the outbox closes
/// (the client fell behind, a shutdown), what is left of the batch was due
/// all the same: it is written, within [`CLOSE_GRACE`], and the close frame
/// follows it.
async fn write_batch<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut Writer<W>,
    batch: VecDeque<Frame>,
    outbox: &Outbox,
    metrics: &Metrics,
) -> Result<(), End> {
    metrics.frames_out.add(batch.len() as u64);
    metrics.bytes_out.add(batch.iter().map(|f| f.len() as u64).sum());
    let write = async {
        for frame in batch {
            writer.frame(&frame).await?;
        }
        writer.flush().await
    };
    tokio::pin!(write);
    let closed = async {
        loop {
            outbox.ready().await;
            if let Some(reason) = outbox.close_reason() {
                return reason;
            }
        }
    };
    tokio::select! {
        written = &mut write => written.map_err(|error| write_failed(&error, metrics)),
        reason = closed => {
            let end = closed_by(reason, metrics);
            match tokio::time::timeout(CLOSE_GRACE, write).await {
                Ok(Ok(())) => Err(end),
                Ok(Err(error)) => Err(write_failed(&error, metrics)),
                Err(_elapsed) => Err(End::ClientGone),
            }
        }
    }
}

fn closed_by(reason: CloseReason, metrics: &Metrics) -> End {
    match reason {
        CloseReason::SlowConsumer => {
            if metrics.lines.allow(Line::SlowConsumer) {
                tracing::warn!("{}", Line::SlowConsumer.what());
            }
            metrics.slow_consumers.incr();
        }
        CloseReason::Idle if metrics.lines.allow(Line::Idle) => tracing::info!("{}", Line::Idle.what()),
        // Its close frame waits behind what it did not read: it gets it
        // if it reads within the grace, else its socket is reset.
        CloseReason::Stalled if metrics.lines.allow(Line::Stalled) => tracing::info!("{}", Line::Stalled.what()),
        _ => {}
    }
    End::Close(CloseCode::from(reason.ws_code()), reason.as_str().to_owned())
}

/// Handles one WebSocket message; `Some` ends the connection.
fn receive<S: Connect + Routes>(
    message: Incoming,
    serializer: Serializer,
    dispatcher: &mut Dispatcher<S>,
    metrics: &Metrics,
) -> Option<End> {
    let (decoded, bytes, binary) = match &message {
        Incoming::Text(text) => (serializer.decode_text(text), text, false),
        Incoming::Binary(bytes) => (serializer.decode_binary(bytes), bytes, true),
        Incoming::Ping(_) | Incoming::Pong | Incoming::Close(_) => return None,
    };
    match decoded {
        Ok(msg) => {
            dispatcher.dispatch(msg);
            None
        }
        Err(error) => {
            metrics.malformed_frames.incr();
            metrics.inputs_refused.incr(Rejection::MalformedFrame);
            let error = error.to_string();
            if metrics.lines.allow(Line::MalformedFrame) {
                // The error may quote the frame: clipped like it.
                tracing::warn!(error = ?clip(&error), frame = %preview(bytes), "{}", Line::MalformedFrame.what());
            }
            let code = if binary && serializer == Serializer::V1 { CloseCode::Unsupported } else { CloseCode::Invalid };
            Some(End::Refuse(code, truncate(error, 120)))
        }
    }
}

fn read_error(error: ReadError, metrics: &Metrics) -> End {
    match error {
        // Clients that vanish without a close frame are common (a closed
        // laptop, a killed tab): nothing to warn about.
        ReadError::Io(error) => {
            tracing::debug!(%error, "connection lost");
            End::ClientGone
        }
        ReadError::TooBig { size, max } => {
            metrics.malformed_frames.incr();
            metrics.inputs_refused.incr(Rejection::MessageTooLarge);
            if metrics.lines.allow(Line::TooLarge) {
                tracing::warn!(size, max, "{}", Line::TooLarge.what());
            }
            End::Refuse(CloseCode::Size, format!("message of {size} bytes exceeds the limit of {max}"))
        }
        ReadError::Busy(busy) => {
            // Not the client's fault: its message was within the limits.
            metrics.inputs_refused.incr(Rejection::InflightBudget);
            if metrics.lines.allow(Line::InflightBudget) {
                tracing::warn!(wanted = busy.wanted, max = busy.max, "{}", Line::InflightBudget.what());
            }
            End::Refuse(CloseCode::Again, "server busy, try again later".to_owned())
        }
        ReadError::Utf8 => {
            metrics.malformed_frames.incr();
            metrics.inputs_refused.incr(Rejection::InvalidUtf8);
            if metrics.lines.allow(Line::Utf8) {
                tracing::warn!("{}", Line::Utf8.what());
            }
            End::Refuse(CloseCode::Invalid, "text frame is not valid UTF-8".to_owned())
        }
        ReadError::Protocol(error) => {
            metrics.malformed_frames.incr();
            metrics.inputs_refused.incr(Rejection::ProtocolError);
            if metrics.lines.allow(Line::Protocol) {
                tracing::warn!(error, "{}", Line::Protocol.what());
            }
            End::Refuse(CloseCode::Protocol, error.to_owned())
        }
    }
}

/// A close reason must fit a control frame (123 bytes).
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The start of a frame, for a log line.
fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(80)];
    let mut s = String::from_utf8_lossy(shown).into_owned();
    if bytes.len() > shown.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let t = truncate(long, 120);
        assert!(t.len() <= 120 && t.is_char_boundary(t.len()));
    }

    #[test]
    fn previews_are_short() {
        let p = preview("x".repeat(500).as_bytes());
        assert_eq!(p.chars().count(), 81);
        assert_eq!(preview(b"\x00\x01"), "\u{0}\u{1}");
    }
}
