//! The price catalog: per-model prices per 1M tokens with effective dates, context-length
//! tiers, cache read/write prices (5-minute and 1-hour writes), batch discounts, priority and
//! flex service tiers, the providers that resell a model at the same prices, and the public
//! source of each price. The built-in catalog is a versioned TOML data file
//! (`data/prices.toml`); an operator's prices file — Apogee's TOML or LiteLLM's
//! `model_prices_and_context_window.json` ([`price_map`]) — adds to or overrides it.
//!
//! Pricing a call resolves the name it reports (`names.rs`) with the provider that served it,
//! and names the entry that priced it. A model the catalog does not know has no price, never a
//! price of zero.

mod names;
pub mod price_map;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::money::Nanos;
use crate::tokens::TokenCounts;

pub use names::{provider_id, strip_gateway_prefixes};

const BUILTIN: &str = include_str!("../../data/prices.toml");
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
    #[error("not a LiteLLM price map: {0}")]
    PriceMap(String),
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
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
}

/// Prices of a service tier (OpenAI's and Google's `priority` and `flex`) that replace the
/// standard ones for calls served on it, US dollars per 1M tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPrices {
    pub input: f64,
    pub output: f64,
    /// The tier's input price when absent.
    #[serde(default, alias = "cache_read")]
    pub cached_input: Option<f64>,
    /// The tier's input price when absent.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// Where an entry came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Origin {
    #[default]
    Builtin,
    /// The operator's TOML prices file: replaces the built-in entry of the same model and
    /// date, or adds one.
    Override,
    /// The operator's LiteLLM price map: replaces every built-in entry of the same provider
    /// and name, whatever its date.
    PriceMap,
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
    /// Other providers that bill this model at these same prices (Bedrock and Vertex AI for
    /// Claude, Azure OpenAI for OpenAI's models), as [`provider_id`]s.
    #[serde(default)]
    pub also_billed_by: Vec<String>,
    pub input: f64,
    pub output: f64,
    /// Price of prompt tokens read from cache; the input price when absent.
    #[serde(default, alias = "cache_read")]
    pub cached_input: Option<f64>,
    /// Price of prompt tokens written to cache (Anthropic: with the 5-minute TTL); the input
    /// price when absent.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Price of prompt tokens written to cache with the 1-hour TTL; `cache_write` when absent.
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
    /// Fraction taken off every price by the provider's batch API (0.5 = half price).
    #[serde(default)]
    pub batch_discount: f64,
    /// Prices of calls served on the priority tier; such calls are unpriced without them.
    #[serde(default)]
    pub priority: Option<TierPrices>,
    /// Prices of calls served on the flex tier; such calls are unpriced without them.
    #[serde(default)]
    pub flex: Option<TierPrices>,
    /// Fraction added to every price for calls through a Bedrock geographic inference profile
    /// (`us.`, `eu.`, …) rather than the global one.
    #[serde(default)]
    pub regional_premium: f64,
    pub effective_from: NaiveDate,
    /// The day the provider stops serving the model, when announced.
    #[serde(default)]
    pub retires_on: Option<NaiveDate>,
    pub source: String,
    #[serde(default)]
    pub cheaper_alternative: Option<String>,
    /// Context-length tiers, any order.
    #[serde(default, rename = "tier")]
    pub tiers: Vec<PriceTier>,
    #[serde(skip)]
    pub origin: Origin,
}

impl PriceEntry {
    /// `openai/gpt-4o@2024-10-02`, prefixed `override:` when the operator's prices file
    /// supplied it (`@price-map` when that was a LiteLLM price map, which has no dates).
    pub fn id(&self) -> String {
        match self.origin {
            Origin::Builtin => format!("{}/{}@{}", self.provider, self.model, self.effective_from),
            Origin::Override => format!(
                "override:{}/{}@{}",
                self.provider, self.model, self.effective_from
            ),
            Origin::PriceMap => format!("override:{}/{}@price-map", self.provider, self.model),
        }
    }

    /// Whether the model is retired on `day` (it may still price older calls).
    pub fn retired_on(&self, day: NaiveDate) -> bool {
        self.retires_on.is_some_and(|r| r <= day)
    }

    fn check(&self) -> Result<(), CatalogError> {
        let bad = |m: &str| Err(CatalogError::Invalid(self.id(), m.into()));
        let mut prices = vec![
            Some(self.input),
            Some(self.output),
            self.cached_input,
            self.cache_write,
            self.cache_write_1h,
        ];
        for t in &self.tiers {
            prices.extend([
                Some(t.input),
                Some(t.output),
                t.cached_input,
                t.cache_write,
                t.cache_write_1h,
            ]);
            if t.above_input_tokens <= 0 {
                return bad("a tier's above_input_tokens must be positive");
            }
        }
        for s in [&self.priority, &self.flex].into_iter().flatten() {
            prices.extend([Some(s.input), Some(s.output), s.cached_input, s.cache_write]);
        }
        if prices.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
            return bad("negative or non-finite price");
        }
        if !(0.0..1.0).contains(&self.batch_discount) {
            return bad("batch_discount must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.regional_premium) {
            return bad("regional_premium must be in [0, 1)");
        }
        if self.model.trim().is_empty() || self.provider.trim().is_empty() {
            return bad("provider and model must not be empty");
        }
        if self.provider != provider_id(&self.provider)
            || self.also_billed_by.iter().any(|p| *p != provider_id(p))
        {
            return bad("providers must be written as their canonical ids (see docs)");
        }
        Ok(())
    }
}

/// The service tier a call was served on, as OpenAI's and Google's APIs report it
/// (`service_tier`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServiceTier {
    /// `default`, `auto`, `standard`, or none reported.
    #[default]
    Standard,
    Priority,
    Flex,
    /// OpenAI's Scale Tier: capacity bought in advance, no per-token list price.
    Scale,
}

impl ServiceTier {
    /// The names accepted in usage records (`batch` is Anthropic's name for a Batch API call).
    pub const NAMES: [&str; 7] = [
        "auto", "default", "standard", "priority", "flex", "scale", "batch",
    ];

    /// The tier of a reported `service_tier` (case-insensitive); `None` for unknown names.
    pub fn parse(name: &str) -> Option<ServiceTier> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" | "default" | "standard" | "batch" => Some(ServiceTier::Standard),
            "priority" => Some(ServiceTier::Priority),
            "flex" => Some(ServiceTier::Flex),
            "scale" => Some(ServiceTier::Scale),
            _ => None,
        }
    }
}

/// A catalog entry together with the catalog version and how it was reached: what prices a
/// call.
#[derive(Debug, Clone, Copy)]
pub struct Pricing<'a> {
    pub entry: &'a PriceEntry,
    pub version: &'a str,
    /// The provider that billed the call: the entry's, or one of its `also_billed_by`.
    pub provider: &'a str,
    /// Through a Bedrock geographic inference profile of an entry with a regional premium.
    pub regional: bool,
}

/// What a usage record says about how its calls are billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BilledCalls {
    pub tokens: TokenCounts,
    /// Sent through the provider's Batch API.
    pub batch: bool,
    /// Calls the tokens are the sum of (1 for one call).
    pub calls: i64,
    pub service_tier: ServiceTier,
}

/// A priced call: its cost and the id of what priced it (entry, plus `>N` for a context tier,
/// `#priority`/`#flex` for a service tier, `+regional` for a regional premium).
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
    cache_write_1h: f64,
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
            Some(t) => {
                let cache_write = t.cache_write.unwrap_or(t.input);
                Rates {
                    input: t.input,
                    output: t.output,
                    cache_read: t.cached_input.unwrap_or(t.input),
                    cache_write,
                    cache_write_1h: t.cache_write_1h.unwrap_or(cache_write),
                }
            }
            None => {
                let cache_write = e.cache_write.unwrap_or(e.input);
                Rates {
                    input: e.input,
                    output: e.output,
                    cache_read: e.cached_input.unwrap_or(e.input),
                    cache_write,
                    cache_write_1h: e.cache_write_1h.unwrap_or(cache_write),
                }
            }
        }
    }

    fn service_rates(prices: &TierPrices) -> Rates {
        let cache_write = prices.cache_write.unwrap_or(prices.input);
        Rates {
            input: prices.input,
            output: prices.output,
            cache_read: prices.cached_input.unwrap_or(prices.input),
            cache_write,
            cache_write_1h: cache_write,
        }
    }

    fn nanos(rates: &Rates, t: &TokenCounts, factor: f64) -> Nanos {
        let write_1h = t.cache_write_1h.clamp(0, t.cache_write.max(0));
        // Prices are dollars per 1M tokens, so tokens × price × 1000 is nano-dollars.
        let nanos = (t.fresh_input() as f64 * rates.input
            + t.cache_read as f64 * rates.cache_read
            + (t.cache_write - write_1h) as f64 * rates.cache_write
            + write_1h as f64 * rates.cache_write_1h
            + t.output as f64 * rates.output)
            * 1000.0;
        Nanos((nanos * factor).round() as i128)
    }

    fn regional_factor(&self) -> f64 {
        if self.regional {
            1.0 + self.entry.regional_premium
        } else {
            1.0
        }
    }

    /// Cost of `calls.calls` calls with `calls.tokens` in total, with the context-length tier
    /// of their average prompt, the service tier they were served on, the batch discount and
    /// any regional premium applied. `None` when the catalog has no price for that service
    /// tier (or for a service tier above a context-length tier, which it does not list).
    pub fn quote(&self, calls: &BilledCalls) -> Option<Quote> {
        let tier = self.tier(calls.tokens.input / calls.calls.max(1));
        let mut source_id = self.source_id();
        if let Some(t) = tier {
            source_id.push_str(&format!(">{}", t.above_input_tokens));
        }
        let service = match calls.service_tier {
            ServiceTier::Standard => None,
            ServiceTier::Priority => Some(("priority", self.entry.priority.as_ref()?)),
            ServiceTier::Flex => Some(("flex", self.entry.flex.as_ref()?)),
            ServiceTier::Scale => return None,
        };
        let (rates, mut factor) = match service {
            Some(_) if tier.is_some() => return None,
            Some((name, prices)) => {
                source_id.push_str(&format!("#{name}"));
                (Self::service_rates(prices), 1.0)
            }
            None if calls.batch => (self.rates(tier), 1.0 - self.entry.batch_discount),
            None => (self.rates(tier), 1.0),
        };
        if self.regional && self.entry.regional_premium > 0.0 {
            factor *= self.regional_factor();
            source_id.push_str("+regional");
        }
        Some(Quote {
            cost: Self::nanos(&rates, &calls.tokens, factor),
            source_id,
        })
    }

    /// Cost at the base (untiered, standard) prices of a sum of calls, for estimates over
    /// aggregates.
    pub fn cost(&self, fresh_input: i64, cached_input: i64, output: i64, batch: bool) -> Nanos {
        self.cost_at(None, fresh_input, cached_input, output, batch)
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
        self.cost_at(
            self.tier(prompt_tokens),
            fresh_input,
            cached_input,
            output,
            batch,
        )
    }

    fn cost_at(
        &self,
        tier: Option<&PriceTier>,
        fresh_input: i64,
        cached_input: i64,
        output: i64,
        batch: bool,
    ) -> Nanos {
        let tokens = TokenCounts {
            input: fresh_input + cached_input,
            cache_read: cached_input,
            output,
            ..TokenCounts::default()
        };
        let factor = if batch {
            1.0 - self.entry.batch_discount
        } else {
            1.0
        };
        Self::nanos(&self.rates(tier), &tokens, factor)
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

/// The format of an operator's prices file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricesFormat {
    /// Apogee's TOML (the built-in catalog's format).
    Toml,
    /// LiteLLM's `model_prices_and_context_window.json`.
    LitellmJson,
}

impl PricesFormat {
    /// A JSON object is a LiteLLM price map; anything else is read as TOML.
    pub fn detect(text: &str) -> PricesFormat {
        if text.trim_start().starts_with('{') {
            PricesFormat::LitellmJson
        } else {
            PricesFormat::Toml
        }
    }
}

#[derive(Debug, Clone)]
pub struct PriceCatalog {
    version: String,
    entries: Vec<PriceEntry>,
    /// Lower-cased model name or alias → entry indexes, in file order.
    by_name: HashMap<String, Vec<usize>>,
    /// Every provider id an entry names (its own or `also_billed_by`).
    providers: HashSet<String>,
}

/// How a reported name resolved: the entries of one provider for one name, oldest first.
struct Resolved<'a> {
    indexes: Vec<usize>,
    provider: &'a str,
    regional: bool,
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

    /// A catalog of a LiteLLM price map alone (see [`price_map`]).
    pub fn from_price_map(text: &str) -> Result<PriceCatalog, CatalogError> {
        let map = price_map::parse(text)?;
        Self::build("litellm".into(), map.entries)
    }

    /// This catalog with the entries of an operator's prices file in either format
    /// ([`PricesFormat::detect`]).
    pub fn with_prices_file(&self, text: &str) -> Result<PriceCatalog, CatalogError> {
        match PricesFormat::detect(text) {
            PricesFormat::Toml => self.with_overrides(text),
            PricesFormat::LitellmJson => self.with_price_map(text),
        }
    }

    /// This catalog with the entries of an operator's TOML prices file (same format; `version`
    /// optional): an entry with the same provider, model and `effective_from` as a catalog
    /// entry replaces it, any other is added.
    pub fn with_overrides(&self, text: &str) -> Result<PriceCatalog, CatalogError> {
        let file = parse_file(text)?;
        let mut entries = self.entries.clone();
        for mut o in file.model {
            o.origin = Origin::Override;
            let same = entries.iter().position(|e| {
                e.provider == o.provider
                    && e.model.eq_ignore_ascii_case(&o.model)
                    && e.effective_from == o.effective_from
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

    /// This catalog with the entries of a LiteLLM price map: each replaces every entry of the
    /// same provider and model, whatever its date (the map has no dates: it is the operator's
    /// current truth), and prices the names it lists before any built-in alias does.
    pub fn with_price_map(&self, text: &str) -> Result<PriceCatalog, CatalogError> {
        let map = price_map::parse(text)?;
        let replaced: HashSet<(String, String)> = map
            .entries
            .iter()
            .map(|e| (e.provider.clone(), e.model.to_ascii_lowercase()))
            .collect();
        let mut entries: Vec<PriceEntry> = self
            .entries
            .iter()
            .filter(|e| !replaced.contains(&(e.provider.clone(), e.model.to_ascii_lowercase())))
            .cloned()
            .collect();
        entries.extend(map.entries);
        Self::build(format!("{}+litellm", self.version), entries)
    }

    fn build(version: String, entries: Vec<PriceEntry>) -> Result<PriceCatalog, CatalogError> {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            providers.insert(e.provider.clone());
            providers.extend(e.also_billed_by.iter().cloned());
            let mut names: Vec<String> = std::iter::once(&e.model)
                .chain(&e.aliases)
                .map(|n| n.trim().to_ascii_lowercase())
                .collect();
            names.sort();
            names.dedup();
            for name in names {
                by_name.entry(name).or_default().push(i);
            }
        }
        for list in by_name.values() {
            let mut seen = HashSet::new();
            for &i in list {
                let e = &entries[i];
                if !seen.insert((&e.provider, e.effective_from, e.origin)) {
                    return Err(CatalogError::Invalid(
                        e.id(),
                        "a model or alias is listed twice for the same provider and date".into(),
                    ));
                }
            }
        }
        Ok(PriceCatalog {
            version,
            entries,
            by_name,
            providers,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every entry, older prices of a model included.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// Whether any entry is billed by `provider` (a [`provider_id`]).
    pub fn knows_provider(&self, provider: &str) -> bool {
        self.providers.contains(provider)
    }

    /// The entries that price `model` as reported by `provider`.
    ///
    /// The provider is the record's when the catalog knows it, else the one the name's shape
    /// implies (`bedrock/…`, `us.anthropic.…`, a Vertex path), else none. The name's spellings
    /// ([`names::parse`]) are tried in order; the first with entries for that provider (its
    /// own or billed by it at the same prices) wins, so a provider never gets another's prices.
    /// Without a provider, a name listed by several providers takes the one listed first (the
    /// model's maker, before resellers).
    fn resolve(&self, provider: Option<&str>, model: &str) -> Option<Resolved<'_>> {
        let name = names::parse(model);
        let hint = provider
            .map(provider_id)
            .filter(|p| self.knows_provider(p))
            .or_else(|| name.provider.clone().filter(|p| self.knows_provider(p)));
        for candidate in &name.candidates {
            let Some(list) = self.by_name.get(candidate) else {
                continue;
            };
            let billed_by = |i: &usize, p: &str| {
                let e = &self.entries[*i];
                e.provider == p || e.also_billed_by.iter().any(|b| b == p)
            };
            let (provider, mut indexes): (&str, Vec<usize>) = match &hint {
                Some(h) => {
                    // The provider's own entries first, then those it resells.
                    let own: Vec<usize> = list
                        .iter()
                        .copied()
                        .filter(|&i| self.entries[i].provider == *h)
                        .collect();
                    let chosen = if own.is_empty() {
                        let Some(&first) = list.iter().find(|i| billed_by(i, h)) else {
                            continue;
                        };
                        let maker = &self.entries[first].provider;
                        list.iter()
                            .copied()
                            .filter(|&i| self.entries[i].provider == *maker && billed_by(&i, h))
                            .collect()
                    } else {
                        own
                    };
                    let p = self.providers.get(h.as_str()).map_or("", String::as_str);
                    (p, chosen)
                }
                None => {
                    let maker = &self.entries[list[0]].provider;
                    let chosen = list
                        .iter()
                        .copied()
                        .filter(|&i| self.entries[i].provider == *maker)
                        .collect();
                    (maker.as_str(), chosen)
                }
            };
            if indexes
                .iter()
                .any(|&i| self.entries[i].origin == Origin::PriceMap)
            {
                indexes.retain(|&i| self.entries[i].origin == Origin::PriceMap);
            }
            indexes.sort_by_key(|&i| self.entries[i].effective_from);
            return Some(Resolved {
                indexes,
                provider,
                regional: name.regional && provider == "bedrock",
            });
        }
        None
    }

    fn pricing<'a>(&'a self, r: &Resolved<'a>, i: usize) -> Pricing<'a> {
        Pricing {
            entry: &self.entries[i],
            version: &self.version,
            provider: r.provider,
            regional: r.regional,
        }
    }

    /// The current prices of `model` (no provider named), or `None` when it is unpriced.
    pub fn lookup(&self, model: &str) -> Option<Pricing<'_>> {
        let r = self.resolve(None, model)?;
        let i = *r.indexes.last()?;
        Some(self.pricing(&r, i))
    }

    /// The prices of `model` (no provider named) in force at `ts`.
    pub fn lookup_at(&self, model: &str, ts: DateTime<Utc>) -> Option<Pricing<'_>> {
        self.lookup_for(None, model, ts)
    }

    /// The prices of `model` as reported by `provider` in force at `ts`: the newest entry
    /// effective on or before that day, or the model's first entry for calls older than it.
    pub fn lookup_for(
        &self,
        provider: Option<&str>,
        model: &str,
        ts: DateTime<Utc>,
    ) -> Option<Pricing<'_>> {
        let r = self.resolve(provider, model)?;
        let day = ts.date_naive();
        let i = r
            .indexes
            .iter()
            .rev()
            .find(|&&i| self.entries[i].effective_from <= day)
            .or_else(|| r.indexes.first())?;
        Some(self.pricing(&r, *i))
    }

    /// The catalog's name for `model` as reported by `provider` (the entry's `model`), so one
    /// model reported under several names (`gpt-4o`, `gpt-4o-2024-08-06`) is shown as one;
    /// `None` when unpriced. A snapshot priced on its own keeps its own name.
    pub fn model_name(&self, provider: Option<&str>, model: &str) -> Option<&str> {
        let r = self.resolve(provider, model)?;
        let i = *r.indexes.last()?;
        Some(self.entries[i].model.as_str())
    }

    /// Up to `n` catalog names closest to `model` (by Jaro–Winkler similarity of its base
    /// spelling), best first: what `apogee prices check` suggests for an unpriced name.
    pub fn closest_names(&self, model: &str, n: usize) -> Vec<&str> {
        let name = names::parse(model);
        let base = name.candidates.last().map_or("", String::as_str);
        let mut scored: Vec<(f64, &str)> = self
            .by_name
            .keys()
            .map(|k| (strsim::jaro_winkler(base, k), k.as_str()))
            .filter(|(score, _)| *score >= 0.75)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.into_iter().take(n).map(|(_, k)| k).collect()
    }
}

#[cfg(test)]
mod tests;
