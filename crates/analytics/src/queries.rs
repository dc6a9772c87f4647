//! What an analysis may ask of one organisation's usage. A store implements
//! [`OrgUsageQueries`] for a single org fixed at construction, so no caller can name, and no
//! query can reach, another org's data.
//!
//! The engine's general questions take a [`UsageQuery`] (a scope, a period, a grouping):
//! [`OrgUsageQueries::aggregate`] (spend, calls, tokens, errors), [`OrgUsageQueries::latency`]
//! (percentiles) and [`OrgUsageQueries::model_mix`] (the tokens a what-if re-prices). The
//! remaining methods serve the recommenders, whose questions have their own shape.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::money::Nanos;
use crate::period::Period;
use crate::query::{
    Dimension, GroupTotals, Grouping, MAX_GROUPS, QuerySpecError, Scope, TagCount, UsageQuery,
    UsageSlice,
};

/// Totals over a period. Serialised as `GET /api/costs` answers them (PROTOCOL.md §7): the
/// cost as `cost_nanos` and `cost_usd` (the latter ignored when read back), so a slice in a
/// run's data and in the API's answer are the same JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "TotalsWire", from = "TotalsWire")]
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

/// [`UsageTotals`] on the wire.
#[derive(Serialize, Deserialize)]
struct TotalsWire {
    calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    unpriced_calls: i64,
    unpriced_tokens: i64,
    error_calls: i64,
    cost_nanos: Nanos,
    #[serde(default)]
    cost_usd: f64,
}

impl From<UsageTotals> for TotalsWire {
    fn from(t: UsageTotals) -> TotalsWire {
        TotalsWire {
            calls: t.calls,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cached_input_tokens: t.cached_input_tokens,
            unpriced_calls: t.unpriced_calls,
            unpriced_tokens: t.unpriced_tokens,
            error_calls: t.error_calls,
            cost_nanos: t.cost,
            cost_usd: t.cost.usd(),
        }
    }
}

impl From<TotalsWire> for UsageTotals {
    fn from(w: TotalsWire) -> UsageTotals {
        UsageTotals {
            calls: w.calls,
            input_tokens: w.input_tokens,
            output_tokens: w.output_tokens,
            cached_input_tokens: w.cached_input_tokens,
            cost: w.cost_nanos,
            unpriced_calls: w.unpriced_calls,
            unpriced_tokens: w.unpriced_tokens,
            error_calls: w.error_calls,
        }
    }
}

impl UsageTotals {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> i64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The priced cost per priced call (`None` without priced calls): unpriced calls add no
    /// cost, so counting them would understate it.
    pub fn cost_per_call(&self) -> Option<Nanos> {
        let priced = self.calls - self.unpriced_calls;
        (priced > 0).then(|| Nanos(self.cost.0 / i128::from(priced)))
    }

    /// The priced cost per million of the priced calls' tokens (input plus output; `None`
    /// without priced tokens): what a model's usage cost per unit of work, as catalogs quote it.
    pub fn cost_per_million_tokens(&self) -> Option<Nanos> {
        let priced = i128::from(self.total_tokens()) - i128::from(self.unpriced_tokens);
        (priced > 0).then(|| Nanos(self.cost.0.saturating_mul(1_000_000) / priced))
    }

    /// `error_calls / calls` (0 without calls).
    pub fn error_rate(&self) -> f64 {
        ratio(self.error_calls, self.calls)
    }

    /// These totals less `other`, field by field (a change between two windows).
    pub fn minus(&self, other: &UsageTotals) -> UsageTotals {
        UsageTotals {
            calls: self.calls - other.calls,
            input_tokens: self.input_tokens - other.input_tokens,
            output_tokens: self.output_tokens - other.output_tokens,
            cached_input_tokens: self.cached_input_tokens - other.cached_input_tokens,
            cost: self.cost - other.cost,
            unpriced_calls: self.unpriced_calls - other.unpriced_calls,
            unpriced_tokens: self.unpriced_tokens - other.unpriced_tokens,
            error_calls: self.error_calls - other.error_calls,
        }
    }

    /// Adds `other` to these totals.
    pub fn add(&mut self, other: &UsageTotals) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cost = self.cost + other.cost;
        self.unpriced_calls += other.unpriced_calls;
        self.unpriced_tokens += other.unpriced_tokens;
        self.error_calls += other.error_calls;
    }
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
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

impl From<GroupTotals> for CostRow {
    fn from(g: GroupTotals) -> CostRow {
        CostRow {
            key: g.key,
            calls: g.totals.calls,
            input_tokens: g.totals.input_tokens,
            output_tokens: g.totals.output_tokens,
            cost: g.totals.cost,
            unpriced_calls: g.totals.unpriced_calls,
        }
    }
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

/// Catalog-priced traffic of one model within a slice (and within one group of it, when the
/// query is grouped), split by batch vs. interactive: the tokens a what-if re-prices on
/// another model or through the Batch API. `calls` sum `request_count`, as in [`TrafficProfile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMix {
    /// The group's key (`(none)` for records without the dimension); `None` when the query is
    /// not grouped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
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

/// Latency percentiles and errors of a slice of usage (or of one group of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Calls (the sum of `request_count`).
    pub calls: i64,
    /// Calls with a non-`ok` status.
    pub error_calls: i64,
    /// Records that reported `latency_ms`: the sample the percentiles are taken over.
    pub latency_samples: i64,
    /// The arithmetic mean of `latency_ms` over the sample (`None` without samples): what
    /// people mean by "average latency". Exact up to `f64` division.
    pub mean_ms: Option<f64>,
    /// Nearest-rank percentiles of `latency_ms` (`None` without samples).
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

impl LatencyStats {
    /// `error_calls / calls` (0 without calls).
    pub fn error_rate(&self) -> f64 {
        ratio(self.error_calls, self.calls)
    }

    /// The stats of calls and errors with the latencies of their records as a histogram
    /// (`(latency_ms, records)` by latency ascending).
    pub fn from_histogram(calls: i64, error_calls: i64, histogram: &[(i64, i64)]) -> LatencyStats {
        let samples: i64 = histogram.iter().map(|h| h.1).sum();
        let total: i128 = histogram
            .iter()
            .map(|&(latency, n)| i128::from(latency) * i128::from(n))
            .sum();
        let at = |p: f64| {
            let rank = nearest_rank_position(p, samples)?;
            let mut seen = 0;
            histogram.iter().find_map(|&(latency, n)| {
                seen += n;
                (seen >= rank).then_some(latency)
            })
        };
        LatencyStats {
            calls,
            error_calls,
            latency_samples: samples,
            mean_ms: latency_mean(total, samples),
            p50_ms: at(50.0),
            p95_ms: at(95.0),
            p99_ms: at(99.0),
        }
    }
}

/// One group's [`LatencyStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    /// The group's value (`(none)` for records without it), or its day or week.
    pub key: String,
    #[serde(flatten)]
    pub stats: LatencyStats,
}

/// The answer of [`OrgUsageQueries::latency`]: the slice's stats and its groups (empty when not
/// grouped) by calls descending then key ascending, or by key ascending for days and weeks; at
/// most [`MAX_GROUPS`] of them (`truncated` says some were left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySlice {
    pub totals: LatencyStats,
    pub rows: Vec<LatencyRow>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The 1-based nearest rank of the `p`-th percentile (0 < p ≤ 100) in a sample of `n`: the
/// smallest rank with at least p% of the sample at or below it. `None` for an empty sample.
pub fn nearest_rank_position(p: f64, n: i64) -> Option<i64> {
    if n <= 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as i64;
    Some(rank.clamp(1, n))
}

/// `total / samples` (`None` without samples). The total is 128-bit: a sum of `latency_ms`
/// over many records does not fit the `i64` each one does.
pub(crate) fn latency_mean(total: i128, samples: i64) -> Option<f64> {
    (samples > 0).then(|| total as f64 / samples as f64)
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending): the smallest
/// value with at least p% of the sample at or below it. `None` for an empty sample.
pub fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    let rank = nearest_rank_position(p, sorted.len() as i64)?;
    sorted.get(rank as usize - 1).copied()
}

/// Rows by calls descending then key ascending, or in time order for the time groupings
/// ([`Grouping::cmp_time_keys`]): the order of every latency report.
pub fn sort_latency_rows(rows: &mut [LatencyRow], by: &Grouping) {
    if by.is_time() {
        rows.sort_by(|a, b| by.cmp_time_keys(&a.key, &b.key));
    } else {
        rows.sort_by(|a, b| {
            b.stats
                .calls
                .cmp(&a.stats.calls)
                .then_with(|| a.key.cmp(&b.key))
        });
    }
}

/// Rows by cost descending then key ascending, or in time order for the time groupings
/// ([`Grouping::cmp_time_keys`]): the order of [`UsageSlice::rows`].
pub fn sort_group_rows(rows: &mut [GroupTotals], by: &Grouping) {
    if by.is_time() {
        rows.sort_by(|a, b| by.cmp_time_keys(&a.key, &b.key));
    } else {
        rows.sort_by(|a, b| {
            b.totals
                .cost
                .cmp(&a.totals.cost)
                .then_with(|| a.key.cmp(&b.key))
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("usage query failed: {0}")]
    Backend(String),
    /// The query is well formed but its answer would be larger than the engine returns.
    #[error("{0}")]
    TooLarge(String),
    /// The query breaks a bound of its scope ([`Scope::validate`]).
    #[error("{0}")]
    Invalid(#[from] QuerySpecError),
}

impl QueryError {
    /// A model mix with more than [`MAX_GROUPS`] rows.
    pub fn model_mix_too_large() -> QueryError {
        QueryError::TooLarge(format!(
            "the model mix has more than {MAX_GROUPS} group × model rows: narrow the scope or group by fewer values"
        ))
    }
}

/// Queries over the usage of the one org this handle was created for.
#[async_trait]
pub trait OrgUsageQueries: Send + Sync {
    /// The [`UsageTotals`] of the query's scope over its period, and of each of its groups
    /// ([`UsageSlice`] says the order and bound). Every figure a question about spend, calls,
    /// tokens or errors needs is in, or a ratio of, these totals.
    async fn aggregate(&self, q: &UsageQuery) -> Result<UsageSlice, QueryError>;

    /// Latency percentiles, calls and errors of the query's slice and of each of its groups.
    async fn latency(&self, q: &UsageQuery) -> Result<LatencySlice, QueryError>;

    /// Catalog-priced traffic of the query's slice by group (if grouped) and model, ordered by
    /// key then model; more than [`MAX_GROUPS`] rows is
    /// [`QueryError::TooLarge`].
    async fn model_mix(&self, q: &UsageQuery) -> Result<Vec<ModelMix>, QueryError>;

    /// The tag key/value pairs seen in `period` with their calls, by calls descending then key
    /// and value ascending, at most [`crate::query::MAX_TAG_VALUES`] of them.
    async fn tags(&self, period: &Period) -> Result<Vec<TagCount>, QueryError>;

    /// The whole org's totals over `period`.
    async fn totals(&self, period: &Period) -> Result<UsageTotals, QueryError> {
        Ok(self.aggregate(&UsageQuery::totals(*period)).await?.totals)
    }

    /// The whole org's spend over `period` grouped `by` ([`UsageSlice`] order).
    async fn breakdown(&self, period: &Period, by: Grouping) -> Result<Vec<CostRow>, QueryError> {
        let q = UsageQuery {
            period: *period,
            scope: Scope::all(),
            group_by: Some(by),
        };
        Ok(self
            .aggregate(&q)
            .await?
            .rows
            .into_iter()
            .map(CostRow::from)
            .collect())
    }

    /// Latency percentiles and error rate per model ([`sort_latency_rows`] order).
    async fn latency_by_model(&self, period: &Period) -> Result<Vec<LatencyRow>, QueryError> {
        let q = UsageQuery {
            period: *period,
            scope: Scope::all(),
            group_by: Some(Grouping::By(Dimension::Model)),
        };
        Ok(self.latency(&q).await?.rows)
    }

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

    /// Spend by feature and model, by cost descending, then feature, then model.
    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError>;

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

    #[test]
    fn percentiles_from_a_histogram_equal_those_of_the_sample() {
        // 100 ×1, 200 ×3, 900 ×1: sorted [100, 200, 200, 200, 900].
        let s = LatencyStats::from_histogram(7, 2, &[(100, 1), (200, 3), (900, 1)]);
        assert_eq!(s.latency_samples, 5);
        let sorted = [100, 200, 200, 200, 900];
        assert_eq!(s.p50_ms, nearest_rank(&sorted, 50.0));
        assert_eq!(s.p95_ms, Some(900));
        assert_eq!(s.p50_ms, Some(200));
        assert_eq!(LatencyStats::from_histogram(3, 0, &[]).p99_ms, None);
    }

    #[test]
    fn ratios_of_totals() {
        let t = UsageTotals {
            calls: 10,
            unpriced_calls: 2,
            cost: Nanos(800),
            error_calls: 1,
            input_tokens: 5,
            output_tokens: 6,
            ..UsageTotals::default()
        };
        assert_eq!(t.cost_per_call(), Some(Nanos(100)));
        assert_eq!(t.error_rate(), 0.1);
        assert_eq!(t.total_tokens(), 11);
        assert_eq!(UsageTotals::default().cost_per_call(), None);
        assert_eq!(UsageTotals::default().error_rate(), 0.0);
    }

    #[test]
    fn cost_per_million_tokens_counts_only_priced_tokens() {
        // $3 over 1.5M tokens, 0.5M of them on unpriced calls: $3 per priced million.
        let t = UsageTotals {
            calls: 3,
            unpriced_calls: 1,
            input_tokens: 1_200_000,
            output_tokens: 300_000,
            unpriced_tokens: 500_000,
            cost: Nanos::from_usd(3.0),
            ..UsageTotals::default()
        };
        assert_eq!(t.cost_per_million_tokens(), Some(Nanos::from_usd(3.0)));
        let unpriced_only = UsageTotals {
            unpriced_tokens: 1_500_000,
            ..t
        };
        assert_eq!(unpriced_only.cost_per_million_tokens(), None);
        assert_eq!(UsageTotals::default().cost_per_million_tokens(), None);
    }
}
