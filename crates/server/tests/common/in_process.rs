//! The server in the test's own process: [`apogee_server::app::Server`] built from a
//! configuration and run on a port-0 listener, reached with the same real WebSocket and HTTP
//! clients as the binary. No child process: start-up takes milliseconds, and a shutdown is a
//! future the test completes. Crash and restart stay with the binary ([`super::Server`]).

use std::collections::HashMap;

use apogee_server::app::{ServeError, Server};
use apogee_server::config::Config;
use apogee_store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Client, WAIT};

pub struct InProcess {
    pub addr: String,
    /// The store's URL, to open it again once the server stopped.
    pub database_url: String,
    /// The data directory, kept until the server and the test are done with it.
    dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl InProcess {
    /// Builds and runs a node on a fresh SQLite database with `env` as its only
    /// configuration (no variable of the test's own environment is read).
    pub async fn start(env: &[(&str, &str)]) -> InProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars: HashMap<String, String> = HashMap::from([
            ("APOGEE_ADDR".into(), "127.0.0.1:0".into()),
            (
                "APOGEE_DATA_DIR".into(),
                dir.path().to_string_lossy().into_owned(),
            ),
        ]);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::load(None, |name| vars.get(name).cloned()).expect("configuration");
        let database_url = config.database_url.clone();
        let server = Server::build(config).await.expect("build the server");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async {
            let _ = stopped.await;
        }));
        InProcess {
            addr,
            database_url,
            dir: Some(dir),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn ws(&self, query: &str) -> Client {
        Client::connect(&self.addr, query, &[])
            .await
            .expect("connect")
    }

    /// Starts the graceful shutdown (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until the server has stopped (every task awaited, store closed).
    /// Returns the data directory, for a look at what the node left.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("the server stopped in time")
                .expect("the server task did not panic")
                .expect("the server stopped cleanly");
        }
        self.dir.take().expect("the data directory")
    }

    /// The store, opened again (after [`InProcess::stop`], to see what the node left).
    pub async fn reopen_store(database_url: &str) -> Store {
        Store::open(database_url).await.expect("open store")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}
