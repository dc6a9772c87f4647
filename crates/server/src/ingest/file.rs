//! `apogee ingest FILE`: loads a usage file (NDJSON, CSV, a LiteLLM spend-log export or an
//! OpenAI usage export) into the configured database for one org, priced and idempotent like
//! `POST /api/usage`, with a progress bar on stderr when it is a terminal. NDJSON and CSV are
//! streamed in chunks, so memory stays bounded whatever the file's size.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use apogee_analytics::formats::{self, Format, Limits, ParsedBatch, Rejection};
use apogee_analytics::{PriceCatalog, UsageRecord};
use apogee_store::{Store, UsageLoad};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::config::Config;
use crate::prices::{self, PricesError};

/// Records parsed, priced and stored at a time: what memory holds per chunk.
const CHUNK: usize = 20_000;
/// Records per transaction (whole chunks; see [`apogee_store::UsageLoad`]): a SQLite commit
/// rewrites the pages a transaction dirtied, most of the request-id index and the prompt
/// states when records arrive at random places in them, so fewer commits are most of the
/// speed of a large file's load. The writer is held that long (about a second): a server on
/// the same SQLite file stores its events after it.
const RECORDS_PER_COMMIT: usize = 100_000;
/// Chunks of a streamed file parsed and priced ahead of the one being stored: parsing runs
/// on a blocking thread while the store writes (the two overlap on two cores), and memory
/// stays bounded by a few chunks.
const CHUNKS_AHEAD: usize = 2;

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

/// The same shape as the answer of `POST /api/usage`, plus the format the file was read as.
#[derive(Debug, Serialize)]
pub struct FileSummary {
    /// `ndjson`, `csv`, `litellm` or `openai`.
    pub format: &'static str,
    /// Whether the format was detected from the content rather than given with `--format`.
    pub format_detected: bool,
    pub accepted: u64,
    pub duplicates: u64,
    /// The first [`formats::DEFAULT_MAX_REJECTIONS`] rejections.
    pub rejected: Vec<Rejection>,
    pub rejected_count: usize,
}

impl FileSummary {
    /// No record of the file was good: none stored now, none stored before.
    pub fn nothing_accepted(&self) -> bool {
        self.accepted == 0 && self.duplicates == 0
    }
}

/// The summary a person reads on a terminal: what was stored, and each rejection (the first
/// few) with its record's index in the file.
impl std::fmt::Display for FileSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 10;
        writeln!(
            f,
            "read as {}{}",
            self.format,
            if self.format_detected {
                " (detected from the content; --format chooses)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "{} stored, {} already stored (same request_id), {} rejected",
            self.accepted, self.duplicates, self.rejected_count
        )?;
        for r in self.rejected.iter().take(SHOWN) {
            writeln!(f, "  record {}: {}", r.index, r.error)?;
        }
        if self.rejected_count > SHOWN.min(self.rejected.len()) {
            writeln!(
                f,
                "  … and {} more (--json lists the first {})",
                self.rejected_count - SHOWN.min(self.rejected.len()),
                formats::DEFAULT_MAX_REJECTIONS
            )?;
        }
        Ok(())
    }
}

pub(crate) fn valid_org(org: &str) -> bool {
    (1..=64).contains(&org.len())
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The first [`formats::DETECT_BYTES`] of a file (fewer when it is shorter).
fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(formats::DETECT_BYTES);
    File::open(path)?
        .take(formats::DETECT_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Whether a §8 JSON file is an array (read whole) rather than NDJSON (streamed).
fn is_json_array(head: &[u8]) -> bool {
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[')
}

fn progress_bar(len: u64, show: bool, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The file's records: streamed chunk by chunk with each record's index in the file, or a
/// document parsed whole.
enum Records {
    Streamed(Box<dyn Iterator<Item = (usize, Result<UsageRecord, String>)> + Send>),
    Parsed(ParsedBatch),
}

/// Prices and stores one chunk, adding its outcome to `summary`.
async fn store_chunk(
    load: &mut UsageLoad<'_>,
    batch: ParsedBatch,
    catalog: &PriceCatalog,
    summary: &mut FileSummary,
) -> Result<(), FileIngestError> {
    let parsed = super::price_batch(batch, catalog, Limits::default());
    store_priced(load, parsed, summary).await
}

/// Stores one priced chunk, adding its outcome to `summary`; commits the load's open
/// transaction once it holds [`RECORDS_PER_COMMIT`] records (`summary` counts them before).
async fn store_priced(
    load: &mut UsageLoad<'_>,
    mut parsed: super::Parsed,
    summary: &mut FileSummary,
) -> Result<(), FileIngestError> {
    let before = summary.accepted + summary.duplicates;
    let stored = load.add(&parsed.accepted).await?;
    parsed.reject_accepted(&stored.rejected);
    summary.accepted += stored.accepted;
    summary.duplicates += stored.duplicates;
    summary.rejected_count += parsed.rejected_count;
    let room = formats::DEFAULT_MAX_REJECTIONS.saturating_sub(summary.rejected.len());
    summary
        .rejected
        .extend(parsed.rejected.into_iter().take(room));
    let after = summary.accepted + summary.duplicates;
    if before / RECORDS_PER_COMMIT as u64 != after / RECORDS_PER_COMMIT as u64 {
        load.commit().await?;
    }
    Ok(())
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
    let read_err = |e| FileIngestError::Read(name.clone(), e);
    let head = head(path).map_err(read_err)?;
    let format_detected = format.is_none();
    let format = format.unwrap_or_else(|| Format::detect(&head));
    let catalog = prices::catalog(config)?;

    // NDJSON and CSV are streamed (progress in bytes), so a file larger than memory loads;
    // JSON documents (arrays, LiteLLM and OpenAI exports) are parsed whole.
    let streamed = match format {
        Format::Csv => true,
        Format::Usage => !is_json_array(&head),
        Format::Litellm | Format::OpenaiUsage => false,
    };
    let (bar, records): (ProgressBar, Records) = if streamed {
        let file = File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let bar = progress_bar(
            len,
            show_progress,
            "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        );
        let reader = BufReader::new(bar.wrap_read(file));
        let records: Box<dyn Iterator<Item = _> + Send> = if format == Format::Csv {
            Box::new(
                formats::csv::records(reader)
                    .map_err(|e| FileIngestError::Format(name.clone(), e))?
                    .enumerate(),
            )
        } else {
            Box::new(formats::json::ndjson_records(reader).enumerate())
        };
        (bar, Records::Streamed(records))
    } else {
        let bytes = std::fs::read(path).map_err(read_err)?;
        // The operator's own file: no bound on records (they are stored in chunks).
        let parsed = formats::parse_with(format, &bytes, Limits::unbounded())
            .map_err(|e| FileIngestError::Format(name.clone(), e))?;
        let bar = progress_bar(
            (parsed.records.len() + parsed.rejected_count) as u64,
            show_progress,
            "{bar:40} {pos}/{len} records ({per_sec}, {eta} left)",
        );
        (bar, Records::Parsed(parsed))
    };

    let store = Store::open(&config.database_url).await?;
    let mut load = store.usage_load(org);
    let mut summary = FileSummary {
        format: format.name(),
        format_detected,
        accepted: 0,
        duplicates: 0,
        rejected: Vec::new(),
        rejected_count: 0,
    };
    match records {
        Records::Streamed(records) => {
            let (chunks, mut priced) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
            let parser = tokio::task::spawn_blocking(move || {
                let mut records = records.peekable();
                while records.peek().is_some() {
                    let batch = formats::collect_indexed(records.by_ref().take(CHUNK));
                    let parsed = super::price_batch(batch, &catalog, Limits::default());
                    // Closed when the store failed: nothing more to parse.
                    if chunks.blocking_send(parsed).is_err() {
                        break;
                    }
                }
            });
            while let Some(parsed) = priced.recv().await {
                store_priced(&mut load, parsed, &mut summary).await?;
            }
            parser.await.map_err(|e| {
                FileIngestError::Read(name.clone(), std::io::Error::other(e.to_string()))
            })?;
        }
        Records::Parsed(mut parsed) => {
            summary.rejected = std::mem::take(&mut parsed.rejected);
            summary.rejected_count = parsed.rejected_count;
            bar.inc(parsed.rejected_count as u64);
            let mut records = parsed.records.into_iter().zip(parsed.indexes).peekable();
            while records.peek().is_some() {
                let (chunk, indexes) = records.by_ref().take(CHUNK).unzip();
                let batch = ParsedBatch {
                    records: chunk,
                    indexes,
                    ..ParsedBatch::default()
                };
                bar.inc(batch.records.len() as u64);
                store_chunk(&mut load, batch, &catalog, &mut summary).await?;
            }
        }
    }
    load.commit().await?;
    bar.finish_and_clear();
    store.close().await;
    tracing::info!(
        file = %path.display(),
        org,
        format = format.name(),
        accepted = summary.accepted,
        duplicates = summary.duplicates,
        rejected = summary.rejected_count,
        "usage file ingested"
    );
    Ok(summary)
}
