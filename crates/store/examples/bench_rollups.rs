//! Benchmark (not a test): ingest N synthetic demo records into a fresh store (a SQLite file,
//! or an empty PostgreSQL database given by URL) and time the ingest rate and a 30-day
//! breakdown per dimension (read from the hourly rollups).
//!
//! `cargo run --release -p apogee-store --example bench_rollups -- [records] [db path or URL]`
//! Results and the machine they ran on: docs/benchmarks.md.

use std::time::Instant;

use apogee_analytics::demo::{DemoSpec, generate};
use apogee_analytics::{Dimension, Grouping, OrgUsageQueries, Period, PriceCatalog, PricedRecord};
use apogee_store::Store;
use chrono::{Duration, TimeZone, Utc};

/// Records per ingest call (one transaction each), like a large `apogee ingest` chunk.
const CHUNK: usize = 50_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = args
        .next()
        .unwrap_or_else(|| dir.path().join("bench.db").display().to_string());
    // A database URL (e.g. `postgres://…/bench`, an empty database) or a SQLite file path.
    let url = if path.contains("://") {
        path
    } else {
        format!("sqlite://{path}")
    };
    let store = Store::open(&url).await?;
    let catalog = PriceCatalog::builtin()?;
    let end = Utc
        .with_ymd_and_hms(2026, 11, 25, 0, 0, 0)
        .single()
        .ok_or("bad end date")?;
    let spec = DemoSpec {
        days: 30,
        calls: n,
        seed: 7,
        end,
    };
    let mut records = generate(&spec);
    let (mut priced_time, mut ingest_time) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut done = 0u64;
    loop {
        let t = Instant::now();
        let chunk: Vec<(PricedRecord, String)> = records
            .by_ref()
            .take(CHUNK)
            .map(|r| {
                let p = PricedRecord::price(r, &catalog);
                let provider = p.provider(&catalog);
                (p, provider)
            })
            .collect();
        priced_time += t.elapsed();
        if chunk.is_empty() {
            break;
        }
        let t = Instant::now();
        done += store.ingest_usage("bench", &chunk).await?.accepted;
        ingest_time += t.elapsed();
    }
    println!(
        "ingested {done} records in {:.1} s: {:.0} records/s (store), generating and pricing took {:.1} s more",
        ingest_time.as_secs_f64(),
        done as f64 / ingest_time.as_secs_f64(),
        priced_time.as_secs_f64()
    );
    let usage = store.org_usage("bench");
    let periods = [
        (
            "30 days, hour-aligned",
            Period::new(end - Duration::days(30), end),
        ),
        (
            "30 days, unaligned edges",
            Period::new(
                end - Duration::days(30) + Duration::minutes(17),
                end - Duration::minutes(23),
            ),
        ),
    ];
    for (label, p) in periods {
        for by in [
            Grouping::By(Dimension::Model),
            Grouping::By(Dimension::Feature),
            Grouping::By(Dimension::User),
            Grouping::Day,
        ] {
            // The first read warms SQLite's page cache; the best of five is reported.
            let mut best = f64::MAX;
            let mut rows = 0;
            for _ in 0..5 {
                let t = Instant::now();
                rows = usage.breakdown(&p, by.clone()).await?.len();
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            println!(
                "breakdown {label} by {}: {rows} rows, best of 5: {best:.1} ms",
                by
            );
        }
        let t = Instant::now();
        let totals = usage.totals(&p).await?;
        println!(
            "totals {label}: {} calls, {} in {:.1} ms",
            totals.calls,
            totals.cost.display_usd(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    store.close().await;
    Ok(())
}
