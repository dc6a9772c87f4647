//! Token buckets: one ([`TokenBucket`]), and one per key ([`RateTable`]) for the per-user
//! rates — `user_message`s (`rate_limited` + `retry_after_ms`) and the expensive REST calls
//! (429 + `Retry-After`). A table keeps a user's bucket whether or not they are connected, so
//! reconnecting never refills it; a bucket that has refilled is the same as a new one and is
//! dropped at the next sweep, which keeps the table as small as the set of users who spent
//! tokens recently.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Keys a table holds at most; past it (after a sweep), buckets are dropped, which only
/// refills them early. ~100 bytes each.
const MAX_KEYS: usize = 100_000;
/// A table this small is never swept.
const MIN_SWEEP: usize = 1024;

#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// `per_minute` sustained, `burst` at once; starts full.
    pub fn new(per_minute: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            capacity: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            tokens: f64::from(burst.max(1)),
            updated: Instant::now(),
        }
    }

    /// Whether the bucket has refilled by `now` (indistinguishable from a new one).
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.per_sec >= self.capacity
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

/// A token bucket per key, all with the same rate.
pub struct RateTable<K> {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    by_key: HashMap<K, TokenBucket>,
    /// Size at which full buckets are swept next; doubling keeps sweeps amortised O(1).
    sweep_at: usize,
}

impl<K: Hash + Eq + Clone> RateTable<K> {
    /// `per_minute` sustained and `burst` at once, per key.
    pub fn new(per_minute: u32, burst: u32) -> RateTable<K> {
        RateTable {
            per_minute,
            burst,
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buckets<K>> {
        // Plain buckets: a panic elsewhere cannot leave them inconsistent.
        crate::sync::lock(&self.buckets)
    }

    /// Takes one of `key`'s tokens, or says how long until one is available.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut b = self.lock();
        if let Some(bucket) = b.by_key.get_mut(key) {
            return bucket.take(now);
        }
        if b.by_key.len() >= b.sweep_at {
            b.by_key.retain(|_, bucket| !bucket.is_full(now));
            if b.by_key.len() >= MAX_KEYS {
                let excess = b.by_key.len() + 1 - MAX_KEYS;
                let dropped: Vec<K> = b.by_key.keys().take(excess).cloned().collect();
                for k in dropped {
                    b.by_key.remove(&k);
                }
            }
            b.sweep_at = (b.by_key.len() * 2).clamp(MIN_SWEEP, MAX_KEYS);
        }
        let mut bucket = TokenBucket::new(self.per_minute, self.burst);
        bucket.updated = now;
        let taken = bucket.take(now);
        b.by_key.insert(key.clone(), bucket);
        taken
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_bucket_outlives_whoever_spent_it() {
        let t0 = Instant::now();
        let table = RateTable::new(60, 2);
        assert!(table.take(&"alice", t0).is_ok());
        assert!(table.take(&"alice", t0).is_ok());
        assert!(table.take(&"alice", t0).is_err(), "same key, same bucket");
        assert!(table.take(&"bob", t0).is_ok(), "keys are independent");
        assert!(table.take(&"alice", t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn refilled_buckets_are_swept_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let table = RateTable::new(60, 1);
        for i in 0..MIN_SWEEP {
            let _ = table.take(&i, t0);
        }
        assert_eq!(table.len(), MIN_SWEEP);
        // A second later every bucket has refilled: the next new key sweeps them all.
        let later = t0 + Duration::from_secs(2);
        assert!(table.take(&usize::MAX, later).is_ok());
        assert_eq!(table.len(), 1);
        // Keys that keep their buckets empty are bounded too.
        for i in 0..(MAX_KEYS + 10) {
            let _ = table.take(&i, later);
        }
        assert!(table.len() <= MAX_KEYS);
    }

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(60, 3);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert!(b.take(t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(1)).is_err());
    }
}
