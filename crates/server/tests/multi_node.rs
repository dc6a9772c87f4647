//! Several `apogee serve` nodes sharing one PostgreSQL database and one Redis: a user's
//! connections on different nodes see the same events once each, in `seq` order; a node
//! killed mid-run loses nothing and its run is closed by the survivor; Redis stopped and
//! started mid-run loses nothing; the message rate is shared. Every threshold is 100%.

mod common;

use std::time::Duration;

use apogee_store::test_support::FreshDatabase;
use common::services::{Redis, postgres_database};
use common::*;
use serde_json::Value;

/// Short leases so a dead node's runs are taken over within the test's patience.
const LEASE_MS: &str = "1500";

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Server>,
    redis: Redis,
    database: FreshDatabase,
}

impl Cluster {
    /// `None` only when PostgreSQL and Redis are skipped on purpose (the test then skips).
    async fn start(nodes: usize, demo_calls: u64, extra: &[(&str, &str)]) -> Option<Cluster> {
        let database = postgres_database().await?;
        let redis = Redis::start().await?;
        let mut cluster = Cluster {
            _dirs: Vec::new(),
            nodes: Vec::new(),
            redis,
            database,
        };
        if demo_calls > 0 {
            let dir = tempfile::tempdir().unwrap();
            load_demo_data_with(
                dir.path(),
                demo_calls,
                &[("APOGEE_DATABASE_URL", &cluster.database.url)],
            )
            .await;
        }
        for _ in 0..nodes {
            let node = cluster.start_node(extra).await;
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    async fn start_node(&mut self, extra: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let redis_url = self.redis.url();
        let mut env = vec![
            ("APOGEE_DATABASE_URL", self.database.url.as_str()),
            ("APOGEE_REDIS_URL", redis_url.as_str()),
            ("APOGEE_NODE_LEASE_MS", LEASE_MS),
        ];
        env.extend_from_slice(extra);
        let server = Server::start(dir.path(), &env).await;
        self._dirs.push(dir);
        server
    }
}

/// Reads both trackers' connections until each has seen `runs` complete runs.
async fn take_both(a: &mut (Tracker, Client), b: &mut (Tracker, Client), runs: usize) {
    a.0.take_until(&mut a.1, runs).await;
    b.0.take_until(&mut b.1, runs).await;
}

/// Both connections saw exactly the same events, every seq from 1 once, runs well formed.
fn assert_same_complete_stream(a: &Tracker, b: &Tracker, runs: usize) {
    assert_contiguous("node a", &a.seen);
    assert_contiguous("node b", &b.seen);
    assert_eq!(
        a.seen.keys().collect::<Vec<_>>(),
        b.seen.keys().collect::<Vec<_>>(),
        "the two nodes delivered different seqs"
    );
    for (seq, event) in &a.seen {
        assert_eq!(
            Some(event),
            b.seen.get(seq),
            "seq {seq} differs between nodes"
        );
    }
    let events: Vec<Value> = a.seen.values().cloned().collect();
    let by_run = split_runs(&events);
    assert_eq!(by_run.len(), runs);
    for run in &by_run {
        assert_run_well_formed(run);
    }
}

async fn metrics_text(addr: &str) -> String {
    http(addr, "GET", "/metrics", &[], b"").await.1
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

async fn connect(server: &Server, user: &str) -> (Tracker, Client) {
    let mut c = server.ws(&format!("?user={user}")).await;
    c.ready().await;
    (Tracker::new(user), c)
}

#[tokio::test]
async fn a_user_on_two_nodes_sees_every_event_once_in_order_on_both() {
    let Some(cluster) = Cluster::start(2, 5_000, &[]).await else {
        return;
    };
    let mut a = connect(&cluster.nodes[0], "alice").await;
    let mut b = connect(&cluster.nodes[1], "alice").await;
    // Runs on both nodes at once: their events interleave in alice's one stream.
    a.1.ask("m1", "Analyze my AI costs", None).await;
    b.1.ask("m2", "Why did spend jump?", None).await;
    a.1.ask("m3", "How can we cut our LLM bill?", None).await;
    take_both(&mut a, &mut b, 3).await;
    assert_same_complete_stream(&a.0, &b.0, 3);
    // The events crossed through Redis, not (only) by reading the store.
    for node in &cluster.nodes {
        let metrics = metrics_text(&node.addr).await;
        assert!(
            metric(&metrics, "apogee_redis_connected") == 1.0,
            "{metrics}"
        );
        assert!(
            metric(&metrics, "apogee_redis_events_published_total") > 0.0,
            "{metrics}"
        );
    }

    // Another user on the same nodes sees none of it.
    let mut other = connect(&cluster.nodes[1], "bob").await;
    other.1.ask("m1", "Analyze my AI costs", None).await;
    other.0.take_until(&mut other.1, 1).await;
    assert_contiguous("bob", &other.0.seen);
    let alices: Vec<&Value> =
        a.0.seen
            .values()
            .filter_map(|e| e.get("run_id"))
            .filter(|r| !r.is_null())
            .collect();
    assert!(
        other
            .0
            .seen
            .values()
            .filter_map(|e| e.get("run_id"))
            .all(|r| !alices.contains(&r)),
        "bob saw one of alice's runs"
    );
}

#[tokio::test]
async fn a_node_killed_mid_run_loses_nothing_and_a_survivor_closes_the_run() {
    let Some(mut cluster) = Cluster::start(2, 20_000, &[]).await else {
        return;
    };
    let survivor = cluster.nodes.pop().unwrap();
    let doomed = cluster.nodes.pop().unwrap();
    let (mut t, mut c) = connect(&doomed, "carol").await;
    c.ask("m1", "Analyze my AI costs", None).await;
    for _ in 0..10_000 {
        let v = c.next().await.expect("stream ended early");
        let mid = v["type"] == "tool_executing";
        t.record(v);
        if mid {
            break;
        }
    }
    t.assert_mid_run("node crash");
    doomed.crash().await;
    drop(c);

    // Reconnect to the other node where the last one stopped: the rest of the run, then its
    // close by the survivor once the dead node's lease runs out.
    let mut c = t.resume(&survivor.addr).await;
    t.take_until(&mut c, 1).await;
    assert_contiguous("carol", &t.seen);
    let events: Vec<Value> = t.seen.values().cloned().collect();
    let run = split_runs(&events).remove(0);
    assert_run_well_formed(&run);
    assert_eq!(run.last().unwrap()["status"], "error", "{run:?}");

    let pool = sqlx::PgPool::connect(&cluster.database.url).await.unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "interrupted");

    // The survivor keeps serving the same user.
    c.ask("m2", "Analyze my AI costs", None).await;
    t.take_until(&mut c, 2).await;
    assert_contiguous("carol", &t.seen);
}

/// Polls `/ready` (bounded) until its `status` is `want`.
async fn ready_becomes(server: &Server, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, body) = get_json(&server.addr, "/ready", "ops").await;
        if body["status"] == want {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/ready never said {want}: {last}");
}

#[tokio::test]
async fn redis_stopped_and_restarted_mid_run_loses_nothing() {
    let Some(mut cluster) = Cluster::start(2, 20_000, &[]).await else {
        return;
    };
    let mut a = connect(&cluster.nodes[0], "dave").await;
    let mut b = connect(&cluster.nodes[1], "dave").await;
    a.1.ask("m1", "Analyze my AI costs", None).await;
    for _ in 0..10_000 {
        let v = a.1.next().await.expect("stream ended early");
        let mid = v["type"] == "tool_executing";
        a.0.record(v);
        if mid {
            break;
        }
    }
    a.0.assert_mid_run("Redis stop");
    cluster.redis.stop().await;
    let degraded = ready_becomes(&cluster.nodes[1], "degraded").await;
    assert_eq!(degraded["checks"]["redis"], "unreachable", "{degraded}");
    assert_eq!(degraded["checks"]["database"], "ok", "{degraded}");
    // While Redis is down: the first run ends, and a second one runs on the other node.
    b.1.ask("m2", "Why did spend jump?", None).await;
    take_both(&mut a, &mut b, 2).await;

    cluster.redis.start_again().await;
    ready_becomes(&cluster.nodes[0], "ready").await;
    ready_becomes(&cluster.nodes[1], "ready").await;
    a.1.ask("m3", "How can we cut our LLM bill?", None).await;
    take_both(&mut a, &mut b, 3).await;
    assert_same_complete_stream(&a.0, &b.0, 3);
}

#[tokio::test]
async fn the_message_rate_is_shared_by_all_nodes() {
    let limits = [
        ("APOGEE_MESSAGES_PER_MINUTE", "1"),
        ("APOGEE_MESSAGE_BURST", "2"),
    ];
    let Some(cluster) = Cluster::start(2, 0, &limits).await else {
        return;
    };
    let mut a = connect(&cluster.nodes[0], "erin").await;
    let mut b = connect(&cluster.nodes[1], "erin").await;
    a.1.ask("m1", "hello", None).await;
    a.1.ask("m2", "hello again", None).await;
    // Both admitted on the first node before the second node is asked.
    let mut acks = 0;
    for _ in 0..10_000 {
        let v = a.1.next().await.expect("stream ended early");
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "message_ack" {
            acks += 1;
            if acks == 2 {
                break;
            }
        }
    }
    b.1.ask("m3", "and from another node", None).await;
    let mut verdict = Value::Null;
    for _ in 0..10_000 {
        let v = b.1.next().await.expect("stream ended early");
        if v["type"] == "error" || (v["type"] == "message_ack" && v["client_msg_id"] == "m3") {
            verdict = v;
            break;
        }
    }
    assert_eq!(verdict["type"], "error", "{verdict}");
    assert_eq!(verdict["code"], "rate_limited", "{verdict}");
    assert!(verdict["retry_after_ms"].as_u64().unwrap() > 0, "{verdict}");
}

#[tokio::test]
async fn a_ticket_issued_by_one_node_opens_one_connection_on_another() {
    const SECRET: &str = "multi-node-ticket-secret-of-some-length";
    let jwt = [("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_HS256_SECRET", SECRET)];
    let Some(cluster) = Cluster::start(2, 0, &jwt).await else {
        return;
    };
    let token = hs256(
        SECRET,
        &serde_json::json!({"sub":"frank","org":"acme","exp": unix_now() + 600}),
    );
    let ticket = ws_ticket(&cluster.nodes[0].addr, &token).await;
    let query = format!("?ticket={}", ticket["ticket"].as_str().unwrap());
    let mut h = handshake(&cluster.nodes[1].addr, &query, &[]).await;
    assert_eq!(h.status, 101, "{}", h.body);
    let ready = h.client.as_mut().unwrap().ready().await;
    assert_eq!(ready["user_id"], "frank");
    // Spent: neither node takes it again.
    for node in &cluster.nodes {
        assert_eq!(handshake(&node.addr, &query, &[]).await.status, 401);
    }
}
