//! The SQL queries give exactly what the in-memory reference implementation gives, over the
//! synthetic demo dataset and over hand-made edge cases; and one org never sees another's.

use std::sync::Arc;

use apogee_analytics::demo::{DemoSpec, generate};
use apogee_analytics::memory::MemoryUsage;
use apogee_analytics::{GroupBy, OrgUsageQueries, Period, PriceCatalog, PricedRecord};
use apogee_store::Store;
use chrono::{TimeZone, Utc};

async fn store_with(
    dir: &std::path::Path,
    org: &str,
    records: &[PricedRecord],
    catalog: &PriceCatalog,
) -> Store {
    let store = Store::open(&format!("sqlite://{}", dir.join("t.db").display()))
        .await
        .unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "acme", &records, &catalog).await;
    let sql = store.org_usage("acme");
    let mem = MemoryUsage::new(records, Arc::clone(&catalog));

    let periods = [
        Period::new(end - chrono::Duration::days(30), end),
        Period::new(end - chrono::Duration::days(7), end),
        Period::new(
            end - chrono::Duration::hours(36),
            end - chrono::Duration::hours(11),
        ),
    ];
    for p in &periods {
        assert_eq!(sql.totals(p).await.unwrap(), mem.totals(p).await.unwrap());
        for by in [
            GroupBy::Model,
            GroupBy::Provider,
            GroupBy::User,
            GroupBy::Feature,
            GroupBy::Day,
        ] {
            assert_eq!(
                sql.breakdown(p, by).await.unwrap(),
                mem.breakdown(p, by).await.unwrap(),
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
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "org-a", &records, &catalog).await;
    let p = Period::new(end - chrono::Duration::days(10), end);
    assert_eq!(
        store.org_usage("org-a").totals(&p).await.unwrap().calls,
        1_000
    );
    let b = store.org_usage("org-b");
    assert_eq!(b.totals(&p).await.unwrap().calls, 0);
    assert!(b.breakdown(&p, GroupBy::Model).await.unwrap().is_empty());
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
