//! Where a connection comes from, for per-source limits: its peer's IPv4
//! address, or the /64 prefix of its IPv6 address (the block one host or
//! one customer is handed, so that rotating through its addresses does not
//! make a client many sources).
//!
//! [`Counts`] keeps how many connections each source has open,
//! [`Rate`] how many times each did something this second. Both keep
//! only sources that have something counted (a source's entry goes when
//! its count does, a rate's window once it is over), so their memory
//! follows the clients of the moment, not every address ever seen.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// A source: a hash of the address (or prefix), never 0 (0 stands for
/// "not counted" where a connection keeps one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(u64);

impl Source {
    /// The source of a peer at `ip`.
    pub(crate) fn of(ip: IpAddr) -> Self {
        // A random key per process: a client cannot pick addresses that
        // collide with another's.
        static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
        match ip.to_canonical() {
            IpAddr::V4(v4) => v4.octets().hash(&mut hasher),
            IpAddr::V6(v6) => v6.octets()[..8].hash(&mut hasher),
        }
        Source(hasher.finish().max(1))
    }

    /// The source as a number (never 0).
    pub(crate) fn get(self) -> u64 {
        self.0
    }

    /// A source from [`Source::get`]; `None` for 0.
    pub(crate) fn from_raw(raw: u64) -> Option<Self> {
        (raw != 0).then_some(Source(raw))
    }
}

/// Open connections per source.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    open: Mutex<HashMap<Source, u32>>,
}

impl Counts {
    /// Connections `source` has open.
    pub(crate) fn get(&self, source: Source) -> u32 {
        self.open.lock().get(&source).copied().unwrap_or(0)
    }

    /// Counts one more connection of `source` if it has fewer than `max`
    /// open; whether it was counted.
    pub(crate) fn enter(&self, source: Source, max: u32) -> bool {
        let mut open = self.open.lock();
        let count = open.entry(source).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&source);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// Counts one connection of `source` more, whatever the limit.
    pub(crate) fn add(&self, source: Source) {
        *self.open.lock().entry(source).or_insert(0) += 1;
    }

    /// One connection of `source` ended.
    pub(crate) fn leave(&self, source: Source) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&source);
            }
        }
    }

    /// Sources with connections open.
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.open.lock().len()
    }
}

/// Times per second each source may do something (a fixed one-second
/// window per source, on the runtime's clock).
#[derive(Debug)]
pub(crate) struct Rate {
    limit: u32,
    windows: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    /// When each source's window opened ([`crate::clock`]) and how many
    /// times it acted in it.
    open: HashMap<Source, (u32, u32)>,
    /// Past this many entries, windows that are over are swept.
    sweep_at: usize,
}

impl Rate {
    /// `limit` times per second per source; 0: unlimited.
    pub(crate) fn new(limit: u32) -> Self {
        Rate { limit, windows: Mutex::new(Windows { open: HashMap::new(), sweep_at: 64 }) }
    }

    /// Whether `source` may act now (counted if so).
    pub(crate) fn allow(&self, source: Source) -> bool {
        if self.limit == 0 {
            return true;
        }
        let now = crate::clock::now_ms();
        let over = |opened: u32| crate::clock::elapsed_ms(opened, now) >= 1000;
        let mut windows = self.windows.lock();
        if windows.open.len() >= windows.sweep_at {
            windows.open.retain(|_, (opened, _)| !over(*opened));
            windows.sweep_at = (windows.open.len() * 2).max(64);
        }
        let (opened, count) = windows.open.entry(source).or_insert((now, 0));
        if over(*opened) {
            *opened = now;
            *count = 0;
        }
        if *count >= self.limit {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_prefix_is_one_source() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(v4), Source::of(mapped), "an IPv4-mapped address is its IPv4 source");
        assert_ne!(Source::of(v4), Source::of("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn counts_keep_only_sources_with_connections() {
        let counts = Counts::default();
        let s = Source::of("10.0.0.1".parse().unwrap());
        assert!(counts.enter(s, 2) && counts.enter(s, 2));
        assert!(!counts.enter(s, 2));
        assert_eq!(counts.get(s), 2);
        counts.leave(s);
        counts.leave(s);
        assert_eq!((counts.get(s), counts.sources()), (0, 0));
        assert!(!counts.enter(s, 0));
        assert_eq!(counts.sources(), 0, "a refusal leaves no entry");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_per_source_per_second() {
        let rate = Rate::new(3);
        let (a, b) = (Source::of("10.0.0.1".parse().unwrap()), Source::of("10.0.0.2".parse().unwrap()));
        assert_eq!((0..10).filter(|_| rate.allow(a)).count(), 3);
        assert!(rate.allow(b), "another source has its own window");
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(rate.allow(a));
        // Many sources: windows that are over are swept.
        for i in 0..1000u32 {
            rate.allow(Source::of(IpAddr::from(i.to_be_bytes())));
        }
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        rate.allow(a);
        for i in 0..100u32 {
            rate.allow(Source::of(IpAddr::from((i + 5000).to_be_bytes())));
        }
        assert!(rate.windows.lock().open.len() < 300, "{}", rate.windows.lock().open.len());
    }
}
