//! PostgreSQL and Redis for the multi-node tests. `scripts/test` (via `scripts/services`)
//! starts a throwaway PostgreSQL server and names the redis-server binary; each test gets a
//! database of its own (`apogee_store::test_support`) and a Redis process of its own that it
//! can stop and start again. A missing service fails the test unless the developer opted out
//! with `APOGEE_TEST_SKIP_SERVICES=1` (never under CI; see `apogee_store::test_support`).

use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use apogee_store::test_support::FreshDatabase;

use super::WAIT;

/// A fresh, empty database on the test PostgreSQL server (dropped with the value); `None`
/// only when the services are skipped on purpose.
pub async fn postgres_database() -> Option<FreshDatabase> {
    apogee_store::test_support::fresh_postgres().await
}

/// A Redis server of the test's own on a free loopback port, killed when dropped.
pub struct Redis {
    binary: String,
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// `None` only when the services are skipped on purpose.
    pub async fn start() -> Option<Redis> {
        let binary =
            apogee_store::test_support::service_env(apogee_store::test_support::REDIS_SERVER_VAR)?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("pick a port");
            l.local_addr().expect("port").port()
        };
        let mut redis = Redis {
            binary,
            port,
            child: None,
        };
        redis.start_again().await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it accepts connections.
    pub async fn start_again(&mut self) {
        let child = Command::new(&self.binary)
            .env_clear()
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (every connection to it drops at once).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }
}
