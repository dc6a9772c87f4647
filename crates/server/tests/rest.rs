//! REST over loopback: health, readiness, metrics, usage ingest with per-record rejections and
//! idempotency, cost breakdowns scoped to the caller's org.

mod common;

use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use common::*;
use serde_json::{Value, json};

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
    assert!(body.contains("apogee_ws_connections_open"), "{body}");
    // The resident memory the kernel reports for the process (in KiB, whatever the page
    // size), read just after; it moves a little between the two reads, never by a factor.
    let reported: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_resident_memory_bytes: {body}"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kernel: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("VmRSS")
        * 1024.0;
    assert!(
        (0.75..=1.33).contains(&(reported / kernel)),
        "process_resident_memory_bytes {reported} vs VmRSS {kernel} bytes"
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

    // Demo users share org `demo`; a JWT org would not. Bad parameters are 400s.
    let (s, _) = get_json(&server.addr, "/api/costs?group_by=color", "alice").await;
    assert_eq!(s, 400);
    let (s, _) = http(&server.addr, "POST", "/api/usage", &headers, b"[{").await;
    assert_eq!(s, 400);
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Nanos a day on each of the 7 days before today (`k` days ago: `k` × this): they sum to
/// 7 × 86,400,000, a run rate of 86,400,000 nanos a day, i.e. exactly 1,000 nanos for each
/// second left in the month, so the projection is exact for any `now`. A window shifted by a
/// day changes the sum.
const RECENT_UNIT: i64 = 21_600_000;

/// `GET /api/costs?period=mtd`'s forecast, exact on the server's real clock: usage is placed
/// around "now" (today, each of the 7 days before, the 8th day before, 40 days ago), the
/// expectation is computed from the records and the `now` the server reports (checked to lie
/// between the request's send and its answer), and every figure must match to the nanosecond.
#[tokio::test]
async fn the_month_end_forecast_is_exact_for_the_servers_now() {
    // A run across midnight UTC shifts every window between posting and asking: try again.
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &[]).await;
        let before = Utc::now();
        let today = midnight(before.date_naive());
        // (timestamp, nanos) of every record posted.
        let mut records: Vec<(DateTime<Utc>, i64)> = vec![
            // Today, between midnight and now.
            (today + (before - today) / 2, 1_000_000_000),
            // The 8th day before today: this month's spend (maybe), never the run rate.
            (
                today - Duration::days(8) + Duration::hours(12),
                100_000_000_000,
            ),
            // 40 days ago: neither.
            (today - Duration::days(40), 1_000_000_000_000),
        ];
        for k in 1..=7 {
            records.push((
                today - Duration::days(k) + Duration::hours(12),
                k * RECENT_UNIT,
            ));
        }
        let body: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, (ts, nanos))| {
                json!({
                    "request_id": format!("f{i}"),
                    "ts": ts.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "model": "gpt-4o-mini",
                    "input_tokens": 10,
                    "output_tokens": 10,
                    "cost_usd": *nanos as f64 / 1e9,
                })
            })
            .collect();
        let headers = [
            ("X-Apogee-User", "alice"),
            ("Content-Type", "application/json"),
        ];
        let (s, ingested) = http(
            &server.addr,
            "POST",
            "/api/usage",
            &headers,
            Value::Array(body).to_string().as_bytes(),
        )
        .await;
        assert_eq!(s, 200, "{ingested}");
        assert_eq!(
            serde_json::from_str::<Value>(&ingested).unwrap()["accepted"],
            records.len()
        );

        let asked = Utc::now();
        let (s, mtd) = get_json(&server.addr, "/api/costs?period=mtd", "alice").await;
        let answered = Utc::now();
        assert_eq!(s, 200, "{mtd}");
        if answered.date_naive() != before.date_naive() {
            continue;
        }
        let f = &mtd["forecast"];
        // The server's now, to the second (rounded down), within the request.
        let now: DateTime<Utc> = f["month_to_date"]["to"].as_str().unwrap().parse().unwrap();
        assert!(
            asked - Duration::seconds(1) <= now && now <= answered,
            "the forecast's now {now} is not the request's ({asked} to {answered}): {f}"
        );

        let first = today.date_naive().with_day(1).unwrap();
        let month_end = midnight(first.checked_add_months(chrono::Months::new(1)).unwrap());
        let recent_from = today - Duration::days(7);
        let spent: i64 = records
            .iter()
            .filter(|(ts, _)| midnight(first) <= *ts && *ts <= now)
            .map(|(_, n)| n)
            .sum();
        let recent: i64 = records
            .iter()
            .filter(|(ts, _)| recent_from <= *ts && *ts < today)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(recent, 28 * RECENT_UNIT);
        // Whole seconds left: the server's now is in [now, now + 1 s).
        let remaining_secs = (f["remaining_days"].as_f64().unwrap() * 86_400.0).round() as i64;
        let left = (month_end - now).num_seconds();
        assert!(
            remaining_secs == left || remaining_secs == left - 1,
            "remaining_days {} for {left} s to {month_end}: {f}",
            f["remaining_days"]
        );

        assert_eq!(f["month_to_date"]["from"], rfc3339(midnight(first)), "{f}");
        assert_eq!(f["recent_days"]["from"], rfc3339(recent_from), "{f}");
        assert_eq!(f["recent_days"]["to"], rfc3339(today), "{f}");
        assert_eq!(f["month_end"], rfc3339(month_end), "{f}");
        assert_eq!(f["spent_nanos"], spent, "{f}");
        assert_eq!(mtd["totals"]["cost_nanos"], spent, "{mtd}");
        assert_eq!(f["daily_run_rate_nanos"], recent / 7, "{f}");
        assert_eq!(f["projected_nanos"], spent + remaining_secs * 1_000, "{f}");
        return;
    }
    panic!("the day changed during both attempts");
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
