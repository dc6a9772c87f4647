//! `apogee ingest FILE`: loads a usage file (NDJSON, CSV, a LiteLLM spend-log export or an
//! OpenAI usage export) into the configured database for one org, priced and idempotent like
//! `POST /api/usage`, with a progress bar on stderr when it is a terminal.

use std::path::Path;

use apogee_analytics::formats::{self, Format, Rejection};
use apogee_store::Store;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::config::Config;
use crate::prices::{self, PricesError};

/// Records priced and stored per transaction (and per progress-bar step).
const CHUNK: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum FileIngestError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Format(String, formats::FormatError),
    #[error("org `{0}` is not 1-64 characters of [A-Za-z0-9_-]")]
    Org(String),
    #[error(transparent)]
    Prices(#[from] PricesError),
    #[error(transparent)]
    Store(#[from] apogee_store::StoreError),
}

/// The same shape as the answer of `POST /api/usage`.
#[derive(Debug, Serialize)]
pub struct FileSummary {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejection>,
}

fn valid_org(org: &str) -> bool {
    (1..=64).contains(&org.len())
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn run(
    config: &Config,
    path: &Path,
    org: &str,
    format: Option<Format>,
    show_progress: bool,
) -> Result<FileSummary, FileIngestError> {
    if !valid_org(org) {
        return Err(FileIngestError::Org(org.into()));
    }
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| FileIngestError::Read(name.clone(), e))?;
    let format = format.unwrap_or_else(|| Format::from_path(path));
    let batch = formats::parse(format, &bytes).map_err(|e| FileIngestError::Format(name, e))?;
    let catalog = prices::catalog(config)?;
    let store = Store::open(&config.database_url).await?;

    let bar = ProgressBar::with_draw_target(
        Some(batch.records.len() as u64),
        if show_progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    let mut summary = FileSummary {
        accepted: 0,
        duplicates: 0,
        rejected: batch.rejected,
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut records = batch.records.into_iter().peekable();
    while records.peek().is_some() {
        chunk.clear();
        chunk.extend(
            records
                .by_ref()
                .take(CHUNK)
                .map(|r| super::price(r, &catalog)),
        );
        let s = store.ingest_usage(org, &chunk).await?;
        summary.accepted += s.accepted;
        summary.duplicates += s.duplicates;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    store.close().await;
    tracing::info!(
        file = %path.display(),
        org,
        accepted = summary.accepted,
        duplicates = summary.duplicates,
        rejected = summary.rejected.len(),
        "usage file ingested"
    );
    Ok(summary)
}
