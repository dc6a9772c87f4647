//! One user cannot crowd out others: the expensive REST calls have per-user rates (429 with
//! `Retry-After`), the message rate survives a reconnect, ingest requests in flight are
//! bounded per user and a body that dribbles in is cut off (408), a user's runs execute one at
//! a time, the node executes at most its runs at once across users (the next waiting its
//! turn), and in production `/metrics` is not served to anyone who asks.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn expensive_rest_calls_are_rate_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_RECOMMENDATIONS_PER_MINUTE", "1"),
            ("APOGEE_COSTS_PER_MINUTE", "3"),
        ],
    )
    .await;
    for (path, allowed) in [("/api/recommendations", 1), ("/api/costs", 1)] {
        for _ in 0..allowed {
            assert_eq!(
                get_json(&server.addr, path, "greedy").await.0,
                200,
                "{path}"
            );
        }
        let (status, head, body) = http_full(
            &server.addr,
            "GET",
            path,
            &[("X-Apogee-User", "greedy")],
            b"",
        )
        .await;
        assert_eq!(status, 429, "{path}: {body}");
        assert!(body.contains("rate_limited"), "{body}");
        let retry = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after: ")
                    .map(str::to_string)
            })
            .expect("Retry-After");
        assert!(retry.parse::<u64>().unwrap() >= 1);
        // Someone else is not affected.
        assert_eq!(
            get_json(&server.addr, path, "patient").await.0,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_message_rate_survives_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_MESSAGES_PER_MINUTE", "1"),
            ("APOGEE_MESSAGE_BURST", "2"),
        ],
    )
    .await;
    let mut sent = 0;
    for round in 0..3 {
        let mut c = server.ws("?user=chatty").await;
        c.ready().await;
        c.ask(&format!("m{round}"), "What did we spend?", None)
            .await;
        loop {
            let v = c.next().await.expect("an answer");
            match v["type"].as_str() {
                Some("message_ack") => {
                    sent += 1;
                    break;
                }
                Some("error") => {
                    assert_eq!(v["code"], "rate_limited", "{v}");
                    assert_eq!(round, 2, "the third message, after two reconnects: {v}");
                    break;
                }
                _ => {}
            }
        }
        // Drop the connection before the next message.
    }
    assert_eq!(sent, 2, "the burst, and no more after reconnecting");
}

/// Starts a POST whose body never finishes arriving.
async fn dribbling_post(addr: &str, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/usage HTTP/1.1\r\nHost: x\r\nX-Apogee-User: {user}\r\nContent-Length: 100000\r\n\r\n["
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn ingests_in_flight_are_bounded_per_user_and_slow_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_MAX_INGESTS_PER_USER", "1"),
            ("APOGEE_BODY_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let mut slow = dribbling_post(&server.addr, "uploader").await;
    // Let the server take the first request in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body =
        br#"{"ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":1,"output_tokens":1}"#;
    let (status, text) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[("X-Apogee-User", "uploader")],
        body,
    )
    .await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("in flight"), "{text}");
    let (status, text) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[("X-Apogee-User", "other")],
        body,
    )
    .await;
    assert_eq!(status, 200, "another user is not held up: {text}");
    // The dribbling body is cut off with 408 at the body timeout.
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (status, text) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[("X-Apogee-User", "uploader")],
        body,
    )
    .await;
    assert_eq!(status, 200, "its place is free again: {text}");
}

/// The supervisor's first and last events of each run, in the order the stream has them.
fn run_spans(events: &[Value]) -> Vec<(String, &'static str)> {
    events
        .iter()
        .filter(|e| e["agent"] == "supervisor")
        .filter_map(|e| match e["type"].as_str() {
            Some("agent_started") => Some((e["run_id"].as_str()?.to_string(), "start")),
            Some("agent_completed") => Some((e["run_id"].as_str()?.to_string(), "end")),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_users_runs_take_turns_while_other_users_run_alongside() {
    let (dir, server) = {
        let dir = tempfile::tempdir().unwrap();
        load_demo_data(dir.path(), 5_000).await;
        let server = Server::start(dir.path(), &[]).await;
        (dir, server)
    };
    let mut a = server.ws("?user=busy").await;
    a.ready().await;
    let mut b = server.ws("?user=quiet").await;
    b.ready().await;
    let mut runs = Vec::new();
    for i in 0..4 {
        a.ask(&format!("a{i}"), "Analyze my AI costs", None).await;
    }
    b.ask("b0", "Analyze my AI costs", None).await;
    let mut events = Vec::new();
    while runs.len() < 4 {
        let v = a.next().await.unwrap();
        if v["type"] == "agent_completed" && v["agent"] == "supervisor" {
            runs.push(v["run_id"].as_str().unwrap().to_string());
        }
        events.push(v);
    }
    // Every run of the busy user starts only after the one before it ended.
    let spans = run_spans(&events);
    assert_eq!(spans.len(), 8, "{spans:?}");
    for pair in spans.chunks(2) {
        assert_eq!(pair[0].0, pair[1].0, "runs overlapped: {spans:?}");
        assert_eq!((pair[0].1, pair[1].1), ("start", "end"), "{spans:?}");
    }
    // The quiet user's run completed too, as its own.
    loop {
        let v = b.next().await.unwrap();
        if v["type"] == "agent_completed" && v["agent"] == "supervisor" {
            assert_eq!(v["status"], "ok", "{v}");
            break;
        }
    }
    drop(dir);
}

/// The `ts` of `run_id`'s supervisor event of `kind` (fixed-width UTC microseconds, so the
/// strings order as the instants do).
fn supervisor_ts(events: &[Value], run_id: &str, kind: &str) -> String {
    events
        .iter()
        .find(|e| e["type"] == kind && e["agent"] == "supervisor" && e["run_id"] == run_id)
        .and_then(|e| e["ts"].as_str())
        .unwrap_or_else(|| panic!("no supervisor {kind} for {run_id}"))
        .to_string()
}

#[tokio::test]
async fn the_node_executes_at_most_its_runs_at_once_and_the_next_waits_its_turn() {
    use apogee_llm::fake::{FakeLlm, Reply};
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 500).await;
    // The model's first reply starts and never finishes, keeping its run executing; later
    // calls are refused at once (the rules answer them).
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let fake = FakeLlm::start(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            stalling_reply()
        } else {
            Reply::status(400, "not this time")
        }
    })
    .await;
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_LLM_BASE_URL", fake.base_url.as_str()),
            ("APOGEE_LLM_MODEL", FAKE_LLM_MODEL),
            ("APOGEE_MAX_RUNS_EXECUTING", "1"),
        ],
    )
    .await;
    let mut first = server.ws("?user=first").await;
    first.ready().await;
    first
        .ask("q1", "How much did we spend last week?", None)
        .await;
    let ack = first.next().await.unwrap();
    let first_run = ack["run_id"].as_str().unwrap().to_string();
    let mut first_events = until_the_model_stalls(&mut first).await;
    // Another user's question is accepted and waits for the node's one place.
    let mut next = server.ws("?user=next").await;
    next.ready().await;
    next.ask("q1", "How much did we spend last week?", None)
        .await;
    let ack = next.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let next_run = ack["run_id"].as_str().unwrap().to_string();
    let mut waiting = 0;
    for _ in 0..100 {
        waiting = metric(&server, "apogee_runs_waiting").await;
        if waiting == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, 1, "the second run waits its turn");
    // The first run ends (cancelled); only then does the second start, and it completes.
    first
        .send(serde_json::json!({ "type": "cancel_run", "run_id": first_run }))
        .await;
    first_events.extend(first.until_run_end(&first_run).await);
    let next_events = next.until_run_end(&next_run).await;
    assert_run_well_formed(&next_events);
    let first_end = supervisor_ts(&first_events, &first_run, "agent_completed");
    let next_start = supervisor_ts(&next_events, &next_run, "agent_started");
    assert!(
        next_start >= first_end,
        "the second run started at {next_start}, before the first ended at {first_end}"
    );
    assert_eq!(metric(&server, "apogee_runs_waiting").await, 0);
}

const SECRET: &str = "production-secret-of-at-least-32-bytes!!";

#[tokio::test]
async fn production_keeps_metrics_to_those_allowed_and_refuses_a_short_secret() {
    let dir = tempfile::tempdir().unwrap();
    let prod = [
        ("APOGEE_ENV", "production"),
        ("APOGEE_JWT_HS256_SECRET", SECRET),
    ];
    // Neither a token nor an address: not served.
    let server = Server::start(dir.path(), &prod).await;
    let (status, _) = http(&server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 404);
    drop(server);
    // A token: only with it.
    let mut env = prod.to_vec();
    env.push(("APOGEE_METRICS_TOKEN", "scrape-token-0123456789"));
    let server = Server::start(dir.path(), &env).await;
    let (status, _) = http(&server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 401);
    let wrong = [("Authorization", "Bearer scrape-token-0123456788")];
    assert_eq!(
        http(&server.addr, "GET", "/metrics", &wrong, b"").await.0,
        401
    );
    let right = [("Authorization", "Bearer scrape-token-0123456789")];
    let (status, text) = http(&server.addr, "GET", "/metrics", &right, b"").await;
    assert_eq!(status, 200);
    assert!(text.contains("apogee_ws_connections_open"), "{text}");
    drop(server);
    // A separate address: there, and not on the public listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut env = prod.to_vec();
    env.push(("APOGEE_METRICS_ADDR", &metrics_addr));
    let server = Server::start(dir.path(), &env).await;
    assert_eq!(
        http(&server.addr, "GET", "/metrics", &right, b"").await.0,
        404
    );
    let (status, text) = http(&metrics_addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    drop(server);
    // A one-byte HS256 secret does not start in production.
    let out = tokio::process::Command::new(binary())
        .arg("serve")
        .env("APOGEE_ADDR", "127.0.0.1:0")
        .env("APOGEE_DATA_DIR", dir.path())
        .env("APOGEE_ENV", "production")
        .env("APOGEE_JWT_HS256_SECRET", "x")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("too short"), "{stderr}");
}
