//! Milliseconds on the runtime's clock, in 32 bits: for the timestamps a
//! connection keeps (when it was last heard from, when its warning window
//! opened), where a `tokio::time::Instant` would cost 16 bytes each.
//!
//! The clock wraps after 49 days; only differences are compared, so any
//! span under 24 days measures right across the wrap.

/// Now, in wrapping milliseconds on the runtime's clock (paused in tests).
pub(crate) fn now_ms() -> u32 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    let now = tokio::time::Instant::now().into_std();
    // A paused clock (tests) may stand before the epoch: signed, and
    // rounded down on both sides, so that differences stay exact.
    let nanos: i128 = match now.checked_duration_since(epoch) {
        Some(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        None => -i128::try_from(epoch.duration_since(now).as_nanos()).unwrap_or(i128::MAX),
    };
    // Wrapping on purpose: only differences are compared.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = nanos.div_euclid(1_000_000) as u32;
    ms
}

/// Milliseconds from `since` to `now`, both from [`now_ms`].
pub(crate) fn elapsed_ms(since: u32, now: u32) -> u32 {
    now.wrapping_sub(since)
}

/// `duration` in milliseconds, for comparing with [`elapsed_ms`] (at most
/// 24 days).
pub(crate) const fn ms(duration: std::time::Duration) -> u32 {
    let ms = duration.as_millis();
    if ms > (u32::MAX / 2) as u128 {
        u32::MAX / 2
    } else {
        ms as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_survive_the_wrap() {
        assert_eq!(elapsed_ms(u32::MAX - 5, 10), 16);
        assert_eq!(ms(std::time::Duration::from_secs(60)), 60_000);
        assert_eq!(ms(std::time::Duration::from_secs(u64::MAX / 4)), u32::MAX / 2);
    }
}
