//! Several nodes on one database: two `Store` handles (two pools, as two server processes)
//! appending to the same streams keep seqs contiguous, and orphan runs are claimed by exactly
//! one node. Run on PostgreSQL (what several nodes share) and on SQLite (one file opened
//! twice).

use std::collections::{BTreeMap, BTreeSet};

use apogee_store::test_support::{TestStore, stores};
use apogee_store::{Backend, NewEvent, NewTurn, Store, TurnOutcome, UserKey};

fn user(name: &str) -> UserKey {
    UserKey {
        org_id: "o".into(),
        user_id: name.into(),
    }
}

const USERS: [&str; 3] = ["ana", "bo", "cy"];
const TASKS: usize = 8;
const EVENTS_PER_TASK: usize = 200;
const PER_BATCH: usize = 10;

/// Task `t` appends its events in batches that mix the three users, in an order that
/// differs between tasks, alternating between the two nodes' handles; odd tasks also append
/// single events through the group committer.
async fn append_from(t: usize, nodes: [Store; 2]) -> BTreeMap<&'static str, Vec<u64>> {
    let mut seqs: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let mut sent = 0;
    let mut round = 0;
    while sent < EVENTS_PER_TASK {
        let store = &nodes[round % 2];
        let who: Vec<&'static str> = (0..PER_BATCH)
            .map(|i| USERS[(t + i * (1 + t % 2) + round) % USERS.len()])
            .collect();
        if t % 2 == 1 && round % 3 == 0 {
            for name in who {
                let stored = store
                    .append_event(&user(name), None, "thr", 0, move |seq| {
                        format!("{{\"seq\":{seq},\"t\":{t}}}")
                    })
                    .await
                    .unwrap();
                seqs.entry(name).or_default().push(stored.seq);
            }
        } else {
            let batch = who
                .iter()
                .map(|name| NewEvent {
                    user: user(name),
                    run_id: None,
                    thread_id: "thr".into(),
                    ts_ms: 0,
                    render: Box::new(move |seq| format!("{{\"seq\":{seq},\"t\":{t}}}")),
                })
                .collect();
            let stored = store.append_events(batch).await.unwrap();
            for (name, e) in who.iter().zip(stored) {
                seqs.entry(name).or_default().push(e.seq);
            }
        }
        sent += PER_BATCH;
        round += 1;
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_appending_to_the_same_streams_keep_seqs_contiguous() {
    for t in stores().await {
        let other = Store::open(&t.url).await.unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| tokio::spawn(append_from(i, [t.store.clone(), other.clone()])))
            .collect();
        let mut returned: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for task in tasks {
            for (name, seqs) in task.await.unwrap() {
                // Each task sees its own events of a user in increasing seq order.
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{:?}", t.backend);
                returned.entry(name).or_default().extend(seqs);
            }
        }
        let total: usize = returned.values().map(Vec::len).sum();
        assert_eq!(total, TASKS * EVENTS_PER_TASK);
        for (name, mut seqs) in returned {
            let n = seqs.len() as u64;
            seqs.sort_unstable();
            assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "{name} {:?}", t.backend);
            assert_eq!(t.store.head_seq(&user(name)).await.unwrap(), n);
            let stored = other.events_between(&user(name), 0, n).await.unwrap();
            let stored_seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
            assert_eq!(stored_seqs, (1..=n).collect::<Vec<_>>());
            assert!(
                stored
                    .iter()
                    .all(|e| e.payload.starts_with(&format!("{{\"seq\":{},", e.seq)))
            );
        }
        other.close().await;
    }
}

fn turn(run: &str, node: &str) -> NewTurn {
    NewTurn {
        new_thread_title: Some("t".into()),
        thread_id: format!("th-{run}"),
        message_id: format!("m-{run}"),
        run_id: run.into(),
        client_msg_id: format!("c-{run}"),
        content: "hi".into(),
        created_at: "2026-11-25T00:00:00Z".into(),
        created_ms: 1,
        node_id: node.into(),
    }
}

/// Clears a run's node, as for runs stored before nodes were recorded.
async fn forget_node(t: &TestStore, run: &str) {
    let sql = "UPDATE runs SET node_id = NULL WHERE id = $1";
    match t.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&t.url).await.unwrap();
            sqlx::query(sql).bind(run).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&t.url).await.unwrap();
            sqlx::query(sql).bind(run).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_orphan_run_is_claimed_by_exactly_one_node() {
    const LIVE_AFTER: i64 = 5_000;
    for t in stores().await {
        let (a, b) = (t.store.clone(), Store::open(&t.url).await.unwrap());
        a.register_node("a", 10_000).await.unwrap();
        b.register_node("b", 10_000).await.unwrap();
        a.register_node("live", 9_000).await.unwrap();
        a.register_node("dead", 1_000).await.unwrap();
        // Nobody's runs: the live node's, and one of each claimer's.
        let keep = ["live-1", "live-2", "a-1", "b-1"];
        for (run, node) in [
            ("live-1", "live"),
            ("live-2", "live"),
            ("a-1", "a"),
            ("b-1", "b"),
        ] {
            let created = a.create_turn(&user("ana"), &turn(run, node)).await.unwrap();
            assert_eq!(created, TurnOutcome::Created);
        }
        // A finished run of a dead node is not claimed either.
        a.create_turn(&user("ana"), &turn("done", "dead"))
            .await
            .unwrap();
        a.finish_run("done", "ok", "2026-11-25T00:00:01Z")
            .await
            .unwrap();
        let mut orphans = BTreeSet::new();
        for round in 0..5 {
            // Orphans of a node that stopped heartbeating, of one that was removed (or never
            // registered), and runs with no node at all.
            for i in 0..12 {
                let (run, node) = match i % 3 {
                    0 => (format!("dead-{round}-{i}"), "dead"),
                    1 => (format!("gone-{round}-{i}"), "gone"),
                    _ => (format!("null-{round}-{i}"), "gone"),
                };
                let owner = user(USERS[i % USERS.len()]);
                b.create_turn(&owner, &turn(&run, node)).await.unwrap();
                if run.starts_with("null") {
                    forget_node(&t, &run).await;
                }
                orphans.insert(run);
            }
            let (by_a, by_b) = tokio::join!(
                a.claim_orphan_runs("a", LIVE_AFTER),
                b.claim_orphan_runs("b", LIVE_AFTER)
            );
            let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
            let ids = |runs: &[apogee_store::RunRow]| -> BTreeSet<String> {
                runs.iter().map(|r| r.id.clone()).collect()
            };
            let (ia, ib) = (ids(&by_a), ids(&by_b));
            assert!(ia.is_disjoint(&ib), "{:?} claimed twice", t.backend);
            assert_eq!(by_a.len() + by_b.len(), ia.len() + ib.len());
            let claimed: BTreeSet<String> = ia.union(&ib).cloned().collect();
            let this_round: BTreeSet<String> = orphans
                .iter()
                .filter(|r| r.contains(&format!("-{round}-")))
                .cloned()
                .collect();
            assert_eq!(claimed, this_round, "{:?} round {round}", t.backend);
            assert!(by_a.iter().chain(&by_b).all(|r| r.status == "running"));
            assert!(
                by_a.iter()
                    .chain(&by_b)
                    .all(|r| !keep.contains(&r.id.as_str()))
            );
            // Claimed runs now belong to a live node: nobody claims them again.
            assert!(
                a.claim_orphan_runs("a", LIVE_AFTER)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        // A node does not claim its own runs, even when its lease has lapsed.
        assert!(
            b.claim_orphan_runs("b", 20_000)
                .await
                .unwrap()
                .iter()
                .all(|r| r.id != "b-1")
        );
        other_checks(&a).await;
        b.close().await;
    }
}

async fn other_checks(store: &Store) {
    store.register_node("n", 1).await.unwrap();
    assert!(store.heartbeat_node("n", 2).await.unwrap());
    store.remove_node("n").await.unwrap();
    assert!(!store.heartbeat_node("n", 3).await.unwrap());
    // Registering again restarts the lease.
    store.register_node("n", 4).await.unwrap();
    assert!(store.heartbeat_node("n", 5).await.unwrap());
}

#[tokio::test]
async fn the_backend_is_reported() {
    for t in stores().await {
        assert_eq!(t.store.backend(), t.backend);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_sent_to_two_nodes_at_once_is_stored_once() {
    // PostgreSQL only: a SQLite file has one node, whose single writer connection already
    // serialises turns (two processes on one file would get SQLITE_BUSY upgrading a read).
    for t in stores()
        .await
        .into_iter()
        .filter(|t| t.backend == Backend::Postgres)
    {
        let other = Store::open(&t.url).await.unwrap();
        for i in 0..10 {
            // The same client_msg_id reaching two nodes: different message and run ids.
            let mut first = turn(&format!("r{i}-a"), "a");
            let mut second = turn(&format!("r{i}-b"), "b");
            first.client_msg_id = format!("same-{i}");
            second.client_msg_id = format!("same-{i}");
            let ana = user("ana");
            let (x, y) = tokio::join!(
                t.store.create_turn(&ana, &first),
                other.create_turn(&ana, &second)
            );
            let outcomes = [x.unwrap(), y.unwrap()];
            let created = outcomes
                .iter()
                .filter(|o| **o == TurnOutcome::Created)
                .count();
            assert_eq!(created, 1, "{:?} {outcomes:?}", t.backend);
            let winner = if outcomes[0] == TurnOutcome::Created {
                &first
            } else {
                &second
            };
            for o in &outcomes {
                if let TurnOutcome::Duplicate(ack) = o {
                    assert_eq!(ack.run_id, winner.run_id);
                    assert_eq!(ack.message_id, winner.message_id);
                }
            }
        }
        other.close().await;
    }
}
