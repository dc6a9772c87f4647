//! The analysis a question runs is computed once per data version of the org, on each backend
//! (SQLite, and PostgreSQL when configured, always in CI): asking again is answered from the
//! cache (the metrics say so) and still streams every agent and tool step; new usage in the
//! period changes the next answer at once, and the cost API agrees with it.

mod common;

use apogee_store::test_support::FreshDatabase;
use common::services::postgres_database;
use common::*;
use serde_json::Value;

async fn backends() -> Vec<(&'static str, Option<FreshDatabase>)> {
    let mut all = vec![("sqlite", None)];
    if let Some(db) = postgres_database().await {
        all.push(("postgres", Some(db)));
    }
    all
}

const USER: &str = "carol";

/// `n` calls of gpt-4o on `feature`, a minute ago: inside the default 30-day window.
fn records(prefix: &str, n: usize, feature: &str) -> String {
    let ts = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"request_id":"{prefix}-{i}","ts":"{ts}","model":"gpt-4o","input_tokens":1000,"output_tokens":200,"user":"u{i}","feature":"{feature}","prompt_hash":"p{}"}}"#,
                i % 3
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

async fn ingest(server: &Server, body: &str) {
    let (status, text) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[
            ("X-Apogee-User", USER),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

/// Asks "Analyze my AI costs" on a fresh thread; returns the run's events.
async fn analyze(c: &mut Client, id: &str) -> Vec<Value> {
    c.ask(id, "Analyze my AI costs", None).await;
    let ack = c.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let events = c.until_run_end(&run_id).await;
    assert_run_well_formed(&events);
    assert_eq!(events.last().unwrap()["status"], "ok");
    events
}

fn final_data(events: &[Value]) -> &Value {
    &events.last().unwrap()["data"]
}

/// The tool whose reads end at the run's `now` (spend so far this month): recomputed by every
/// run, its result differs from run to run.
const AS_OF_NOW: &str = "forecast_month_end";

/// What the tools a run executed found: summary and data (but for [`AS_OF_NOW`]'s), sorted
/// (the optimization agent runs its tools side by side, so they end in any order).
fn tool_results(events: &[Value]) -> Vec<(String, String)> {
    let mut found: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "tool_completed" && e["tool"] != AS_OF_NOW)
        .map(|e| (e["summary"].to_string(), e["data"].to_string()))
        .collect();
    found.sort();
    found
}

/// The tools a run executed, sorted.
fn tool_names(events: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "tool_executing")
        .map(|e| e["tool"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_cached_answer_changes_once_new_usage_is_ingested() {
    for (backend, db) in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let url = db.as_ref().map(|d| d.url.clone());
        let env: Vec<(&str, &str)> = url
            .iter()
            .map(|u| ("APOGEE_DATABASE_URL", u.as_str()))
            .collect();
        let server = Server::start(dir.path(), &env).await;
        ingest(&server, &records("first", 30, "support-bot")).await;
        let mut c = server.ws(&format!("?user={USER}")).await;
        c.ready().await;

        let first = analyze(&mut c, "q1").await;
        let misses = metric(&server, "apogee_usage_cache_misses_total").await;
        let hits = metric(&server, "apogee_usage_cache_hits_total").await;
        assert!(misses > 0, "{backend}: the first analysis reads usage");

        // Asked again over the same data: every read is a hit, the month to date up to this
        // run's `now` included (no record was stored after the first run's `now`; only a run
        // in the next hour reads it again, which the two runs here may straddle), and the run
        // streams the same agents and tools with the same results.
        let again = analyze(&mut c, "q2").await;
        assert!(tool_names(&first).iter().any(|t| t == AS_OF_NOW));
        let recomputed = metric(&server, "apogee_usage_cache_misses_total").await - misses;
        assert!(recomputed <= 1, "{backend}: {recomputed} reads recomputed");
        assert_eq!(tool_names(&again), tool_names(&first));
        assert!(
            metric(&server, "apogee_usage_cache_hits_total").await > hits,
            "{backend}: answered from the cache"
        );
        assert!(!tool_results(&again).is_empty());
        assert_eq!(tool_results(&again), tool_results(&first), "{backend}");
        assert_eq!(final_data(&again)["totals"], final_data(&first)["totals"]);
        assert_eq!(final_data(&first)["totals"]["calls"], 30, "{backend}");

        // New usage in the period: the next answer has it.
        ingest(&server, &records("second", 12, "search")).await;
        let after = analyze(&mut c, "q3").await;
        let totals = &final_data(&after)["totals"];
        assert_eq!(totals["calls"], 42, "{backend}: {totals}");
        assert!(
            metric(&server, "apogee_usage_cache_misses_total").await > misses,
            "{backend}: recomputed after the ingest"
        );
        assert_ne!(tool_results(&after), tool_results(&first));
        let data = final_data(&after);
        let window = format!(
            "/api/costs?from={}&to={}",
            data["period"]["from"].as_str().unwrap(),
            data["period"]["to"].as_str().unwrap()
        );
        let (status, costs) = get_json(&server.addr, &window, USER).await;
        assert_eq!(status, 200, "{costs}");
        assert_eq!(costs["totals"]["cost_nanos"], totals["cost_nanos"]);
        assert_eq!(costs["totals"]["calls"], 42);

        // Deleting usage is a change too, even by another process (the operator's CLI).
        let out = apogee()
            .args(["delete-usage", "--org", "demo", "--prefix", "second-"])
            .env("APOGEE_DATA_DIR", dir.path())
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deleted = analyze(&mut c, "q4").await;
        assert_eq!(final_data(&deleted)["totals"]["calls"], 30, "{backend}");
        assert_eq!(tool_results(&deleted), tool_results(&first), "{backend}");
        server.terminate().await;
    }
}
