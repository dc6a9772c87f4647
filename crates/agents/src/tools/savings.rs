//! The savings tools: `right_size_models` (short calls of a model that has a cheaper catalog
//! alternative, re-priced on it) and `find_duplicate_prompts` (exact repeats a response cache
//! would serve), `find_batchable_traffic` (night-time interactive jobs the Batch API would
//! serve at its discount), `find_prompt_cache_savings` (long prompts with a stable prefix),
//! `find_output_caps` (long tails of output) and `find_context_tier_savings` (prompts just
//! above a long-context price tier). The arithmetic is [`apogee_analytics::savings`]'s.

use std::future::Future;

use apogee_analytics::savings::{
    BATCHABLE_NIGHT_SHARE, OUTPUT_CAP_PERCENTILE, Recommendation, STABLE_PREFIX_SHARE, ShortLimits,
    TIER_MARGIN, batch_api, context_tiers, output_caps, prompt_caches, response_cache, right_size,
    right_size_candidates,
};
use apogee_analytics::{CostRow, Nanos, OrgUsageQueries, Period, PriceCatalog};
use serde_json::{Value, json};

use super::{ToolCall, ToolError, ToolOutput, period_args};
use crate::findings::{recommendation_json, recommendations_json, rows_json};
use crate::format::count;

pub(crate) fn right_size_models<'a>(
    usage: &'a dyn OrgUsageQueries,
    catalog: &'a PriceCatalog,
    period: &'a Period,
    by_model: &'a [CostRow],
    limits: ShortLimits,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<Recommendation>>, ToolError>> + Send + 'a>
{
    let candidates = right_size_candidates(catalog, by_model);
    let mut args = period_args(period);
    args["models"] = json!(candidates.iter().map(|(m, _)| m).collect::<Vec<_>>());
    args["max_input_tokens"] = json!(limits.max_input_tokens);
    args["max_output_tokens"] = json!(limits.max_output_tokens);
    ToolCall {
        name: "right_size_models",
        args,
        run: async move {
            let mut checked: Vec<Value> = Vec::new();
            let mut recs = Vec::new();
            for (model, alt) in &candidates {
                let profile = usage
                    .traffic_profile(
                        period,
                        model,
                        limits.max_input_tokens,
                        limits.max_output_tokens,
                    )
                    .await?;
                let rec = catalog
                    .lookup(alt)
                    .and_then(|to| right_size(&profile, &to, limits, period.days()));
                checked.push(json!({
                    "model": model,
                    "alternative": alt,
                    "all_calls": profile.all_calls,
                    "short_calls": profile.short_interactive.calls + profile.short_batch.calls,
                    "monthly_saving_nanos": rec.as_ref().map(|r| r.monthly_saving),
                }));
                recs.extend(rec);
            }
            recs.sort_by_key(|r| std::cmp::Reverse(r.monthly_saving));
            let total = recs.iter().map(|r| r.monthly_saving).sum::<Nanos>();
            let summary = if candidates.is_empty() {
                "no model in use has a cheaper alternative in the catalog".to_string()
            } else {
                format!(
                    "{} of {} models with a cheaper alternative can be right-sized, saving {} per month",
                    recs.len(),
                    candidates.len(),
                    total.display_usd()
                )
            };
            Ok(ToolOutput {
                data: json!({
                    "limits": limits,
                    "models": checked,
                    "recommendations": recommendations_json(&recs),
                }),
                summary,
                value: recs,
            })
        },
    }
}

pub(crate) fn find_duplicate_prompts<'a>(
    usage: &'a dyn OrgUsageQueries,
    period: &'a Period,
    hit_rate: f64,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Option<Recommendation>>, ToolError>> + Send + 'a>
{
    let mut args = period_args(period);
    args["hit_rate"] = json!(hit_rate);
    ToolCall {
        name: "find_duplicate_prompts",
        args,
        run: async move {
            let repeats = usage.repeated_prompts(period).await?;
            let rec = response_cache(&repeats, hit_rate, period.days());
            let summary = match &rec {
                Some(r) => format!(
                    "{} prompts repeated in {} calls costing {}; a cache serving {:.0}% of them saves {} per month",
                    count(repeats.repeated_prompts),
                    count(repeats.repeat_calls),
                    repeats.repeat_cost.display_usd(),
                    hit_rate * 100.0,
                    r.monthly_saving.display_usd()
                ),
                None => "no exact-duplicate prompts".to_string(),
            };
            Ok(ToolOutput {
                data: json!({
                    "hit_rate": hit_rate,
                    "repeated_prompts": repeats.repeated_prompts,
                    "repeat_calls": repeats.repeat_calls,
                    "repeat_cost_nanos": repeats.repeat_cost,
                    "repeat_cost_usd": repeats.repeat_cost.usd(),
                    "top_features": rows_json(&repeats.top_features),
                    "recommendation": rec.as_ref().map(recommendation_json),
                }),
                summary,
                value: rec,
            })
        },
    }
}

pub(crate) fn find_batchable_traffic<'a>(
    usage: &'a dyn OrgUsageQueries,
    catalog: &'a PriceCatalog,
    period: &'a Period,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<Recommendation>>, ToolError>> + Send + 'a>
{
    let mut args = period_args(period);
    args["night_share"] = json!(BATCHABLE_NIGHT_SHARE);
    ToolCall {
        name: "find_batchable_traffic",
        args,
        run: async move {
            let candidates = usage.batch_candidates(period).await?;
            let recs: Vec<Recommendation> = candidates
                .iter()
                .filter_map(|c| {
                    catalog
                        .lookup(&c.model)
                        .and_then(|p| batch_api(c, &p, period.days()))
                })
                .collect();
            let total = recs.iter().map(|r| r.monthly_saving).sum::<Nanos>();
            let summary = if recs.is_empty() {
                "no interactive feature runs as a night-time job".to_string()
            } else {
                format!(
                    "{} night-time job(s) could use the Batch API, saving {} per month",
                    recs.len(),
                    total.display_usd()
                )
            };
            Ok(ToolOutput {
                data: json!({
                    "night_share": BATCHABLE_NIGHT_SHARE,
                    "recommendations": recommendations_json(&recs),
                }),
                summary,
                value: recs,
            })
        },
    }
}

/// Which of the newer recommenders a [`more_savings`] tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum More {
    PromptCache,
    OutputCap,
    ContextTier,
}

/// `find_prompt_cache_savings`, `find_output_caps` or `find_context_tier_savings`: the
/// recommender's findings over the period, as `recommend` computes them.
pub(crate) fn more_savings<'a>(
    usage: &'a dyn OrgUsageQueries,
    catalog: &'a PriceCatalog,
    period: &'a Period,
    by_model: &'a [CostRow],
    which: More,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<Recommendation>>, ToolError>> + Send + 'a>
{
    let mut args = period_args(period);
    let (name, what) = match which {
        More::PromptCache => {
            args["stable_prefix_share"] = json!(STABLE_PREFIX_SHARE);
            (
                "find_prompt_cache_savings",
                "feature(s) could cache a stable prompt prefix",
            )
        }
        More::OutputCap => {
            args["percentile"] = json!(OUTPUT_CAP_PERCENTILE);
            (
                "find_output_caps",
                "feature(s) could cap their long outputs",
            )
        }
        More::ContextTier => {
            args["margin"] = json!(TIER_MARGIN);
            (
                "find_context_tier_savings",
                "model(s) have prompts just above a price tier",
            )
        }
    };
    ToolCall {
        name,
        args,
        run: async move {
            let mut recs = match which {
                More::PromptCache => prompt_caches(usage, catalog, period).await?,
                More::OutputCap => output_caps(usage, catalog, period).await?,
                More::ContextTier => context_tiers(usage, catalog, period, by_model).await?,
            };
            recs.sort_by_key(|r| std::cmp::Reverse(r.monthly_saving));
            let total = recs.iter().map(|r| r.monthly_saving).sum::<Nanos>();
            let summary = if recs.is_empty() {
                format!("none found: 0 {what}")
            } else {
                format!(
                    "{} {what}, saving {} per month",
                    recs.len(),
                    total.display_usd()
                )
            };
            Ok(ToolOutput {
                data: json!({ "recommendations": recommendations_json(&recs) }),
                summary,
                value: recs,
            })
        },
    }
}
