//! Budgets through the real server: `/api/budgets` with its bad input and limit, a scope's
//! budget measuring only its scope, and each crossing reaching every org member exactly once
//! — live, on replay for a member who connects after it fired, across a restart, and with two
//! nodes sharing PostgreSQL and Redis.

mod common;

use common::services::{Redis, postgres_database};
use common::*;
use serde_json::{Value, json};

async fn call(server: &str, method: &str, path: &str, user: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, text) = http(
        server,
        method,
        path,
        &[
            ("X-Apogee-User", user),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Posts one call of `cost_usd` for `feature` now (a unique request id each).
async fn spend(server: &str, user: &str, feature: &str, cost_usd: f64) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let line = json!({"request_id": id, "ts": ts, "model": "gpt-4o", "input_tokens": 10,
        "output_tokens": 10, "cost_usd": cost_usd, "feature": feature});
    let (status, text) = http(
        server,
        "POST",
        "/api/usage",
        &[
            ("X-Apogee-User", user),
            ("Content-Type", "application/x-ndjson"),
        ],
        format!("{line}\n").as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

/// Frames until the next `budget_alert` (within the harness' wait).
async fn next_alert(c: &mut Client) -> Value {
    for _ in 0..1_000 {
        let v = c.next().await.expect("the stream ended before an alert");
        if v["type"] == "budget_alert" {
            return v;
        }
    }
    panic!("no budget_alert within 1000 frames");
}

/// Connects as `user` resuming after `last_seq`; returns the client and the replayed events.
async fn resume(server: &str, user: &str, last_seq: u64) -> (Client, Vec<Value>) {
    let mut c = Client::connect(server, &format!("?user={user}&last_seq={last_seq}"), &[])
        .await
        .expect("connect");
    let ready = c.ready().await;
    let n = ready["replayed"].as_u64().unwrap();
    let mut replayed = Vec::new();
    for _ in 0..n {
        replayed.push(c.next().await.expect("replayed event"));
    }
    (c, replayed)
}

fn alerts(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["type"] == "budget_alert")
        .collect()
}

#[tokio::test]
async fn budgets_api_checks_input_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let a = server.addr.as_str();

    let (s, b) = call(
        a,
        "POST",
        "/api/budgets",
        "ann",
        &json!({"amount_usd": 2000, "scope": {"feature": "support-bot"}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["amount_nanos"], 2_000_000_000_000i64);
    assert_eq!(b["period"], "month");
    assert_eq!(b["thresholds"], json!([50, 80, 100]));
    assert_eq!(b["scope"], json!({"feature": ["support-bot"]}));
    assert_eq!(b["current"]["spent_nanos"], 0);
    assert_eq!(b["current"]["state"], "ok");
    let id = b["id"].as_str().unwrap().to_string();

    for (body, says) in [
        (json!({"amount_usd": -5}), "above $0"),
        (
            json!({"amount_usd": 5, "scope": {"team": "x"}}),
            "unknown scope key `team`",
        ),
        (
            json!({"amount_usd": 5, "periode": "day"}),
            "unknown field `periode`",
        ),
        (
            json!({"amount_usd": 5, "thresholds": [50, 5000]}),
            "1 to 1000",
        ),
        (json!({"amount_usd": 5, "period": "year"}), "unknown period"),
    ] {
        let (s, v) = call(a, "POST", "/api/budgets", "ann", &body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "bad_request");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (s, v) = call(
        a,
        "PATCH",
        &format!("/api/budgets/{id}"),
        "ann",
        &json!({"amount_usd": -1}),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // Another member of the org manages it too.
    let (s, v) = call(
        a,
        "PATCH",
        &format!("/api/budgets/{id}"),
        "bo",
        &json!({"name": "Support bot", "period": "week"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["period"].as_str()),
        (Some("Support bot"), Some("week"))
    );
    assert_eq!(v["revision"], 2, "a new period is a new revision");
    let (s, v) = call(a, "GET", &format!("/api/budgets/{id}"), "bo", &Value::Null).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("Support bot")));

    // The per-org limit: 100 budgets, then a clear refusal; nothing already stored is lost.
    for i in 1..100 {
        let (s, v) = call(
            a,
            "POST",
            "/api/budgets",
            "ann",
            &json!({"amount_usd": i, "name": format!("b{i}")}),
        )
        .await;
        assert_eq!(s, 201, "budget {i}: {v}");
    }
    let (s, v) = call(a, "POST", "/api/budgets", "ann", &json!({"amount_usd": 1})).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "limit_reached");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100 budgets"),
        "{v}"
    );
    let (s, v) = call(a, "GET", "/api/budgets", "ann", &Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(v["budgets"].as_array().unwrap().len(), 100);

    let (s, _) = call(
        a,
        "DELETE",
        &format!("/api/budgets/{id}"),
        "ann",
        &Value::Null,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(a, "GET", &format!("/api/budgets/{id}"), "ann", &Value::Null).await;
    assert_eq!(s, 404);
    let (s, _) = call(
        a,
        "DELETE",
        &format!("/api/budgets/{id}"),
        "ann",
        &Value::Null,
    )
    .await;
    assert_eq!(s, 404);
    server.terminate().await;
}

#[tokio::test]
async fn a_scope_budget_ignores_other_scopes_and_alerts_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let a = server.addr.as_str();
    let mut ann = server.ws("?user=ann").await;
    ann.ready().await;

    let (s, b) = call(
        a,
        "POST",
        "/api/budgets",
        "ann",
        &json!({"amount_usd": 10, "scope": {"feature": "support-bot"}, "thresholds": [100],
                "forecast_alert": false}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap();

    // $50 elsewhere in the org: not this budget's.
    spend(a, "ingest", "search", 50.0).await;
    let (_, v) = call(a, "GET", &format!("/api/budgets/{id}"), "ann", &Value::Null).await;
    assert_eq!(v["current"]["spent_nanos"], 0, "{v}");
    // Its own spend crosses it: one alert, naming the feature.
    spend(a, "ingest", "support-bot", 6.0).await;
    spend(a, "ingest", "support-bot", 4.5).await;
    let alert = next_alert(&mut ann).await;
    assert_eq!(alert["thread_id"], "");
    let body = &alert["alert"];
    assert_eq!(body["budget"]["id"], id);
    assert_eq!(body["kind"], "threshold");
    assert_eq!(body["threshold_percent"], 100);
    assert_eq!(body["spent_nanos"], 10_500_000_000i64);
    assert_eq!(body["top_contributors"][0]["dimension"], "feature");
    assert_eq!(body["top_contributors"][0]["key"], "support-bot");
    assert!(
        body["message"].as_str().unwrap().contains("support-bot"),
        "{body}"
    );
    let (_, v) = call(a, "GET", &format!("/api/budgets/{id}"), "ann", &Value::Null).await;
    assert_eq!(v["current"]["state"], "over", "{v}");
    assert_eq!(v["alerts"].as_array().unwrap().len(), 1, "{v}");
    server.terminate().await;
}

#[tokio::test]
async fn a_crossing_fires_once_across_a_restart_and_reaches_late_members() {
    let dir = tempfile::tempdir().unwrap();
    // A fast timer: evaluations run many times around every ingest and after the restart.
    let env = [("APOGEE_BUDGET_EVAL_MS", "100")];
    let server = Server::start(dir.path(), &env).await;
    let a = server.addr.clone();
    // Bo is a member (has connected once) but is offline when the alerts fire.
    let mut bo = server.ws("?user=bo").await;
    bo.ready().await;
    drop(bo);
    let mut ann = server.ws("?user=ann").await;
    ann.ready().await;
    let (s, b) = call(
        &a,
        "POST",
        "/api/budgets",
        "ann",
        &json!({"amount_usd": 10, "thresholds": [50, 100], "forecast_alert": false}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    spend(&a, "ingest", "chat", 6.0).await;
    let first = next_alert(&mut ann).await;
    assert_eq!(first["alert"]["threshold_percent"], 50);
    let ann_seq = first["seq"].as_u64().unwrap();
    drop(ann);

    let server = {
        server.terminate().await;
        Server::start(dir.path(), &env).await
    };
    let a = server.addr.clone();
    // Below the next threshold: the restarted node's evaluations fire nothing again.
    spend(&a, "ingest", "chat", 1.0).await;
    spend(&a, "ingest", "chat", 3.5).await;
    let (mut ann, replayed) = resume(&a, "ann", ann_seq).await;
    let mut got: Vec<Value> = alerts(&replayed).into_iter().cloned().collect();
    if got.is_empty() {
        got.push(next_alert(&mut ann).await);
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["alert"]["threshold_percent"], 100);
    drop(ann);

    // Let the timer run a few more rounds, then read the streams back from the start.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for user in ["ann", "bo"] {
        let (_, replayed) = resume(&a, user, 0).await;
        let thresholds: Vec<&Value> = alerts(&replayed)
            .iter()
            .map(|e| &e["alert"]["threshold_percent"])
            .collect();
        assert_eq!(thresholds, [&json!(50), &json!(100)], "{user}");
    }
    let (_, v) = call(
        &a,
        "GET",
        &format!("/api/budgets/{id}"),
        "ann",
        &Value::Null,
    )
    .await;
    assert_eq!(v["alerts"].as_array().unwrap().len(), 2, "{v}");
    server.terminate().await;
}

#[tokio::test]
async fn a_crossing_fires_once_with_two_nodes_on_postgres_and_redis() {
    let Some(database) = postgres_database().await else {
        return;
    };
    let Some(redis) = Redis::start().await else {
        return;
    };
    let redis_url = redis.url();
    let env = [
        ("APOGEE_DATABASE_URL", database.url.as_str()),
        ("APOGEE_REDIS_URL", redis_url.as_str()),
        ("APOGEE_BUDGET_EVAL_MS", "50"),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = Server::start(dir_a.path(), &env).await;
    let node_b = Server::start(dir_b.path(), &env).await;
    // Cy is a member who is offline when the alert fires.
    let mut cy = node_b.ws("?user=cy").await;
    cy.ready().await;
    drop(cy);
    let mut ann = node_a.ws("?user=ann").await;
    ann.ready().await;
    let mut bo = node_b.ws("?user=bo").await;
    bo.ready().await;
    let (s, b) = call(
        &node_a.addr,
        "POST",
        "/api/budgets",
        "ann",
        &json!({"amount_usd": 20, "thresholds": [100], "forecast_alert": false}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // Both nodes ingest at once; both evaluate after their batch and on their timers.
    tokio::join!(
        spend(&node_a.addr, "ingest", "chat", 11.0),
        spend(&node_b.addr, "ingest", "chat", 11.0)
    );
    for c in [&mut ann, &mut bo] {
        let alert = next_alert(c).await;
        let spent = alert["alert"]["spent_nanos"].as_i64().unwrap();
        assert!(spent >= 20_000_000_000, "{alert}");
    }
    drop((ann, bo));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (node, user) in [(&node_a, "ann"), (&node_b, "bo"), (&node_a, "cy")] {
        let (_, replayed) = resume(&node.addr, user, 0).await;
        assert_eq!(alerts(&replayed).len(), 1, "{user}: {replayed:?}");
    }
    node_a.terminate().await;
    node_b.terminate().await;
}

/// One request a webhook receiver got: its headers (lower-cased names) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback speaking plain HTTP/1.1: answers the first `failures`
/// requests 500, the rest 200, and keeps every request.
async fn receiver(failures: usize) -> (String, std::sync::Arc<tokio::sync::Mutex<Vec<Received>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<Received>::new()));
    let log = std::sync::Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (Some(i + 4), length);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + length {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..start]).to_string();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
                .collect();
            let mut log = log.lock().await;
            let answered = if log.len() < failures { 500 } else { 200 };
            log.push(Received {
                headers,
                body: buf[start..(start + length).min(buf.len())].to_vec(),
                answered,
            });
            drop(log);
            let reply =
                format!("HTTP/1.1 {answered} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    (addr, got)
}

#[tokio::test]
async fn a_webhook_gets_one_signed_delivery_per_crossing_even_after_a_500() {
    use hmac::{Hmac, Mac};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("APOGEE_BUDGET_EVAL_MS", "100")]).await;
    let a = server.addr.as_str();
    let (hook_addr, got) = receiver(1).await;

    let (s, v) = call(
        a,
        "POST",
        "/api/webhooks",
        "ann",
        &json!({"url": "ftp://x/y"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, hook) = call(
        a,
        "POST",
        "/api/webhooks",
        "ann",
        &json!({"url": format!("http://{hook_addr}/hook"), "format": "json"}),
    )
    .await;
    assert_eq!(s, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let (s, b) = call(
        a,
        "POST",
        "/api/budgets",
        "ann",
        &json!({"amount_usd": 10, "thresholds": [100], "forecast_alert": false}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    spend(a, "ingest", "chat", 11.0).await;

    // The first attempt gets a 500; the retry (after about a second) a 200.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if got.lock().await.iter().any(|r| r.answered == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Many more evaluation rounds: nothing is delivered again.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let got = got.lock().await.clone();
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 200],
        "one failed attempt, one delivery"
    );
    let delivery = got[0].header("x-apogee-delivery");
    assert!(!delivery.is_empty());
    for r in &got {
        assert_eq!(
            r.header("x-apogee-delivery"),
            delivery,
            "a retry is the same delivery"
        );
        let ts = r.header("x-apogee-timestamp");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&r.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(r.header("x-apogee-signature"), format!("sha256={hex}"));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "budget_alert");
        assert_eq!(body["alert"]["threshold_percent"], 100);
        assert!(
            body["text"].as_str().unwrap().contains("passed 100%"),
            "{body}"
        );
    }
    let (_, hooks) = call(a, "GET", "/api/webhooks", "bo", &Value::Null).await;
    let d = &hooks["webhooks"][0]["deliveries"];
    assert_eq!(
        (
            d["delivered"].as_i64(),
            d["pending"].as_i64(),
            d["failed"].as_i64()
        ),
        (Some(1), Some(0), Some(0)),
        "{hooks}"
    );
    assert_eq!(d["last_error"], "HTTP 500");
    let (_, metrics) = http(a, "GET", "/metrics", &[], b"").await;
    for line in [
        r#"apogee_webhook_deliveries_total{outcome="retry"} 1"#,
        r#"apogee_webhook_deliveries_total{outcome="delivered"} 1"#,
        "apogee_budget_alerts_fired_total 1",
    ] {
        assert!(metrics.contains(line), "{line} not in /metrics");
    }
    server.terminate().await;
}

#[tokio::test]
async fn an_anomalous_latest_day_alerts_members_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("APOGEE_BUDGET_EVAL_MS", "100")];
    let server = Server::start(dir.path(), &env).await;
    let a = server.addr.clone();
    let mut ann = server.ws("?user=ann").await;
    ann.ready().await;
    // Fourteen ordinary days, then $40 yesterday (all at noon UTC).
    let noon = |days_ago: i64| {
        let day = chrono::Utc::now().date_naive() - chrono::Duration::days(days_ago);
        day.and_hms_opt(12, 0, 0).unwrap().and_utc()
    };
    let mut lines = String::new();
    for days_ago in 2..=15 {
        let cost = 1.0 + days_ago as f64 / 100.0;
        lines.push_str(&format!(
            "{}\n",
            json!({"request_id": format!("d{days_ago}"), "ts": noon(days_ago).to_rfc3339(),
                   "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "cost_usd": cost,
                   "feature": "chat"})
        ));
    }
    lines.push_str(&format!(
        "{}\n",
        json!({"request_id": "spike", "ts": noon(1).to_rfc3339(), "model": "gpt-4o",
               "input_tokens": 1, "output_tokens": 1, "cost_usd": 40.0, "feature": "batch-export"})
    ));
    let (status, text) = http(
        &a,
        "POST",
        "/api/usage",
        &[
            ("X-Apogee-User", "ingest"),
            ("Content-Type", "application/x-ndjson"),
        ],
        lines.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let mut alert = None;
    for _ in 0..1_000 {
        let v = ann.next().await.expect("an anomaly_alert");
        if v["type"] == "anomaly_alert" {
            alert = Some(v);
            break;
        }
    }
    let alert = alert.unwrap();
    let body = &alert["alert"];
    assert_eq!(body["day"], noon(1).date_naive().to_string());
    assert_eq!(body["cost_nanos"], 40_000_000_000i64);
    assert_eq!(body["top_contributors"][0]["key"], "batch-export");
    drop(ann);
    // Many ticks later, and after a restart, still one.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    server.terminate().await;
    let server = Server::start(dir.path(), &env).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, replayed) = resume(&server.addr, "ann", 0).await;
    let n = replayed
        .iter()
        .filter(|e| e["type"] == "anomaly_alert")
        .count();
    assert_eq!(n, 1, "{replayed:?}");
    server.terminate().await;
}
