//! The per-user stream over real connections: idempotent resend, resume mid-run, isolation
//! between users, bad frames answered without losing the connection, and seqs that survive a
//! restart.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{Value, json};

async fn start_with_data(calls: u64) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), calls).await;
    let server = Server::start(dir.path(), &[]).await;
    (dir, server)
}

#[tokio::test]
async fn resending_a_client_msg_id_is_acknowledged_as_duplicate_and_starts_nothing() {
    let (_dir, server) = start_with_data(2_000).await;
    let mut c = server.ws("?user=alice").await;
    c.ready().await;
    c.ask("same", "Analyze my AI costs", None).await;
    let first = c.next().await.unwrap();
    let run_id = first["run_id"].as_str().unwrap().to_string();
    let events = c.until_run_end(&run_id).await;

    // Resent on a new connection, as after a reconnect.
    let mut c2 = server.ws("?user=alice").await;
    let ready = c2.ready().await;
    let head = ready["head_seq"].as_u64().unwrap();
    assert_eq!(head, events.last().unwrap()["seq"].as_u64().unwrap());
    c2.ask("same", "Analyze my AI costs", None).await;
    let again = c2.next().await.unwrap();
    assert_eq!(again["type"], "message_ack");
    assert_eq!(again["duplicate"], true);
    for k in ["message_id", "thread_id", "run_id"] {
        assert_eq!(again[k], first[k]);
    }
    // Nothing new was started: a ping round-trips with no stream event in between.
    c2.send(json!({"type":"ping","nonce":"n1"})).await;
    let pong = c2.next().await.unwrap();
    assert_eq!(pong, json!({"type":"pong","nonce":"n1"}));
    let c3_ready = server.ws("?user=alice").await.ready().await;
    assert_eq!(c3_ready["head_seq"].as_u64().unwrap(), head);
}

#[tokio::test]
async fn resume_with_last_seq_mid_run_loses_and_duplicates_nothing() {
    let (_dir, server) = start_with_data(5_000).await;
    let mut c = server.ws("?user=alice").await;
    c.ready().await;
    c.ask("m1", "How can we cut our LLM bill?", None).await;
    let ack = c.next().await.unwrap();
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let mut seen: BTreeMap<u64, Value> = BTreeMap::new();
    for _ in 0..4 {
        let e = c.next().await.unwrap();
        seen.insert(e["seq"].as_u64().unwrap(), e);
    }
    let last = *seen.keys().last().unwrap();
    assert_mid_run(seen.values(), "drop");
    drop(c);

    let mut r = server.ws(&format!("?user=alice&last_seq={last}")).await;
    let ready = r.ready().await;
    assert_eq!(ready["resync_required"], false);
    let replayed = ready["replayed"].as_u64().unwrap();
    assert_eq!(replayed, ready["head_seq"].as_u64().unwrap() - last);
    let rest = r.until_run_end(&run_id).await;
    for e in &rest {
        let seq = e["seq"].as_u64().unwrap();
        assert!(
            seen.insert(seq, e.clone()).is_none(),
            "seq {seq} delivered twice"
        );
    }
    let seqs: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap in the stream"
    );
    let all: Vec<Value> = seen.into_values().collect();
    assert_run_well_formed(&all);

    // A resume point ahead of the stream cannot be honoured: the client must resync.
    let mut odd = server.ws("?user=alice&last_seq=999999").await;
    let ready = odd.ready().await;
    assert_eq!(ready["resync_required"], true);
    assert_eq!(ready["replayed"], 0);
}

#[tokio::test]
async fn two_users_at_once_never_see_each_others_events() {
    let (_dir, server) = start_with_data(5_000).await;
    let mut alice = server.ws("?user=alice").await;
    let mut bob = server.ws("?user=bob").await;
    // A second tab of alice's sees her events too.
    let mut alice_tab = server.ws("?user=alice").await;
    alice.ready().await;
    bob.ready().await;
    alice_tab.ready().await;
    alice.ask("a1", "Analyze my AI costs", None).await;
    bob.ask("b1", "Why did spend jump?", None).await;
    let a_ack = alice.next().await.unwrap();
    let b_ack = bob.next().await.unwrap();
    let (a_run, b_run) = (
        a_ack["run_id"].as_str().unwrap().to_string(),
        b_ack["run_id"].as_str().unwrap().to_string(),
    );
    let (a_events, b_events, tab_events) = tokio::join!(
        alice.until_run_end(&a_run),
        bob.until_run_end(&b_run),
        alice_tab.until_run_end(&a_run)
    );
    for e in &a_events {
        assert_eq!(
            e["thread_id"], a_ack["thread_id"],
            "alice got a foreign event: {e}"
        );
        if let Some(r) = e["run_id"].as_str() {
            assert_eq!(r, a_run);
        }
    }
    for e in &b_events {
        assert_eq!(
            e["thread_id"], b_ack["thread_id"],
            "bob got a foreign event: {e}"
        );
    }
    assert_eq!(
        a_events, tab_events,
        "every connection of a user gets the same stream"
    );
    assert_eq!(a_events[0]["seq"], 1);
    assert_eq!(b_events[0]["seq"], 1, "seq is per user");
    // REST is scoped the same way.
    let thread = a_ack["thread_id"].as_str().unwrap();
    assert_eq!(
        get_json(
            &server.addr,
            &format!("/api/threads/{thread}/messages"),
            "alice"
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get_json(
            &server.addr,
            &format!("/api/threads/{thread}/messages"),
            "bob"
        )
        .await
        .0,
        404
    );
    let (_, bob_threads) = get_json(&server.addr, "/api/threads", "bob").await;
    assert_eq!(bob_threads["threads"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut c = server.ws("?user=alice").await;
    c.ready().await;

    c.send_text("this is not json").await;
    let e = c.next().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );

    c.send(json!({"type":"teleport"})).await;
    assert_eq!(c.next().await.unwrap()["code"], "unknown_type");

    c.send(json!({"type":"user_message","content":"hi"})).await;
    assert_eq!(c.next().await.unwrap()["code"], "bad_request");

    c.ask("long", &"x".repeat(8001), None).await;
    let e = c.next().await.unwrap();
    assert_eq!(
        (e["code"].as_str(), e["client_msg_id"].as_str()),
        (Some("bad_request"), Some("long"))
    );

    c.ask("t1", "hello", Some("thr_not_mine")).await;
    let e = c.next().await.unwrap();
    assert_eq!(
        (e["code"].as_str(), e["client_msg_id"].as_str()),
        (Some("not_found"), Some("t1"))
    );

    c.send(json!({"type":"cancel_run","run_id":"run_nobody"}))
        .await;
    assert_eq!(c.next().await.unwrap()["code"], "not_found");

    c.send(json!({"type":"ping","nonce":42})).await;
    assert_eq!(c.next().await.unwrap(), json!({"type":"pong","nonce":42}));
    // None of it touched the stream.
    assert_eq!(server.ws("?user=alice").await.ready().await["head_seq"], 0);
}

#[tokio::test]
async fn restart_on_the_same_data_dir_replays_the_same_seqs() {
    let (dir, server) = start_with_data(2_000).await;
    let mut c = server.ws("?user=alice").await;
    c.ready().await;
    c.ask("m1", "Analyze my AI costs", None).await;
    let ack = c.next().await.unwrap();
    let before = c.until_run_end(ack["run_id"].as_str().unwrap()).await;
    let status = server.terminate().await;
    assert!(status.success(), "graceful exit: {status}");

    let server = Server::start(dir.path(), &[]).await;
    let mut r = server.ws("?user=alice&last_seq=0").await;
    let ready = r.ready().await;
    assert_eq!(ready["replayed"].as_u64().unwrap(), before.len() as u64);
    let mut after = Vec::new();
    for _ in 0..before.len() {
        after.push(r.next().await.unwrap());
    }
    assert_eq!(after, before);
}

/// A user whose connection dropped and whose run ended comes back within the grace
/// (`APOGEE_STREAM_GRACE_MS`): the node kept the stream, so the replay comes from memory, and
/// the client gets every seq once, the stream going on where it was.
#[tokio::test]
async fn a_user_back_within_the_grace_resumes_from_memory_losing_and_duplicating_nothing() {
    let (_dir, server) = start_with_data(2_000).await;
    let mut c = server.ws("?user=alice").await;
    c.ready().await;
    c.ask("m1", "Analyze my AI costs", None).await;
    c.next().await.unwrap();
    let mut seen: BTreeMap<u64, Value> = BTreeMap::new();
    for _ in 0..3 {
        let e = c.next().await.unwrap();
        seen.insert(e["seq"].as_u64().unwrap(), e);
    }
    let last = *seen.keys().last().unwrap();
    drop(c);
    // Kept once the connection is gone and the run ended (bounded wait).
    for _ in 0..400 {
        if metric(&server, "apogee_streams_kept").await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(metric(&server, "apogee_streams_kept").await, 1);
    assert!(metric(&server, "apogee_streams_kept_bytes").await > 0);
    let from_memory = r#"apogee_ws_replays_total{source="memory"}"#;
    let before = metric(&server, from_memory).await;

    let mut r = server.ws(&format!("?user=alice&last_seq={last}")).await;
    let ready = r.ready().await;
    assert_eq!(ready["resync_required"], false);
    let head = ready["head_seq"].as_u64().unwrap();
    assert_eq!(ready["replayed"].as_u64().unwrap(), head - last);
    for _ in last..head {
        let e = r.next().await.unwrap();
        let seq = e["seq"].as_u64().unwrap();
        assert!(seen.insert(seq, e).is_none(), "seq {seq} delivered twice");
    }
    let seqs: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "gap in the stream");
    assert_run_well_formed(&seen.values().cloned().collect::<Vec<_>>());
    assert_eq!(metric(&server, from_memory).await, before + 1);
    assert_eq!(
        metric(&server, "apogee_streams_kept").await,
        0,
        "taken back"
    );

    // The stream goes on from there: the next run's events follow, once each.
    r.ask("m2", "Why did spend jump?", None).await;
    let ack = r.next().await.unwrap();
    let next = r.until_run_end(ack["run_id"].as_str().unwrap()).await;
    assert_eq!(next[0]["seq"].as_u64().unwrap(), head + 1);
}
