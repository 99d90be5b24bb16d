//! Abuse limits kept in memory, per server: failed sign-ins counted in a sliding window
//! ([`Throttle`]), and things held at once counted per key ([`Slots`]).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Counts attempts per key over a sliding window; a key with `max` attempts in the
/// window is refused until the oldest leaves it. An attempt counts from the moment it
/// starts, so concurrent attempts cannot all pass before the first one fails; one that
/// succeeds is given back.
pub struct Throttle<K> {
    max: usize,
    window: Duration,
    state: Mutex<Attempts<K>>,
}

struct Attempts<K> {
    by_key: HashMap<K, VecDeque<Instant>>,
    next_sweep: Instant,
}

/// Keys tracked before stale ones are swept out (at most once a second), so a flood of
/// distinct keys cannot grow the map without bound.
const SWEEP_AT: usize = 10_000;

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(max: usize, window: Duration) -> Self {
        let state = Attempts { by_key: HashMap::new(), next_sweep: Instant::now() };
        Throttle { max, window, state: Mutex::new(state) }
    }

    fn state(&self) -> MutexGuard<'_, Attempts<K>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts an attempt for `key`, or `Err(wait)` while `key` is throttled.
    pub fn attempt(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let window = self.window;
        let mut state = self.state();
        if state.by_key.len() >= SWEEP_AT && now >= state.next_sweep {
            state.by_key.retain(|_, times| times.back().is_some_and(|at| now.duration_since(*at) < window));
            state.next_sweep = now + Duration::from_secs(1);
        }
        let times = state.by_key.entry(key.clone()).or_default();
        while times.front().is_some_and(|at| now.duration_since(*at) >= window) {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= self.max => Err(window.saturating_sub(now.duration_since(*oldest))),
            _ => {
                times.push_back(now);
                Ok(())
            }
        }
    }

    /// Gives back the latest attempt of `key` (it succeeded).
    pub fn refund(&self, key: &K) {
        if let Some(times) = self.state().by_key.get_mut(key) {
            times.pop_back();
        }
    }

    /// Forgets every attempt of `key`.
    pub fn clear(&self, key: &K) {
        self.state().by_key.remove(key);
    }
}

/// At most `max` held at once per key; a [`Slot`] gives its place back when dropped.
pub struct Slots<K: Hash + Eq> {
    max: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> Slots<K> {
    pub fn new(max: usize) -> Self {
        Slots { max, held: Arc::default() }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `key`, or `None` when all of its slots are taken.
    pub fn take(&self, key: K) -> Option<Slot<K>> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(key.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot { held: self.held.clone(), key })
    }
}

pub struct Slot<K: Hash + Eq> {
    held: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_max_failures_until_the_window_passes() {
        let throttle = Throttle::new(3, Duration::from_millis(50));
        for _ in 0..3 {
            assert!(throttle.attempt(&"a").is_ok());
        }
        let wait = throttle.attempt(&"a").expect_err("throttled");
        assert!(wait <= Duration::from_millis(50));
        assert!(throttle.attempt(&"b").is_ok(), "other keys are not affected");
        std::thread::sleep(Duration::from_millis(60));
        assert!(throttle.attempt(&"a").is_ok());
        throttle.clear(&"a");
        for _ in 0..2 {
            assert!(throttle.attempt(&"a").is_ok());
            throttle.refund(&"a");
        }
        assert!(throttle.attempt(&"a").is_ok(), "given back attempts do not count");
    }

    #[test]
    fn slots_come_back_when_dropped() {
        let slots = Slots::new(2);
        let first = slots.take("u").expect("free");
        let _second = slots.take("u").expect("free");
        assert!(slots.take("u").is_none());
        assert!(slots.take("v").is_some());
        drop(first);
        assert!(slots.take("u").is_some());
    }
}
