//! The open connections of an endpoint, for the connection cap and for
//! draining them on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};

use crate::outbox::{CloseReason, ConnId, Outbox};

/// Every open connection (WebSocket or LongPoll session) of an endpoint.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<ConnId, Weak<Outbox>>>,
    /// 0 means no cap.
    max: std::sync::atomic::AtomicUsize,
    /// One token per registration: `drain` waits for them all to be given
    /// back, without polling the map.
    tracker: TaskTracker,
    /// How often the watchdog looks for idle connections, in ms (a quarter
    /// of the shortest idle timeout watched); 0 until it is started.
    watch_every_ms: std::sync::atomic::AtomicU64,
}

/// A connection's place in the registry, given up when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Weak<Registry>,
    id: ConnId,
    _open: TaskTrackerToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.open.lock().remove(&self.id);
        }
    }
}

/// Closes the watched connections that are idle or stalled, until the
/// registry is gone.
async fn watchdog(registry: Weak<Registry>) {
    loop {
        let every = match registry.upgrade() {
            Some(registry) => registry.watch_every_ms.load(std::sync::atomic::Ordering::Acquire),
            None => return,
        };
        tokio::time::sleep(Duration::from_millis(every)).await;
        let Some(registry) = registry.upgrade() else { return };
        let open: Vec<Weak<Outbox>> = registry.open.lock().values().cloned().collect();
        drop(registry);
        let now = crate::outbox::now_ms();
        for outbox in open.iter().filter_map(Weak::upgrade) {
            outbox.check_idle(now);
        }
    }
}

impl Registry {
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a new connection fits under the cap.
    pub(crate) fn has_room(&self) -> bool {
        let max = self.max.load(std::sync::atomic::Ordering::Relaxed);
        max == 0 || self.open.lock().len() < max
    }

    pub(crate) fn register(self: &Arc<Self>, outbox: &Arc<Outbox>) -> Registration {
        self.open.lock().insert(outbox.id(), Arc::downgrade(outbox));
        Registration { registry: Arc::downgrade(self), id: outbox.id(), _open: self.tracker.token() }
    }

    /// Closes `outbox`'s connection once it is idle or stalled for `idle`
    /// (see [`Outbox::watch_idle`]). One watchdog task per registry looks at
    /// every watched connection a few times per idle period, instead of a
    /// timer per connection: an idle connection costs no timer.
    pub(crate) fn watch_idle(self: &Arc<Self>, outbox: &Outbox, idle: Duration) {
        use std::sync::atomic::Ordering;
        outbox.watch_idle(idle);
        let every = u64::try_from((idle / 4).as_millis()).unwrap_or(u64::MAX).max(10);
        let before = self.watch_every_ms.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            (current == 0 || every < current).then_some(every)
        });
        if before == Ok(0) {
            tokio::spawn(watchdog(Arc::downgrade(self)));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Closes every connection with [`CloseReason::Shutdown`] (WebSocket code
    /// 1012: clients reconnect, elsewhere), `batch` at a time, spread over
    /// `period`, as Phoenix's drainer does.
    pub(crate) async fn drain(&self, batch: usize, period: Duration) {
        let all: Vec<Weak<Outbox>> = self.open.lock().values().cloned().collect();
        let batches = all.len().div_ceil(batch.max(1)).max(1);
        let pause = period / u32::try_from(batches).unwrap_or(u32::MAX);
        for (i, chunk) in all.chunks(batch.max(1)).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            for outbox in chunk.iter().filter_map(Weak::upgrade) {
                outbox.close(CloseReason::Shutdown);
            }
        }
        // Let the connections write their close frames and give up their
        // places; `wait` ends once the tracker is closed and every token
        // is back.
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(2), self.tracker.wait()).await.is_err() {
            tracing::info!(open = self.len(), "connections still open after 2 s of draining; leaving them");
        }
    }
}
