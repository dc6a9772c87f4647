//! Schema migrations, embedded in the binary and applied in order at open: `migrations/*.sql`,
//! written in the SQL common to SQLite and PostgreSQL, on both; where a version needs
//! PostgreSQL's own dialect, `migrations/postgres/` holds that version (same schema). Each
//! migration runs in one transaction together with the row that records it. Every version missing from
//! `apogee_migrations` is applied — not only those above the highest applied — so migrations
//! written in parallel (a lower version landing after a higher one) still run.

use crate::StoreError;
use crate::db::{Backend, Db, on_write};

/// A migration: its version and its SQL.
type Migration = (i64, &'static str);

const SQLITE: &[Migration] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_tickets.sql")),
    (3, include_str!("../migrations/0003_usage_v2.sql")),
    (4, include_str!("../migrations/0004_rollups.sql")),
    (5, include_str!("../migrations/0005_nodes.sql")),
    (8, include_str!("../migrations/0008_synthetic_usage.sql")),
    (12, include_str!("../migrations/0012_web_sessions.sql")),
];

/// The same versions, tables, columns and indexes on PostgreSQL: the common files, except the
/// rollups (no `WITHOUT ROWID`; typed sums in the backfill).
const POSTGRES: &[Migration] = &[
    SQLITE[0],
    SQLITE[1],
    SQLITE[2],
    (4, include_str!("../migrations/postgres/0004_rollups.sql")),
    SQLITE[4],
    SQLITE[5],
    SQLITE[6],
];

/// Key of the PostgreSQL advisory lock migrations hold (any constant shared by all nodes).
const MIGRATION_LOCK: i64 = 0x6170_6f67_6565; // "apogee"

pub(crate) async fn run(db: &Db) -> Result<(), StoreError> {
    match db.backend() {
        Backend::Sqlite => apply(db, SQLITE).await,
        Backend::Postgres => apply(db, POSTGRES).await,
    }
}

async fn apply(db: &Db, migrations: &[Migration]) -> Result<(), StoreError> {
    let mut pending: Vec<Migration> = migrations.to_vec();
    pending.sort_by_key(|(v, _)| *v);
    let lock = db.backend() == Backend::Postgres;
    on_write!(db, pool => {
        // Every step runs in a transaction that first takes the advisory lock (PostgreSQL), so
        // nodes starting together apply each migration once: the later one waits, then sees
        // the version recorded. On SQLite the single writer connection serialises them.
        let mut tx = pool.begin().await?;
        if lock {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS apogee_migrations
             (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for (version, sql) in pending {
            let mut tx = pool.begin().await?;
            if lock {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            // Every missing version is applied, not only those above the highest applied.
            let applied =
                sqlx::query("SELECT 1 AS one FROM apogee_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO apogee_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, "applied database migration");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;

    #[test]
    fn both_backends_have_every_version_in_order() {
        let versions = |m: &[Migration]| m.iter().map(|(v, _)| *v).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
        // Versions are handed out to parallel work, so some may not have landed yet.
        assert!(
            versions(SQLITE).windows(2).all(|w| w[0] < w[1]),
            "{:?}",
            versions(SQLITE)
        );
    }

    async fn sqlite_db(dir: &std::path::Path) -> Db {
        let url = format!("sqlite://{}", dir.join("m.db").display());
        let pool = sqlx::SqlitePool::connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
        Db::Sqlite {
            write: pool.clone(),
            read: pool,
        }
    }

    async fn check_lower_version_later(db: &Db) {
        let one = (1, "CREATE TABLE a (x INTEGER);");
        let two = (2, "CREATE TABLE b (x INTEGER);");
        let three = (3, "ALTER TABLE a ADD COLUMN y INTEGER;");
        apply(db, &[one, three]).await.unwrap();
        // Version 2 arrives after 3 was applied: it runs once, 1 and 3 do not run again.
        apply(db, &[one, two, three]).await.unwrap();
        apply(db, &[one, two, three]).await.unwrap();
        on_write!(db, pool => {
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM apogee_migrations ORDER BY version")
                    .fetch_all(pool)
                    .await
                    .unwrap();
            assert_eq!(versions, [1, 2, 3]);
            sqlx::query("INSERT INTO b (x) VALUES (1)")
                .execute(pool)
                .await
                .unwrap();
        });
    }

    #[tokio::test]
    async fn a_lower_version_landing_later_is_still_applied() {
        let dir = tempfile::tempdir().unwrap();
        check_lower_version_later(&sqlite_db(dir.path()).await).await;
        if let Some(database) = test_support::fresh_postgres().await {
            let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
            check_lower_version_later(&Db::Postgres(pool)).await;
        }
    }

    #[tokio::test]
    async fn nodes_opening_a_fresh_postgres_database_together_migrate_it_once() {
        let Some(database) = test_support::fresh_postgres().await else {
            return;
        };
        let url = &database.url;
        // Separate pools, opened concurrently: as two nodes starting at once.
        let (a, b, c) = tokio::join!(
            crate::Store::open(url),
            crate::Store::open(url),
            crate::Store::open(url)
        );
        for store in [a, b, c] {
            store.unwrap().close().await;
        }
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM apogee_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        let all: Vec<i64> = POSTGRES.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, all);
    }

    #[test]
    fn both_dialects_have_the_same_versions() {
        let versions = |m: &[Migration]| m.iter().map(|(v, _)| *v).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
    }
}
