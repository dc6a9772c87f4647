//! Every ingest path against the real binary, with the sample files of `testdata/`: REST in
//! each format, OTLP/HTTP in protobuf and JSON, `apogee ingest` for each file format, and the
//! operator's prices file, and the demo loader's synthetic history, which a reload replaces
//! without touching a client's records. Expected costs are computed by hand in the comments.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use prost::Message;
use serde_json::Value;

const USER: (&str, &str) = ("X-Apogee-User", "alice");

fn sample(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match name {
        "otlp_genai_traces.json" => root.join("testdata").join(name),
        _ => root.join("../analytics/testdata").join(name),
    }
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(sample(name)).unwrap()
}

/// `/api/costs` totals over 2026-11-01 … 2026-11-30 for the caller's org.
async fn totals(server: &Server) -> Value {
    let (s, body) = http(
        &server.addr,
        "GET",
        "/api/costs?from=2026-11-01&to=2026-11-30",
        &[USER],
        b"",
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["totals"].clone()
}

async fn post(server: &Server, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let (s, body) = http(
        &server.addr,
        "POST",
        path,
        &[USER, ("Content-Type", content_type)],
        body,
    )
    .await;
    (
        s,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn indexes(v: &Value) -> Vec<u64> {
    v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn rest_ingest_in_every_format_prices_by_hand_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;

    // NDJSON §8 v2. Priced: nd-1 gpt-4o 200 fresh × $2.50 + 1000 cached × $1.25 + 310 × $10
    // = 4,850,000 nanos; nd-2 claude-sonnet-4 (Anthropic counts) 40 × $3 + 900 × $0.30 +
    // 60 × $3.75 + 220 × $15 = 3,915,000; nd-8 client cost $0.25 = 250,000,000; nd-3 unpriced.
    let (s, v) = post(
        &server,
        "/api/usage",
        "application/x-ndjson",
        &read("usage.ndjson"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), indexes(&v)),
        (Some(4), vec![3, 4, 5, 6])
    );
    let t = totals(&server).await;
    assert_eq!(t["cost_nanos"], 258_765_000);
    assert_eq!(
        (t["calls"].as_i64(), t["unpriced_calls"].as_i64()),
        (Some(4), Some(1))
    );

    // CSV by content type: csv-1 1000 × 2.50 + 200 × 1.25 + 310 × 10 = 5,850,000; csv-2
    // gpt-4o-mini batch (500 × 0.15 + 80 × 0.60) / 2 = 61,500; csv-6 client $0.00123.
    let (s, v) = post(&server, "/api/usage", "text/csv", &read("usage.csv")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), indexes(&v)),
        (Some(3), vec![2, 3, 4])
    );
    let t = totals(&server).await;
    assert_eq!(
        t["cost_nanos"],
        258_765_000 + 5_850_000 + 61_500 + 1_230_000
    );

    // LiteLLM: spends 0.00485 + 0.0025125 kept; the $0 unknown model stays unpriced.
    let (s, v) = post(
        &server,
        "/api/usage?format=litellm",
        "application/json",
        &read("litellm_spend_logs.json"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["accepted"].as_u64(), indexes(&v)), (Some(4), vec![4, 5]));

    // OpenAI usage buckets: 4100 calls; $5.35 + $1.45 (batch) + $0.081.
    let (s, v) = post(
        &server,
        "/api/usage?format=openai",
        "application/json",
        &read("openai_usage_completions.json"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["accepted"].as_u64(), indexes(&v)), (Some(3), vec![3, 4]));
    let t = totals(&server).await;
    let expected = 258_765_000i64
        + 7_141_500
        + (4_850_000 + 2_512_500)
        + (5_350_000_000 + 1_450_000_000 + 81_000_000);
    assert_eq!(t["cost_nanos"].as_i64(), Some(expected));
    assert_eq!(t["calls"].as_i64(), Some(4 + 3 + 4 + 4100));
    assert_eq!(t["unpriced_calls"].as_i64(), Some(2));

    // Sending everything again stores nothing new.
    let (_, v) = post(
        &server,
        "/api/usage?format=openai",
        "application/json",
        &read("openai_usage_completions.json"),
    )
    .await;
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    let (_, v) = post(&server, "/api/usage", "text/csv", &read("usage.csv")).await;
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(totals(&server).await["cost_nanos"].as_i64(), Some(expected));

    let (s, v) = post(&server, "/api/usage?format=xml", "application/json", b"[]").await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn otlp_traces_in_protobuf_and_json_become_priced_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("APOGEE_MAX_BODY_BYTES", "65536")]).await;
    let json = read("otlp_genai_traces.json");
    let request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
        serde_json::from_slice(&json).unwrap();
    let protobuf = request.encode_to_vec();

    let (s, body) = http(
        &server.addr,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &protobuf,
    )
    .await;
    assert_eq!(s, 401, "OTLP is authenticated like REST: {body}");

    let (s, _) = post(&server, "/v1/traces", "application/x-protobuf", &protobuf).await;
    assert_eq!(s, 200);
    // gpt-4o 4,850,000 + claude-sonnet-4 (50 + 1000 read + 150 written) 50 × 3 + 1000 × 0.30
    // + 150 × 3.75 + 100 × 15 = 2,512,500 + gpt-4o-mini 300 × 0.15 + 40 × 0.60 = 69,000.
    let t = totals(&server).await;
    assert_eq!(
        t["cost_nanos"].as_i64(),
        Some(4_850_000 + 2_512_500 + 69_000)
    );
    assert_eq!(
        (t["calls"].as_i64(), t["error_calls"].as_i64()),
        (Some(3), Some(1))
    );

    // The same spans as JSON are duplicates; the answer names the rejected spans.
    let (s, v) = post(&server, "/v1/traces", "application/json", &json).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["partialSuccess"]["rejectedSpans"], 2, "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("span 4")),
        "{v}"
    );
    assert_eq!(totals(&server).await["calls"].as_i64(), Some(3));

    let (s, _) = post(&server, "/v1/traces", "text/plain", &json).await;
    assert_eq!(s, 415);
    let (s, _) = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        b"\xff\xff\xff",
    )
    .await;
    assert_eq!(s, 400);
    let big = vec![b' '; 70_000];
    let (s, _) = post(&server, "/v1/traces", "application/json", &big).await;
    assert_eq!(s, 413);

    // Gzip bodies (the Collector's default) are read; the limit counts decompressed bytes.
    let gzip = |bytes: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let headers = [
        USER,
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    let (s, body) = http(&server.addr, "POST", "/v1/traces", &headers, &gzip(&json)).await;
    assert_eq!(s, 200, "{body}");
    let small_bomb = gzip(&big);
    assert!(small_bomb.len() < 65_536);
    let (s, _) = http(&server.addr, "POST", "/v1/traces", &headers, &small_bomb).await;
    assert_eq!(s, 413);
    let br = [
        USER,
        ("Content-Type", "application/json"),
        ("Content-Encoding", "br"),
    ];
    let (s, _) = http(&server.addr, "POST", "/v1/traces", &br, &json).await;
    assert_eq!(s, 415);
}

async fn ingest_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, Value, String) {
    let mut cmd = apogee();
    cmd.arg("ingest").args(args).env("APOGEE_DATA_DIR", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn db_sum(dir: &Path, org: &str) -> (i64, i64) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("apogee.db").display()))
        .await
        .unwrap();
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(cost_nanos), 0) FROM usage_records WHERE org_id = ?",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

#[tokio::test]
async fn cli_ingests_each_file_format_once_detecting_it_from_the_content() {
    let dir = tempfile::tempdir().unwrap();
    // Every sample file without `--format`: the format is read from the content.
    let files = [
        ("usage.ndjson", "ndjson", 4, vec![3, 4, 5, 6]),
        ("usage.csv", "csv", 3, vec![2, 3, 4]),
        ("litellm_spend_logs.json", "litellm", 4, vec![4, 5]),
        ("openai_usage_completions.json", "openai", 3, vec![3, 4]),
    ];
    for (name, format, accepted, rejected) in &files {
        let path = sample(name);
        let path = path.to_str().unwrap();
        let args = vec![path, "--org", "acme"];
        let (ok, v, err) = ingest_cli(dir.path(), &args, &[]).await;
        assert!(ok, "{name}: {err}");
        assert_eq!(v["format"].as_str(), Some(*format), "{name}: {v}");
        assert_eq!(v["format_detected"].as_bool(), Some(true), "{name}: {v}");
        assert_eq!(v["accepted"].as_u64(), Some(*accepted), "{name}: {v}");
        assert_eq!(indexes(&v), *rejected, "{name}");
        // Re-run with the format named: nothing new, and `--strict` fails on the rejections.
        let args = vec![path, "--org", "acme", "--format", format, "--json"];
        let (ok, v, _) = ingest_cli(dir.path(), &args, &[]).await;
        assert!(ok);
        assert_eq!(v["format_detected"].as_bool(), Some(false), "{name}: {v}");
        let strict = [&args[..], &["--strict"]].concat();
        let (ok, v, err) = ingest_cli(dir.path(), &strict, &[]).await;
        assert!(!ok && err.contains("rejected (--strict)"), "{name}: {err}");
        assert_eq!(v["duplicates"].as_u64(), Some(*accepted), "{name}: {v}");
        assert_eq!(
            (v["accepted"].as_u64(), v["duplicates"].as_u64()),
            (Some(0), Some(*accepted)),
            "{name}: a second run stores nothing"
        );
    }
    // The same figures as REST: every file's hand-computed cost, once.
    let (rows, cost) = db_sum(dir.path(), "acme").await;
    assert_eq!(rows, 14);
    assert_eq!(
        cost,
        258_765_000 + 7_141_500 + 7_362_500 + 6_881_000_000,
        "ndjson + csv + litellm + openai"
    );
    assert_eq!(db_sum(dir.path(), "demo").await, (0, 0));

    // A file of which nothing is good (CSV read as NDJSON) fails, and says why.
    let csv = sample("usage.csv");
    let (ok, v, err) = ingest_cli(
        dir.path(),
        &[csv.to_str().unwrap(), "--format", "ndjson"],
        &[],
    )
    .await;
    assert!(!ok && err.contains("no record of"), "{err}");
    assert_eq!(v["accepted"].as_u64(), Some(0), "{v}");

    let (ok, _, err) = ingest_cli(dir.path(), &["/nonexistent.ndjson"], &[]).await;
    assert!(!ok && err.contains("cannot read"), "{err}");
    let bad_org = sample("usage.csv");
    let (ok, _, _) = ingest_cli(
        dir.path(),
        &[bad_org.to_str().unwrap(), "--org", "a b"],
        &[],
    )
    .await;
    assert!(!ok, "org names are checked");
}

#[tokio::test]
async fn prices_file_overrides_the_catalog_for_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        r#"version = "acme-contract"
[[model]]
provider = "openai"
model = "gpt-4o"
input = 2.00
output = 8.00
effective_from = "2024-10-02"
source = "contract ACME-42"

[[model]]
provider = "self-hosted"
model = "acme-llama-70b"
input = 0.50
output = 0.50
effective_from = "2024-01-01"
source = "internal GPU cost"
"#,
    )
    .unwrap();
    let prices = prices.to_str().unwrap().to_string();
    let server = Server::start(dir.path(), &[("APOGEE_PRICES_FILE", &prices)]).await;
    let body = concat!(
        r#"{"request_id":"p1","ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":1000,"output_tokens":1000}"#,
        "\n",
        r#"{"request_id":"p2","ts":"2026-11-20T08:00:00Z","model":"acme-llama-70b","input_tokens":1000,"output_tokens":1000}"#,
        "\n",
    );
    let (s, v) = post(
        &server,
        "/api/usage",
        "application/x-ndjson",
        body.as_bytes(),
    )
    .await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(2)), "{v}");
    // gpt-4o at the contract price: 1000 × $2 + 1000 × $8 = 10,000,000 nanos; the internal
    // model, now priced: 1000 × 0.50 × 2 = 1,000,000.
    let t = totals(&server).await;
    assert_eq!(
        (t["cost_nanos"].as_i64(), t["unpriced_calls"].as_i64()),
        (Some(11_000_000), Some(0))
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.db_path().display()))
        .await
        .unwrap();
    let source: String =
        sqlx::query_scalar("SELECT price_source FROM usage_records WHERE request_id = 'p1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(source, "override:openai/gpt-4o@2024-10-02");
    pool.close().await;

    // A broken prices file stops the server from starting rather than mispricing.
    std::fs::write(dir.path().join("bad.toml"), "[[model]]\nmodel = 1\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let out = apogee()
        .args(["ingest", &sample("usage.csv").display().to_string()])
        .env("APOGEE_DATA_DIR", dir.path())
        .env("APOGEE_PRICES_FILE", &bad)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prices file"));
}

/// `apogee demo-data` into `dir` (org `demo`, seed 1); its one-line summary.
async fn demo_data(dir: &Path, calls: u64) -> String {
    let out = apogee()
        .args(["demo-data", "--calls", &calls.to_string(), "--days", "30"])
        .args(["--seed", "1"])
        .env("APOGEE_DATA_DIR", dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn reloading_demo_data_replaces_only_synthetic_records() {
    let dir = tempfile::tempdir().unwrap();
    // A client's records in org `demo` whose request ids look like the loader's: one
    // `demo-…`, one exactly the id the loader gives its first record.
    let server = Server::start(dir.path(), &[]).await;
    let body = concat!(
        r#"[{"request_id":"demo-mine","ts":"2026-11-20T08:00:00Z","model":"gpt-4o","input_tokens":1000,"output_tokens":0,"cost_usd":1.5},"#,
        r#"{"request_id":"demo-1-0","ts":"2026-11-20T09:00:00Z","model":"gpt-4o","input_tokens":1000,"output_tokens":0,"cost_usd":2.25}]"#
    );
    let json = [USER, ("Content-Type", "application/json")];
    let (s, answer) = http(&server.addr, "POST", "/api/usage", &json, body.as_bytes()).await;
    assert_eq!(s, 200, "{answer}");
    assert!(server.terminate().await.success());

    let first = demo_data(dir.path(), 500).await;
    assert!(
        first.contains("499 records stored (1 duplicates), 0 earlier"),
        "{first}"
    );
    let again = demo_data(dir.path(), 500).await;
    assert!(
        again.contains("499 earlier demo records replaced"),
        "{again}"
    );

    let db = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("apogee.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let mine: Vec<(String, i64, bool)> = sqlx::query_as(
        "SELECT request_id, cost_nanos, synthetic FROM usage_records
         WHERE org_id = 'demo' AND request_id IN ('demo-mine', 'demo-1-0') ORDER BY request_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        mine,
        [
            ("demo-1-0".to_string(), 2_250_000_000, false),
            ("demo-mine".to_string(), 1_500_000_000, false),
        ],
        "the client's records survive both loads"
    );
    let synthetic: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE synthetic")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(synthetic, 499);
    pool.close().await;
}
