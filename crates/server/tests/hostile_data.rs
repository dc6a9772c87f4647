//! What one request of hostile data could do to an org, answered on every backend (SQLite,
//! and PostgreSQL when configured): absurd aggregate records and sums past 64 bits never
//! break the org's costs, recommendations or chat; a control character is a clear refusal
//! (400 / `bad_request` / a rejected record), never a 500 that drops a batch; a body that is
//! not JSON is a 400; an out-of-range number rejects only its record; and an operator can
//! delete records by id, prefix or time range with the figures staying right.

mod common;

use apogee_store::test_support::FreshDatabase;
use common::services::postgres_database;
use common::*;
use serde_json::{Value, json};

/// A database for one test on each backend: SQLite in the server's data directory, and a
/// fresh PostgreSQL database when a server is configured (always in CI).
async fn backends() -> Vec<(&'static str, Option<FreshDatabase>)> {
    let mut all = vec![("sqlite", None)];
    if let Some(db) = postgres_database().await {
        all.push(("postgres", Some(db)));
    }
    all
}

fn env(db: &Option<FreshDatabase>) -> Vec<(&'static str, String)> {
    db.iter()
        .map(|d| ("APOGEE_DATABASE_URL", d.url.clone()))
        .collect()
}

async fn start(
    dir: &std::path::Path,
    db: &Option<FreshDatabase>,
    extra: &[(&str, &str)],
) -> Server {
    let vars = env(db);
    let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    Server::start(dir, &all).await
}

const USER: (&str, &str) = ("X-Apogee-User", "mallory");

async fn post_usage(server: &Server, body: &str) -> (u16, Value) {
    let (status, text) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[USER, ("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

fn indexes(v: &Value) -> Vec<u64> {
    v["rejected"]
        .as_array()
        .map(|a| a.iter().map(|r| r["index"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// A §8 record in the current hour, so the default 30-day period reads it.
fn record(id: &str, extra: &str) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"request_id":"{id}","ts":"{ts}","model":"gpt-4o","input_tokens":100,"output_tokens":10,"user":"u","feature":"f"{extra}}}"#
    )
}

/// Asks the chat "Analyze my AI costs" and returns the supervisor's final status.
async fn analyze(server: &Server) -> String {
    let mut c = server.ws("?user=mallory").await;
    c.ready().await;
    c.ask("analyze-1", "Analyze my AI costs", None).await;
    let ack = c.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let run = ack["run_id"].as_str().unwrap().to_string();
    let events = c.until_run_end(&run).await;
    events.last().unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_absurd_aggregate_record_is_refused_and_the_org_keeps_working() {
    for (backend, db) in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &db, &[]).await;
        // 10^9 calls and 10^17 tokens: within the per-call bounds, priced at ~$10^12.
        let absurd = record("absurd", r#","request_count":1000000000"#)
            .replace(
                r#""input_tokens":100"#,
                r#""input_tokens":100000000000000000"#,
            )
            .replace(
                r#""output_tokens":10"#,
                r#""output_tokens":100000000000000000"#,
            );
        let body = format!("{}\n{absurd}\n", record("fine", ""));
        let (status, v) = post_usage(&server, &body).await;
        assert_eq!(status, 200, "{backend}: {v}");
        assert_eq!(
            (v["accepted"].as_u64(), indexes(&v)),
            (Some(1), vec![1]),
            "{backend}: {v}"
        );
        assert!(
            v["rejected"][0]["error"].as_str().unwrap().contains("cost"),
            "{v}"
        );
        for path in ["/api/costs", "/api/recommendations"] {
            let (status, v) = get_json(&server.addr, path, "mallory").await;
            assert_eq!(status, 200, "{backend} {path}: {v}");
        }
        assert_eq!(analyze(&server).await, "ok", "{backend}");
    }
}

#[tokio::test]
async fn million_dollar_records_never_wrap_and_later_batches_land() {
    for (backend, db) in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &db, &[]).await;
        // 9,300 records of $1,000,000 in one hour × model × user × feature.
        let lines: Vec<String> = (0..9_300)
            .map(|i| record(&format!("m{i}"), r#","cost_usd":1000000"#))
            .collect();
        let (status, v) = post_usage(&server, &lines.join("\n")).await;
        assert_eq!(status, 200, "{backend}: {v}");
        assert_eq!(v["accepted"], 9_223, "{backend}: {}", v["rejected"][0]);
        assert_eq!(v["rejected_count"], 77);
        assert_eq!(indexes(&v), (9_223..9_300).collect::<Vec<u64>>());
        let (status, costs) = get_json(&server.addr, "/api/costs", "mallory").await;
        assert_eq!(status, 200, "{backend}: {costs}");
        assert_eq!(
            costs["totals"]["cost_nanos"],
            json!(9_223_000_000_000_000_000u64)
        );
        assert!(costs["totals"]["cost_usd"].as_f64().unwrap() > 9.2e9);
        // A legitimate batch afterwards lands (the full bucket is not in its way).
        let mut later = record("later", "");
        later = later.replace(r#""feature":"f""#, r#""feature":"other""#);
        let (status, v) = post_usage(&server, &later).await;
        assert_eq!(
            (status, v["accepted"].as_u64()),
            (200, Some(1)),
            "{backend}: {v}"
        );
        assert_eq!(analyze(&server).await, "ok", "{backend}");
    }
}

#[tokio::test]
async fn control_characters_are_refused_clearly_on_every_backend() {
    for (backend, db) in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &db, &[]).await;
        // Usage: each string field and tag with a NUL is a rejected record, named by index.
        let body = [
            record("nul-model", "").replace("gpt-4o", "gpt\\u0000"),
            record("nul-feature", "").replace(r#""f""#, r#""f\u0000""#),
            record("nul-user", "").replace(r#""u""#, r#""\u0007u""#),
            record("nul-id\\u0000", ""),
            record("nul-tag", r#","tags":{"k":"v\u0000"}"#),
            record("good", ""),
        ]
        .join("\n");
        let (status, v) = post_usage(&server, &body).await;
        assert_eq!(status, 200, "{backend}: {v}");
        assert_eq!(
            (v["accepted"].as_u64(), indexes(&v)),
            (Some(1), vec![0, 1, 2, 3, 4]),
            "{backend}: {v}"
        );
        for r in v["rejected"].as_array().unwrap() {
            assert!(
                r["error"].as_str().unwrap().contains("control character"),
                "{r}"
            );
        }
        // Chat frames: content, client_msg_id, thread_id, run_id; the connection stays.
        let mut c = server.ws("?user=mallory").await;
        c.ready().await;
        for frame in [
            json!({"type":"user_message","client_msg_id":"a","content":"hi\u{0}"}),
            json!({"type":"user_message","client_msg_id":"a\u{0}","content":"hi"}),
            json!({"type":"user_message","client_msg_id":"b","content":"hi","thread_id":"t\u{0}"}),
            json!({"type":"cancel_run","run_id":"r\u{0}"}),
        ] {
            c.send(frame.clone()).await;
            let e = c.next().await.unwrap();
            assert_eq!(
                (e["type"].as_str(), e["code"].as_str()),
                (Some("error"), Some("bad_request")),
                "{backend} {frame}: {e}"
            );
        }
        c.send(json!({"type":"ping","nonce":"open"})).await;
        assert_eq!(c.next().await.unwrap()["type"], "pong");
        // REST ids and tickets.
        for path in ["/api/threads/t%00x/messages", "/api/runs/r%00x/events"] {
            let (status, body) = http(&server.addr, "GET", path, &[USER], b"").await;
            assert_eq!(status, 400, "{backend} {path}: {body}");
        }
        let h = handshake(&server.addr, "?ticket=t_%00", &[]).await;
        assert_eq!(h.status, 401, "{backend}: {}", h.body);
        drop(server);

        // A JWT whose `sub` or `org` holds a control character is not an identity.
        let secret = "a-secret-that-is-long-enough-for-tests";
        let server = start(
            dir.path(),
            &db,
            &[("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_HS256_SECRET", secret)],
        )
        .await;
        let exp = unix_now() + 600;
        for claims in [
            json!({"sub":"al\u{0}ice","org":"acme","exp":exp}),
            json!({"sub":"alice","org":"ac\u{0}me","exp":exp}),
        ] {
            let auth = format!("Bearer {}", hs256(secret, &claims));
            let (status, body) = http(
                &server.addr,
                "GET",
                "/api/threads",
                &[("Authorization", &auth)],
                b"",
            )
            .await;
            assert_eq!(status, 401, "{backend} {claims}: {body}");
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_and_one_bad_number_rejects_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let (status, v) = post_usage(&server, "{{{{{{{{{{{{{{{{").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    let array = format!(
        "[{},{},{}]",
        record("a", ""),
        record("b", "").replace(r#""input_tokens":100"#, r#""input_tokens":1e309"#),
        record("c", "")
    );
    let (status, v) = post_usage(&server, &array).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), indexes(&v)),
        (Some(2), vec![1]),
        "{v}"
    );
}

#[tokio::test]
async fn records_and_reported_rejections_per_request_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("APOGEE_MAX_RECORDS_PER_REQUEST", "200")]).await;
    // 150 bad lines: the first 100 are reported, all are counted.
    let body = "1\n".repeat(150);
    let (status, v) = post_usage(&server, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["rejected"].as_array().unwrap().len(),
            v["rejected_count"].as_u64()
        ),
        (100, Some(150))
    );
    // One record too many: 413, and nothing stored.
    let lines: Vec<String> = (0..201).map(|i| record(&format!("r{i}"), "")).collect();
    let (status, v) = post_usage(&server, &lines.join("\n")).await;
    assert_eq!(status, 413, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 200 records"),
        "{v}"
    );
    let (_, costs) = get_json(&server.addr, "/api/costs", "mallory").await;
    assert_eq!(costs["totals"]["calls"], 0);
}

async fn cli(dir: &std::path::Path, db: &Option<FreshDatabase>, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(binary())
        .args(args)
        .env("APOGEE_DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .envs(env(db))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn an_operator_deletes_records_by_id_prefix_or_time_and_the_figures_follow() {
    for (backend, db) in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("usage.ndjson");
        let lines = [
            r#"{"request_id":"bad-1","ts":"2026-11-10T08:00:00Z","model":"gpt-4o","input_tokens":100,"output_tokens":10,"cost_usd":1}"#,
            r#"{"request_id":"bad-2","ts":"2026-11-10T09:00:00Z","model":"gpt-4o","input_tokens":100,"output_tokens":10,"cost_usd":1}"#,
            r#"{"request_id":"keep-1","ts":"2026-11-10T10:00:00Z","model":"gpt-4o","input_tokens":100,"output_tokens":10,"cost_usd":1}"#,
            r#"{"request_id":"keep-2","ts":"2026-11-11T10:30:00Z","model":"gpt-4o","input_tokens":100,"output_tokens":10,"cost_usd":1}"#,
            r#"{"request_id":"keep-3","ts":"2026-11-12T10:30:00Z","model":"gpt-4o","input_tokens":100,"output_tokens":10,"cost_usd":1}"#,
        ];
        std::fs::write(&file, lines.join("\n")).unwrap();
        let path = file.display().to_string();
        let v = cli(dir.path(), &db, &["ingest", &path, "--org", "demo"]).await;
        assert_eq!(v["accepted"], 5, "{backend}: {v}");
        let deleted = |v: Value| v["deleted"].as_u64().unwrap();
        let by_id = [
            "delete-usage",
            "--org",
            "demo",
            "--id",
            "keep-3",
            "--id",
            "nope",
        ];
        assert_eq!(deleted(cli(dir.path(), &db, &by_id).await), 1, "{backend}");
        let by_prefix = ["delete-usage", "--org", "demo", "--prefix", "bad-"];
        assert_eq!(
            deleted(cli(dir.path(), &db, &by_prefix).await),
            2,
            "{backend}"
        );
        let by_time = [
            "delete-usage",
            "--org",
            "demo",
            "--from",
            "2026-11-11",
            "--to",
            "2026-11-11",
        ];
        assert_eq!(
            deleted(cli(dir.path(), &db, &by_time).await),
            1,
            "{backend}"
        );
        let server = start(dir.path(), &db, &[]).await;
        let (status, v) = get_json(
            &server.addr,
            "/api/costs?from=2026-11-01&to=2026-11-30",
            "anyone",
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (
                v["totals"]["calls"].as_u64(),
                v["totals"]["cost_nanos"].as_u64()
            ),
            (Some(1), Some(1_000_000_000)),
            "{backend}: {v}"
        );
        // A selection that is not one is refused before anything is touched.
        let out = tokio::process::Command::new(binary())
            .args(["delete-usage", "--org", "demo", "--prefix", ""])
            .env("APOGEE_DATA_DIR", dir.path())
            .envs(env(&db))
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
    }
}
