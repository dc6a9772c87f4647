//! `apogee demo-data` and `serve --demo-data`: loads the synthetic demo usage history of
//! `apogee_analytics::demo` into the configured database, priced like any other ingest.

use apogee_analytics::demo::{DemoSpec, generate};
use apogee_analytics::{OrgUsageQueries, Period};
use apogee_store::Store;
use chrono::Utc;

use crate::auth::DEMO_ORG;
use crate::config::Config;

/// Records priced and stored per transaction.
const CHUNK: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] apogee_store::StoreError),
    #[error(transparent)]
    Prices(#[from] crate::prices::PricesError),
    #[error(transparent)]
    Query(#[from] apogee_analytics::QueryError),
    #[error("invalid demo dataset: {0}")]
    Spec(#[from] apogee_analytics::demo::DemoError),
}

/// A demo history of `days` days ending now.
pub fn spec(days: u32, calls: u64, seed: u64) -> DemoSpec {
    DemoSpec {
        days,
        calls,
        seed,
        end: Utc::now(),
    }
}

/// Replaces the org's earlier synthetic records with a fresh history (real records are never
/// touched: only rows this loader stored, marked synthetic in the store, are replaced, whatever
/// a client's request ids look like); returns a one-line summary.
pub async fn load(config: &Config, org: &str, spec: &DemoSpec) -> Result<String, DemoError> {
    spec.validate()?;
    let store = Store::open(&config.database_url).await?;
    let catalog = crate::prices::catalog(config)?;
    let replaced = store.delete_synthetic_usage(org).await?;
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut records = generate(spec).peekable();
    while records.peek().is_some() {
        chunk.clear();
        chunk.extend(
            records
                .by_ref()
                .take(CHUNK)
                .map(|r| crate::ingest::price(r, &catalog)),
        );
        let s = store.ingest_synthetic_usage(org, &chunk).await?;
        accepted += s.accepted;
        duplicates += s.duplicates;
    }
    store.close().await;
    let period = Period::new(
        spec.end - chrono::Duration::days(i64::from(spec.days)),
        spec.end,
    );
    Ok(format!(
        "loaded synthetic demo usage (request ids `demo-…`) for org `{org}`, {}: {accepted} records stored ({duplicates} duplicates), {replaced} earlier demo records replaced",
        period.label()
    ))
}

/// For `serve --demo-data`: loads the default demo history into org `demo` unless it already
/// has usage in the last 7 days.
pub async fn load_if_stale(config: &Config) -> Result<(), DemoError> {
    let store = Store::open(&config.database_url).await?;
    let recent = store
        .org_usage(DEMO_ORG)
        .totals(&Period::last_days(Utc::now(), 7))
        .await?;
    store.close().await;
    if recent.calls > 0 {
        tracing::info!(
            calls_last_7_days = recent.calls,
            "org `demo` already has usage in the last 7 days; not loading demo data"
        );
        return Ok(());
    }
    tracing::info!(
        "loading the synthetic demo dataset into org `demo` (200000 calls over 30 days)"
    );
    let summary = load(config, DEMO_ORG, &spec(30, 200_000, 1)).await?;
    tracing::info!("{summary}");
    Ok(())
}
