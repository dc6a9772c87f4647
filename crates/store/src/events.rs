//! Per-user event streams: `seq` assignment, persistence, replay and per-run reads.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row, SqlitePool};

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

/// Events appended per statement: 7 binds each stays far below SQLite's variable limit.
const EVENTS_PER_INSERT: usize = 512;

impl Store {
    /// Assigns the user's next `seq`, renders the event with it and stores it: either the event
    /// is stored with the next seq or the head does not move. Concurrent appends (of different
    /// users) share one transaction: see [`crate::committer`].
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

    /// Appends many events (of any users) in one transaction, in order; see [`append_batch`].
    pub async fn append_events(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        append_batch(&self.write, events).await
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

/// Appends many events (of any users) in one transaction, in order: a group commit. Each
/// user's events get that user's next seqs; all are stored, or none and no head moves.
pub(crate) async fn append_batch(
    pool: &SqlitePool,
    events: Vec<NewEvent>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut stored = Vec::with_capacity(events.len());
    let mut pending = events.into_iter().peekable();
    while pending.peek().is_some() {
        // One round takes each user at most once, so a multi-row upsert can move every
        // head in the round by one.
        let mut round: Vec<NewEvent> = Vec::new();
        while let Some(e) = pending.peek() {
            if round.len() >= EVENTS_PER_INSERT || round.iter().any(|r| r.user == e.user) {
                break;
            }
            if let Some(e) = pending.next() {
                round.push(e);
            }
        }
        let mut heads = QueryBuilder::new("INSERT INTO user_streams (org_id, user_id, head_seq) ");
        heads.push_values(&round, |mut b, e| {
            b.push_bind(&e.user.org_id)
                .push_bind(&e.user.user_id)
                .push_bind(1i64);
        });
        heads.push(
            " ON CONFLICT (org_id, user_id) DO UPDATE SET head_seq = user_streams.head_seq + 1
             RETURNING org_id, user_id, head_seq",
        );
        let rows = heads.build().fetch_all(&mut *tx).await?;
        let mut seqs: HashMap<(String, String), u64> = HashMap::with_capacity(rows.len());
        for r in &rows {
            seqs.insert(
                (r.try_get("org_id")?, r.try_get("user_id")?),
                to_u64(r.try_get("head_seq")?)?,
            );
        }
        let mut rendered = Vec::with_capacity(round.len());
        for e in round {
            let key = (e.user.org_id.clone(), e.user.user_id.clone());
            let seq = *seqs
                .get(&key)
                .ok_or_else(|| StoreError::Corrupt("a stream head was not returned".into()))?;
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
    tx.commit().await?;
    Ok(stored)
}
