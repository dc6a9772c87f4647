//! Per-user event streams: `seq` assignment, persistence, replay and per-run reads.

use sqlx::Row;

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

impl Store {
    /// Assigns the user's next `seq`, renders the event with it and stores it, in one
    /// transaction: either the event is stored with the next seq or the head does not move.
    pub async fn append_event(
        &self,
        user: &UserKey,
        run_id: Option<&str>,
        thread_id: &str,
        ts_ms: i64,
        render: impl FnOnce(u64) -> String,
    ) -> Result<StoredEvent, StoreError> {
        let mut tx = self.write.begin().await?;
        let seq: i64 = sqlx::query(
            "INSERT INTO user_streams (org_id, user_id, head_seq) VALUES (?, ?, 1)
             ON CONFLICT (org_id, user_id) DO UPDATE SET head_seq = user_streams.head_seq + 1
             RETURNING head_seq",
        )
        .bind(&user.org_id)
        .bind(&user.user_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("head_seq")?;
        let seq = to_u64(seq)?;
        let payload = render(seq);
        sqlx::query(
            "INSERT INTO events (org_id, user_id, seq, run_id, thread_id, ts_ms, payload)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.org_id)
        .bind(&user.user_id)
        .bind(seq as i64)
        .bind(run_id)
        .bind(thread_id)
        .bind(ts_ms)
        .bind(&payload)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StoredEvent { seq, payload })
    }

    /// The newest `seq` of the user's stream (0 when empty).
    pub async fn head_seq(&self, user: &UserKey) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT head_seq FROM user_streams WHERE org_id = ? AND user_id = ?")
            .bind(&user.org_id)
            .bind(&user.user_id)
            .fetch_optional(&self.read)
            .await?;
        match row {
            Some(r) => to_u64(r.try_get("head_seq")?),
            None => Ok(0),
        }
    }

    /// Events with `after < seq <= upto`, in order.
    pub async fn events_between(
        &self,
        user: &UserKey,
        after: u64,
        upto: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, payload FROM events
             WHERE org_id = ? AND user_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
        )
        .bind(&user.org_id)
        .bind(&user.user_id)
        .bind(after as i64)
        .bind(upto as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    seq: to_u64(r.try_get("seq")?)?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }

    /// The oldest `seq` still stored for the user (None when the stream is empty).
    pub async fn oldest_seq(&self, user: &UserKey) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> =
            sqlx::query("SELECT MIN(seq) AS s FROM events WHERE org_id = ? AND user_id = ?")
                .bind(&user.org_id)
                .bind(&user.user_id)
                .fetch_one(&self.read)
                .await?
                .try_get("s")?;
        v.map(to_u64).transpose()
    }

    /// A run's events in `seq` order, only if the run belongs to `user`.
    pub async fn run_events(
        &self,
        user: &UserKey,
        run_id: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, payload FROM events WHERE run_id = ? AND org_id = ? AND user_id = ? ORDER BY seq",
        )
        .bind(run_id)
        .bind(&user.org_id)
        .bind(&user.user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    seq: to_u64(r.try_get("seq")?)?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// Deletes the user's events with `seq <= upto` (retention). The head is kept, so seqs
    /// continue; a resume from before the oldest kept event gets `resync_required`.
    pub async fn prune_events(&self, user: &UserKey, upto: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE org_id = ? AND user_id = ? AND seq <= ?")
            .bind(&user.org_id)
            .bind(&user.user_id)
            .bind(upto as i64)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}
