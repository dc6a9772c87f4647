//! Hostile input gets its specified answer and the server keeps serving everyone else:
//! oversized frames close with 1009, deep JSON is `bad_request`/400, oversized bodies 413,
//! out-of-range fields are rejected, and an address with too many failed handshakes gets 429.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A second user's connection still answers a ping: the server serves everyone else.
async fn still_serving(c: &mut Client, nonce: &str) {
    c.send(json!({"type":"ping","nonce":nonce})).await;
    assert_eq!(
        c.next().await.unwrap(),
        json!({"type":"pong","nonce":nonce})
    );
}

#[tokio::test]
async fn oversized_frames_close_with_1009_and_others_keep_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut bystander = server.ws("?user=bystander").await;
    bystander.ready().await;

    // Just over 64 KiB, and far over it (past the codec's own buffer).
    for size in [64 * 1024 + 1, 1024 * 1024] {
        let mut c = server.ws("?user=mallory").await;
        c.ready().await;
        let content = "x".repeat(size);
        // The server may close (and reset) before the client has written the whole frame, so
        // the send itself may fail; the close code is what is checked.
        let _ =
            c.ws.send(Message::Text(
                format!(r#"{{"type":"ping","nonce":"{content}"}}"#).into(),
            ))
            .await;
        assert_eq!(c.close_code().await, Some(1009), "{size} bytes");
        still_serving(&mut bystander, &format!("after-{size}")).await;
    }
    // A frame of exactly 64 KiB is within the limit: answered, connection open.
    let mut c = server.ws("?user=mallory").await;
    c.ready().await;
    let pad = 64 * 1024 - r#"{"type":"ping","nonce":""}"#.len();
    c.send_text(&format!(
        r#"{{"type":"ping","nonce":"{}"}}"#,
        "y".repeat(pad)
    ))
    .await;
    let v = c.next().await.unwrap();
    assert_eq!(
        v["type"], "error",
        "a 64 KiB nonce is too long to echo, not too big to read"
    );
    still_serving(&mut c, "same-connection").await;
}

#[tokio::test]
async fn deep_json_and_out_of_range_fields_get_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut c = server.ws("?user=mallory").await;
    c.ready().await;

    // 10,000 nested arrays (20 KB, under the frame limit): bad_request, connection open.
    let deep = format!(
        r#"{{"type":"ping","nonce":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    c.send_text(&deep).await;
    let e = c.next().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "{e}"
    );
    let deep_objects = format!(
        r#"{{"type":"ping","nonce":{}1{}}}"#,
        r#"{"a":"#.repeat(5_000),
        "}".repeat(5_000)
    );
    c.send_text(&deep_objects).await;
    assert_eq!(c.next().await.unwrap()["code"], "bad_request");

    // content over 8000 characters, and an over-long client_msg_id.
    c.ask("m1", &"é".repeat(8001), None).await;
    let e = c.next().await.unwrap();
    assert_eq!(
        (e["code"].as_str(), e["client_msg_id"].as_str()),
        (Some("bad_request"), Some("m1"))
    );
    c.ask(&"i".repeat(65), "hi", None).await;
    assert_eq!(c.next().await.unwrap()["code"], "bad_request");
    still_serving(&mut c, "after-bad-frames").await;

    // REST: a deeply nested usage body is a 400, before any parsing.
    let user = [("X-Apogee-User", "mallory")];
    let body = "[".repeat(10_000) + &"]".repeat(10_000);
    let (s, text) = http(&server.addr, "POST", "/api/usage", &user, body.as_bytes()).await;
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("bad_request") && text.contains("nested"),
        "{text}"
    );

    // Out-of-range and over-long fields are rejected per record; good ones still land.
    let long = "m".repeat(257);
    let ndjson = [
        r#"{"ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":-1,"output_tokens":1}"#.to_string(),
        r#"{"ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":1,"output_tokens":-1}"#.to_string(),
        r#"{"ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":1,"output_tokens":1,"cost_usd":-0.5}"#.to_string(),
        format!(r#"{{"ts":"2026-11-20T08:00:00Z","model":"{long}","input_tokens":1,"output_tokens":1}}"#),
        r#"{"ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":1e30,"output_tokens":1}"#.to_string(),
        format!(r#"{{"a":{}1{}}}"#, r#"{"a":"#.repeat(100), "}".repeat(100)),
        r#"{"ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":10,"output_tokens":1}"#.to_string(),
    ]
    .join("\n");
    let (s, text) = http(&server.addr, "POST", "/api/usage", &user, ndjson.as_bytes()).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["accepted"], 1);
    let idx: Vec<u64> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2, 3, 4, 5]);
    let (s, _) = http(&server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("APOGEE_MAX_BODY_BYTES", "4096")]).await;
    let user = [("X-Apogee-User", "mallory")];
    let (s, text) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &user,
        &vec![b'['; 64 * 1024],
    )
    .await;
    assert_eq!(s, 413, "{text}");
    assert!(text.contains("payload_too_large"));
    let (s, v) = get_json(&server.addr, "/api/threads", "alice").await;
    assert_eq!((s, &v), (200, &json!({"threads": []})));
}

const SECRET: &str = "rate-limit-secret-of-some-length";

#[tokio::test]
async fn too_many_failed_handshakes_from_one_address_get_429() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_AUTH", "jwt"),
            ("APOGEE_JWT_HS256_SECRET", SECRET),
            ("APOGEE_HANDSHAKE_FAILURES_PER_MINUTE", "3"),
        ],
    )
    .await;
    let good = hs256(
        SECRET,
        &json!({"sub":"alice","org":"acme","exp": unix_now() + 600}),
    );
    // A success does not count against the address.
    assert_eq!(bearer_status(&server.addr, "", Some(&good)).await, 101);
    for i in 0..3 {
        let h = handshake(&server.addr, &format!("?ticket=bad{i}"), &[]).await;
        assert_eq!(h.status, 401, "failure {i}");
    }
    let auth = format!("Bearer {good}");
    let h = handshake(&server.addr, "", &[("authorization", &auth)]).await;
    assert_eq!(h.status, 429, "even good credentials wait: {}", h.body);
    let retry: u64 = h.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(h.body.contains("rate_limited"), "{}", h.body);
    // REST from the same address, and everything else, is still served.
    let (s, _) = http(
        &server.addr,
        "GET",
        "/api/threads",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(s, 200);
}
