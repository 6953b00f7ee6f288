//! Crash-loop detection: workers that keep dying, at any age, make the
//! supervisor pause before it starts the next one.
//!
//! Only deaths count: a worker that exited or was killed without the
//! supervisor asking. Drained, recycled and rogue workers ended because the
//! supervisor told them to, and do not count.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The deaths of the last window, and whether they make a crash loop.
#[derive(Debug, Clone)]
pub(crate) struct Deaths {
    at: VecDeque<Instant>,
    limit: u32,
    window: Duration,
    looping: bool,
}

impl Deaths {
    /// A crash loop is `limit` deaths or more within `window`.
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Deaths {
            at: VecDeque::new(),
            limit: limit.max(1),
            window,
            looping: false,
        }
    }

    /// Records a death at `now`. While the deaths in the window reach the
    /// limit: how far over it they are (1 at the limit), for the backoff.
    pub(crate) fn record(&mut self, now: Instant) -> Option<u32> {
        self.at.push_back(now);
        let count = self.count(now);
        let over = count.checked_sub(self.limit)?.saturating_add(1);
        self.looping = true;
        Some(over)
    }

    /// Deaths within the window before `now`.
    pub(crate) fn count(&mut self, now: Instant) -> u32 {
        while self
            .at
            .front()
            .is_some_and(|then| now.saturating_duration_since(*then) > self.window)
        {
            self.at.pop_front();
        }
        u32::try_from(self.at.len()).unwrap_or(u32::MAX)
    }

    /// Whether a crash loop is on at `now`.
    pub(crate) fn looping(&mut self, now: Instant) -> bool {
        self.looping && self.count(now) >= self.limit
    }

    /// True once, at the first call after a crash loop ended (its deaths
    /// aged out of the window).
    pub(crate) fn ended(&mut self, now: Instant) -> bool {
        if self.looping && self.count(now) < self.limit {
            self.looping = false;
            return true;
        }
        false
    }

    /// The window deaths are counted in.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn deaths_under_the_limit_are_no_crash_loop() {
        let t0 = Instant::now();
        let mut deaths = Deaths::new(5, 60 * S);
        for n in 0..4 {
            assert_eq!(deaths.record(t0 + n * S), None);
        }
        assert!(!deaths.looping(t0 + 4 * S));
    }

    #[test]
    fn deaths_reaching_the_limit_in_the_window_are_a_crash_loop_that_grows() {
        let t0 = Instant::now();
        let mut deaths = Deaths::new(5, 60 * S);
        for n in 0..4 {
            deaths.record(t0 + n * 10 * S);
        }
        assert_eq!(deaths.record(t0 + 40 * S), Some(1));
        assert_eq!(deaths.record(t0 + 41 * S), Some(2));
        assert!(deaths.looping(t0 + 41 * S));
        assert_eq!(deaths.count(t0 + 41 * S), 6);
    }

    #[test]
    fn deaths_spread_wider_than_the_window_are_no_crash_loop() {
        let t0 = Instant::now();
        let mut deaths = Deaths::new(5, 60 * S);
        for n in 0..20 {
            assert_eq!(deaths.record(t0 + n * 16 * S), None, "death {n}");
        }
    }

    #[test]
    fn crash_loop_ends_once_its_deaths_age_out_of_the_window() {
        let t0 = Instant::now();
        let mut deaths = Deaths::new(2, 10 * S);
        deaths.record(t0);
        assert_eq!(deaths.record(t0 + S), Some(1));
        assert!(!deaths.ended(t0 + 10 * S), "both deaths still count");
        assert!(deaths.looping(t0 + 10 * S));
        // The first death is now older than the window.
        assert!(deaths.ended(t0 + 11 * S));
        assert!(!deaths.looping(t0 + 11 * S));
        assert!(!deaths.ended(t0 + 13 * S), "said once");
    }
}
