//! What an analysis may ask of one organisation's usage. A store implements
//! [`OrgUsageQueries`] for a single org fixed at construction, so no caller can name, and no
//! query can reach, another org's data.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::money::Nanos;
use crate::period::Period;

/// A dimension of a cost breakdown (`GET /api/costs?group_by=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Model,
    Provider,
    User,
    Feature,
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "model" => Some(GroupBy::Model),
            "provider" => Some(GroupBy::Provider),
            "user" => Some(GroupBy::User),
            "feature" => Some(GroupBy::Feature),
            "day" => Some(GroupBy::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::User => "user",
            GroupBy::Feature => "feature",
            GroupBy::Day => "day",
        }
    }
}

/// Totals over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    /// Cost of the priced calls.
    pub cost: Nanos,
    /// Calls whose model the catalog does not know and that carried no `cost_usd`.
    pub unpriced_calls: i64,
    pub unpriced_tokens: i64,
    /// Calls with a non-`ok` status.
    pub error_calls: i64,
}

/// One row of a breakdown. `key` is the model, provider, user, feature, or the day as
/// `YYYY-MM-DD`; records without a user or feature are grouped under `(none)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    pub key: String,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: Nanos,
    pub unpriced_calls: i64,
}

/// Token sums of a slice of traffic, split the way prices are (fresh input, cached input,
/// output), so the slice can be re-priced on another model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenMix {
    /// Calls (the sum of `request_count`).
    pub calls: i64,
    /// Input tokens not served from cache.
    pub fresh_input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    /// What these calls cost as recorded.
    pub cost: Nanos,
}

/// A model's traffic within a period, split into calls that fit the "short" limits (per call:
/// an aggregated record's tokens divided by its `request_count`) and the rest, and each split
/// by batch vs. interactive (batch calls are priced at a discount).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficProfile {
    pub model: String,
    pub short_interactive: TokenMix,
    pub short_batch: TokenMix,
    /// Calls (the sum of `request_count`).
    pub all_calls: i64,
    pub all_cost: Nanos,
}

/// Exact-duplicate prompts (same `prompt_hash` and model) within a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepeatProfile {
    /// Distinct prompts seen more than once.
    pub repeated_prompts: i64,
    /// Calls beyond the first for each such prompt: the ones a response cache would serve.
    pub repeat_calls: i64,
    /// Recorded cost of those repeat calls.
    pub repeat_cost: Nanos,
    /// The features contributing most repeat cost, largest first.
    pub top_features: Vec<CostRow>,
}

/// UTC hours `[0, NIGHT_END_HOUR)` count as night: traffic then has nobody waiting on it.
pub const NIGHT_END_HOUR: u32 = 6;

/// Interactive (`batch: false`) traffic of one feature on one model, priced from the catalog,
/// with the part sent at night: a feature whose calls all run at night is a scheduled job
/// that the Batch API would serve at its discount. Aggregated records (`request_count` above
/// 1 or a `bucket_seconds` bucket: their `ts` is not a time of day) count among the
/// interactive calls, never among the night ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchCandidate {
    /// The feature (`(none)` without one).
    pub feature: String,
    pub model: String,
    /// Interactive calls of the feature on the model (the sum of `request_count`).
    pub interactive_calls: i64,
    /// Those sent at night, with their tokens and recorded cost.
    pub night: TokenMix,
}

/// Spend of one feature on one model (breakdown semantics: every call, `request_count` calls
/// per record, unpriced calls adding nothing), so a period-over-period change can tell a
/// feature that grew from one that moved to another model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureModelCost {
    /// The feature (`(none)` without one).
    pub feature: String,
    pub model: String,
    pub calls: i64,
    pub cost: Nanos,
}

/// Traffic of one feature on one model priced from the catalog (calls summing
/// `request_count`, as in [`TrafficProfile`]), split by batch vs. interactive so it can be
/// re-priced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureModelMix {
    /// The feature (`(none)` without one).
    pub feature: String,
    pub model: String,
    pub interactive: TokenMix,
    pub batch: TokenMix,
}

/// How long one feature's outputs on one model run: the nearest-rank percentile of output
/// tokens per call (the proposed `max_tokens` cap) and the tokens produced beyond it. Only
/// single-call records priced from the catalog count: an aggregated record's per-call output
/// is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputTail {
    pub feature: String,
    pub model: String,
    /// Records in the sample.
    pub calls: i64,
    /// The percentile's output length.
    pub cap: i64,
    /// Calls whose output was longer than `cap`.
    pub over_calls: i64,
    /// Output tokens beyond `cap`, of interactive and of batch calls (priced differently).
    pub excess_interactive_tokens: i64,
    pub excess_batch_tokens: i64,
}

/// Calls of a model whose prompt per call (`input_tokens / request_count`, cached tokens
/// included, as tiers are billed) is in `(above_input_tokens, up_to_input_tokens]`, priced
/// from the catalog; `calls` sum `request_count`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputBand {
    pub model: String,
    pub above_input_tokens: i64,
    pub up_to_input_tokens: i64,
    pub interactive: TokenMix,
    pub batch: TokenMix,
}

/// A model's latency percentiles and error rate within a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    pub model: String,
    /// Calls (the sum of `request_count`).
    pub calls: i64,
    /// Calls with a non-`ok` status.
    pub error_calls: i64,
    /// Records that reported `latency_ms`: the sample the percentiles are taken over.
    pub latency_samples: i64,
    /// Nearest-rank percentiles of `latency_ms` (`None` without samples).
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

impl LatencyRow {
    /// `error_calls / calls` (0 without calls).
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.error_calls as f64 / self.calls as f64
        }
    }
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending): the smallest
/// value with at least p% of the sample at or below it. `None` for an empty sample.
pub fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Builds a [`LatencyRow`] from a model's call counts and its latencies sorted ascending.
pub fn latency_row(model: String, calls: i64, error_calls: i64, sorted: &[i64]) -> LatencyRow {
    LatencyRow {
        model,
        calls,
        error_calls,
        latency_samples: sorted.len() as i64,
        p50_ms: nearest_rank(sorted, 50.0),
        p95_ms: nearest_rank(sorted, 95.0),
        p99_ms: nearest_rank(sorted, 99.0),
    }
}

/// Rows by calls descending, then model ascending: the order of every latency report.
pub fn sort_latency_rows(rows: &mut [LatencyRow]) {
    rows.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.model.cmp(&b.model)));
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("usage query failed: {0}")]
    Backend(String),
}

/// Queries over the usage of the one org this handle was created for.
#[async_trait]
pub trait OrgUsageQueries: Send + Sync {
    async fn totals(&self, period: &Period) -> Result<UsageTotals, QueryError>;

    /// Rows by cost descending, except `Day`, which is by day ascending.
    async fn breakdown(&self, period: &Period, by: GroupBy) -> Result<Vec<CostRow>, QueryError>;

    /// Traffic of `model` whose calls have at most `max_input_tokens` input and
    /// `max_output_tokens` output tokens, counting only calls priced from the catalog.
    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError>;

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError>;

    /// Interactive traffic priced from the catalog by feature and model, ordered by feature
    /// then model.
    async fn batch_candidates(&self, period: &Period) -> Result<Vec<BatchCandidate>, QueryError>;

    /// Latency percentiles and error rate per model ([`sort_latency_rows`] order).
    async fn latency_by_model(&self, period: &Period) -> Result<Vec<LatencyRow>, QueryError>;

    /// Spend by feature and model, by cost descending, then feature, then model.
    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError>;

    /// Catalog-priced traffic by feature and model, ordered by feature then model.
    async fn feature_model_traffic(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelMix>, QueryError>;

    /// Per feature and model, the `percentile`-th (1–100, nearest rank) output length and the
    /// output beyond it ([`OutputTail`]), ordered by feature then model.
    async fn output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError>;

    /// Catalog-priced calls of `model` with a prompt in the band ([`InputBand`]).
    async fn input_band(
        &self,
        period: &Period,
        model: &str,
        above_input_tokens: i64,
        up_to_input_tokens: i64,
    ) -> Result<InputBand, QueryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_by_hand() {
        // 1..=20: p50 is the 10th value, p95 the 19th, p99 the 20th.
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(nearest_rank(&v, 50.0), Some(10));
        assert_eq!(nearest_rank(&v, 95.0), Some(19));
        assert_eq!(nearest_rank(&v, 99.0), Some(20));
        assert_eq!(nearest_rank(&[7], 99.0), Some(7));
        assert_eq!(nearest_rank(&[], 50.0), None);
    }
}
