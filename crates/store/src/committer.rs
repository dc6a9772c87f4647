//! Group commit of stream events. Every append goes through one background task that takes
//! whatever appends are waiting (up to a batch) and stores them in a single transaction, so
//! under load the cost of a transaction, and of each round trip to the database, is shared by
//! many events — of many users — instead of paid by each. An append is answered only once its
//! event is durable in the database (persist, then send). Works alike on both backends; on
//! PostgreSQL each node has its own committer, and `append_batch` keeps seqs contiguous across
//! them.
//!
//! A run's own rows ([`RunRecord`]: its answer, its end) and, on SQLite, its turn (the user's
//! message and the run's row, [`Committer::turn`]) go through the same lanes: queued
//! with an event (stored in the event's transaction) or alone ([`Committer::record`]), they
//! are written in the batch that holds them, after the events their user queued before them,
//! so a run pays no commit of its own for them and what a restart finds keeps their order (a
//! run recorded as ended has all its events stored; an answer's `message_created` is never
//! stored without the message).
//!
//! An append may carry a hook ([`Store::queue_event`](crate::Store::queue_event)): it is called
//! on the committer's task right after the commit, in the order that user's appends were
//! queued, before any later batch is stored. So a caller that queues a user's events in order
//! sees them stored in order without waiting for each one: the hook hands each to its
//! connections, in `seq` order, the moment it is durable.
//!
//! Fair: waiting appends are kept in one lane per user and a batch is filled round-robin, one
//! append of each waiting user per turn, starting where the last batch stopped. So a user with
//! one event waiting is in the next commit however many events another user has queued (up to
//! [`MAX_BATCH`] users waiting at once; beyond that, within the next few). What one user can
//! make the committer hold is bounded by its caller: the hub lets each user have a fixed
//! number of events queued and not yet stored, and every other append waits for its answer.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use tokio::sync::{mpsc, oneshot};

use crate::conversations::{NewTurn, RunRecord, TurnOutcome};
use crate::db::Db;
use crate::events::{Batch, NewEvent, StoredEvent, append_batch};
use crate::{StoreError, UserKey};

/// Appends stored together at most; bounds one transaction's size and latency.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<StoredEvent, StoreError>>;

/// Called with the stored event right after its batch committed, on the committer's task: it
/// must not block.
pub(crate) type StoredHook = Box<dyn FnOnce(StoredEvent) + Send>;

/// What is done once an append's batch committed (or failed).
enum Done {
    /// Answer the caller with the stored event.
    Reply(Reply),
    /// Hand the stored event to the hook, then tell the caller its seq.
    Hook(StoredHook, oneshot::Sender<Result<u64, StoreError>>),
    /// Tell the caller its record is stored (an append without an event).
    Recorded(oneshot::Sender<Result<(), StoreError>>),
    /// Tell the caller what became of its turn (an append without an event).
    Turn(oneshot::Sender<Result<TurnOutcome, StoreError>>),
}

/// One item of a user's lane: an event, a run's row, an event with its row (stored in the
/// same transaction), or a turn (a user message and the run it starts).
struct Append {
    user: UserKey,
    event: Option<NewEvent>,
    record: Option<RunRecord>,
    turn: Option<Box<NewTurn>>,
    done: Done,
}

/// An append the committer has taken: resolves once its event is stored (or its batch failed).
#[must_use = "an append is only known to be stored once awaited"]
pub struct QueuedEvent(oneshot::Receiver<Result<u64, StoreError>>);

impl QueuedEvent {
    /// The event's seq, once its batch committed.
    pub async fn stored(self) -> Result<u64, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }

    /// [`QueuedEvent::stored`] without waiting: `None` while its batch is not done.
    pub fn try_stored(&mut self) -> Option<Result<u64, StoreError>> {
        match self.0.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(StoreError::Closed)),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::UnboundedSender<Append>,
}

impl Committer {
    /// Starts the writer task. It holds only the pools, so it ends when every store handle
    /// (and with it every sender) is gone.
    pub(crate) fn start(db: Db) -> Committer {
        // Unbounded here: the bound is per user, where appends are made (see the module docs).
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, rx));
        Committer { tx }
    }

    /// Queues an append without waiting; a user's appends are stored, and their hooks called,
    /// in the order they were queued.
    pub(crate) async fn queue(
        &self,
        event: NewEvent,
        hook: StoredHook,
    ) -> Result<QueuedEvent, StoreError> {
        self.queue_with(event, None, hook).await
    }

    /// [`Committer::queue`] with a run's row stored in the event's transaction.
    pub(crate) async fn queue_with(
        &self,
        event: NewEvent,
        record: Option<RunRecord>,
        hook: StoredHook,
    ) -> Result<QueuedEvent, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Append {
            user: event.user.clone(),
            event: Some(event),
            record,
            turn: None,
            done: Done::Hook(hook, reply),
        })?;
        Ok(QueuedEvent(answer))
    }

    pub(crate) async fn append(&self, event: NewEvent) -> Result<StoredEvent, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Append {
            user: event.user.clone(),
            event: Some(event),
            record: None,
            turn: None,
            done: Done::Reply(reply),
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores `record` in `user`'s lane (after the user's appends queued before it) and waits
    /// for its batch to commit.
    pub(crate) async fn record(&self, user: UserKey, record: RunRecord) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Append {
            user,
            event: None,
            record: Some(record),
            turn: None,
            done: Done::Recorded(reply),
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores `turn` in `user`'s lane and waits for its batch to commit: its duplicate check
    /// and thread check are made in that transaction, and a turn that fails fails alone.
    pub(crate) async fn turn(
        &self,
        user: UserKey,
        turn: NewTurn,
    ) -> Result<TurnOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Append {
            user,
            event: None,
            record: None,
            turn: Some(Box::new(turn)),
            done: Done::Turn(reply),
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn send(&self, append: Append) -> Result<(), StoreError> {
        self.tx.send(append).map_err(|_| StoreError::Closed)
    }
}

async fn run(db: Db, mut rx: mpsc::UnboundedReceiver<Append>) {
    let mut lanes: Lanes<UserKey, Append> = Lanes::default();
    loop {
        if lanes.is_empty() {
            match rx.recv().await {
                Some(append) => lanes.push(append.user.clone(), append),
                // Every handle is gone and nothing is left to store.
                None => break,
            }
        }
        // Everything that arrived while the last batch was being stored takes its turn now.
        while let Ok(append) = rx.try_recv() {
            lanes.push(append.user.clone(), append);
        }
        store(&db, lanes.take(MAX_BATCH)).await;
    }
}

/// Stores one batch in one transaction, then answers each append (hooks first, in batch order,
/// which is each user's queue order).
async fn store(db: &Db, batch: Vec<Append>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut records = Vec::new();
    let mut turns = Vec::new();
    let mut done = Vec::with_capacity(batch.len());
    for append in batch {
        if let Some(record) = append.record {
            records.push((append.user.clone(), record));
        }
        if let Some(turn) = append.turn {
            turns.push((append.user, *turn));
        }
        events.extend(append.event);
        done.push(append.done);
    }
    let batch = Batch {
        events,
        records,
        turns,
    };
    match append_batch(db, batch).await {
        Ok(written) => {
            // Every append but a record or a turn alone has an event, in batch order; every
            // turn has its outcome, in batch order.
            let mut stored = written.events.into_iter();
            let mut turned = written.turns.into_iter();
            for done in done {
                match done {
                    Done::Recorded(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Done::Turn(reply) => {
                        let _ = reply.send(turned.next().unwrap_or_else(|| Err(missing())));
                    }
                    Done::Reply(reply) => {
                        let _ = reply.send(stored.next().ok_or_else(missing));
                    }
                    Done::Hook(hook, reply) => match stored.next() {
                        Some(event) => {
                            let seq = event.seq;
                            hook(event);
                            let _ = reply.send(Ok(seq));
                        }
                        None => {
                            let _ = reply.send(Err(missing()));
                        }
                    },
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = done.len(), "could not store a batch of events");
            let message = e.to_string();
            for done in done {
                let error = StoreError::Batch(message.clone());
                match done {
                    Done::Reply(reply) => {
                        let _ = reply.send(Err(error));
                    }
                    Done::Hook(_, reply) => {
                        let _ = reply.send(Err(error));
                    }
                    Done::Recorded(reply) => {
                        let _ = reply.send(Err(error));
                    }
                    Done::Turn(reply) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
        }
    }
}

/// An append with an event the batch did not answer with one (a bug, never a client's doing).
fn missing() -> StoreError {
    StoreError::Corrupt("a batch answered fewer appends than it was given".into())
}

/// Waiting items in one FIFO lane per key, taken round-robin across keys.
struct Lanes<K, T> {
    by_key: HashMap<K, VecDeque<T>>,
    /// The keys with items waiting, in the order their next turn comes.
    turns: VecDeque<K>,
}

impl<K, T> Default for Lanes<K, T> {
    fn default() -> Self {
        Lanes {
            by_key: HashMap::new(),
            turns: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, T> Lanes<K, T> {
    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Queues `item` last in `key`'s lane; a key that had nothing waiting takes its turn after
    /// every key already waiting.
    fn push(&mut self, key: K, item: T) {
        match self.by_key.get_mut(&key) {
            Some(lane) => lane.push_back(item),
            None => {
                self.turns.push_back(key.clone());
                self.by_key.insert(key, VecDeque::from([item]));
            }
        }
    }

    /// Up to `max` items, one per key per turn, each key's in its order; the keys not reached
    /// come first next time.
    fn take(&mut self, max: usize) -> Vec<T> {
        let mut batch = Vec::with_capacity(max.min(64));
        while batch.len() < max {
            let Some(key) = self.turns.pop_front() else {
                break;
            };
            let Some(lane) = self.by_key.get_mut(&key) else {
                continue;
            };
            if let Some(item) = lane.pop_front() {
                batch.push(item);
            }
            if lane.is_empty() {
                self.by_key.remove(&key);
            } else {
                self.turns.push_back(key);
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::Lanes;

    fn lanes(waiting: &[(&'static str, u32)]) -> Lanes<&'static str, (&'static str, u32)> {
        let mut lanes = Lanes::default();
        for &(key, n) in waiting {
            for i in 0..n {
                lanes.push(key, (key, i));
            }
        }
        lanes
    }

    #[test]
    fn one_waiting_item_is_in_the_next_batch_whatever_another_key_has_queued() {
        let mut l = lanes(&[("busy", 10_000), ("quiet", 1)]);
        let batch = l.take(4);
        assert_eq!(batch, [("busy", 0), ("quiet", 0), ("busy", 1), ("busy", 2)]);
    }

    #[test]
    fn each_keys_items_keep_their_order_across_batches() {
        let mut l = lanes(&[("a", 5), ("b", 3), ("c", 1)]);
        let mut all = Vec::new();
        while !l.is_empty() {
            all.extend(l.take(2));
        }
        for key in ["a", "b", "c"] {
            let seen: Vec<u32> = all
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, i)| *i)
                .collect();
            let n = seen.len() as u32;
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{key}");
        }
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn keys_not_reached_in_one_batch_come_first_in_the_next() {
        let mut l = lanes(&[("a", 2), ("b", 2), ("c", 2), ("d", 2)]);
        assert_eq!(l.take(3), [("a", 0), ("b", 0), ("c", 0)]);
        // A key arriving now waits behind every key already waiting.
        l.push("e", ("e", 0));
        assert_eq!(l.take(3), [("d", 0), ("a", 1), ("b", 1)]);
        assert_eq!(l.take(10), [("c", 1), ("e", 0), ("d", 1)]);
        assert!(l.is_empty());
    }
}
