//! Node leases: each node records itself in the store and renews its lease while it runs;
//! every node regularly takes over the runs of nodes whose lease ran out (and runs of no
//! known node) and closes them as interrupted, so each `agent_started` keeps its end even when
//! the node that ran it died. Exactly one node takes each run (the store's claim is atomic).
//! With the embedded SQLite database there is only ever one node: at start it takes every
//! run a previous process left open.

use std::sync::Arc;
use std::time::Duration;

use apogee_store::{Backend, RunRow, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::recovery;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// This node's lease in the store.
pub struct NodeLease {
    store: Store,
    hub: Arc<Hub>,
    node_id: String,
    lease: Duration,
}

impl NodeLease {
    /// Registers the node and closes the runs no live node owns. Returns how many it closed.
    pub async fn register(
        store: Store,
        hub: Arc<Hub>,
        node_id: String,
        lease: Duration,
    ) -> Result<(NodeLease, usize), StoreError> {
        store.register_node(&node_id, now_ms()).await?;
        let lease = NodeLease {
            store,
            hub,
            node_id,
            lease,
        };
        let live_after = match lease.store.backend() {
            // Nobody else can be running: whatever is open was left by a previous process.
            Backend::Sqlite => i64::MAX,
            Backend::Postgres => lease.live_after(),
        };
        let closed = lease.take_over(live_after).await?;
        Ok((lease, closed))
    }

    fn live_after(&self) -> i64 {
        now_ms() - i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    async fn take_over(&self, live_after: i64) -> Result<usize, StoreError> {
        let runs: Vec<RunRow> = self
            .store
            .claim_orphan_runs(&self.node_id, live_after)
            .await?;
        for run in &runs {
            recovery::close_claimed_run(&self.store, &self.hub, run).await?;
        }
        Ok(runs.len())
    }

    /// Renews the lease every fifth of it and looks for dead nodes' runs every half, until
    /// `shutdown`; then removes the node, so its remaining runs are taken over at once.
    pub async fn keep(self, shutdown: CancellationToken) {
        if self.store.backend() == Backend::Sqlite {
            // One node only: nobody reads its lease, and there are no other nodes to check.
            return;
        }
        let mut renew = tokio::time::interval(self.lease / 5);
        let mut sweep = tokio::time::interval(self.lease / 2);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = renew.tick() => match self.store.heartbeat_node(&self.node_id, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(node_id = %self.node_id, "this node's lease was taken as expired; registering again");
                        if let Err(e) = self.store.register_node(&self.node_id, now_ms()).await {
                            tracing::warn!(error = %e, "could not register the node again");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not renew the node lease"),
                },
                _ = sweep.tick() => match self.take_over(self.live_after()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(runs = n, "closed runs of a node that stopped renewing its lease"),
                    Err(e) => tracing::warn!(error = %e, "could not take over dead nodes' runs"),
                },
            }
        }
    }

    /// Removes the node at shutdown, once its runs are drained.
    pub async fn release(store: &Store, node_id: &str) {
        if let Err(e) = store.remove_node(node_id).await {
            tracing::warn!(error = %e, "could not remove the node's lease");
        }
    }
}
