//! A load of many batches (`Store::usage_load`, what `apogee ingest` of a file uses) on both
//! backends: it stores what `Store::ingest_usage` of the same batches stores, duplicates
//! across batches of one transaction included, and nothing added after the last commit
//! survives the load being dropped.

use apogee_analytics::{Nanos, OrgUsageQueries, Period, PricedRecord, UsageRecord};
use apogee_store::test_support::stores;
use chrono::{Duration, TimeZone, Utc};

/// A record `minutes` after 08:00 on a fixed day, costing `usd`.
fn record(id: &str, minutes: i64, prompt: &str, usd: f64) -> (PricedRecord, String) {
    let at = Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap() + Duration::minutes(minutes);
    let mut r = UsageRecord::new(at, "m".into(), 100, 10);
    r.request_id = Some(id.into());
    r.prompt_hash = Some(prompt.into());
    r.feature = Some("f".into());
    let priced = PricedRecord {
        record: r,
        cost: Some(Nanos::from_usd(usd)),
        price_source: Some("client".into()),
    };
    (priced, "p".into())
}

fn day() -> Period {
    let start = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
    Period::new(start, start + Duration::days(1))
}

#[tokio::test]
async fn a_load_stores_what_single_ingests_store_and_drops_what_it_did_not_commit() {
    let first = [
        record("a1", 5, "p1", 1.0),
        record("a2", 70, "p2", 2.0),
        // Repeated within the batch: the first is kept.
        record("a1", 6, "p9", 50.0),
    ];
    let second = [
        // Repeated from the first batch, in the same open transaction.
        record("a2", 71, "p2", 40.0),
        record("b1", 72, "p2", 4.0),
    ];
    let third = [record("c1", 8, "p1", 8.0)];
    let never = [record("n1", 9, "p1", 100.0)];
    for ts in stores().await {
        let (store, b) = (&ts.store, ts.backend);
        let mut load = store.usage_load("loaded");
        let one = load.add(&first).await.unwrap();
        let two = load.add(&second).await.unwrap();
        assert_eq!((one.accepted, one.duplicates), (2, 1), "{b:?}");
        assert_eq!((two.accepted, two.duplicates), (1, 1), "{b:?}");
        load.commit().await.unwrap();
        let three = load.add(&third).await.unwrap();
        assert_eq!((three.accepted, three.duplicates), (1, 0), "{b:?}");
        load.commit().await.unwrap();
        // Added, never committed: on SQLite rolled back with the load; on PostgreSQL each
        // batch is committed as it is added, so it stays.
        load.add(&never).await.unwrap();
        drop(load);

        for batch in [&first[..], &second[..], &third[..]] {
            store.ingest_usage("single", batch).await.unwrap();
        }
        let loaded = store.org_usage("loaded");
        let single = store.org_usage("single");
        let (l, s) = (
            loaded.totals(&day()).await.unwrap(),
            single.totals(&day()).await.unwrap(),
        );
        let extra = match b {
            apogee_store::Backend::Sqlite => 0,
            apogee_store::Backend::Postgres => 1,
        };
        assert_eq!(l.calls, s.calls + extra, "{b:?}");
        assert_eq!(s.calls, 4, "{b:?}");
        let extra_cost = Nanos::from_usd(100.0 * extra as f64);
        assert_eq!(l.cost, s.cost + extra_cost, "{b:?}");
        assert_eq!(s.cost, Nanos::from_usd(15.0), "{b:?}");

        // The prompt summaries kept at ingest agree too (p2 repeated across the batches).
        if extra == 0 {
            assert_eq!(
                format!("{:?}", loaded.repeated_prompts(&day()).await.unwrap()),
                format!("{:?}", single.repeated_prompts(&day()).await.unwrap()),
                "{b:?}"
            );
        }
    }
}
