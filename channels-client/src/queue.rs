//! A bounded queue from the socket's task to one stream: the task never
//! waits for a reader, and a reader never holds more than its bound.
//!
//! When an item would take the queue past its bound (items or bytes), the
//! oldest items are dropped and counted; the reader is told how many before
//! its next item ([`Next::Lagged`]), as `tokio::sync::broadcast` tells a
//! receiver that lagged. One item is always kept, whatever its size, so an
//! event larger than the byte bound still reaches an attentive reader.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// How much a queue holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Items.
    pub items: usize,
    /// Bytes, as the sender counts them (payload bytes for events).
    pub bytes: usize,
}

/// What the reader gets next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    Item(T),
    /// This many items were dropped (oldest first) since the last read.
    Lagged(u64),
    /// The sender is gone and everything was read.
    Closed,
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    /// Dropped and not yet reported to the reader.
    lagged: u64,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    waker: AtomicWaker,
    bound: Bound,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The socket task's end.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The stream's end.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// A queue holding at most `bound`.
pub(crate) fn bounded<T>(bound: Bound) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            lagged: 0,
            sender_gone: false,
            receiver_gone: false,
        }),
        waker: AtomicWaker::new(),
        bound,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `item` (`bytes` long), dropping the oldest items past the
    /// bound; false once the reader is gone (the item is dropped).
    pub fn send(&self, item: T, bytes: usize) -> bool {
        let mut state = self.0.lock();
        if state.receiver_gone {
            return false;
        }
        state.items.push_back((item, bytes));
        state.bytes += bytes;
        let bound = self.0.bound;
        while state.items.len() > 1 && (state.items.len() > bound.items || state.bytes > bound.bytes) {
            if let Some((_, size)) = state.items.pop_front() {
                state.bytes -= size;
                state.lagged += 1;
            }
        }
        drop(state);
        self.0.waker.wake();
        true
    }

    /// Whether the reader is gone.
    pub fn is_closed(&self) -> bool {
        self.0.lock().receiver_gone
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.lock().sender_gone = true;
        self.0.waker.wake();
    }
}

impl<T> Receiver<T> {
    /// The next item, or the count of those dropped before it.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next<T>> {
        if let Some(next) = self.try_next() {
            return Poll::Ready(next);
        }
        self.0.waker.register(cx.waker());
        // An item sent between the first look and the registration.
        self.try_next().map_or(Poll::Pending, Poll::Ready)
    }

    fn try_next(&self) -> Option<Next<T>> {
        let mut state = self.0.lock();
        if state.lagged > 0 {
            return Some(Next::Lagged(std::mem::take(&mut state.lagged)));
        }
        if let Some((item, size)) = state.items.pop_front() {
            state.bytes -= size;
            return Some(Next::Item(item));
        }
        state.sender_gone.then_some(Next::Closed)
    }

    /// Items waiting, and their bytes.
    pub fn buffered(&self) -> (usize, usize) {
        let state = self.0.lock();
        (state.items.len(), state.bytes)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_gone = true;
        // What nobody will read is freed now, not when the sender goes.
        state.items.clear();
        state.bytes = 0;
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (items, bytes) = self.buffered();
        f.debug_struct("Receiver").field("items", &items).field("bytes", &bytes).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    async fn next<T>(rx: &Receiver<T>) -> Next<T> {
        poll_fn(|cx| rx.poll_next(cx)).await
    }

    #[tokio::test]
    async fn the_oldest_items_are_dropped_past_the_bound_and_counted() {
        let (tx, rx) = bounded(Bound { items: 3, bytes: 100 });
        for i in 0..10 {
            assert!(tx.send(i, 1));
        }
        assert_eq!(rx.buffered(), (3, 3));
        assert_eq!(next(&rx).await, Next::Lagged(7));
        assert_eq!(next(&rx).await, Next::Item(7));
        assert_eq!(next(&rx).await, Next::Item(8));
        tx.send(10, 1);
        assert_eq!(next(&rx).await, Next::Item(9));
        assert_eq!(next(&rx).await, Next::Item(10));
        drop(tx);
        assert_eq!(next(&rx).await, Next::Closed);
    }

    #[tokio::test]
    async fn bytes_are_bounded_too_but_one_item_is_always_kept() {
        let (tx, rx) = bounded(Bound { items: 100, bytes: 10 });
        tx.send("a", 4);
        tx.send("b", 4);
        tx.send("c", 4);
        assert_eq!(rx.buffered(), (2, 8));
        tx.send("huge", 50);
        assert_eq!(rx.buffered(), (1, 50));
        assert_eq!(next(&rx).await, Next::Lagged(3));
        assert_eq!(next(&rx).await, Next::Item("huge"));
        assert_eq!(rx.buffered(), (0, 0));
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_and_a_gone_reader_refuses() {
        let (tx, rx) = bounded(Bound { items: 4, bytes: 4 });
        let reader = tokio::spawn(async move { next(&rx).await });
        tokio::task::yield_now().await;
        tx.send(1, 1);
        assert_eq!(reader.await.unwrap(), Next::Item(1));
        assert!(tx.is_closed());
        assert!(!tx.send(2, 1));
    }
}
