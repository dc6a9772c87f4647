//! Sums that cannot overflow, on both backends: a record that would take its hourly bucket past
//! 64 bits is refused with its position while the rest of its batch is stored (and the bucket
//! keeps taking what fits), reads sum an org's buckets past 64 bits without failing, and
//! deleting records by id, prefix or time range keeps the rollups equal to the raw rows.

use apogee_analytics::usage::MAX_RECORD_COST;
use apogee_analytics::{
    Dimension, Grouping, Nanos, OrgUsageQueries, Period, PricedRecord, Scope, UsageQuery,
    UsageRecord,
};
use apogee_store::UsageSelection;
use apogee_store::test_support::stores;
use chrono::{DateTime, Duration, TimeZone, Utc};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap()
}

/// A record at `t0 + minutes`, priced by the client at `cost`, or unpriced.
fn record(id: &str, minutes: i64, cost: Option<Nanos>, tokens: i64) -> (PricedRecord, String) {
    let mut r = UsageRecord::new(t0() + Duration::minutes(minutes), "m".into(), tokens, 0);
    r.request_id = Some(id.into());
    r.request_count = Some((tokens / 100_000_000).max(1));
    let priced = PricedRecord {
        record: r,
        cost,
        price_source: cost.map(|_| "client".to_string()),
    };
    (priced, "p".into())
}

fn whole_day() -> Period {
    Period::new(t0() - Duration::hours(8), t0() + Duration::hours(16))
}

#[tokio::test]
async fn a_full_bucket_refuses_the_record_that_would_overflow_it_and_keeps_taking_others() {
    for ts in stores().await {
        let store = &ts.store;
        // 9,300 records of $1M in one hour, model, user and feature: 9,223 fit in 64 bits.
        let million = Nanos::from_usd(1_000_000.0);
        let batch: Vec<_> = (0..9_300)
            .map(|i| record(&format!("big-{i}"), 5, Some(million), 10))
            .collect();
        let s = store.ingest_usage("acme", &batch).await.unwrap();
        let fits = (i64::MAX / 1_000_000_000_000_000) as usize;
        assert_eq!(fits, 9_223);
        assert_eq!(s.accepted as usize, fits, "{:?}", ts.backend);
        assert_eq!(s.duplicates, 0);
        let positions: Vec<usize> = s.rejected.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, (fits..9_300).collect::<Vec<_>>());
        assert!(
            s.rejected[0].1.contains("would overflow"),
            "{:?}",
            s.rejected[0]
        );

        let usage = store.org_usage("acme");
        let totals = usage.totals(&whole_day()).await.unwrap();
        assert_eq!(totals.cost, Nanos(million.0 * fits as i128));
        assert!(totals.cost > Nanos::ZERO);

        // Later batches land: other buckets, and what still fits in the full one.
        let room = Nanos(i128::from(i64::MAX) - million.0 * fits as i128);
        let later = vec![
            record("next-hour", 65, Some(million), 10),
            record("same-bucket-fits", 5, Some(room), 10),
            record("same-bucket-too-much", 5, Some(Nanos(1)), 10),
            record("unpriced", 5, None, 10),
        ];
        let s = store.ingest_usage("acme", &later).await.unwrap();
        assert_eq!(s.accepted, 3, "{:?}", s.rejected);
        assert_eq!(s.rejected.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2]);
        // Re-sending a stored record is a duplicate, not a rejection.
        let s = store.ingest_usage("acme", &later[..1]).await.unwrap();
        assert_eq!((s.accepted, s.duplicates, s.rejected.len()), (0, 1, 0));
    }
}

#[tokio::test]
async fn reads_sum_an_orgs_buckets_past_64_bits() {
    for ts in stores().await {
        let store = &ts.store;
        // 9 records of the largest cost allowed per hour, over 12 hours: $108 billion, twelve
        // times what 64 bits of nano-dollars hold; and 10^17 tokens per record. All of one
        // prompt, so its day of repeats (`usage_repeats_daily`) sums past 64 bits too.
        let batch: Vec<_> = (0..108)
            .map(|i| {
                let mut r = record(
                    &format!("r{i}"),
                    60 * (i / 9),
                    Some(MAX_RECORD_COST),
                    100_000_000_000_000_000,
                );
                r.0.record.prompt_hash = Some("same".into());
                r
            })
            .collect();
        let s = store.ingest_usage("acme", &batch).await.unwrap();
        assert_eq!(s.accepted, 108, "{:?}", s.rejected.first());
        let usage = store.org_usage("acme");
        // Whole hours from the rollups and partial hours from raw rows: both wide.
        for period in [
            whole_day(),
            Period::new(t0() + Duration::minutes(30), t0() + Duration::hours(12)),
        ] {
            let totals = usage.totals(&period).await.unwrap();
            assert!(totals.cost.0 > i128::from(i64::MAX), "{:?}", ts.backend);
            assert_eq!(
                totals.input_tokens,
                i64::MAX,
                "token sums hold at the limit"
            );
            let rows = usage
                .breakdown(&period, Grouping::By(Dimension::Model))
                .await
                .unwrap();
            assert_eq!(rows[0].cost, totals.cost);
            let by_day = usage.breakdown(&period, Grouping::Day).await.unwrap();
            assert_eq!(by_day.len(), 1);
        }
        let totals = usage.totals(&whole_day()).await.unwrap();
        assert_eq!(totals.cost, Nanos(MAX_RECORD_COST.0 * 108));
        assert_eq!(totals.cost.display_usd(), "$108,000,000,000.00");
        // The repeats: every call but the first, read from the daily row for the whole day.
        let repeats = usage.repeated_prompts(&whole_day()).await.unwrap();
        assert_eq!(
            (repeats.repeated_prompts, repeats.repeat_calls),
            (1, 107),
            "{:?}",
            ts.backend
        );
        assert_eq!(repeats.repeat_cost, Nanos(MAX_RECORD_COST.0 * 107));
        assert_eq!(
            repeats.repeat_cost,
            usage_raw_repeat_cost(store, &whole_day()).await
        );
        // Every other query runs too.
        usage.batch_candidates(&whole_day()).await.unwrap();
        usage.breakdown_feature_model(&whole_day()).await.unwrap();
        let by_feature = UsageQuery {
            period: whole_day(),
            scope: Scope::all(),
            group_by: Some(Grouping::By(Dimension::Feature)),
        };
        usage.model_mix(&by_feature).await.unwrap();
        usage.latency(&by_feature).await.unwrap();
        usage.tags(&whole_day()).await.unwrap();
        usage.latency_by_model(&whole_day()).await.unwrap();
        usage
            .traffic_profile(&whole_day(), "m", 1_000, 1_000)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn deleting_by_id_prefix_or_time_keeps_the_rollups_right() {
    for ts in stores().await {
        let store = &ts.store;
        let cent = Nanos::from_usd(0.01);
        let batch: Vec<_> = (0..30)
            .map(|i| {
                let prefix = if i % 3 == 0 { "load" } else { "real" };
                record(&format!("{prefix}-{i}"), i * 20, Some(cent), 100)
            })
            .collect();
        assert_eq!(
            store.ingest_usage("acme", &batch).await.unwrap().accepted,
            30
        );
        assert_eq!(
            store.ingest_usage("globex", &batch).await.unwrap().accepted,
            30
        );
        let usage = store.org_usage("acme");
        let calls = |p: Period| {
            let usage = usage.clone();
            async move { usage.totals(&p).await.unwrap() }
        };
        let ids = vec!["real-1".to_string(), "real-2".into(), "nope".into()];
        assert_eq!(
            store
                .delete_usage("acme", &UsageSelection::Ids(ids))
                .await
                .unwrap(),
            2
        );
        let prefix = UsageSelection::Prefix("load-".into());
        assert_eq!(store.delete_usage("acme", &prefix).await.unwrap(), 10);
        // 08:00 + [0, 200) minutes holds records 0..10; of those, 1, 2 and the `load` ones
        // (0, 3, 6, 9) are gone already: 4 left.
        let range = UsageSelection::Between {
            from_ms: t0().timestamp_millis(),
            to_ms: (t0() + Duration::minutes(200)).timestamp_millis(),
        };
        assert_eq!(store.delete_usage("acme", &range).await.unwrap(), 4);
        let left = calls(whole_day()).await;
        assert_eq!(left.calls, 30 - 2 - 10 - 4);
        assert_eq!(left.cost, Nanos(cent.0 * 14));
        // Whole hours (rollups) and minutes (raw rows) agree on what is left.
        let hours = calls(Period::new(t0(), t0() + Duration::hours(10))).await;
        let minutes = calls(Period::new(
            t0() + Duration::milliseconds(1),
            t0() + Duration::hours(10),
        ))
        .await;
        assert_eq!(hours.calls, minutes.calls);
        // Another org's records are untouched.
        let other = store
            .org_usage("globex")
            .totals(&whole_day())
            .await
            .unwrap();
        assert_eq!(other.calls, 30);
    }
}

/// The repeat cost the raw-row reference reads.
async fn usage_raw_repeat_cost(store: &apogee_store::Store, period: &Period) -> Nanos {
    store
        .org_usage_raw_rows("acme")
        .repeated_prompts(period)
        .await
        .unwrap()
        .repeat_cost
}
