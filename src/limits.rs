//! Abuse limits kept in memory on each server: things held at once, counted per key
//! ([`Slots`]), and sign-in keys known to be throttled ([`Refusals`]). Sign-in attempts
//! themselves are counted in the database (`storage::login_attempts`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sign-in keys refused until a moment, so that a throttled key is refused again without
/// a trip to the database. Nothing can shorten a refusal: while a key is throttled, no
/// attempt under it gets as far as succeeding.
#[derive(Default)]
pub struct Refusals {
    until: Mutex<HashMap<Vec<u8>, Instant>>,
}

/// Keys held before the expired ones are swept out, so a flood of distinct keys cannot
/// grow the map without bound.
const SWEEP_AT: usize = 10_000;

impl Refusals {
    /// How much longer `key` is refused, if it is.
    pub fn wait(&self, key: &[u8]) -> Option<Duration> {
        let until = *self.until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key)?;
        until.checked_duration_since(Instant::now()).filter(|wait| !wait.is_zero())
    }

    pub fn refuse(&self, key: Vec<u8>, wait: Duration) {
        let now = Instant::now();
        let mut until = self.until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if until.len() >= SWEEP_AT {
            until.retain(|_, at| *at > now);
        }
        until.insert(key, now + wait);
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
    fn refusals_last_their_wait() {
        let refusals = Refusals::default();
        assert_eq!(refusals.wait(b"a"), None);
        refusals.refuse(b"a".to_vec(), Duration::from_millis(50));
        assert!(refusals.wait(b"a").is_some_and(|wait| wait <= Duration::from_millis(50)));
        assert_eq!(refusals.wait(b"b"), None, "other keys are not affected");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(refusals.wait(b"a"), None);
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
