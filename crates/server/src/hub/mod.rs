//! Per-user event streams on this node: the one place events get their `seq` and are
//! persisted, then handed in order to every connection of their user (through
//! `fanout::Fanout`), with a bounded buffer of recent events for cheap resumes and the
//! user's message rate limit. With a bus between nodes ([`crate::bus::Bus`]) a stream also
//! publishes what it stored and follows its user's events from other nodes; the [`Hub`] is
//! the bus's [`BusHandler`]: it hands what arrives to the user's stream, and while the bus
//! reports its link down it reads every followed stream's news from the store instead
//! ([`POLL_WHILE_DOWN`]). Whatever does not arrive live is read from the store. So the whole
//! of "one order, any source" lives here: `fanout.rs` is the order, this file the sources. A
//! [`UserStream`] is shared by that user's connections and runs and disappears when the last
//! of them is gone; its position and replay buffer are then kept for a grace period
//! (`kept.rs`, bounded in bytes across the node), so a user who comes back soon — a whole
//! reconnection storm — resumes from memory.
//!
//! Every task the hub starts (gap fills, waits for the bus, the link follower) runs on the
//! hub's [`TaskTracker`], so shutdown can wait for them ([`Hub::close`]).

mod fanout;
mod kept;
#[cfg(test)]
mod tests;

pub use kept::GraceLimits;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use apogee_protocol::{EventBody, StreamEvent};
use apogee_store::{
    Backend, NewEvent, QueuedEvent, RunRecord, Store, StoreError, StoredEvent, UserKey,
};
use axum::extract::ws::Utf8Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, BusHandler, SharedRate};
use crate::metrics::Metrics;
use crate::queue;
use crate::rate::RateTable;
use crate::sync::lock;
use fanout::{Fanout, Offered, Subscriber};
use kept::Kept;

/// Events of one user queued with the store and not yet stored, at most: bounds what one
/// user's runs can make the committer hold (the committer itself bounds nothing per user). A
/// run's steps (~50 for a full report) fit, so a run rarely waits for its own commits; the
/// committer fills each batch round-robin across users, so another user's queued events never
/// stand in front of this one's.
pub const IN_FLIGHT: usize = 64;
/// Retention is enforced every this many events of a user, not on every append.
const PRUNE_EVERY: u64 = 256;
/// Events read from the store per round of a gap fill.
const FILL_CHUNK: u64 = 1024;
/// Pause before a failed gap-fill read is tried again.
const FILL_RETRY: Duration = Duration::from_millis(200);
/// How often followed streams read their news from the store while the bus's link is down.
pub const POLL_WHILE_DOWN: Duration = Duration::from_secs(1);
/// How long a new stream waits for the bus to confirm its subscription before going on
/// without it (it is then covered by the catch-up when the link comes up, or by polling).
pub const JOIN_WAIT: Duration = Duration::from_millis(500);

/// A persisted event ready for the wire; the text is shared by all connections.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub seq: u64,
    pub frame: Utf8Bytes,
}

impl From<StoredEvent> for Delivered {
    fn from(e: StoredEvent) -> Delivered {
        Delivered {
            seq: e.seq,
            frame: Utf8Bytes::from(e.payload),
        }
    }
}

/// A stream event serialised before its seq is known: the JSON after `{"seq":0` (`seq` is
/// the first field of [`StreamEvent`]), so the frame with its seq is one copy, with no second
/// serialisation.
struct Frame {
    /// The serialised event with seq 0, or a frame saying what it was should serialising fail.
    json: Result<String, &'static str>,
}

impl Frame {
    const SEQ_ZERO: &'static str = r#"{"seq":0"#;

    fn of(event: &StreamEvent) -> Frame {
        // Serialising these plain types (strings, numbers, JSON values) cannot fail; should it
        // ever, the frame still says what it was rather than being empty.
        let json = match serde_json::to_string(event) {
            Ok(json) if json.starts_with(Frame::SEQ_ZERO) => Ok(json),
            Ok(_) => Err(event.body.type_name()),
            Err(e) => {
                tracing::error!(error = %e, "could not serialise a stream event");
                Err(event.body.type_name())
            }
        };
        Frame { json }
    }

    fn with_seq(self, seq: u64) -> String {
        match self.json {
            Ok(json) => {
                let rest = &json[Frame::SEQ_ZERO.len()..];
                let mut frame = String::with_capacity(json.len() + 20);
                frame.push_str(r#"{"seq":"#);
                // Writing to a String cannot fail.
                let _ = std::fmt::Write::write_fmt(&mut frame, format_args!("{seq}"));
                frame.push_str(rest);
                frame
            }
            Err(kind) => format!(r#"{{"seq":{seq},"type":"{kind}","thread_id":"","ts":""}}"#),
        }
    }
}

/// Limits that shape every user's stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub replay_buffer: usize,
    pub event_retention: u64,
    pub messages_per_minute: u32,
    pub message_burst: u32,
    /// What is kept of a stream once its user left, and for how long.
    pub grace: GraceLimits,
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
    /// Shared with the hub's map and the user's identity.
    key: Arc<UserKey>,
    store: Store,
    metrics: Arc<Metrics>,
    limits: StreamLimits,
    /// The transport to other nodes, when there is one.
    bus: Option<Arc<dyn Bus>>,
    /// The message rate shared by every node, when there is one.
    shared_rate: Option<Arc<SharedRate>>,
    /// The hub's tasks: gap fills and waits for the bus run on it.
    tasks: TaskTracker,
    /// Set once the stream subscribed to its user's events on the bus.
    joined: AtomicBool,
    /// With a bus: turns true once the bus confirmed the subscription (or gave up waiting). Every
    /// subscriber waits for it, not only the first, before reading the head.
    confirmed: Option<tokio::sync::watch::Sender<bool>>,
    /// Serialises this node's appends of the user: they are queued with the store's committer
    /// in the order they were published, which is the order they are stored and offered in. A
    /// subscriber takes it too while it reads the head. An async mutex: it is held while
    /// queuing (which never waits: room is taken first, from `in_flight`), not across the write.
    append: tokio::sync::Mutex<()>,
    /// Permits for this user's events queued and not yet stored ([`IN_FLIGHT`]).
    in_flight: Arc<tokio::sync::Semaphore>,
    fanout: Mutex<Fanout>,
    /// Every user's message rate on this node; shared with the hub, so it outlives the
    /// stream (a reconnect does not refill it).
    messages: Arc<RateTable<UserKey>>,
    /// The hub's streams, where this one leaves its snapshot when it ends.
    streams: Arc<Mutex<Streams>>,
    /// This node is the only one appending to the store (an embedded store, no bus): once
    /// the position is fixed, it is the store's head, and a subscriber need not read it.
    sole_writer: bool,
}

impl Drop for UserStream {
    fn drop(&mut self) {
        if self.joined.load(Ordering::Acquire)
            && let Some(bus) = &self.bus
        {
            bus.unsubscribe(&self.key);
        }
        let snapshot = self
            .fanout
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot();
        let me: *const UserStream = self;
        let mut gone = Vec::new();
        {
            let mut streams = lock(&self.streams);
            // Only the newest stream of the user speaks for it: one made after this one's
            // last holder left (or an event stored while none was alive, which dropped the
            // entry) makes this one's state stale.
            let newest = streams
                .by_user
                .get(&self.key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), me));
            if newest {
                streams.by_user.remove(&self.key);
                if let Some(snapshot) = snapshot {
                    let (dropped, evicted) =
                        streams
                            .kept
                            .keep(Arc::clone(&self.key), snapshot, Instant::now());
                    self.metrics.streams_kept_evicted.inc_by(evicted);
                    gone = dropped;
                }
                streams.report(&self.metrics);
            } else {
                gone.extend(snapshot);
            }
        }
        // Freed outside the lock: a snapshot is up to a replay buffer of frames.
        drop(gone);
    }
}

impl UserStream {
    pub fn key(&self) -> &Arc<UserKey> {
        &self.key
    }

    /// Assigns the next `seq`, persists the event, then offers it to every connection here
    /// and, through Redis, on other nodes; returns once all of that is done. `run_id` files
    /// the event under a run for per-run reads (a run's `thread_created` too). Never waits on a
    /// connection: a full queue marks that connection too slow.
    pub async fn publish(
        self: &Arc<Self>,
        thread_id: &str,
        run_id: Option<&str>,
        body: EventBody,
    ) -> Result<u64, StoreError> {
        self.queue(thread_id, run_id, body).await?.stored().await
    }

    /// [`UserStream::publish`] without waiting for the write: the event is queued with the
    /// store's committer and, once its batch committed, offered to connections — persisted,
    /// then sent, in the order queued. A run so queues its steps one after another and many
    /// of them share one transaction, instead of each waiting a commit before the next. Waits
    /// only while the user has [`IN_FLIGHT`] events queued and not yet stored (a bound per
    /// user). The answer says when (and whether) the event was stored.
    pub async fn queue(
        self: &Arc<Self>,
        thread_id: &str,
        run_id: Option<&str>,
        body: EventBody,
    ) -> Result<QueuedEvent, StoreError> {
        self.queue_with(thread_id, run_id, body, None).await
    }

    /// [`UserStream::queue`] with a row of the event's run stored in the event's transaction
    /// (a run's answer with its `message_created`).
    pub async fn queue_with_record(
        self: &Arc<Self>,
        thread_id: &str,
        run_id: &str,
        body: EventBody,
        record: RunRecord,
    ) -> Result<QueuedEvent, StoreError> {
        self.queue_with(thread_id, Some(run_id), body, Some(record))
            .await
    }

    async fn queue_with(
        self: &Arc<Self>,
        thread_id: &str,
        run_id: Option<&str>,
        body: EventBody,
        record: Option<RunRecord>,
    ) -> Result<QueuedEvent, StoreError> {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let _order = self.append.lock().await;
        let now = chrono::Utc::now();
        let kind = body.type_name();
        let event = StreamEvent {
            seq: 0,
            ts: apogee_protocol::time::event_ts(now),
            thread_id: thread_id.to_string(),
            body,
        };
        // Serialised here, on the run's task (side by side with other runs), not in the
        // committer's transaction, which only writes the seq in front once it is known.
        let frame = Frame::of(&event);
        let new = NewEvent {
            user: UserKey::clone(&self.key),
            run_id: run_id.map(str::to_string),
            thread_id: thread_id.to_string(),
            ts_ms: now.timestamp_millis(),
            render: Box::new(move |seq| frame.with_seq(seq)),
        };
        let stream = Arc::clone(self);
        let on_stored = move |stored| {
            stream.stored(kind, stored);
            drop(permit);
        };
        match record {
            Some(record) => {
                self.store
                    .queue_event_with_record(new, record, on_stored)
                    .await
            }
            None => self.store.queue_event(new, on_stored).await,
        }
    }

    /// An event of this node's just committed (called in `seq` order, by the store's
    /// committer): counted, published on the bus and offered to this node's connections.
    fn stored(self: &Arc<Self>, kind: &'static str, stored: StoredEvent) {
        self.metrics
            .events_published
            .get_or_create(&crate::metrics::EventLabels { kind })
            .inc();
        let seq = stored.seq;
        if let Some(bus) = &self.bus {
            bus.publish(&self.key, seq, &stored.payload);
        }
        {
            let mut fanout = lock(&self.fanout);
            // Nobody here had a position yet: this event is where delivery starts.
            fanout.start_at(seq - 1);
            self.offer(&mut fanout, Delivered::from(stored));
        }
        if seq.is_multiple_of(PRUNE_EVERY) && seq > self.limits.event_retention {
            let keep_after = seq - self.limits.event_retention;
            let (store, key) = (self.store.clone(), self.key.clone());
            self.tasks.spawn(async move {
                if let Err(e) = store.prune_events(&key, keep_after).await {
                    tracing::warn!(error = %e, "could not prune old events; retrying at the next prune point");
                }
            });
        }
    }

    /// An event another node stored for this user, as Redis delivered it.
    pub fn receive_remote(self: &Arc<Self>, seq: u64, payload: &str) {
        let mut fanout = lock(&self.fanout);
        self.offer(
            &mut fanout,
            Delivered {
                seq,
                frame: Utf8Bytes::from(payload),
            },
        );
    }

    /// The store's head for this user is `head`: reads whatever of it was not delivered here
    /// (Redis was down or missed something). Skipped while a gap fill runs: that fill reads
    /// the same events.
    pub async fn catch_up_to(self: &Arc<Self>, head: u64) {
        let start = {
            let mut fanout = lock(&self.fanout);
            match fanout.delivered() {
                Some(d) if head > d && !fanout.filling => {
                    fanout.mark_behind();
                    fanout.filling = true;
                    true
                }
                _ => false,
            }
        };
        if start {
            Arc::clone(self).fill().await;
        }
    }

    /// Offers an event under the fan-out lock; starts a gap fill when one is needed.
    fn offer(self: &Arc<Self>, fanout: &mut Fanout, event: Delivered) {
        let mut slow = 0;
        let offered = fanout.offer(event, &mut slow);
        self.metrics.slow_consumers.inc_by(slow);
        if offered == Offered::Gap && !fanout.filling {
            fanout.filling = true;
            self.tasks.spawn(Arc::clone(self).fill());
        }
    }

    /// Reads missing events from the store until nothing is held back. Holds the stream only
    /// while it works, so it ends by itself when the stream is gone.
    async fn fill(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        drop(self);
        while let Some(stream) = weak.upgrade() {
            let after = {
                let mut fanout = lock(&stream.fanout);
                match fanout.delivered() {
                    Some(d) if fanout.needs_fill() => d,
                    _ => {
                        fanout.filling = false;
                        return;
                    }
                }
            };
            match stream.read_after(after, after + FILL_CHUNK).await {
                Ok(events) => {
                    let complete = (events.len() as u64) < FILL_CHUNK;
                    stream.apply_read(after, events, complete);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read events to fill a gap; retrying");
                    drop(stream);
                    tokio::time::sleep(FILL_RETRY).await;
                }
            }
        }
    }

    /// Registers a connection resuming after `last_seq` (if any). `head_seq` is exact: every
    /// event after it reaches `rx`, every event up to it is covered by `replay`.
    pub async fn subscribe(
        self: &Arc<Self>,
        id: u64,
        queue: usize,
        last_seq: Option<u64>,
    ) -> Result<Subscription, StoreError> {
        if let (Some(bus), Some(confirmed)) = (&self.bus, &self.confirmed) {
            if !self.joined.swap(true, Ordering::AcqRel) {
                // Asked once per stream; the answer is awaited by a task of its own, so a
                // subscriber that goes away meanwhile cannot leave the others waiting.
                let answer = bus.subscribe(&self.key);
                let stream = Arc::downgrade(self);
                self.tasks.spawn(async move {
                    let _ = tokio::time::timeout(JOIN_WAIT, answer).await;
                    if let Some(s) = stream.upgrade()
                        && let Some(c) = &s.confirmed
                    {
                        c.send_replace(true);
                    }
                });
            }
            // Before reading the head: every event stored after that read then comes
            // through the bus (or a read of the store while its link is down).
            let mut ready = confirmed.subscribe();
            let _ = tokio::time::timeout(JOIN_WAIT, ready.wait_for(|joined| *joined)).await;
        }
        let _order = self.append.lock().await;
        // The position, once fixed, is the store's head when no other node appends (the
        // registration below takes the position at that moment, so an event stored meanwhile
        // still reaches the new subscriber). A client that says it saw more than this node
        // delivered has it checked against the store.
        let position = lock(&self.fanout).delivered();
        let known = self.sole_writer && position.is_some_and(|d| last_seq.is_none_or(|n| n <= d));
        let stored_head = match position {
            Some(d) if known => d,
            _ => {
                let head = self.store.head_seq(&self.key).await?;
                self.deliver_upto(head).await?;
                head
            }
        };
        let (tx, rx) = queue::bounded(queue);
        let too_slow = CancellationToken::new();
        let (head_seq, replay) = {
            let mut fanout = lock(&self.fanout);
            let head_seq = fanout.start_at(stored_head);
            let replay = match last_seq {
                None => Replay::None,
                Some(n) if n > head_seq => Replay::Resync,
                Some(n) if n == head_seq => Replay::None,
                Some(n) => {
                    let recent = fanout.recent();
                    match recent.front() {
                        // The buffer ends at the position, so it covers the gap whenever it
                        // starts at or before n + 1.
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
            fanout.subscribers.push(Subscriber {
                id,
                tx,
                too_slow: too_slow.clone(),
            });
            (head_seq, replay)
        };
        Ok(Subscription {
            head_seq,
            replay,
            rx,
            too_slow,
            stream: Arc::clone(self),
            id,
        })
    }

    /// Events `after < seq <= upto` from the store, for a gap this node did not get live.
    async fn read_after(&self, after: u64, upto: u64) -> Result<Vec<Delivered>, StoreError> {
        let events = self.store.events_between(&self.key, after, upto).await?;
        self.metrics.gap_filled.inc_by(events.len() as u64);
        Ok(events.into_iter().map(Delivered::from).collect())
    }

    /// Hands what [`Self::read_after`] found to the fan-out; returns the new position.
    fn apply_read(&self, after: u64, events: Vec<Delivered>, complete: bool) -> Option<u64> {
        let mut slow = 0;
        let mut fanout = lock(&self.fanout);
        fanout.apply_fill(after, events, complete, &mut slow);
        self.metrics.slow_consumers.inc_by(slow);
        fanout.delivered()
    }

    /// Brings this node's position up to `head` (events other nodes stored that have not
    /// arrived yet), so a new subscriber's position is never behind what it may have seen.
    async fn deliver_upto(self: &Arc<Self>, head: u64) -> Result<(), StoreError> {
        loop {
            let after = lock(&self.fanout).start_at(head);
            if after >= head {
                return Ok(());
            }
            let events = self.read_after(after, head.min(after + FILL_CHUNK)).await?;
            if self.apply_read(after, events, false) <= Some(after) {
                // The store had nothing to add (pruned meanwhile): go on from here.
                return Ok(());
            }
        }
    }

    fn unsubscribe(&self, id: u64) {
        lock(&self.fanout).subscribers.retain(|s| s.id != id);
    }

    /// Counts a `user_message` against the user's rate (shared by all nodes through Redis
    /// when it answers, this node's own otherwise); `Err(wait)` when over it.
    pub async fn admit_message(&self) -> Result<(), Duration> {
        if let Some(shared) = &self.shared_rate
            && let Some(verdict) = shared
                .admit(
                    &self.key,
                    self.limits.messages_per_minute,
                    self.limits.message_burst,
                )
                .await
        {
            return verdict;
        }
        self.messages.take(&self.key, Instant::now())
    }
}

/// Finds or creates each user's stream. Holds only weak references: a stream lives as long as
/// a connection or run of its user holds it.
pub struct Hub {
    store: Store,
    metrics: Arc<Metrics>,
    limits: StreamLimits,
    bus: Option<Arc<dyn Bus>>,
    shared_rate: Option<Arc<SharedRate>>,
    /// Shared with every stream, which leaves its snapshot here when it ends.
    streams: Arc<Mutex<Streams>>,
    messages: Arc<RateTable<UserKey>>,
    /// `true` while the bus reports its link down; every report notifies the follower
    /// ([`Hub::follow_link`]), so a link that comes back is always caught up on.
    link_down: watch::Sender<bool>,
    tasks: TaskTracker,
}

struct Streams {
    /// The newest stream of each user, alive or ending.
    by_user: HashMap<Arc<UserKey>, Weak<UserStream>>,
    /// Size at which dead entries are swept next; doubling keeps sweeps amortised O(1).
    sweep_at: usize,
    /// Snapshots of streams whose user left, for the grace.
    kept: Kept,
}

impl Streams {
    fn report(&self, metrics: &Metrics) {
        metrics.streams_kept.set(self.kept.len() as i64);
        metrics.streams_kept_bytes.set(self.kept.bytes() as i64);
    }
}

impl Hub {
    /// The hub of this node. With a `bus`, [`Hub::spawn_link_follower`] must run too and the
    /// bus must report to this hub (it is the bus's [`BusHandler`]).
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        limits: StreamLimits,
        bus: Option<Arc<dyn Bus>>,
        shared_rate: Option<Arc<SharedRate>>,
    ) -> Hub {
        Hub {
            store,
            metrics,
            limits,
            bus,
            shared_rate,
            link_down: watch::Sender::new(false),
            tasks: TaskTracker::new(),
            streams: Arc::new(Mutex::new(Streams {
                by_user: HashMap::new(),
                sweep_at: 1024,
                kept: Kept::new(limits.grace),
            })),
            messages: Arc::new(RateTable::new(
                limits.messages_per_minute,
                limits.message_burst,
            )),
        }
    }

    /// An event appended to `key`'s stream in the store without going through its
    /// [`UserStream`] (a budget alert, stored with its claim): offered to the user's
    /// connections on this node as if another node had stored it, and to other nodes through
    /// Redis. Whatever does not arrive live is read from the store, as for any event.
    pub(crate) fn deliver_stored(&self, key: &UserKey, seq: u64, payload: &str) {
        self.remote_event(key, seq, payload);
        if let Some(bus) = &self.bus {
            bus.publish(key, seq, payload);
        }
    }

    /// Starts the task that reads followed streams' news from the store while the bus's
    /// link is down, and once when it comes back; it ends with `shutdown`.
    pub fn spawn_link_follower(self: &Arc<Self>, shutdown: CancellationToken) {
        self.tasks.spawn(Arc::clone(self).follow_link(shutdown));
    }

    /// Starts the task that lets go of kept snapshots once their grace is over (a snapshot
    /// past it never serves a resume; this frees its memory on a node gone quiet); it ends
    /// with `shutdown`.
    pub fn spawn_grace_sweeper(self: &Arc<Self>, shutdown: CancellationToken) {
        let grace = self.limits.grace.grace;
        if grace.is_zero() {
            return;
        }
        let streams = Arc::clone(&self.streams);
        let metrics = Arc::clone(&self.metrics);
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval((grace / 2).max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let gone = {
                    let mut streams = lock(&streams);
                    let gone = streams.kept.expire(Instant::now());
                    streams.report(&metrics);
                    gone
                };
                drop(gone);
            }
        });
    }

    /// Waits for every task the hub started: the link follower (once `shutdown` fired) and
    /// the gap fills and waits for the bus of streams (which end with their streams).
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn follow_link(self: Arc<Self>, shutdown: CancellationToken) {
        let mut down = self.link_down.subscribe();
        loop {
            // Up, or not known to be down: wait for the bus to report.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = down.changed() => if changed.is_err() { return },
            }
            if !*down.borrow_and_update() {
                // Back up: what other nodes stored while this node was not listening.
                self.catch_up_all().await;
                continue;
            }
            let mut poll = tokio::time::interval(POLL_WHILE_DOWN);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = poll.tick() => self.catch_up_all().await,
                    changed = down.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !*down.borrow_and_update() {
                            self.catch_up_all().await;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Has every stream following the bus read what it missed from the store, with the heads
    /// of all of them read in a few statements rather than one query per stream.
    async fn catch_up_all(&self) {
        // Upgraded under the lock, filtered after it: a stream whose last holder let go
        // meanwhile ends here, and its `Drop` takes the lock.
        let alive: Vec<Arc<UserStream>> = lock(&self.streams)
            .by_user
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let streams: HashMap<UserKey, Arc<UserStream>> = alive
            .into_iter()
            .filter(|s| s.joined.load(Ordering::Acquire))
            .map(|s| (UserKey::clone(&s.key), s))
            .collect();
        if streams.is_empty() {
            return;
        }
        let keys: Vec<UserKey> = streams.keys().cloned().collect();
        match self.store.head_seqs(&keys).await {
            Ok(heads) => {
                for (key, head) in heads {
                    if let Some(stream) = streams.get(&key) {
                        stream.catch_up_to(head).await;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read stream heads to catch up"),
        }
    }

    /// The user's stream on this node, made if none is alive; it and the hub's map share `key`.
    pub(crate) fn stream(&self, key: &Arc<UserKey>) -> Arc<UserStream> {
        let mut streams = lock(&self.streams);
        if let Some(s) = streams.by_user.get(key).and_then(Weak::upgrade) {
            return s;
        }
        if streams.by_user.len() >= streams.sweep_at {
            streams.by_user.retain(|_, w| w.strong_count() > 0);
            streams.sweep_at = (streams.by_user.len() * 2).max(1024);
        }
        let snapshot = streams.kept.take(key, Instant::now());
        streams.report(&self.metrics);
        let fanout = match snapshot {
            Some(snapshot) => Fanout::resumed(self.limits.replay_buffer, snapshot),
            // Grows with use: an idle user costs no buffer.
            None => Fanout::new(self.limits.replay_buffer),
        };
        let s = Arc::new(UserStream {
            key: Arc::clone(key),
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            limits: self.limits,
            bus: self.bus.clone(),
            shared_rate: self.shared_rate.clone(),
            tasks: self.tasks.clone(),
            joined: AtomicBool::new(false),
            confirmed: self
                .bus
                .as_ref()
                .map(|_| tokio::sync::watch::Sender::new(false)),
            append: tokio::sync::Mutex::new(()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            fanout: Mutex::new(fanout),
            messages: Arc::clone(&self.messages),
            streams: Arc::clone(&self.streams),
            sole_writer: self.bus.is_none() && self.store.backend() == Backend::Sqlite,
        });
        streams.by_user.insert(Arc::clone(key), Arc::downgrade(&s));
        s
    }
}

impl BusHandler for Hub {
    fn remote_event(&self, key: &UserKey, seq: u64, payload: &str) {
        let (local, forgotten) = {
            let mut streams = lock(&self.streams);
            match streams.by_user.get(key).and_then(Weak::upgrade) {
                Some(stream) => (Some(stream), None),
                None => {
                    // Nobody here follows the user: what is kept of it (or will be, by a
                    // stream ending right now) no longer reaches the store's head.
                    streams.by_user.remove(key);
                    let forgotten = streams.kept.forget(key);
                    streams.report(&self.metrics);
                    (None, forgotten)
                }
            }
        };
        drop(forgotten);
        if let Some(stream) = local {
            stream.receive_remote(seq, payload);
        }
    }

    fn link_up(&self) {
        self.link_down.send_replace(false);
    }

    fn link_down(&self) {
        self.link_down.send_replace(true);
    }
}
