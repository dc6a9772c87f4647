//! What this node remembers of streams whose user left: each one's position and replay buffer,
//! kept for a grace period so a user who comes back (a reconnection storm after a network
//! blip or a proxy restart) resumes from memory instead of reading the store. Bounded in bytes
//! across the node, oldest departure evicted first, as well as in time. Pure bookkeeping, no
//! I/O: [`super::Hub`] decides when a snapshot is still exact (see `Hub::stream` and
//! `UserStream`'s `Drop`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee_store::UserKey;

use super::Delivered;

/// Bytes charged per kept event besides its frame: the buffer's slot and the frame's shared
/// header.
const EVENT_OVERHEAD: usize = std::mem::size_of::<Delivered>() + 32;
/// Bytes charged per kept stream besides its events and key: the map and order entries.
const ENTRY_OVERHEAD: usize = 128;

/// How long, and how much, a node keeps of streams whose user left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraceLimits {
    /// How long a snapshot may serve a resume after its user's last connection and run
    /// ended; zero keeps nothing.
    pub grace: Duration,
    /// Bytes all snapshots may hold together, estimated from their frames.
    pub bytes: usize,
}

/// A stream's state when its user left: every event up to `delivered` was handed out in
/// order, and `recent` holds the newest of them, oldest first, ending at `delivered`.
pub(super) struct Snapshot {
    pub delivered: u64,
    pub recent: VecDeque<Delivered>,
}

struct Entry {
    stamp: u64,
    left_at: Instant,
    bytes: usize,
    snapshot: Snapshot,
}

/// The snapshots, by user and in order of departure.
pub(super) struct Kept {
    limits: GraceLimits,
    by_user: HashMap<Arc<UserKey>, Entry>,
    /// Departure stamps, oldest first: eviction and expiry take from the front.
    order: BTreeMap<u64, Arc<UserKey>>,
    next_stamp: u64,
    bytes: usize,
}

impl Kept {
    pub fn new(limits: GraceLimits) -> Kept {
        Kept {
            limits,
            by_user: HashMap::new(),
            order: BTreeMap::new(),
            next_stamp: 0,
            bytes: 0,
        }
    }

    /// Keeps `snapshot` as `key`'s (replacing any older one), evicting the oldest departures
    /// until the whole fits the byte budget. Returns what was let go (the caller drops it
    /// outside its lock) and how many snapshots were evicted for room.
    pub fn keep(
        &mut self,
        key: Arc<UserKey>,
        snapshot: Snapshot,
        now: Instant,
    ) -> (Vec<Snapshot>, u64) {
        let mut gone: Vec<Snapshot> = self.forget(&key).into_iter().collect();
        gone.extend(self.expire(now));
        let bytes = charge(&key, &snapshot);
        if self.limits.grace.is_zero() || bytes > self.limits.bytes {
            gone.push(snapshot);
            return (gone, 0);
        }
        let mut evicted = 0;
        while self.bytes + bytes > self.limits.bytes {
            match self.pop_oldest() {
                Some(s) => {
                    gone.push(s);
                    evicted += 1;
                }
                None => break,
            }
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.order.insert(stamp, Arc::clone(&key));
        self.bytes += bytes;
        self.by_user.insert(
            key,
            Entry {
                stamp,
                left_at: now,
                bytes,
                snapshot,
            },
        );
        (gone, evicted)
    }

    /// Takes `key`'s snapshot if it is still within the grace.
    pub fn take(&mut self, key: &UserKey, now: Instant) -> Option<Snapshot> {
        let fresh = self
            .by_user
            .get(key)
            .is_some_and(|e| now.saturating_duration_since(e.left_at) < self.limits.grace);
        let snapshot = self.forget(key)?;
        fresh.then_some(snapshot)
    }

    /// Drops `key`'s snapshot (it may no longer be exact); returns it for dropping.
    pub fn forget(&mut self, key: &UserKey) -> Option<Snapshot> {
        let entry = self.by_user.remove(key)?;
        self.order.remove(&entry.stamp);
        self.bytes -= entry.bytes;
        Some(entry.snapshot)
    }

    /// Lets go of every snapshot older than the grace.
    pub fn expire(&mut self, now: Instant) -> Vec<Snapshot> {
        let mut gone = Vec::new();
        while let Some(key) = self.order.first_key_value().map(|(_, k)| k)
            && let Some(entry) = self.by_user.get(key)
            && now.saturating_duration_since(entry.left_at) >= self.limits.grace
        {
            gone.extend(self.pop_oldest());
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    /// Bytes charged for the snapshots held; never above the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_oldest(&mut self) -> Option<Snapshot> {
        let (_, key) = self.order.pop_first()?;
        let entry = self.by_user.remove(&key)?;
        self.bytes -= entry.bytes;
        Some(entry.snapshot)
    }
}

/// What a snapshot is charged against the budget.
fn charge(key: &UserKey, snapshot: &Snapshot) -> usize {
    let events: usize = snapshot
        .recent
        .iter()
        .map(|d| d.frame.len() + EVENT_OVERHEAD)
        .sum();
    events + key.org_id.len() + key.user_id.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::Utf8Bytes;

    fn user(n: usize) -> Arc<UserKey> {
        Arc::new(UserKey {
            org_id: "org".into(),
            user_id: format!("u{n}"),
        })
    }

    /// A snapshot ending at `delivered` with `events` frames of `size` bytes.
    fn snapshot(delivered: u64, events: u64, size: usize) -> Snapshot {
        Snapshot {
            delivered,
            recent: (delivered + 1 - events..=delivered)
                .map(|seq| Delivered {
                    seq,
                    frame: Utf8Bytes::from("x".repeat(size)),
                })
                .collect(),
        }
    }

    fn limits(bytes: usize) -> GraceLimits {
        GraceLimits {
            grace: Duration::from_secs(30),
            bytes,
        }
    }

    #[test]
    fn the_byte_budget_is_never_exceeded_and_the_oldest_departures_go_first() {
        let one = charge(&user(0), &snapshot(10, 10, 500));
        let mut kept = Kept::new(limits(one * 3 + one / 2));
        let now = Instant::now();
        let mut evicted = 0;
        for n in 0..10 {
            evicted += kept.keep(user(n), snapshot(10, 10, 500), now).1;
            assert!(kept.bytes() <= one * 3 + one / 2, "over budget after {n}");
        }
        assert_eq!(kept.len(), 3);
        assert_eq!(evicted, 7);
        assert_eq!(kept.bytes(), one * 3);
        for n in 0..7 {
            assert!(kept.take(&user(n), now).is_none(), "u{n} was evicted");
        }
        for n in 7..10 {
            assert_eq!(kept.take(&user(n), now).map(|s| s.delivered), Some(10));
        }
        assert_eq!((kept.len(), kept.bytes()), (0, 0));
    }

    #[test]
    fn a_snapshot_larger_than_the_whole_budget_is_not_kept_and_evicts_nothing() {
        let small = charge(&user(0), &snapshot(1, 1, 10));
        let mut kept = Kept::new(limits(small * 2));
        let now = Instant::now();
        kept.keep(user(0), snapshot(1, 1, 10), now);
        let (gone, evicted) = kept.keep(user(1), snapshot(100, 100, 100), now);
        assert_eq!((gone.len(), evicted), (1, 0));
        assert_eq!(kept.len(), 1);
        assert!(kept.bytes() <= small * 2);
    }

    #[test]
    fn a_newer_departure_replaces_the_older_one_of_the_same_user() {
        let mut kept = Kept::new(limits(1 << 20));
        let now = Instant::now();
        kept.keep(user(0), snapshot(5, 5, 100), now);
        let (gone, _) = kept.keep(user(0), snapshot(9, 3, 100), now);
        assert_eq!(gone.len(), 1);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept.bytes(), charge(&user(0), &snapshot(9, 3, 100)));
        assert_eq!(kept.take(&user(0), now).map(|s| s.delivered), Some(9));
    }

    #[test]
    fn snapshots_serve_only_within_the_grace_and_then_are_let_go() {
        let mut kept = Kept::new(limits(1 << 20));
        let t0 = Instant::now();
        kept.keep(user(0), snapshot(3, 3, 10), t0);
        kept.keep(user(1), snapshot(3, 3, 10), t0 + Duration::from_secs(20));
        assert!(
            kept.take(&user(0), t0 + Duration::from_secs(30)).is_none(),
            "at the grace's end a snapshot no longer serves"
        );
        assert_eq!(kept.expire(t0 + Duration::from_secs(49)).len(), 0);
        assert_eq!(kept.expire(t0 + Duration::from_secs(50)).len(), 1);
        assert_eq!((kept.len(), kept.bytes()), (0, 0));
    }

    #[test]
    fn no_grace_keeps_nothing() {
        let mut kept = Kept::new(GraceLimits {
            grace: Duration::ZERO,
            bytes: 1 << 20,
        });
        kept.keep(user(0), snapshot(3, 3, 10), Instant::now());
        assert_eq!((kept.len(), kept.bytes()), (0, 0));
    }
}
