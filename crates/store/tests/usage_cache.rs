//! The cache of usage reads on both backends, through `Store::org_usage`: an answer "up to
//! now" (a period from a whole hour to a moment inside a later one) serves later ends in the
//! same hour from the cache, and never one a stored record or new usage has changed.

use apogee_analytics::{
    Dimension, Grouping, Nanos, OrgUsageQueries, Period, PricedRecord, UsageRecord,
};
use apogee_store::test_support::stores;
use chrono::{DateTime, Duration, TimeZone, Utc};

/// 08:00, the start of the hour the periods end in.
fn hour() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap()
}

/// A record `minutes` after 08:00 (before it when negative) costing $1.
fn record(id: &str, minutes: i64, model: &str) -> (PricedRecord, String) {
    let mut r = UsageRecord::new(hour() + Duration::minutes(minutes), model.into(), 100, 10);
    r.request_id = Some(id.into());
    let priced = PricedRecord {
        record: r,
        cost: Some(Nanos::from_usd(1.0)),
        price_source: Some("client".into()),
    };
    (priced, "p".into())
}

/// From midnight up to `minutes` after 08:00.
fn today_until(minutes: i64) -> Period {
    Period::new(
        hour() - Duration::hours(8),
        hour() + Duration::minutes(minutes),
    )
}

#[tokio::test]
async fn an_answer_up_to_now_serves_later_ends_until_a_record_falls_inside() {
    for ts in stores().await {
        let store = &ts.store;
        let b = ts.backend;
        // One record before the hour, one early in it, one stored ahead of the ends asked first.
        let first = [
            record("before", -50, "m"),
            record("early", 5, "m"),
            record("ahead", 40, "m"),
        ];
        store.ingest_usage("acme", &first).await.unwrap();
        let usage = store.org_usage("acme");
        let calls = |minutes| {
            let usage = usage.clone();
            async move { usage.totals(&today_until(minutes)).await.unwrap().calls }
        };
        let stats = store.usage_cache_stats();

        assert_eq!(calls(10).await, 2, "{b:?}");
        let (hits, misses) = (stats.hits(), stats.misses());
        // Later ends before the record ahead: the same answer, from the cache.
        assert_eq!(calls(20).await, 2, "{b:?}");
        assert_eq!(
            calls(40).await,
            2,
            "{b:?}: a period ending at 08:40 excludes it"
        );
        assert_eq!((stats.hits(), stats.misses()), (hits + 2, misses), "{b:?}");
        // Once the end passes it, and for an end before the cached one, read again.
        assert_eq!(calls(41).await, 3, "{b:?}");
        assert_eq!(calls(4).await, 1, "{b:?}");
        // New usage before the end: the next answer has it.
        store
            .ingest_usage("acme", &[record("late", 12, "m")])
            .await
            .unwrap();
        assert_eq!(calls(20).await, 3, "{b:?}");
        assert_eq!(calls(30).await, 3, "{b:?}");
        assert_eq!(calls(50).await, 4, "{b:?}");

        // A period from the start of the hour alike.
        let this_hour = |minutes| {
            let usage = usage.clone();
            async move {
                let period = Period::new(hour(), hour() + Duration::minutes(minutes));
                usage.totals(&period).await.unwrap().calls
            }
        };
        assert_eq!(this_hour(20).await, 2, "{b:?}");
        let hits = stats.hits();
        assert_eq!(this_hour(30).await, 2, "{b:?}");
        assert_eq!(stats.hits(), hits + 1, "{b:?}");
        assert_eq!(this_hour(45).await, 3, "{b:?}");

        // A breakdown up to now alike.
        let by_model = |minutes| {
            let usage = usage.clone();
            async move {
                let rows = usage
                    .breakdown(&today_until(minutes), Grouping::By(Dimension::Model))
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| (r.key.clone(), r.calls))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(by_model(20).await, [("m".to_string(), 3)], "{b:?}");
        store
            .ingest_usage("acme", &[record("other", 15, "n")])
            .await
            .unwrap();
        assert_eq!(
            by_model(25).await,
            [("m".to_string(), 3), ("n".to_string(), 1)],
            "{b:?}"
        );
    }
}
