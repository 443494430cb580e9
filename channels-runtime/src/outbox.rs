//! A connection's outbound queue.
//!
//! Every frame for a client (replies, pushes, fastlaned broadcasts) goes
//! through here. Over a plain TCP stream the outbox writes it to the socket
//! itself when nothing is queued before it (see [`Outbox`]); otherwise it
//! is queued, and the connection's task writes what piled up in one write.
//!
//! The queue is bounded in bytes: a client that does not read fast enough
//! to keep its backlog under the limit is disconnected rather than allowed
//! to grow the server's memory. An idle outbox holds no allocation beyond
//! the struct itself.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::net::tcp::OwnedWriteHalf;

use crate::metrics::Metrics;
use crate::protocol::Frame;

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `disconnect` was broadcast to the socket's id: close with 1001 so
    /// phoenix.js reconnects (and runs `connect` again).
    Disconnect,
    /// The client fell behind by more than the outbound limit.
    SlowConsumer,
    /// The endpoint is shutting down.
    Shutdown,
    /// The connection already ended; nothing more is sent.
    Gone,
    /// The client sent nothing for the socket's idle timeout.
    Idle,
    /// The client read nothing for the idle timeout while frames waited:
    /// its close frame goes after them, if it reads within the close grace;
    /// else the connection is reset.
    Stalled,
}

impl CloseReason {
    /// The WebSocket close code for this reason. Never 1000, which tells
    /// phoenix.js not to reconnect.
    pub fn ws_code(self) -> u16 {
        match self {
            CloseReason::Disconnect => 1001,
            CloseReason::SlowConsumer => 1008,
            CloseReason::Shutdown => 1012,
            CloseReason::Gone | CloseReason::Idle | CloseReason::Stalled => 1001,
        }
    }

    /// A short human-readable reason, sent in the close frame and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Disconnect => "disconnected",
            CloseReason::SlowConsumer => "outbound queue full",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::Gone => "connection closed",
            CloseReason::Idle => "idle timeout",
            CloseReason::Stalled => "the client read nothing for the idle period",
        }
    }
}

/// Identifies a connection, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id a number names (one this process handed out: a broker hands a
    /// node's own ids back with its broadcasts).
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    pub(crate) fn from_raw(id: u64) -> Self {
        ConnId(id)
    }

    /// A fresh id, never handed out before in this process (a connection
    /// gets one with its outbox; a service subscribing to a
    /// [`PubSub`](crate::pubsub::PubSub) takes its own).
    pub fn unique() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The socket an outbox writes to itself: the write half of a plain TCP
/// stream, and the counters its writes go to.
struct Sink {
    socket: OwnedWriteHalf,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// Bytes not yet written of the queued frames (whole WebSocket frames:
    /// what the socket will be given).
    bytes: usize,
    /// How much of the first frame is already on the wire: the rest must go
    /// next, before anything else.
    written: usize,
    closed: Option<CloseReason>,
    /// Boxed: only WebSocket connections over plain TCP have one. Its
    /// figures also count `bytes` (`outbound_queued_bytes`): the backlog of
    /// connections without a socket of the outbox's own (LongPoll, other IO
    /// types) is handed over whole at each take, and not counted, which
    /// keeps every outbox a word smaller.
    sink: Option<Box<Sink>>,
    /// The connection's own task is running: what it queues goes out in one
    /// write when it is done ([`Outbox::uncork`]).
    corked: bool,
    /// Something was queued while corked.
    dirty: bool,
    /// A frame went straight to the socket while corked: what follows it in
    /// the same run of the task is queued, to go in one write at its end.
    /// (The first reply of a run goes at once: most runs have one, and
    /// queuing it would only cost.)
    coalescing: bool,
    /// The socket took less than it was given: the connection's task waits
    /// until it is writable, and everything queues behind it until then.
    blocked: bool,
}

/// Sets a queue's backlog to `bytes`, keeping the endpoint's gauge of every
/// backlog in step (`sink` and `backlog` borrowed apart: a write holds the
/// socket meanwhile).
fn set_backlog(sink: Option<&Sink>, backlog: &mut usize, bytes: usize) {
    if let Some(Sink { metrics, .. }) = sink {
        match bytes.cmp(backlog) {
            std::cmp::Ordering::Greater => metrics.outbound_queued_bytes.add((bytes - *backlog) as u64),
            std::cmp::Ordering::Less => metrics.outbound_queued_bytes.sub((*backlog - bytes) as u64),
            std::cmp::Ordering::Equal => {}
        }
    }
    *backlog = bytes;
}

impl Queue {
    /// Sets the backlog, keeping the endpoint's gauge of every backlog in
    /// step. A frame that goes straight to the socket never comes here.
    fn set_bytes(&mut self, bytes: usize) {
        set_backlog(self.sink.as_deref(), &mut self.bytes, bytes);
    }

    /// Refuses every later frame. What is queued stays: it was due before
    /// the close, and goes out before the close frame (within the close
    /// grace) or is dropped with the connection; it is within the limit.
    fn close(&mut self, reason: CloseReason) {
        self.closed = Some(reason);
    }

    /// Writes queued frames until the socket takes no more or none is left.
    /// `Ok(true)` when something was written.
    fn write(&mut self) -> io::Result<bool> {
        /// Frames given to the kernel in one `writev`.
        const SLICES: usize = 64;
        let Some(sink) = &self.sink else { return Ok(false) };
        let mut progress = false;
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let mut count = 0;
            for (i, frame) in self.frames.iter().take(SLICES).enumerate() {
                let from = if i == 0 { self.written } else { 0 };
                slices[i] = IoSlice::new(&frame.wire()[from..]);
                count += 1;
            }
            let result = if count == 1 {
                sink.socket.try_write(&slices[0])
            } else {
                sink.socket.try_write_vectored(&slices[..count])
            };
            let mut n = match result {
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(progress);
                }
                Err(error) => return Err(error),
            };
            progress |= n > 0;
            let left = self.bytes - n;
            set_backlog(Some(sink), &mut self.bytes, left);
            let (mut frames, mut payload) = (0, 0);
            while let Some(front) = self.frames.front() {
                let left = front.wire_len() - self.written;
                if n < left {
                    self.written += n;
                    break;
                }
                n -= left;
                frames += 1;
                payload += front.len();
                self.written = 0;
                self.frames.pop_front();
            }
            sink.metrics.frames_out.add(frames);
            sink.metrics.bytes_out.add(payload as u64);
        }
        // An idle connection keeps no queue.
        self.frames = VecDeque::new();
        self.blocked = false;
        Ok(progress)
    }
}

/// The outbound queue of one connection.
///
/// Over a plain TCP stream (`Outbox::attach`), a frame pushed while
/// nothing is queued is written straight to the socket by whoever pushes it
/// (a broadcaster, a channel handler, on any thread) under the outbox's lock,
/// so frames never interleave: delivering it wakes no task. Only what the
/// kernel does not take is queued, and the connection's task is woken to
/// write it once the socket is writable. Without a socket (LongPoll, other IO
/// types) frames are queued for the connection to take.
pub struct Outbox {
    id: ConnId,
    limit: usize,
    /// How frames are compressed for this connection, if it agreed to
    /// permessage-deflate.
    deflate: Option<Box<Deflate>>,
    queue: Mutex<Queue>,
    ready: Signal,
    clock: Clock,
}

/// When a connection was last heard from, and since when its writes have
/// made no progress, for the registry's watchdog: so that an idle
/// connection waits on no timer of its own. Milliseconds on the runtime's
/// clock, wrapping (`u32`: compared by difference, fine for timeouts under
/// 24 days).
#[derive(Default)]
struct Clock {
    /// 0: not watched.
    idle_ms: AtomicU32,
    heard: AtomicU32,
    /// 0: not stalled (a real 0 is taken as 1).
    stalled: AtomicU32,
}

pub(crate) use crate::clock::now_ms;

/// Wakes the one task that writes an outbox: a waker and a pending flag
/// (a signal given while nobody waits is kept for the next wait). Unlike a
/// `Notify`, waiting on it puts nothing in the waiter's future.
#[derive(Default)]
struct Signal {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    fn notify_one(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A signal given between the look and the registration.
        if self.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// How an outbox compresses the messages it sends (permessage-deflate,
/// agreed at the upgrade).
#[derive(Debug)]
pub(crate) struct Deflate {
    level: u8,
    /// The largest window the client allows (`server_max_window_bits`).
    /// At 15, a frame's compressed version is made once and shared by
    /// every connection that takes it ([`Frame::deflated`]: a broadcast is
    /// compressed once); below, each message is compressed for this
    /// connection alone; at 8 (which zlib cannot keep to) not at all.
    window_bits: u8,
    metrics: Arc<Metrics>,
}

impl Deflate {
    /// Compression at `level` (0..=9) within `window_bits`, counted in
    /// `metrics`.
    pub(crate) fn new(level: u32, window_bits: u8, metrics: Arc<Metrics>) -> Self {
        // `min(9)` fits a `u8`.
        Deflate { level: level.min(9) as u8, window_bits, metrics }
    }

    /// The frame as this connection sends it: compressed, unless it is a
    /// control frame, short, or does not shrink. The compressed version is
    /// kept in `frame` (when this connection's window allows sharing it),
    /// for every other connection given the same frame.
    fn apply(&self, frame: &Frame) -> Option<Frame> {
        if frame.len() < phx_channels_wire::deflate::COMPRESS_FROM {
            return None;
        }
        let compress = |payload: &[u8], out: &mut Vec<u8>| {
            self.metrics.messages_compressed.incr();
            phx_channels_wire::deflate::compress(payload, self.level.into(), self.window_bits, out)
        };
        if self.window_bits == 15 {
            frame.deflated(compress)
        } else {
            frame.deflate(compress)
        }
    }
}

/// The frame was not queued: the connection is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed(pub CloseReason);

impl Outbox {
    /// A new, empty outbox that holds at most `limit` bytes of frames.
    pub fn new(limit: usize) -> Self {
        Outbox {
            id: ConnId::unique(),
            limit,
            deflate: None,
            queue: Mutex::new(Queue::default()),
            ready: Signal::default(),
            clock: Clock::default(),
        }
    }

    /// The connection this outbox belongs to.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Compresses what is pushed from now on, as `deflate` says (the
    /// connection agreed to permessage-deflate).
    pub(crate) fn with_deflate(mut self, deflate: Option<Deflate>) -> Self {
        self.deflate = deflate.map(Box::new);
        self
    }

    /// Whether the connection agreed to permessage-deflate.
    pub(crate) fn is_deflating(&self) -> bool {
        self.deflate.is_some()
    }

    /// Writes frames to `socket` from now on (see [`Outbox`]), counting
    /// them in `metrics`.
    pub(crate) fn attach(&self, socket: OwnedWriteHalf, metrics: Arc<Metrics>) {
        self.queue.lock().sink = Some(Box::new(Sink { socket, metrics }));
    }

    /// Gives the socket back, with what is due on it, in order: the rest of
    /// a frame partly written, then every frame queued (to write before a
    /// close frame). Nothing is written by the outbox after.
    pub(crate) fn detach(&self) -> (Option<OwnedWriteHalf>, Vec<Bytes>) {
        let mut q = self.queue.lock();
        let written = std::mem::take(&mut q.written);
        let frames = std::mem::take(&mut q.frames);
        let due = frames
            .into_iter()
            .enumerate()
            .map(|(i, frame)| if i == 0 { frame.wire().slice(written..) } else { frame.wire().clone() })
            .collect();
        q.set_bytes(0);
        (q.sink.take().map(|sink| sink.socket), due)
    }

    /// Takes what is still queued, closed or not: what a closing
    /// connection writes before its close frame.
    pub(crate) fn take_due(&self) -> VecDeque<Frame> {
        let mut q = self.queue.lock();
        q.set_bytes(0);
        std::mem::take(&mut q.frames)
    }

    /// Queues a frame, or writes it when nothing is queued and a socket is
    /// attached. A frame that would take the unwritten backlog over the
    /// limit closes the connection instead ([`CloseReason::SlowConsumer`]),
    /// and so does a single frame larger than the limit, even into an empty
    /// queue: what one connection holds stays within the limit it was given.
    pub fn push(&self, frame: Frame) -> Result<(), Closed> {
        match self.deflate.as_deref().and_then(|deflate| deflate.apply(&frame)) {
            Some(compressed) => self.push_framed(compressed),
            None => self.push_framed(frame),
        }
    }

    /// [`Outbox::push`] of a frame shared with other connections (a
    /// broadcast's): compressed, for a connection that agreed to
    /// permessage-deflate, once for all of them (the compressed version is
    /// kept in `frame`).
    pub fn push_shared(&self, frame: &Frame) -> Result<(), Closed> {
        self.push_framed(self.shared(frame))
    }

    /// A frame shared with other connections, as this one sends it:
    /// compressed once for all that agreed to permessage-deflate. For a
    /// shared frame that reaches the outbox later, through a mailbox (a
    /// broadcast with a position): a clone would not keep the compressed
    /// version, and each connection would compress it again.
    pub(crate) fn shared(&self, frame: &Frame) -> Frame {
        self.deflate.as_deref().and_then(|deflate| deflate.apply(frame)).unwrap_or_else(|| frame.clone())
    }

    /// Queues or writes a frame as it will go on the wire.
    fn push_framed(&self, frame: Frame) -> Result<(), Closed> {
        let mut q = self.queue.lock();
        if let Some(reason) = q.closed {
            return Err(Closed(reason));
        }
        let len = frame.wire_len();
        if q.bytes + len > self.limit {
            q.close(CloseReason::SlowConsumer);
            drop(q);
            self.ready.notify_one();
            return Err(Closed(CloseReason::SlowConsumer));
        }
        if q.frames.is_empty() && !q.blocked && !q.coalescing {
            if let Some(sink) = &q.sink {
                // Straight to the socket, queued only if it does not all go.
                let wrote = sink.socket.try_write(frame.wire());
                if let Ok(n) = wrote {
                    if n == len {
                        sink.metrics.frames_out.incr();
                        sink.metrics.bytes_out.add(frame.len() as u64);
                        // While the connection's task runs, what it sends
                        // after this frame goes out in one write at the end.
                        q.coalescing = q.corked;
                        return Ok(());
                    }
                }
                // The kernel took part of it or none (a write error too): the
                // connection's task waits for the socket, or ends.
                q.written = *wrote.as_ref().unwrap_or(&0);
                let left = len - q.written;
                q.set_bytes(left);
                q.frames.push_back(frame);
                q.blocked = true;
                drop(q);
                self.ready.notify_one();
                return Ok(());
            }
        }
        let was_empty = q.frames.is_empty();
        let backlog = q.bytes + len;
        q.set_bytes(backlog);
        q.frames.push_back(frame);
        if q.corked {
            // The connection's task writes it when it is done.
            q.dirty = true;
            return Ok(());
        }
        if q.sink.is_none() {
            drop(q);
            if was_empty {
                self.ready.notify_one();
            }
            return Ok(());
        }
        if q.blocked {
            // Behind frames the socket did not take: the connection's task
            // writes them all once it can.
            return Ok(());
        }
        self.write_through(q);
        Ok(())
    }

    /// Writes what is queued, from whichever task holds the lock. Whatever
    /// the kernel does not take (or a write error) is for the connection's
    /// task, which is woken to wait for the socket (or to end).
    fn write_through(&self, mut q: parking_lot::MutexGuard<'_, Queue>) {
        if q.write().is_err() {
            q.blocked = true;
        }
        let left = !q.frames.is_empty();
        drop(q);
        if left {
            self.ready.notify_one();
        }
    }

    /// The connection's task starts running: after the first frame it sends
    /// (written at once), its pushes are queued until [`Outbox::uncork`].
    pub(crate) fn cork(&self) {
        self.queue.lock().corked = true;
    }

    /// The connection's task is done for now: what it queued is written, in
    /// one write.
    pub(crate) fn uncork(&self) {
        let mut q = self.queue.lock();
        q.corked = false;
        q.coalescing = false;
        if !std::mem::take(&mut q.dirty) || q.blocked || q.frames.is_empty() {
            return;
        }
        // The task waits for the socket only once it sees a backlog: the
        // wake-up in `write_through` makes it look.
        self.write_through(q);
    }

    /// Writes what is queued, for the connection's task. `Ok(true)` when
    /// something was written.
    pub(crate) fn flush(&self) -> io::Result<bool> {
        self.queue.lock().write()
    }

    /// Whether frames wait for the socket to be writable.
    pub(crate) fn is_blocked(&self) -> bool {
        let q = self.queue.lock();
        q.blocked && !q.frames.is_empty()
    }

    /// Closes the connection: no frame is queued after this one. Frames
    /// already queued were due before it: the connection writes them
    /// before its close frame, within its close grace. The first reason
    /// given wins.
    pub fn close(&self, reason: CloseReason) {
        let mut q = self.queue.lock();
        if q.closed.is_none() {
            q.close(reason);
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Has the registry's watchdog close this connection once it is idle
    /// (nothing heard) or stalled (nothing written) for `idle`.
    pub(crate) fn watch_idle(&self, idle: std::time::Duration) {
        let idle_ms = crate::clock::ms(idle).max(1);
        self.heard();
        self.clock.idle_ms.store(idle_ms, Ordering::Relaxed);
    }

    /// The client was heard from just now.
    pub(crate) fn heard(&self) {
        self.clock.heard.store(now_ms(), Ordering::Relaxed);
    }

    /// Frames wait for the socket since `since` (the last write that made
    /// progress), or not at all.
    pub(crate) fn set_stalled(&self, since: Option<u32>) {
        self.clock.stalled.store(since.map_or(0, |ms| ms.max(1)), Ordering::Relaxed);
    }

    /// Whether frames wait for the socket, as the watchdog last heard.
    pub(crate) fn is_stalled(&self) -> bool {
        self.clock.stalled.load(Ordering::Relaxed) != 0
    }

    /// For the watchdog: closes the connection if it has been idle or
    /// stalled for its idle timeout at `now` (see [`now_ms`]).
    pub(crate) fn check_idle(&self, now: u32) {
        let idle = self.clock.idle_ms.load(Ordering::Relaxed);
        if idle == 0 {
            return;
        }
        // A stamp "ahead" of now (a race with its writer) is not a timeout.
        let over = |since: u32| (idle..u32::MAX / 2).contains(&crate::clock::elapsed_ms(since, now));
        let stalled = self.clock.stalled.load(Ordering::Relaxed);
        if stalled != 0 && over(stalled) {
            return self.close(CloseReason::Stalled);
        }
        if over(self.clock.heard.load(Ordering::Relaxed)) {
            self.close(CloseReason::Idle);
        }
    }

    /// Whether the connection is closing.
    pub fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Why the connection is closing, if it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.queue.lock().closed
    }

    /// Takes every queued frame (empty when nothing is queued), or reports
    /// why the connection is closing.
    ///
    /// The queue itself is handed over, so the outbox of an idle connection
    /// holds no allocation: one is made when a frame is queued and freed once
    /// the writer is done with the batch.
    pub fn take(&self) -> Result<VecDeque<Frame>, CloseReason> {
        let mut q = self.queue.lock();
        if let Some(reason) = q.closed {
            return Err(reason);
        }
        q.set_bytes(0);
        Ok(std::mem::take(&mut q.frames))
    }

    /// Waits until a frame is queued or the connection is closed (over a
    /// socket: until the connection's task has something to write).
    ///
    /// One task waits on an outbox (its connection's writer): a second
    /// waiter replaces the first.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.ready.poll(cx)).await;
    }

    /// Waits for frames and takes them all; `Err` once closed.
    pub async fn next_batch(&self) -> Result<VecDeque<Frame>, CloseReason> {
        loop {
            let batch = self.take()?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            self.ready().await;
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.set_bytes(0);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = self.queue.lock();
        f.debug_struct("Outbox")
            .field("id", &self.id)
            .field("queued", &q.frames.len())
            .field("bytes", &q.bytes)
            .field("closed", &q.closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Outgoing, Payload, Serializer};

    fn frame(n: usize) -> Frame {
        let payload = Payload::json(&"x".repeat(n)).unwrap();
        Serializer::V2
            .encode(&Outgoing::Broadcast { topic: "t", event: "e", payload: &payload, position: None })
            .unwrap()
    }

    #[tokio::test]
    async fn batches_everything_queued() {
        let outbox = Outbox::new(1 << 20);
        for _ in 0..3 {
            outbox.push(frame(10)).unwrap();
        }
        let batch = outbox.next_batch().await.unwrap();
        assert_eq!(batch.len(), 3);
        assert!(outbox.take().unwrap().is_empty());
        // nothing is kept for the next batch
        assert_eq!(outbox.queue.lock().frames.capacity(), 0);
    }

    #[test]
    fn a_slow_consumer_is_closed_not_buffered() {
        let one = frame(100).wire_len();
        let outbox = Outbox::new(one * 3);
        for _ in 0..3 {
            outbox.push(frame(100)).unwrap();
        }
        assert_eq!(outbox.push(frame(100)), Err(Closed(CloseReason::SlowConsumer)));
        assert_eq!(outbox.take(), Err(CloseReason::SlowConsumer));
        assert_eq!(outbox.push(frame(1)), Err(Closed(CloseReason::SlowConsumer)));
    }

    #[test]
    fn one_frame_over_the_limit_closes_even_an_empty_queue() {
        let one = frame(1000).wire_len();
        let outbox = Outbox::new(one);
        outbox.push(frame(1000)).unwrap();
        outbox.take().unwrap();
        assert_eq!(outbox.push(frame(1001)), Err(Closed(CloseReason::SlowConsumer)));
        assert_eq!(outbox.take(), Err(CloseReason::SlowConsumer));
    }

    #[test]
    fn first_close_reason_wins() {
        let outbox = Outbox::new(10);
        outbox.close(CloseReason::Disconnect);
        outbox.close(CloseReason::Shutdown);
        assert_eq!(outbox.take(), Err(CloseReason::Disconnect));
        assert!(outbox.is_closed());
    }

    /// An outbox over a real loopback socket, and the client end of it.
    async fn attached(limit: usize) -> (Outbox, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outbox = Outbox::new(limit);
        outbox.attach(server.into_split().1, Arc::new(Metrics::default()));
        (outbox, client)
    }

    /// With nothing queued, a push is written by the pusher itself: nothing
    /// is queued, nobody is woken, and the bytes are the frames' own.
    #[tokio::test]
    async fn a_push_to_an_idle_socket_is_written_through() {
        use tokio::io::AsyncReadExt;
        let (outbox, mut client) = attached(1 << 20).await;
        let frames = [frame(10), frame(300), frame(70_000)];
        for f in &frames {
            outbox.push(f.clone()).unwrap();
            let q = outbox.queue.lock();
            assert!(q.frames.is_empty() && q.frames.capacity() == 0 && !q.blocked);
        }
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.wire().to_vec()).collect();
        let mut got = vec![0; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }

    /// What the socket does not take is queued, the partly written frame
    /// first with its offset; over the limit the connection closes, and
    /// what was queued before is kept, in order, to write before the close
    /// frame (the rest of the partly written frame first).
    #[tokio::test]
    async fn what_the_socket_does_not_take_is_queued_then_bounded() {
        let big = frame(1 << 20);
        let (outbox, _client) = attached(8 * big.wire_len()).await;
        let mut pushed = 0;
        while !outbox.is_blocked() {
            outbox.push(big.clone()).unwrap();
            pushed += 1;
            assert!(pushed < 64, "a socket nobody reads took {pushed} MiB");
        }
        let (written, bytes) = {
            let q = outbox.queue.lock();
            (q.written, q.bytes)
        };
        assert!(written < big.wire_len());
        assert_eq!(bytes, big.wire_len() - written);
        let closed = loop {
            if let Err(Closed(reason)) = outbox.push(big.clone()) {
                break reason;
            }
        };
        assert_eq!(closed, CloseReason::SlowConsumer);
        let (queued, backlog) = {
            let q = outbox.queue.lock();
            (q.frames.len(), q.bytes)
        };
        assert!(queued > 1 && backlog <= 8 * big.wire_len());
        let (_, due) = outbox.detach();
        assert_eq!(due.len(), queued);
        assert_eq!(due[0].len(), big.wire_len() - written);
        assert!(due[1..].iter().all(|frame| frame.len() == big.wire_len()));
        assert_eq!(due.iter().map(Bytes::len).sum::<usize>(), backlog);
        assert_eq!(outbox.queue.lock().bytes, 0);
    }

    /// Closing refuses what comes after, and keeps what was queued before:
    /// it was due, and goes out before the close frame.
    #[test]
    fn a_close_keeps_what_was_due() {
        let outbox = Outbox::new(1 << 20);
        outbox.push(frame(10)).unwrap();
        outbox.push(frame(20)).unwrap();
        outbox.close(CloseReason::Shutdown);
        assert_eq!(outbox.push(frame(30)), Err(Closed(CloseReason::Shutdown)));
        let due = outbox.take_due();
        assert_eq!(due.iter().map(Frame::len).collect::<Vec<_>>(), [frame(10).len(), frame(20).len()]);
        assert!(outbox.take_due().is_empty());
    }

    #[tokio::test]
    async fn close_wakes_the_writer() {
        let outbox = std::sync::Arc::new(Outbox::new(10));
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.next_batch().await.map(|b| b.len()) })
        };
        tokio::task::yield_now().await;
        outbox.close(CloseReason::Shutdown);
        assert_eq!(waiter.await.unwrap(), Err(CloseReason::Shutdown));
    }
}
