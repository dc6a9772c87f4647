//! The price catalog: per-model prices per 1M tokens, loaded from a versioned TOML data file
//! (`data/prices.toml` is built in). Pricing a call names the entry that priced it; a model the
//! catalog does not know has no price, never a price of zero.

use std::collections::HashMap;

use serde::Deserialize;

use crate::money::Nanos;

const BUILTIN: &str = include_str!("../data/prices.toml");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("price catalog is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("price catalog entry `{0}`: {1}")]
    Invalid(String, String),
}

/// Prices of one model, US dollars per 1M tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriceEntry {
    pub provider: String,
    pub model: String,
    pub input: f64,
    pub output: f64,
    /// Price of prompt tokens read from cache; the input price when absent.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Fraction taken off by the provider's batch API (0.5 = half price).
    #[serde(default)]
    pub batch_discount: f64,
    pub effective_from: String,
    pub source: String,
    #[serde(default)]
    pub cheaper_alternative: Option<String>,
}

/// A catalog entry together with the catalog version, i.e. what priced a call.
#[derive(Debug, Clone, Copy)]
pub struct Pricing<'a> {
    pub entry: &'a PriceEntry,
    pub version: &'a str,
}

impl Pricing<'_> {
    /// `openai/gpt-4o@2026-11-01`: stored with each priced call.
    pub fn source_id(&self) -> String {
        format!(
            "{}/{}@{}",
            self.entry.provider, self.entry.model, self.version
        )
    }

    /// Cost of a call (or a sum of calls) with the given token split.
    pub fn cost(&self, fresh_input: i64, cached_input: i64, output: i64, batch: bool) -> Nanos {
        let e = self.entry;
        let cached_price = e.cached_input.unwrap_or(e.input);
        // Prices are dollars per 1M tokens, so tokens × price × 1000 is nano-dollars.
        let nanos = (fresh_input as f64 * e.input
            + cached_input as f64 * cached_price
            + output as f64 * e.output)
            * 1000.0;
        let factor = if batch { 1.0 - e.batch_discount } else { 1.0 };
        Nanos((nanos * factor).round() as i64)
    }
}

#[derive(Deserialize)]
struct CatalogFile {
    version: String,
    #[serde(default)]
    model: Vec<PriceEntry>,
}

#[derive(Debug, Clone)]
pub struct PriceCatalog {
    version: String,
    entries: Vec<PriceEntry>,
    by_model: HashMap<String, usize>,
}

impl PriceCatalog {
    /// The catalog shipped in the binary.
    pub fn builtin() -> Result<PriceCatalog, CatalogError> {
        Self::from_toml(BUILTIN)
    }

    pub fn from_toml(text: &str) -> Result<PriceCatalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut by_model = HashMap::new();
        for (i, e) in file.model.iter().enumerate() {
            let prices = [Some(e.input), Some(e.output), e.cached_input];
            if prices.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(CatalogError::Invalid(
                    e.model.clone(),
                    "negative or non-finite price".into(),
                ));
            }
            if !(0.0..1.0).contains(&e.batch_discount) {
                return Err(CatalogError::Invalid(
                    e.model.clone(),
                    "batch_discount must be in [0, 1)".into(),
                ));
            }
            if by_model.insert(e.model.to_ascii_lowercase(), i).is_some() {
                return Err(CatalogError::Invalid(
                    e.model.clone(),
                    "listed twice".into(),
                ));
            }
        }
        Ok(PriceCatalog {
            version: file.version,
            entries: file.model,
            by_model,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The prices of `model` (case-insensitive), or `None` when it is unpriced.
    pub fn lookup(&self, model: &str) -> Option<Pricing<'_>> {
        let i = *self.by_model.get(&model.to_ascii_lowercase())?;
        Some(Pricing {
            entry: &self.entries[i],
            version: &self.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_and_prices_by_hand() {
        let c = PriceCatalog::builtin().unwrap();
        let p = c.lookup("GPT-4o").unwrap();
        // 1000 fresh × $2.50 + 200 cached × $1.25 + 300 out × $10 per 1M
        // = 0.0025 + 0.00025 + 0.003 = $0.00575
        assert_eq!(p.cost(1000, 200, 300, false), Nanos(5_750_000));
        assert_eq!(p.cost(1000, 200, 300, true), Nanos(2_875_000));
        assert_eq!(p.source_id(), "openai/gpt-4o@2026-11-01");
        assert!(c.lookup("acme-llama-70b").is_none());
    }

    #[test]
    fn every_alternative_is_priced_and_cheaper() {
        let c = PriceCatalog::builtin().unwrap();
        for e in c.entries() {
            if let Some(alt) = &e.cheaper_alternative {
                let a = c.lookup(alt).expect("alternative is in the catalog").entry;
                assert!(
                    a.input < e.input && a.output < e.output,
                    "{alt} vs {}",
                    e.model
                );
            }
        }
    }

    #[test]
    fn rejects_negative_prices() {
        let t = r#"version = "x"
[[model]]
provider = "p"
model = "m"
input = -1.0
output = 1.0
effective_from = "2026-01-01"
source = "s"
"#;
        assert!(PriceCatalog::from_toml(t).is_err());
    }
}
