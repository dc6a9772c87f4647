//! The price catalog the server prices with: the built-in catalog, plus the operator's prices
//! file (`prices_file` / `APOGEE_PRICES_FILE`: Apogee's TOML or LiteLLM's
//! `model_prices_and_context_window.json`) whose entries override or add to it. Every pricing
//! path (REST, OTLP, `apogee ingest`, demo data) takes its catalog from here.
//!
//! `apogee prices check FILE [--org ORG]` ([`check`]) reads a prices file the way the server
//! would, says what it holds, and lists the models of an org's usage that are unpriced, with
//! whether the file prices them and the closest catalog names.

use std::fmt;
use std::path::{Path, PathBuf};

use apogee_analytics::catalog::{PricesFormat, price_map};
use apogee_analytics::{CatalogError, Dimension, Grouping, OrgUsageQueries, Period, PriceCatalog};
use apogee_store::Store;
use chrono::Utc;

use crate::config::Config;

/// Closest catalog names suggested for an unpriced model.
const CLOSEST_NAMES: usize = 3;
/// Keys of a LiteLLM map left out that the check names (the rest are counted).
const SKIPPED_SHOWN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error("the built-in price catalog is invalid: {0}")]
    Builtin(CatalogError),
    #[error("cannot read prices file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("prices file {0}: {1}")]
    Invalid(PathBuf, CatalogError),
    #[error("org `{0}` is not 1-64 characters of [A-Za-z0-9_-]")]
    Org(String),
    #[error(transparent)]
    Store(#[from] apogee_store::StoreError),
    #[error("reading the org's usage: {0}")]
    Usage(#[from] apogee_analytics::QueryError),
}

pub fn catalog(config: &Config) -> Result<PriceCatalog, PricesError> {
    let builtin = PriceCatalog::builtin().map_err(PricesError::Builtin)?;
    let Some(path) = &config.prices_file else {
        return Ok(builtin);
    };
    let catalog = with_file(&builtin, path)?.0;
    tracing::info!(file = %path.display(), version = catalog.version(), "price overrides loaded");
    Ok(catalog)
}

/// `builtin` with the prices file at `path`, and the file's format and text.
fn with_file(
    builtin: &PriceCatalog,
    path: &Path,
) -> Result<(PriceCatalog, PricesFormat, String), PricesError> {
    let text = std::fs::read_to_string(path).map_err(|e| PricesError::Read(path.into(), e))?;
    let catalog = builtin
        .with_prices_file(&text)
        .map_err(|e| PricesError::Invalid(path.into(), e))?;
    Ok((catalog, PricesFormat::detect(&text), text))
}

/// A model of an org's usage with unpriced calls.
#[derive(Debug, Clone, PartialEq)]
pub struct UnpricedModel {
    pub model: String,
    pub calls: i64,
    pub unpriced_calls: i64,
    /// The entry the checked file prices it with from now on, if any.
    pub priced_by: Option<String>,
    /// The closest names the catalog (with the file) knows.
    pub closest: Vec<String>,
}

/// What `apogee prices check` found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub file: PathBuf,
    pub format: PricesFormat,
    pub version: String,
    /// Entries the file holds.
    pub entries: usize,
    /// LiteLLM keys left out (not token-priced, or invalid) and why.
    pub skipped: Vec<(String, String)>,
    /// The org and the window looked at, when one was given.
    pub org: Option<(String, Period)>,
    pub unpriced: Vec<UnpricedModel>,
}

/// Reads the prices file at `file` as the server would; with `org`, lists the models of that
/// org's usage over the last `days` days that have unpriced calls.
pub async fn check(
    config: &Config,
    file: &Path,
    org: Option<&str>,
    days: u32,
) -> Result<CheckReport, PricesError> {
    let builtin = PriceCatalog::builtin().map_err(PricesError::Builtin)?;
    let (catalog, format, text) = with_file(&builtin, file)?;
    let (entries, skipped) = match format {
        PricesFormat::LitellmJson => {
            let map = price_map::parse(&text).map_err(|e| PricesError::Invalid(file.into(), e))?;
            (map.entries.len(), map.skipped)
        }
        PricesFormat::Toml => {
            let own =
                PriceCatalog::from_toml(&text).map_err(|e| PricesError::Invalid(file.into(), e))?;
            (own.entries().len(), Vec::new())
        }
    };
    let mut report = CheckReport {
        file: file.into(),
        format,
        version: catalog.version().to_string(),
        entries,
        skipped,
        org: None,
        unpriced: Vec::new(),
    };
    let Some(org) = org else {
        return Ok(report);
    };
    if !crate::ingest::file::valid_org(org) {
        return Err(PricesError::Org(org.into()));
    }
    let period = Period::last_days(Utc::now(), days);
    let store = Store::open(&config.database_url).await?;
    let rows = store
        .org_usage(org)
        .breakdown(&period, Grouping::By(Dimension::Model))
        .await;
    store.close().await;
    for row in rows?.into_iter().filter(|r| r.unpriced_calls > 0) {
        let priced_by = catalog.lookup(&row.key).map(|p| p.source_id());
        let closest = catalog
            .closest_names(&row.key, CLOSEST_NAMES)
            .into_iter()
            .map(str::to_string)
            .collect();
        report.unpriced.push(UnpricedModel {
            model: row.key,
            calls: row.calls,
            unpriced_calls: row.unpriced_calls,
            priced_by,
            closest,
        });
    }
    report.unpriced.sort_by(|a, b| {
        b.unpriced_calls
            .cmp(&a.unpriced_calls)
            .then_with(|| a.model.cmp(&b.model))
    });
    report.org = Some((org.to_string(), period));
    Ok(report)
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = match self.format {
            PricesFormat::Toml => "Apogee TOML prices file",
            PricesFormat::LitellmJson => "LiteLLM price map",
        };
        writeln!(
            f,
            "{}: {format}, {} entries; prices calls as catalog version {}",
            self.file.display(),
            self.entries,
            self.version
        )?;
        if !self.skipped.is_empty() {
            writeln!(
                f,
                "{} keys left out (not priced per token, or invalid):",
                self.skipped.len()
            )?;
            for (key, why) in self.skipped.iter().take(SKIPPED_SHOWN) {
                writeln!(f, "  {key}: {why}")?;
            }
            if self.skipped.len() > SKIPPED_SHOWN {
                writeln!(f, "  … and {} more", self.skipped.len() - SKIPPED_SHOWN)?;
            }
        }
        let Some((org, period)) = &self.org else {
            return Ok(());
        };
        if self.unpriced.is_empty() {
            return writeln!(f, "org {org}, {}: every call is priced", period.label());
        }
        writeln!(
            f,
            "org {org}, {}: {} models with unpriced calls",
            period.label(),
            self.unpriced.len()
        )?;
        for m in &self.unpriced {
            write!(
                f,
                "  {}: {} of {} calls unpriced; ",
                m.model, m.unpriced_calls, m.calls
            )?;
            match &m.priced_by {
                Some(id) => writeln!(f, "this file prices it from now on ({id})")?,
                None if m.closest.is_empty() => {
                    writeln!(f, "still unpriced with this file; no catalog name is close")?
                }
                None => writeln!(
                    f,
                    "still unpriced with this file; closest catalog names: {}",
                    m.closest.join(", ")
                )?,
            }
        }
        Ok(())
    }
}
