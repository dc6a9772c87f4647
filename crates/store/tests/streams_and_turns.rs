//! Per-user seq assignment under concurrent writers, replay reads, and idempotent turns; on
//! SQLite and on PostgreSQL.

use apogee_store::test_support::stores;
use apogee_store::{NewTurn, TurnOutcome, UserKey};

fn user(name: &str) -> UserKey {
    UserKey {
        org_id: "o".into(),
        user_id: name.into(),
    }
}

#[tokio::test]
async fn concurrent_appends_get_contiguous_seqs_per_user() {
    for t in stores().await {
        let store = t.store.clone();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let who = if i % 2 == 0 { "alice" } else { "bob" };
                    store
                        .append_event(&user(who), None, "thr", 0, move |seq| {
                            format!("{{\"seq\":{seq},\"t\":{t}}}")
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for (who, n) in [("alice", 8 * 13), ("bob", 8 * 12)] {
            assert_eq!(store.head_seq(&user(who)).await.unwrap(), n);
            let events = store.events_between(&user(who), 0, n).await.unwrap();
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
            assert!(
                events
                    .iter()
                    .all(|e| e.payload.starts_with(&format!("{{\"seq\":{},", e.seq)))
            );
        }
        assert_eq!(store.head_seq(&user("carol")).await.unwrap(), 0);
        assert_eq!(
            store
                .events_between(&user("alice"), 100, 104)
                .await
                .unwrap()
                .len(),
            4
        );
    }
}

#[tokio::test]
async fn heads_of_many_users_are_read_together() {
    for t in stores().await {
        let store = t.store.clone();
        // More users than one statement reads, so the reads are chunked.
        let users: Vec<UserKey> = (0..1203).map(|i| user(&format!("u{i}"))).collect();
        let mut events = Vec::new();
        for (i, u) in users.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
            for _ in 0..(i % 4 + 1) {
                events.push(apogee_store::NewEvent {
                    user: u.clone(),
                    run_id: None,
                    thread_id: "thr".into(),
                    ts_ms: 0,
                    render: Box::new(|seq| format!("{{\"seq\":{seq}}}")),
                });
            }
        }
        store.append_events(events).await.unwrap();
        let mut heads = store.head_seqs(&users).await.unwrap();
        heads.sort_by_key(|(u, _)| u.user_id[1..].parse::<usize>().unwrap());
        let expected: Vec<(UserKey, u64)> = users
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(i, u)| (u.clone(), (i % 4 + 1) as u64))
            .collect();
        assert_eq!(heads, expected, "{:?}", t.backend);
        // Another org's user of the same name is not this one.
        let stranger = UserKey {
            org_id: "other".into(),
            user_id: "u1".into(),
        };
        assert!(store.head_seqs(&[stranger]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn turns_are_idempotent_and_threads_scoped() {
    for t in stores().await {
        let store = t.store.clone();
        let turn = |cmid: &str, thread: &str, new: bool| NewTurn {
            new_thread_title: new.then(|| "t".to_string()),
            thread_id: thread.into(),
            message_id: format!("m-{cmid}-{thread}"),
            run_id: format!("r-{cmid}-{thread}"),
            client_msg_id: cmid.into(),
            content: "hi".into(),
            created_at: "2026-11-25T00:00:00Z".into(),
            created_ms: 1,
            node_id: "n1".into(),
        };
        assert_eq!(
            store
                .create_turn(&user("alice"), &turn("c1", "th1", true))
                .await
                .unwrap(),
            TurnOutcome::Created
        );
        match store
            .create_turn(&user("alice"), &turn("c1", "th9", true))
            .await
            .unwrap()
        {
            TurnOutcome::Duplicate(ack) => assert_eq!(
                (
                    ack.message_id.as_str(),
                    ack.thread_id.as_str(),
                    ack.run_id.as_str()
                ),
                ("m-c1-th1", "th1", "r-c1-th1")
            ),
            other => panic!("{other:?}"),
        }
        // Same client_msg_id from another user is not a duplicate; alice's thread is not bob's.
        assert_eq!(
            store
                .create_turn(&user("bob"), &turn("c1", "th2", true))
                .await
                .unwrap(),
            TurnOutcome::Created
        );
        assert_eq!(
            store
                .create_turn(&user("bob"), &turn("c2", "th1", false))
                .await
                .unwrap(),
            TurnOutcome::ThreadNotFound
        );
        assert!(
            store
                .thread_messages(&user("bob"), "th1")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store
                .thread_messages(&user("alice"), "th1")
                .await
                .unwrap()
                .unwrap()
                .len(),
            1
        );
        assert!(store.run_owned(&user("alice"), "r-c1-th1").await.unwrap());
        assert!(!store.run_owned(&user("bob"), "r-c1-th1").await.unwrap());
        assert_eq!(store.open_runs().await.unwrap().len(), 2);
        store
            .finish_run("r-c1-th1", "ok", "2026-11-25T00:00:01Z")
            .await
            .unwrap();
        assert_eq!(store.open_runs().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_thread_hands_its_latest_plan_to_the_next_run() {
    for t in stores().await {
        let store = t.store.clone();
        let turn = |n: u32, thread: &str, new: bool| NewTurn {
            new_thread_title: new.then(|| "t".to_string()),
            thread_id: thread.into(),
            message_id: format!("m{n}"),
            run_id: format!("r{n}"),
            client_msg_id: format!("c{n}"),
            content: "q".into(),
            created_at: format!("2026-11-25T00:00:0{n}.000Z"),
            created_ms: i64::from(n),
            node_id: "n1".into(),
        };
        let alice = user("alice");
        store
            .create_turn(&alice, &turn(1, "th1", true))
            .await
            .unwrap();
        assert_eq!(store.thread_plan(&alice, "th1", "r2").await.unwrap(), None);
        store
            .set_run_plan("r1", r#"{"intent":"figure"}"#)
            .await
            .unwrap();
        store
            .create_turn(&alice, &turn(2, "th1", false))
            .await
            .unwrap();
        assert_eq!(
            store
                .thread_plan(&alice, "th1", "r2")
                .await
                .unwrap()
                .as_deref(),
            Some(r#"{"intent":"figure"}"#)
        );
        // A run without a plan (it failed early) leaves the earlier one in force.
        store
            .create_turn(&alice, &turn(3, "th1", false))
            .await
            .unwrap();
        assert_eq!(
            store
                .thread_plan(&alice, "th1", "r3")
                .await
                .unwrap()
                .as_deref(),
            Some(r#"{"intent":"figure"}"#)
        );
        store
            .set_run_plan("r2", r#"{"intent":"forecast"}"#)
            .await
            .unwrap();
        assert_eq!(
            store
                .thread_plan(&alice, "th1", "r3")
                .await
                .unwrap()
                .as_deref(),
            Some(r#"{"intent":"forecast"}"#)
        );
        // Another user, or another thread, sees nothing of it.
        assert_eq!(
            store.thread_plan(&user("bob"), "th1", "r3").await.unwrap(),
            None
        );
        store
            .create_turn(&alice, &turn(4, "th2", true))
            .await
            .unwrap();
        assert_eq!(store.thread_plan(&alice, "th2", "r4").await.unwrap(), None);
    }
}

/// A run's answer is stored in its event's transaction and its end in the committer's next
/// batch, after the events queued before it; neither costs a transaction of its own.
#[tokio::test]
async fn a_runs_answer_and_end_are_stored_in_the_event_batches() {
    use apogee_store::{MessageRow, NewEvent, RunRecord};
    for t in stores().await {
        let store = t.store.clone();
        let alice = user("alice");
        let turn = NewTurn {
            new_thread_title: Some("t".into()),
            thread_id: "th1".into(),
            message_id: "m1".into(),
            run_id: "r1".into(),
            client_msg_id: "c1".into(),
            content: "q".into(),
            created_at: "2026-11-25T00:00:01.000Z".into(),
            created_ms: 1,
            node_id: "n1".into(),
        };
        store.create_turn(&alice, &turn).await.unwrap();
        let event = |n: u32| NewEvent {
            user: alice.clone(),
            run_id: Some("r1".into()),
            thread_id: "th1".into(),
            ts_ms: 2,
            render: Box::new(move |seq| format!("{{\"seq\":{seq},\"n\":{n}}}")),
        };
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let mut queued = Vec::new();
        for n in 0..3 {
            let seen_tx = seen_tx.clone();
            queued.push(
                store
                    .queue_event(event(n), move |e| {
                        let _ = seen_tx.send(e.seq);
                    })
                    .await
                    .unwrap(),
            );
        }
        let answer = RunRecord::Answer {
            message: MessageRow {
                id: "m2".into(),
                thread_id: "th1".into(),
                role: "assistant".into(),
                content: "the answer".into(),
                client_msg_id: None,
                run_id: Some("r1".into()),
                created_at: "2026-11-25T00:00:02.000Z".into(),
            },
            created_ms: 2,
        };
        let with_answer = store
            .queue_event_with_record(event(3), answer, |_| {})
            .await
            .unwrap();
        let end = RunRecord::End {
            run_id: "r1".into(),
            status: "ok".into(),
            ended_at: "2026-11-25T00:00:03.000Z".into(),
            plan: Some(r#"{"intent":"figure"}"#.into()),
        };
        // Waits for the end's batch, which comes after every event queued before it.
        store.record_run(&alice, end).await.unwrap();
        for mut q in queued {
            assert!(q.try_stored().is_some_and(|r| r.is_ok()));
        }
        assert_eq!(with_answer.stored().await.unwrap(), 4);
        drop(seen_tx);
        let mut hooked = Vec::new();
        while let Some(seq) = seen.recv().await {
            hooked.push(seq);
        }
        assert_eq!(hooked, [1, 2, 3]);
        let messages = store.thread_messages(&alice, "th1").await.unwrap().unwrap();
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["q", "the answer"]);
        assert_eq!(messages[1].role, "assistant");
        assert!(store.open_runs().await.unwrap().is_empty(), "r1 ended");
        assert_eq!(
            store
                .thread_plan(&alice, "th1", "r2")
                .await
                .unwrap()
                .as_deref(),
            Some(r#"{"intent":"figure"}"#)
        );
        // An end without a plan keeps the one recorded.
        let again = RunRecord::End {
            run_id: "r1".into(),
            status: "interrupted".into(),
            ended_at: "2026-11-25T00:00:04.000Z".into(),
            plan: None,
        };
        store.record_run(&alice, again).await.unwrap();
        assert_eq!(
            store
                .thread_plan(&alice, "th1", "r2")
                .await
                .unwrap()
                .as_deref(),
            Some(r#"{"intent":"figure"}"#)
        );
    }
}

#[tokio::test]
async fn a_failing_turn_fails_alone_and_a_resend_in_the_same_batch_is_a_duplicate() {
    for t in stores().await {
        let store = t.store.clone();
        let turn = |cmid: &str, run: &str| NewTurn {
            new_thread_title: Some("t".to_string()),
            thread_id: format!("th-{cmid}-{run}"),
            message_id: format!("m-{cmid}-{run}"),
            run_id: run.into(),
            client_msg_id: cmid.into(),
            content: "hi".into(),
            created_at: "2026-11-25T00:00:00Z".into(),
            created_ms: 1,
            node_id: "n1".into(),
        };
        let (alice, bob) = (user("alice"), user("bob"));
        assert_eq!(
            store.create_turn(&alice, &turn("c1", "r1")).await.unwrap(),
            TurnOutcome::Created
        );
        // Queued together (on SQLite they share the committer's batches): a turn whose run id
        // is taken fails, alone; the same message sent twice is stored once; another user's
        // turn and events are stored.
        let taken = turn("c2", "r1");
        let (first, second) = (turn("c3", "r3"), turn("c3", "r4"));
        let bobs = turn("c1", "r5");
        let (failed, a, b, created, event) = tokio::join!(
            store.create_turn(&alice, &taken),
            store.create_turn(&alice, &first),
            store.create_turn(&alice, &second),
            store.create_turn(&bob, &bobs),
            store.append_event(&bob, None, "th", 0, |seq| format!("{{\"seq\":{seq}}}")),
        );
        assert!(failed.is_err(), "{:?}: {failed:?}", t.backend);
        assert_eq!(created.unwrap(), TurnOutcome::Created);
        assert_eq!(event.unwrap().seq, 1);
        let (won, lost) = match (a.unwrap(), b.unwrap()) {
            (TurnOutcome::Created, other) => ("r3", other),
            (other, TurnOutcome::Created) => ("r4", other),
            other => panic!("{:?}: {other:?}", t.backend),
        };
        match lost {
            TurnOutcome::Duplicate(ack) => assert_eq!(ack.run_id, won),
            other => panic!("{:?}: {other:?}", t.backend),
        }
        // Nothing of the failed turn was kept: neither its thread nor its message.
        assert!(
            store
                .thread_messages(&alice, "th-c2-r1")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.find_ack(&alice, "c2").await.unwrap().is_none());
        assert_eq!(
            store
                .thread_messages(&bob, "th-c1-r5")
                .await
                .unwrap()
                .map(|m| m.len()),
            Some(1)
        );
    }
}
