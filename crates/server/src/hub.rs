//! Per-user event streams: the one place events get their `seq`, are persisted, and are fanned
//! out to every connection of their user, with a bounded buffer of recent events for cheap
//! resumes and the user's message rate limit. A [`UserStream`] is shared by that user's
//! connections and runs and disappears when the last of them is gone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use apogee_protocol::{EventBody, StreamEvent};
use apogee_store::{Store, StoreError, UserKey};
use axum::extract::ws::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::queue::{self, PushError};
use crate::rate::TokenBucket;

/// Retention is enforced every this many events of a user, not on every append.
const PRUNE_EVERY: u64 = 256;

/// A persisted event ready for the wire; the text is shared by all connections.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub seq: u64,
    pub frame: Utf8Bytes,
}

/// Limits that shape every user's stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub replay_buffer: usize,
    pub event_retention: u64,
    pub messages_per_minute: u32,
    pub message_burst: u32,
}

/// The sending half a connection registers with its user's stream.
struct Subscriber {
    id: u64,
    tx: queue::Sender<Delivered>,
    /// Fired when the connection's queue is full: it must close with 1013 and resume.
    too_slow: CancellationToken,
}

/// What a resuming connection must send before the live events.
pub enum Replay {
    /// Nothing to send.
    None,
    /// Everything after the resume point is in memory.
    Memory(Vec<Delivered>),
    /// Events `after < seq <= head` must be read from the store (if still retained).
    Store { after: u64 },
    /// The client's position is not this stream's: it must reload history.
    Resync,
}

/// What a connection gets when it subscribes.
pub struct Subscription {
    pub head_seq: u64,
    pub replay: Replay,
    pub rx: queue::Receiver<Delivered>,
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
    limits: StreamLimits,
    /// Serialises appends so events reach subscribers in `seq` order, and lets a subscriber
    /// read the head with no append in between. An async mutex: it is held across the write.
    append: tokio::sync::Mutex<()>,
    subscribers: Mutex<Vec<Subscriber>>,
    /// The newest events, oldest first, at most `limits.replay_buffer`.
    recent: Mutex<VecDeque<Delivered>>,
    messages: Mutex<TokenBucket>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave their plain collections half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// RFC 3339 with microseconds, so event latency can be measured below a millisecond.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
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
        let kind = body.type_name();
        let mut event = StreamEvent {
            seq: 0,
            ts: timestamp(now),
            thread_id: thread_id.to_string(),
            body,
        };
        let stored = self
            .store
            .append_event(
                &self.key,
                run_id,
                thread_id,
                now.timestamp_millis(),
                move |seq| {
                    event.seq = seq;
                    // Serialising these plain types (strings, numbers, JSON values) cannot fail;
                    // should it ever, the frame still says what it was rather than being empty.
                    serde_json::to_string(&event).unwrap_or_else(|e| {
                        tracing::error!(error = %e, "could not serialise a stream event");
                        format!(r#"{{"seq":{seq},"type":"{kind}","thread_id":"","ts":""}}"#)
                    })
                },
            )
            .await?;
        self.metrics
            .events_published
            .get_or_create(&crate::metrics::EventLabels { kind })
            .inc();
        let delivered = Delivered {
            seq: stored.seq,
            frame: Utf8Bytes::from(stored.payload),
        };
        {
            let mut recent = lock(&self.recent);
            if recent.len() >= self.limits.replay_buffer {
                recent.pop_front();
            }
            if self.limits.replay_buffer > 0 {
                recent.push_back(delivered.clone());
            }
        }
        lock(&self.subscribers).retain(|s| match s.tx.try_push(delivered.clone()) {
            Ok(()) => true,
            Err(PushError::Full) => {
                s.too_slow.cancel();
                self.metrics.slow_consumers.inc();
                false
            }
            Err(PushError::Closed) => false,
        });
        if stored.seq % PRUNE_EVERY == 0 && stored.seq > self.limits.event_retention {
            let keep_after = stored.seq - self.limits.event_retention;
            if let Err(e) = self.store.prune_events(&self.key, keep_after).await {
                tracing::warn!(error = %e, "could not prune old events; retrying at the next prune point");
            }
        }
        Ok(stored.seq)
    }

    /// Registers a connection resuming after `last_seq` (if any). `head_seq` is exact: every
    /// event after it reaches `rx`, every event up to it is covered by `replay`.
    pub async fn subscribe(
        self: &Arc<Self>,
        id: u64,
        queue: usize,
        last_seq: Option<u64>,
    ) -> Result<Subscription, StoreError> {
        let _order = self.append.lock().await;
        let head_seq = self.store.head_seq(&self.key).await?;
        let replay = match last_seq {
            None => Replay::None,
            Some(n) if n > head_seq => Replay::Resync,
            Some(n) if n == head_seq => Replay::None,
            Some(n) => {
                let recent = lock(&self.recent);
                match recent.front() {
                    // The buffer ends at the head (appends hold the lock we hold), so it
                    // covers the gap whenever it starts at or before n + 1.
                    Some(first)
                        if first.seq <= n + 1
                            && recent.back().is_some_and(|b| b.seq == head_seq) =>
                    {
                        Replay::Memory(recent.iter().filter(|d| d.seq > n).cloned().collect())
                    }
                    _ => Replay::Store { after: n },
                }
            }
        };
        let (tx, rx) = queue::bounded(queue);
        let too_slow = CancellationToken::new();
        lock(&self.subscribers).push(Subscriber {
            id,
            tx,
            too_slow: too_slow.clone(),
        });
        Ok(Subscription {
            head_seq,
            replay,
            rx,
            too_slow,
            stream: Arc::clone(self),
            id,
        })
    }

    fn unsubscribe(&self, id: u64) {
        lock(&self.subscribers).retain(|s| s.id != id);
    }

    /// Counts a `user_message` against the user's rate; `Err(wait)` when over it.
    pub fn admit_message(&self) -> Result<(), Duration> {
        lock(&self.messages).take(Instant::now())
    }
}

/// Finds or creates each user's stream. Holds only weak references: a stream lives as long as
/// a connection or run of its user holds it.
pub struct Hub {
    store: Store,
    metrics: Arc<Metrics>,
    limits: StreamLimits,
    streams: Mutex<Streams>,
}

struct Streams {
    by_user: HashMap<UserKey, Weak<UserStream>>,
    /// Size at which dead entries are swept next; doubling keeps sweeps amortised O(1).
    sweep_at: usize,
}

impl Hub {
    pub fn new(store: Store, metrics: Arc<Metrics>, limits: StreamLimits) -> Hub {
        Hub {
            store,
            metrics,
            limits,
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
            limits: self.limits,
            append: tokio::sync::Mutex::new(()),
            subscribers: Mutex::new(Vec::new()),
            // Grows with use: an idle user costs no buffer.
            recent: Mutex::new(VecDeque::new()),
            messages: Mutex::new(TokenBucket::new(
                self.limits.messages_per_minute,
                self.limits.message_burst,
            )),
        });
        streams.by_user.insert(key.clone(), Arc::downgrade(&s));
        s
    }
}
