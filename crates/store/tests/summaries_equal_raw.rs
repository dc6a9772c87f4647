//! Property: the recommenders' inputs read from the recommender summaries (`Store::org_usage`)
//! equal the raw-row reference (`Store::org_usage_raw_rows`) — right-sizing profiles, Batch
//! API candidates, context-tier bands, the model mix prompt caching reads, spend by feature ×
//! model, output tails, repeated prompts — for random records (aggregates, time buckets, client costs, unpriced models, long prompts, batch
//! calls), random periods, duplicate ingests and deletes. On SQLite, and on PostgreSQL when
//! `APOGEE_TEST_DATABASE_URL` is set (`./scripts/test` sets it).

use std::sync::Arc;

use apogee_analytics::savings::{ShortLimits, tier_band};
use apogee_analytics::{
    Dimension, Grouping, OrgUsageQueries, Period, PriceCatalog, PricedRecord, Scope, UsageQuery,
    UsageRecord,
};
use apogee_store::test_support::stores;
use apogee_store::{Store, UsageSelection};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

/// Models with context tiers in the built-in catalog (128k, 200k, 272k), plain ones, and one
/// the catalog does not price.
const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4",
    "gemini-1.5-pro",
    "gpt-5.4",
    "no-such-model",
];
const FEATURES: &[Option<&str>] = &[None, Some("chat"), Some("search"), Some("(none)")];

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

const SPAN_MS: i64 = 3 * 86_400_000;

#[derive(Debug, Clone)]
struct Rec {
    offset_ms: i64,
    model: usize,
    feature: usize,
    input: i64,
    output: i64,
    cached: i64,
    count: i64,
    bucketed: bool,
    client_cost: Option<u32>,
    batch: bool,
    /// Stored by the demo loader, deleted by some cases.
    synthetic: bool,
    /// An index into PROMPTS, or a prompt of its own.
    prompt: Option<usize>,
}

/// A few prompts sent again and again (with no prompt hash, or one of its own, otherwise).
const PROMPTS: &[Option<&str>] = &[None, Some("faq-1"), Some("faq-2"), Some("faq-3")];

fn rec() -> impl Strategy<Value = Rec> {
    (
        0i64..SPAN_MS,
        (0..MODELS.len(), 0..FEATURES.len()),
        prop_oneof![
            4 => 0i64..2_000,
            1 => 95_000i64..340_000,
            // On and around the summaries' steps.
            1 => (1_000i64..3_400).prop_map(|h| h * 100),
        ],
        prop_oneof![3 => 0i64..400, 1 => 0i64..5_000],
        0i64..200,
        prop_oneof![4 => Just(1i64), 1 => 2i64..4],
        prop::bool::weighted(0.15),
        prop::option::weighted(0.15, 0u32..1_000_000),
        any::<bool>(),
        (
            prop::bool::weighted(0.3),
            prop::option::weighted(0.7, 0..PROMPTS.len()),
        ),
    )
        .prop_map(
            |(
                offset_ms,
                (model, feature),
                input,
                output,
                cached,
                count,
                bucketed,
                client_cost,
                batch,
                (synthetic, prompt),
            )| Rec {
                offset_ms,
                model,
                feature,
                input,
                output,
                cached: cached.min(input),
                count,
                bucketed,
                client_cost,
                batch,
                synthetic,
                prompt,
            },
        )
}

fn usage(i: usize, r: &Rec) -> UsageRecord {
    // Distinct milliseconds (the record's index is its millisecond of the second), so the
    // order of one prompt's calls does not hang on insertion order.
    let ms = r.offset_ms - r.offset_ms % 1_000 + i as i64;
    let mut u = UsageRecord::new(
        start() + Duration::milliseconds(ms),
        MODELS[r.model].into(),
        r.input,
        r.output,
    );
    u.request_id = Some(format!("r-{i}"));
    u.feature = FEATURES[r.feature].map(String::from);
    u.cached_input_tokens = Some(r.cached);
    u.request_count = Some(r.count);
    u.bucket_seconds = r.bucketed.then_some(3_600);
    u.cost_usd = r.client_cost.map(|c| f64::from(c) / 1e6);
    u.batch = Some(r.batch);
    u.prompt_hash = match r.prompt {
        Some(p) => PROMPTS[p].map(String::from),
        None => Some(format!("own-{i}")),
    };
    u
}

/// Context-tier bands: the catalog's (on the summaries' steps) and others (read raw).
const BANDS: &[(i64, i64)] = &[
    (128_000, 153_600),
    (200_000, 240_000),
    (272_000, 326_400),
    (100_000, 1_000_000),
    (150_050, 200_000),
    (1_000, 3_000),
    (0, 1_000_000),
];

async fn assert_agree(store: &Store, p: &Period, what: &str) {
    let (sum, raw) = (store.org_usage("acme"), store.org_usage_raw_rows("acme"));
    let limits = ShortLimits::default();
    for model in MODELS {
        for (max_in, max_out) in [
            (limits.max_input_tokens, limits.max_output_tokens),
            (500, 100),
        ] {
            assert_eq!(
                sum.traffic_profile(p, model, max_in, max_out)
                    .await
                    .unwrap(),
                raw.traffic_profile(p, model, max_in, max_out)
                    .await
                    .unwrap(),
                "{what} traffic_profile {model} {max_in}/{max_out} {p:?}"
            );
        }
        for &(above, up_to) in BANDS {
            assert_eq!(
                sum.input_band(p, model, above, up_to).await.unwrap(),
                raw.input_band(p, model, above, up_to).await.unwrap(),
                "{what} input_band {model} ({above}, {up_to}] {p:?}"
            );
        }
    }
    assert_eq!(
        sum.repeated_prompts(p).await.unwrap(),
        raw.repeated_prompts(p).await.unwrap(),
        "{what} repeated_prompts {p:?}"
    );
    assert_eq!(
        sum.batch_candidates(p).await.unwrap(),
        raw.batch_candidates(p).await.unwrap(),
        "{what} batch_candidates {p:?}"
    );
    assert_eq!(
        sum.breakdown_feature_model(p).await.unwrap(),
        raw.breakdown_feature_model(p).await.unwrap(),
        "{what} breakdown_feature_model {p:?}"
    );
    for group_by in [
        None,
        Some(Grouping::By(Dimension::Feature)),
        Some(Grouping::By(Dimension::Model)),
        Some(Grouping::By(Dimension::User)),
    ] {
        let q = UsageQuery {
            period: *p,
            scope: Scope::all(),
            group_by,
        };
        assert_eq!(
            sum.model_mix(&q).await.unwrap(),
            raw.model_mix(&q).await.unwrap(),
            "{what} model_mix {q:?}"
        );
    }
    for percentile in [50, 95, 100] {
        assert_eq!(
            sum.output_tails(p, percentile).await.unwrap(),
            raw.output_tails(p, percentile).await.unwrap(),
            "{what} output_tails p{percentile} {p:?}"
        );
    }
}

async fn check(recs: Vec<Rec>, periods: Vec<(i64, i64)>, delete: u8) {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let priced: Vec<PricedRecord> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| PricedRecord::price(usage(i, r), &catalog))
        .collect();
    let row = |i: usize| (priced[i].clone(), priced[i].provider(&catalog));
    let (synthetic, client): (Vec<usize>, Vec<usize>) =
        (0..recs.len()).partition(|&i| recs[i].synthetic);
    let synthetic: Vec<(PricedRecord, String)> = synthetic.into_iter().map(row).collect();
    let client: Vec<(PricedRecord, String)> = client.into_iter().map(row).collect();
    for t in stores().await {
        let store = t.store.clone();
        // Ingest in two overlapping halves: the overlap is duplicates and must add nothing.
        for (rows, as_synthetic) in [(&client, false), (&synthetic, true)] {
            let half = rows.len() / 2;
            for part in [&rows[..half + 1.min(rows.len() - half)], &rows[half..]] {
                if as_synthetic {
                    store.ingest_synthetic_usage("acme", part).await.unwrap();
                } else {
                    store.ingest_usage("acme", part).await.unwrap();
                }
            }
            store.ingest_synthetic_usage("other", rows).await.unwrap();
        }
        // Deletes: none, the demo refresh's synthetic records, or a time range.
        let (from_ms, to_ms) = (
            start().timestamp_millis() + SPAN_MS / 3,
            start().timestamp_millis() + SPAN_MS / 2,
        );
        match delete {
            1 => {
                let deleted = store.delete_synthetic_usage("acme").await.unwrap();
                assert_eq!(deleted, synthetic.len() as u64);
            }
            2 => {
                store
                    .delete_usage("acme", &UsageSelection::Between { from_ms, to_ms })
                    .await
                    .unwrap();
            }
            _ => {}
        }
        // The whole span as well: whole UTC days read from the daily summaries, every time.
        let whole = (-3_600_000, SPAN_MS + 3_600_000);
        for &(a, b) in periods.iter().chain([&whole]) {
            let (from, to) = (a.min(b), a.max(b));
            let p = Period::new(
                start() + Duration::milliseconds(from),
                start() + Duration::milliseconds(to),
            );
            assert_agree(&store, &p, &format!("{:?}", t.backend)).await;
        }
        store.close().await;
    }
}

/// Period bounds: sometimes exactly on a day or an hour, else anywhere (and a little outside the data).
fn bound() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-1i64..5).prop_map(|d| d * 86_400_000),
        (-2i64..74).prop_map(|h| h * 3_600_000),
        -3_600_000i64..SPAN_MS + 3_600_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn summaries_equal_the_raw_row_reference(
        recs in prop::collection::vec(rec(), 1..150),
        periods in prop::collection::vec((bound(), bound()), 1..3),
        delete in 0u8..3,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(recs, periods, delete));
    }
}

#[tokio::test]
async fn the_catalogs_tier_bands_are_read_from_the_summaries() {
    // Every band the context-tier recommender asks for is on the summaries' steps, so none
    // falls back to raw rows (the property above checks both paths agree).
    let catalog = PriceCatalog::builtin().unwrap();
    let mut bands = 0;
    for entry in catalog.entries() {
        for tier in &entry.tiers {
            let (above, up_to) = tier_band(tier.above_input_tokens);
            let model = &entry.model;
            assert!(
                above >= 100_000 && above % 100 == 0 && up_to % 100 == 0,
                "{model}"
            );
            bands += 1;
        }
    }
    assert!(bands > 0);
}
