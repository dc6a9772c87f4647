//! Wiring and lifecycle of `apogee serve`: opens the store, connects to Redis when configured,
//! takes the node's lease (closing runs dead nodes or a previous process left open), builds
//! the router, prints `listening on http://ADDR`, and shuts down gracefully
//! on SIGTERM/SIGINT (close clients with 1012, let runs finish within the grace period).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use apogee_store::Store;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::decompression::RequestDecompressionLayer;

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::config::{AuthMode, Config, Environment};
use crate::handshake_limit::HandshakeLimiter;
use crate::hub::{Hub, StreamLimits};
use crate::lease::NodeLease;
use crate::metrics::Metrics;
use crate::runs::RunRegistry;
use crate::session::SessionFactory;
use crate::{rest, static_ui, traces, ws};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the database: {0}")]
    Store(#[from] apogee_store::StoreError),
    #[error(transparent)]
    Prices(#[from] crate::prices::PricesError),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("the built-in price catalog is invalid: {0}")]
    Catalog(#[from] apogee_analytics::CatalogError),
    #[error("cannot set up Redis: {0}")]
    Bus(#[from] crate::bus::BusError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    /// Failed handshakes per client IP (429 beyond the configured rate).
    pub handshake_limit: Arc<HandshakeLimiter>,
    pub sessions: Arc<SessionFactory>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Connection tasks, so shutdown can wait for their close frames.
    pub connections: TaskTracker,
    /// Fired once at shutdown.
    pub shutdown: CancellationToken,
    /// Cross-node fan-out, when Redis is configured.
    pub bus: Option<Bus>,
    connection_ids: Arc<AtomicU64>,
    /// Connections admitted and not yet ended (the per-node limit).
    open_connections: Arc<AtomicUsize>,
}

/// One admitted connection; releases its place in the node's limit when dropped.
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AppState {
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Takes a place under `max_connections`, or `None` when the node is full.
    pub fn admit_connection(&self) -> Option<ConnectionSlot> {
        let before = self.open_connections.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(Arc::clone(&self.open_connections));
        (before < self.config.max_connections).then_some(slot)
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/health", get(rest::health))
        .route("/ready", get(rest::ready))
        .route("/metrics", get(rest::metrics))
        .route("/api/ws-ticket", post(rest::ws_ticket))
        .route("/api/threads", get(rest::threads))
        .route("/api/threads/{id}/messages", get(rest::thread_messages))
        .route("/api/runs/{id}/events", get(rest::run_events))
        .route("/api/usage", post(rest::ingest_usage))
        .route("/api/costs", get(rest::costs))
        .route("/api/recommendations", get(rest::recommendations))
        .merge(static_ui::routes())
        .merge(crate::oidc::routes())
        // OTLP exporters (the Collector by default) gzip their bodies; the body limit below
        // applies to the decompressed bytes, so a small bomb is still a 413.
        .route(
            "/v1/traces",
            post(traces::traces).layer(RequestDecompressionLayer::new()),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Runs the server until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    if config.auth == AuthMode::Demo {
        tracing::warn!(env = ?config.env, "demo auth is on: anyone can connect as any demo user; use APOGEE_AUTH=jwt for real deployments");
    }
    if config.env == Environment::Production {
        tracing::info!("running in production mode");
    }
    let store = Store::open(&config.database_url).await?;
    let catalog = Arc::new(crate::prices::catalog(&config)?);
    let metrics = Arc::new(Metrics::new());
    let limits = StreamLimits {
        replay_buffer: config.replay_buffer,
        event_retention: config.event_retention,
        messages_per_minute: config.messages_per_minute,
        message_burst: config.message_burst,
    };
    let shutdown = CancellationToken::new();
    let node_id = uuid::Uuid::now_v7().to_string();
    let bus = match &config.redis_url {
        Some(url) => Some(Bus::start(
            url,
            store.clone(),
            node_id.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        )?),
        None => None,
    };
    let hub = Arc::new(Hub::new(
        store.clone(),
        Arc::clone(&metrics),
        limits,
        bus.clone(),
    ));
    let (lease, closed) = NodeLease::register(
        store.clone(),
        Arc::clone(&hub),
        node_id.clone(),
        Duration::from_millis(config.node_lease_ms),
    )
    .await?;
    if closed > 0 {
        tracing::warn!(
            runs = closed,
            "closed runs left open by a stopped or dead node"
        );
    }
    let lease_task = tokio::spawn(lease.keep(shutdown.clone()));
    let runs = RunRegistry::new(config.max_runs_per_user, Arc::clone(&metrics));
    let sessions = Arc::new(SessionFactory::new(
        store.clone(),
        hub,
        Arc::clone(&runs),
        catalog,
        node_id.clone(),
    ));
    let state = AppState {
        auth: Arc::new(Authenticator::from_config(&config, store.clone()).await?),
        handshake_limit: Arc::new(HandshakeLimiter::new(config.handshake_failures_per_minute)),
        config: Arc::new(config.clone()),
        sessions,
        store: store.clone(),
        metrics,
        connections: TaskTracker::new(),
        shutdown,
        bus,
        connection_ids: Arc::new(AtomicU64::new(0)),
        open_connections: Arc::new(AtomicUsize::new(0)),
    };
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|e| ServeError::Bind(config.addr, e))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, db = %config.database_url, auth = ?config.auth, "apogee serving");

    let shutdown = state.shutdown.clone();
    let connections = state.connections.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: closing connections with 1012");
        shutdown.cancel();
    });
    let shutdown = state.shutdown.clone();
    let listener = listener.tap_io(tune_socket);
    // Connect info gives handlers the peer address, for the per-IP handshake limit.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await?;

    connections.close();
    if tokio::time::timeout(Duration::from_secs(5), connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    let left = runs
        .drain(Duration::from_millis(config.shutdown_grace_ms))
        .await;
    if left > 0 {
        tracing::warn!(
            runs = left,
            "runs still in flight at shutdown; the next node to look closes them as interrupted"
        );
    }
    // The lease goes last: with it gone, another node closes any run left at once.
    let _ = lease_task.await;
    NodeLease::release(&store, &node_id).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Kernel send buffer per connection. Fixed rather than auto-tuned: it bounds the memory a
/// client that stops reading can pin in the kernel, and makes such a client fill its send
/// queue (and get 1013) after a predictable amount of data. Events are small frames.
const SOCKET_SEND_BUFFER: usize = 64 * 1024;

fn tune_socket(tcp: &mut tokio::net::TcpStream) {
    // Events are small and latency matters more than packet count.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    if let Err(e) = socket2::SockRef::from(&*tcp).set_send_buffer_size(SOCKET_SEND_BUFFER) {
        tracing::debug!(error = %e, "could not set the socket send buffer");
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
