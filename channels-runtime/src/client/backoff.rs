//! How long to wait before the next try: phoenix.js's `reconnectAfterMs`
//! and `rejoinAfterMs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A delay per try: the first try is 1, and the delay may grow with it.
///
/// phoenix.js's schedules are the defaults: [`Backoff::reconnect`] (10, 50,
/// 100, 150, 200, 250, 500, 1 000, 2 000, then 5 000 ms) between connection
/// attempts, [`Backoff::rejoin`] (1 000, 2 000, 5 000, then 10 000 ms)
/// between joins of a channel that errored.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use std::time::Duration;
/// use phx_channels::client::Backoff;
///
/// let ms = |b: &Backoff, tries| b.delay(tries).as_millis();
/// let reconnect = Backoff::reconnect();
/// assert_eq!([1, 2, 9, 10, 99].map(|t| ms(&reconnect, t)), [10, 50, 2_000, 5_000, 5_000]);
///
/// let fixed = Backoff::steps([Duration::from_millis(5)], Duration::from_millis(20));
/// assert_eq!([1, 2, 3].map(|t| ms(&fixed, t)), [5, 20, 20]);
///
/// let doubling = Backoff::from_fn(|tries| Duration::from_millis(10 << tries.min(10)));
/// assert_eq!(ms(&doubling, 3), 80);
/// ```
#[derive(Clone)]
pub struct Backoff(Schedule);

#[derive(Clone)]
enum Schedule {
    Steps { steps: Vec<Duration>, then: Duration },
    Fn(Arc<dyn Fn(u32) -> Duration + Send + Sync>),
}

impl Backoff {
    /// `steps[0]` for the first try, `steps[1]` for the second, …, and `then`
    /// for every try after the last step.
    pub fn steps(steps: impl IntoIterator<Item = Duration>, then: Duration) -> Self {
        Backoff(Schedule::Steps { steps: steps.into_iter().collect(), then })
    }

    /// Any function of the try (1 for the first), like phoenix.js's
    /// `reconnectAfterMs: (tries) => ms` option.
    pub fn from_fn(delay: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        Backoff(Schedule::Fn(Arc::new(delay)))
    }

    /// phoenix.js's reconnect schedule: 10, 50, 100, 150, 200, 250, 500,
    /// 1 000, 2 000, then 5 000 ms.
    pub fn reconnect() -> Self {
        Self::millis(&[10, 50, 100, 150, 200, 250, 500, 1_000, 2_000], 5_000)
    }

    /// phoenix.js's rejoin schedule: 1 000, 2 000, 5 000, then 10 000 ms.
    pub fn rejoin() -> Self {
        Self::millis(&[1_000, 2_000, 5_000], 10_000)
    }

    fn millis(steps: &[u64], then: u64) -> Self {
        Self::steps(steps.iter().copied().map(Duration::from_millis), Duration::from_millis(then))
    }

    /// The delay before try number `tries` (1 for the first).
    pub fn delay(&self, tries: u32) -> Duration {
        match &self.0 {
            Schedule::Steps { steps, then } => {
                let index = usize::try_from(tries.saturating_sub(1)).unwrap_or(usize::MAX);
                steps.get(index).copied().unwrap_or(*then)
            }
            Schedule::Fn(delay) => delay(tries),
        }
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Schedule::Steps { steps, then } => {
                f.debug_struct("Backoff").field("steps", steps).field("then", then).finish()
            }
            Schedule::Fn(_) => f.write_str("Backoff(fn)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phoenix_js_schedules() {
        let ms = |b: &Backoff| (1..=11).map(|t| b.delay(t).as_millis() as u64).collect::<Vec<_>>();
        assert_eq!(ms(&Backoff::reconnect()), [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]);
        assert_eq!(ms(&Backoff::rejoin()), [1000, 2000, 5000, 10000, 10000, 10000, 10000, 10000, 10000, 10000, 10000]);
        // try 0 (never asked for) reads as the first
        assert_eq!(Backoff::rejoin().delay(0), Duration::from_secs(1));
    }
}
