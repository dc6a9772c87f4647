//! Per-user event streams: `seq` assignment, persistence, replay and per-run reads.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sqlx::QueryBuilder;

use crate::budgets::{AlertClaim, CLAIM_ALERT};
use crate::committer::QueuedEvent;
use crate::conversations::{
    INSERT_ASSISTANT_MESSAGE, NewTurn, RECORD_RUN_END, RunRecord, TurnOutcome, create_turn_alone,
    sqlite_create_turn, sqlite_write_records,
};
use crate::db::{Cols, Db, is_retryable, on_read, on_sqlite_handle, on_write, sqlite_error};
use crate::webhooks::QUEUE_DELIVERIES;
use crate::{Store, StoreError, UserKey};

/// An event as stored: its `seq` and the exact JSON frame sent on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub payload: String,
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative seq {v}")))
}

/// An event to append: whose, filed under which run and thread, and how to render it once
/// its `seq` is known.
pub struct NewEvent {
    pub user: UserKey,
    pub run_id: Option<String>,
    pub thread_id: String,
    pub ts_ms: i64,
    pub render: Box<dyn FnOnce(u64) -> String + Send>,
}

/// Users whose heads one [`Store::head_seqs`] statement reads (2 binds each).
const HEADS_PER_READ: usize = 500;

/// Events appended per statement: 7 binds each stays far below SQLite's variable limit
/// (32766) and PostgreSQL's (65535).
const EVENTS_PER_INSERT: usize = 512;
/// Stream heads moved per statement (3 binds each).
const HEADS_PER_UPSERT: usize = 1_000;
/// Attempts at locking a batch's heads when PostgreSQL reports a deadlock or serialization
/// failure (another node's transaction may have held them).
const LOCK_ATTEMPTS: u32 = 5;

impl Store {
    /// Assigns the user's next `seq`, renders the event with it and stores it: either the event
    /// is stored with the next seq or the head does not move. Concurrent appends (of different
    /// users) share one transaction: see the `committer` module.
    pub async fn append_event(
        &self,
        user: &UserKey,
        run_id: Option<&str>,
        thread_id: &str,
        ts_ms: i64,
        render: impl FnOnce(u64) -> String + Send + 'static,
    ) -> Result<StoredEvent, StoreError> {
        let event = NewEvent {
            user: user.clone(),
            run_id: run_id.map(str::to_string),
            thread_id: thread_id.to_string(),
            ts_ms,
            render: Box::new(render),
        };
        self.committer.append(event).await
    }

    /// Queues an event with the committer without waiting for it to be stored: a user's events
    /// queued one after another are stored in that order, with the user's next seqs. Nothing
    /// bounds here how many a user queues: the caller must (the hub's per-user bound of events
    /// in flight). `on_stored` runs right after the event's batch committed (by the committer, in
    /// the user's queue order, so it must not block); the returned [`QueuedEvent`]
    /// resolves then too, or with the batch's error (the event is then not stored and the head
    /// did not move for it).
    pub async fn queue_event(
        &self,
        event: NewEvent,
        on_stored: impl FnOnce(StoredEvent) + Send + 'static,
    ) -> Result<QueuedEvent, StoreError> {
        self.committer.queue(event, Box::new(on_stored)).await
    }

    /// [`Store::queue_event`] with a row of the event's run stored in the same transaction (a
    /// run's answer with its `message_created`): the event is never sent without its row.
    pub async fn queue_event_with_record(
        &self,
        event: NewEvent,
        record: RunRecord,
        on_stored: impl FnOnce(StoredEvent) + Send + 'static,
    ) -> Result<QueuedEvent, StoreError> {
        self.committer
            .queue_with(event, Some(record), Box::new(on_stored))
            .await
    }

    /// Stores a row of one of `user`'s runs in the committer's next batch (after every event of
    /// the user queued before it) and waits for that batch's commit: a run's end costs no
    /// transaction of its own.
    pub async fn record_run(&self, user: &UserKey, record: RunRecord) -> Result<(), StoreError> {
        self.committer.record(user.clone(), record).await
    }

    /// Appends many events (of any users) in one transaction, in order; see `append_batch`.
    pub async fn append_events(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let batch = Batch {
            events,
            ..Batch::default()
        };
        Ok(append_batch(&self.db, batch).await?.events)
    }

    /// The newest `seq` of the user's stream (0 when empty).
    pub async fn head_seq(&self, user: &UserKey) -> Result<u64, StoreError> {
        let head: Option<i64> = on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT head_seq FROM user_streams WHERE org_id = $1 AND user_id = $2",
            )
            .bind(&user.org_id)
            .bind(&user.user_id)
            .fetch_optional(pool)
            .await?
        });
        head.map_or(Ok(0), to_u64)
    }

    /// The newest `seq` of each of `users` that has a stream, in one read per
    /// `HEADS_PER_READ` users (users without a stream yet are left out). Lets a node check
    /// all its streams without one query each.
    pub async fn head_seqs(&self, users: &[UserKey]) -> Result<Vec<(UserKey, u64)>, StoreError> {
        let mut heads = Vec::with_capacity(users.len());
        for chunk in users.chunks(HEADS_PER_READ) {
            let rows: Vec<(String, String, i64)> = on_read!(&self.db, pool => {
                let mut q = QueryBuilder::new(
                    "SELECT org_id, user_id, head_seq FROM user_streams WHERE (org_id, user_id) IN (",
                );
                let mut keys = q.separated(", ");
                for u in chunk {
                    keys.push("(");
                    keys.push_bind_unseparated(&u.org_id);
                    keys.push_unseparated(", ");
                    keys.push_bind_unseparated(&u.user_id);
                    keys.push_unseparated(")");
                }
                q.push(")");
                q.build_query_as().fetch_all(pool).await?
            });
            for (org_id, user_id, head) in rows {
                heads.push((UserKey { org_id, user_id }, to_u64(head)?));
            }
        }
        Ok(heads)
    }

    /// Events with `after < seq <= upto`, in order.
    pub async fn events_between(
        &self,
        user: &UserKey,
        after: u64,
        upto: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_read!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT seq, payload FROM events
                 WHERE org_id = $1 AND user_id = $2 AND seq > $3 AND seq <= $4 ORDER BY seq",
            )
            .bind(&user.org_id)
            .bind(&user.user_id)
            .bind(after as i64)
            .bind(upto as i64)
            .fetch_all(pool)
            .await?;
            rows.iter().map(stored_event).collect()
        })
    }

    /// The oldest `seq` still stored for the user (None when the stream is empty).
    pub async fn oldest_seq(&self, user: &UserKey) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE org_id = $1 AND user_id = $2")
                .bind(&user.org_id)
                .bind(&user.user_id)
                .fetch_one(pool)
                .await?
        });
        v.map(to_u64).transpose()
    }

    /// A run's events in `seq` order, only if the run belongs to `user`.
    pub async fn run_events(
        &self,
        user: &UserKey,
        run_id: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_read!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT seq, payload FROM events
                 WHERE run_id = $1 AND org_id = $2 AND user_id = $3 ORDER BY seq",
            )
            .bind(run_id)
            .bind(&user.org_id)
            .bind(&user.user_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(stored_event).collect()
        })
    }
}

impl Store {
    /// Deletes the user's events with `seq <= upto` (retention). The head is kept, so seqs
    /// continue; a resume from before the oldest kept event gets `resync_required`.
    pub async fn prune_events(&self, user: &UserKey, upto: u64) -> Result<u64, StoreError> {
        let done = on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM events WHERE org_id = $1 AND user_id = $2 AND seq <= $3")
                .bind(&user.org_id)
                .bind(&user.user_id)
                .bind(upto as i64)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }
}

fn stored_event(r: &impl Cols) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: to_u64(r.int("seq")?)?,
        payload: r.text("payload")?,
    })
}

/// What one transaction of the committer writes: events (of any users, in order), runs' rows,
/// and turns (SQLite only; see [`Store::create_turn`]).
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) events: Vec<NewEvent>,
    pub(crate) records: Vec<(UserKey, RunRecord)>,
    pub(crate) turns: Vec<(UserKey, NewTurn)>,
    /// Users to record as members of their orgs, each with the time first seen (ms).
    pub(crate) members: Vec<(UserKey, i64)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.records.is_empty()
            && self.turns.is_empty()
            && self.members.is_empty()
    }
}

/// What a [`Batch`] became: its events stored, in order, each turn's outcome, in order (a
/// turn that failed failed alone: nothing of it is stored), and whether each member was new.
#[derive(Default)]
pub(crate) struct Written {
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) turns: Vec<Result<TurnOutcome, StoreError>>,
    pub(crate) members: Vec<bool>,
}

/// Appends many events (of any users) in one transaction, in order: a group commit. Each
/// user's events get that user's next seqs; all are stored, or none and no head moves. The
/// runs' `records` are written in the same transaction, and so are the turns and the org
/// members on SQLite (each turn in a savepoint of its own); on PostgreSQL each turn is a
/// transaction of its own, before the batch's, so a unique violation between nodes fails only
/// that turn, and each member a statement of its own.
///
/// Every head the batch needs is moved by its event count in one upsert, which row-locks the
/// heads until commit: a writer on another node (PostgreSQL, READ COMMITTED) waits for them
/// and then adds to the committed head, so seqs stay contiguous whichever node writes. Heads
/// are locked in (org, user) order so two batches cannot deadlock on each other; should
/// PostgreSQL still report a deadlock or serialization failure, locking is retried — it is
/// the only step that takes locks, and nothing was rendered yet.
pub(crate) async fn append_batch(db: &Db, batch: Batch) -> Result<Written, StoreError> {
    if batch.is_empty() {
        return Ok(Written::default());
    }
    match db {
        Db::Sqlite { write, .. } => sqlite_append(write, batch).await,
        Db::Postgres(_) => {
            let Batch {
                events,
                records,
                turns,
                members,
            } = batch;
            let mut turned = Vec::with_capacity(turns.len());
            for (user, turn) in &turns {
                turned.push(create_turn_alone(db, user, turn).await);
            }
            let mut new_members = Vec::with_capacity(members.len());
            for (user, at) in &members {
                new_members.push(crate::budgets::insert_member(db, user, *at).await?);
            }
            let events = if events.is_empty() && records.is_empty() {
                Vec::new()
            } else {
                append_claimed(db, None, events, records)
                    .await?
                    .unwrap_or_default()
            };
            Ok(Written {
                events,
                turns: turned,
                members: new_members,
            })
        }
    }
}

/// Moves a stream head by its event count and returns the new head (SQLite's one-row form of
/// the upsert in [`append_claimed`]).
const SQLITE_MOVE_HEAD: &str = "INSERT INTO user_streams (org_id, user_id, head_seq)
     VALUES (?1, ?2, ?3)
     ON CONFLICT (org_id, user_id) DO UPDATE SET head_seq = user_streams.head_seq + excluded.head_seq
     RETURNING head_seq";
const SQLITE_INSERT_EVENT: &str = "INSERT INTO events
     (org_id, user_id, seq, run_id, thread_id, ts_ms, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// [`append_batch`] on SQLite, for a batch stored outside the committer's thread (which uses
/// [`sqlite_write_batch`]): the transaction begins `IMMEDIATE` through sqlx, so any wait for
/// SQLite's write lock (another connection or process holding it) is spent on sqlx's worker
/// thread, never on a runtime thread; then the rest runs through the writer connection's own
/// handle — the turns, two statements prepared once per batch and stepped per head and per
/// event, the runs' rows, and the `COMMIT` — in one hand-off whatever the batch's size. Through
/// sqlx each statement, the commit among them, was a round trip to the connection's worker
/// thread with every bound value copied there. The writer connection is the only one of this
/// node that writes, so nothing else can take seqs meanwhile.
async fn sqlite_append(write: &sqlx::SqlitePool, batch: Batch) -> Result<Written, StoreError> {
    let mut pooled = write.acquire().await?;
    sqlx::Executor::execute(&mut *pooled, "BEGIN IMMEDIATE").await?;
    let written = on_sqlite_handle(&mut pooled, |conn| {
        Ok::<_, StoreError>(sqlite_commit_batch(conn, batch))
    })
    .await;
    // A connection whose transaction is in an unknown state never goes back to the pool.
    match written {
        Ok(Ok(written)) => Ok(written),
        Ok(Err(failed)) => {
            if !failed.rolled_back {
                pooled.close_on_drop();
            }
            Err(failed.error)
        }
        Err(e) => {
            pooled.close_on_drop();
            Err(e)
        }
    }
}

/// A batch's writes on SQLite, in the transaction begun on `conn`, and its `COMMIT`: the turns
/// (each in a savepoint of its own), the org members, the events, the runs' rows.
fn sqlite_batch_in_transaction(
    conn: &rusqlite::Connection,
    batch: Batch,
) -> Result<Written, StoreError> {
    let sqlite = |e: rusqlite::Error| StoreError::Db(sqlite_error(e));
    let Batch {
        events,
        records,
        turns,
        members,
    } = batch;
    // Turns first: a run's events and rows are only ever queued after its turn's answer, so
    // none of them can be in the batch that holds the turn.
    let mut turned = Vec::with_capacity(turns.len());
    for (user, turn) in &turns {
        turned.push(
            sqlite_create_turn(conn, user, turn)
                .map_err(sqlite)?
                .map_err(sqlite),
        );
    }
    let members = crate::budgets::sqlite_insert_members(conn, &members).map_err(sqlite)?;
    let events = sqlite_append_in_transaction(conn, events)?;
    sqlite_write_records(conn, &records).map_err(sqlite)?;
    conn.execute_batch("COMMIT").map_err(sqlite)?;
    Ok(Written {
        events,
        turns: turned,
        members,
    })
}

/// A batch that could not be stored: why, and whether its transaction was rolled back (when
/// not, the connection's state is unknown and it must not be used again).
pub(crate) struct FailedBatch {
    pub(crate) error: StoreError,
    pub(crate) rolled_back: bool,
}

/// Stores one batch in one transaction through the SQLite writer connection's own handle,
/// `BEGIN IMMEDIATE` to `COMMIT` (the committer's thread: a wait for the write lock, up to the
/// connection's busy timeout, blocks only that thread). Nothing of a failed batch is kept and
/// no head moves.
pub(crate) fn sqlite_write_batch(
    conn: &rusqlite::Connection,
    batch: Batch,
) -> Result<Written, FailedBatch> {
    let failed = |error, rolled_back| FailedBatch { error, rolled_back };
    if batch.is_empty() {
        return Ok(Written::default());
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return Err(failed(StoreError::Db(sqlite_error(e)), true));
    }
    sqlite_commit_batch(conn, batch)
}

/// [`sqlite_batch_in_transaction`] in the transaction begun on `conn`, rolled back when it
/// fails (a transaction that cannot be rolled back leaves the connection unusable).
fn sqlite_commit_batch(conn: &rusqlite::Connection, batch: Batch) -> Result<Written, FailedBatch> {
    sqlite_batch_in_transaction(conn, batch).map_err(|error| {
        let rolled_back = conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok();
        if !rolled_back {
            tracing::error!(error = %error, "could not roll back a failed event batch; closing the connection");
        }
        FailedBatch { error, rolled_back }
    })
}

fn sqlite_append_in_transaction(
    conn: &rusqlite::Connection,
    events: Vec<NewEvent>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sqlite = |e: rusqlite::Error| StoreError::Db(sqlite_error(e));
    // Each user's event count, then the next seq of each (the head before this batch, + 1).
    let mut next: HashMap<&UserKey, i64> = HashMap::new();
    for e in &events {
        *next.entry(&e.user).or_default() += 1;
    }
    let mut move_head = conn.prepare(SQLITE_MOVE_HEAD).map_err(sqlite)?;
    for (user, n) in next.iter_mut() {
        let head: i64 = move_head
            .query_row(rusqlite::params![user.org_id, user.user_id, *n], |r| {
                r.get(0)
            })
            .map_err(sqlite)?;
        *n = head - *n + 1;
    }
    let mut insert = conn.prepare(SQLITE_INSERT_EVENT).map_err(sqlite)?;
    let mut seqs = Vec::with_capacity(events.len());
    for e in &events {
        let slot = next
            .get_mut(&e.user)
            .ok_or_else(|| StoreError::Corrupt("a stream head was not moved".into()))?;
        seqs.push(*slot);
        *slot += 1;
    }
    drop(next);
    let mut stored = Vec::with_capacity(events.len());
    for (e, seq) in events.into_iter().zip(seqs) {
        let payload = (e.render)(to_u64(seq)?);
        insert
            .execute(rusqlite::params![
                e.user.org_id,
                e.user.user_id,
                seq,
                e.run_id,
                e.thread_id,
                e.ts_ms,
                payload,
            ])
            .map_err(sqlite)?;
        stored.push(StoredEvent {
            seq: to_u64(seq)?,
            payload,
        });
    }
    Ok(stored)
}

/// [`append_batch`] that first claims `claim` in the same transaction: when its row already
/// exists (it fired before, here or on another node) nothing is stored and the answer is
/// `None`; otherwise the claim and the events commit together, so a claimed alert is never
/// without its events, nor delivered twice.
pub(crate) async fn append_claimed(
    db: &Db,
    claim: Option<&AlertClaim>,
    events: Vec<NewEvent>,
    records: Vec<(UserKey, RunRecord)>,
) -> Result<Option<Vec<StoredEvent>>, StoreError> {
    // Events per user, keyed in lock order.
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for e in &events {
        *counts
            .entry((e.user.org_id.as_str(), e.user.user_id.as_str()))
            .or_default() += 1;
    }
    let counts: Vec<((&str, &str), i64)> = counts.into_iter().collect();
    on_write!(db, pool => {
        let mut attempt = 1;
        let (mut tx, heads) = loop {
            let mut tx = pool.begin().await?;
            if let Some(c) = claim {
                // Taken before the heads: a second claimant waits here for the first to
                // commit, then inserts nothing.
                let claimed = sqlx::query(CLAIM_ALERT)
                    .bind(&c.budget_id)
                    .bind(c.revision)
                    .bind(&c.period_start)
                    .bind(&c.crossing)
                    .bind(&c.org_id)
                    .bind(c.fired_ms)
                    .bind(&c.alert)
                    .execute(&mut *tx)
                    .await;
                let claimed = match claimed {
                    Ok(done) if done.rows_affected() == 0 => return Ok(None),
                    Ok(_) if c.notify => sqlx::query(QUEUE_DELIVERIES)
                        .bind(c.alert_id())
                        .bind(&c.alert)
                        .bind(c.fired_ms)
                        .bind(&c.org_id)
                        .execute(&mut *tx)
                        .await
                        .map(|_| ()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                match claimed {
                    Ok(()) => {}
                    Err(e) if is_retryable(&e) && attempt < LOCK_ATTEMPTS => {
                        drop(tx);
                        tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                        attempt += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let mut heads: BTreeMap<(String, String), i64> = BTreeMap::new();
            let mut locked: Result<(), sqlx::Error> = Ok(());
            for chunk in counts.chunks(HEADS_PER_UPSERT) {
                let mut qb =
                    QueryBuilder::new("INSERT INTO user_streams (org_id, user_id, head_seq) ");
                qb.push_values(chunk, |mut b, ((org, user), n)| {
                    b.push_bind(*org).push_bind(*user).push_bind(*n);
                });
                qb.push(
                    " ON CONFLICT (org_id, user_id)
                     DO UPDATE SET head_seq = user_streams.head_seq + excluded.head_seq
                     RETURNING org_id, user_id, head_seq",
                );
                match qb.build().fetch_all(&mut *tx).await {
                    Ok(rows) => {
                        for r in &rows {
                            let key = (r.text("org_id")?, r.text("user_id")?);
                            heads.insert(key, r.int("head_seq")?);
                        }
                    }
                    Err(e) => {
                        locked = Err(e);
                        break;
                    }
                }
            }
            match locked {
                Ok(()) => break (tx, heads),
                Err(e) if is_retryable(&e) && attempt < LOCK_ATTEMPTS => {
                    drop(tx);
                    tracing::warn!(error = %e, attempt, "retrying an event batch");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        // The next seq of each user: the head before this batch, plus one.
        let mut next: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for ((org, user), n) in &counts {
            let head = *heads
                .get(&(org.to_string(), user.to_string()))
                .ok_or_else(|| StoreError::Corrupt("a stream head was not returned".into()))?;
            next.insert((*org, *user), head - n + 1);
        }
        // Each event's seq, in batch order (a user's events in their order).
        let mut seqs = Vec::with_capacity(events.len());
        for e in &events {
            let slot = next
                .get_mut(&(e.user.org_id.as_str(), e.user.user_id.as_str()))
                .ok_or_else(|| StoreError::Corrupt("a stream head was not returned".into()))?;
            seqs.push(to_u64(*slot)?);
            *slot += 1;
        }
        drop(next);
        let mut stored = Vec::with_capacity(events.len());
        let mut pending = events.into_iter().zip(seqs).peekable();
        while pending.peek().is_some() {
            let mut rendered = Vec::with_capacity(EVENTS_PER_INSERT);
            for (e, seq) in pending.by_ref().take(EVENTS_PER_INSERT) {
                let payload = (e.render)(seq);
                rendered.push((e.user, e.run_id, e.thread_id, e.ts_ms, seq, payload));
            }
            let mut insert = QueryBuilder::new(
                "INSERT INTO events (org_id, user_id, seq, run_id, thread_id, ts_ms, payload) ",
            );
            insert.push_values(
                &rendered,
                |mut b, (user, run_id, thread_id, ts_ms, seq, payload)| {
                    b.push_bind(&user.org_id)
                        .push_bind(&user.user_id)
                        .push_bind(*seq as i64)
                        .push_bind(run_id.as_deref())
                        .push_bind(thread_id.as_str())
                        .push_bind(*ts_ms)
                        .push_bind(payload.as_str());
                },
            );
            insert.build().execute(&mut *tx).await?;
            stored.extend(
                rendered
                    .into_iter()
                    .map(|(_, _, _, _, seq, payload)| StoredEvent { seq, payload }),
            );
        }
        for (user, record) in &records {
            match record {
                RunRecord::Answer { message, created_ms } => {
                    sqlx::query(INSERT_ASSISTANT_MESSAGE)
                        .bind(&message.id)
                        .bind(&message.thread_id)
                        .bind(&user.org_id)
                        .bind(&user.user_id)
                        .bind(&message.content)
                        .bind(&message.run_id)
                        .bind(&message.created_at)
                        .bind(*created_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                RunRecord::End { run_id, status, ended_at, plan } => {
                    sqlx::query(RECORD_RUN_END)
                        .bind(status)
                        .bind(ended_at)
                        .bind(plan)
                        .bind(run_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Some(stored))
    })
}
