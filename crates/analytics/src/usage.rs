//! The usage record of PROTOCOL.md §8 (one LLM API call made by a customer's application),
//! its extensions (cache writes and their TTL, reasoning tokens, stream, finish reason,
//! max_tokens, tags, request count, service tier, aggregate buckets), its validation, and its
//! normalisation into the canonical token convention of [`crate::tokens`] before it is priced
//! and stored.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::catalog::{BilledCalls, ServiceTier};
use crate::money::Nanos;
use crate::tokens::{CacheConvention, TokenCounts};

/// Longest accepted string field (model, provider, user, feature, request_id, …).
pub const MAX_FIELD_CHARS: usize = 256;
/// More tokens than any model accepts in one call; larger counts are input errors.
pub const MAX_TOKENS: i64 = 100_000_000;
/// Most tags one record may carry, and the longest tag key.
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_KEY_CHARS: usize = 64;
/// Most calls one aggregated record (an OpenAI usage-export bucket) may stand for.
pub const MAX_REQUEST_COUNT: i64 = 1_000_000_000;
/// The widest time bucket an aggregated record may cover: a year.
pub const MAX_BUCKET_SECONDS: i64 = 366 * 86_400;
/// Accepted record times: `[MIN_TS_DAY, MAX_TS_DAY)` UTC. Nothing was billed per token before
/// the first LLM APIs; a time outside is a unit or clock mistake (seconds for milliseconds, a
/// zero or far-future date) that would put calls in the wrong month.
pub const MIN_TS_DAY: (i32, u32, u32) = (2020, 1, 1);
pub const MAX_TS_DAY: (i32, u32, u32) = (2100, 1, 1);
/// Accepted `status` values (any case); `success`/`succeeded` are stored as `ok`,
/// `failure`/`failed` as `error`. Anything else but `ok` counts as an error.
pub const STATUSES: [&str; 10] = [
    "ok",
    "success",
    "succeeded",
    "error",
    "failure",
    "failed",
    "timeout",
    "cancelled",
    "canceled",
    "rate_limited",
];

fn day(d: (i32, u32, u32)) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(d.0, d.1, d.2)
        .unwrap_or_default()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
}

/// `ts` as RFC 3339, with an error that names the field and shows what was sent.
fn ts_field<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let text = match &value {
        serde_json::Value::String(s) => s.as_str(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "`ts` must be an RFC 3339 time such as 2026-11-20T08:15:02Z, got {other}"
            )));
        }
    };
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            let shown: String = text.chars().take(40).collect();
            serde::de::Error::custom(format!(
                "`ts` must be an RFC 3339 time such as 2026-11-20T08:15:02Z, got `{shown}` ({e})"
            ))
        })
}

/// Anthropic's split of cache writes by TTL (`usage.cache_creation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCreation {
    #[serde(default)]
    pub ephemeral_5m_input_tokens: Option<i64>,
    #[serde(default)]
    pub ephemeral_1h_input_tokens: Option<i64>,
}
/// Most one record may cost, client-sent or priced from the catalog: $1 billion. Far above any
/// real call or daily bucket, and small enough that the hourly sums a record is added to
/// always have room for several (`i64` nano-dollars hold $9.2 billion).
pub const MAX_RECORD_COST: Nanos = Nanos(1_000_000_000 * 1_000_000_000);
/// Tags read from a record before the rest are refused unread (validation reports the exact
/// limit, [`MAX_TAGS`]; this only keeps a hostile map from being held whole).
const TAGS_READ: usize = 4 * MAX_TAGS;

/// One usage record as sent by a client, before pricing. The §8 fields keep their meaning;
/// the rest are optional extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(deserialize_with = "ts_field")]
    pub ts: DateTime<Utc>,
    #[serde(default)]
    pub provider: Option<String>,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Prompt tokens read from the provider's cache.
    #[serde(default)]
    pub cached_input_tokens: Option<i64>,
    /// Anthropic's name for `cached_input_tokens`, used only when that is absent (a separate
    /// field rather than a serde alias, so a §8 record carrying both still parses as before).
    #[serde(default, skip_serializing)]
    pub cache_read_input_tokens: Option<i64>,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<i64>,
    /// The part of `cache_creation_input_tokens` written with a 1-hour TTL (Anthropic bills
    /// those at 2 × input rather than 1.25 ×).
    #[serde(default)]
    pub cache_creation_1h_input_tokens: Option<i64>,
    /// `5m` or `1h`: the TTL of every cache write of the record, when the 1-hour count is not
    /// given. Applied by [`UsageRecord::normalise`], not stored.
    #[serde(default, skip_serializing)]
    pub cache_ttl: Option<String>,
    /// Anthropic's `usage.cache_creation` object, read when the counts above are absent.
    /// Applied by [`UsageRecord::normalise`], not stored.
    #[serde(default, skip_serializing)]
    pub cache_creation: Option<CacheCreation>,
    /// Output tokens spent on reasoning (a part of `output_tokens`).
    #[serde(default)]
    pub reasoning_tokens: Option<i64>,
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
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default, deserialize_with = "bounded_tags")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Calls this record stands for (1 unless it is an aggregate, e.g. an OpenAI usage bucket).
    #[serde(default)]
    pub request_count: Option<i64>,
    /// The record sums the calls of a time bucket of this many seconds starting at `ts` (an
    /// OpenAI usage-export bucket): their times of day are unknown.
    #[serde(default)]
    pub bucket_seconds: Option<i64>,
    /// The service tier the provider served the call on (`default`, `priority`, `flex`, …;
    /// see [`ServiceTier::NAMES`]), lower-cased.
    #[serde(default)]
    pub service_tier: Option<String>,
    /// How `input_tokens` counts cached tokens as sent; absent means Apogee's canonical
    /// convention (cached included). Never stored: [`UsageRecord::normalise`] applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_convention: Option<CacheConvention>,
}

/// Why a record was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid record: {0}")]
    Invalid(String),
}

/// `tags` as sent, refused once it has more than [`TAGS_READ`] entries.
fn bounded_tags<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Tags;
    impl<'de> serde::de::Visitor<'de> for Tags {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of string tags")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut tags = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                if tags.len() == TAGS_READ {
                    return Err(serde::de::Error::custom(format!("at most {MAX_TAGS} tags")));
                }
                tags.insert(k, v);
            }
            Ok(Some(tags))
        }
    }
    d.deserialize_option(Tags)
}

/// The first control character of `text` (U+0000–U+001F, U+007F–U+009F), if any: no
/// identifier or label has one, a database may refuse one (PostgreSQL refuses U+0000 in
/// text), and a terminal or a report may be fooled by one.
pub fn control_char(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control())
}

impl UsageRecord {
    /// A record with only the required fields set; format parsers fill in the rest.
    pub fn new(
        ts: DateTime<Utc>,
        model: String,
        input_tokens: i64,
        output_tokens: i64,
    ) -> UsageRecord {
        UsageRecord {
            request_id: None,
            ts,
            provider: None,
            model,
            input_tokens,
            output_tokens,
            cached_input_tokens: None,
            cache_read_input_tokens: None,
            cache_creation_input_tokens: None,
            cache_creation_1h_input_tokens: None,
            cache_ttl: None,
            cache_creation: None,
            reasoning_tokens: None,
            latency_ms: None,
            user: None,
            feature: None,
            prompt_hash: None,
            batch: None,
            status: None,
            cost_usd: None,
            stream: None,
            finish_reason: None,
            max_tokens: None,
            tags: None,
            request_count: None,
            bucket_seconds: None,
            service_tier: None,
            token_convention: None,
        }
    }

    /// Checks ranges and lengths that serde's types do not.
    pub fn validate(&self) -> Result<(), RecordError> {
        self.validate_text()?;
        let bad = |m: String| Err(RecordError::Invalid(m));
        if self.model.trim().is_empty() {
            return bad("`model` must not be empty".into());
        }
        if self.ts < day(MIN_TS_DAY) || self.ts >= day(MAX_TS_DAY) {
            return bad(format!(
                "`ts` {} is outside {}-01-01 – {}-12-31: check the unit and the clock",
                apogee_protocol::time::instant(self.ts),
                MIN_TS_DAY.0,
                MAX_TS_DAY.0 - 1
            ));
        }
        if let Some(s) = &self.status
            && !STATUSES.iter().any(|k| k.eq_ignore_ascii_case(s))
        {
            return bad(format!(
                "`status` must be one of {}; got `{}`",
                STATUSES.join(", "),
                s.chars().take(40).collect::<String>()
            ));
        }
        if let Some(t) = &self.service_tier
            && ServiceTier::parse(t).is_none()
        {
            return bad(format!(
                "`service_tier` must be one of {}; got `{}`",
                ServiceTier::NAMES.join(", "),
                t.chars().take(40).collect::<String>()
            ));
        }
        if let Some(b) = self.bucket_seconds
            && !(1..=MAX_BUCKET_SECONDS).contains(&b)
        {
            return bad(format!(
                "`bucket_seconds` must be between 1 and {MAX_BUCKET_SECONDS}"
            ));
        }
        for (name, value) in [
            ("request_id", self.request_id.as_deref()),
            ("provider", self.provider.as_deref()),
            ("model", Some(self.model.as_str())),
            ("user", self.user.as_deref()),
            ("feature", self.feature.as_deref()),
            ("prompt_hash", self.prompt_hash.as_deref()),
            ("status", self.status.as_deref()),
            ("finish_reason", self.finish_reason.as_deref()),
            ("service_tier", self.service_tier.as_deref()),
        ] {
            if let Some(v) = value
                && v.chars().count() > MAX_FIELD_CHARS
            {
                return bad(format!(
                    "`{name}` is longer than {MAX_FIELD_CHARS} characters"
                ));
            }
        }
        if let Some(n) = self.request_count
            && !(1..=MAX_REQUEST_COUNT).contains(&n)
        {
            return bad(format!(
                "`request_count` must be between 1 and {MAX_REQUEST_COUNT}"
            ));
        }
        // An aggregated record sums the tokens of its calls: the bound is per call.
        let total_limit = MAX_TOKENS.saturating_mul(self.request_count());
        for (name, value) in [
            ("input_tokens", Some(self.input_tokens)),
            ("output_tokens", Some(self.output_tokens)),
            ("cached_input_tokens", self.cached_input_tokens),
            (
                "cache_creation_input_tokens",
                self.cache_creation_input_tokens,
            ),
            (
                "cache_creation_1h_input_tokens",
                self.cache_creation_1h_input_tokens,
            ),
            ("reasoning_tokens", self.reasoning_tokens),
            ("max_tokens", self.max_tokens),
        ] {
            let limit = if name == "max_tokens" {
                MAX_TOKENS
            } else {
                total_limit
            };
            if let Some(v) = value
                && !(0..=limit).contains(&v)
            {
                return bad(format!("`{name}` must be between 0 and {limit}"));
            }
        }
        if self.cached_tokens() + self.cache_write_tokens() > self.input_tokens {
            return bad(
                "`cached_input_tokens` + `cache_creation_input_tokens` cannot exceed `input_tokens` (which counts cached tokens; send `token_convention: \"excludes_cache\"` for Anthropic-style counts)".into(),
            );
        }
        if self.cache_write_1h_tokens() > self.cache_write_tokens() {
            return bad(
                "`cache_creation_1h_input_tokens` cannot exceed `cache_creation_input_tokens`"
                    .into(),
            );
        }
        if self.reasoning_tokens.unwrap_or(0) > self.output_tokens {
            return bad("`reasoning_tokens` cannot exceed `output_tokens`".into());
        }
        if let Some(tags) = &self.tags {
            if tags.len() > MAX_TAGS {
                return bad(format!("at most {MAX_TAGS} tags"));
            }
            for (k, v) in tags {
                if k.is_empty() || k.chars().count() > MAX_TAG_KEY_CHARS {
                    return bad(format!(
                        "tag keys must have 1 to {MAX_TAG_KEY_CHARS} characters"
                    ));
                }
                if v.chars().count() > MAX_FIELD_CHARS {
                    return bad(format!(
                        "tag `{k}` is longer than {MAX_FIELD_CHARS} characters"
                    ));
                }
            }
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

    /// Refuses control characters in every string the record carries, tags included.
    fn validate_text(&self) -> Result<(), RecordError> {
        let strings = [
            ("request_id", self.request_id.as_deref()),
            ("provider", self.provider.as_deref()),
            ("model", Some(self.model.as_str())),
            ("user", self.user.as_deref()),
            ("feature", self.feature.as_deref()),
            ("prompt_hash", self.prompt_hash.as_deref()),
            ("status", self.status.as_deref()),
            ("finish_reason", self.finish_reason.as_deref()),
        ];
        let tags = self.tags.iter().flatten().flat_map(|(k, v)| {
            [
                ("tag key", Some(k.as_str())),
                ("tag value", Some(v.as_str())),
            ]
        });
        for (name, value) in strings.into_iter().chain(tags) {
            if let Some(c) = value.and_then(control_char) {
                return Err(RecordError::Invalid(format!(
                    "`{name}` contains the control character U+{:04X}",
                    u32::from(c)
                )));
            }
        }
        Ok(())
    }

    /// Converts the token counts to the canonical convention (cached tokens inside
    /// `input_tokens`) as declared by `token_convention`, then validates. Every ingest path
    /// calls this once before pricing.
    pub fn normalise(mut self) -> Result<UsageRecord, RecordError> {
        if let Some(read) = self.cache_read_input_tokens.take()
            && self.cached_input_tokens.is_none()
        {
            self.cached_input_tokens = Some(read);
        }
        self.apply_cache_ttl()?;
        if let Some(status) = self.status.take() {
            let lower = status.to_ascii_lowercase();
            self.status = Some(match lower.as_str() {
                "success" | "succeeded" => "ok".into(),
                "failure" | "failed" => "error".into(),
                "canceled" => "cancelled".into(),
                _ if STATUSES.contains(&lower.as_str()) => lower,
                _ => status,
            });
        }
        if let Some(tier) = self.service_tier.take() {
            let lower = tier.trim().to_ascii_lowercase();
            // Anthropic reports a Batch API call as the `batch` tier.
            if lower == "batch" && self.batch.is_none() {
                self.batch = Some(true);
            }
            self.service_tier = Some(if ServiceTier::parse(&lower).is_some() {
                lower
            } else {
                tier
            });
        }
        if let Some(convention) = self.token_convention.take() {
            self.input_tokens = convention
                .canonical_input(
                    self.input_tokens,
                    self.cached_tokens(),
                    self.cache_write_tokens(),
                )
                .ok_or_else(|| {
                    RecordError::Invalid("cached token counts contradict `token_convention`".into())
                })?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Folds `cache_creation` and `cache_ttl` into the cache-write counts.
    fn apply_cache_ttl(&mut self) -> Result<(), RecordError> {
        if let Some(c) = self.cache_creation.take() {
            let (five, hour) = (
                c.ephemeral_5m_input_tokens.unwrap_or(0),
                c.ephemeral_1h_input_tokens.unwrap_or(0),
            );
            if self.cache_creation_input_tokens.is_none() {
                self.cache_creation_input_tokens = five.checked_add(hour);
            }
            if self.cache_creation_1h_input_tokens.is_none() {
                self.cache_creation_1h_input_tokens = Some(hour);
            }
        }
        if let Some(ttl) = self.cache_ttl.take() {
            let all = match ttl.trim().to_ascii_lowercase().as_str() {
                "1h" | "60m" | "3600s" => self.cache_write_tokens(),
                "5m" | "300s" => 0,
                _ => {
                    return Err(RecordError::Invalid(
                        "`cache_ttl` must be `5m` or `1h`".into(),
                    ));
                }
            };
            if self.cache_creation_1h_input_tokens.is_none() {
                self.cache_creation_1h_input_tokens = Some(all);
            }
        }
        if self.cache_creation_1h_input_tokens == Some(0) {
            self.cache_creation_1h_input_tokens = None;
        }
        Ok(())
    }

    pub fn cached_tokens(&self) -> i64 {
        self.cached_input_tokens.unwrap_or(0)
    }

    /// Cache writes with the 1-hour TTL (a part of [`UsageRecord::cache_write_tokens`]).
    pub fn cache_write_1h_tokens(&self) -> i64 {
        self.cache_creation_1h_input_tokens.unwrap_or(0)
    }

    /// Whether the record stands for more than one call or for a time bucket: its `ts` is not
    /// the time of a call, so heuristics that read the time of day must leave it out.
    pub fn is_aggregate(&self) -> bool {
        self.request_count() > 1 || self.bucket_seconds.is_some()
    }

    /// The service tier the call was billed on (standard when not reported).
    pub fn tier(&self) -> ServiceTier {
        self.service_tier
            .as_deref()
            .and_then(ServiceTier::parse)
            .unwrap_or_default()
    }

    pub fn cache_write_tokens(&self) -> i64 {
        self.cache_creation_input_tokens.unwrap_or(0)
    }

    /// The canonical token split for pricing.
    pub fn token_counts(&self) -> TokenCounts {
        TokenCounts {
            input: self.input_tokens,
            cache_read: self.cached_tokens(),
            cache_write: self.cache_write_tokens(),
            cache_write_1h: self.cache_write_1h_tokens(),
            output: self.output_tokens,
        }
    }

    /// What pricing needs to know: tokens, batch, calls and service tier.
    pub fn billed_calls(&self) -> BilledCalls {
        BilledCalls {
            tokens: self.token_counts(),
            batch: self.is_batch(),
            calls: self.request_count(),
            service_tier: self.tier(),
        }
    }

    pub fn request_count(&self) -> i64 {
        self.request_count.unwrap_or(1)
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

    fn priced(json: &str) -> PricedRecord {
        let catalog = crate::catalog::PriceCatalog::builtin().unwrap();
        PricedRecord::price(record(json).normalise().unwrap(), &catalog)
    }

    #[test]
    fn openai_style_counts_price_cache_reads_inside_input() {
        // gpt-4o from 2024-10-02: $2.50 in, $1.25 cached, $10 out per 1M.
        // 1200 input of which 1000 cached: 200 × 2.50 + 1000 × 1.25 + 310 × 10
        // = 500 + 1250 + 3100 = 4850 micro-dollars... × 1000 = 4,850,000 nanos.
        let p = priced(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":1200,"output_tokens":310,"cached_input_tokens":1000}"#,
        );
        assert_eq!(p.record.input_tokens, 1200);
        assert_eq!(p.cost, Some(Nanos(4_850_000)));
        assert_eq!(p.price_source.as_deref(), Some("openai/gpt-4o@2024-10-02"));
    }

    #[test]
    fn anthropic_style_counts_are_added_up_then_priced() {
        // claude-sonnet-4 (2025-08-12 entry): $3 in, $0.30 cache read, $3.75 cache write,
        // $15 out. Anthropic reports input_tokens 50 outside the cache, 1000 read, 150 written:
        // canonical input 1200; cost 50 × 3 + 1000 × 0.30 + 150 × 3.75 + 100 × 15
        // = 150 + 300 + 562.5 + 1500 = 2512.5 micro-dollars = 2,512,500 nanos.
        let p = priced(
            r#"{"ts":"2026-11-20T08:15:02Z","provider":"anthropic","model":"claude-sonnet-4","input_tokens":50,"output_tokens":100,"cache_read_input_tokens":1000,"cache_creation_input_tokens":150,"token_convention":"anthropic"}"#,
        );
        assert_eq!(p.record.input_tokens, 1200);
        assert_eq!(
            p.record.token_convention, None,
            "stored records are canonical"
        );
        assert_eq!(p.cost, Some(Nanos(2_512_500)));
        // The same call sent already canonical prices the same.
        let same = priced(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"claude-sonnet-4","input_tokens":1200,"output_tokens":100,"cached_input_tokens":1000,"cache_creation_input_tokens":150}"#,
        );
        assert_eq!(same.cost, p.cost);
        // Anthropic-style counts sent without the convention are refused, not mispriced.
        let raw = record(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"claude-sonnet-4","input_tokens":50,"output_tokens":100,"cache_read_input_tokens":1000}"#,
        );
        assert!(raw.normalise().is_err());
        // Both names: the §8 field wins, as when the other was an unknown field.
        let both = record(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":100,"output_tokens":1,"cached_input_tokens":10,"cache_read_input_tokens":90}"#,
        )
        .normalise()
        .unwrap();
        assert_eq!(
            (both.cached_tokens(), both.cache_read_input_tokens),
            (10, None)
        );
    }

    #[test]
    fn client_cost_wins_and_unknown_models_stay_unpriced() {
        let p = priced(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":1,"output_tokens":1,"cost_usd":0.25}"#,
        );
        assert_eq!(
            (p.cost, p.price_source.as_deref()),
            (Some(Nanos(250_000_000)), Some("client"))
        );
        let p = priced(
            r#"{"ts":"2026-11-20T08:15:02Z","model":"acme-7b","input_tokens":1,"output_tokens":1}"#,
        );
        assert_eq!((p.cost, p.price_source), (None, None));
    }

    #[test]
    fn extensions_are_bounded() {
        let base = r#""ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":5,"output_tokens":2"#;
        let ok = record(&format!(
            r#"{{{base},"reasoning_tokens":2,"stream":true,"finish_reason":"stop","max_tokens":100,"tags":{{"team":"search"}},"request_count":3}}"#
        ));
        assert!(ok.validate().is_ok());
        assert!(
            record(&format!(r#"{{{base},"reasoning_tokens":3}}"#))
                .validate()
                .is_err()
        );
        assert!(
            record(&format!(r#"{{{base},"request_count":0}}"#))
                .validate()
                .is_err()
        );
        // 300M tokens: too many for one call, fine for a bucket of 1000 calls.
        let big =
            r#""ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":300000000,"output_tokens":2"#;
        assert!(record(&format!("{{{big}}}")).validate().is_err());
        assert!(
            record(&format!(r#"{{{big},"request_count":1000}}"#))
                .validate()
                .is_ok()
        );
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!(r#""k{i}":"v""#)).collect();
        let r = record(&format!(r#"{{{base},"tags":{{{}}}}}"#, many.join(",")));
        assert!(r.validate().is_err());
        assert!(
            record(&format!(r#"{{{base},"tags":{{"":"v"}}}}"#))
                .validate()
                .is_err()
        );
    }

    fn normalised(json: &str) -> Result<UsageRecord, String> {
        serde_json::from_str::<UsageRecord>(json)
            .map_err(|e| e.to_string())?
            .normalise()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_ts_names_the_field_and_shows_the_value() {
        let e = normalised(
            r#"{"ts":"20/11/2026 08:15","model":"gpt-4o","input_tokens":1,"output_tokens":1}"#,
        )
        .unwrap_err();
        assert!(e.starts_with("`ts` must be an RFC 3339 time"), "{e}");
        assert!(e.contains("`20/11/2026 08:15`"), "{e}");
        let e =
            normalised(r#"{"ts":1763626502,"model":"gpt-4o","input_tokens":1,"output_tokens":1}"#)
                .unwrap_err();
        assert!(e.starts_with("`ts` must be"), "{e}");
    }

    #[test]
    fn timestamps_outside_the_sane_range_are_refused() {
        for ts in [
            "1969-12-31T23:59:59Z",
            "2019-12-31T23:59:59Z",
            "2126-01-01T00:00:00Z",
        ] {
            let e = normalised(&format!(
                r#"{{"ts":"{ts}","model":"gpt-4o","input_tokens":1,"output_tokens":1}}"#
            ))
            .unwrap_err();
            assert!(e.contains("`ts`") && e.contains("outside"), "{ts}: {e}");
        }
        assert!(
            normalised(
                r#"{"ts":"2020-01-01T00:00:00Z","model":"gpt-4o","input_tokens":1,"output_tokens":1}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn statuses_are_normalised_or_refused() {
        let status = |s: &str| {
            normalised(&format!(
                r#"{{"ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":1,"output_tokens":1,"status":"{s}"}}"#
            ))
            .map(|r| r.status)
        };
        assert_eq!(status("success"), Ok(Some("ok".into())));
        assert_eq!(status("OK"), Ok(Some("ok".into())));
        assert_eq!(status("Failed"), Ok(Some("error".into())));
        assert_eq!(status("timeout"), Ok(Some("timeout".into())));
        let e = status("pending").unwrap_err();
        assert!(e.contains("`status` must be one of"), "{e}");
    }

    #[test]
    fn service_tier_and_cache_ttl_are_read_and_checked() {
        let base =
            r#""ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":1000,"output_tokens":1"#;
        let r = normalised(&format!(r#"{{{base},"service_tier":"Priority"}}"#)).unwrap();
        assert_eq!(r.service_tier.as_deref(), Some("priority"));
        assert_eq!(r.tier(), ServiceTier::Priority);
        // Anthropic's `batch` tier is a Batch API call.
        let r = normalised(&format!(r#"{{{base},"service_tier":"batch"}}"#)).unwrap();
        assert!(r.is_batch());
        assert!(normalised(&format!(r#"{{{base},"service_tier":"turbo"}}"#)).is_err());
        // `cache_ttl: 1h` makes every write a 1-hour one; the 1-hour part never exceeds them.
        let r = normalised(&format!(
            r#"{{{base},"cache_creation_input_tokens":300,"cache_ttl":"1h"}}"#
        ))
        .unwrap();
        assert_eq!(
            (r.cache_write_tokens(), r.cache_write_1h_tokens()),
            (300, 300)
        );
        assert!(
            normalised(&format!(
                r#"{{{base},"cache_creation_input_tokens":300,"cache_creation_1h_input_tokens":301}}"#
            ))
            .is_err()
        );
        assert!(normalised(&format!(r#"{{{base},"cache_ttl":"1d"}}"#)).is_err());
        assert!(normalised(&format!(r#"{{{base},"bucket_seconds":0}}"#)).is_err());
    }

    #[test]
    fn control_characters_are_refused_in_every_string() {
        let base = r#""ts":"2026-11-20T08:15:02Z","input_tokens":5,"output_tokens":2"#;
        for (field, json) in [
            ("model", format!(r#"{{{base},"model":"gpt\u0000"}}"#)),
            (
                "feature",
                format!(r#"{{{base},"model":"m","feature":"a\nb"}}"#),
            ),
            (
                "user",
                format!(r#"{{{base},"model":"m","user":"\u001b[31m"}}"#),
            ),
            (
                "request_id",
                format!(r#"{{{base},"model":"m","request_id":"r\u0085"}}"#),
            ),
            (
                "tag value",
                format!(r#"{{{base},"model":"m","tags":{{"k":"v\u0000"}}}}"#),
            ),
            (
                "tag key",
                format!(r#"{{{base},"model":"m","tags":{{"k\t":"v"}}}}"#),
            ),
        ] {
            let e = record(&json).validate().unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{field}` contains the control character")),
                "{e}"
            );
        }
        // Non-ASCII text is fine.
        assert!(
            record(&format!(
                r#"{{{base},"model":"m","feature":"Übersetzung – 翻訳"}}"#
            ))
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn a_huge_tag_map_is_refused_while_it_is_read() {
        let many: Vec<String> = (0..10_000).map(|i| format!(r#""k{i}":"v""#)).collect();
        let json = format!(
            r#"{{"ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":5,"output_tokens":2,"tags":{{{}}}}}"#,
            many.join(",")
        );
        let e = serde_json::from_str::<UsageRecord>(&json).unwrap_err();
        assert!(e.to_string().contains("at most 32 tags"), "{e}");
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
    /// `client`, or the catalog entry id (`openai/gpt-4o@2024-10-02`, with `>200000` when a
    /// context-length tier applied); `None` when unpriced.
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
        let quote = catalog
            .lookup_for(record.provider.as_deref(), &record.model, record.ts)
            .and_then(|p| p.quote(&record.billed_calls()));
        match quote {
            Some(quote) => PricedRecord {
                record,
                cost: Some(quote.cost),
                price_source: Some(quote.source_id),
            },
            None => PricedRecord {
                record,
                cost: None,
                price_source: None,
            },
        }
    }

    /// Refuses a cost beyond [`MAX_RECORD_COST`]: such a price comes from counts no call has
    /// (the catalog's arithmetic saturates rather than overflow), and storing it would
    /// leave the hourly sums no room.
    pub fn check_cost(&self) -> Result<(), RecordError> {
        match self.cost {
            Some(c) if c > MAX_RECORD_COST || c < Nanos::ZERO => {
                Err(RecordError::Invalid(format!(
                    "its cost ({}) is beyond what one record may cost ({}); check its token counts",
                    c.display_usd(),
                    MAX_RECORD_COST.display_usd()
                )))
            }
            _ => Ok(()),
        }
    }

    /// The provider as given, else the one the catalog resolves the model name to (the
    /// name's shape, `bedrock/…` or `us.anthropic.…`, or the model's maker), else `unknown`.
    pub fn provider(&self, catalog: &crate::catalog::PriceCatalog) -> String {
        self.record
            .provider
            .clone()
            .or_else(|| {
                catalog
                    .lookup_for(None, &self.record.model, self.record.ts)
                    .map(|p| p.provider.to_string())
            })
            .unwrap_or_else(|| "unknown".into())
    }
}
