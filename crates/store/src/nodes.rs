//! Node leases: each server node registers itself and heartbeats, and a run records the node
//! executing it, so when a node stops (crash, kill, lost network) a live node can claim its
//! runs. Only meaningful when several nodes share a PostgreSQL database, but works alike on
//! SQLite.

use crate::conversations::run_row;
use crate::db::{Db, on_write};
use crate::{RunRow, Store, StoreError};

impl Store {
    /// Records the node as live from `now_ms` (registering again restarts its lease).
    pub async fn register_node(&self, node_id: &str, now_ms: i64) -> Result<(), StoreError> {
        on_write!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO nodes (node_id, started_ms, heartbeat_ms) VALUES ($1, $2, $2)
                 ON CONFLICT (node_id) DO UPDATE
                 SET started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms",
            )
            .bind(node_id)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Renews the node's lease; `false` when its row is gone (it was removed, so its runs may
    /// already belong to another node).
    pub async fn heartbeat_node(&self, node_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let updated = on_write!(&self.db, pool => {
            sqlx::query("UPDATE nodes SET heartbeat_ms = $1 WHERE node_id = $2")
                .bind(now_ms)
                .bind(node_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(updated > 0)
    }

    /// Removes the node's lease (at a clean stop): its remaining runs become claimable.
    pub async fn remove_node(&self, node_id: &str) -> Result<(), StoreError> {
        on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM nodes WHERE node_id = $1")
                .bind(node_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Re-assigns to `me`, and returns, every run still `running` whose node is unknown or not
    /// live (no heartbeat at or after `live_after_ms`), other than `me`'s own. `me` should be
    /// a live node itself, or another node may in turn claim the runs from it.
    ///
    /// One statement, and each run goes to exactly one of several nodes calling concurrently:
    /// a run is updated only while its `node_id` is still the one the statement read. On
    /// PostgreSQL (READ COMMITTED) a second claimer blocks on the row lock, then re-checks
    /// that condition against the committed row and skips a run just claimed; on SQLite
    /// writers are serialised.
    pub async fn claim_orphan_runs(
        &self,
        me: &str,
        live_after_ms: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        claim(&self.db, me, live_after_ms).await
    }
}

async fn claim(db: &Db, me: &str, live_after_ms: i64) -> Result<Vec<RunRow>, StoreError> {
    on_write!(db, pool => {
        let rows = sqlx::query(
            "UPDATE runs SET node_id = $1
             FROM (SELECT id AS orphan_id, node_id AS seen_node FROM runs
                   WHERE status = 'running'
                     AND (node_id IS NULL
                          OR (node_id <> $1
                              AND node_id NOT IN
                                  (SELECT node_id FROM nodes WHERE heartbeat_ms >= $2)))) AS orphans
             WHERE runs.id = orphans.orphan_id
               AND runs.status = 'running'
               AND (runs.node_id = orphans.seen_node
                    OR (runs.node_id IS NULL AND orphans.seen_node IS NULL))
             RETURNING id, org_id, user_id, thread_id, status",
        )
        .bind(me)
        .bind(live_after_ms)
        .fetch_all(pool)
        .await?;
        Ok(rows.iter().map(run_row).collect::<Result<_, _>>()?)
    })
}
