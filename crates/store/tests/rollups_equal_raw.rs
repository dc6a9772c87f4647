//! Property: totals and breakdowns read from the hourly rollups (plus raw edge hours) equal the
//! reference sums over raw records, for random records, random periods, duplicate ingests and
//! the prefix delete the demo refresh uses.

use std::sync::Arc;

use apogee_analytics::memory::MemoryUsage;
use apogee_analytics::{
    Dimension, Grouping, OrgUsageQueries, Period, PriceCatalog, PricedRecord, UsageRecord,
};
use apogee_store::test_support::stores;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

const MODELS: &[&str] = &["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "no-such-model"];
const USERS: &[Option<&str>] = &[None, Some("ana"), Some("bo"), Some("(none)")];
const FEATURES: &[Option<&str>] = &[None, Some("chat"), Some("search")];

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

/// Spread over three days, at minute resolution plus odd milliseconds, so edges matter.
#[derive(Debug, Clone)]
struct Rec {
    offset_ms: i64,
    model: usize,
    user: usize,
    feature: usize,
    input: i64,
    output: i64,
    cached: i64,
    error: bool,
    count: i64,
    client_cost: Option<u32>,
    demo: bool,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        0i64..3 * 86_400_000,
        0..MODELS.len(),
        0..USERS.len(),
        0..FEATURES.len(),
        0i64..5_000,
        0i64..2_000,
        0i64..100,
        any::<bool>(),
        1i64..4,
        prop::option::weighted(0.2, 0u32..1_000_000),
        any::<bool>(),
    )
        .prop_map(
            |(
                offset_ms,
                model,
                user,
                feature,
                input,
                output,
                cached,
                error,
                count,
                client_cost,
                demo,
            )| {
                Rec {
                    offset_ms,
                    model,
                    user,
                    feature,
                    input,
                    output,
                    cached: cached.min(input),
                    error,
                    count,
                    client_cost,
                    demo,
                }
            },
        )
}

fn usage(i: usize, r: &Rec) -> UsageRecord {
    let mut u = UsageRecord::new(
        start() + Duration::milliseconds(r.offset_ms),
        MODELS[r.model].into(),
        r.input,
        r.output,
    );
    u.request_id = Some(format!("{}{i}", if r.demo { "demo-" } else { "real-" }));
    u.user = USERS[r.user].map(String::from);
    u.feature = FEATURES[r.feature].map(String::from);
    u.cached_input_tokens = Some(r.cached);
    u.status = Some(if r.error { "error" } else { "ok" }.into());
    u.request_count = Some(r.count);
    u.cost_usd = r.client_cost.map(|c| f64::from(c) / 1e6);
    u
}

async fn check(recs: Vec<Rec>, periods: Vec<(i64, i64)>, delete_demo: bool) {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let priced: Vec<PricedRecord> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| PricedRecord::price(usage(i, r), &catalog))
        .collect();
    let rows: Vec<(PricedRecord, String)> = priced
        .iter()
        .map(|p| (p.clone(), p.provider(&catalog)))
        .collect();
    for t in stores().await {
        let store = t.store.clone();
        // Ingest in two overlapping halves: the overlap is duplicates and must add nothing.
        let half = rows.len() / 2;
        store
            .ingest_usage("acme", &rows[..half + 1.min(rows.len() - half)])
            .await
            .unwrap();
        store.ingest_usage("acme", &rows[half..]).await.unwrap();
        store.ingest_usage("other", &rows).await.unwrap();
        let kept: Vec<PricedRecord> = if delete_demo {
            store
                .delete_usage_with_prefix("acme", "demo-")
                .await
                .unwrap();
            priced
                .iter()
                .filter(|p| {
                    !p.record
                        .request_id
                        .as_deref()
                        .unwrap_or("")
                        .starts_with("demo-")
                })
                .cloned()
                .collect()
        } else {
            priced.clone()
        };
        let sql = store.org_usage("acme");
        let mem = MemoryUsage::new(kept, Arc::clone(&catalog));
        for &(a, b) in &periods {
            let (from, to) = (a.min(b), a.max(b));
            let p = Period::new(
                start() + Duration::milliseconds(from),
                start() + Duration::milliseconds(to),
            );
            assert_eq!(
                sql.totals(&p).await.unwrap(),
                mem.totals(&p).await.unwrap(),
                "{p:?}"
            );
            for by in [
                Grouping::By(Dimension::Model),
                Grouping::By(Dimension::Provider),
                Grouping::By(Dimension::User),
                Grouping::By(Dimension::Feature),
                Grouping::Day,
            ] {
                assert_eq!(
                    sql.breakdown(&p, by.clone()).await.unwrap(),
                    mem.breakdown(&p, by.clone()).await.unwrap(),
                    "{by:?} {p:?}"
                );
            }
        }
        store.close().await;
    }
}

/// Period bounds: sometimes exactly on an hour, mostly anywhere (and a little outside the data).
fn bound() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-2i64..75).prop_map(|h| h * 3_600_000),
        -3_600_000i64..3 * 86_400_000 + 3_600_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rollup_reads_equal_raw_sums(
        recs in prop::collection::vec(rec(), 1..120),
        periods in prop::collection::vec((bound(), bound()), 1..5),
        delete_demo in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(recs, periods, delete_demo));
    }
}
