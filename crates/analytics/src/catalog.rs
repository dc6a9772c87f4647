//! The price catalog: per-model prices per 1M tokens with effective dates, context-length
//! tiers, cache read/write prices, batch discounts and the public source of each price, loaded
//! from a versioned TOML data file (`data/prices.toml` is built in; an operator's file adds to
//! or overrides it). Pricing a call names the entry that priced it; a model the catalog does not
//! know has no price, never a price of zero.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::money::Nanos;
use crate::tokens::TokenCounts;

const BUILTIN: &str = include_str!("../data/prices.toml");
/// The data-file schema this code reads.
const SCHEMA: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("price catalog is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("price catalog has schema {0}; this build reads schema {SCHEMA}")]
    Schema(u32),
    #[error("price catalog entry `{0}`: {1}")]
    Invalid(String, String),
}

/// Prices above a prompt length: the whole call is billed at these (US dollars per 1M tokens).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    pub above_input_tokens: i64,
    pub input: f64,
    pub output: f64,
    #[serde(default, alias = "cache_read")]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// Prices of one model from one date on, US dollars per 1M tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    pub provider: String,
    pub model: String,
    /// Other names the provider reports for this model.
    #[serde(default)]
    pub aliases: Vec<String>,
    pub input: f64,
    pub output: f64,
    /// Price of prompt tokens read from cache; the input price when absent.
    #[serde(default, alias = "cache_read")]
    pub cached_input: Option<f64>,
    /// Price of prompt tokens written to cache; the input price when absent.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Fraction taken off every price by the provider's batch API (0.5 = half price).
    #[serde(default)]
    pub batch_discount: f64,
    pub effective_from: NaiveDate,
    pub source: String,
    #[serde(default)]
    pub cheaper_alternative: Option<String>,
    /// Context-length tiers, any order.
    #[serde(default, rename = "tier")]
    pub tiers: Vec<PriceTier>,
    /// Set for entries that came from the operator's prices file.
    #[serde(skip)]
    pub overridden: bool,
}

impl PriceEntry {
    /// `openai/gpt-4o@2024-10-02`, prefixed `override:` when the operator's file supplied it.
    pub fn id(&self) -> String {
        format!(
            "{}{}/{}@{}",
            if self.overridden { "override:" } else { "" },
            self.provider,
            self.model,
            self.effective_from
        )
    }

    fn check(&self) -> Result<(), CatalogError> {
        let bad = |m: &str| Err(CatalogError::Invalid(self.id(), m.into()));
        let mut prices = vec![
            Some(self.input),
            Some(self.output),
            self.cached_input,
            self.cache_write,
        ];
        for t in &self.tiers {
            prices.extend([Some(t.input), Some(t.output), t.cached_input, t.cache_write]);
            if t.above_input_tokens <= 0 {
                return bad("a tier's above_input_tokens must be positive");
            }
        }
        if prices.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
            return bad("negative or non-finite price");
        }
        if !(0.0..1.0).contains(&self.batch_discount) {
            return bad("batch_discount must be in [0, 1)");
        }
        if self.model.trim().is_empty() || self.provider.trim().is_empty() {
            return bad("provider and model must not be empty");
        }
        Ok(())
    }
}

/// A catalog entry together with the catalog version, i.e. what prices a call.
#[derive(Debug, Clone, Copy)]
pub struct Pricing<'a> {
    pub entry: &'a PriceEntry,
    pub version: &'a str,
}

/// A priced call: its cost and the id of what priced it (entry, plus `>N` for a tier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub cost: Nanos,
    pub source_id: String,
}

/// Dollars per 1M tokens for each kind of token.
struct Rates {
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
}

impl Pricing<'_> {
    /// The entry's id: stored with each priced call.
    pub fn source_id(&self) -> String {
        self.entry.id()
    }

    /// The tier that applies to a prompt of `input_tokens` (the highest threshold below it).
    fn tier(&self, input_tokens: i64) -> Option<&PriceTier> {
        self.entry
            .tiers
            .iter()
            .filter(|t| input_tokens > t.above_input_tokens)
            .max_by_key(|t| t.above_input_tokens)
    }

    fn rates(&self, tier: Option<&PriceTier>) -> Rates {
        let e = self.entry;
        match tier {
            Some(t) => Rates {
                input: t.input,
                output: t.output,
                cache_read: t.cached_input.unwrap_or(t.input),
                cache_write: t.cache_write.unwrap_or(t.input),
            },
            None => Rates {
                input: e.input,
                output: e.output,
                cache_read: e.cached_input.unwrap_or(e.input),
                cache_write: e.cache_write.unwrap_or(e.input),
            },
        }
    }

    fn nanos(&self, rates: &Rates, t: &TokenCounts, batch: bool) -> Nanos {
        // Prices are dollars per 1M tokens, so tokens × price × 1000 is nano-dollars.
        let nanos = (t.fresh_input() as f64 * rates.input
            + t.cache_read as f64 * rates.cache_read
            + t.cache_write as f64 * rates.cache_write
            + t.output as f64 * rates.output)
            * 1000.0;
        let factor = if batch {
            1.0 - self.entry.batch_discount
        } else {
            1.0
        };
        Nanos((nanos * factor).round() as i128)
    }

    /// Cost of `calls` calls (1 for one call; more for an aggregated record) with `tokens` in
    /// total, with the context-length tier of their average prompt applied.
    pub fn quote(&self, tokens: &TokenCounts, batch: bool, calls: i64) -> Quote {
        let tier = self.tier(tokens.input / calls.max(1));
        let cost = self.nanos(&self.rates(tier), tokens, batch);
        let mut source_id = self.source_id();
        if let Some(t) = tier {
            source_id.push_str(&format!(">{}", t.above_input_tokens));
        }
        Quote { cost, source_id }
    }

    /// Cost at the base (untiered) prices of a sum of calls, for estimates over aggregates.
    pub fn cost(&self, fresh_input: i64, cached_input: i64, output: i64, batch: bool) -> Nanos {
        let tokens = TokenCounts {
            input: fresh_input + cached_input,
            cache_read: cached_input,
            cache_write: 0,
            output,
        };
        self.nanos(&self.rates(None), &tokens, batch)
    }

    /// Like [`Pricing::cost`], but at the rates of the context-length tier a prompt of
    /// `prompt_tokens` per call falls in (base rates below every tier), so the premium of a
    /// tier is the difference of two such costs.
    pub fn cost_for_prompt(
        &self,
        prompt_tokens: i64,
        fresh_input: i64,
        cached_input: i64,
        output: i64,
        batch: bool,
    ) -> Nanos {
        let tokens = TokenCounts {
            input: fresh_input + cached_input,
            cache_read: cached_input,
            cache_write: 0,
            output,
        };
        self.nanos(&self.rates(self.tier(prompt_tokens)), &tokens, batch)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default = "default_schema")]
    schema: u32,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    model: Vec<PriceEntry>,
}

fn default_schema() -> u32 {
    SCHEMA
}

fn parse_file(text: &str) -> Result<CatalogFile, CatalogError> {
    let file: CatalogFile = toml::from_str(text)?;
    if file.schema != SCHEMA {
        return Err(CatalogError::Schema(file.schema));
    }
    for e in &file.model {
        e.check()?;
    }
    Ok(file)
}

#[derive(Debug, Clone)]
pub struct PriceCatalog {
    version: String,
    entries: Vec<PriceEntry>,
    /// Lower-cased model name or alias → entry indexes, oldest `effective_from` first.
    by_name: HashMap<String, Vec<usize>>,
}

impl PriceCatalog {
    /// The catalog shipped in the binary.
    pub fn builtin() -> Result<PriceCatalog, CatalogError> {
        Self::from_toml(BUILTIN)
    }

    pub fn from_toml(text: &str) -> Result<PriceCatalog, CatalogError> {
        let file = parse_file(text)?;
        Self::build(
            file.version.unwrap_or_else(|| "unversioned".into()),
            file.model,
        )
    }

    /// This catalog with the entries of an operator's prices file (same format; `version`
    /// optional): an entry with the same model and `effective_from` as a catalog entry replaces
    /// it, any other is added.
    pub fn with_overrides(&self, text: &str) -> Result<PriceCatalog, CatalogError> {
        let file = parse_file(text)?;
        let mut entries = self.entries.clone();
        for mut o in file.model {
            o.overridden = true;
            let same = entries.iter().position(|e| {
                e.model.eq_ignore_ascii_case(&o.model) && e.effective_from == o.effective_from
            });
            match same {
                Some(i) => entries[i] = o,
                None => entries.push(o),
            }
        }
        let version = format!(
            "{}+{}",
            self.version,
            file.version.unwrap_or_else(|| "local".into())
        );
        Self::build(version, entries)
    }

    fn build(version: String, entries: Vec<PriceEntry>) -> Result<PriceCatalog, CatalogError> {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let mut names: Vec<String> = std::iter::once(&e.model)
                .chain(&e.aliases)
                .map(|n| n.to_ascii_lowercase())
                .collect();
            names.dedup();
            for name in names {
                by_name.entry(name).or_default().push(i);
            }
        }
        for list in by_name.values_mut() {
            list.sort_by_key(|&i| entries[i].effective_from);
            for pair in list.windows(2) {
                if entries[pair[0]].effective_from == entries[pair[1]].effective_from {
                    return Err(CatalogError::Invalid(
                        entries[pair[1]].id(),
                        "a model or alias is listed twice for the same date".into(),
                    ));
                }
            }
        }
        Ok(PriceCatalog {
            version,
            entries,
            by_name,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every entry, older prices of a model included.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The entry indexes for a model name as providers and gateways report it: exact
    /// (case-insensitive), else without a `provider/` prefix, else without a trailing snapshot
    /// date (`gpt-4o-2024-08-06`, `claude-3-5-haiku-20241022`, `…@20241022`).
    fn indexes(&self, model: &str) -> Option<&[usize]> {
        let lower = model.trim().to_ascii_lowercase();
        let unprefixed = lower.rsplit('/').next().unwrap_or(&lower);
        [lower.as_str(), unprefixed, strip_snapshot_date(unprefixed)]
            .into_iter()
            .find_map(|n| self.by_name.get(n))
            .map(Vec::as_slice)
    }

    /// The current prices of `model`, or `None` when it is unpriced.
    pub fn lookup(&self, model: &str) -> Option<Pricing<'_>> {
        let i = *self.indexes(model)?.last()?;
        Some(self.pricing(i))
    }

    /// The prices of `model` in force at `ts`: the newest entry effective on or before that
    /// day, or the model's first entry for calls older than it.
    pub fn lookup_at(&self, model: &str, ts: DateTime<Utc>) -> Option<Pricing<'_>> {
        let list = self.indexes(model)?;
        let day = ts.date_naive();
        let i = list
            .iter()
            .rev()
            .find(|&&i| self.entries[i].effective_from <= day)
            .or_else(|| list.first())?;
        Some(self.pricing(*i))
    }

    fn pricing(&self, i: usize) -> Pricing<'_> {
        Pricing {
            entry: &self.entries[i],
            version: &self.version,
        }
    }
}

/// `gpt-4o-2024-08-06` → `gpt-4o`; `claude-3-5-haiku-20241022` / `…@20241022` →
/// `claude-3-5-haiku`; anything else unchanged.
fn strip_snapshot_date(name: &str) -> &str {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = name.rsplit_once('@')
        && digits(tail)
    {
        return head;
    }
    if let Some((head, tail)) = name.rsplit_once('-')
        && tail.len() == 8
        && digits(tail)
    {
        return head;
    }
    // `-YYYY-MM-DD`: the last 11 bytes.
    if name.len() > 11 && name.is_char_boundary(name.len() - 11) {
        let (head, tail) = name.split_at(name.len() - 11);
        let b = tail.as_bytes();
        if b[0] == b'-'
            && b[5] == b'-'
            && b[8] == b'-'
            && [&tail[1..5], &tail[6..8], &tail[9..11]]
                .iter()
                .all(|p| digits(p))
        {
            return head;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: &str) -> DateTime<Utc> {
        format!("{day}T12:00:00Z").parse().unwrap()
    }

    #[test]
    fn builtin_catalog_loads_and_prices_by_hand() {
        let c = PriceCatalog::builtin().unwrap();
        let p = c.lookup("GPT-4o").unwrap();
        // 1000 fresh × $2.50 + 200 cached × $1.25 + 300 out × $10 per 1M
        // = 0.0025 + 0.00025 + 0.003 = $0.00575
        assert_eq!(p.cost(1000, 200, 300, false), Nanos(5_750_000));
        assert_eq!(p.cost(1000, 200, 300, true), Nanos(2_875_000));
        assert_eq!(p.source_id(), "openai/gpt-4o@2024-10-02");
        assert!(c.lookup("acme-llama-70b").is_none());
    }

    #[test]
    fn prices_by_the_calls_date() {
        let c = PriceCatalog::builtin().unwrap();
        let t = TokenCounts {
            input: 1000,
            cache_read: 0,
            cache_write: 0,
            output: 1000,
        };
        // Before 2024-10-02: $5 + $15 per 1M → 1000 × 5 × 1000 + 1000 × 15 × 1000 nanos.
        let old = c.lookup_at("gpt-4o", at("2024-06-01")).unwrap();
        assert_eq!(old.quote(&t, false, 1).cost, Nanos(20_000_000));
        assert_eq!(old.source_id(), "openai/gpt-4o@2024-05-13");
        // From 2024-10-02: $2.50 + $10 → $0.0125.
        let new = c.lookup_at("gpt-4o", at("2024-10-02")).unwrap();
        assert_eq!(new.quote(&t, false, 1).cost, Nanos(12_500_000));
        // Older than the first entry: the first entry.
        let first = c.lookup_at("gpt-4o", at("2023-01-01")).unwrap();
        assert_eq!(first.source_id(), "openai/gpt-4o@2024-05-13");
    }

    #[test]
    fn long_prompts_take_the_tier_price_with_cache_reads_and_writes() {
        let c = PriceCatalog::builtin().unwrap();
        let p = c.lookup_at("claude-sonnet-4", at("2025-09-01")).unwrap();
        // 200,000 prompt tokens is not above the threshold: base prices.
        // 100,000 fresh × $3 + 60,000 read × $0.30 + 40,000 write × $3.75 + 1,000 out × $15
        // = 0.3 + 0.018 + 0.15 + 0.015 = $0.483
        let at_limit = TokenCounts {
            input: 200_000,
            cache_read: 60_000,
            cache_write: 40_000,
            output: 1_000,
        };
        let q = p.quote(&at_limit, false, 1);
        assert_eq!(q.cost, Nanos(483_000_000));
        assert_eq!(q.source_id, "anthropic/claude-sonnet-4@2025-08-12");
        // One token more: the whole call at long-context prices.
        // 100,001 × $6 + 60,000 × $0.60 + 40,000 × $7.50 + 1,000 × $22.50
        // = 0.600006 + 0.036 + 0.3 + 0.0225 = $0.958506; batch halves it.
        let above = TokenCounts {
            input: 200_001,
            ..at_limit
        };
        let q = p.quote(&above, false, 1);
        assert_eq!(q.cost, Nanos(958_506_000));
        assert_eq!(q.source_id, "anthropic/claude-sonnet-4@2025-08-12>200000");
        assert_eq!(p.quote(&above, true, 1).cost, Nanos(479_253_000));
        // Before the long-context window existed there was no tier.
        // An aggregate of two such calls averages 100,000 prompt tokens: no tier.
        let two = TokenCounts {
            input: 200_001,
            cache_read: 0,
            cache_write: 0,
            output: 0,
        };
        assert!(!p.quote(&two, false, 2).source_id.contains('>'));
        let early = c.lookup_at("claude-sonnet-4", at("2025-06-01")).unwrap();
        assert!(
            early
                .quote(&above, false, 1)
                .source_id
                .ends_with("@2025-05-22")
        );
    }

    #[test]
    fn resolves_snapshot_names_prefixes_and_aliases() {
        let c = PriceCatalog::builtin().unwrap();
        for name in [
            "gpt-4o-2024-08-06",
            "openai/gpt-4o",
            "azure/gpt-4o-2024-08-06",
        ] {
            assert_eq!(c.lookup(name).unwrap().entry.model, "gpt-4o", "{name}");
        }
        for name in [
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku@20241022",
            "claude-3-5-haiku-latest",
        ] {
            assert_eq!(
                c.lookup(name).unwrap().entry.model,
                "claude-3-5-haiku",
                "{name}"
            );
        }
        assert!(c.lookup("gpt-4o-2024").is_none());
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
    fn operator_file_overrides_and_adds() {
        let c = PriceCatalog::builtin().unwrap();
        let file = r#"version = "acme-2026-11"
[[model]]
provider = "openai"
model = "gpt-4o"
input = 2.00
output = 8.00
effective_from = "2024-10-02"
source = "contract ACME-42"

[[model]]
provider = "self-hosted"
model = "llama-3.1-70b-internal"
input = 0.20
output = 0.20
effective_from = "2024-01-01"
source = "internal GPU cost model"
"#;
        let o = c.with_overrides(file).unwrap();
        assert_eq!(o.version(), "2026-11-25+acme-2026-11");
        let p = o.lookup("gpt-4o").unwrap();
        assert_eq!(p.source_id(), "override:openai/gpt-4o@2024-10-02");
        assert_eq!(p.cost(1_000_000, 0, 0, false), Nanos(2_000_000_000));
        // The older built-in entry still prices older calls.
        let old = o.lookup_at("gpt-4o", at("2024-06-01")).unwrap();
        assert_eq!(old.source_id(), "openai/gpt-4o@2024-05-13");
        assert!(o.lookup("llama-3.1-70b-internal").is_some());
        assert!(c.lookup("llama-3.1-70b-internal").is_none());
    }

    #[test]
    fn rejects_bad_prices_schemas_and_duplicates() {
        let entry = |input: &str, date: &str| {
            format!(
                "[[model]]\nprovider = \"p\"\nmodel = \"m\"\ninput = {input}\noutput = 1.0\neffective_from = \"{date}\"\nsource = \"s\"\n"
            )
        };
        assert!(PriceCatalog::from_toml(&entry("-1.0", "2026-01-01")).is_err());
        assert!(
            PriceCatalog::from_toml(&format!("schema = 1\n{}", entry("1.0", "2026-01-01")))
                .is_err()
        );
        let twice = format!(
            "{}{}",
            entry("1.0", "2026-01-01"),
            entry("2.0", "2026-01-01")
        );
        assert!(PriceCatalog::from_toml(&twice).is_err());
        let dated = format!(
            "{}{}",
            entry("1.0", "2026-01-01"),
            entry("2.0", "2026-02-01")
        );
        assert!(PriceCatalog::from_toml(&dated).is_ok());
        assert!(
            PriceCatalog::from_toml(&format!("{}typo = 1\n", entry("1.0", "2026-01-01"))).is_err()
        );
    }
}
