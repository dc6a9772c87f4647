//! Isolation between users and orgs (PROTOCOL.md §3, §5, §7): bob cannot post into, read or
//! cancel alice's thread or run over WebSocket or REST, and is answered exactly as for an id
//! that does not exist; one org's usage never shows in another org's costs.

mod common;

use common::*;
use serde_json::{Value, json};

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

#[tokio::test]
async fn bob_cannot_post_into_read_or_cancel_alices_thread_or_run() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 500).await;
    let server = Server::start(dir.path(), &[]).await;

    let mut alice = server.ws("?user=alice").await;
    alice.ready().await;
    alice.ask("a1", "Analyze my AI costs", None).await;
    let ack = alice.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let run = ack["run_id"].as_str().unwrap().to_string();

    let mut bob = server.ws("?user=bob").await;
    bob.ready().await;
    // Posting into alice's thread, and into one that does not exist: the same answer.
    bob.ask("b1", "show me", Some(&thread)).await;
    let into_alices = error_frame(&mut bob).await;
    bob.ask("b2", "show me", Some("thr_does_not_exist")).await;
    let into_nothing = error_frame(&mut bob).await;
    assert_eq!(into_alices["code"], "not_found");
    assert_eq!(into_alices["client_msg_id"], "b1");
    assert_eq!(into_alices["message"], into_nothing["message"]);
    // Cancelling alice's run (possibly still in flight) and a made-up one: the same answer.
    bob.send(json!({"type":"cancel_run","run_id": run})).await;
    let cancel_alices = error_frame(&mut bob).await;
    bob.send(json!({"type":"cancel_run","run_id":"run_does_not_exist"}))
        .await;
    let cancel_nothing = error_frame(&mut bob).await;
    assert_eq!(cancel_alices["code"], "not_found");
    assert_eq!(cancel_alices, cancel_nothing);

    // Alice's run was not cancelled by bob: it ends normally, and she saw none of bob's frames.
    let events = alice.until_run_end(&run).await;
    assert_run_well_formed(&events);
    assert_eq!(events.last().unwrap()["status"], "ok");
    assert!(
        events
            .iter()
            .all(|e| e["run_id"] == run || e["run_id"].is_null()),
        "only alice's run"
    );

    // REST: reading alice's thread or run is a 404 identical to a missing id.
    let (s1, b1) = http(
        &server.addr,
        "GET",
        &format!("/api/threads/{thread}/messages"),
        &[("X-Apogee-User", "bob")],
        b"",
    )
    .await;
    let (s2, b2) = http(
        &server.addr,
        "GET",
        "/api/threads/thr_does_not_exist/messages",
        &[("X-Apogee-User", "bob")],
        b"",
    )
    .await;
    assert_eq!(s1, 404);
    assert_eq!((s1, &b1), (s2, &b2));
    let (s1, b1) = http(
        &server.addr,
        "GET",
        &format!("/api/runs/{run}/events"),
        &[("X-Apogee-User", "bob")],
        b"",
    )
    .await;
    let (s2, b2) = http(
        &server.addr,
        "GET",
        "/api/runs/run_does_not_exist/events",
        &[("X-Apogee-User", "bob")],
        b"",
    )
    .await;
    assert_eq!(s1, 404);
    assert_eq!((s1, &b1), (s2, &b2));
    assert!(b1.contains("not_found"), "{b1}");
    let (_, threads) = get_json(&server.addr, "/api/threads", "bob").await;
    assert_eq!(threads["threads"], json!([]), "bob has no threads");

    // The same calls as alice succeed, so the 404s above were about the caller.
    let (s, msgs) = get_json(
        &server.addr,
        &format!("/api/threads/{thread}/messages"),
        "alice",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(msgs["messages"][0]["content"], "Analyze my AI costs");
    let (s, _) = get_json(&server.addr, &format!("/api/runs/{run}/events"), "alice").await;
    assert_eq!(s, 200);
}

const SECRET: &str = "org-isolation-secret-of-some-length";

async fn post_usage(addr: &str, token: &str, body: &str) -> Value {
    let auth = format!("Bearer {token}");
    let (s, text) = http(
        addr,
        "POST",
        "/api/usage",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn costs(addr: &str, token: &str, group_by: &str) -> Value {
    let auth = format!("Bearer {token}");
    let path = format!("/api/costs?from=2026-11-01&to=2026-11-30&group_by={group_by}");
    let (s, text) = http(addr, "GET", &path, &[("Authorization", &auth)], b"").await;
    assert_eq!(s, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn one_orgs_usage_never_appears_in_another_orgs_costs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_HS256_SECRET", SECRET)],
    )
    .await;
    let exp = unix_now() + 600;
    let alice = hs256(SECRET, &json!({"sub":"alice","org":"acme","exp":exp}));
    let bob = hs256(SECRET, &json!({"sub":"bob","org":"acme","exp":exp}));
    let carol = hs256(SECRET, &json!({"sub":"carol","org":"globex","exp":exp}));

    let acme = r#"[{"request_id":"r1","ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":1000,"output_tokens":100,"user":"u-acme","feature":"acme-bot"}]"#;
    // Same request_id in another org: a different record, not a duplicate.
    let globex = r#"[{"request_id":"r1","ts":"2026-11-20T09:00:00Z","model":"gpt-4o-mini","input_tokens":7777,"output_tokens":7,"user":"u-globex","feature":"globex-secret"},
                     {"request_id":"r2","ts":"2026-11-21T09:00:00Z","model":"claude-x","input_tokens":5,"output_tokens":5,"feature":"globex-secret"}]"#;
    assert_eq!(post_usage(&server.addr, &alice, acme).await["accepted"], 1);
    let g = post_usage(&server.addr, &carol, globex).await;
    assert_eq!(
        (g["accepted"].as_u64(), g["duplicates"].as_u64()),
        (Some(2), Some(0))
    );

    for token in [&alice, &bob] {
        for by in ["model", "provider", "user", "feature", "day"] {
            let c = costs(&server.addr, token, by).await;
            assert_eq!(c["org_id"], "acme");
            assert_eq!(c["totals"]["calls"], 1, "{by}: {c}");
            assert_eq!(c["totals"]["input_tokens"], 1000, "{by}");
            let text = c.to_string();
            assert!(
                !text.contains("globex") && !text.contains("gpt-4o-mini"),
                "{by}: {text}"
            );
        }
    }
    let c = costs(&server.addr, &carol, "feature").await;
    assert_eq!(c["org_id"], "globex");
    assert_eq!(
        (
            c["totals"]["calls"].as_u64(),
            c["totals"]["input_tokens"].as_u64()
        ),
        (Some(2), Some(7782))
    );
    assert!(!c.to_string().contains("acme-bot"));
}
