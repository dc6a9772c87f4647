//! Test support (feature `test-support`, and this crate's unit tests): a fresh, empty store
//! per test on each backend, so every store test runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL tests need `APOGEE_TEST_DATABASE_URL`, the URL of a server on which a test may
//! `CREATE DATABASE` (e.g. `postgres://postgres@127.0.0.1:55432/postgres`); each test gets a
//! database of its own. The multi-node tests also need `APOGEE_TEST_REDIS_SERVER` (a
//! `redis-server` binary), the sign-in tests `APOGEE_TEST_OIDC_PROVIDER` (the OpenID provider
//! they start). `scripts/test` and `scripts/with-services` set all three.
//!
//! A missing service fails the test that needs it, loudly — a test that quietly does less
//! than it says is worse than one that fails. The one way around it is the explicit opt-out
//! `APOGEE_TEST_SKIP_SERVICES=1`: the parts that need the service are then skipped, and the
//! test binary prints which when it exits, on the real stderr (libtest captures what tests
//! print, so a note printed by the test itself would be hidden). CI (`CI=true`) never opts
//! out: there the opt-out itself is a failure.

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

/// A fresh store on SQLite, plus one on PostgreSQL (panics when no server is configured,
/// unless the services are skipped on purpose: see the module docs).
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

/// A store on a fresh PostgreSQL database; `None` only when the services are skipped on
/// purpose.
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

/// A new, empty PostgreSQL database (nothing applied yet); `None` only when the services
/// are skipped on purpose.
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

/// The configured server URL; `None` only when the services were skipped on purpose.
fn postgres_server() -> Option<String> {
    service_env(DATABASE_URL_VAR)
}

/// The variable naming the `redis-server` binary the multi-node tests start Redis with.
pub const REDIS_SERVER_VAR: &str = "APOGEE_TEST_REDIS_SERVER";

/// The variable naming the script of the OpenID provider the sign-in tests start on loopback
/// (`crates/server/tests/oidc_provider`, run with Node; `scripts/oidc-provider` sets it up).
pub const OIDC_PROVIDER_VAR: &str = "APOGEE_TEST_OIDC_PROVIDER";

/// Set to `1` to run the tests without PostgreSQL and Redis (what needs them is skipped and
/// listed when the test binary exits). Refused under CI.
pub const SKIP_SERVICES_VAR: &str = "APOGEE_TEST_SKIP_SERVICES";

/// The value of `var`, which names a service tests need (a server URL, a binary).
///
/// Unset: a panic saying how to provide it — unless the developer opted out with
/// [`SKIP_SERVICES_VAR`]`=1` (refused under `CI=true`), in which case the skip is recorded for
/// the summary printed at exit and the answer is `None`.
pub fn service_env(var: &str) -> Option<String> {
    let service = match var {
        DATABASE_URL_VAR => "PostgreSQL",
        REDIS_SERVER_VAR => "Redis",
        OIDC_PROVIDER_VAR => "the test OpenID provider (Node)",
        _ => var,
    };
    service_decision(
        service,
        var,
        std::env::var(var).ok().filter(|v| !v.is_empty()),
        std::env::var(SKIP_SERVICES_VAR).ok().as_deref() == Some("1"),
        std::env::var("CI").ok().as_deref() == Some("true"),
    )
}

/// [`service_env`] with the environment already read (so the rules are unit-testable).
fn service_decision(
    service: &str,
    var: &str,
    value: Option<String>,
    opted_out: bool,
    ci: bool,
) -> Option<String> {
    if let Some(value) = value {
        return Some(value);
    }
    if opted_out && ci {
        panic!(
            "{SKIP_SERVICES_VAR}=1 under CI=true: CI never skips the tests that need \
             {service}; run them through ./scripts/test, which starts PostgreSQL and Redis"
        );
    }
    if !opted_out {
        panic!(
            "this test needs {service} and {var} is not set. Run the tests through \
             ./scripts/test (everything), or ./scripts/with-services cargo test -p CRATE \
             (one crate; both start PostgreSQL and Redis), or set {SKIP_SERVICES_VAR}=1 to \
             skip what needs {service} on purpose (a summary of what was skipped is printed)"
        );
    }
    skipped::record(service);
    None
}

/// What the opt-out skipped in this test binary, printed once when the process exits.
mod skipped {
    use std::io::Write;
    use std::sync::{Mutex, Once};

    /// `(test, service)` pairs, in the order the skips happened.
    static SKIPS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    static AT_EXIT: Once = Once::new();

    /// Records that the running test skipped what needs `service`. libtest names each
    /// test's thread after the test, which is how the summary knows the test.
    pub(super) fn record(service: &str) {
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        if let Ok(mut skips) = SKIPS.lock() {
            skips.push((test, service.to_string()));
        }
        AT_EXIT.call_once(|| {
            // SAFETY: `print_summary` is a plain `extern "C" fn` taking no arguments; libc
            // runs it once, on the exiting thread, after libtest has printed its results.
            unsafe {
                libc::atexit(print_summary);
            }
        });
    }

    /// The summary, e.g. `3 tests skipped what needs PostgreSQL: a, b, c`.
    pub(super) fn summary(skips: &[(String, String)]) -> String {
        let mut services: Vec<&str> = skips.iter().map(|(_, s)| s.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        let mut out = String::new();
        for service in services {
            let mut tests: Vec<&str> = skips
                .iter()
                .filter(|(_, s)| s == service)
                .map(|(t, _)| t.as_str())
                .collect();
            tests.sort_unstable();
            tests.dedup();
            out.push_str(&format!(
                "SKIPPED ({}=1): {} test(s) skipped what needs {service}: {}\n",
                super::SKIP_SERVICES_VAR,
                tests.len(),
                tests.join(", ")
            ));
        }
        out
    }

    extern "C" fn print_summary() {
        let Ok(skips) = SKIPS.lock() else { return };
        // Straight to the process's stderr: libtest's capture only takes the `print!`
        // family of macros, and by now no test is running anyway.
        let _ = std::io::stderr().write_all(summary(&skips).as_bytes());
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

    #[test]
    fn a_configured_service_is_used_whatever_else_is_set() {
        for (opted_out, ci) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(
                service_decision("PostgreSQL", "V", Some("pg://x".into()), opted_out, ci),
                Some("pg://x".into())
            );
        }
    }

    #[test]
    #[should_panic(expected = "this test needs PostgreSQL and V is not set")]
    fn a_missing_service_fails_without_the_opt_out() {
        service_decision("PostgreSQL", "V", None, false, false);
    }

    #[test]
    #[should_panic(expected = "this test needs Redis and V is not set")]
    fn a_missing_service_fails_under_ci() {
        service_decision("Redis", "V", None, false, true);
    }

    #[test]
    #[should_panic(expected = "CI never skips")]
    fn ci_never_opts_out() {
        service_decision("PostgreSQL", "V", None, true, true);
    }

    #[test]
    fn the_summary_names_each_skipped_test_once_per_service() {
        let skips = [
            ("t::b", "Redis"),
            ("t::a", "PostgreSQL"),
            ("t::b", "PostgreSQL"),
            ("t::a", "PostgreSQL"),
        ]
        .map(|(t, s)| (t.to_string(), s.to_string()));
        assert_eq!(
            skipped::summary(&skips),
            "SKIPPED (APOGEE_TEST_SKIP_SERVICES=1): 2 test(s) skipped what needs PostgreSQL: t::a, t::b\n\
             SKIPPED (APOGEE_TEST_SKIP_SERVICES=1): 1 test(s) skipped what needs Redis: t::b\n"
        );
    }
}
