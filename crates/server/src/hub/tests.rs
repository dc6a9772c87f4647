//! The hub alone, in-process: a real store (SQLite), a fake bus that records what the hub asks
//! of it, and the bus's reports (remote events, link down, link up) made by the test. So the
//! ordering, gap-fill and link-down paths are tested without Redis or another node: events
//! "another node stored" are appended to the store directly, as that node would.

use std::sync::Mutex;
use std::time::Duration;

use apogee_store::test_support::TestStore;
use tokio::sync::oneshot;

use super::*;

/// Long enough for any of these waits on a loaded machine; a passing test never waits it out.
const WAIT: Duration = Duration::from_secs(10);

/// What the hub asked of the bus, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Subscribe(UserKey),
    Unsubscribe(UserKey),
    Publish(UserKey, u64),
}

#[derive(Default)]
struct FakeBus {
    calls: Mutex<Vec<Call>>,
}

impl FakeBus {
    fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }
}

impl Bus for FakeBus {
    fn subscribe(&self, key: &UserKey) -> oneshot::Receiver<()> {
        lock(&self.calls).push(Call::Subscribe(key.clone()));
        let (done, confirmed) = oneshot::channel();
        let _ = done.send(());
        confirmed
    }

    fn unsubscribe(&self, key: &UserKey) {
        lock(&self.calls).push(Call::Unsubscribe(key.clone()));
    }

    fn publish(&self, key: &UserKey, seq: u64, _payload: &str) {
        lock(&self.calls).push(Call::Publish(key.clone(), seq));
    }
}

struct Setup {
    hub: Arc<Hub>,
    bus: Arc<FakeBus>,
    store: TestStore,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A grace long enough for any test, and room for many small streams.
const GRACE: GraceLimits = GraceLimits {
    grace: Duration::from_secs(600),
    bytes: 1 << 20,
};

/// A hub following its users on the (fake) bus, as one node of several.
async fn setup() -> Setup {
    setup_with(true, GRACE).await
}

/// The only node: no bus, an embedded store.
async fn single_node(grace: GraceLimits) -> Setup {
    setup_with(false, grace).await
}

async fn setup_with(with_bus: bool, grace: GraceLimits) -> Setup {
    let store = apogee_store::test_support::sqlite().await;
    let bus = Arc::new(FakeBus::default());
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(
        store.store.clone(),
        Arc::clone(&metrics),
        StreamLimits {
            replay_buffer: 16,
            event_retention: 100_000,
            messages_per_minute: 60,
            message_burst: 10,
            grace,
        },
        with_bus.then(|| Arc::clone(&bus) as Arc<dyn Bus>),
        None,
    ));
    let shutdown = CancellationToken::new();
    if with_bus {
        hub.spawn_link_follower(shutdown.clone());
    }
    hub.spawn_grace_sweeper(shutdown.clone());
    Setup {
        hub,
        bus,
        store,
        metrics,
        shutdown,
    }
}

/// The seqs a subscription's replay serves from memory; panics on any other replay.
fn from_memory(sub: &Subscription) -> Vec<u64> {
    match &sub.replay {
        Replay::Memory(events) => events.iter().map(|d| d.seq).collect(),
        Replay::None => Vec::new(),
        Replay::Store { after } => panic!("replayed from the store after {after}"),
        Replay::Resync => panic!("resync"),
    }
}

fn user(name: &str) -> Arc<UserKey> {
    Arc::new(UserKey {
        org_id: "org".into(),
        user_id: name.into(),
    })
}

/// Appends an event to `key`'s stream the way another node does: straight to the store.
async fn stored_elsewhere(store: &Store, key: &UserKey) -> u64 {
    store
        .append_event(key, None, "thr", 0, |seq| format!("{{\"seq\":{seq}}}"))
        .await
        .expect("append")
        .seq
}

async fn next_seqs(rx: &mut queue::Receiver<Delivered>, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(WAIT, rx.pop()).await {
            Ok(Some(d)) => out.push(d.seq),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn remote_events_in_any_order_and_twice_reach_a_connection_once_in_seq_order() {
    let s = setup().await;
    let key = user("ada");
    let stream = s.hub.stream(&key);
    let mut sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    assert_eq!(sub.head_seq, 0);
    for _ in 0..3 {
        stored_elsewhere(&s.store.store, &key).await;
    }
    for seq in [3, 1, 2, 1, 3] {
        s.hub.remote_event(&key, seq, &format!("{{\"seq\":{seq}}}"));
    }
    assert_eq!(next_seqs(&mut sub.rx, 3).await, [1, 2, 3]);
    assert!(sub.rx.try_pop().is_none(), "nothing delivered twice");
}

#[tokio::test]
async fn a_gap_in_what_the_bus_brings_is_read_from_the_store() {
    let s = setup().await;
    let key = user("ada");
    let stream = s.hub.stream(&key);
    let mut sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    for _ in 0..4 {
        stored_elsewhere(&s.store.store, &key).await;
    }
    // Only the last one arrives through the bus: 1 to 3 are read from the store.
    s.hub.remote_event(&key, 4, "{\"seq\":4}");
    assert_eq!(next_seqs(&mut sub.rx, 4).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn while_the_link_is_down_followed_streams_read_their_news_from_the_store() {
    let s = setup().await;
    let key = user("ada");
    let stream = s.hub.stream(&key);
    let mut sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    s.hub.link_down();
    // Nothing comes through the bus: only the polls can deliver these.
    stored_elsewhere(&s.store.store, &key).await;
    stored_elsewhere(&s.store.store, &key).await;
    assert_eq!(next_seqs(&mut sub.rx, 2).await, [1, 2]);
}

#[tokio::test]
async fn a_link_that_comes_back_is_caught_up_on_at_once() {
    let s = setup().await;
    let key = user("ada");
    let stream = s.hub.stream(&key);
    let mut sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    // Stored while this node was not listening; the link was never reported down, so only
    // the catch-up of the link coming up can deliver it.
    stored_elsewhere(&s.store.store, &key).await;
    s.hub.link_up();
    assert_eq!(next_seqs(&mut sub.rx, 1).await, [1]);
}

#[tokio::test]
async fn the_hub_publishes_what_it_stored_and_follows_its_users_while_they_are_here() {
    let s = setup().await;
    let key = user("ada");
    let stream = s.hub.stream(&key);
    let mut sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    let seq = stream
        .publish(
            "thr",
            None,
            EventBody::AgentThinking {
                run_id: "run".into(),
                agent: "supervisor".into(),
                text: "thinking".into(),
            },
        )
        .await
        .expect("publish");
    assert_eq!(next_seqs(&mut sub.rx, 1).await, [seq]);
    drop(sub);
    drop(stream);
    assert_eq!(
        s.bus.calls(),
        [
            Call::Subscribe(UserKey::clone(&key)),
            Call::Publish(UserKey::clone(&key), seq),
            Call::Unsubscribe(UserKey::clone(&key)),
        ]
    );
}

#[tokio::test]
async fn remote_events_of_users_without_a_stream_here_are_dropped() {
    let s = setup().await;
    let ada = user("ada");
    let grace = user("grace");
    let stream = s.hub.stream(&ada);
    let mut sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    stored_elsewhere(&s.store.store, &grace).await;
    s.hub.remote_event(&grace, 1, "{\"seq\":1}");
    stored_elsewhere(&s.store.store, &ada).await;
    s.hub.remote_event(&ada, 1, "{\"seq\":1}");
    let first = tokio::time::timeout(WAIT, sub.rx.pop())
        .await
        .expect("delivered")
        .expect("open");
    assert_eq!(first.frame.as_str(), "{\"seq\":1}");
    assert!(sub.rx.try_pop().is_none());
}

#[tokio::test]
async fn the_hubs_tasks_end_at_shutdown() {
    let s = setup().await;
    let stream = s.hub.stream(&user("ada"));
    let sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    drop(sub);
    drop(stream);
    s.shutdown.cancel();
    tokio::time::timeout(WAIT, s.hub.close())
        .await
        .expect("every task of the hub ended");
}

fn thinking() -> EventBody {
    EventBody::AgentThinking {
        run_id: "run".into(),
        agent: "supervisor".into(),
        text: "thinking".into(),
    }
}

/// While SQLite's write lock is held elsewhere nothing can be stored: a user can queue
/// [`IN_FLIGHT`] events and the next one waits, while another user still queues at once. Once
/// the lock is released every one is stored, in order, with no gap.
#[tokio::test]
async fn a_users_events_waiting_to_be_stored_are_bounded() {
    use futures_util::FutureExt;
    use sqlx::Connection;

    let s = setup().await;
    let mut holder = sqlx::SqliteConnection::connect(&s.store.url)
        .await
        .expect("a second connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("hold the write lock");

    let ada = s.hub.stream(&user("ada"));
    let mut queued = Vec::new();
    for _ in 0..IN_FLIGHT {
        let q = tokio::time::timeout(WAIT, ada.queue("thr", None, thinking()))
            .await
            .expect("room for the user's first events")
            .expect("queued");
        queued.push(q);
    }
    let mut over = Box::pin(ada.queue("thr", None, thinking()));
    // A fresh turn of the test's task, so tokio's cooperative budget cannot be what makes the
    // queue wait.
    tokio::task::yield_now().await;
    assert!(
        (&mut over).now_or_never().is_none(),
        "one event over the bound waits for room"
    );
    let grace = s.hub.stream(&user("grace"));
    let other = tokio::time::timeout(WAIT, grace.queue("thr", None, thinking()))
        .await
        .expect("another user is not held by the first one's bound")
        .expect("queued");

    sqlx::raw_sql("COMMIT")
        .execute(&mut holder)
        .await
        .expect("release the write lock");
    let last = tokio::time::timeout(WAIT, over)
        .await
        .expect("room once the first events are stored")
        .expect("queued");
    let mut seqs = Vec::new();
    for q in queued.into_iter().chain([last]) {
        seqs.push(
            tokio::time::timeout(WAIT, q.stored())
                .await
                .expect("stored")
                .expect("no error"),
        );
    }
    assert_eq!(seqs, (1..=IN_FLIGHT as u64 + 1).collect::<Vec<_>>());
    assert_eq!(other.stored().await.expect("stored"), 1);
}

/// A batch the database refuses is reported to whoever queued its events, nothing of it is
/// offered, and the head does not move: the next event stored takes the seq after the last one
/// stored, with no gap.
#[tokio::test]
async fn a_refused_write_is_reported_and_leaves_no_gap() {
    use sqlx::Connection;

    let s = setup().await;
    let ada = s.hub.stream(&user("ada"));
    let mut sub = ada.subscribe(1, 64, None).await.expect("subscribe");
    let first = ada.publish("thr", None, thinking()).await.expect("stored");
    assert_eq!(next_seqs(&mut sub.rx, 1).await, [first]);

    let mut other = sqlx::SqliteConnection::connect(&s.store.url)
        .await
        .expect("a second connection");
    sqlx::raw_sql(
        "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(&mut other)
    .await
    .expect("refuse event writes");
    let refused = ada.queue("thr", None, thinking()).await.expect("queued");
    let err = tokio::time::timeout(WAIT, refused.stored())
        .await
        .expect("answered");
    assert!(matches!(err, Err(StoreError::Batch(_))), "{err:?}");

    sqlx::raw_sql("DROP TRIGGER refuse")
        .execute(&mut other)
        .await
        .expect("accept event writes again");
    let next = ada.publish("thr", None, thinking()).await.expect("stored");
    assert_eq!(next, first + 1);
    assert_eq!(next_seqs(&mut sub.rx, 1).await, [next]);
}

/// Publishes `n` events on `key`'s stream (through a subscriber of its own, so the stream is
/// held meanwhile), then lets go of it; returns the last seq.
async fn left_after(hub: &Hub, key: &Arc<UserKey>, n: usize) -> u64 {
    let stream = hub.stream(key);
    let mut sub = stream.subscribe(1, 64, None).await.expect("subscribe");
    let mut last = 0;
    for _ in 0..n {
        last = stream
            .publish("thr", None, thinking())
            .await
            .expect("stored");
    }
    assert_eq!(next_seqs(&mut sub.rx, n).await.len(), n);
    last
}

#[tokio::test]
async fn a_user_back_within_the_grace_resumes_from_memory_losing_and_duplicating_nothing() {
    let s = single_node(GRACE).await;
    let key = user("ada");
    let head = left_after(&s.hub, &key, 5).await;
    assert_eq!(s.metrics.streams_kept.get(), 1, "kept once its user left");

    let stream = s.hub.stream(&key);
    assert_eq!(s.metrics.streams_kept.get(), 0, "taken back");
    let mut sub = stream.subscribe(2, 64, Some(2)).await.expect("subscribe");
    assert_eq!(sub.head_seq, head);
    assert_eq!(from_memory(&sub), [3, 4, 5]);
    // The stream goes on where it was: the next event follows the replay, once.
    let next = stream
        .publish("thr", None, thinking())
        .await
        .expect("stored");
    assert_eq!(next, head + 1);
    assert_eq!(next_seqs(&mut sub.rx, 1).await, [next]);
    assert!(sub.rx.try_pop().is_none(), "nothing delivered twice");
}

#[tokio::test]
async fn an_event_stored_while_nobody_followed_the_user_is_never_missed_for_a_kept_stream() {
    let s = single_node(GRACE).await;
    let key = user("ada");
    let last = left_after(&s.hub, &key, 3).await;
    // A budget alert is stored straight into the stream and handed to the hub, which has no
    // stream of the user to offer it to: what it kept of the user is now behind the store.
    let alert = stored_elsewhere(&s.store.store, &key).await;
    s.hub
        .deliver_stored(&key, alert, &format!("{{\"seq\":{alert}}}"));
    assert_eq!(s.metrics.streams_kept.get(), 0, "forgotten");

    let sub = s
        .hub
        .stream(&key)
        .subscribe(2, 64, Some(last))
        .await
        .expect("subscribe");
    assert_eq!(sub.head_seq, alert);
    assert!(matches!(sub.replay, Replay::Store { after } if after == last));
}

#[tokio::test]
async fn a_kept_stream_reads_what_other_nodes_stored_while_nobody_here_followed() {
    let s = setup().await;
    let key = user("ada");
    let left = left_after(&s.hub, &key, 3).await;
    assert_eq!(s.metrics.streams_kept.get(), 1);
    assert_eq!(
        s.bus.calls().last(),
        Some(&Call::Unsubscribe(UserKey::clone(&key))),
        "no longer followed on the bus"
    );
    // Another node serves the user meanwhile; nothing of it reaches this one.
    let mut elsewhere = 0;
    for _ in 0..2 {
        elsewhere = stored_elsewhere(&s.store.store, &key).await;
    }

    let stream = s.hub.stream(&key);
    // The client saw the other node's events: its position is ahead of what was kept.
    let ahead = stream
        .subscribe(2, 64, Some(elsewhere))
        .await
        .expect("subscribe");
    assert_eq!(
        ahead.head_seq, elsewhere,
        "the store's head, not the kept one"
    );
    assert!(matches!(ahead.replay, Replay::None));
    // And one that left with this node's last event gets the other node's from memory.
    let behind = stream
        .subscribe(3, 64, Some(left))
        .await
        .expect("subscribe");
    assert_eq!(behind.head_seq, elsewhere);
    assert_eq!(from_memory(&behind), [left + 1, elsewhere]);
}

#[tokio::test]
async fn kept_streams_stay_within_their_byte_budget_letting_the_oldest_go_first() {
    // Room for about three users' five events each (each frame ~100 bytes).
    let grace = GraceLimits {
        grace: Duration::from_secs(600),
        bytes: 3 * (5 * (100 + 72) + 128 + 16) + 100,
    };
    let s = single_node(grace).await;
    let mut heads = Vec::new();
    for n in 0..8 {
        heads.push(left_after(&s.hub, &user(&format!("u{n}")), 5).await);
        let bytes = s.metrics.streams_kept_bytes.get();
        assert!(
            bytes > 0 && bytes as usize <= grace.bytes,
            "{bytes} bytes kept against a budget of {}",
            grace.bytes
        );
    }
    let kept = s.metrics.streams_kept.get();
    assert!((2..=3).contains(&kept), "{kept} kept");
    assert_eq!(
        s.metrics.streams_kept_evicted.get(),
        8 - kept as u64,
        "every other one was let go for room"
    );
    // The newest departures are the ones kept: they resume from memory; the oldest from the
    // store.
    let newest = s
        .hub
        .stream(&user("u7"))
        .subscribe(2, 64, Some(heads[7] - 2))
        .await
        .expect("subscribe");
    assert_eq!(from_memory(&newest).len(), 2);
    let oldest = s
        .hub
        .stream(&user("u0"))
        .subscribe(2, 64, Some(heads[0] - 2))
        .await
        .expect("subscribe");
    assert!(matches!(oldest.replay, Replay::Store { .. }));
}

#[tokio::test]
async fn without_a_grace_nothing_is_kept() {
    let s = single_node(GraceLimits {
        grace: Duration::ZERO,
        bytes: 1 << 20,
    })
    .await;
    let key = user("ada");
    let head = left_after(&s.hub, &key, 3).await;
    assert_eq!(s.metrics.streams_kept.get(), 0);
    let sub = s
        .hub
        .stream(&key)
        .subscribe(2, 64, Some(head - 1))
        .await
        .expect("subscribe");
    assert_eq!(sub.head_seq, head);
    assert!(matches!(sub.replay, Replay::Store { after } if after == head - 1));
}

#[test]
fn a_frame_with_its_seq_is_the_event_serialised_with_it() {
    let event = |seq| StreamEvent {
        seq,
        ts: "2026-11-30T00:00:00.000Z".into(),
        thread_id: "thr \"quoted\"".into(),
        body: EventBody::AgentThinking {
            run_id: "run_1".into(),
            agent: "data".into(),
            text: "a \\ b \u{1F600}".into(),
        },
    };
    for seq in [0, 1, 9, 10, 12_345, u64::MAX] {
        let expected = serde_json::to_string(&event(seq)).unwrap();
        assert_eq!(Frame::of(&event(0)).with_seq(seq), expected);
    }
}
