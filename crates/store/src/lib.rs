//! Persistence for Apogee: per-user event streams with `seq` assignment, threads, messages and
//! runs, WebSocket tickets, and the org's usage records with the queries analyses run over them. The embedded
//! default is SQLite (one writer connection, several readers, WAL). Knows nothing of
//! WebSocket, HTTP or agents.

mod committer;
mod conversations;
mod error;
mod events;
mod migrate;
mod org_usage;
mod rollup;
mod tickets;
mod usage;

pub use conversations::{AckRecord, MessageRow, NewTurn, RunRow, ThreadRow, TurnOutcome};
pub use error::StoreError;
pub use events::{NewEvent, StoredEvent};
pub use org_usage::OrgUsage;
pub use tickets::{Redeemed, TicketGrant};
pub use usage::IngestSummary;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

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
    /// SQLite has one writer at a time: a single-connection pool queues writers fairly instead
    /// of letting them spin on `SQLITE_BUSY`.
    write: SqlitePool,
    read: SqlitePool,
    committer: committer::Committer,
}

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or a plain path) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path.contains(":memory:") {
            return Err(StoreError::Config(
                "an in-memory SQLite database cannot be shared between connections; give a file path".into(),
            ));
        }
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let base = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::Config(format!("bad database url `{url}`: {e}")))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        migrate::run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.read_only(true))
            .await?;
        let committer = committer::Committer::start(write.clone());
        Ok(Store {
            write,
            read,
            committer,
        })
    }

    /// Checks the database answers (for `/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Usage queries bound to one org.
    pub fn org_usage(&self, org_id: &str) -> OrgUsage {
        OrgUsage::new(self.read.clone(), org_id.to_string())
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}
