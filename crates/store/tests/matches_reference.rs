//! The SQL queries give exactly what the in-memory reference implementation gives, over the
//! synthetic demo dataset and over hand-made edge cases; and one org never sees another's.

use std::sync::Arc;

use apogee_analytics::demo::{DemoSpec, generate};
use apogee_analytics::memory::MemoryUsage;
use apogee_analytics::savings::{ShortLimits, recommend};
use apogee_analytics::{
    Dimension, Filter, Grouping, OrgUsageQueries, Period, PriceCatalog, PricedRecord, QueryError,
    Scope, UsageQuery, UsageRecord,
};
use apogee_store::test_support::{TestStore, stores};
use apogee_store::{Backend, Store};
use chrono::{TimeZone, Utc};

async fn store_with(
    t: &TestStore,
    org: &str,
    records: &[PricedRecord],
    catalog: &PriceCatalog,
) -> Store {
    let store = t.store.clone();
    let rows: Vec<(PricedRecord, String)> = records
        .iter()
        .map(|p| (p.clone(), p.provider(catalog)))
        .collect();
    let s = store.ingest_usage(org, &rows).await.unwrap();
    assert_eq!(s.accepted as usize, records.len());
    store
}

#[tokio::test]
async fn sql_queries_equal_the_reference_on_demo_data() {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let end = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
    let spec = DemoSpec {
        days: 30,
        calls: 20_000,
        seed: 3,
        end,
    };
    let records: Vec<PricedRecord> = generate(&spec)
        .map(|r| PricedRecord::price(r, &catalog))
        .collect();
    for t in stores().await {
        let store = store_with(&t, "acme", &records, &catalog).await;
        let sql = store.org_usage("acme");
        let mem = MemoryUsage::new(records.clone(), Arc::clone(&catalog));

        let periods = [
            Period::new(end - chrono::Duration::days(30), end),
            Period::new(end - chrono::Duration::days(7), end),
            Period::new(
                end - chrono::Duration::hours(36),
                end - chrono::Duration::hours(11),
            ),
            // Not hour-aligned: whole hours come from the rollups, the edges from raw rows.
            Period::new(
                end - chrono::Duration::days(9) + chrono::Duration::seconds(1_037),
                end - chrono::Duration::days(2) - chrono::Duration::milliseconds(2_581_003),
            ),
            // Within one hour.
            Period::new(
                end - chrono::Duration::minutes(50),
                end - chrono::Duration::minutes(5),
            ),
        ];
        // The demo data has latencies and errors, so the latency comparison compares something.
        assert!(
            mem.latency_by_model(&periods[0])
                .await
                .unwrap()
                .iter()
                .any(|r| r.stats.latency_samples > 0
                    && r.stats.error_calls > 0
                    && r.stats.p99_ms > r.stats.p50_ms)
        );
        for p in &periods {
            assert_eq!(sql.totals(p).await.unwrap(), mem.totals(p).await.unwrap());
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
                    sql.breakdown(p, by.clone()).await.unwrap(),
                    mem.breakdown(p, by.clone()).await.unwrap(),
                    "{by:?}"
                );
            }
            for model in ["gpt-4o", "claude-sonnet-4", "gemini-2.0-flash", "nope"] {
                assert_eq!(
                    sql.traffic_profile(p, model, 1000, 300).await.unwrap(),
                    mem.traffic_profile(p, model, 1000, 300).await.unwrap(),
                    "{model}"
                );
            }
            assert_eq!(
                sql.repeated_prompts(p).await.unwrap(),
                mem.repeated_prompts(p).await.unwrap()
            );
            assert_eq!(
                sql.latency_by_model(p).await.unwrap(),
                mem.latency_by_model(p).await.unwrap()
            );
            assert_eq!(
                sql.batch_candidates(p).await.unwrap(),
                mem.batch_candidates(p).await.unwrap()
            );
            assert_newer_queries_agree(&sql, &mem, p).await;
            assert_scoped_queries_agree(&sql, &mem, p).await;
        }
    }
}

/// Questions as the planner asks them of the demo data: a team (tag), a feature, several
/// users, an excluded environment, grouped every way.
async fn assert_scoped_queries_agree(sql: &dyn OrgUsageQueries, mem: &MemoryUsage, p: &Period) {
    let team = |v: &str| Filter::is(Dimension::Tag("team".into()), v);
    let scopes = [
        Scope::all(),
        Scope::all().and(team("growth")),
        Scope::all().and(Filter::is(Dimension::Feature, "support-bot")),
        Scope::all()
            .and(Filter {
                dimension: Dimension::User,
                values: vec![
                    "demo-user-01".into(),
                    "demo-user-07".into(),
                    "(none)".into(),
                ],
                exclude: false,
            })
            .and(Filter {
                dimension: Dimension::Tag("env".into()),
                values: vec!["prod".into()],
                exclude: true,
            }),
        Scope::all()
            .and(team("knowledge"))
            .and(Filter::is(Dimension::Model, "claude-sonnet-4")),
    ];
    let groupings = [
        None,
        Some(Grouping::By(Dimension::Model)),
        Some(Grouping::By(Dimension::Tag("team".into()))),
        Some(Grouping::By(Dimension::User)),
        Some(Grouping::Day),
        Some(Grouping::Week),
        Some(Grouping::HourOfDay),
        Some(Grouping::DayOfWeek),
    ];
    assert_eq!(sql.tags(p).await.unwrap(), mem.tags(p).await.unwrap());
    for scope in &scopes {
        for group_by in &groupings {
            let q = UsageQuery {
                period: *p,
                scope: scope.clone(),
                group_by: group_by.clone(),
            };
            assert_eq!(
                sql.aggregate(&q)
                    .await
                    .unwrap_or_else(|e| panic!("{e} {q:?}")),
                mem.aggregate(&q).await.unwrap(),
                "{q:?}"
            );
            assert_eq!(
                sql.latency(&q).await.unwrap(),
                mem.latency(&q).await.unwrap(),
                "{q:?}"
            );
            assert_eq!(
                sql.model_mix(&q).await.unwrap(),
                mem.model_mix(&q).await.unwrap(),
                "{q:?}"
            );
        }
    }
}

/// The queries of `org_usage/more.rs` against the reference, with each model's tier bands and
/// bands that hold nothing.
async fn assert_newer_queries_agree(sql: &dyn OrgUsageQueries, mem: &MemoryUsage, p: &Period) {
    let by_feature = UsageQuery {
        period: *p,
        scope: Scope::all(),
        group_by: Some(Grouping::By(Dimension::Feature)),
    };
    assert_eq!(
        sql.breakdown_feature_model(p).await.unwrap(),
        mem.breakdown_feature_model(p).await.unwrap()
    );
    assert_eq!(
        sql.model_mix(&by_feature).await.unwrap(),
        mem.model_mix(&by_feature).await.unwrap()
    );
    for percentile in [50, 95, 100] {
        assert_eq!(
            sql.output_tails(p, percentile).await.unwrap(),
            mem.output_tails(p, percentile).await.unwrap(),
            "p{percentile}"
        );
    }
    for (model, above, up_to) in [
        ("gemini-1.5-pro", 128_000, 153_600),
        ("claude-sonnet-4", 200_000, 240_000),
        ("gpt-4o", 1_000, 3_000),
        ("gpt-4o-mini", 0, 1_000_000),
        ("nope", 0, 1_000_000),
    ] {
        assert_eq!(
            sql.input_band(p, model, above, up_to).await.unwrap(),
            mem.input_band(p, model, above, up_to).await.unwrap(),
            "{model}"
        );
    }
}

#[tokio::test]
async fn sql_queries_equal_the_reference_on_the_golden_datasets() {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let november = Period::new(
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    );
    use apogee_analytics::formats::Format;
    let files: [(Format, &[u8]); 6] = [
        (
            Format::Usage,
            include_bytes!("../../analytics/testdata/golden/recs.ndjson"),
        ),
        (
            Format::Usage,
            include_bytes!("../../analytics/testdata/golden/costs.ndjson"),
        ),
        (
            Format::Usage,
            include_bytes!("../../analytics/testdata/golden/model_move.ndjson"),
        ),
        (
            Format::Usage,
            include_bytes!("../../analytics/testdata/golden/billing.ndjson"),
        ),
        // Aggregates at 00:00: never night-time traffic, in SQL as in the reference.
        (
            Format::OpenaiUsage,
            include_bytes!("../../analytics/testdata/golden/openai_export.json"),
        ),
        (
            Format::Litellm,
            include_bytes!("../../analytics/testdata/golden/litellm_spend_logs.json"),
        ),
    ];
    for (format, file) in files {
        let parsed = apogee_analytics::formats::parse(format, file).unwrap();
        let records: Vec<PricedRecord> = parsed
            .records
            .into_iter()
            .map(|r| PricedRecord::price(r, &catalog))
            .collect();
        for t in stores().await {
            let store = store_with(&t, "acme", &records, &catalog).await;
            let sql = store.org_usage("acme");
            let mem = MemoryUsage::new(records.clone(), Arc::clone(&catalog));
            assert_newer_queries_agree(&sql, &mem, &november).await;
            // And so every recommendation, the golden figures included.
            assert_eq!(
                recommend(&sql, &catalog, &november, ShortLimits::default())
                    .await
                    .unwrap(),
                recommend(&mem, &catalog, &november, ShortLimits::default())
                    .await
                    .unwrap(),
                "{:?}",
                t.backend
            );
        }
    }
}

#[tokio::test]
async fn another_orgs_usage_is_never_counted() {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let end = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
    let spec = DemoSpec {
        days: 10,
        calls: 1_000,
        seed: 1,
        end,
    };
    let records: Vec<PricedRecord> = generate(&spec)
        .map(|r| PricedRecord::price(r, &catalog))
        .collect();
    for t in stores().await {
        let store = store_with(&t, "org-a", &records, &catalog).await;
        let p = Period::new(end - chrono::Duration::days(10), end);
        assert_eq!(
            store.org_usage("org-a").totals(&p).await.unwrap().calls,
            1_000
        );
        let b = store.org_usage("org-b");
        assert_eq!(b.totals(&p).await.unwrap().calls, 0);
        assert!(
            b.breakdown(&p, Grouping::By(Dimension::Model))
                .await
                .unwrap()
                .is_empty()
        );
        // Same request ids in another org are not duplicates.
        let rows: Vec<(PricedRecord, String)> = records
            .iter()
            .map(|r| (r.clone(), r.provider(&catalog)))
            .collect();
        assert_eq!(
            store.ingest_usage("org-b", &rows).await.unwrap().accepted,
            1_000
        );
        assert_eq!(
            store.ingest_usage("org-b", &rows).await.unwrap().duplicates,
            1_000
        );
    }
}

#[tokio::test]
async fn v2_columns_are_stored_and_aggregates_count_their_calls() {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let batch = apogee_analytics::formats::parse(
        apogee_analytics::formats::Format::Usage,
        concat!(
            r#"{"request_id":"a","ts":"2026-11-20T08:00:00Z","model":"claude-sonnet-4","input_tokens":40,"output_tokens":220,"cache_read_input_tokens":900,"cache_creation_input_tokens":60,"token_convention":"anthropic","reasoning_tokens":120,"stream":true,"finish_reason":"end_turn","max_tokens":1024,"tags":{"team":"search"}}"#,
            "\n",
            r#"{"request_id":"b","ts":"2026-11-20T09:00:00Z","model":"gpt-4o","input_tokens":5000,"output_tokens":700,"request_count":5}"#,
            "\n",
            r#"{"request_id":"c","ts":"2026-11-20T09:00:00Z","model":"acme-7b","input_tokens":50,"output_tokens":7,"request_count":3,"status":"error"}"#,
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
    let records: Vec<PricedRecord> = batch
        .records
        .into_iter()
        .map(|r| PricedRecord::price(r, &catalog))
        .collect();
    for t in stores().await {
        let store = store_with(&t, "acme", &records, &catalog).await;
        let period = Period::new(
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
        );
        let sql = store.org_usage("acme").totals(&period).await.unwrap();
        let mem = MemoryUsage::new(records.clone(), Arc::clone(&catalog))
            .totals(&period)
            .await
            .unwrap();
        assert_eq!(sql, mem);
        assert_eq!((sql.calls, sql.unpriced_calls, sql.error_calls), (9, 3, 3));
        store.close().await;

        let stored =
            "SELECT input_tokens, cached_input_tokens, cache_creation_input_tokens, stream,
                    finish_reason, max_tokens, tags, request_count
             FROM usage_records WHERE request_id = 'a'";
        let row: (i64, i64, i64, bool, String, i64, String, i64) = match t.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&t.url).await.unwrap();
                sqlx::query_as(stored).fetch_one(&pool).await.unwrap()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&t.url).await.unwrap();
                sqlx::query_as(stored).fetch_one(&pool).await.unwrap()
            }
        };
        assert_eq!(
            row,
            (
                1000,
                900,
                60,
                true,
                "end_turn".into(),
                1024,
                r#"{"team":"search"}"#.into(),
                1
            )
        );
    }
}

#[tokio::test]
async fn billing_fields_are_stored() {
    use apogee_analytics::formats::{Format, parse};
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let mut records: Vec<PricedRecord> = Vec::new();
    for (format, bytes) in [
        (
            Format::Usage,
            &include_bytes!("../../analytics/testdata/golden/billing.ndjson")[..],
        ),
        (
            Format::OpenaiUsage,
            &include_bytes!("../../analytics/testdata/golden/openai_export.json")[..],
        ),
    ] {
        records.extend(
            parse(format, bytes)
                .unwrap()
                .records
                .into_iter()
                .map(|r| PricedRecord::price(r, &catalog)),
        );
    }
    for t in stores().await {
        let store = store_with(&t, "acme", &records, &catalog).await;
        store.close().await;
        let sql = "SELECT request_id, service_tier, cache_creation_1h_input_tokens, bucket_seconds,
                          status, price_source
                   FROM usage_records
                   WHERE request_id IN ('b-1', 'b-2', 'b-6') OR request_count = 10
                   ORDER BY request_id";
        type Row = (
            String,
            Option<String>,
            i64,
            Option<i64>,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = match t.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&t.url).await.unwrap();
                sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&t.url).await.unwrap();
                sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
            }
        };
        type Shown<'a> = (Option<&'a str>, i64, Option<i64>, &'a str, Option<&'a str>);
        let got: Vec<Shown<'_>> = rows
            .iter()
            .map(|r| (r.1.as_deref(), r.2, r.3, r.4.as_str(), r.5.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    None,
                    0,
                    None,
                    "ok",
                    Some("openai/gpt-4o-2024-05-13@2024-05-13")
                ),
                (
                    Some("priority"),
                    0,
                    None,
                    "ok",
                    Some("openai/gpt-5@2025-08-07#priority")
                ),
                (
                    None,
                    4_000,
                    None,
                    "ok",
                    Some("anthropic/claude-sonnet-4-5@2025-09-29")
                ),
                // The export's gpt-5 result (id `openai-usage-…`, sorted last).
                (
                    Some("priority"),
                    0,
                    Some(86_400),
                    "ok",
                    Some("openai/gpt-5@2025-08-07#priority")
                ),
            ],
            "{:?}",
            t.backend
        );
    }
}

/// A grouping with more groups than an answer lists (a tag or user per call): the SQL keeps
/// the same first `MAX_GROUPS` the reference keeps, says so, and its totals still count all;
/// a model mix that large is refused.
#[tokio::test]
async fn groups_beyond_the_bound_are_cut_as_the_reference_cuts_them() {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let at = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
    let records: Vec<PricedRecord> = (0..apogee_analytics::MAX_GROUPS as i64 + 3)
        .map(|i| {
            let mut r = UsageRecord::new(
                at + chrono::Duration::milliseconds(i),
                "gpt-4o-mini".into(),
                1000 + i % 7,
                0,
            );
            r.request_id = Some(format!("r{i}"));
            r.user = Some(format!("u{i}"));
            r.tags = Some([("request".to_string(), format!("q{i}"))].into());
            PricedRecord::price(r, &catalog)
        })
        .collect();
    let period = Period::new(
        at - chrono::Duration::hours(1),
        at + chrono::Duration::hours(2),
    );
    for t in stores().await {
        let store = store_with(&t, "acme", &records, &catalog).await;
        let sql = store.org_usage("acme");
        let mem = MemoryUsage::new(records.clone(), Arc::clone(&catalog));
        for by in [
            Grouping::By(Dimension::User),
            Grouping::By(Dimension::Tag("request".into())),
        ] {
            let q = UsageQuery {
                period,
                scope: Scope::all(),
                group_by: Some(by),
            };
            let a = sql.aggregate(&q).await.unwrap();
            assert!(a.truncated);
            assert_eq!(a.rows.len(), apogee_analytics::MAX_GROUPS);
            assert_eq!(a.totals.calls, records.len() as i64);
            assert_eq!(a, mem.aggregate(&q).await.unwrap(), "{:?}", t.backend);
            let l = sql.latency(&q).await.unwrap();
            assert!(l.truncated);
            assert_eq!(l, mem.latency(&q).await.unwrap(), "{:?}", t.backend);
            assert!(matches!(
                sql.model_mix(&q).await,
                Err(QueryError::TooLarge(_))
            ));
            assert!(matches!(
                mem.model_mix(&q).await,
                Err(QueryError::TooLarge(_))
            ));
        }
    }
}
