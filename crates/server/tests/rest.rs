//! REST over loopback: health, readiness, metrics, usage ingest with per-record rejections and
//! idempotency, cost breakdowns scoped to the caller's org.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn health_ready_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let (s, body) = http(&server.addr, "GET", "/health", &[], b"").await;
    assert_eq!((s, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (s, body) = http(&server.addr, "GET", "/ready", &[], b"").await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = http(&server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(s, 200);
    assert!(
        body.contains("apogee_ws_connections_open")
            && body.contains("process_resident_memory_bytes"),
        "{body}"
    );
    let (s, body) = http(&server.addr, "GET", "/api/threads", &[], b"").await;
    assert_eq!(s, 401, "demo REST needs X-Apogee-User: {body}");
}

#[tokio::test]
async fn usage_ingest_is_idempotent_keeps_good_records_and_prices_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let ndjson = concat!(
        r#"{"request_id":"r1","ts":"2026-11-20T08:15:02Z","provider":"openai","model":"gpt-4o","input_tokens":1200,"output_tokens":310,"cached_input_tokens":200,"user":"u-1","feature":"support-bot"}"#,
        "\n",
        r#"{"request_id":"r2","ts":"2026-11-20T09:00:00Z","model":"acme-internal","input_tokens":100,"output_tokens":10}"#,
        "\n",
        "{not json}\n",
        r#"{"request_id":"r3","ts":"2026-11-20T09:00:00Z","model":"gpt-4o","input_tokens":-5,"output_tokens":10}"#,
        "\n",
        r#"{"request_id":"r4","ts":"2026-11-21T09:00:00Z","model":"gpt-4o-mini","input_tokens":1000,"output_tokens":1000,"cost_usd":0.25}"#,
        "\n",
    );
    let headers = [
        ("X-Apogee-User", "alice"),
        ("Content-Type", "application/x-ndjson"),
    ];
    let (s, body) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &headers,
        ndjson.as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accepted"], 3);
    assert_eq!(v["duplicates"], 0);
    let idx: Vec<u64> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [2, 3]);

    let (_, body) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &headers,
        ndjson.as_bytes(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(3))
    );

    let (s, costs) = get_json(
        &server.addr,
        "/api/costs?from=2026-11-20&to=2026-11-21&group_by=model",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{costs}");
    // gpt-4o: 1000 fresh × $2.50 + 200 cached × $1.25 + 310 out × $10 per 1M = $0.00585;
    // gpt-4o-mini: the client's $0.25 wins over the catalog.
    assert_eq!(costs["totals"]["cost_nanos"], 5_850_000 + 250_000_000);
    assert_eq!(costs["totals"]["unpriced_calls"], 1);
    let rows = costs["rows"].as_array().unwrap();
    assert_eq!(rows[0]["key"], "gpt-4o-mini");
    let unpriced = rows.iter().find(|r| r["key"] == "acme-internal").unwrap();
    assert_eq!(
        (
            unpriced["cost_nanos"].as_i64(),
            unpriced["unpriced_calls"].as_i64()
        ),
        (Some(0), Some(1))
    );

    // The month-end forecast rides along, as of now: this month's spend so far (the same as
    // the month-to-date totals) projected to the month's end.
    let (s, mtd) = get_json(&server.addr, "/api/costs?period=mtd", "alice").await;
    assert_eq!(s, 200, "{mtd}");
    let f = &mtd["forecast"];
    assert_eq!(f["spent_nanos"], mtd["totals"]["cost_nanos"]);
    assert!(
        f["projected_nanos"].as_i64() >= f["spent_nanos"].as_i64(),
        "{f}"
    );
    assert!(
        f["daily_run_rate_nanos"].is_i64() && f["month_end"].is_string(),
        "{f}"
    );

    // Demo users share org `demo`; a JWT org would not. Bad parameters are 400s.
    let (s, _) = get_json(&server.addr, "/api/costs?group_by=color", "alice").await;
    assert_eq!(s, 400);
    let (s, _) = http(&server.addr, "POST", "/api/usage", &headers, b"[{").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn oversized_usage_body_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("APOGEE_MAX_BODY_BYTES", "1024")]).await;
    let body = vec![b' '; 4096];
    let (s, text) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[("X-Apogee-User", "alice")],
        &body,
    )
    .await;
    assert_eq!(s, 413, "{text}");
    assert!(text.contains("payload_too_large"));
}
