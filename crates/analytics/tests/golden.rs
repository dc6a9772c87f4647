//! The golden datasets of `testdata/golden/` give exactly the answers computed by hand in its
//! README: costs under both cache conventions, a context-length tier, an unpriced model, and
//! each recommender's saving.

use std::sync::Arc;

use apogee_analytics::formats::{self, Format};
use apogee_analytics::memory::MemoryUsage;
use apogee_analytics::savings::{Confidence, ShortLimits, recommend};
use apogee_analytics::{
    Dimension, Grouping, Nanos, OrgUsageQueries, Period, PriceCatalog, UsageTotals,
};
use chrono::{TimeZone, Utc};

fn golden() -> (MemoryUsage, Arc<PriceCatalog>) {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let parsed = formats::parse(
        Format::Usage,
        include_bytes!("../testdata/golden/costs.ndjson"),
    )
    .unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    assert_eq!(parsed.records.len(), 9);
    (
        MemoryUsage::from_usage(parsed.records, Arc::clone(&catalog)),
        catalog,
    )
}

fn november() -> Period {
    Period::new(
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    )
}

#[tokio::test]
async fn golden_costs() {
    let (usage, _) = golden();
    let cost = |id: &str| {
        usage
            .records()
            .iter()
            .find(|r| r.record.request_id.as_deref() == Some(id))
            .unwrap()
            .cost
    };
    assert_eq!(cost("g-1"), Some(Nanos(4_850_000)), "OpenAI convention");
    assert_eq!(cost("g-2"), Some(Nanos(2_512_500)), "Anthropic convention");
    assert_eq!(cost("g-3"), Some(Nanos(958_506_000)), "long-context tier");
    assert_eq!(cost("g-4"), None, "unpriced, never $0");
    assert_eq!(cost("g-5"), Some(Nanos(270_000)));
    assert_eq!(cost("g-9"), Some(Nanos(2_250_000)));
    assert_eq!(
        usage.totals(&november()).await.unwrap(),
        UsageTotals {
            calls: 9,
            input_tokens: 207_401,
            output_tokens: 2_410,
            cached_input_tokens: 62_000,
            cost: Nanos(969_198_500),
            unpriced_calls: 1,
            unpriced_tokens: 600,
            error_calls: 0,
        }
    );
    let by_model = usage
        .breakdown(&november(), Grouping::By(Dimension::Model))
        .await
        .unwrap();
    let unpriced = by_model.iter().find(|r| r.key == "acme-llama").unwrap();
    assert_eq!((unpriced.cost, unpriced.unpriced_calls), (Nanos::ZERO, 1));
}

#[tokio::test]
async fn golden_recommendations() {
    let (usage, catalog) = golden();
    let recs = recommend(&usage, &catalog, &november(), ShortLimits::default())
        .await
        .unwrap();
    let got: Vec<(&str, Nanos, i64)> = recs
        .iter()
        .map(|r| (r.kind.as_str(), r.monthly_saving, r.affected_calls))
        .collect();
    assert_eq!(
        got,
        [
            ("context_tier", Nanos(445_503_000), 1),
            ("right_size_model", Nanos(2_115_000), 1),
            ("response_cache", Nanos(648_000), 3),
        ]
    );
    assert_eq!(recs[1].title, "Route short gpt-4o calls to gpt-4o-mini");
    assert_eq!(recs[1].confidence, Confidence::Medium);
    assert_eq!(
        recs[1].period_saving, recs[1].monthly_saving,
        "a 30-day period"
    );
}

fn golden_recs() -> (MemoryUsage, Arc<PriceCatalog>) {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let parsed = formats::parse(
        Format::Usage,
        include_bytes!("../testdata/golden/recs.ndjson"),
    )
    .unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    assert_eq!(parsed.records.len(), 46);
    (
        MemoryUsage::from_usage(parsed.records, Arc::clone(&catalog)),
        catalog,
    )
}

/// `recs.ndjson`: prompt caching, an output cap and a context tier (README, second section).
#[tokio::test]
async fn golden_prompt_cache_output_cap_and_context_tier() {
    let (usage, catalog) = golden_recs();
    let recs = recommend(&usage, &catalog, &november(), ShortLimits::default())
        .await
        .unwrap();
    let got: Vec<(&str, Nanos, i64, Confidence)> = recs
        .iter()
        .map(|r| {
            (
                r.kind.as_str(),
                r.monthly_saving,
                r.affected_calls,
                r.confidence,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("context_tier", Nanos(360_000_000), 2, Confidence::Low),
            ("prompt_cache", Nanos(94_200_000), 20, Confidence::Low),
            ("output_cap", Nanos(1_080_000), 1, Confidence::Low),
        ]
    );
    assert_eq!(
        recs[0].title,
        "Trim gemini-1.5-pro prompts just above 128000 tokens below the long-context tier"
    );
    assert_eq!(
        recs[1].title,
        "Cache the stable prompt prefix of support-bot on claude-sonnet-4"
    );
    assert_eq!(
        recs[2].title,
        "Cap drafts's gpt-4o-mini outputs at max_tokens = 200"
    );
}

/// `model_move.ndjson`: week-over-week change attributed to `support-bot` moving to gpt-4o,
/// through the reference queries (README, "Model move through the queries").
#[tokio::test]
async fn golden_model_move() {
    use apogee_analytics::trends::{change, model_move};
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let parsed = formats::parse(
        Format::Usage,
        include_bytes!("../testdata/golden/model_move.ndjson"),
    )
    .unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    let usage = MemoryUsage::from_usage(parsed.records, catalog);
    let week = Period::new(
        Utc.with_ymd_and_hms(2026, 11, 17, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap(),
    );
    let before = week.previous();
    let c = change(
        &usage
            .breakdown(&week, Grouping::By(Dimension::Feature))
            .await
            .unwrap(),
        &usage
            .breakdown(&before, Grouping::By(Dimension::Feature))
            .await
            .unwrap(),
    );
    assert_eq!(
        (c.previous, c.current, c.change),
        (Nanos(4_600_000), Nanos(21_050_000), Nanos(16_450_000))
    );
    assert_eq!(c.contributions[0].key, "support-bot");
    assert_eq!(c.contributions[0].share_of_change, 1.0);
    let m = model_move(
        "support-bot",
        &usage.breakdown_feature_model(&week).await.unwrap(),
        &usage.breakdown_feature_model(&before).await.unwrap(),
    )
    .unwrap();
    assert_eq!(
        (m.from_model.as_str(), m.to_model.as_str()),
        ("gpt-4o-mini", "gpt-4o")
    );
    assert_eq!((m.previous_share, m.current_share), (0.1, 0.8));
    assert_eq!(m.to_model_change, Nanos(17_500_000));
    assert_eq!(
        (m.from_cost_per_call, m.to_cost_per_call),
        (Nanos(150_000), Nanos(2_500_000))
    );
}
