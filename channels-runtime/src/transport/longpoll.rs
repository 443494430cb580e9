//! The LongPoll transport, at `<mount>/longpoll`, wire-compatible with
//! phoenix.js's `LongPoll` (shared/PROTOCOL.md §12).
//!
//! A session is a connection without a socket: the same dispatcher,
//! channels and outbox as a WebSocket connection, fed by `POST`s and
//! drained by `GET`s. Every answer is HTTP 200 with the logical status in
//! the JSON body: `410` opens a session (and hands out its token), `200`
//! carries queued frames, `204` says the poll window passed empty, `403`
//! refuses.
//!
//! A session ends when no poll has arrived for 1.5 × the poll window (half
//! the window for one never polled at all), when its socket id is told to
//! `disconnect`, or when it falls too far behind. One client address may
//! open only so many sessions per second
//! ([`SocketOptions::max_longpoll_opens_per_second`](crate::SocketOptions::max_longpoll_opens_per_second)),
//! and a `POST` body is bounded on its own (refused at once when its
//! `Content-Length` is over the limit) and with every other message in
//! flight ([`super::budget`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;

use super::budget::{Budget, Hold};
use super::Mount;
use crate::channel::Routes;
use crate::connect::{Connect, Params};
use crate::dispatch::{Dispatcher, Driven, Wiring};
use crate::logging::{clip, Line};
use crate::metrics::{Refusal, Rejection};
use crate::outbox::{CloseReason, Outbox};
use crate::protocol::{Frame, Serializer};
use crate::source::{Rate, Source};
use crate::trace;

/// phoenix.js (≥ 1.8.6) sends at most this many frames per POST; Phoenix
/// ≥ 1.8.9 refuses more.
const MAX_FRAMES_PER_POST: usize = 100;

/// The largest POST body read (Phoenix: ~8 MB).
const MAX_BODY: usize = 8_000_000;

/// One LongPoll client.
struct Session<S: Connect + Routes> {
    _registration: crate::registry::Registration,
    dispatcher: Driven,
    outbox: Arc<Outbox>,
    serializer: Serializer,
    last_poll: Mutex<Instant>,
    /// Whether a poll ever came.
    polled: AtomicBool,
    socket: std::marker::PhantomData<fn() -> S>,
}

/// The live sessions of one mounted socket.
pub(crate) struct Sessions<S: Connect + Routes> {
    mount: Arc<Mount>,
    sessions: Mutex<HashMap<String, Arc<Session<S>>>>,
    /// Sessions opened per second, per client address.
    opens: Rate,
}

impl<S: Connect + Routes> Sessions<S> {
    pub(crate) fn new(mount: Arc<Mount>) -> Arc<Self> {
        let opens = Rate::new(mount.options.max_longpoll_opens_per_second);
        Arc::new(Sessions { mount, sessions: Mutex::new(HashMap::new()), opens })
    }

    fn get(&self, token: &str) -> Option<Arc<Session<S>>> {
        let session = self.sessions.lock().get(token).cloned()?;
        if session.outbox.is_closed() {
            // Disconnected or too slow: the session is over.
            self.end(token);
            return None;
        }
        Some(session)
    }

    /// Whether the socket holds [`SocketOptions::max_longpoll_sessions`](crate::SocketOptions::max_longpoll_sessions).
    fn full(&self) -> bool {
        let full = self.sessions.lock().len() >= self.mount.options.max_longpoll_sessions;
        if full && self.mount.metrics.lines.allow(Line::LongpollFull) {
            tracing::warn!("{}", Line::LongpollFull.what());
        }
        full
    }

    fn end(&self, token: &str) {
        if let Some(session) = self.sessions.lock().remove(token) {
            // Channels get no more frames through a session that is over.
            let shutdown = session.outbox.close_reason() == Some(CloseReason::Shutdown);
            session.outbox.close(CloseReason::Gone);
            session.dispatcher.finish(shutdown);
            self.mount.metrics.connections_open.decr();
            self.mount.metrics.longpoll_sessions.decr();
            tracing::debug!(closed = ?session.outbox.close_reason(), "longpoll session ended");
        }
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<&'a str>>,
}

fn answer(status: u16, token: Option<&str>, messages: Option<Vec<&str>>) -> Response {
    let body = serde_json::to_vec(&Answer { status, token, messages }).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A session refused for want of room: a real HTTP 503 with `Retry-After`.
/// Its body is deliberately not a LongPoll answer: phoenix.js throws on a
/// status it does not know (a JSON `503`), while a body it cannot parse is
/// a lost server, which it retries with its back-off.
fn at_capacity() -> Response {
    busy("the server is at its connection limit")
}

/// HTTP 503 with `Retry-After`, saying why in plain text (see
/// [`at_capacity`]).
fn busy(why: &'static str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    let h = response.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The session token: `X-Phoenix-Longpoll-Token` (phoenix.js 1.9) or the
/// last `token` query parameter (phoenix.js ≤ 1.8 appends it after the
/// app's own params, so a "last wins" reading is essential).
fn session_token<'a>(headers: &'a HeaderMap, params: &'a Params) -> Option<&'a str> {
    headers.get("x-phoenix-longpoll-token").and_then(|v| v.to_str().ok()).or_else(|| params.get("token"))
}

/// Answers every request to `<mount>/longpoll`.
pub(crate) async fn handle<S: Connect + Routes>(sessions: Arc<Sessions<S>>, req: Request) -> Response {
    let mount = &sessions.mount;
    if *req.method() == Method::OPTIONS {
        return preflight(req.headers());
    }
    if !super::origin_allowed(mount, req.headers()) {
        return answer(403, None, None);
    }
    let params = Params::from_query(req.uri().query().unwrap_or(""));
    match req.method().clone() {
        Method::GET => match session_token(req.headers(), &params).and_then(|t| sessions.get(t).map(|s| (t, s))) {
            Some((token, session)) => {
                let token = token.to_owned();
                poll(&sessions, &token, &session).await
            }
            None => open(&sessions, req, params).await,
        },
        Method::POST => {
            let Some(session) = session_token(req.headers(), &params).and_then(|t| sessions.get(t)) else {
                return answer(410, None, None);
            };
            publish(mount, &session, req).await
        }
        _ => (StatusCode::BAD_REQUEST, "LongPoll takes GET, POST and OPTIONS").into_response(),
    }
}

fn preflight(headers: &HeaderMap) -> Response {
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("get, post, options"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("3600"));
    if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    response
}

/// Opens a session: the same checks and `connect` as a WebSocket upgrade.
async fn open<S: Connect + Routes>(sessions: &Arc<Sessions<S>>, req: Request, params: Params) -> Response {
    let mount = &sessions.mount;
    // phoenix.js always speaks V2 over LongPoll; V1 frames may still arrive
    // from legacy clients that ask for it.
    if sessions.full() {
        mount.metrics.connections_refused.incr(Refusal::Limit);
        return at_capacity();
    }
    let info = super::connect_info(&req);
    let peer = info.peer_addr().map(|addr| addr.ip());
    if let Some(ip) = peer.filter(|ip| !sessions.opens.allow(Source::of(*ip))) {
        mount.metrics.connections_refused.incr(Refusal::Rate);
        if mount.metrics.lines.allow(Line::LongpollRate) {
            tracing::warn!(peer = %ip, "{}", Line::LongpollRate.what());
        }
        return busy("too many sessions opened from this address; retry later");
    }
    let source = mount.registry.counted_source(peer);
    if !mount.registry.source_has_room(source) {
        mount.metrics.connections_refused.incr(Refusal::Source);
        if mount.metrics.lines.allow(Line::SourceLimit) {
            tracing::warn!(peer = ?peer, "{}", Line::SourceLimit.what());
        }
        return at_capacity();
    }
    let span = trace::connection_span("longpoll", info.peer_addr(), info.traceparent());
    let traceparent = info.traceparent().copied();
    let admitted = super::admit::<S>(mount, &params, info).instrument(span.clone()).await;
    let (serializer, assigns) = match admitted {
        Ok(admitted) => admitted,
        // Phoenix answers every refusal `403`; a full server or a crashed
        // `connect` say so instead.
        Err(StatusCode::SERVICE_UNAVAILABLE) => return at_capacity(),
        Err(status) if status.is_server_error() => return answer(status.as_u16(), None, None),
        Err(_) => return answer(403, None, None),
    };
    let Some(token) = new_token() else {
        tracing::error!("no randomness for a session token");
        return answer(500, None, None);
    };
    let hold = mount.hold_socket_id::<S>(&assigns).await;
    let outbox = Arc::new(Outbox::new(mount.options.max_outbound_bytes));
    let wiring = Wiring {
        outbox: outbox.clone(),
        serializer,
        pubsub: mount.pubsub.clone(),
        metrics: mount.metrics.clone(),
        traceparent,
    };
    let dispatcher = Dispatcher::<S>::new(assigns, mount.state::<S>(), wiring, &mount.options);
    if let Some(id) = dispatcher.socket_id() {
        span.record("id", id);
    }
    // The dispatcher subscribed the socket id itself.
    drop(hold);
    let session = Arc::new(Session {
        _registration: mount.registry.register(&outbox, source),
        dispatcher: Driven::spawn(dispatcher, span),
        outbox,
        serializer,
        last_poll: Mutex::new(Instant::now()),
        polled: AtomicBool::new(false),
        socket: std::marker::PhantomData,
    });
    {
        // Checked again where the session is counted: opens run concurrently.
        let mut open = sessions.sessions.lock();
        if open.len() >= mount.options.max_longpoll_sessions {
            drop(open);
            mount.metrics.connections_refused.incr(Refusal::Limit);
            return at_capacity();
        }
        open.insert(token.clone(), session.clone());
    }
    mount.metrics.connections_open.incr();
    mount.metrics.longpoll_sessions.incr();
    reap_when_idle(sessions.clone(), token.clone(), session, mount.options.longpoll_window);
    answer(410, Some(&token), Some(Vec::new()))
}

/// Ends the session once no poll has arrived for 1.5 × `window`, or none
/// at all within half of it (phoenix.js polls as soon as its session
/// opens: one never polled is abandoned, or hoarded).
fn reap_when_idle<S: Connect + Routes>(
    sessions: Arc<Sessions<S>>,
    token: String,
    session: Arc<Session<S>>,
    window: Duration,
) {
    let weak = Arc::downgrade(&session);
    drop(session);
    let idle = window * 3 / 2;
    tokio::spawn(async move {
        tokio::time::sleep(window / 2).await;
        if weak.upgrade().is_some_and(|session| !session.polled.load(Ordering::Relaxed)) {
            sessions.end(&token);
            return;
        }
        loop {
            tokio::time::sleep(idle).await;
            let Some(session) = weak.upgrade() else { return };
            let since = session.last_poll.lock().elapsed();
            if session.outbox.is_closed() || since >= idle {
                sessions.end(&token);
                return;
            }
        }
    });
}

/// Holds a poll until frames are queued or the window passes.
async fn poll<S: Connect + Routes>(sessions: &Sessions<S>, token: &str, session: &Session<S>) -> Response {
    *session.last_poll.lock() = Instant::now();
    session.polled.store(true, Ordering::Relaxed);
    let window = sessions.mount.options.longpoll_window;
    let outcome = tokio::time::timeout(window, session.outbox.next_batch()).await;
    *session.last_poll.lock() = Instant::now();
    match outcome {
        Err(_elapsed) => answer(204, Some(token), Some(Vec::new())),
        Ok(Err(reason)) => {
            tracing::debug!(?reason, "longpoll session closed");
            sessions.end(token);
            answer(410, None, None)
        }
        Ok(Ok(batch)) => {
            sessions.mount.metrics.frames_out.add(batch.len() as u64);
            sessions.mount.metrics.bytes_out.add(batch.iter().map(|f| f.len() as u64).sum());
            let messages: Vec<&str> = batch.iter().filter_map(text_only).collect();
            answer(200, Some(token), Some(messages))
        }
    }
}

fn text_only(frame: &Frame) -> Option<&str> {
    let text = frame.as_text();
    if text.is_none() {
        tracing::warn!("a binary frame cannot travel over LongPoll; dropped");
    }
    text
}

/// Why a `POST` body was not read whole.
enum BodyRefused {
    /// Over [`MAX_BODY`] (announced, or as it came): 413.
    TooLarge,
    /// Over the endpoint's in-flight budget: 503, retry later.
    Busy,
    /// Not whole within `ServerOptions::body_timeout`: 408.
    Late,
    /// The connection broke.
    Failed,
}

/// The request's `Content-Length`, if it has a valid one.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reads a `POST` body whole, counting it in the endpoint's `budget` as it
/// comes: its `Content-Length` at once, or (chunked) each chunk.
async fn read_body(body: Body, announced: Option<usize>, budget: &Arc<Budget>) -> Result<bytes::Bytes, BodyRefused> {
    use futures_util::StreamExt;
    let announced = announced.unwrap_or(0);
    let mut hold: Hold = budget.take(announced, announced).map_err(|_| BodyRefused::Busy)?;
    let mut body = body.into_data_stream();
    let mut read = bytes::BytesMut::with_capacity(announced.min(super::budget::SMALL));
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) if crate::server::BodyTimeout::caused(&error) => return Err(BodyRefused::Late),
            Err(_) => return Err(BodyRefused::Failed),
        };
        let total = read.len() + chunk.len();
        if total > MAX_BODY {
            return Err(BodyRefused::TooLarge);
        }
        if total > hold.bytes() {
            hold.grow(budget, total - hold.bytes(), total).map_err(|_| BodyRefused::Busy)?;
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}

/// Hands the frames of a POST to the session, in order.
async fn publish<S: Connect + Routes>(mount: &Mount, session: &Session<S>, req: Request) -> Response {
    let ndjson = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    let announced = content_length(req.headers());
    let refused = |rejection: Rejection, why: &str| {
        mount.metrics.inputs_refused.incr(rejection);
        if mount.metrics.lines.allow(Line::LongpollBody) {
            tracing::warn!(why, announced, "{}", Line::LongpollBody.what());
        }
    };
    // Refused before a byte of it is read; the connection closes once the
    // answer is written (what follows the headers is that body).
    if announced.is_some_and(|n| n > MAX_BODY) {
        refused(Rejection::BodyTooLarge, "over the body limit");
        return closing(answer(413, None, None), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body = match read_body(req.into_body(), announced, &mount.budget).await {
        Ok(body) => body,
        Err(BodyRefused::Late) => {
            refused(Rejection::BodyTimeout, "did not arrive within ServerOptions::body_timeout");
            // A real 408, with a body phoenix.js reads as a failed send
            // (it retries).
            return closing(answer(408, None, None), StatusCode::REQUEST_TIMEOUT);
        }
        Err(BodyRefused::TooLarge) => {
            refused(Rejection::BodyTooLarge, "over the body limit");
            return closing(answer(413, None, None), StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(BodyRefused::Busy) => {
            refused(
                Rejection::InflightBudget,
                "over the server's in-flight budget (ServerOptions::max_inflight_bytes)",
            );
            let mut response = busy("the server is busy; retry later");
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyRefused::Failed) => return answer(400, None, None),
    };
    let malformed = |why: &str| {
        mount.metrics.inputs_refused.incr(Rejection::BodyMalformed);
        if mount.metrics.lines.allow(Line::LongpollMalformed) {
            tracing::warn!(why = ?clip(why), "{}", Line::LongpollMalformed.what());
        }
        answer(400, None, None)
    };
    let frames: Vec<&[u8]> = if ndjson {
        body.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).filter(|l| !l.is_empty()).collect()
    } else {
        vec![&body[..]]
    };
    if frames.len() > MAX_FRAMES_PER_POST {
        return malformed("over the batch limit of 100 frames");
    }
    let mut messages = Vec::with_capacity(frames.len());
    for frame in frames {
        let decoded = if frame.first() == Some(&b'[') || frame.first() == Some(&b'{') {
            session.serializer.decode_text(frame)
        } else {
            match STANDARD.decode(frame) {
                Ok(bytes) => session.serializer.decode_binary(&bytes),
                Err(_) => return malformed("a line is neither a JSON frame nor base64"),
            }
        };
        match decoded {
            Ok(msg) => messages.push(msg),
            Err(error) => return malformed(&error.to_string()),
        }
    }
    for msg in messages {
        session.dispatcher.dispatch(msg);
    }
    answer(200, None, None)
}

/// `response` with its real HTTP `status`, closing the connection once it
/// is written.
fn closing(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 128 random bits, URL-safe.
fn new_token() -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_token_param_wins_and_the_header_beats_it() {
        let params = Params::from_query("token=app&vsn=2.0.0&token=session");
        assert_eq!(session_token(&HeaderMap::new(), &params), Some("session"));
        let mut headers = HeaderMap::new();
        headers.insert("x-phoenix-longpoll-token", "header".parse().unwrap());
        assert_eq!(session_token(&headers, &params), Some("header"));
    }

    #[test]
    fn tokens_are_random() {
        let a = new_token().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, new_token().unwrap());
    }

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn answers_have_phoenix_shapes() {
        // Phoenix.Transports.LongPoll: status, then token and messages where
        // it hands them out; always HTTP 200, JSON, not cached, any origin.
        let r = answer(410, Some("t"), Some(vec![]));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json; charset=utf-8");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(body(r).await, serde_json::json!({"status": 410, "token": "t", "messages": []}));
        let r = answer(200, Some("t"), Some(vec![r#"[null,null,"t","e",{}]"#]));
        assert_eq!(
            body(r).await,
            serde_json::json!({"status": 200, "token": "t", "messages": [r#"[null,null,"t","e",{}]"#]})
        );
        let r = answer(204, Some("t"), Some(vec![]));
        assert_eq!(body(r).await, serde_json::json!({"status": 204, "token": "t", "messages": []}));
        let r = answer(200, None, None);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, serde_json::json!({"status": 200}));
        let r = answer(403, None, None);
        assert_eq!(body(r).await, serde_json::json!({"status": 403}));
    }

    #[tokio::test]
    async fn a_full_socket_answers_a_retryable_503() {
        let r = at_capacity();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_err(),
            "phoenix.js must not read it as a status"
        );
    }
}
