//! Wiring and lifecycle of a node, in two steps (mini-redis's `server::run`, axum's app
//! function): [`Server::build`] opens the store, connects to Redis when configured, takes the
//! node's lease (closing runs dead nodes or a previous process left open), derives the
//! connection limits from the open-file limit and builds the shared state; [`Server::run`]
//! serves a listener through [`crate::listener`] until its shutdown future completes, then
//! shuts down gracefully (close clients with 1012, let runs finish within the grace period,
//! await every background task). [`serve`] is `apogee serve`: bind, print
//! `listening on http://ADDR`, run until SIGTERM/SIGINT. Tests run the same [`Server`]
//! in-process on a port-0 listener.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use apogee_store::{Store, UsageCacheLimits};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::decompression::RequestDecompressionLayer;

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::budgets::Budgets;
use crate::bus::{BusWorker, RedisBus, SharedRate};
use crate::config::{AuthMode, Config, Environment};
use crate::handshake_limit::HandshakeLimiter;
use crate::heartbeat::Heartbeat;
use crate::hub::{GraceLimits, Hub, StreamLimits};
use crate::ingest::IngestGate;
use crate::lease::NodeLease;
use crate::listener::{ConnectionLimits, ListenerConfig, RequestedLimits};
use crate::metrics::Metrics;
use crate::runs::RunRegistry;
use crate::session::SessionFactory;
use crate::state::{AppState, RestRates, Shared};
use crate::{budgets, costs, rest, static_ui, traces, ws};

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
    #[error("cannot set up the LLM client: {0}")]
    Llm(#[from] apogee_llm::LlmError),
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/health", get(rest::health))
        .route("/ready", get(rest::ready))
        .route("/metrics", get(rest::metrics_on_main))
        .route("/api/ws-ticket", post(rest::ws_ticket))
        .route("/api/threads", get(rest::threads))
        .route("/api/threads/{id}/messages", get(rest::thread_messages))
        .route("/api/runs/{id}/events", get(rest::run_events))
        .route("/api/usage", post(rest::ingest_usage))
        .route("/api/costs", get(costs::costs))
        .route("/api/recommendations", get(rest::recommendations))
        .route(
            "/api/budgets",
            get(budgets::routes::list).post(budgets::routes::create),
        )
        .route(
            "/api/budgets/{id}",
            get(budgets::routes::one)
                .patch(budgets::routes::change)
                .delete(budgets::routes::delete),
        )
        .route(
            "/api/webhooks",
            get(budgets::webhooks::list).post(budgets::webhooks::create),
        )
        .route(
            "/api/webhooks/{id}",
            axum::routing::delete(budgets::webhooks::delete),
        )
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

/// The router of a separate metrics address (`APOGEE_METRICS_ADDR`): `/metrics` only.
fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move { rest::metrics_text(&metrics) }
        }),
    )
}

/// Bounds of the separate metrics listener: a scraper or two, never a crowd.
const METRICS_LIMITS: ConnectionLimits = ConnectionLimits {
    open_files: 0,
    sockets: 64,
    per_ip: 16,
    websockets: 0,
    per_user: 0,
};

/// The node's connection limits, from the process's open-file limit and the configuration;
/// said in the log, since they decide when clients are refused.
fn connection_limits(config: &Config) -> ConnectionLimits {
    let open_files = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the open file limit; assuming 1024");
            1024
        }
    };
    let requested = RequestedLimits {
        websockets: config.max_connections,
        per_ip: config.max_connections_per_ip,
        per_user: config.max_connections_per_user,
    };
    let limits = ConnectionLimits::derive(open_files, requested);
    if limits.lowered(requested) {
        tracing::warn!(
            requested = config.max_connections,
            open_files,
            websockets = limits.websockets,
            "APOGEE_MAX_CONNECTIONS is more than the open file limit allows; lowered"
        );
    }
    tracing::info!(
        open_files,
        sockets = limits.sockets,
        per_ip = limits.per_ip,
        websockets = limits.websockets,
        websockets_per_user = limits.per_user,
        header_timeout_ms = config.header_timeout_ms,
        "connection limits"
    );
    limits
}

/// A node ready to serve: the store open, recovery done, the lease taken, every shared part
/// built; nothing listening and no background task running until [`Server::run`]. Tests
/// build one in-process and run it on a port-0 listener; `apogee serve` is [`serve`].
pub struct Server {
    config: Config,
    state: AppState,
    hub: Arc<Hub>,
    runs: Arc<RunRegistry>,
    lease: NodeLease,
    node_id: String,
    bus_worker: Option<BusWorker>,
    metrics_listener: Option<TcpListener>,
    connection_limits: ConnectionLimits,
}

impl Server {
    /// Opens the store, connects the bus (when configured), takes the node's lease (closing
    /// runs dead nodes or a previous process left open) and builds the state every handler
    /// shares. Binds the separate metrics listener when one is configured.
    pub async fn build(config: Config) -> Result<Server, ServeError> {
        if config.auth == AuthMode::Demo {
            // Its own target, so a test suite starting many demo servers can silence just this.
            tracing::warn!(target: "apogee_server::demo_auth", env = ?config.env, "demo auth is on: anyone can connect as any demo user; use APOGEE_AUTH=jwt for real deployments");
        }
        if config.env == Environment::Production {
            tracing::info!("running in production mode");
            if config.metrics_addr.is_none() && config.metrics_token.is_none() {
                tracing::warn!(
                    "/metrics is not served in production without APOGEE_METRICS_ADDR or APOGEE_METRICS_TOKEN"
                );
            }
        }
        let connection_limits = connection_limits(&config);
        let store = Store::open(&config.database_url)
            .await?
            .with_usage_cache(UsageCacheLimits {
                entries: config.usage_cache_entries,
                bytes: config.usage_cache_bytes,
            });
        let catalog = Arc::new(crate::prices::catalog(&config)?);
        let llm = match &config.llm {
            Some(c) => {
                tracing::info!(model = %c.model, base_url = %c.base_url, "the LLM planner is on");
                Some(Arc::new(apogee_llm::LlmClient::new(c.clone())?))
            }
            None => None,
        };
        let mut metrics = Metrics::new();
        metrics.observe_usage_cache(store.usage_cache_stats());
        if let Some(client) = &llm {
            metrics.observe_llm(Arc::clone(client));
        }
        let metrics = Arc::new(metrics);
        let limits = StreamLimits {
            replay_buffer: config.replay_buffer,
            event_retention: config.event_retention,
            messages_per_minute: config.messages_per_minute,
            message_burst: config.message_burst,
            grace: GraceLimits {
                grace: Duration::from_millis(config.stream_grace_ms),
                bytes: config.stream_grace_bytes,
            },
        };
        let node_id = uuid::Uuid::now_v7().to_string();
        let bus = match &config.redis_url {
            Some(url) => Some(RedisBus::new(url, node_id.clone(), Arc::clone(&metrics))?),
            None => None,
        };
        let hub = Arc::new(Hub::new(
            store.clone(),
            Arc::clone(&metrics),
            limits,
            bus.as_ref()
                .map(|(bus, _)| Arc::new(bus.clone()) as Arc<dyn crate::bus::Bus>),
            bus.as_ref()
                .map(|(_, worker)| Arc::new(SharedRate::new(worker.client().clone()))),
        ));
        let (bus, bus_worker) = bus.unzip();
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
        let runs = RunRegistry::new(
            config.max_runs_per_user,
            config.max_runs_executing,
            Arc::clone(&metrics),
            llm,
        );
        let budgets = Arc::new(Budgets::new(
            store.clone(),
            Arc::clone(&hub),
            Arc::clone(&metrics),
        ));
        let sessions = Arc::new(SessionFactory::new(
            store.clone(),
            Arc::clone(&hub),
            Arc::clone(&runs),
            catalog,
            Arc::clone(&budgets),
            node_id.clone(),
        ));
        let shutdown = CancellationToken::new();
        let state = AppState::new(Shared {
            auth: Arc::new(Authenticator::from_config(&config, store.clone()).await?),
            handshake_limit: Arc::new(HandshakeLimiter::new(config.handshake_failures_per_minute)),
            config: Arc::new(config.clone()),
            sessions,
            store,
            metrics,
            connections: TaskTracker::new(),
            heartbeat: Heartbeat::spawn(
                Duration::from_millis(config.heartbeat_ms),
                shutdown.clone(),
            ),
            shutdown,
            bus,
            admission: Arc::new(Admission::new(
                connection_limits.websockets,
                connection_limits.per_user,
            )),
            ingest: Arc::new(IngestGate::new(
                config.max_ingests_per_user,
                config.max_concurrent_ingests,
            )),
            rest_rates: Arc::new(RestRates::new(
                config.costs_per_minute,
                config.recommendations_per_minute,
            )),
            budgets,
            connection_ids: Arc::new(AtomicU64::new(0)),
        });
        let metrics_listener = match config.metrics_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| ServeError::Bind(addr, e))?;
                tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
                Some(listener)
            }
            None => None,
        };
        Ok(Server {
            config,
            state,
            hub,
            runs,
            lease,
            node_id,
            bus_worker,
            metrics_listener,
            connection_limits,
        })
    }

    /// What every handler shares (the store, sessions, metrics), for tests to look into.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves `listener` until `shutdown` completes, then shuts down gracefully: clients are
    /// closed with 1012, runs get the grace period to finish (then are recorded as
    /// interrupted), and every background task is awaited before the lease is released and
    /// the store closed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let Server {
            config,
            state,
            hub,
            runs,
            lease,
            node_id,
            bus_worker,
            metrics_listener,
            connection_limits,
        } = self;
        let stop = state.shutdown.clone();
        let store = state.store.clone();
        // The background tasks, each awaited below.
        let lease_task = tokio::spawn(lease.keep(stop.clone()));
        let budgets_task = tokio::spawn(
            Arc::clone(&state.budgets)
                .run(Duration::from_millis(config.budget_eval_ms), stop.clone()),
        );
        let webhooks_task = tokio::spawn(budgets::webhooks::deliver(
            store.clone(),
            Arc::clone(&state.metrics),
            Arc::clone(&state.budgets.webhooks_due),
            stop.clone(),
        ));
        // The bus's own tasks, awaited after everything that publishes has stopped.
        let bus_tasks = TaskTracker::new();
        if let Some(worker) = bus_worker {
            worker.spawn(Arc::clone(&hub) as _, &bus_tasks, stop.clone());
            hub.spawn_link_follower(stop.clone());
        }
        hub.spawn_grace_sweeper(stop.clone());
        let header_timeout = Duration::from_millis(config.header_timeout_ms);
        let metrics_task = metrics_listener.map(|l| {
            tokio::spawn(crate::listener::run(
                l,
                metrics_router(Arc::clone(&state.metrics)),
                ListenerConfig {
                    limits: METRICS_LIMITS,
                    header_timeout,
                },
                Arc::clone(&state.metrics),
                stop.clone(),
            ))
        });
        let connections = state.connections.clone();
        let metrics = Arc::clone(&state.metrics);
        let serving = crate::listener::run(
            listener,
            router(state),
            ListenerConfig {
                limits: connection_limits,
                header_timeout,
            },
            metrics,
            stop.clone(),
        );
        let signalled = async {
            tokio::select! {
                _ = shutdown => {
                    tracing::info!("shutting down: closing connections with 1012");
                    stop.cancel();
                }
                _ = stop.cancelled() => {}
            }
        };
        tokio::join!(serving, signalled);
        if let Some(task) = metrics_task {
            let _ = task.await;
        }

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
        let _ = budgets_task.await;
        let _ = webhooks_task.await;
        // Nothing publishes any more: the bus's and the hub's tasks end with the shutdown
        // signal (gap fills with their streams, all gone with their connections and runs).
        bus_tasks.close();
        bus_tasks.wait().await;
        if tokio::time::timeout(Duration::from_secs(5), hub.close())
            .await
            .is_err()
        {
            tracing::warn!("some stream tasks did not end in time");
        }
        // The lease goes last: with it gone, another node closes any run left at once.
        let _ = lease_task.await;
        NodeLease::release(&store, &node_id).await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `apogee serve`: builds the node, listens on the configured address, prints
/// `listening on http://ADDR` and runs until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let server = Server::build(config.clone()).await?;
    let listener = crate::listener::bind(config.addr, config.listen_backlog)
        .map_err(|e| ServeError::Bind(config.addr, e))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, db = %config.database_url, auth = ?config.auth, "apogee serving");
    server.run(listener, wait_for_signal()).await
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
