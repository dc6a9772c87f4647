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
    shutdown: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn setup() -> Setup {
    let store = apogee_store::test_support::sqlite().await;
    let bus = Arc::new(FakeBus::default());
    let hub = Arc::new(Hub::new(
        store.store.clone(),
        Arc::new(Metrics::new()),
        StreamLimits {
            replay_buffer: 16,
            event_retention: 100_000,
            messages_per_minute: 60,
            message_burst: 10,
        },
        Some(Arc::clone(&bus) as Arc<dyn Bus>),
        None,
    ));
    let shutdown = CancellationToken::new();
    hub.spawn_link_follower(shutdown.clone());
    Setup {
        hub,
        bus,
        store,
        shutdown,
    }
}

fn user(name: &str) -> UserKey {
    UserKey {
        org_id: "org".into(),
        user_id: name.into(),
    }
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
            Call::Subscribe(key.clone()),
            Call::Publish(key.clone(), seq),
            Call::Unsubscribe(key.clone()),
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
