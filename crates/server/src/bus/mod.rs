//! Cross-node transport through Redis, and nothing more: it carries each persisted event to
//! the other nodes following its user and reports what arrives to a [`BusHandler`]. It knows
//! users only by their [`UserKey`]; streams, `seq` order, gap fills and what to do while the
//! link is down belong to the hub ([`crate::hub`]), which consumes the bus through the small
//! [`Bus`] interface (the way Centrifugo's brokers only know a `BrokerEventHandler`). Redis is
//! never the record (the database is), so a lost message costs latency, not an event.
//!
//! While Redis is unreachable the bus keeps taking subscriptions (confirmed at once: nothing
//! can be promised about a link that is down) and tells the handler the link is down, so it
//! can read what it misses from the store; once Redis is back it resubscribes every followed
//! user and tells the handler the link is up again.
//!
//! Also holds the per-user message rate shared by all nodes ([`SharedRate`]), a separate
//! use of the same Redis.

mod limiter;
mod publisher;
mod subscriber;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use apogee_store::UserKey;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

pub use limiter::SharedRate;

/// Events waiting to be published at most; beyond it they are dropped (other nodes then
/// fill them from the store when their next event or their reconnect reveals the gap).
const PUBLISH_QUEUE: usize = 65_536;

/// What the hub needs of a transport between nodes. Every method returns at once: none waits
/// on the network.
pub trait Bus: Send + Sync {
    /// Starts following `key`'s events (counted: each call needs its [`Bus::unsubscribe`]).
    /// The answer fires once every event published after it reaches this node's handler — or
    /// at once while the link is down, when the handler has been told so.
    fn subscribe(&self, key: &UserKey) -> oneshot::Receiver<()>;
    /// Undoes one [`Bus::subscribe`] of `key`.
    fn unsubscribe(&self, key: &UserKey);
    /// Offers a persisted event to the other nodes following `key`.
    fn publish(&self, key: &UserKey, seq: u64, payload: &str);
}

/// What a bus reports to. Called from the bus's own task: implementations must not block.
pub trait BusHandler: Send + Sync {
    /// An event another node persisted for `key` (possibly again, possibly out of order).
    fn remote_event(&self, key: &UserKey, seq: u64, payload: &str);
    /// The link is up and every followed user resubscribed; events published from now on
    /// arrive, those published while it was down did not.
    fn link_up(&self);
    /// The link is down (reported again at every failed retry); nothing arrives until
    /// [`BusHandler::link_up`].
    fn link_down(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid Redis URL: {0}")]
    Url(#[from] redis::RedisError),
}

/// An event on the wire between nodes.
struct Outgoing {
    channel: String,
    message: String,
}

enum Command {
    /// Follow `key` on `channel`; `done` fires once Redis confirmed.
    Subscribe {
        channel: String,
        key: UserKey,
        done: oneshot::Sender<()>,
    },
    /// One follower of the channel went away.
    Unsubscribe { channel: String },
}

/// The node's Redis transport; cheap to clone.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    /// Unbounded because an unsubscribe is sent from `Drop`, which cannot wait, and a lost
    /// one would keep a channel subscribed forever. It holds at most one subscribe and one
    /// unsubscribe per stream created on this node, and the subscriber task drains it without
    /// I/O while Redis is down.
    commands: mpsc::UnboundedSender<Command>,
    outgoing: mpsc::Sender<Outgoing>,
    /// Whether the subscription connection is up (what `/ready` reports).
    connected: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// The bus's connections, not yet running: [`BusWorker::spawn`] starts them once there is a
/// handler to report to (the handler usually holds the bus, so the two are made in turn).
pub struct BusWorker {
    client: redis::Client,
    node_id: String,
    commands: mpsc::UnboundedReceiver<Command>,
    outgoing: mpsc::Receiver<Outgoing>,
    connected: Arc<AtomicBool>,
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

impl RedisBus {
    /// The bus of node `node_id` on the Redis at `url`, and its worker to start. Fails only on
    /// a malformed URL, never because Redis is down.
    pub fn new(
        url: &str,
        node_id: String,
        metrics: Arc<Metrics>,
    ) -> Result<(RedisBus, BusWorker), BusError> {
        let client = redis::Client::open(url)?;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::channel(PUBLISH_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let worker = BusWorker {
            client,
            node_id: node_id.clone(),
            commands: commands_rx,
            outgoing: outgoing_rx,
            connected: Arc::clone(&connected),
            metrics: Arc::clone(&metrics),
        };
        let bus = RedisBus {
            inner: Arc::new(Inner {
                node_id,
                commands,
                outgoing,
                connected,
                metrics,
            }),
        };
        Ok((bus, worker))
    }

    /// Whether the subscription connection to Redis is up.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }
}

impl BusWorker {
    /// The Redis client, for other uses of the same Redis ([`SharedRate`]).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Starts the publisher and subscriber tasks on `tasks`; they reconnect by themselves
    /// until `shutdown` fires, then end (`tasks.wait()` sees them go).
    pub fn spawn(
        self,
        handler: Arc<dyn BusHandler>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) {
        tasks.spawn(subscriber::run(
            self.client.clone(),
            self.node_id,
            self.commands,
            self.connected,
            Arc::clone(&self.metrics),
            handler,
            shutdown.clone(),
        ));
        tasks.spawn(publisher::run(
            self.client,
            self.outgoing,
            self.metrics,
            shutdown,
        ));
    }
}

impl Bus for RedisBus {
    fn subscribe(&self, key: &UserKey) -> oneshot::Receiver<()> {
        let (done, confirmed) = oneshot::channel();
        let _ = self.inner.commands.send(Command::Subscribe {
            channel: channel(key),
            key: key.clone(),
            done,
        });
        confirmed
    }

    fn unsubscribe(&self, key: &UserKey) {
        let _ = self.inner.commands.send(Command::Unsubscribe {
            channel: channel(key),
        });
    }

    fn publish(&self, key: &UserKey, seq: u64, payload: &str) {
        let inner = &self.inner;
        let item = Outgoing {
            channel: channel(key),
            message: encode(&inner.node_id, seq, payload),
        };
        if inner.outgoing.try_send(item).is_err() {
            inner.metrics.bus_dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests;
