//! Threads, messages and runs of each user: the durable record behind `message_ack`
//! idempotency and the REST history.

use crate::db::{Cols, Db, on_read, on_write};
use crate::{Store, StoreError, UserKey};

/// What `message_ack` reports for a `client_msg_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct AckRecord {
    pub message_id: String,
    pub thread_id: String,
    pub run_id: String,
}

/// A user message and the run it starts, stored together.
#[derive(Debug, Clone)]
pub struct NewTurn {
    /// `Some(title)` when the message opens a new thread `thread_id`.
    pub new_thread_title: Option<String>,
    pub thread_id: String,
    pub message_id: String,
    pub run_id: String,
    pub client_msg_id: String,
    pub content: String,
    pub created_at: String,
    pub created_ms: i64,
    /// The node that executes the run (see [`Store::claim_orphan_runs`]).
    pub node_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome {
    Created,
    /// The `client_msg_id` was already used: nothing was stored.
    Duplicate(AckRecord),
    /// The thread is not the user's (or does not exist).
    ThreadNotFound,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRow {
    pub id: String,
    pub title: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: String,
    pub thread_id: String,
    pub role: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub run_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub user: UserKey,
    pub thread_id: String,
    pub status: String,
}

/// A run's own row, written in the event committer's batches rather than in a transaction of
/// its own ([`Store::queue_event_with_record`], [`Store::record_run`]): queued in its user's
/// lane, it is stored in the same transaction as the events queued with or before it, so a
/// run's rows keep their order relative to its events at no commit of their own.
#[derive(Debug, Clone, PartialEq)]
pub enum RunRecord {
    /// The run's answer, stored as an assistant message of the user's thread.
    Answer {
        message: MessageRow,
        created_ms: i64,
    },
    /// How the run ended (`ok`, `error`, `cancelled`, `interrupted`), with the plan (JSON) the
    /// next question of its thread refines when it has one.
    End {
        run_id: String,
        status: String,
        ended_at: String,
        plan: Option<String>,
    },
}

/// [`RunRecord::Answer`]'s statement. Placeholders appear in order: SQLite numbers `$N` names
/// by first appearance, so positional binding through its own handle matches them.
pub(crate) const INSERT_ASSISTANT_MESSAGE: &str = "INSERT INTO messages
     (id, thread_id, org_id, user_id, role, content, client_msg_id, run_id, created_at, created_ms)
     VALUES ($1, $2, $3, $4, 'assistant', $5, NULL, $6, $7, $8)";
/// [`RunRecord::End`]'s statement (placeholders in order, as above); a run without a plan keeps
/// any it had.
pub(crate) const RECORD_RUN_END: &str =
    "UPDATE runs SET status = $1, ended_at = $2, plan = COALESCE($3, plan) WHERE id = $4";

/// A turn's statements, shared by sqlx's path (PostgreSQL) and the SQLite writer's own handle
/// (placeholders in order, as above).
const FIND_ACK: &str = "SELECT id, thread_id, run_id FROM messages
     WHERE org_id = $1 AND user_id = $2 AND client_msg_id = $3";
const INSERT_THREAD: &str =
    "INSERT INTO threads (id, org_id, user_id, title, created_at, updated_ms)
     VALUES ($1, $2, $3, $4, $5, $6)";
const TOUCH_THREAD: &str =
    "UPDATE threads SET updated_ms = $1 WHERE id = $2 AND org_id = $3 AND user_id = $4";
const INSERT_USER_MESSAGE: &str = "INSERT INTO messages
     (id, thread_id, org_id, user_id, role, content, client_msg_id, run_id, created_at, created_ms)
     VALUES ($1, $2, $3, $4, 'user', $5, $6, $7, $8, $9)";
const INSERT_RUN: &str = "INSERT INTO runs
     (id, org_id, user_id, thread_id, message_id, status, started_at, node_id)
     VALUES ($1, $2, $3, $4, $5, 'running', $6, $7)";

fn message_row(r: &impl Cols) -> Result<MessageRow, sqlx::Error> {
    Ok(MessageRow {
        id: r.text("id")?,
        thread_id: r.text("thread_id")?,
        role: r.text("role")?,
        content: r.text("content")?,
        client_msg_id: r.opt_text("client_msg_id")?,
        run_id: r.opt_text("run_id")?,
        created_at: r.text("created_at")?,
    })
}

fn ack_record(r: &impl Cols) -> Result<AckRecord, sqlx::Error> {
    Ok(AckRecord {
        message_id: r.text("id")?,
        thread_id: r.text("thread_id")?,
        run_id: r.opt_text("run_id")?.unwrap_or_default(),
    })
}

pub(crate) fn run_row(r: &impl Cols) -> Result<RunRow, sqlx::Error> {
    Ok(RunRow {
        id: r.text("id")?,
        user: UserKey {
            org_id: r.text("org_id")?,
            user_id: r.text("user_id")?,
        },
        thread_id: r.text("thread_id")?,
        status: r.text("status")?,
    })
}

/// Whether `e` is a unique-constraint violation (SQLSTATE 23505 on PostgreSQL, 2067/1555 on
/// SQLite).
fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation())
}

impl Store {
    /// The ack of an earlier message with this `client_msg_id`, if any.
    pub async fn find_ack(
        &self,
        user: &UserKey,
        client_msg_id: &str,
    ) -> Result<Option<AckRecord>, StoreError> {
        find_ack(&self.db, user, client_msg_id).await
    }

    /// Stores a user message (opening its thread when new) and its run, unless the
    /// `client_msg_id` was used before or the thread is not the user's.
    ///
    /// On SQLite the turn is written in the event committer's next batch, in its user's lane
    /// (after the user's events queued before it), so it pays no commit of its own; on
    /// PostgreSQL it is a transaction of its own, where a unique violation between nodes
    /// fails only this turn.
    pub async fn create_turn(
        &self,
        user: &UserKey,
        turn: &NewTurn,
    ) -> Result<TurnOutcome, StoreError> {
        if let Db::Sqlite { .. } = self.db {
            return self.committer.turn(user.clone(), turn.clone()).await;
        }
        create_turn_alone(&self.db, user, turn).await
    }

    /// Records how a run ended (`ok`, `error`, `cancelled`, `interrupted`).
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: &str,
        ended_at: &str,
    ) -> Result<(), StoreError> {
        on_write!(&self.db, pool => {
            sqlx::query("UPDATE runs SET status = $1, ended_at = $2 WHERE id = $3")
                .bind(status)
                .bind(ended_at)
                .bind(run_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records the question plan (JSON) the next question of the run's thread refines.
    pub async fn set_run_plan(&self, run_id: &str, plan: &str) -> Result<(), StoreError> {
        on_write!(&self.db, pool => {
            sqlx::query("UPDATE runs SET plan = $1 WHERE id = $2")
                .bind(plan)
                .bind(run_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The plan recorded by the latest run of the user's thread other than `except_run` (the
    /// run about to start), if any run recorded one.
    pub async fn thread_plan(
        &self,
        user: &UserKey,
        thread_id: &str,
        except_run: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = format!(
            "SELECT plan FROM runs
             WHERE thread_id = $1 AND org_id = $2 AND user_id = $3 AND id <> $4 AND plan IS NOT NULL
             ORDER BY started_at DESC, id{} DESC LIMIT 1",
            self.db.pick("", " COLLATE \"C\"")
        );
        on_read!(&self.db, pool => {
            let row = sqlx::query(&sql)
                .bind(thread_id)
                .bind(&user.org_id)
                .bind(&user.user_id)
                .bind(except_run)
                .fetch_optional(pool)
                .await?;
            row.map(|r| r.text("plan")).transpose().map_err(StoreError::from)
        })
    }

    /// The user's threads, most recently active first.
    pub async fn list_threads(&self, user: &UserKey) -> Result<Vec<ThreadRow>, StoreError> {
        // Ids compare byte-wise on both backends (`COLLATE "C"` on PostgreSQL).
        let sql = format!(
            "SELECT id, title, created_at FROM threads WHERE org_id = $1 AND user_id = $2
             ORDER BY updated_ms DESC, id{} DESC",
            self.db.pick("", " COLLATE \"C\"")
        );
        on_read!(&self.db, pool => {
            let rows = sqlx::query(&sql)
                .bind(&user.org_id)
                .bind(&user.user_id)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ThreadRow {
                        id: r.text("id")?,
                        title: r.text("title")?,
                        created_at: r.text("created_at")?,
                    })
                })
                .collect()
        })
    }

    /// The thread's messages in order, or `None` when the thread is not the user's.
    pub async fn thread_messages(
        &self,
        user: &UserKey,
        thread_id: &str,
    ) -> Result<Option<Vec<MessageRow>>, StoreError> {
        let sql = format!(
            "SELECT id, thread_id, role, content, client_msg_id, run_id, created_at FROM messages
             WHERE thread_id = $1 AND org_id = $2 AND user_id = $3
             ORDER BY created_ms, role DESC, id{}",
            self.db.pick("", " COLLATE \"C\"")
        );
        on_read!(&self.db, pool => {
            let owned = sqlx::query(
                "SELECT 1 AS one FROM threads WHERE id = $1 AND org_id = $2 AND user_id = $3",
            )
            .bind(thread_id)
            .bind(&user.org_id)
            .bind(&user.user_id)
            .fetch_optional(pool)
            .await?;
            if owned.is_none() {
                return Ok(None);
            }
            let rows = sqlx::query(&sql)
                .bind(thread_id)
                .bind(&user.org_id)
                .bind(&user.user_id)
                .fetch_all(pool)
                .await?;
            Ok(Some(
                rows.iter().map(message_row).collect::<Result<_, _>>()?,
            ))
        })
    }

    /// Whether the run exists and belongs to `user`.
    pub async fn run_owned(&self, user: &UserKey, run_id: &str) -> Result<bool, StoreError> {
        let found = on_read!(&self.db, pool => {
            sqlx::query("SELECT 1 AS one FROM runs WHERE id = $1 AND org_id = $2 AND user_id = $3")
                .bind(run_id)
                .bind(&user.org_id)
                .bind(&user.user_id)
                .fetch_optional(pool)
                .await?
                .is_some()
        });
        Ok(found)
    }

    /// Runs still marked running (after a crash, none of them has a live task). On a database
    /// several nodes share, this includes other nodes' live runs: see
    /// [`Store::claim_orphan_runs`] for taking over only those of stopped nodes.
    pub async fn open_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        on_write!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT id, org_id, user_id, thread_id, status FROM runs WHERE status = 'running'",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(run_row).collect::<Result<_, _>>()?)
        })
    }
}

/// The ack of an earlier message of `user` with this `client_msg_id`, if any. A read connection
/// sees every committed turn (SQLite's WAL), so a resend after its first send's ack finds it;
/// one racing that send is answered by the turn's own check.
async fn find_ack(
    db: &Db,
    user: &UserKey,
    client_msg_id: &str,
) -> Result<Option<AckRecord>, StoreError> {
    let ack = on_read!(db, pool => {
        sqlx::query(FIND_ACK)
            .bind(&user.org_id)
            .bind(&user.user_id)
            .bind(client_msg_id)
            .fetch_optional(pool)
            .await?
            .map(|r| ack_record(&r))
            .transpose()?
    });
    Ok(ack)
}

/// [`Store::create_turn`] in a transaction of its own (PostgreSQL): two nodes racing with the
/// same `client_msg_id` are settled by the unique index, the later answered as a resend.
pub(crate) async fn create_turn_alone(
    db: &Db,
    user: &UserKey,
    turn: &NewTurn,
) -> Result<TurnOutcome, StoreError> {
    match try_create_turn(db, user, turn).await {
        // Two nodes raced with the same `client_msg_id` (PostgreSQL): the unique index
        // refused the later one, which answers as a resend.
        Err(e) if is_unique_violation(&e) => match find_ack(db, user, &turn.client_msg_id).await? {
            Some(ack) => Ok(TurnOutcome::Duplicate(ack)),
            None => Err(e),
        },
        other => other,
    }
}

async fn try_create_turn(
    db: &Db,
    user: &UserKey,
    turn: &NewTurn,
) -> Result<TurnOutcome, StoreError> {
    on_write!(db, pool => {
        let mut tx = pool.begin().await?;
        // Checked inside the write transaction: on SQLite the single writer makes
        // check-then-insert atomic; on PostgreSQL the unique index on client_msg_id
        // settles a race (see `create_turn`).
        let existing = sqlx::query(FIND_ACK)
            .bind(&user.org_id)
            .bind(&user.user_id)
            .bind(&turn.client_msg_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(r) = existing {
            return Ok(TurnOutcome::Duplicate(ack_record(&r)?));
        }
        match &turn.new_thread_title {
            Some(title) => {
                sqlx::query(INSERT_THREAD)
                    .bind(&turn.thread_id)
                    .bind(&user.org_id)
                    .bind(&user.user_id)
                    .bind(title)
                    .bind(&turn.created_at)
                    .bind(turn.created_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                let updated = sqlx::query(TOUCH_THREAD)
                    .bind(turn.created_ms)
                    .bind(&turn.thread_id)
                    .bind(&user.org_id)
                    .bind(&user.user_id)
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() == 0 {
                    return Ok(TurnOutcome::ThreadNotFound);
                }
            }
        }
        sqlx::query(INSERT_USER_MESSAGE)
            .bind(&turn.message_id)
            .bind(&turn.thread_id)
            .bind(&user.org_id)
            .bind(&user.user_id)
            .bind(&turn.content)
            .bind(&turn.client_msg_id)
            .bind(&turn.run_id)
            .bind(&turn.created_at)
            .bind(turn.created_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT_RUN)
            .bind(&turn.run_id)
            .bind(&user.org_id)
            .bind(&user.user_id)
            .bind(&turn.thread_id)
            .bind(&turn.message_id)
            .bind(&turn.created_at)
            .bind(&turn.node_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TurnOutcome::Created)
    })
}

/// Writes a batch's run records through a SQLite connection's own handle, inside the
/// committer's transaction (see `events::sqlite_append`).
pub(crate) fn sqlite_write_records(
    conn: &rusqlite::Connection,
    records: &[(UserKey, RunRecord)],
) -> Result<(), rusqlite::Error> {
    for (user, record) in records {
        match record {
            RunRecord::Answer {
                message,
                created_ms,
            } => {
                conn.prepare_cached(INSERT_ASSISTANT_MESSAGE)?
                    .execute(rusqlite::params![
                        message.id,
                        message.thread_id,
                        user.org_id,
                        user.user_id,
                        message.content,
                        message.run_id,
                        message.created_at,
                        created_ms,
                    ])?;
            }
            RunRecord::End {
                run_id,
                status,
                ended_at,
                plan,
            } => {
                conn.prepare_cached(RECORD_RUN_END)?
                    .execute(rusqlite::params![status, ended_at, plan, run_id])?;
            }
        }
    }
    Ok(())
}

/// Writes `turn` through a SQLite connection's own handle, inside the committer's transaction
/// (see `events::sqlite_append`), in a savepoint of its own: a turn that fails (the inner
/// error) leaves nothing of it and fails only itself, not the batch; the outer error is the
/// savepoint's own, which fails the batch. The duplicate check and the inserts are one step of
/// the single writer, so check-then-insert is atomic.
pub(crate) fn sqlite_create_turn(
    conn: &rusqlite::Connection,
    user: &UserKey,
    turn: &NewTurn,
) -> Result<Result<TurnOutcome, rusqlite::Error>, rusqlite::Error> {
    conn.execute_batch("SAVEPOINT turn")?;
    let outcome = sqlite_turn_statements(conn, user, turn);
    match &outcome {
        // A duplicate or an unknown thread wrote nothing.
        Ok(_) => conn.execute_batch("RELEASE turn")?,
        // Nothing of a failed turn is kept.
        Err(_) => conn.execute_batch("ROLLBACK TO turn; RELEASE turn")?,
    }
    Ok(outcome)
}

fn sqlite_turn_statements(
    conn: &rusqlite::Connection,
    user: &UserKey,
    turn: &NewTurn,
) -> Result<TurnOutcome, rusqlite::Error> {
    use rusqlite::{OptionalExtension, params};
    let existing = conn
        .prepare_cached(FIND_ACK)?
        .query_row(
            params![user.org_id, user.user_id, turn.client_msg_id],
            |r| {
                Ok(AckRecord {
                    message_id: r.get(0)?,
                    thread_id: r.get(1)?,
                    run_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                })
            },
        )
        .optional()?;
    if let Some(ack) = existing {
        return Ok(TurnOutcome::Duplicate(ack));
    }
    match &turn.new_thread_title {
        Some(title) => {
            conn.prepare_cached(INSERT_THREAD)?.execute(params![
                turn.thread_id,
                user.org_id,
                user.user_id,
                title,
                turn.created_at,
                turn.created_ms,
            ])?;
        }
        None => {
            let updated = conn.prepare_cached(TOUCH_THREAD)?.execute(params![
                turn.created_ms,
                turn.thread_id,
                user.org_id,
                user.user_id,
            ])?;
            if updated == 0 {
                return Ok(TurnOutcome::ThreadNotFound);
            }
        }
    }
    conn.prepare_cached(INSERT_USER_MESSAGE)?.execute(params![
        turn.message_id,
        turn.thread_id,
        user.org_id,
        user.user_id,
        turn.content,
        turn.client_msg_id,
        turn.run_id,
        turn.created_at,
        turn.created_ms,
    ])?;
    conn.prepare_cached(INSERT_RUN)?.execute(params![
        turn.run_id,
        user.org_id,
        user.user_id,
        turn.thread_id,
        turn.message_id,
        turn.created_at,
        turn.node_id,
    ])?;
    Ok(TurnOutcome::Created)
}
