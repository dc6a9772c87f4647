//! Group commit of stream events. Every append goes through one writer — on SQLite a thread
//! of its own holding the writer connection while appends keep coming, on PostgreSQL a task —
//! that takes whatever appends are waiting (up to a batch) and stores them in a single transaction, so
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
//! by the committer right after the commit (inside the runtime the store was opened on), in
//! the order that user's appends were queued, before any later batch is stored. So a caller that queues a user's events in order
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
use crate::db::{Db, on_sqlite_handle};
use crate::events::{Batch, NewEvent, StoredEvent, Written, append_batch};
use crate::{StoreError, UserKey};

/// Appends stored together at most; bounds one transaction's size and latency. Under 1,000
/// users asking at once, 256 against 1,024 kept the committer's turns short enough that the
/// events' p99 fell from ~60 to ~35 ms with no loss of throughput (`docs/benchmarks.md`).
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<StoredEvent, StoreError>>;

/// Called with the stored event right after its batch committed, by the committer (on SQLite
/// its own thread): it must not block.
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
    /// Tell the caller whether the member was new (an append without an event).
    Member(oneshot::Sender<Result<bool, StoreError>>),
}

/// One item of a user's lane: what to store, and what to do once it is stored.
struct Append {
    user: UserKey,
    what: What,
    done: Done,
}

/// What an append stores.
enum What {
    /// An event, with a row of its run stored in the same transaction.
    Event(NewEvent, Option<RunRecord>),
    /// A run's row alone.
    Record(RunRecord),
    /// A turn: a user message and the run it starts.
    Turn(Box<NewTurn>),
    /// The user as a member of its org, first seen at this time (ms).
    Member(i64),
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
    /// Starts the writer: on SQLite a thread of its own ([`sqlite_thread`]), on PostgreSQL a
    /// task. It holds only the pools, so it ends when every store handle (and with it every
    /// sender) is gone.
    pub(crate) fn start(db: Db) -> Result<Committer, StoreError> {
        // Unbounded here: the bound is per user, where appends are made (see the module docs).
        let (tx, rx) = mpsc::unbounded_channel();
        match db {
            Db::Sqlite { write, .. } => {
                let hooks = tokio::runtime::Handle::current();
                std::thread::Builder::new()
                    .name("sqlite-committer".into())
                    .spawn(move || sqlite_thread(write, rx, hooks))
                    .map_err(|e| {
                        StoreError::Config(format!("cannot start the event writer's thread: {e}"))
                    })?;
            }
            db @ Db::Postgres(_) => {
                tokio::spawn(run(db, rx));
            }
        }
        Ok(Committer { tx })
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
            what: What::Event(event, record),
            done: Done::Hook(hook, reply),
        })?;
        Ok(QueuedEvent(answer))
    }

    pub(crate) async fn append(&self, event: NewEvent) -> Result<StoredEvent, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Append {
            user: event.user.clone(),
            what: What::Event(event, None),
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
            what: What::Record(record),
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
            what: What::Turn(Box::new(turn)),
            done: Done::Turn(reply),
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Records `user` as a member of its org (first seen at `now_ms`) in the next batch, in
    /// the user's lane, and waits for that batch's commit; `true` when the user was new. Many
    /// users connecting at once so share transactions instead of each taking the writer for
    /// a commit of its own.
    pub(crate) async fn member(&self, user: UserKey, now_ms: i64) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Append {
            user,
            what: What::Member(now_ms),
            done: Done::Member(reply),
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn send(&self, append: Append) -> Result<(), StoreError> {
        self.tx.send(append).map_err(|_| StoreError::Closed)
    }
}

/// Waits (in `rx`) until an append is waiting in `lanes`, then takes in everything that
/// arrived meanwhile; `false` once every handle is gone and nothing is left to store.
async fn gather(
    lanes: &mut Lanes<UserKey, Append>,
    rx: &mut mpsc::UnboundedReceiver<Append>,
) -> bool {
    if lanes.is_empty() {
        match rx.recv().await {
            Some(append) => lanes.push(append.user.clone(), append),
            None => return false,
        }
    }
    // Everything that arrived while the last batch was being stored takes its turn now.
    while let Ok(append) = rx.try_recv() {
        lanes.push(append.user.clone(), append);
    }
    true
}

/// The committer on PostgreSQL: a task storing one batch after another.
async fn run(db: Db, mut rx: mpsc::UnboundedReceiver<Append>) {
    let mut lanes: Lanes<UserKey, Append> = Lanes::default();
    while gather(&mut lanes, &mut rx).await {
        let (batch, done) = split(lanes.take(MAX_BATCH));
        answer(append_batch(&db, batch).await, done);
    }
}

/// SQLite's `cache_size` while the committer holds the writer connection (negative: KiB).
const EVENT_BATCH_CACHE_SIZE: &str = "-2000";

/// How long the SQLite committer keeps the writer connection while appends keep coming, before
/// it lets a waiting writer (an ingest, a run's usage) have a turn.
const SQLITE_HOLD: std::time::Duration = std::time::Duration::from_millis(50);

/// The committer on SQLite: a thread of its own that takes the writer connection, and its
/// handle, once for as long as appends keep coming (up to [`SQLITE_HOLD`]) and stores batch
/// after batch through the handle, blocking only itself — on SQLite's write lock when another
/// process holds it, on the disk at each commit. Taking the connection, locking its handle and
/// beginning through sqlx once per batch were each a hand-off to the connection's worker
/// thread, and together more than a third of the committer's time under load; on a runtime
/// thread each batch was also a `block_in_place`. The batches' hooks run inside `hooks` (the
/// runtime the store was opened on), so whatever they spawn runs there.
fn sqlite_thread(
    write: sqlx::SqlitePool,
    mut rx: mpsc::UnboundedReceiver<Append>,
    hooks: tokio::runtime::Handle,
) {
    // Its own runtime drives the pool's futures (taking and giving back the connection).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "could not start the event writer's runtime; storing events in a task instead");
            let db = Db::Sqlite {
                write: write.clone(),
                read: write,
            };
            hooks.spawn(run(db, rx));
            return;
        }
    };
    runtime.block_on(async move {
        let mut lanes: Lanes<UserKey, Append> = Lanes::default();
        while gather(&mut lanes, &mut rx).await {
            let mut pooled = match write.acquire().await {
                Ok(pooled) => pooled,
                Err(e) => {
                    let (_, done) = split(lanes.take(MAX_BATCH));
                    answer(Err(e.into()), done);
                    continue;
                }
            };
            let broken = hold(&mut pooled, &mut lanes, &mut rx, &hooks).await;
            if broken {
                pooled.close_on_drop();
            }
        }
    });
}

/// Stores batches through `pooled`'s own handle ([`on_sqlite_handle`]: inline on this thread's
/// runtime) until no append is waiting or [`SQLITE_HOLD`] has passed; `true` when the
/// connection must not be used again (a failed batch could not be rolled back).
async fn hold(
    pooled: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    lanes: &mut Lanes<UserKey, Append>,
    rx: &mut mpsc::UnboundedReceiver<Append>,
    hooks: &tokio::runtime::Handle,
) -> bool {
    let held = std::time::Instant::now();
    let stored = on_sqlite_handle(pooled, |conn| {
        Ok::<_, StoreError>(store_batches(conn, lanes, rx, hooks, held))
    })
    .await;
    stored.unwrap_or_else(|e| {
        let (_, done) = split(lanes.take(MAX_BATCH));
        answer(Err(e), done);
        false
    })
}

/// [`hold`]'s batches, one after another through `conn`; whether the connection is broken.
fn store_batches(
    conn: &rusqlite::Connection,
    lanes: &mut Lanes<UserKey, Append>,
    rx: &mut mpsc::UnboundedReceiver<Append>,
    hooks: &tokio::runtime::Handle,
    held: std::time::Instant,
) -> bool {
    // A small page cache while the committer holds the connection: every commit scans the
    // cache's hash table (SQLite's `pcache1TruncateUnsafe`), and with the writer's 64 MiB for
    // ingest that scan was ~5% of the server's CPU under many users. A batch touches the right
    // edges of a few b-trees; the writer's own size is set back before the connection goes.
    let sized = conn.execute_batch(&format!("PRAGMA cache_size = {EVENT_BATCH_CACHE_SIZE}"));
    let mut broken = false;
    loop {
        let (batch, done) = split(lanes.take(MAX_BATCH));
        let written = crate::events::sqlite_write_batch(conn, batch).map_err(|failed| {
            broken = !failed.rolled_back;
            failed.error
        });
        {
            let _hooks = hooks.enter();
            answer(written, done);
        }
        if broken || held.elapsed() >= SQLITE_HOLD {
            break;
        }
        // Appends that came while the batch was stored; none waiting: the connection goes back.
        while let Ok(append) = rx.try_recv() {
            lanes.push(append.user.clone(), append);
        }
        if lanes.is_empty() {
            break;
        }
    }
    if sized.is_ok()
        && let Err(e) =
            conn.execute_batch(&format!("PRAGMA cache_size = {}", crate::WRITER_CACHE_SIZE))
    {
        tracing::warn!(error = %e, "could not set the writer's page cache back; closing the connection");
        broken = true;
    }
    broken
}

/// A batch's appends as the transaction's contents and what is done for each once it is
/// stored (in batch order, which is each user's queue order).
fn split(batch: Vec<Append>) -> (Batch, Vec<Done>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut records = Vec::new();
    let mut turns = Vec::new();
    let mut members = Vec::new();
    let mut done = Vec::with_capacity(batch.len());
    for Append {
        user,
        what,
        done: d,
    } in batch
    {
        match what {
            What::Event(event, record) => {
                events.push(event);
                records.extend(record.map(|r| (user, r)));
            }
            What::Record(record) => records.push((user, record)),
            What::Turn(turn) => turns.push((user, *turn)),
            What::Member(at) => members.push((user, at)),
        }
        done.push(d);
    }
    (
        Batch {
            events,
            records,
            turns,
            members,
        },
        done,
    )
}

/// Answers each append of a batch with what became of it: hooks first, in batch order.
fn answer(written: Result<Written, StoreError>, done: Vec<Done>) {
    match written {
        Ok(written) => {
            // Every event append has its stored event, every turn its outcome and every
            // member its answer, each in batch order.
            let mut stored = written.events.into_iter();
            let mut turned = written.turns.into_iter();
            let mut members = written.members.into_iter();
            for done in done {
                match done {
                    Done::Recorded(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Done::Turn(reply) => {
                        let _ = reply.send(turned.next().unwrap_or_else(|| Err(missing())));
                    }
                    Done::Member(reply) => {
                        let _ = reply.send(members.next().ok_or_else(missing));
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
                    Done::Member(reply) => {
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
