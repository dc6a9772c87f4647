//! Pricing through the real binary: an OpenAI usage export, LiteLLM's spend logs and OTLP spans
//! with the names those sources really report, read back from `GET /api/costs` (one row per
//! model, every call priced) and `GET /api/recommendations` (no Batch API saving from a day's
//! bucket); a LiteLLM price map as `APOGEE_PRICES_FILE`; and `apogee prices check`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

const USER: (&str, &str) = ("X-Apogee-User", "alice");

fn golden(name: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read(root.join("../analytics/testdata/golden").join(name)).unwrap()
}

fn litellm_map() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../analytics/testdata/litellm/model_prices_and_context_window.json")
}

async fn post(server: &Server, path: &str, content_type: &str, body: &[u8]) -> Value {
    let (s, body) = http(
        &server.addr,
        "POST",
        path,
        &[USER, ("Content-Type", content_type)],
        body,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn get(server: &Server, path: &str) -> Value {
    let (s, body) = http(&server.addr, "GET", path, &[USER], b"").await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn attr(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

/// One OTLP GenAI span at 2026-11-20 12:00:00 UTC + `second`.
fn span(second: u64, system: &str, model: &str, input: i64, output: i64, extra: &[Value]) -> Value {
    let start = 1_795_176_000_000_000_000u64 + second * 1_000_000_000;
    let mut attributes = vec![
        attr("gen_ai.system", json!({"stringValue": system})),
        attr("gen_ai.response.model", json!({"stringValue": model})),
        attr(
            "gen_ai.usage.input_tokens",
            json!({"intValue": input.to_string()}),
        ),
        attr(
            "gen_ai.usage.output_tokens",
            json!({"intValue": output.to_string()}),
        ),
    ];
    attributes.extend_from_slice(extra);
    json!({
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": format!("{:016x}", 0xb7ad_6b71_6920_3300u64 + second),
        "name": format!("chat {model}"),
        "kind": 3,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + 900_000_000).to_string(),
        "attributes": attributes,
    })
}

#[tokio::test]
async fn real_source_names_are_priced_and_one_model_is_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;

    // The golden export (836,000,000 nanos, 660 calls at 2026-11-02 00:00) and LiteLLM logs
    // (0 + 3,250,000 + 35,550,000; the negative spend rejected at index 3).
    let v = post(
        &server,
        "/api/usage?format=openai",
        "application/json",
        &golden("openai_export.json"),
    )
    .await;
    assert_eq!(v["accepted"], 4, "{v}");
    let v = post(
        &server,
        "/api/usage?format=litellm",
        "application/json",
        &golden("litellm_spend_logs.json"),
    )
    .await;
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"][0]["index"].as_u64()),
        (Some(3), Some(3))
    );

    // OTLP spans as instrumented SDKs report them:
    // - gpt-4o-2024-08-06 on the priority tier: $4.25 in, $17 out: 1,000 × 4.25 + 100 × 17
    //   = 4,250 + 1,700 = 5,950 µ$;
    // - Bedrock's us. profile of Claude Sonnet 4: 2,000 × 3 + 200 × 15 = 9,000 µ$ (no premium);
    // - Vertex AI's Gemini 2.0 Flash: 10,000 × 0.15 + 1,000 × 0.60 = 2,100 µ$.
    let traces = json!({"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", json!({"stringValue": "checkout"}))]},
        "scopeSpans": [{"spans": [
            span(0, "openai", "gpt-4o-2024-08-06", 1_000, 100,
                 &[attr("openai.response.service_tier", json!({"stringValue": "priority"}))]),
            span(1, "aws.bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", 2_000, 200, &[]),
            span(2, "gcp.vertex_ai", "gemini-2.0-flash-001", 10_000, 1_000, &[]),
        ]}]
    }]});
    let (s, body) = http(
        &server.addr,
        "POST",
        "/v1/traces",
        &[USER, ("Content-Type", "application/json")],
        traces.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{body}");

    let costs = get(
        &server,
        "/api/costs?from=2026-11-01&to=2026-11-30&group_by=model",
    )
    .await;
    let t = &costs["totals"];
    assert_eq!(
        (
            t["calls"].as_i64(),
            t["unpriced_calls"].as_i64(),
            t["cost_nanos"].as_i64()
        ),
        (
            Some(660 + 3 + 3),
            Some(0),
            Some(836_000_000 + 3_250_000 + 35_550_000 + 5_950_000 + 9_000_000 + 2_100_000)
        ),
        "{costs}"
    );
    let row = |key: &str| {
        costs["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} row in {costs}"))
    };
    // gpt-4o: the export's dated name, the OTLP span's, and LiteLLM's cache hit, one row.
    let gpt4o = row("gpt-4o");
    assert_eq!(gpt4o["calls"], 100 + 1 + 1, "{gpt4o}");
    assert_eq!(
        gpt4o["cost_nanos"].as_i64(),
        Some(225_000_000 + 5_950_000),
        "{gpt4o}"
    );
    let mut names: Vec<&str> = gpt4o["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["gpt-4o", "gpt-4o-2024-08-06"]);
    assert_eq!(row("claude-sonnet-4")["cost_nanos"], 9_000_000);
    assert_eq!(row("gemini-2.0-flash")["cost_nanos"], 2_100_000);

    // A day's bucket at 00:00 is not a night-time job: no Batch API saving is offered.
    let recs = get(
        &server,
        "/api/recommendations?from=2026-11-01&to=2026-11-30",
    )
    .await;
    let kinds: Vec<&str> = recs["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert!(!kinds.contains(&"batch_api"), "{recs}");
    let right_size = recs["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "right_size_model")
        .unwrap_or_else(|| panic!("{recs}"));
    assert_eq!(
        right_size["title"],
        "Route short gpt-4o calls to gpt-5.4-mini"
    );
    assert_eq!(right_size["affected_calls"], 101, "{right_size}");
}

async fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.args(args)
        .env("APOGEE_DATA_DIR", dir)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn a_litellm_price_map_prices_ingest_and_prices_check_names_what_is_unpriced() {
    let dir = tempfile::tempdir().unwrap();
    let map = litellm_map();
    let map = map.to_str().unwrap();
    // gpt-6-sol is in LiteLLM's map, not in the built-in catalog: $2 in, $10 out per 1M.
    let usage = dir.path().join("usage.ndjson");
    std::fs::write(
        &usage,
        concat!(
            r#"{"request_id":"m-1","ts":"2026-11-20T08:00:00Z","provider":"openai","model":"gpt-6-sol","input_tokens":1000,"output_tokens":1000}"#,
            "\n",
            r#"{"request_id":"m-2","ts":"2026-11-20T08:00:00Z","model":"acme-llama-70b","input_tokens":10,"output_tokens":10}"#,
            "\n",
            r#"{"request_id":"m-3","ts":"2026-11-20T08:00:00Z","model":"gpt4o-mini","input_tokens":10,"output_tokens":10}"#,
            "\n",
        ),
    )
    .unwrap();
    let file = usage.to_str().unwrap();
    let (ok, out, err) = cli(
        dir.path(),
        &["ingest", file, "--org", "acme"],
        &[("APOGEE_PRICES_FILE", map)],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\"accepted\":3"), "{out}");
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("apogee.db").display()
    ))
    .await
    .unwrap();
    let (cost, source): (i64, String) = sqlx::query_as(
        "SELECT cost_nanos, price_source FROM usage_records WHERE request_id = 'm-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    // 1,000 × $2 + 1,000 × $10 = 12,000 µ$.
    assert_eq!(
        (cost, source.as_str()),
        (12_000_000, "override:openai/gpt-6-sol@price-map")
    );

    // The check, with the org's usage of the last 30 days... of 2026-11-20's calls.
    let days = (chrono::Utc::now().date_naive()
        - chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap())
    .num_days()
        + 2;
    let days = days.to_string();
    let (ok, out, err) = cli(
        dir.path(),
        &["prices", "check", map, "--org", "acme", "--days", &days],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("LiteLLM price map"), "{out}");
    assert!(out.contains("keys left out"), "{out}");
    assert!(out.contains("2 models with unpriced calls"), "{out}");
    assert!(
        out.contains("acme-llama-70b: 1 of 1 calls unpriced; still unpriced with this file"),
        "{out}"
    );
    // A typo'd name: not priced, and the catalog's spelling suggested.
    assert!(out.contains("gpt4o-mini: 1 of 1 calls unpriced"), "{out}");
    let suggestion = out
        .lines()
        .find(|l| l.contains("gpt4o-mini:"))
        .unwrap_or_default();
    assert!(
        suggestion.contains("closest catalog names:") && suggestion.contains("gpt-4o-mini"),
        "{out}"
    );

    // A TOML file, and a broken one (non-zero exit, the reason on stderr).
    let toml = dir.path().join("prices.toml");
    std::fs::write(
        &toml,
        "[[model]]\nprovider = \"self-hosted\"\nmodel = \"acme-llama-70b\"\ninput = 0.5\noutput = 0.5\neffective_from = \"2024-01-01\"\nsource = \"GPU cost\"\n",
    )
    .unwrap();
    let (ok, out, err) = cli(
        dir.path(),
        &[
            "prices",
            "check",
            toml.to_str().unwrap(),
            "--org",
            "acme",
            "--days",
            &days,
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Apogee TOML prices file, 1 entries"), "{out}");
    assert!(
        out.contains("acme-llama-70b: 1 of 1 calls unpriced; this file prices it from now on (override:self-hosted/acme-llama-70b@2024-01-01)"),
        "{out}"
    );
    std::fs::write(&toml, "{ \"gpt-4o\": 1 ").unwrap();
    let (ok, _, err) = cli(
        dir.path(),
        &["prices", "check", toml.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("not a LiteLLM price map"), "{err}");
}
