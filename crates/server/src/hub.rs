//! Per-user event streams: the one place events get their `seq`, are persisted, and are fanned
//! out to every connection of their user. A [`UserStream`] is shared by that user's
//! connections and runs and disappears when the last of them is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use apogee_protocol::{EventBody, StreamEvent};
use apogee_store::{Store, StoreError, UserKey};
use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// A persisted event ready for the wire; the text is shared by all connections.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub seq: u64,
    pub frame: Utf8Bytes,
}

/// The sending half a connection registers with its user's stream.
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Delivered>,
    /// Fired when the connection's queue is full: it must close with 1013 and resume.
    too_slow: CancellationToken,
}

/// What a connection gets when it subscribes.
pub struct Subscription {
    pub head_seq: u64,
    pub rx: mpsc::Receiver<Delivered>,
    pub too_slow: CancellationToken,
    stream: Arc<UserStream>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.unsubscribe(self.id);
    }
}

pub struct UserStream {
    key: UserKey,
    store: Store,
    metrics: Arc<Metrics>,
    /// Serialises appends so events reach subscribers in `seq` order, and lets a subscriber
    /// read the head with no append in between. An async mutex: it is held across the write.
    append: tokio::sync::Mutex<()>,
    subscribers: Mutex<Vec<Subscriber>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave their plain collections half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UserStream {
    pub fn key(&self) -> &UserKey {
        &self.key
    }

    /// Assigns the next `seq`, persists the event, then offers it to every connection.
    /// `run_id` files the event under a run for per-run reads (a run's `thread_created` too).
    /// Never waits on a connection: a full queue marks that connection too slow.
    pub async fn publish(
        &self,
        thread_id: &str,
        run_id: Option<&str>,
        body: EventBody,
    ) -> Result<u64, StoreError> {
        let _order = self.append.lock().await;
        let now = chrono::Utc::now();
        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.publish_locked(thread_id, body, run_id, now.timestamp_millis(), ts)
            .await
    }

    async fn publish_locked(
        &self,
        thread_id: &str,
        body: EventBody,
        run_id: Option<&str>,
        ts_ms: i64,
        ts: String,
    ) -> Result<u64, StoreError> {
        let kind = body.type_name();
        let mut event = StreamEvent {
            seq: 0,
            ts,
            thread_id: thread_id.to_string(),
            body,
        };
        let stored = self
            .store
            .append_event(&self.key, run_id, thread_id, ts_ms, |seq| {
                event.seq = seq;
                serde_json::to_string(&event).unwrap_or_default()
            })
            .await?;
        self.metrics
            .events_published
            .get_or_create(&crate::metrics::EventLabels { kind })
            .inc();
        let delivered = Delivered {
            seq: stored.seq,
            frame: Utf8Bytes::from(stored.payload),
        };
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| match s.tx.try_send(delivered.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.too_slow.cancel();
                self.metrics.slow_consumers.inc();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        Ok(stored.seq)
    }

    /// Registers a connection. `head_seq` is exact: every event after it reaches `rx`.
    pub async fn subscribe(
        self: &Arc<Self>,
        id: u64,
        queue: usize,
    ) -> Result<Subscription, StoreError> {
        let _order = self.append.lock().await;
        let head_seq = self.store.head_seq(&self.key).await?;
        let (tx, rx) = mpsc::channel(queue);
        let too_slow = CancellationToken::new();
        lock(&self.subscribers).push(Subscriber {
            id,
            tx,
            too_slow: too_slow.clone(),
        });
        Ok(Subscription {
            head_seq,
            rx,
            too_slow,
            stream: Arc::clone(self),
            id,
        })
    }

    fn unsubscribe(&self, id: u64) {
        lock(&self.subscribers).retain(|s| s.id != id);
    }
}

/// Finds or creates each user's stream. Holds only weak references: a stream lives as long as
/// a connection or run of its user holds it.
pub struct Hub {
    store: Store,
    metrics: Arc<Metrics>,
    streams: Mutex<Streams>,
}

struct Streams {
    by_user: HashMap<UserKey, Weak<UserStream>>,
    /// Size at which dead entries are swept next; doubling keeps sweeps amortised O(1).
    sweep_at: usize,
}

impl Hub {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Hub {
        Hub {
            store,
            metrics,
            streams: Mutex::new(Streams {
                by_user: HashMap::new(),
                sweep_at: 1024,
            }),
        }
    }

    pub(crate) fn stream(&self, key: &UserKey) -> Arc<UserStream> {
        let mut streams = lock(&self.streams);
        if let Some(s) = streams.by_user.get(key).and_then(Weak::upgrade) {
            return s;
        }
        if streams.by_user.len() >= streams.sweep_at {
            streams.by_user.retain(|_, w| w.strong_count() > 0);
            streams.sweep_at = (streams.by_user.len() * 2).max(1024);
        }
        let s = Arc::new(UserStream {
            key: key.clone(),
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            append: tokio::sync::Mutex::new(()),
            subscribers: Mutex::new(Vec::new()),
        });
        streams.by_user.insert(key.clone(), Arc::downgrade(&s));
        s
    }
}
