//! The usage record of PROTOCOL.md §8 (one LLM API call made by a customer's application) and
//! its validation. Token convention: `input_tokens` counts every prompt token, cached ones
//! included; `cached_input_tokens` says how many of those were read from the provider's cache.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Nanos;

/// Longest accepted string field (model, provider, user, feature, request_id, …).
pub const MAX_FIELD_CHARS: usize = 256;
/// More tokens than any model accepts in one call; larger counts are input errors.
pub const MAX_TOKENS: i64 = 100_000_000;

/// One usage record as sent by a client, before pricing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    #[serde(default)]
    pub request_id: Option<String>,
    pub ts: DateTime<Utc>,
    #[serde(default)]
    pub provider: Option<String>,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    #[serde(default)]
    pub cached_input_tokens: Option<i64>,
    #[serde(default)]
    pub latency_ms: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub feature: Option<String>,
    #[serde(default)]
    pub prompt_hash: Option<String>,
    #[serde(default)]
    pub batch: Option<bool>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// Why a record was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl UsageRecord {
    /// Checks ranges and lengths that serde's types do not.
    pub fn validate(&self) -> Result<(), RecordError> {
        let bad = |m: String| Err(RecordError::Invalid(m));
        if self.model.trim().is_empty() {
            return bad("`model` must not be empty".into());
        }
        for (name, value) in [
            ("request_id", self.request_id.as_deref()),
            ("provider", self.provider.as_deref()),
            ("model", Some(self.model.as_str())),
            ("user", self.user.as_deref()),
            ("feature", self.feature.as_deref()),
            ("prompt_hash", self.prompt_hash.as_deref()),
            ("status", self.status.as_deref()),
        ] {
            if let Some(v) = value
                && v.chars().count() > MAX_FIELD_CHARS
            {
                return bad(format!(
                    "`{name}` is longer than {MAX_FIELD_CHARS} characters"
                ));
            }
        }
        for (name, value) in [
            ("input_tokens", Some(self.input_tokens)),
            ("output_tokens", Some(self.output_tokens)),
            ("cached_input_tokens", self.cached_input_tokens),
        ] {
            if let Some(v) = value
                && !(0..=MAX_TOKENS).contains(&v)
            {
                return bad(format!("`{name}` must be between 0 and {MAX_TOKENS}"));
            }
        }
        if self.cached_tokens() > self.input_tokens {
            return bad("`cached_input_tokens` cannot exceed `input_tokens`".into());
        }
        if let Some(l) = self.latency_ms
            && !(0..=86_400_000).contains(&l)
        {
            return bad("`latency_ms` must be between 0 and 86400000".into());
        }
        if let Some(c) = self.cost_usd
            && (!c.is_finite() || !(0.0..=1_000_000.0).contains(&c))
        {
            return bad("`cost_usd` must be between 0 and 1000000".into());
        }
        Ok(())
    }

    pub fn cached_tokens(&self) -> i64 {
        self.cached_input_tokens.unwrap_or(0)
    }

    pub fn is_batch(&self) -> bool {
        self.batch.unwrap_or(false)
    }

    /// The client-sent cost, which wins over the catalog.
    pub fn client_cost(&self) -> Option<Nanos> {
        self.cost_usd.map(Nanos::from_usd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> UsageRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn minimal_record_parses_and_validates() {
        let r = record(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":1,"output_tokens":2}"#,
        );
        assert!(r.validate().is_ok());
        assert_eq!(r.cached_tokens(), 0);
    }

    #[test]
    fn rejects_negative_tokens_and_cache_above_input() {
        let r = record(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":-1,"output_tokens":2}"#,
        );
        assert!(r.validate().is_err());
        let r = record(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":5,"output_tokens":2,"cached_input_tokens":6}"#,
        );
        assert!(r.validate().is_err());
    }
}

/// A record with its cost decided: the client's `cost_usd`, else the catalog's price, else
/// unpriced (`cost: None`).
#[derive(Debug, Clone, PartialEq)]
pub struct PricedRecord {
    pub record: UsageRecord,
    pub cost: Option<Nanos>,
    /// `client`, or the catalog entry id (`openai/gpt-4o@2026-11-01`); `None` when unpriced.
    pub price_source: Option<String>,
}

impl PricedRecord {
    pub fn price(record: UsageRecord, catalog: &crate::catalog::PriceCatalog) -> PricedRecord {
        if let Some(cost) = record.client_cost() {
            return PricedRecord {
                record,
                cost: Some(cost),
                price_source: Some("client".into()),
            };
        }
        match catalog.lookup(&record.model) {
            Some(p) => {
                let cached = record.cached_tokens();
                let cost = p.cost(
                    record.input_tokens - cached,
                    cached,
                    record.output_tokens,
                    record.is_batch(),
                );
                let source = p.source_id();
                PricedRecord {
                    record,
                    cost: Some(cost),
                    price_source: Some(source),
                }
            }
            None => PricedRecord {
                record,
                cost: None,
                price_source: None,
            },
        }
    }

    /// The provider as given, else the catalog's, else `unknown`.
    pub fn provider(&self, catalog: &crate::catalog::PriceCatalog) -> String {
        self.record
            .provider
            .clone()
            .or_else(|| {
                catalog
                    .lookup(&self.record.model)
                    .map(|p| p.entry.provider.clone())
            })
            .unwrap_or_else(|| "unknown".into())
    }
}
