//! The server in-process (`common::in_process`): the WebSocket reader's error budget, token
//! expiry, isolation between users, and what shutdown does to a message it has just
//! acknowledged — through a real listener and real clients, without a child process.

mod common;

use common::in_process::InProcess;
use common::*;
use serde_json::{Value, json};

/// Bad frames a connection may send in its window (`MAX_ERRORS_PER_WINDOW` in `ws.rs`).
const ERROR_BUDGET: usize = 20;

/// The `error` frame answering the last frame sent, skipping stream events.
async fn error_frame(c: &mut Client) -> Value {
    for _ in 0..1_000 {
        let v = c.next().await.expect("connection open");
        if v["type"] == "error" {
            return v;
        }
    }
    panic!("no error frame");
}

async fn ack(c: &mut Client) -> Value {
    for _ in 0..1_000 {
        let v = c.next().await.expect("connection open");
        if v["type"] == "message_ack" {
            return v;
        }
    }
    panic!("no ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_answers_bad_frames_until_its_error_budget_then_closes_1008() {
    let server = InProcess::start(&[]).await;
    let mut c = server.ws("?user=mallory").await;
    c.ready().await;
    for i in 0..ERROR_BUDGET {
        c.send(json!({"type":"no_such_frame","n":i})).await;
        assert_eq!(error_frame(&mut c).await["code"], "unknown_type");
    }
    // Still open and answering within the budget.
    c.send(json!({"type":"ping","nonce":"n"})).await;
    assert_eq!(c.next().await.expect("pong")["type"], "pong");
    c.send(json!({"type":"no_such_frame"})).await;
    assert_eq!(c.close_code().await, Some(1008));
    // Another connection is not affected.
    let mut other = server.ws("?user=alice").await;
    other.ready().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closes_4001_when_its_token_expires() {
    let secret = "in-process-secret-of-at-least-32-bytes";
    let server =
        InProcess::start(&[("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_HS256_SECRET", secret)]).await;
    let short = hs256(
        secret,
        &json!({"sub":"erin","org":"acme","exp": unix_now() + 2}),
    );
    let long = hs256(
        secret,
        &json!({"sub":"frank","org":"acme","exp": unix_now() + 3600}),
    );
    let mut expiring = Client::connect(
        &server.addr,
        "",
        &[("authorization", &format!("Bearer {short}"))],
    )
    .await
    .expect("connect");
    let mut lasting = Client::connect(
        &server.addr,
        "",
        &[("authorization", &format!("Bearer {long}"))],
    )
    .await
    .expect("connect");
    expiring.ready().await;
    lasting.ready().await;
    assert_eq!(expiring.close_code().await, Some(4001));
    // The other user's connection, whose token has not expired, still answers.
    lasting.send(json!({"type":"ping","nonce":"alive"})).await;
    let pong = lasting.next().await.expect("pong");
    assert_eq!(
        (&pong["type"], &pong["nonce"]),
        (&json!("pong"), &json!("alive"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_sees_reaches_or_cancels_another_users_thread_or_run() {
    let server = InProcess::start(&[]).await;
    let mut alice = server.ws("?user=alice").await;
    alice.ready().await;
    let mut bob = server.ws("?user=bob").await;
    bob.ready().await;
    alice.ask("a1", "Analyze my AI costs", None).await;
    let ack = ack(&mut alice).await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let run = ack["run_id"].as_str().unwrap().to_string();

    bob.ask("b1", "show me", Some(&thread)).await;
    let into_alices = error_frame(&mut bob).await;
    bob.ask("b2", "show me", Some("thr_does_not_exist")).await;
    let into_nothing = error_frame(&mut bob).await;
    assert_eq!(into_alices["code"], "not_found");
    assert_eq!(into_alices["message"], into_nothing["message"]);
    bob.send(json!({"type":"cancel_run","run_id": run})).await;
    let cancel_alices = error_frame(&mut bob).await;
    bob.send(json!({"type":"cancel_run","run_id":"run_does_not_exist"}))
        .await;
    assert_eq!(cancel_alices["code"], "not_found");
    assert_eq!(cancel_alices, error_frame(&mut bob).await);
    let (status, _) = get_json(
        &server.addr,
        &format!("/api/threads/{thread}/messages"),
        "bob",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&server.addr, &format!("/api/runs/{run}/events"), "bob").await;
    assert_eq!(status, 404);

    // Alice's run ends normally; bob's stream never carried any of it.
    let events = alice.until_run_end(&run).await;
    assert_run_well_formed(&events);
    assert_eq!(events.last().unwrap()["status"], "ok");
    bob.send(json!({"type":"ping","nonce":"last"})).await;
    loop {
        let v = bob.next().await.expect("bob's connection open");
        if v["type"] == "pong" {
            break;
        }
        assert_ne!(v["thread_id"], json!(thread), "bob got alice's event {v}");
        assert_ne!(v["run_id"], json!(run), "bob got alice's event {v}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_acknowledged_as_shutdown_begins_run_to_completion_within_the_grace_period() {
    let mut server = InProcess::start(&[("APOGEE_SHUTDOWN_GRACE_MS", "60000")]).await;
    let users = ["ann", "ben", "cy"];
    let mut clients = Vec::new();
    for user in users {
        let mut c = server.ws(&format!("?user={user}")).await;
        c.ready().await;
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.ask(&format!("m{i}"), "Analyze my AI costs", None).await;
    }
    let mut runs = Vec::new();
    for c in clients.iter_mut() {
        let ack = ack(c).await;
        runs.push(ack["run_id"].as_str().unwrap().to_string());
    }
    // Right after the acks: the runs' starts (their message events) may not have happened.
    server.begin_shutdown();
    for c in clients.iter_mut() {
        assert_eq!(c.close_code().await, Some(1012));
    }
    let url = server.database_url.clone();
    let _dir = server.stop().await;
    let store = InProcess::reopen_store(&url).await;
    assert!(
        store.open_runs().await.expect("open runs").is_empty(),
        "no run left open"
    );
    for (user, run) in users.iter().zip(&runs) {
        let key = apogee_store::UserKey {
            org_id: "demo".into(),
            user_id: user.to_string(),
        };
        let events: Vec<Value> = store
            .run_events(&key, run)
            .await
            .expect("run events")
            .iter()
            .map(|e| serde_json::from_str(&e.payload).expect("JSON"))
            .collect();
        assert!(
            events.iter().any(|e| e["type"] == "message_created"),
            "{user}'s message was published: {events:?}"
        );
        assert_run_well_formed(&events);
        let end = events.last().expect("events");
        assert_eq!(
            (&end["type"], &end["agent"], &end["status"]),
            (
                &json!("agent_completed"),
                &json!("supervisor"),
                &json!("ok")
            ),
            "{user}'s run ran to completion"
        );
    }
}
