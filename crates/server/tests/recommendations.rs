//! `GET /api/recommendations` and the named periods of `GET /api/costs` on demo data: the
//! demo's planted savings (right-sizing support-bot's short gpt-4o calls, caching its FAQ
//! prompts) are found with their assumptions, and a named period equals its explicit bounds.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn recommendations_and_named_periods_on_demo_data() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 20_000).await;
    let server = Server::start(dir.path(), &[]).await;

    let (s, body) = get_json(&server.addr, "/api/recommendations?period=30d", "alice").await;
    assert_eq!(s, 200, "{body}");
    let recs = body["recommendations"].as_array().unwrap();
    let kinds: Vec<&str> = recs.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert!(kinds.contains(&"right_size_model"), "{kinds:?}");
    assert!(kinds.contains(&"response_cache"), "{kinds:?}");
    // The demo's doc-summarizer runs nightly with `batch: false`.
    let batch = recs
        .iter()
        .find(|r| r["kind"] == "batch_api")
        .unwrap_or_else(|| panic!("no batch_api in {kinds:?}"));
    assert!(
        batch["title"].as_str().unwrap().contains("doc-summarizer"),
        "{batch}"
    );
    let savings: Vec<i64> = recs
        .iter()
        .map(|r| r["monthly_saving_nanos"].as_i64().unwrap())
        .collect();
    assert!(savings.windows(2).all(|w| w[0] >= w[1]), "{savings:?}");
    assert!(savings.iter().all(|&s| s > 0));
    assert_eq!(
        body["monthly_saving_nanos"].as_i64(),
        Some(savings.iter().sum())
    );
    for r in recs {
        assert!(
            !r["assumptions"].as_array().unwrap().is_empty(),
            "{r}: every saving names its assumptions"
        );
        assert!(r["affected_calls"].as_i64().unwrap() > 0);
    }

    // `period=7d` is the same window as its explicit bounds.
    let (s, named) = get_json(
        &server.addr,
        "/api/costs?period=7d&group_by=feature",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{named}");
    let (from, to) = (
        named["from"].as_str().unwrap().to_string(),
        named["to"].as_str().unwrap().to_string(),
    );
    let (_, explicit) = get_json(
        &server.addr,
        &format!("/api/costs?from={from}&to={to}&group_by=feature"),
        "alice",
    )
    .await;
    assert_eq!(named["totals"], explicit["totals"]);
    assert_eq!(named["rows"], explicit["rows"]);
    assert!(named["totals"]["calls"].as_i64().unwrap() > 0);
    let (_, month) = get_json(&server.addr, "/api/costs?period=30d", "alice").await;
    assert!(
        month["totals"]["cost_nanos"].as_i64() > named["totals"]["cost_nanos"].as_i64(),
        "30 days cost more than 7"
    );

    for bad in [
        "/api/costs?period=fortnight",
        "/api/recommendations?period=fortnight",
        "/api/recommendations?from=2026-11-20&to=2026-11-01",
    ] {
        let (s, v): (u16, Value) = get_json(&server.addr, bad, "alice").await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
}
