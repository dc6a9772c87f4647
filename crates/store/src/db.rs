//! The database behind a [`crate::Store`]: which backend, its pools, and the dispatch macros
//! that let every query be written once and run on either backend.
//!
//! `on_read!(db, pool => body)` and `on_write!(db, pool => body)` expand `body` once per
//! backend with `pool` bound to that backend's concrete pool, so rows, transactions and
//! `QueryBuilder`s inside `body` have concrete types (sqlx's generic bounds are unwieldy) while
//! the SQL text is shared. SQL uses `$1, $2…` placeholders, which both backends accept; where
//! the dialects really differ, the query picks a string with [`Db::backend`].

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, error::DatabaseError};

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One process owns the database file: a single node.
    Sqlite,
    /// A server several nodes may share.
    Postgres,
}

/// The pools of one database; cheap to clone.
#[derive(Clone)]
pub(crate) enum Db {
    /// SQLite has one writer at a time: a single-connection write pool queues writers fairly
    /// instead of letting them spin on `SQLITE_BUSY`; reads go to a separate read-only pool.
    Sqlite { write: SqlitePool, read: SqlitePool },
    /// PostgreSQL handles concurrent writers itself: one pool serves reads and writes.
    Postgres(PgPool),
}

impl Db {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// `sqlite` or `postgres` as the dialect of a query that must differ.
    pub(crate) fn pick<'a>(&self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self {
            Db::Sqlite { .. } => sqlite,
            Db::Postgres(_) => postgres,
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite { write, read } => {
                write.close().await;
                read.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// Runs `body` with `pool` bound to the pool for reads of the backend in use.
macro_rules! on_read {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { read: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `body` with `pool` bound to the pool for writes (and reads that must see the latest
/// writes) of the backend in use.
macro_rules! on_write {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { write: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

pub(crate) use {on_read, on_write};

/// Typed column reads shared by row-mapping helpers, so one helper serves both backends'
/// row types.
pub(crate) trait Cols {
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    /// Column `i` (0-based) borrowed: for reads of many rows, where looking up each column by
    /// name and allocating each string costs more than the query.
    fn str_at(&self, i: usize) -> Result<&str, sqlx::Error>;
    fn int_at(&self, i: usize) -> Result<i64, sqlx::Error>;
    fn opt_int_at(&self, i: usize) -> Result<Option<i64>, sqlx::Error>;

    /// A sum written by [`Sums::sum`], exactly (or a plain integer column, such as a count).
    fn wide(&self, col: &str) -> Result<i128, sqlx::Error> {
        let text = match self.text(col) {
            Ok(text) => text,
            Err(_) => return self.int(col).map(i128::from),
        };
        parse_wide(&text).ok_or_else(|| {
            sqlx::Error::Decode(format!("column `{col}`: `{text}` is not a wide sum").into())
        })
    }

    /// A sum written by [`Sums::sum`] as an `i64`, held at `i64::MAX` beyond (token and call
    /// counts: no real org reaches 9.2 × 10¹⁸; a hostile one must not break its reads).
    fn wide_count(&self, col: &str) -> Result<i64, sqlx::Error> {
        let v = self.wide(col)?;
        Ok(i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX }))
    }
}

/// Parts a sum of 64-bit integers is split into on SQLite: `value / SPLIT` and
/// `value % SPLIT` each sum without overflow over billions of rows.
const SPLIT: i128 = 1_000_000_000;

/// How a read writes its sums of 64-bit integers, so they never overflow, read back with
/// [`Cols::wide`] or [`Cols::wide_count`]. PostgreSQL sums BIGINT as NUMERIC (exact), which is
/// read as text. SQLite's `SUM` is 64-bit and fails past that, so reads sum plainly first (the
/// usual case costs nothing) and, when SQLite reports an overflow, again in two parts (the sums
/// of `expr / 10⁹` and of `expr % 10⁹`, as text `HIGH:LOW`) — see `org_usage`'s `widening!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sums {
    backend: Backend,
    split: bool,
}

impl Sums {
    /// How a read sums first on `db`.
    pub(crate) fn first(db: &Db) -> Sums {
        Sums {
            backend: db.backend(),
            split: false,
        }
    }

    /// How to sum again after `error`, when it is SQLite's overflow of a plain sum.
    pub(crate) fn after(self, error: &str) -> Option<Sums> {
        (self.backend == Backend::Sqlite && !self.split && error.contains("integer overflow"))
            .then_some(Sums {
                split: true,
                ..self
            })
    }

    /// A sort key for `SUM(expr)` in `ORDER BY` (the sum as written may be text): the plain sum,
    /// or with split sums the high part. Exact ordering is done in Rust on the read sums; this
    /// only decides which rows a `LIMIT` keeps.
    pub(crate) fn rank(self, expr: &str) -> String {
        match (self.backend, self.split) {
            (Backend::Sqlite, true) => format!("SUM(({expr}) / {SPLIT})"),
            _ => format!("SUM({expr})"),
        }
    }

    /// `SUM(expr)`, 0 over no rows.
    pub(crate) fn sum(self, expr: &str) -> String {
        match (self.backend, self.split) {
            (Backend::Postgres, _) => format!("CAST(COALESCE(SUM({expr}), 0) AS TEXT)"),
            (Backend::Sqlite, false) => format!("COALESCE(SUM({expr}), 0)"),
            (Backend::Sqlite, true) => format!(
                "(CAST(COALESCE(SUM(({expr}) / {SPLIT}), 0) AS TEXT) || ':' || \
                 CAST(COALESCE(SUM(({expr}) % {SPLIT}), 0) AS TEXT))"
            ),
        }
    }
}

fn parse_wide(text: &str) -> Option<i128> {
    match text.split_once(':') {
        Some((high, low)) => high
            .parse::<i128>()
            .ok()?
            .checked_mul(SPLIT)?
            .checked_add(low.parse::<i128>().ok()?),
        None => text.parse().ok(),
    }
}

macro_rules! impl_cols {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(col)
            }
            fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(col)
            }
            fn str_at(&self, i: usize) -> Result<&str, sqlx::Error> {
                self.try_get(i)
            }
            fn int_at(&self, i: usize) -> Result<i64, sqlx::Error> {
                self.try_get(i)
            }
            fn opt_int_at(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(i)
            }
        }
    };
}

impl_cols!(SqliteRow);
impl_cols!(PgRow);

/// Runs `work` with rusqlite on the SQLite connection `conn`'s own handle, for the paths where
/// sqlx's per-statement and per-row hand-offs to its worker thread cost more than SQLite's own
/// work (a batch's inserts, reads of many rows): stepped here, a statement costs what SQLite
/// costs. The handle stays locked by sqlx until `work` returns, so nothing else uses the
/// connection meanwhile (inside a transaction sqlx began on it, `work` runs in that
/// transaction). On a multi-threaded runtime `work` runs in `block_in_place`, so the worker's
/// other tasks move on; on a current-thread runtime (tests) it runs inline.
pub(crate) async fn on_sqlite_handle<T, E>(
    conn: &mut sqlx::SqliteConnection,
    work: impl FnOnce(&rusqlite::Connection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<sqlx::Error>,
{
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let run = || {
        // SAFETY: `db` is sqlx's open connection, and `handle` keeps it locked (used by
        // nothing else) until after this returns; rusqlite does not close a handle it did not
        // open.
        let conn = unsafe { rusqlite::Connection::from_handle(db) }
            .map_err(|e| E::from(sqlite_error(e)))?;
        work(&conn)
    };
    let done = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
    };
    drop(handle);
    done
}

/// ` VALUES (?1, …, ?n)`: the values of a prepared single-row SQLite insert of `n` columns.
pub(crate) fn sqlite_values(n: usize) -> String {
    let list: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!(" VALUES ({})", list.join(", "))
}

/// An error of the statements run through a connection's own handle ([`on_sqlite_handle`]),
/// as sqlx's.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::AnyDriverError(Box::new(e))
}

/// A row read through a connection's own handle ([`on_sqlite_handle`]), so the row mapping of a
/// read serves that path and sqlx's alike.
impl Cols for rusqlite::Row<'_> {
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.get(col).map_err(sqlite_error)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.get(col).map_err(sqlite_error)
    }
    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.get(col).map_err(sqlite_error)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.get(col).map_err(sqlite_error)
    }
    fn str_at(&self, i: usize) -> Result<&str, sqlx::Error> {
        self.get_ref(i)
            .map_err(sqlite_error)?
            .as_str()
            .map_err(|e| {
                sqlite_error(rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                ))
            })
    }
    fn int_at(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.get(i).map_err(sqlite_error)
    }
    fn opt_int_at(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
        self.get(i).map_err(sqlite_error)
    }
}

/// Whether `e` is a PostgreSQL deadlock (40P01) or serialization failure (40001): the
/// transaction was rolled back and may simply be run again.
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let d: &dyn DatabaseError = d.as_ref();
            matches!(d.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_sums_read_back_exactly() {
        assert_eq!(parse_wide("0:0"), Some(0));
        assert_eq!(parse_wide("9:223372036"), Some(9_223_372_036));
        assert_eq!(
            parse_wide("18446744073:1709551615"),
            Some(18_446_744_073 * 1_000_000_000 + 1_709_551_615)
        );
        assert_eq!(parse_wide("-3:-5"), Some(-3_000_000_005));
        assert_eq!(parse_wide("42"), Some(42));
        assert_eq!(parse_wide("x:1"), None);
    }

    #[tokio::test]
    async fn sqlite_sums_past_64_bits_without_failing() {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (v BIGINT)")
            .execute(&pool)
            .await
            .unwrap();
        for _ in 0..3 {
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind(i64::MAX)
                .execute(&pool)
                .await
                .unwrap();
        }
        let first = Sums::first(&Db::Sqlite {
            write: pool.clone(),
            read: pool.clone(),
        });
        let plain = match sqlx::query(&format!("SELECT {} FROM t", first.sum("v")))
            .fetch_one(&pool)
            .await
        {
            Ok(_) => panic!("SQLite's SUM does not overflow any more?"),
            Err(e) => e.to_string(),
        };
        let split = first.after(&plain).expect("an overflow sums again, split");
        assert_eq!(split.after("integer overflow"), None, "once");
        let row = sqlx::query(&format!(
            "SELECT {} AS s, {} AS e FROM t",
            split.sum("v"),
            split.sum("v * 0 + NULL")
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(row.wide("s").unwrap(), 3 * i128::from(i64::MAX));
        assert_eq!(row.wide_count("s").unwrap(), i64::MAX);
        assert_eq!(row.wide("e").unwrap(), 0);
    }

    #[tokio::test]
    async fn sqlite_accepts_dollar_placeholders_repeated_and_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let pool = SqlitePool::connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
        let row = sqlx::query("SELECT $1 AS a, $2 AS b, $1 + $2 AS c")
            .bind(40i64)
            .bind(2i64)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((row.int("a").unwrap(), row.int("b").unwrap()), (40, 2));
        assert_eq!(row.int("c").unwrap(), 42);
        // sqlx binds `$N` by its number, whatever the order of first use.
        let row = sqlx::query("SELECT $2 AS b, $1 AS a")
            .bind("first")
            .bind("second")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row.text("a").unwrap(), "first");
        assert_eq!(row.text("b").unwrap(), "second");
        // The generic QueryBuilder emits `?` for SQLite: both styles in one store are fine.
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT ");
        qb.push_bind(7i64).push(" AS x");
        assert_eq!(
            qb.build().fetch_one(&pool).await.unwrap().int("x").unwrap(),
            7
        );
    }
}
