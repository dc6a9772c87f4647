//! The node's publishing connection: sends persisted events to their user channels in
//! pipelined batches, retrying a batch until Redis takes it (receivers drop duplicates by
//! `seq`, so a retried batch is harmless).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Outgoing;
use crate::metrics::Metrics;

const BATCH: usize = 512;
const TIMEOUT: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);

pub(super) async fn run(
    client: redis::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = shutdown.cancelled() => return,
        };
        if n == 0 {
            return;
        }
        let mut pipe = redis::pipe();
        for item in &batch {
            pipe.cmd("PUBLISH")
                .arg(&item.channel)
                .arg(&item.message)
                .ignore();
        }
        loop {
            if connection.is_none() {
                connection =
                    tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
                        .await
                        .ok()
                        .and_then(Result::ok);
            }
            if let Some(c) = connection.as_mut() {
                match tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(c)).await {
                    Ok(Ok(())) => {
                        metrics.bus_published.inc_by(n as u64);
                        break;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "could not publish; retrying"),
                    Err(_) => tracing::debug!("publishing timed out; retrying"),
                }
                connection = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        batch.clear();
    }
}
