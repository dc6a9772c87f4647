//! The bus alone, in-process, on a real Redis of the test's own (`redis-server`, as the
//! multi-node tests use): two buses stand for two nodes, and a fake handler records what
//! each bus reports. So delivery order, subscription counting and the link's down and up
//! reports are tested without streams, the store or a hub.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

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

/// What a bus reported, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Report {
    Event(UserKey, u64, String),
    Up,
    Down,
}

#[derive(Default)]
struct Recorder {
    reports: Mutex<Vec<Report>>,
}

impl Recorder {
    fn reports(&self) -> Vec<Report> {
        crate::sync::lock(&self.reports).clone()
    }

    fn events(&self) -> Vec<(UserKey, u64)> {
        self.reports()
            .into_iter()
            .filter_map(|r| match r {
                Report::Event(k, seq, _) => Some((k, seq)),
                _ => None,
            })
            .collect()
    }

    fn push(&self, r: Report) {
        crate::sync::lock(&self.reports).push(r);
    }

    /// Waits until `done` holds of the reports; panics after [`WAIT`].
    async fn until(&self, what: &str, done: impl Fn(&[Report]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.reports()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {:?}",
                self.reports()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl BusHandler for Recorder {
    fn remote_event(&self, key: &UserKey, seq: u64, payload: &str) {
        self.push(Report::Event(key.clone(), seq, payload.to_string()));
    }
    fn link_up(&self) {
        self.push(Report::Up);
    }
    fn link_down(&self) {
        self.push(Report::Down);
    }
}

/// A `redis-server` of the test's own on a free loopback port.
struct Redis {
    binary: String,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// `None` only when the services are skipped on purpose (see `apogee_store::test_support`).
    async fn start() -> Option<Redis> {
        let binary =
            apogee_store::test_support::service_env(apogee_store::test_support::REDIS_SERVER_VAR)?;
        let port = free_port();
        let mut redis = Redis {
            binary,
            port,
            child: None,
        };
        redis.start_again().await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn start_again(&mut self) {
        let child = Command::new(&self.binary)
            .env_clear()
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("pick a port");
    l.local_addr().expect("port").port()
}

/// A node's bus on `url`, reporting to a fresh recorder.
struct Node {
    bus: RedisBus,
    handler: Arc<Recorder>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Node {
    fn start(url: &str, name: &str) -> Node {
        let (bus, worker) =
            RedisBus::new(url, name.to_string(), Arc::new(Metrics::new())).expect("bus");
        let handler = Arc::new(Recorder::default());
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        worker.spawn(Arc::clone(&handler) as _, &tasks, shutdown.clone());
        Node {
            bus,
            handler,
            tasks,
            shutdown,
        }
    }

    async fn subscribed(&self, key: &UserKey) {
        tokio::time::timeout(WAIT, self.bus.subscribe(key))
            .await
            .expect("confirmed in time")
            .expect("confirmed");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(WAIT, self.tasks.wait())
            .await
            .expect("the bus's tasks end at shutdown");
    }
}

fn user(name: &str) -> UserKey {
    UserKey {
        org_id: "org".into(),
        user_id: name.into(),
    }
}

#[tokio::test]
async fn events_reach_the_nodes_following_their_user_in_order_and_never_echo_back() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, b) = (
        Node::start(&redis.url(), "a"),
        Node::start(&redis.url(), "b"),
    );
    let (ada, grace) = (user("ada"), user("grace"));
    a.handler
        .until("a's link up", |r| r.contains(&Report::Up))
        .await;
    a.subscribed(&ada).await;
    b.subscribed(&ada).await;
    for seq in 1..=50 {
        b.bus.publish(&ada, seq, &format!("{{\"seq\":{seq}}}"));
    }
    // Nobody follows grace: published, never delivered.
    b.bus.publish(&grace, 1, "{}");
    a.bus.publish(&ada, 51, "{\"seq\":51}");
    a.handler
        .until("all 51 events at a", |r| {
            r.iter().filter(|r| matches!(r, Report::Event(..))).count() >= 50
        })
        .await;
    b.handler
        .until("a's event at b", |r| {
            r.iter().any(|r| matches!(r, Report::Event(_, 51, _)))
        })
        .await;
    let at_a: Vec<u64> = a.handler.events().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        at_a,
        (1..=50).collect::<Vec<_>>(),
        "in order, own event not echoed"
    );
    assert!(a.handler.events().iter().all(|(k, _)| k == &ada));
    assert_eq!(
        b.handler.events(),
        [(ada.clone(), 51)],
        "b's own 50 not echoed"
    );
    assert!(
        a.handler
            .reports()
            .contains(&Report::Event(ada.clone(), 1, "{\"seq\":1}".into()))
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_user_is_followed_until_every_subscribe_is_undone() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, b) = (
        Node::start(&redis.url(), "a"),
        Node::start(&redis.url(), "b"),
    );
    let ada = user("ada");
    a.subscribed(&ada).await;
    a.subscribed(&ada).await;
    a.bus.unsubscribe(&ada);
    // A second user's subscription, confirmed after the unsubscribe, orders the test: the
    // unsubscribe has been applied by then.
    a.subscribed(&user("grace")).await;
    b.bus.publish(&ada, 1, "{}");
    a.handler
        .until("still followed once", |r| {
            r.iter().any(|r| matches!(r, Report::Event(_, 1, _)))
        })
        .await;
    a.bus.unsubscribe(&ada);
    a.subscribed(&user("grace")).await;
    b.bus.publish(&ada, 2, "{}");
    // A marker on a followed channel, published after: once it is here, 2 would be too.
    b.bus.publish(&user("grace"), 7, "{}");
    a.handler
        .until("the marker", |r| {
            r.iter().any(|r| matches!(r, Report::Event(_, 7, _)))
        })
        .await;
    assert!(
        !a.handler.events().iter().any(|(_, seq)| *seq == 2),
        "no event after the last unsubscribe"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn with_redis_unreachable_the_link_is_reported_down_and_subscribes_are_confirmed() {
    // A port nobody listens on.
    let a = Node::start(&format!("redis://127.0.0.1:{}", free_port()), "a");
    a.handler
        .until("link down", |r| r.contains(&Report::Down))
        .await;
    a.subscribed(&user("ada")).await;
    a.bus.publish(&user("ada"), 1, "{}");
    assert!(!a.bus.connected());
    assert!(!a.handler.reports().contains(&Report::Up));
    a.stop().await;
}

#[tokio::test]
async fn after_redis_restarts_the_link_is_reported_up_and_followed_users_are_resubscribed() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let (a, b) = (
        Node::start(&redis.url(), "a"),
        Node::start(&redis.url(), "b"),
    );
    let ada = user("ada");
    a.subscribed(&ada).await;
    a.handler
        .until("link up", |r| r.contains(&Report::Up))
        .await;
    redis.stop().await;
    a.handler
        .until("link down", |r| r.last() == Some(&Report::Down))
        .await;
    assert!(!a.bus.connected());
    redis.start_again().await;
    a.handler
        .until("link up again", |r| r.last() == Some(&Report::Up))
        .await;
    assert!(a.bus.connected());
    // b's publishing connection reconnects on its own; retried until Redis took it.
    b.bus.publish(&ada, 9, "{}");
    a.handler
        .until("an event after the restart", |r| {
            r.iter().any(|r| matches!(r, Report::Event(_, 9, _)))
        })
        .await;
    a.stop().await;
    b.stop().await;
}
