//! The node's heartbeat: one timer for every WebSocket connection. Each tick wakes every
//! connection waiting on it, which then pings its client or drops it if it has been silent
//! for two periods (PROTOCOL.md §5). A connection holds a [`Beat`] — a slot number and the
//! last tick it heard — rather than a timer of its own: tens of thousands of idle connections
//! are mostly what each of them holds while it waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// Ticks every `period` for every connection of the node.
pub struct Heartbeat {
    period: Duration,
    /// Ticks so far; counted under `waiting`'s lock, read without it.
    tick: AtomicU64,
    waiting: Mutex<Waiting>,
}

/// The wakers of the connections waiting for the next tick, one slot per connection (freed
/// slots are reused).
#[derive(Default)]
struct Waiting {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Heartbeat {
    /// A heartbeat of `period`, ticking on a task of its own until `stop` fires or the
    /// heartbeat is dropped.
    pub fn spawn(period: Duration, stop: CancellationToken) -> Arc<Heartbeat> {
        let heartbeat = Arc::new(Heartbeat {
            period,
            tick: AtomicU64::new(0),
            waiting: Mutex::new(Waiting::default()),
        });
        tokio::spawn(beat(Arc::downgrade(&heartbeat), period, stop));
        heartbeat
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// A connection's place in the heartbeat; given back when dropped.
    pub fn join(self: &Arc<Self>) -> Beat {
        let mut w = lock(&self.waiting);
        let slot = match w.free.pop() {
            Some(slot) => slot,
            None => {
                w.slots.push(None);
                w.slots.len() - 1
            }
        };
        Beat {
            heartbeat: Arc::clone(self),
            slot,
            heard: self.tick.load(Ordering::Acquire),
            waiting: false,
        }
    }

    /// Counts a tick and wakes every connection waiting for one (outside the lock).
    fn tick(&self) {
        let wakers: Vec<Waker> = {
            let mut w = lock(&self.waiting);
            self.tick.fetch_add(1, Ordering::AcqRel);
            w.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

async fn beat(heartbeat: Weak<Heartbeat>, period: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => match heartbeat.upgrade() {
                Some(h) => h.tick(),
                None => return,
            },
        }
    }
}

/// One connection's place in the node's heartbeat.
pub struct Beat {
    heartbeat: Arc<Heartbeat>,
    slot: usize,
    /// The last tick this connection acted on.
    heard: u64,
    /// Its waker is in its slot for the next tick.
    waiting: bool,
}

impl Beat {
    /// Ready once per tick of the node's heartbeat.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let tick = self.heartbeat.tick.load(Ordering::Acquire);
        if tick != self.heard {
            self.heard = tick;
            self.waiting = false;
            return Poll::Ready(());
        }
        // One lock per tick and connection, not per poll: once its waker is in, later polls
        // (every event the connection sends is one) only read the tick.
        if self.waiting {
            return Poll::Pending;
        }
        let mut w = lock(&self.heartbeat.waiting);
        // Read again under the lock a tick is counted under: a tick between the two reads
        // has already taken the wakers, and this one would wait a whole period more.
        let tick = self.heartbeat.tick.load(Ordering::Acquire);
        if tick != self.heard {
            self.heard = tick;
            return Poll::Ready(());
        }
        w.slots[self.slot] = Some(cx.waker().clone());
        self.waiting = true;
        Poll::Pending
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        let mut w = lock(&self.heartbeat.waiting);
        w.slots[self.slot] = None;
        w.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn every_connection_hears_each_tick_once_and_a_left_slot_is_reused() {
        let stop = CancellationToken::new();
        let heartbeat = Heartbeat::spawn(Duration::from_secs(25), stop.clone());
        let mut a = heartbeat.join();
        let mut b = heartbeat.join();
        let start = tokio::time::Instant::now();
        poll_fn(|cx| a.poll_tick(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(25));
        // The same tick, heard by the other; and not twice by the first.
        poll_fn(|cx| b.poll_tick(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(25));
        poll_fn(|cx| a.poll_tick(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(50));

        let slot = b.slot;
        drop(b);
        let c = heartbeat.join();
        assert_eq!(c.slot, slot, "a left connection's slot is reused");
        assert_eq!(lock(&heartbeat.waiting).slots.len(), 2);
        stop.cancel();
    }
}
