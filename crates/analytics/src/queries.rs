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
    pub calls: i64,
    /// Input tokens not served from cache.
    pub fresh_input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    /// What these calls cost as recorded.
    pub cost: Nanos,
}

/// A model's traffic within a period, split into calls that fit the "short" limits and the
/// rest, and each split by batch vs. interactive (batch calls are priced at a discount).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficProfile {
    pub model: String,
    pub short_interactive: TokenMix,
    pub short_batch: TokenMix,
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
}
