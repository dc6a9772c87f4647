//! Property: the engine's queries over the SQL store — totals, breakdowns, and `aggregate`,
//! `latency`, `model_mix` over random scopes and groupings, and `tags` — equal the in-memory
//! reference over the raw records, for random records (with tags), random periods, duplicate
//! ingests and the delete of synthetic records the demo refresh uses (which must spare a
//! client's records, `demo-` request ids included): whether they read the hourly rollups plus
//! raw edge hours, the tag rollup, or raw rows. On SQLite, and on PostgreSQL when
//! `APOGEE_TEST_DATABASE_URL` is set (`./scripts/test` sets it).

use std::collections::BTreeMap;
use std::sync::Arc;

use apogee_analytics::memory::MemoryUsage;
use apogee_analytics::{
    Dimension, Filter, Grouping, OrgUsageQueries, Period, PriceCatalog, PricedRecord, Scope,
    UsageQuery, UsageRecord,
};
use apogee_store::test_support::stores;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

const MODELS: &[&str] = &["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "no-such-model"];
const PROVIDERS: &[&str] = &["openai", "anthropic", "unknown", "nope"];
const USERS: &[Option<&str>] = &[None, Some("ana"), Some("bo"), Some("(none)")];
const FEATURES: &[Option<&str>] = &[None, Some("chat"), Some("search")];
/// Tag keys a JSON path would misread (dots, quotes, `$`, brackets, backslashes), and values
/// that sort differently by bytes and by locale.
const TAG_KEYS: &[&str] = &[
    "team",
    "env",
    "a.b",
    "q\"k",
    "$x",
    "[0]",
    "back\\slash",
    "équipe",
];
const TAG_VALUES: &[&str] = &["growth", "Growth", "support", "(none)", "é", "z", "a b"];

fn start() -> DateTime<Utc> {
    // A Friday: the data spans the week of Monday 2026-11-16 and the next two.
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

const SPAN_MS: i64 = 10 * 86_400_000;

/// Spread over ten days, at minute resolution plus odd milliseconds, so edges matter.
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
    /// A request id starting `demo-`, as a client may send.
    demo: bool,
    /// Stored by the demo loader (`ingest_synthetic_usage`).
    synthetic: bool,
    /// (key, value) indexes into TAG_KEYS and TAG_VALUES.
    tags: Vec<(usize, usize)>,
    latency: Option<i64>,
    batch: bool,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        0i64..SPAN_MS,
        0..MODELS.len(),
        0..USERS.len(),
        0..FEATURES.len(),
        0i64..5_000,
        0i64..2_000,
        0i64..100,
        any::<bool>(),
        1i64..4,
        prop::option::weighted(0.2, 0u32..1_000_000),
        (any::<bool>(), any::<bool>()),
        (
            prop::collection::vec((0..TAG_KEYS.len(), 0..TAG_VALUES.len()), 0..4),
            prop::option::weighted(0.8, 0i64..50),
            any::<bool>(),
        ),
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
                (demo, synthetic),
                (tags, latency, batch),
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
                    synthetic,
                    tags,
                    // Few distinct latencies, so percentiles hit ties.
                    latency: latency.map(|l| l * 10),
                    batch,
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
    let tags: BTreeMap<String, String> = r
        .tags
        .iter()
        .map(|&(k, v)| (TAG_KEYS[k].to_string(), TAG_VALUES[v].to_string()))
        .collect();
    u.tags = (!tags.is_empty()).then_some(tags);
    u.latency_ms = r.latency;
    u.batch = Some(r.batch);
    if r.model == 1 && r.user == 2 {
        u.provider = Some("nope".into());
    }
    u
}

fn dimension() -> impl Strategy<Value = Dimension> {
    prop_oneof![
        Just(Dimension::Model),
        Just(Dimension::Provider),
        Just(Dimension::User),
        Just(Dimension::Feature),
        (0..TAG_KEYS.len()).prop_map(|k| Dimension::Tag(TAG_KEYS[k].into())),
    ]
}

/// Values a filter on `d` may list: stored ones, `(none)`, and one that matches nothing.
fn values_of(d: &Dimension) -> Vec<String> {
    let mut v: Vec<String> = match d {
        Dimension::Model => MODELS.iter().map(|s| s.to_string()).collect(),
        Dimension::Provider => PROVIDERS.iter().map(|s| s.to_string()).collect(),
        Dimension::User => USERS.iter().flatten().map(|s| s.to_string()).collect(),
        Dimension::Feature => FEATURES.iter().flatten().map(|s| s.to_string()).collect(),
        Dimension::Tag(_) => TAG_VALUES.iter().map(|s| s.to_string()).collect(),
    };
    v.push("(none)".into());
    v.push("no-such-value".into());
    v
}

fn filter() -> impl Strategy<Value = Filter> {
    (
        dimension(),
        prop::collection::vec(0usize..16, 1..4),
        any::<bool>(),
    )
        .prop_map(|(dimension, picks, exclude)| {
            let pool = values_of(&dimension);
            let values = picks.iter().map(|i| pool[i % pool.len()].clone()).collect();
            Filter {
                dimension,
                values,
                exclude,
            }
        })
}

fn grouping() -> impl Strategy<Value = Option<Grouping>> {
    prop_oneof![
        Just(None),
        dimension().prop_map(|d| Some(Grouping::By(d))),
        Just(Some(Grouping::Day)),
        Just(Some(Grouping::Week)),
        Just(Some(Grouping::HourOfDay)),
        Just(Some(Grouping::DayOfWeek)),
    ]
}

/// A scope and grouping, to ask over each period.
fn query_shape() -> impl Strategy<Value = (Scope, Option<Grouping>)> {
    (prop::collection::vec(filter(), 0..4), grouping())
        .prop_map(|(filters, group_by)| (Scope { filters }, group_by))
}

async fn check(
    recs: Vec<Rec>,
    periods: Vec<(i64, i64)>,
    shapes: Vec<(Scope, Option<Grouping>)>,
    delete_synthetic: bool,
) {
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
        let kept: Vec<PricedRecord> = if delete_synthetic {
            let deleted = store.delete_synthetic_usage("acme").await.unwrap();
            assert_eq!(deleted, synthetic.len() as u64);
            priced
                .iter()
                .zip(&recs)
                .filter(|(_, r)| !r.synthetic)
                .map(|(p, _)| p.clone())
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
                Grouping::HourOfDay,
                Grouping::DayOfWeek,
            ] {
                assert_eq!(
                    sql.breakdown(&p, by.clone()).await.unwrap(),
                    mem.breakdown(&p, by.clone()).await.unwrap(),
                    "{by:?} {p:?}"
                );
            }
            assert_eq!(
                sql.tags(&p).await.unwrap(),
                mem.tags(&p).await.unwrap(),
                "{p:?}"
            );
            for (scope, group_by) in &shapes {
                let q = UsageQuery {
                    period: p,
                    scope: scope.clone(),
                    group_by: group_by.clone(),
                };
                let (a, b) = (
                    sql.aggregate(&q).await.unwrap(),
                    mem.aggregate(&q).await.unwrap(),
                );
                assert_eq!(a, b, "{:?} {q:?}", t.backend);
                assert_eq!(
                    sql.latency(&q).await.unwrap(),
                    mem.latency(&q).await.unwrap(),
                    "{:?} {q:?}",
                    t.backend
                );
                assert_eq!(
                    sql.model_mix(&q).await.unwrap(),
                    mem.model_mix(&q).await.unwrap(),
                    "{:?} {q:?}",
                    t.backend
                );
            }
        }
        store.close().await;
    }
}

/// Period bounds: sometimes exactly on an hour, mostly anywhere (and a little outside the data).
fn bound() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-2i64..245).prop_map(|h| h * 3_600_000),
        -3_600_000i64..SPAN_MS + 3_600_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sql_reads_equal_the_reference(
        recs in prop::collection::vec(rec(), 1..120),
        periods in prop::collection::vec((bound(), bound()), 1..4),
        shapes in prop::collection::vec(query_shape(), 1..6),
        delete_synthetic in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(recs, periods, shapes, delete_synthetic));
    }
}
