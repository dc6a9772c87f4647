//! The price catalog the server prices with: the built-in catalog, plus the operator's prices
//! file (`prices_file` / `APOGEE_PRICES_FILE`) whose entries override or add to it. Every
//! pricing path (REST, OTLP, `apogee ingest`, demo data) takes its catalog from here.

use std::path::PathBuf;

use apogee_analytics::{CatalogError, PriceCatalog};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error("the built-in price catalog is invalid: {0}")]
    Builtin(CatalogError),
    #[error("cannot read prices file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("prices file {0}: {1}")]
    Invalid(PathBuf, CatalogError),
}

pub fn catalog(config: &Config) -> Result<PriceCatalog, PricesError> {
    let builtin = PriceCatalog::builtin().map_err(PricesError::Builtin)?;
    let Some(path) = &config.prices_file else {
        return Ok(builtin);
    };
    let text = std::fs::read_to_string(path).map_err(|e| PricesError::Read(path.clone(), e))?;
    let catalog = builtin
        .with_overrides(&text)
        .map_err(|e| PricesError::Invalid(path.clone(), e))?;
    tracing::info!(file = %path.display(), version = catalog.version(), "price overrides loaded");
    Ok(catalog)
}
