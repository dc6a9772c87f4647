//! Cross-node fan-out through Redis. Every node publishes each event it persisted on its
//! user's channel, and subscribes to the channels of the users it has streams for; events are
//! then ordered and de-duplicated by `seq` in [`crate::hub`], which fills any gap from the
//! store. Redis is never the record (the database is), so a lost message costs latency, not
//! an event. Also holds the per-user message rate shared by all nodes.
//!
//! While Redis is unreachable the node keeps serving: its own events reach its own
//! connections as before, other nodes' events reach them by polling the store
//! ([`POLL_WHILE_DOWN`]), and the message rate falls back to a per-node bucket.

mod limiter;
mod publisher;
mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use apogee_store::{Store, UserKey};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::hub::UserStream;
use crate::metrics::Metrics;

pub use limiter::SharedRate;

/// How often streams catch up from the store while the subscription connection is down.
pub const POLL_WHILE_DOWN: Duration = Duration::from_secs(1);
/// How long a new stream waits for Redis to confirm its subscription before going on
/// without it (it is then covered by polling until Redis answers).
pub const JOIN_WAIT: Duration = Duration::from_millis(500);
/// Events waiting to be published at most; beyond it they are dropped (other nodes then
/// fill them from the store when their next event or their reconnect reveals the gap).
const PUBLISH_QUEUE: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid Redis URL: {0}")]
    Url(#[from] redis::RedisError),
}

/// An event on the wire between nodes.
pub(crate) struct Outgoing {
    channel: Arc<str>,
    message: String,
}

pub(crate) enum Command {
    /// Start routing the user's channel to `stream`; `done` fires once Redis confirmed.
    Join {
        channel: String,
        stream: Weak<UserStream>,
        done: oneshot::Sender<()>,
    },
    /// A stream of the channel went away.
    Leave { channel: String },
}

/// Handle to the node's Redis connections; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    /// Unbounded because a leave is sent from `Drop`, which cannot wait, and a lost leave would
    /// keep a channel subscribed forever. It holds at most one join and one leave per stream
    /// created on this node, and the subscriber task drains it without I/O while Redis is down.
    commands: mpsc::UnboundedSender<Command>,
    outgoing: mpsc::Sender<Outgoing>,
    /// Whether the subscription connection is up (what `/ready` reports).
    connected: Arc<AtomicBool>,
    rate: SharedRate,
    metrics: Arc<Metrics>,
}

/// The user's channel. The org's length comes first so no two (org, user) pairs share one.
pub fn channel(key: &UserKey) -> String {
    format!(
        "apogee:ev:{}:{}:{}",
        key.org_id.len(),
        key.org_id,
        key.user_id
    )
}

/// `seq`, origin node and the stored frame, space-separated (the frame is the rest).
fn encode(node_id: &str, seq: u64, payload: &str) -> String {
    format!("{seq} {node_id} {payload}")
}

/// The inverse of [`encode`]; `None` for anything else on the channel.
fn decode(message: &str) -> Option<(u64, &str, &str)> {
    let (seq, rest) = message.split_once(' ')?;
    let (node, payload) = rest.split_once(' ')?;
    Some((seq.parse().ok()?, node, payload))
}

impl Bus {
    /// Starts the publisher and subscriber tasks; they reconnect by themselves until
    /// `shutdown` fires. Fails only on a malformed URL, never because Redis is down.
    pub fn start(
        url: &str,
        store: Store,
        node_id: String,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Bus, BusError> {
        let client = redis::Client::open(url)?;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::channel(PUBLISH_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        tokio::spawn(subscriber::run(
            client.clone(),
            store,
            node_id.clone(),
            commands_rx,
            Arc::clone(&connected),
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
        tokio::spawn(publisher::run(
            client.clone(),
            outgoing_rx,
            Arc::clone(&metrics),
            shutdown,
        ));
        Ok(Bus {
            inner: Arc::new(Inner {
                node_id,
                commands,
                outgoing,
                connected,
                rate: SharedRate::new(client),
                metrics,
            }),
        })
    }

    /// Whether the subscription connection to Redis is up.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// The user's channel on this bus (its name made once, for every event of the stream).
    pub fn user_channel(&self, key: &UserKey) -> UserChannel {
        UserChannel {
            bus: self.clone(),
            name: channel(key).into(),
        }
    }

    /// The user's message rate across every node; `None` when Redis did not answer in time
    /// (the caller then uses its node-local bucket).
    pub async fn admit_message(
        &self,
        key: &UserKey,
        per_minute: u32,
        burst: u32,
    ) -> Option<Result<(), Duration>> {
        self.inner.rate.admit(key, per_minute, burst).await
    }
}

/// One user's channel, held by that user's stream on this node.
pub struct UserChannel {
    bus: Bus,
    /// Shared with every outgoing event rather than copied into each.
    name: Arc<str>,
}

impl UserChannel {
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Routes the channel to `stream`. The answer fires once Redis confirmed the subscription
    /// (at once while Redis is down: polling covers the stream then), so every event stored
    /// after it fired reaches the stream through Redis or a poll.
    pub fn join(&self, stream: Weak<UserStream>) -> oneshot::Receiver<()> {
        let (done, confirmed) = oneshot::channel();
        let _ = self.bus.inner.commands.send(Command::Join {
            channel: self.name.to_string(),
            stream,
            done,
        });
        confirmed
    }

    /// The stream is gone from this node.
    pub fn leave(&self) {
        let _ = self.bus.inner.commands.send(Command::Leave {
            channel: self.name.to_string(),
        });
    }

    /// Offers a persisted event to the other nodes; never waits.
    pub fn publish(&self, seq: u64, payload: &str) {
        let inner = &self.bus.inner;
        let item = Outgoing {
            channel: Arc::clone(&self.name),
            message: encode(&inner.node_id, seq, payload),
        };
        if inner.outgoing.try_send(item).is_err() {
            inner.metrics.bus_dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_unambiguous() {
        let a = UserKey {
            org_id: "a:1".into(),
            user_id: "b".into(),
        };
        let b = UserKey {
            org_id: "a".into(),
            user_id: "1:b".into(),
        };
        assert_ne!(channel(&a), channel(&b));
    }

    #[test]
    fn messages_round_trip() {
        let m = encode("n1", 42, r#"{"seq":42,"type":"x y"}"#);
        assert_eq!(decode(&m), Some((42, "n1", r#"{"seq":42,"type":"x y"}"#)));
        assert_eq!(decode("garbage"), None);
        assert_eq!(decode("x n1 {}"), None);
    }
}
