//! Threads, messages and runs of each user: the durable record behind `message_ack`
//! idempotency and the REST history.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

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

fn message_row(r: &SqliteRow) -> Result<MessageRow, sqlx::Error> {
    Ok(MessageRow {
        id: r.try_get("id")?,
        thread_id: r.try_get("thread_id")?,
        role: r.try_get("role")?,
        content: r.try_get("content")?,
        client_msg_id: r.try_get("client_msg_id")?,
        run_id: r.try_get("run_id")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// The ack of an earlier message with this `client_msg_id`, if any.
    pub async fn find_ack(
        &self,
        user: &UserKey,
        client_msg_id: &str,
    ) -> Result<Option<AckRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, thread_id, run_id FROM messages
             WHERE org_id = ? AND user_id = ? AND client_msg_id = ?",
        )
        .bind(&user.org_id)
        .bind(&user.user_id)
        .bind(client_msg_id)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| {
            Ok(AckRecord {
                message_id: r.try_get("id")?,
                thread_id: r.try_get("thread_id")?,
                run_id: r
                    .try_get::<Option<String>, _>("run_id")?
                    .unwrap_or_default(),
            })
        })
        .transpose()
    }

    /// Stores a user message (opening its thread when new) and its run, unless the
    /// `client_msg_id` was used before or the thread is not the user's.
    pub async fn create_turn(
        &self,
        user: &UserKey,
        turn: &NewTurn,
    ) -> Result<TurnOutcome, StoreError> {
        let mut tx = self.write.begin().await?;
        // Checked inside the write transaction: the single writer makes check-then-insert atomic.
        let existing = sqlx::query(
            "SELECT id, thread_id, run_id FROM messages WHERE org_id = ? AND user_id = ? AND client_msg_id = ?",
        )
        .bind(&user.org_id)
        .bind(&user.user_id)
        .bind(&turn.client_msg_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = existing {
            return Ok(TurnOutcome::Duplicate(AckRecord {
                message_id: r.try_get("id")?,
                thread_id: r.try_get("thread_id")?,
                run_id: r
                    .try_get::<Option<String>, _>("run_id")?
                    .unwrap_or_default(),
            }));
        }
        match &turn.new_thread_title {
            Some(title) => {
                sqlx::query(
                    "INSERT INTO threads (id, org_id, user_id, title, created_at, updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
                )
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
                let updated = sqlx::query(
                    "UPDATE threads SET updated_ms = ? WHERE id = ? AND org_id = ? AND user_id = ?",
                )
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
        sqlx::query(
            "INSERT INTO messages (id, thread_id, org_id, user_id, role, content, client_msg_id, run_id, created_at, created_ms)
             VALUES (?, ?, ?, ?, 'user', ?, ?, ?, ?, ?)",
        )
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
        sqlx::query(
            "INSERT INTO runs (id, org_id, user_id, thread_id, message_id, status, started_at)
             VALUES (?, ?, ?, ?, ?, 'running', ?)",
        )
        .bind(&turn.run_id)
        .bind(&user.org_id)
        .bind(&user.user_id)
        .bind(&turn.thread_id)
        .bind(&turn.message_id)
        .bind(&turn.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TurnOutcome::Created)
    }

    /// Stores an assistant message produced by a run.
    pub async fn add_assistant_message(
        &self,
        user: &UserKey,
        message: &MessageRow,
        created_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO messages (id, thread_id, org_id, user_id, role, content, client_msg_id, run_id, created_at, created_ms)
             VALUES (?, ?, ?, ?, 'assistant', ?, NULL, ?, ?, ?)",
        )
        .bind(&message.id)
        .bind(&message.thread_id)
        .bind(&user.org_id)
        .bind(&user.user_id)
        .bind(&message.content)
        .bind(&message.run_id)
        .bind(&message.created_at)
        .bind(created_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records how a run ended (`ok`, `error`, `cancelled`, `interrupted`).
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: &str,
        ended_at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET status = ?, ended_at = ? WHERE id = ?")
            .bind(status)
            .bind(ended_at)
            .bind(run_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The user's threads, most recently active first.
    pub async fn list_threads(&self, user: &UserKey) -> Result<Vec<ThreadRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, title, created_at FROM threads WHERE org_id = ? AND user_id = ?
             ORDER BY updated_ms DESC, id DESC",
        )
        .bind(&user.org_id)
        .bind(&user.user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ThreadRow {
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The thread's messages in order, or `None` when the thread is not the user's.
    pub async fn thread_messages(
        &self,
        user: &UserKey,
        thread_id: &str,
    ) -> Result<Option<Vec<MessageRow>>, StoreError> {
        let owned =
            sqlx::query("SELECT 1 AS one FROM threads WHERE id = ? AND org_id = ? AND user_id = ?")
                .bind(thread_id)
                .bind(&user.org_id)
                .bind(&user.user_id)
                .fetch_optional(&self.read)
                .await?;
        if owned.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT id, thread_id, role, content, client_msg_id, run_id, created_at FROM messages
             WHERE thread_id = ? AND org_id = ? AND user_id = ? ORDER BY created_ms, role DESC, id",
        )
        .bind(thread_id)
        .bind(&user.org_id)
        .bind(&user.user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(Some(
            rows.iter().map(message_row).collect::<Result<_, _>>()?,
        ))
    }

    /// Whether the run exists and belongs to `user`.
    pub async fn run_owned(&self, user: &UserKey, run_id: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 AS one FROM runs WHERE id = ? AND org_id = ? AND user_id = ?")
                .bind(run_id)
                .bind(&user.org_id)
                .bind(&user.user_id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.is_some())
    }

    /// Runs still marked running (after a crash, none of them has a live task).
    pub async fn open_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, user_id, thread_id, status FROM runs WHERE status = 'running'",
        )
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    id: r.try_get("id")?,
                    user: UserKey {
                        org_id: r.try_get("org_id")?,
                        user_id: r.try_get("user_id")?,
                    },
                    thread_id: r.try_get("thread_id")?,
                    status: r.try_get("status")?,
                })
            })
            .collect()
    }
}
