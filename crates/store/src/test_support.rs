//! Test support (feature `test-support`, and this crate's unit tests): a fresh, empty store
//! per test on each backend, so every store test runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL tests need `APOGEE_TEST_DATABASE_URL`, the URL of a server on which a test may
//! `CREATE DATABASE` (e.g. `postgres://postgres@127.0.0.1:55432/postgres`); each test gets a
//! database of its own. Without it they are skipped with a note on stderr — except in CI
//! (`CI=true`), where a missing server is a failure: CI never skips PostgreSQL tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::{Backend, Store};

/// The variable naming the PostgreSQL server tests create their databases on.
pub const DATABASE_URL_VAR: &str = "APOGEE_TEST_DATABASE_URL";

/// A fresh store and what is needed to open more handles on the same database.
pub struct TestStore {
    pub store: Store,
    pub backend: Backend,
    /// The database's URL, for opening a second handle (a second "node").
    pub url: String,
    /// Keeps a SQLite database's directory alive for the test.
    _dir: Option<tempfile::TempDir>,
    /// Drops a PostgreSQL database after the test.
    _database: Option<FreshDatabase>,
}

/// A PostgreSQL database made for one test; dropped (connections and all) with this value,
/// so test runs do not pile databases up on the server.
pub struct FreshDatabase {
    pub url: String,
    server: String,
    name: String,
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with a
        // runtime of its own does the dropping.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&server).await.ok()?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A fresh store on SQLite, plus one on PostgreSQL when a server is configured.
pub async fn stores() -> Vec<TestStore> {
    let mut all = vec![sqlite().await];
    all.extend(postgres().await);
    all
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::open(&url).await.expect("open a SQLite store");
    TestStore {
        store,
        backend: Backend::Sqlite,
        url,
        _dir: Some(dir),
        _database: None,
    }
}

/// A store on a fresh PostgreSQL database, or `None` when no server is configured (outside CI).
pub async fn postgres() -> Option<TestStore> {
    let database = fresh_postgres().await?;
    let store = Store::open(&database.url)
        .await
        .expect("open a PostgreSQL store");
    Some(TestStore {
        store,
        backend: Backend::Postgres,
        url: database.url.clone(),
        _dir: None,
        _database: Some(database),
    })
}

/// A new, empty PostgreSQL database (nothing applied yet), or `None` when no server is
/// configured (outside CI).
pub async fn fresh_postgres() -> Option<FreshDatabase> {
    let server = postgres_server()?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!(
        "apogee_test_{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR} ({server}): {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = conn.close().await;
    Some(FreshDatabase {
        url: with_database(&server, &name),
        server,
        name,
    })
}

/// The configured server URL; panics in CI when there is none, else notes the skip.
fn postgres_server() -> Option<String> {
    service_env(DATABASE_URL_VAR)
}

/// The value of `var`, which names a service tests need (a server URL, a binary). Unset: a
/// panic under CI (`CI=true`: CI never skips these tests), otherwise a note that the test
/// skips, and `None`.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{var} is not set: CI never skips the tests that need it; run them through \
             ./scripts/test, which starts PostgreSQL and Redis"
        ),
        _ => {
            eprintln!("skipping what needs {var}: it is not set (./scripts/test sets it)");
            None
        }
    }
}

/// `server` with its database path replaced by `name` (query parameters kept).
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_path() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "x"),
            "postgresql://h/x?sslmode=disable"
        );
    }
}
