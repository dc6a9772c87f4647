//! The node's subscription connection: which user channels it listens to (counted by the
//! subscribes of the hub), handing each message to the handler under its user's key, and
//! what happens while the connection is down (retry with backoff, the handler told, every
//! channel resubscribed once it is back).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apogee_store::UserKey;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BusHandler, Command, decode};
use crate::metrics::Metrics;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A channel this node follows, and for whom.
struct Route {
    subscribed: usize,
    key: UserKey,
}

type Routes = HashMap<String, Route>;

pub(super) async fn run(
    client: redis::Client,
    node_id: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
    connected: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    handler: Arc<dyn BusHandler>,
    shutdown: CancellationToken,
) {
    let mut routes = Routes::new();
    let mut backoff = Duration::from_millis(100);
    let mut was_up = true;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()) => r,
        };
        match attempt {
            Ok(Ok(pubsub)) => {
                let (mut sink, mut messages) = pubsub.split();
                let channels: Vec<&String> = routes.keys().collect();
                let resubscribed = channels.is_empty() || sink.subscribe(&channels).await.is_ok();
                if resubscribed {
                    connected.store(true, Ordering::Release);
                    metrics.bus_connected.set(1);
                    tracing::info!(channels = routes.len(), "subscribed to Redis");
                    backoff = Duration::from_millis(100);
                    was_up = true;
                    handler.link_up();
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            command = commands.recv() => {
                                let Some(command) = command else { return };
                                if handle(command, &mut routes, Some(&mut sink)).await.is_err() {
                                    break;
                                }
                            }
                            message = messages.next() => match message {
                                Some(m) => route(&routes, &node_id, &m, handler.as_ref()),
                                None => break,
                            },
                        }
                    }
                    connected.store(false, Ordering::Release);
                    metrics.bus_connected.set(0);
                    tracing::warn!(
                        "lost the Redis subscription; polling the store until it is back"
                    );
                }
            }
            Ok(Err(e)) if was_up => {
                tracing::warn!(error = %e, "cannot reach Redis; polling the store until it answers");
                was_up = false;
            }
            Err(_) if was_up => {
                tracing::warn!("Redis did not answer in time; polling the store until it does");
                was_up = false;
            }
            _ => {}
        }
        handler.link_down();
        // Down: keep taking subscribes and unsubscribes until the next attempt.
        let retry_at = Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(retry_at) => break,
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let _ = handle(command, &mut routes, None).await;
                }
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies a subscribe or unsubscribe; with a live `sink` also (un)subscribes on Redis.
/// `Err` when the connection broke.
async fn handle(
    command: Command,
    routes: &mut Routes,
    sink: Option<&mut PubSubSink>,
) -> Result<(), redis::RedisError> {
    match command {
        Command::Subscribe { channel, key, done } => {
            let route = routes
                .entry(channel.clone())
                .or_insert(Route { subscribed: 0, key });
            route.subscribed += 1;
            if route.subscribed == 1
                && let Some(sink) = sink
            {
                sink.subscribe(&channel).await?;
            }
            let _ = done.send(());
        }
        Command::Unsubscribe { channel } => {
            let gone = match routes.get_mut(&channel) {
                Some(route) => {
                    route.subscribed = route.subscribed.saturating_sub(1);
                    route.subscribed == 0
                }
                None => false,
            };
            if gone {
                routes.remove(&channel);
                if let Some(sink) = sink {
                    sink.unsubscribe(&channel).await?;
                }
            }
        }
    }
    Ok(())
}

fn route(routes: &Routes, node_id: &str, message: &redis::Msg, handler: &dyn BusHandler) {
    let Some(route) = routes.get(message.get_channel_name()) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
        tracing::warn!("ignored a non-UTF-8 message on an event channel");
        return;
    };
    match decode(text) {
        // This node delivered its own events when it stored them.
        Some((_, origin, _)) if origin == node_id => {}
        Some((seq, _, payload)) => handler.remote_event(&route.key, seq, payload),
        None => tracing::warn!("ignored a malformed message on an event channel"),
    }
}
