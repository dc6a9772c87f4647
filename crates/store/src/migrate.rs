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

// Each version is named once, so both lists take it whatever other versions land beside it.
const INIT: Migration = (1, include_str!("../migrations/0001_init.sql"));
const TICKETS: Migration = (2, include_str!("../migrations/0002_tickets.sql"));
const USAGE_V2: Migration = (3, include_str!("../migrations/0003_usage_v2.sql"));
const NODES: Migration = (5, include_str!("../migrations/0005_nodes.sql"));
const BILLING_FIELDS: Migration = (7, include_str!("../migrations/0007_billing_fields.sql"));
const SYNTHETIC_USAGE: Migration = (8, include_str!("../migrations/0008_synthetic_usage.sql"));
const RUN_PLANS: Migration = (10, include_str!("../migrations/0010_run_plans.sql"));
const BUDGETS: Migration = (11, include_str!("../migrations/0011_budgets.sql"));
const WEB_SESSIONS: Migration = (12, include_str!("../migrations/0012_web_sessions.sql"));
const USAGE_VERSIONS: Migration = (13, include_str!("../migrations/0013_usage_versions.sql"));
const WEBHOOKS: Migration = (14, include_str!("../migrations/0014_webhooks.sql"));

const SQLITE: &[Migration] = &[
    INIT,
    TICKETS,
    USAGE_V2,
    (4, include_str!("../migrations/0004_rollups.sql")),
    NODES,
    (6, include_str!("../migrations/0006_tag_rollups.sql")),
    BILLING_FIELDS,
    SYNTHETIC_USAGE,
    RUN_PLANS,
    BUDGETS,
    WEB_SESSIONS,
    USAGE_VERSIONS,
    WEBHOOKS,
    (
        17,
        include_str!("../migrations/0017_recommender_summaries.sql"),
    ),
    (18, include_str!("../migrations/0018_prompt_repeats.sql")),
    (
        22,
        include_str!("../migrations/0022_prompt_repeats_daily.sql"),
    ),
];

/// The same versions, tables, columns and indexes on PostgreSQL: the common files, except the
/// rollups (no `WITHOUT ROWID`; typed sums and `json_each_text` in the backfills).
const POSTGRES: &[Migration] = &[
    INIT,
    TICKETS,
    USAGE_V2,
    (4, include_str!("../migrations/postgres/0004_rollups.sql")),
    NODES,
    (
        6,
        include_str!("../migrations/postgres/0006_tag_rollups.sql"),
    ),
    BILLING_FIELDS,
    SYNTHETIC_USAGE,
    RUN_PLANS,
    BUDGETS,
    WEB_SESSIONS,
    USAGE_VERSIONS,
    WEBHOOKS,
    (
        17,
        include_str!("../migrations/postgres/0017_recommender_summaries.sql"),
    ),
    (
        18,
        include_str!("../migrations/postgres/0018_prompt_repeats.sql"),
    ),
    (
        22,
        include_str!("../migrations/postgres/0022_prompt_repeats_daily.sql"),
    ),
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

    /// Raw rows stored before migration 6 (tags with odd keys, an aggregate record, an error,
    /// an unpriced call, untagged rows): what the backfill must fold into the tag rollup.
    const V5_ROWS: &str = r#"
        INSERT INTO usage_records (org_id, request_id, ts_ms, provider, model, input_tokens,
            output_tokens, cached_input_tokens, batch, status, cost_nanos, tags, request_count)
        VALUES
          ('acme', 'a', 1763600000000, 'openai', 'gpt-4o', 100, 10, 0, FALSE, 'ok', 500, '{"team":"growth","a.b\"c":"x"}', 1),
          ('acme', 'b', 1763600100000, 'openai', 'gpt-4o', 200, 20, 5, FALSE, 'error', 700, '{"team":"growth"}', 3),
          ('acme', 'c', 1763603700000, 'acme', 'llama', 50, 5, 0, FALSE, 'ok', NULL, '{"team":"search","env":"prod"}', 1),
          ('acme', 'd', 1763603800000, 'openai', 'gpt-4o', 1, 1, 0, FALSE, 'ok', 9, NULL, 1),
          ('other', 'e', 1763600000000, 'openai', 'gpt-4o', 100, 10, 0, FALSE, 'ok', 500, '{"team":"growth"}', 1)
    "#;

    /// A tag rollup row: org, tag key, hour, tag value, model, user, and its sums.
    type TagRow = (String, String, i64, String, String, String, Vec<i64>);

    async fn check_tag_backfill(db: &Db, migrations: &[Migration]) {
        apply(db, &migrations[..5]).await.unwrap();
        on_write!(db, pool => {
            sqlx::raw_sql(V5_ROWS).execute(pool).await.unwrap();
        });
        apply(db, migrations).await.unwrap();
        // What ingest would have folded from the same rows.
        let mut expected: Vec<TagRow> = Vec::new();
        for org in ["acme", "other"] {
            let mut d = crate::rollup::RollupDelta::default();
            on_write!(db, pool => {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM usage_records WHERE org_id = $1",
                    crate::rollup::RAW_COLUMNS
                ))
                .bind(org)
                .fetch_all(pool)
                .await
                .unwrap();
                for r in &rows {
                    d.add_row(r).unwrap();
                }
            });
            for (k, s) in d.tag_entries() {
                expected.push((
                    org.to_string(),
                    k.tag_key.to_string(),
                    k.hour.hour_ms,
                    k.tag_value.to_string(),
                    k.hour.model.to_string(),
                    k.hour.user.to_string(),
                    vec![
                        s.rows,
                        s.calls,
                        s.input_tokens,
                        s.cost_nanos,
                        s.unpriced_calls,
                        s.unpriced_tokens,
                        s.error_calls,
                    ],
                ));
            }
        }
        assert!(!expected.is_empty());
        let got: Vec<TagRow> = on_write!(db, pool => {
            sqlx::query_as::<_, (String, String, i64, String, String, String, i64, i64, i64, i64, i64, i64, i64)>(
                "SELECT org_id, tag_key, hour_ms, tag_value, model, user_key, row_count, calls,
                            input_tokens, cost_nanos, unpriced_calls, unpriced_tokens, error_calls
                     FROM usage_hourly_tags",
            )
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, vec![r.6, r.7, r.8, r.9, r.10, r.11, r.12]))
            .collect()
        });
        let (mut got, mut expected) = (got, expected);
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
        // team=growth on acme: records a (1 call) and b (3 calls, errors) in one hour.
        assert!(got.iter().any(|g| g.0 == "acme"
            && g.1 == "team"
            && g.3 == "growth"
            && g.6 == [2, 4, 300, 1200, 0, 0, 3]));
        assert!(got.iter().any(|g| g.1 == "a.b\"c" && g.3 == "x"));
    }

    #[tokio::test]
    async fn the_tag_rollup_backfill_equals_what_ingest_keeps() {
        let dir = tempfile::tempdir().unwrap();
        check_tag_backfill(&sqlite_db(dir.path()).await, SQLITE).await;
        if let Some(database) = test_support::fresh_postgres().await {
            let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
            check_tag_backfill(&Db::Postgres(pool), POSTGRES).await;
        }
    }
}
