//! Per-user ordered delivery on one node: events arrive from this node's appends, from other
//! nodes through Redis and from the store (gap fills), in any order and possibly twice; each
//! connection gets every event once, in `seq` order, with no gap. Also keeps the replay buffer
//! of recent events. Pure bookkeeping, no I/O: [`super::UserStream`] does the reads.

use std::collections::{BTreeMap, VecDeque};

use tokio_util::sync::CancellationToken;

use super::Delivered;
use super::kept::Snapshot;
use crate::queue::{self, PushError};

/// Out-of-order events held while a gap is filled, at most; beyond it they are dropped and
/// read back from the store (bounded memory whatever other nodes send).
const MAX_PENDING: usize = 4096;

/// The sending half a connection registers with its user's stream.
pub(super) struct Subscriber {
    pub id: u64,
    pub tx: queue::Sender<Delivered>,
    /// Fired when the connection's queue is full: it must close with 1013 and resume. The
    /// subscriber is dropped with it (its queue closes), which is what wakes an idle
    /// connection to see it (`ws.rs`).
    pub too_slow: CancellationToken,
}

/// What [`Fanout::offer`] did with an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Offered {
    /// Delivered (with any held events it made contiguous), or already delivered.
    Done,
    /// Events before it are missing: the store must be read from `delivered`.
    Gap,
}

#[derive(Default)]
pub(super) struct Fanout {
    /// The last `seq` handed to connections; `None` until a subscribe or an append of this
    /// node fixes the position (events from elsewhere before that have nobody to go to).
    delivered: Option<u64>,
    pending: BTreeMap<u64, Delivered>,
    /// Events were dropped from `pending`: read the store up to its head.
    behind: bool,
    /// A gap fill is running.
    pub filling: bool,
    /// The newest delivered events, oldest first.
    recent: VecDeque<Delivered>,
    replay_buffer: usize,
    pub subscribers: Vec<Subscriber>,
}

impl Fanout {
    pub fn new(replay_buffer: usize) -> Fanout {
        Fanout {
            replay_buffer,
            ..Fanout::default()
        }
    }

    /// A fan-out that goes on from a stream kept after its user left: the same position and
    /// recent events, and nobody subscribed yet.
    pub fn resumed(replay_buffer: usize, snapshot: Snapshot) -> Fanout {
        let mut recent = snapshot.recent;
        while recent.len() > replay_buffer {
            recent.pop_front();
        }
        Fanout {
            replay_buffer,
            delivered: Some(snapshot.delivered),
            recent,
            ..Fanout::default()
        }
    }

    /// The position and recent events, when they say all there is: the position is fixed and
    /// nothing is held back or known to be only in the store (a stream that ends with a gap
    /// unfilled leaves nothing a later stream could trust).
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        let delivered = self.delivered?;
        if self.needs_fill() || self.filling {
            return None;
        }
        Some(Snapshot {
            delivered,
            recent: std::mem::take(&mut self.recent),
        })
    }

    pub fn delivered(&self) -> Option<u64> {
        self.delivered
    }

    pub fn recent(&self) -> &VecDeque<Delivered> {
        &self.recent
    }

    /// Fixes the position at `head` if nothing did yet; returns the position.
    pub fn start_at(&mut self, head: u64) -> u64 {
        match self.delivered {
            Some(d) => d,
            None => {
                self.delivered = Some(head);
                head
            }
        }
    }

    /// Takes an event from anywhere. `slow` counts connections closed for a full queue.
    pub fn offer(&mut self, event: Delivered, slow: &mut u64) -> Offered {
        let Some(delivered) = self.delivered else {
            return Offered::Done;
        };
        if event.seq <= delivered {
            return Offered::Done;
        }
        if event.seq == delivered + 1 {
            self.deliver(event, slow);
            self.drain_pending(slow);
            return Offered::Done;
        }
        if self.pending.len() < MAX_PENDING {
            self.pending.insert(event.seq, event);
        } else {
            self.behind = true;
        }
        Offered::Gap
    }

    /// Whether a fill still has work: held events, or events known to be only in the store.
    pub fn needs_fill(&self) -> bool {
        self.delivered.is_some() && (self.behind || !self.pending.is_empty())
    }

    /// Notes that the store holds events past the position (found by a poll).
    pub fn mark_behind(&mut self) {
        self.behind = true;
    }

    /// Applies one read of the store after `after`: `events` are in order, `complete` says
    /// the read reached the store's head. Events the store no longer has (pruned) cannot be
    /// delivered: connections are closed to resume and get `resync_required`.
    pub fn apply_fill(
        &mut self,
        after: u64,
        events: Vec<Delivered>,
        complete: bool,
        slow: &mut u64,
    ) {
        if self.delivered != Some(after) {
            // Something else moved the position meanwhile; the next round reads again.
            for e in events {
                self.offer(e, slow);
            }
            return;
        }
        let first_expected = after + 1;
        let first_found = events
            .first()
            .map(|e| e.seq)
            .or_else(|| self.pending.keys().next().copied());
        if let Some(first) = first_found
            && first > first_expected
        {
            self.lose_gap(first - 1, slow);
        }
        for e in events {
            self.offer(e, slow);
        }
        if complete {
            self.behind = false;
        }
    }

    /// Every connection must reload: the events up to `upto` are gone from the store.
    fn lose_gap(&mut self, upto: u64, slow: &mut u64) {
        tracing::warn!(
            upto,
            "events to fill a gap are no longer stored; connections must resync"
        );
        for s in self.subscribers.drain(..) {
            s.too_slow.cancel();
            *slow += 1;
        }
        self.recent.clear();
        self.delivered = Some(upto);
        self.drain_pending(slow);
    }

    fn drain_pending(&mut self, slow: &mut u64) {
        while let Some(delivered) = self.delivered {
            match self.pending.first_key_value() {
                Some((&seq, _)) if seq <= delivered => {
                    self.pending.pop_first();
                }
                Some((&seq, _)) if seq == delivered + 1 => {
                    if let Some((_, e)) = self.pending.pop_first() {
                        self.deliver(e, slow);
                    }
                }
                _ => break,
            }
        }
    }

    fn deliver(&mut self, event: Delivered, slow: &mut u64) {
        self.delivered = Some(event.seq);
        if self.replay_buffer > 0 {
            if self.recent.len() >= self.replay_buffer {
                self.recent.pop_front();
            }
            self.recent.push_back(event.clone());
        }
        self.subscribers
            .retain(|s| match s.tx.try_push(event.clone()) {
                Ok(()) => true,
                Err(PushError::Full) => {
                    s.too_slow.cancel();
                    *slow += 1;
                    false
                }
                Err(PushError::Closed) => false,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::Utf8Bytes;

    fn ev(seq: u64) -> Delivered {
        Delivered {
            seq,
            frame: Utf8Bytes::from(format!("{{\"seq\":{seq}}}")),
        }
    }

    fn with_subscriber(f: &mut Fanout) -> queue::Receiver<Delivered> {
        let (tx, rx) = queue::bounded(1024);
        f.subscribers.push(Subscriber {
            id: 1,
            tx,
            too_slow: CancellationToken::new(),
        });
        rx
    }

    fn seqs(rx: &mut queue::Receiver<Delivered>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(d) = rx.try_pop() {
            out.push(d.seq);
        }
        out
    }

    #[test]
    fn out_of_order_and_duplicate_events_come_out_once_in_order() {
        let mut f = Fanout::new(16);
        let mut rx = with_subscriber(&mut f);
        let mut slow = 0;
        f.start_at(2);
        assert_eq!(f.offer(ev(2), &mut slow), Offered::Done);
        assert_eq!(f.offer(ev(4), &mut slow), Offered::Gap);
        assert_eq!(f.offer(ev(5), &mut slow), Offered::Gap);
        assert_eq!(f.offer(ev(3), &mut slow), Offered::Done);
        assert_eq!(f.offer(ev(4), &mut slow), Offered::Done);
        assert_eq!(seqs(&mut rx), [3, 4, 5]);
        assert!(!f.needs_fill());
    }

    #[test]
    fn a_fill_from_the_store_closes_the_gap() {
        let mut f = Fanout::new(16);
        let mut rx = with_subscriber(&mut f);
        let mut slow = 0;
        f.start_at(0);
        f.offer(ev(1), &mut slow);
        f.offer(ev(4), &mut slow);
        assert!(f.needs_fill());
        f.apply_fill(1, vec![ev(2), ev(3), ev(4)], true, &mut slow);
        assert_eq!(seqs(&mut rx), [1, 2, 3, 4]);
        assert!(!f.needs_fill());
        assert_eq!(slow, 0);
    }

    #[test]
    fn pruned_events_make_connections_resync_instead_of_skipping_silently() {
        let mut f = Fanout::new(16);
        let mut rx = with_subscriber(&mut f);
        let token = f.subscribers[0].too_slow.clone();
        let mut slow = 0;
        f.start_at(10);
        f.offer(ev(20), &mut slow);
        f.apply_fill(10, vec![ev(15)], false, &mut slow);
        assert!(token.is_cancelled());
        assert_eq!(seqs(&mut rx), Vec::<u64>::new());
        assert_eq!(f.delivered(), Some(15));
    }

    #[test]
    fn events_before_the_position_is_fixed_are_ignored() {
        let mut f = Fanout::new(16);
        let mut slow = 0;
        assert_eq!(f.offer(ev(7), &mut slow), Offered::Done);
        assert_eq!(f.delivered(), None);
        assert_eq!(f.start_at(7), 7);
        assert!(!f.needs_fill());
    }

    #[test]
    fn a_stream_with_a_gap_unfilled_leaves_no_snapshot() {
        let mut f = Fanout::new(16);
        let mut slow = 0;
        assert!(f.snapshot().is_none(), "no position yet");
        f.start_at(0);
        f.offer(ev(1), &mut slow);
        f.offer(ev(3), &mut slow);
        assert!(f.snapshot().is_none(), "event 2 is only in the store");
        f.apply_fill(1, vec![ev(2), ev(3)], true, &mut slow);
        let s = f.snapshot().expect("complete");
        assert_eq!(s.delivered, 3);
        assert_eq!(
            s.recent.iter().map(|d| d.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_resumed_fan_out_goes_on_from_the_snapshot() {
        let mut f = Fanout::new(16);
        let mut slow = 0;
        f.start_at(0);
        for seq in 1..=4 {
            f.offer(ev(seq), &mut slow);
        }
        let mut f = Fanout::resumed(2, f.snapshot().expect("complete"));
        assert_eq!(f.start_at(0), 4, "the position is kept");
        assert_eq!(f.recent().iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 4]);
        let mut rx = with_subscriber(&mut f);
        f.offer(ev(5), &mut slow);
        assert_eq!(seqs(&mut rx), [5]);
    }

    #[test]
    fn held_events_are_bounded() {
        let mut f = Fanout::new(0);
        let mut slow = 0;
        f.start_at(0);
        for seq in 2..(MAX_PENDING as u64 + 10) {
            f.offer(ev(seq), &mut slow);
        }
        assert_eq!(f.pending.len(), MAX_PENDING);
        assert!(f.behind);
    }
}
