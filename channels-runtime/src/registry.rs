//! The open connections of an endpoint, for the connection caps (in all,
//! and per source address) and for draining them on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};

use crate::outbox::{CloseReason, ConnId, Outbox};
use crate::source::{Counts, Source};

/// Every open connection (WebSocket or LongPoll session) of an endpoint.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<ConnId, Weak<Outbox>>>,
    /// 0 means no cap.
    max: std::sync::atomic::AtomicUsize,
    /// Connections one source may hold (registered here, and HTTP
    /// connections the server is serving); 0 means no cap, and nothing is
    /// counted.
    max_per_source: std::sync::atomic::AtomicU32,
    /// Connections open per source, while a cap is set.
    sources: Counts,
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
    /// The source counted for it ([`Source::get`]), 0 for none.
    source: u64,
    _open: TaskTrackerToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.open.lock().remove(&self.id);
            if let Some(source) = Source::from_raw(self.source) {
                registry.sources.leave(source);
            }
        }
    }
}

/// An HTTP connection of a source, counted while the server serves it.
#[derive(Debug)]
pub(crate) struct Serving {
    registry: Arc<Registry>,
    source: Source,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.registry.sources.leave(self.source);
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

    /// Caps the connections one source may hold (0: no cap).
    pub(crate) fn set_max_per_source(&self, max: u32) {
        self.max_per_source.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a new connection fits under the cap.
    pub(crate) fn has_room(&self) -> bool {
        let max = self.max.load(std::sync::atomic::Ordering::Relaxed);
        max == 0 || self.open.lock().len() < max
    }

    /// The source to count a connection from `peer` for, while a
    /// per-source cap is set.
    pub(crate) fn counted_source(&self, peer: Option<std::net::IpAddr>) -> Option<Source> {
        let counted = self.max_per_source.load(std::sync::atomic::Ordering::Relaxed) != 0;
        peer.filter(|_| counted).map(Source::of)
    }

    /// Whether `source` may open one more connection (it holds fewer than
    /// the per-source cap).
    pub(crate) fn source_has_room(&self, source: Option<Source>) -> bool {
        let max = self.max_per_source.load(std::sync::atomic::Ordering::Relaxed);
        match source {
            Some(source) if max != 0 => self.sources.get(source) < max,
            _ => true,
        }
    }

    /// Counts an HTTP connection of `source` while the returned guard
    /// lives; `None` when the source is at its cap (the connection is to be
    /// refused), or no cap is set (nothing counted: `Some(None)`).
    pub(crate) fn serve(self: &Arc<Self>, peer: std::net::IpAddr) -> Option<Option<Serving>> {
        let max = self.max_per_source.load(std::sync::atomic::Ordering::Relaxed);
        if max == 0 {
            return Some(None);
        }
        let source = Source::of(peer);
        self.sources.enter(source, max).then(|| Some(Serving { registry: self.clone(), source }))
    }

    /// Registers a connection (of `source`, counted toward its cap: a
    /// connection admitted under the cap is never refused here).
    pub(crate) fn register(self: &Arc<Self>, outbox: &Arc<Outbox>, source: Option<Source>) -> Registration {
        self.open.lock().insert(outbox.id(), Arc::downgrade(outbox));
        if let Some(source) = source {
            self.sources.add(source);
        }
        Registration {
            registry: Arc::downgrade(self),
            id: outbox.id(),
            source: source.map_or(0, Source::get),
            _open: self.tracker.token(),
        }
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
