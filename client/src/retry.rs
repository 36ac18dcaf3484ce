//! When to ask again: only after an answer that says nothing was decided and asking later may help.

use std::hash::{BuildHasher as _, RandomState};
use std::time::Duration;

/// How often a client asks again, and how long it waits in between: exponential back-off from `base_delay`,
/// doubling each time up to `max_delay`, each wait drawn at random from its upper half (jitter), so that clients
/// refused together do not return together.
///
/// Only what [`crate::ClientError::is_retryable`] allows is retried: `daemon.overloaded`, `daemon.rate_limited`,
/// and connections that failed before anything was sent. Never a decision, and never a request that may have been
/// decided (a timeout or a failure after it was sent). All attempts and waits share the client's one deadline: no
/// wait is begun that would end past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Retry {
    /// Ask once.
    pub const fn none() -> Self {
        Retry {
            attempts: 1,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            jitter: false,
        }
    }

    /// Up to `attempts` in all (at least one), waiting `base_delay`, then twice that, and so on, up to one second.
    pub fn new(attempts: u32, base_delay: Duration) -> Self {
        Retry {
            attempts: attempts.max(1),
            base_delay,
            max_delay: Duration::from_secs(1).max(base_delay),
            jitter: true,
        }
    }

    /// The longest wait between two attempts.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Whether waits are drawn at random from the upper half of their back-off (default: yes).
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before attempt `attempt + 1`, after `attempt` (1 or more) failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let delay = doubled.min(self.max_delay);
        if !self.jitter || delay.is_zero() {
            return delay;
        }
        // Each RandomState is seeded afresh: a random number without a dependency.
        let random = RandomState::new().hash_one(attempt);
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(random % nanos)
    }
}

/// Three attempts, 50 ms then 100 ms apart (with jitter).
impl Default for Retry {
    fn default() -> Self {
        Retry::new(3, Duration::from_millis(50))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let retry = Retry::new(6, Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(500))
            .with_jitter(false);
        let delays: Vec<u128> = (1..=5).map(|attempt| retry.delay(attempt).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(
            Retry::new(0, Duration::ZERO).attempts(),
            1,
            "always at least one attempt"
        );
        assert_eq!(Retry::none().attempts(), 1);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_varies() {
        let retry = Retry::new(3, Duration::from_millis(100));
        let delays: Vec<Duration> = (0..50).map(|_| retry.delay(2)).collect();
        assert!(
            delays
                .iter()
                .all(|delay| *delay >= Duration::from_millis(100) && *delay < Duration::from_millis(200)),
            "{delays:?}"
        );
        assert!(delays.iter().any(|delay| *delay != delays[0]), "{delays:?}");
    }
}
