//! Persistence for Apogee: per-user event streams with `seq` assignment, threads, messages and
//! runs, budgets and the alerts they fired, org members, WebSocket tickets, browser sessions
//! and sign-ins in progress, node leases, and the org's usage records with the queries
//! analyses run over them (each computed once per data version of the org: `usage_cache`).
//! Runs on SQLite (embedded default: one writer connection, several readers, WAL; one node) or
//! on PostgreSQL (one pool; several nodes may share the database). The public API and the
//! queries are the same on both;
//! see the `db` module for how. Knows nothing of WebSocket, HTTP or agents.

mod budgets;
mod committer;
mod conversations;
mod db;
mod error;
mod events;
mod migrate;
mod nodes;
mod org_usage;
mod pg_copy;
mod prompt_repeats;
mod rollup;
mod summaries;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
mod tickets;
mod usage;
mod usage_cache;
mod web_sessions;
mod webhooks;

pub use budgets::{AlertClaim, BudgetError, BudgetRow, FiredAlert};
pub use committer::QueuedEvent;
pub use conversations::{
    AckRecord, MessageRow, NewTurn, RunRecord, RunRow, ThreadRow, TurnOutcome,
};
pub use db::Backend;
pub use error::StoreError;
pub use events::{NewEvent, StoredEvent};
pub use org_usage::{OrgUsage, RawRowUsage};
pub use tickets::{Redeemed, TicketGrant};
pub use usage::{IngestSummary, UsageLoad, UsageSelection};
pub use usage_cache::{UsageCacheLimits, UsageCacheStats};
pub use web_sessions::{PendingLogin, WebSession};
pub use webhooks::{DeliveryStats, DueDelivery, WebhookRow};

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use db::{Db, on_read};

/// SQLite's `cache_size` for the writer connection: negative is KiB (64 MiB).
pub(crate) const WRITER_CACHE_SIZE: &str = "-65536";

/// PostgreSQL connections per node unless the URL says otherwise (`?max_connections=N`).
const PG_MAX_CONNECTIONS: u32 = 16;

/// Whose stream or conversations an operation touches. Built by the server from an
/// authenticated identity only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey {
    pub org_id: String,
    pub user_id: String,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    committer: committer::Committer,
    usage_cache: std::sync::Arc<usage_cache::UsageCache>,
}

impl Store {
    /// Opens the database at `url` and applies pending migrations: `postgres://…` or
    /// `postgresql://…` (optionally with `max_connections=N` among its query parameters), else
    /// SQLite (`sqlite://path` or a plain path, created if needed).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            open_postgres(url).await?
        } else {
            open_sqlite(url).await?
        };
        let committer = committer::Committer::start(db.clone())?;
        Ok(Store {
            db,
            committer,
            usage_cache: std::sync::Arc::new(usage_cache::UsageCache::new(
                UsageCacheLimits::default(),
            )),
        })
    }

    /// Replaces the cache of usage reads with an empty one bounded by `limits`; for use right
    /// after [`Store::open`], before any [`Store::org_usage`] handle is made.
    pub fn with_usage_cache(mut self, limits: UsageCacheLimits) -> Store {
        self.usage_cache = std::sync::Arc::new(usage_cache::UsageCache::new(limits));
        self
    }

    /// The counters of the cache of usage reads, for metrics.
    pub fn usage_cache_stats(&self) -> UsageCacheStats {
        self.usage_cache.stats()
    }

    /// Which engine this store runs on: only PostgreSQL may be shared by several nodes.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Checks the database answers (for `/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_read!(&self.db, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Usage queries bound to one org.
    pub fn org_usage(&self, org_id: &str) -> OrgUsage {
        OrgUsage::new(
            self.db.clone(),
            org_id.to_string(),
            std::sync::Arc::clone(&self.usage_cache),
        )
    }

    /// Usage queries bound to one org with every recommender input read from raw rows,
    /// uncached: the reference the recommender summaries are tested against, and a way to
    /// measure what the summaries save. The product reads [`Store::org_usage`].
    pub fn org_usage_raw_rows(&self, org_id: &str) -> RawRowUsage {
        RawRowUsage::new(self.db.clone(), org_id.to_string())
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

async fn open_sqlite(url: &str) -> Result<Db, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains(":memory:") {
        return Err(StoreError::Config(
            "an in-memory SQLite database cannot be shared between connections; give a file path"
                .into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", parent.display())))?;
    }
    let base = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .map_err(|e| StoreError::Config(format!("bad database url `{url}`: {e}")))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // The writer's page cache holds the b-trees ingest inserts into at random places (the
    // request-id index, the prompt summaries): 64 MiB rather than SQLite's 2 MiB, one
    // connection only.
    // No ping before each acquire (sqlx's default): a SQLite connection is a file handle in
    // this process, never dropped by a peer, and the ping is a round trip to the connection's
    // worker thread on every write (every event batch among them).
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(
            base.clone()
                .create_if_missing(true)
                .pragma("cache_size", WRITER_CACHE_SIZE),
        )
        .await?;
    // Migrate before the read pool opens: a read-only connection cannot create the file.
    let db = Db::Sqlite {
        write: write.clone(),
        read: write.clone(),
    };
    migrate::run(&db).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(base.read_only(true))
        .await?;
    Ok(Db::Sqlite { write, read })
}

async fn open_postgres(url: &str) -> Result<Db, StoreError> {
    let (base, max) = split_max_connections(url)?;
    let options = PgConnectOptions::from_str(&base)
        .map_err(|e| StoreError::Config(format!("bad database url: {e}")))?;
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    let db = Db::Postgres(pool);
    migrate::run(&db).await?;
    Ok(db)
}

/// Takes our own `max_connections` parameter out of a PostgreSQL URL (the driver would warn
/// about it), returning the rest of the URL and the pool size.
fn split_max_connections(url: &str) -> Result<(String, u32), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), PG_MAX_CONNECTIONS));
    };
    let mut max = PG_MAX_CONNECTIONS;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("max_connections", v)) => {
                max = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    StoreError::Config(format!(
                        "max_connections must be a positive integer, not `{v}`"
                    ))
                })?;
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_is_taken_out_of_the_url() {
        let (u, n) = split_max_connections("postgres://h/db").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://h/db", PG_MAX_CONNECTIONS));
        let (u, n) =
            split_max_connections("postgres://h/db?sslmode=disable&max_connections=3").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://h/db?sslmode=disable", 3));
        let (u, n) = split_max_connections("postgres://h/db?max_connections=5").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://h/db", 5));
        assert!(split_max_connections("postgres://h/db?max_connections=0").is_err());
    }
}
