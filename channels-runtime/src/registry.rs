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
