//! Warnings that a flood could repeat thousands of times a second (a refused peer, a full server): the first of a
//! kind is logged, and then at most one line per interval, which says how many were not.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One kind of warning.
#[derive(Debug)]
pub struct RateLimited {
    what: &'static str,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last line of this kind was logged.
    last: Option<Instant>,
    /// Occurrences since then that were not.
    suppressed: u64,
}

impl RateLimited {
    /// `what` names the kind in the summary line.
    pub fn new(what: &'static str, interval: Duration) -> Self {
        Self {
            what,
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether to log this occurrence: yes for the first of an interval (after the summary of the last one, if
    /// anything was left out), no for the rest, which are counted.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.last.is_some_and(|last| now < last + self.interval) {
            state.suppressed += 1;
            return false;
        }
        self.summarize_locked(&mut state);
        state.last = Some(now);
        true
    }

    /// Logs how many occurrences were left out, once the interval since the last line has passed. Call it
    /// periodically, so a flood that stops is still accounted for.
    pub fn summarize(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.last.is_some_and(|last| last.elapsed() >= self.interval) && state.suppressed > 0 {
            self.summarize_locked(&mut state);
            state.last = Some(Instant::now());
        }
    }

    /// Occurrences counted and not yet summarized.
    pub fn suppressed(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).suppressed
    }

    fn summarize_locked(&self, state: &mut State) {
        if state.suppressed > 0 {
            let suppressed = std::mem::take(&mut state.suppressed);
            tracing::warn!(
                suppressed,
                "{}: {suppressed} more not logged in the last {}",
                self.what,
                humantime::format_duration(self.interval)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_the_rest_counted_until_the_interval_is_over() {
        let limited = RateLimited::new("refused peers", Duration::from_millis(50));
        assert!(limited.allow());
        assert!((0..1000).all(|_| !limited.allow()));
        assert_eq!(limited.suppressed(), 1000);
        limited.summarize();
        assert_eq!(limited.suppressed(), 1000, "not before the interval is over");
        std::thread::sleep(Duration::from_millis(60));
        limited.summarize();
        assert_eq!(limited.suppressed(), 0, "summarized");
        assert!(!limited.allow(), "the summary counts as the interval's line");
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            limited.allow(),
            "a new interval logs again, summarizing the one left out first"
        );
        assert_eq!(limited.suppressed(), 0);
    }
}
