//! A connection's outbound queue.
//!
//! Every frame for a client (replies, pushes, fastlaned broadcasts) is
//! queued here and written by the connection's task, which takes everything
//! queued at once so frames that piled up go out in one write.
//!
//! The queue is bounded in bytes: a client that does not read fast enough
//! to keep its backlog under the limit is disconnected rather than allowed
//! to grow the server's memory. An idle outbox holds no allocation beyond
//! the struct itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

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
}

impl CloseReason {
    /// The WebSocket close code for this reason. Never 1000, which tells
    /// phoenix.js not to reconnect.
    pub fn ws_code(self) -> u16 {
        match self {
            CloseReason::Disconnect => 1001,
            CloseReason::SlowConsumer => 1008,
            CloseReason::Shutdown => 1012,
            CloseReason::Gone => 1001,
        }
    }

    /// A short human-readable reason, sent in the close frame and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Disconnect => "disconnected",
            CloseReason::SlowConsumer => "outbound queue full",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::Gone => "connection closed",
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

    /// A fresh id, never handed out before in this process (a connection
    /// gets one with its outbox; a service subscribing to a
    /// [`PubSub`](crate::pubsub::PubSub) takes its own).
    pub fn unique() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    bytes: usize,
    closed: Option<CloseReason>,
}

/// The outbound queue of one connection.
pub struct Outbox {
    id: ConnId,
    limit: usize,
    queue: Mutex<Queue>,
    ready: Notify,
}

/// The frame was not queued: the connection is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed(pub CloseReason);

impl Outbox {
    /// A new, empty outbox that holds at most `limit` bytes of frames.
    pub fn new(limit: usize) -> Self {
        Outbox { id: ConnId::unique(), limit, queue: Mutex::new(Queue::default()), ready: Notify::new() }
    }

    /// The connection this outbox belongs to.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queues a frame. A frame that would take the backlog over the limit
    /// closes the connection instead ([`CloseReason::SlowConsumer`]), and so
    /// does a single frame larger than the limit, even into an empty queue:
    /// what one connection holds stays within the limit it was given.
    pub fn push(&self, frame: Frame) -> Result<(), Closed> {
        let mut q = self.queue.lock();
        if let Some(reason) = q.closed {
            return Err(Closed(reason));
        }
        if q.bytes + frame.len() > self.limit {
            q.closed = Some(CloseReason::SlowConsumer);
            q.frames.clear();
            q.frames.shrink_to_fit();
            q.bytes = 0;
            drop(q);
            self.ready.notify_one();
            return Err(Closed(CloseReason::SlowConsumer));
        }
        let was_empty = q.frames.is_empty();
        q.bytes += frame.len();
        q.frames.push_back(frame);
        drop(q);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Closes the connection; frames already queued are dropped. The first
    /// reason given wins.
    pub fn close(&self, reason: CloseReason) {
        let mut q = self.queue.lock();
        if q.closed.is_none() {
            q.closed = Some(reason);
            q.frames = VecDeque::new();
            q.bytes = 0;
        }
        drop(q);
        self.ready.notify_one();
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
        q.bytes = 0;
        Ok(std::mem::take(&mut q.frames))
    }

    /// Waits until a frame is queued or the connection is closed.
    pub async fn ready(&self) {
        self.ready.notified().await;
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
        Serializer::V2.encode(&Outgoing::Broadcast { topic: "t", event: "e", payload: &payload }).unwrap()
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
        let one = frame(100).len();
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
        let one = frame(1000).len();
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
