//! The node's subscription connection: which user channels it listens to (reference-counted
//! by the streams that asked), routing each message to its stream, and what happens while
//! the connection is down (retry with backoff, streams poll the store, resubscribe and catch
//! up once it is back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use apogee_store::{Store, UserKey};
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Command, POLL_WHILE_DOWN, decode};
use crate::hub::UserStream;
use crate::metrics::Metrics;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The streams on this node that follow a channel.
struct Route {
    joined: usize,
    stream: Weak<UserStream>,
}

type Routes = HashMap<String, Route>;

pub(super) async fn run(
    client: redis::Client,
    store: Store,
    node_id: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
    connected: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut routes = Routes::new();
    let polling = Arc::new(AtomicBool::new(false));
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
                    // Events other nodes stored while this node was not listening.
                    catch_up(&routes, &store, &polling);
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
                                Some(m) => route(&routes, &node_id, &m),
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
        // Down: keep taking joins and leaves, and poll, until the next attempt.
        let retry_at = Instant::now() + backoff;
        let mut poll = tokio::time::interval(POLL_WHILE_DOWN);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(retry_at) => break,
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let _ = handle(command, &mut routes, None).await;
                }
                _ = poll.tick() => catch_up(&routes, &store, &polling),
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies a join or leave; with a live `sink` also (un)subscribes on Redis. `Err` when the
/// connection broke.
async fn handle(
    command: Command,
    routes: &mut Routes,
    sink: Option<&mut PubSubSink>,
) -> Result<(), redis::RedisError> {
    match command {
        Command::Join {
            channel,
            stream,
            done,
        } => {
            let route = routes.entry(channel.clone()).or_insert(Route {
                joined: 0,
                stream: Weak::new(),
            });
            route.joined += 1;
            route.stream = stream;
            if route.joined == 1
                && let Some(sink) = sink
            {
                sink.subscribe(&channel).await?;
            }
            let _ = done.send(());
        }
        Command::Leave { channel } => {
            let gone = match routes.get_mut(&channel) {
                Some(route) => {
                    route.joined = route.joined.saturating_sub(1);
                    route.joined == 0
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

fn route(routes: &Routes, node_id: &str, message: &redis::Msg) {
    let Some(stream) = routes
        .get(message.get_channel_name())
        .and_then(|r| r.stream.upgrade())
    else {
        return;
    };
    let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
        tracing::warn!("ignored a non-UTF-8 message on an event channel");
        return;
    };
    match decode(text) {
        // This node delivered its own events when it stored them.
        Some((_, origin, _)) if origin == node_id => {}
        Some((seq, _, payload)) => stream.receive_remote(seq, payload),
        None => tracing::warn!("ignored a malformed message on an event channel"),
    }
}

/// Has every followed stream read what it missed from the store; one pass at a time, with
/// the heads of all streams read in a few statements rather than one query per stream.
fn catch_up(routes: &Routes, store: &Store, polling: &Arc<AtomicBool>) {
    if polling.swap(true, Ordering::AcqRel) {
        return;
    }
    let streams: HashMap<UserKey, Arc<UserStream>> = routes
        .values()
        .filter_map(|r| r.stream.upgrade())
        .map(|s| (s.key().clone(), s))
        .collect();
    let (store, polling) = (store.clone(), Arc::clone(polling));
    tokio::spawn(async move {
        let keys: Vec<UserKey> = streams.keys().cloned().collect();
        match store.head_seqs(&keys).await {
            Ok(heads) => {
                for (key, head) in heads {
                    if let Some(stream) = streams.get(&key) {
                        stream.catch_up_to(head).await;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read stream heads to catch up"),
        }
        polling.store(false, Ordering::Release);
    });
}
