//! Schema migrations, embedded in the binary and applied in order at open. Each migration runs
//! in one transaction together with the row that records it. Every version missing from
//! `apogee_migrations` is applied — not only those above the highest applied — so migrations
//! written in parallel (a lower version landing after a higher one) still run.

use std::collections::HashSet;

use sqlx::{Row, SqlitePool};

use crate::StoreError;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_tickets.sql")),
    (3, include_str!("../migrations/0003_usage_v2.sql")),
    (4, include_str!("../migrations/0004_rollups.sql")),
];

pub(crate) async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    apply(pool, MIGRATIONS).await
}

async fn apply(pool: &SqlitePool, migrations: &[(i64, &str)]) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS apogee_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: HashSet<i64> = sqlx::query("SELECT version FROM apogee_migrations")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("version"))
        .collect::<Result<_, _>>()?;
    let mut pending: Vec<&(i64, &str)> = migrations
        .iter()
        .filter(|(v, _)| !applied.contains(v))
        .collect();
    pending.sort_by_key(|(v, _)| *v);
    for (version, sql) in pending {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO apogee_migrations (version, applied_at) VALUES (?, datetime('now'))",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lower_version_landing_later_is_still_applied() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let pool = SqlitePool::connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
        let one = (1, "CREATE TABLE a (x INTEGER);");
        let two = (2, "CREATE TABLE b (x INTEGER);");
        let three = (3, "ALTER TABLE a ADD COLUMN y INTEGER;");
        apply(&pool, &[one, three]).await.unwrap();
        // Version 2 arrives after 3 was applied: it runs once, 1 and 3 do not run again.
        apply(&pool, &[one, two, three]).await.unwrap();
        apply(&pool, &[one, two, three]).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM apogee_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(versions, [1, 2, 3]);
        sqlx::query("INSERT INTO b (x) VALUES (1)")
            .execute(&pool)
            .await
            .unwrap();
    }
}
