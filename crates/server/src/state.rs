//! The state every handler shares ([`AppState`], one pointer to [`Shared`]) and the per-user
//! REST rates it holds. Built once per node by [`crate::app::Server::build`].

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use apogee_analytics::formats::Limits;
use apogee_store::{Store, UserKey};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::budgets::Budgets;
use crate::bus::RedisBus;
use crate::config::Config;
use crate::handshake_limit::HandshakeLimiter;
use crate::heartbeat::Heartbeat;
use crate::ingest::IngestGate;
use crate::metrics::Metrics;
use crate::rate::RateTable;
use crate::session::SessionFactory;

/// Shared by every handler: one pointer, so a clone costs a reference count and eight bytes
/// (each open WebSocket connection keeps one for its whole life).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
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
    /// The one timer every WebSocket connection's heartbeat waits on.
    pub heartbeat: Arc<Heartbeat>,
    /// Cross-node fan-out, when Redis is configured.
    pub bus: Option<RedisBus>,
    /// Open WebSocket connections, per node and per user.
    pub admission: Arc<Admission>,
    /// Ingest requests in flight per user, and the node's parsing turns.
    pub ingest: Arc<IngestGate>,
    /// The per-user rates of the expensive REST calls.
    pub rest_rates: Arc<RestRates>,
    /// Budget evaluation, alert delivery and org members.
    pub budgets: Arc<Budgets>,
    pub(crate) connection_ids: Arc<AtomicU64>,
}

/// Per-user rates of the REST calls that cost real work (HTTP 429 beyond).
pub struct RestRates {
    pub costs: RateTable<UserKey>,
    pub recommendations: RateTable<UserKey>,
}

impl RestRates {
    /// `per_minute` sustained each, with a burst of a third of it.
    pub fn new(costs_per_minute: u32, recommendations_per_minute: u32) -> RestRates {
        let burst = |per_minute: u32| (per_minute / 3).max(1);
        RestRates {
            costs: RateTable::new(costs_per_minute, burst(costs_per_minute)),
            recommendations: RateTable::new(
                recommendations_per_minute,
                burst(recommendations_per_minute),
            ),
        }
    }
}

impl Shared {
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// What one ingest request may hold.
    pub fn ingest_limits(&self) -> Limits {
        Limits {
            max_records: self.config.max_records_per_request,
            ..Limits::default()
        }
    }
}
