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
            ("right_size_model", Nanos(1_425_000), 1),
            ("response_cache", Nanos(648_000), 3),
        ]
    );
    assert_eq!(recs[1].title, "Route short gpt-4o calls to gpt-5.4-mini");
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

fn priced(format: Format, bytes: &[u8]) -> (MemoryUsage, Vec<formats::Rejection>) {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let parsed = formats::parse(format, bytes).unwrap();
    (
        MemoryUsage::from_usage(parsed.records, catalog),
        parsed.rejected,
    )
}

fn cost_of(usage: &MemoryUsage, id: &str) -> (Option<Nanos>, Option<String>) {
    let r = usage
        .records()
        .iter()
        .find(|r| r.record.request_id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no record {id}"));
    (r.cost, r.price_source.clone())
}

/// `billing.ndjson`: what decides a price beyond the tokens (README, "Billing").
#[tokio::test]
async fn golden_billing() {
    let (usage, rejected) = priced(
        Format::Usage,
        include_bytes!("../testdata/golden/billing.ndjson"),
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    let want = [
        ("b-1", 17_500_000, "openai/gpt-4o-2024-05-13@2024-05-13"),
        ("b-2", 40_500_000, "openai/gpt-5@2025-08-07#priority"),
        ("b-3", 3_250_000, "openai/gpt-5-mini@2025-08-07#flex"),
        ("b-4", 10_900_000, "google/gemini-2.5-flash@2025-06-17"),
        ("b-5", 21_000_000, "vertex_ai/gemini-2.0-flash@2025-02-05"),
        ("b-6", 35_550_000, "anthropic/claude-sonnet-4-5@2025-09-29"),
        (
            "b-7",
            49_500_000,
            "anthropic/claude-sonnet-4-5@2025-09-29+regional",
        ),
    ];
    for (id, nanos, source) in want {
        assert_eq!(
            cost_of(&usage, id),
            (Some(Nanos(nanos)), Some(source.to_string())),
            "{id}"
        );
    }
    // Scale Tier has no per-token list price: unpriced, never $0 or standard.
    assert_eq!(cost_of(&usage, "b-8"), (None, None));
    let b1 = &usage.records()[0].record;
    assert_eq!(
        b1.status.as_deref(),
        Some("ok"),
        "`success` is stored as ok"
    );
    assert_eq!(usage.records()[5].record.cache_write_1h_tokens(), 4_000);
    assert_eq!(
        usage.totals(&november()).await.unwrap(),
        UsageTotals {
            calls: 8,
            input_tokens: 238_100,
            output_tokens: 16_100,
            cached_input_tokens: 82_000,
            cost: Nanos(178_200_000),
            unpriced_calls: 1,
            unpriced_tokens: 1_100,
            error_calls: 0,
        }
    );
    // Shown by model, Claude Sonnet 4.5 is one row whichever name and provider sent it.
    let catalog = PriceCatalog::builtin().unwrap();
    let by_model = apogee_analytics::model_rows::merge_model_rows(
        &usage
            .breakdown(&november(), Grouping::By(Dimension::Model))
            .await
            .unwrap(),
        &catalog,
    );
    let sonnet = by_model
        .iter()
        .find(|m| m.row.key == "claude-sonnet-4-5")
        .unwrap();
    assert_eq!((sonnet.row.calls, sonnet.row.cost), (2, Nanos(85_050_000)));
    assert_eq!(sonnet.names.len(), 2);
}

/// `openai_export.json`: an OpenAI usage export, whose records sum a day from 00:00 UTC
/// (README, "OpenAI usage export").
#[tokio::test]
async fn golden_openai_export() {
    let (usage, rejected) = priced(
        Format::OpenaiUsage,
        include_bytes!("../testdata/golden/openai_export.json"),
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    let costs: Vec<(i64, Option<Nanos>)> = usage
        .records()
        .iter()
        .map(|r| (r.record.request_count(), r.cost))
        .collect();
    assert_eq!(
        costs,
        [
            (100, Some(Nanos(225_000_000))),
            (500, Some(Nanos(105_000_000))),
            (10, Some(Nanos(405_000_000))),
            (50, Some(Nanos(101_000_000))),
        ]
    );
    let t = usage.totals(&november()).await.unwrap();
    assert_eq!((t.calls, t.cost), (660, Nanos(836_000_000)));
    let catalog = PriceCatalog::builtin().unwrap();
    let recs = recommend(&usage, &catalog, &november(), ShortLimits::default())
        .await
        .unwrap();
    let got: Vec<(&str, &str, Nanos, i64)> = recs
        .iter()
        .map(|r| {
            (
                r.kind.as_str(),
                r.title.as_str(),
                r.monthly_saving,
                r.affected_calls,
            )
        })
        .collect();
    // No Batch API saving: a day's bucket starting at 00:00 is not night-time traffic. The
    // gpt-4o bucket's 100 calls average 500 input and 100 output tokens: short.
    assert_eq!(
        got,
        [(
            "right_size_model",
            "Route short gpt-4o calls to gpt-5.4-mini",
            Nanos(142_500_000),
            100
        )]
    );
}

/// `litellm_spend_logs.json`: LiteLLM's own spend-log shapes (README, "LiteLLM").
#[tokio::test]
async fn golden_litellm() {
    let (usage, rejected) = priced(
        Format::Litellm,
        include_bytes!("../testdata/golden/litellm_spend_logs.json"),
    );
    let rejected: Vec<(usize, &str)> = rejected
        .iter()
        .map(|r| (r.index, r.error.as_str()))
        .collect();
    assert_eq!(rejected, [(3, "`spend` must not be negative")]);
    let hit = &usage.records()[0];
    assert_eq!(
        (hit.cost, hit.price_source.as_deref()),
        (Some(Nanos::ZERO), Some("client")),
        "a cache hit made no provider call"
    );
    assert_eq!(hit.record.feature.as_deref(), Some("faq-bot"));
    assert_eq!(
        cost_of(&usage, "chatcmpl-flex-1"),
        (
            Some(Nanos(3_250_000)),
            Some("openai/gpt-5-mini@2025-08-07#flex".to_string())
        )
    );
    assert_eq!(
        cost_of(&usage, "msg_01TTL"),
        (
            Some(Nanos(35_550_000)),
            Some("anthropic/claude-sonnet-4-5@2025-09-29".to_string())
        )
    );
}
