//! The savings tools: `right_size_models` (short calls of a model that has a cheaper catalog
//! alternative, re-priced on it) and `find_duplicate_prompts` (exact repeats a response cache
//! would serve), `find_batchable_traffic` (night-time interactive jobs the Batch API would
//! serve at its discount), `find_prompt_cache_savings` (long prompts with a stable prefix),
//! `find_output_caps` (long tails of output) and `find_context_tier_savings` (prompts just
//! above a long-context price tier); and the what-ifs of a plan, `price_model_move` and
//! `price_batch_api` (a scope's traffic re-priced with the catalog on the same tokens). The
//! arithmetic is [`apogee_analytics::savings`]'s.

use std::future::Future;

use apogee_analytics::savings::what_if::{Repriced, move_to, through_batch};
use apogee_analytics::savings::{
    BATCHABLE_NIGHT_SHARE, OUTPUT_CAP_PERCENTILE, Recommendation, STABLE_PREFIX_SHARE, ShortLimits,
    TIER_MARGIN, batch_api, candidate_profile, context_tiers, output_caps, prompt_caches,
    response_cache, right_size, right_size_candidates,
};
use apogee_analytics::{
    CostRow, Nanos, OrgUsageQueries, Period, PriceCatalog, RepeatProfile, UsageQuery,
};
use serde_json::{Value, json};

use super::{ToolCall, ToolError, ToolOutput, period_args};
use crate::answer::projection::WhatIfData;
use crate::findings::{recommendation_json, recommendations_json, rows_json, what_if_json};
use crate::format::count;
use crate::plan::WhatIf;

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
    args["models"] = json!(candidates.iter().map(|c| &c.model).collect::<Vec<_>>());
    args["max_input_tokens"] = json!(limits.max_input_tokens);
    args["max_output_tokens"] = json!(limits.max_output_tokens);
    ToolCall {
        name: "right_size_models",
        args,
        run: async move {
            let mut checked: Vec<Value> = Vec::new();
            let mut recs = Vec::new();
            for c in &candidates {
                // Every name the model's calls are stored under, added up.
                let profile = candidate_profile(usage, period, c, limits).await?;
                let rec = catalog
                    .lookup(&c.alternative)
                    .and_then(|to| right_size(&profile, &to, limits, period.days()));
                checked.push(json!({
                    "model": c.model,
                    "names": c.names,
                    "alternative": c.alternative,
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

/// The response cache's recommendation (none without a saving) and the repeated prompts
/// behind it.
pub(crate) type Duplicates = (Option<Recommendation>, RepeatProfile);

pub(crate) fn find_duplicate_prompts<'a>(
    usage: &'a dyn OrgUsageQueries,
    period: &'a Period,
    hit_rate: f64,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Duplicates>, ToolError>> + Send + 'a> {
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
                value: (rec, repeats),
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

/// The recommenders a [`find_savings`] tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recommender {
    PromptCache,
    OutputCap,
    ContextTier,
}

/// `find_prompt_cache_savings`, `find_output_caps` or `find_context_tier_savings`: the
/// recommender's findings over the period, as `recommend` computes them.
pub(crate) fn find_savings<'a>(
    usage: &'a dyn OrgUsageQueries,
    catalog: &'a PriceCatalog,
    period: &'a Period,
    by_model: &'a [CostRow],
    which: Recommender,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<Recommendation>>, ToolError>> + Send + 'a>
{
    let mut args = period_args(period);
    let (name, what) = match which {
        Recommender::PromptCache => {
            args["stable_prefix_share"] = json!(STABLE_PREFIX_SHARE);
            (
                "find_prompt_cache_savings",
                "feature(s) could cache a stable prompt prefix",
            )
        }
        Recommender::OutputCap => {
            args["percentile"] = json!(OUTPUT_CAP_PERCENTILE);
            (
                "find_output_caps",
                "feature(s) could cap their long outputs",
            )
        }
        Recommender::ContextTier => {
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
                Recommender::PromptCache => prompt_caches(usage, catalog, period).await?,
                Recommender::OutputCap => output_caps(usage, catalog, period).await?,
                Recommender::ContextTier => context_tiers(usage, catalog, period, by_model).await?,
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

/// `price_model_move` or `price_batch_api`: the plan's scope over its period, model by model,
/// priced as it ran and after the change, both with the catalog on the same tokens.
pub(crate) fn price_what_if<'a>(
    usage: &'a dyn OrgUsageQueries,
    catalog: &'a PriceCatalog,
    q: UsageQuery,
    what: &'a WhatIf,
) -> ToolCall<impl Future<Output = Result<ToolOutput<WhatIfData>, ToolError>> + Send + 'a> {
    let mut args = period_args(&q.period);
    args["scope"] = json!(q.scope);
    let name = match what {
        WhatIf::MoveToModel { to } => {
            args["to_model"] = json!(to);
            "price_model_move"
        }
        WhatIf::BatchApi => "price_batch_api",
    };
    ToolCall {
        name,
        args,
        run: async move {
            let (mix, slice) = tokio::join!(usage.model_mix(&q), usage.aggregate(&q));
            let (mix, slice) = (mix?, slice?);
            let target = match what {
                WhatIf::MoveToModel { to } => catalog.lookup(to),
                WhatIf::BatchApi => None,
            };
            let lines: Vec<Repriced> = mix
                .iter()
                .map(|m| {
                    let own = catalog.lookup(&m.model);
                    match what {
                        WhatIf::MoveToModel { .. } => move_to(
                            &m.model,
                            &m.interactive,
                            &m.batch,
                            own.as_ref(),
                            target.as_ref(),
                        ),
                        WhatIf::BatchApi => {
                            through_batch(&m.model, &m.interactive, &m.batch, own.as_ref())
                        }
                    }
                })
                .collect();
            let data = WhatIfData {
                lines,
                left_out_calls: slice.totals.unpriced_calls,
            };
            let now: Nanos = data
                .lines
                .iter()
                .filter(|l| l.after.is_some())
                .map(|l| l.now)
                .sum();
            let after: Nanos = data.lines.iter().filter_map(|l| l.after).sum();
            let summary = if data.lines.is_empty() {
                "no traffic priced from the catalog in this scope".to_string()
            } else {
                format!(
                    "{} model(s): {} as they ran, {} after the change",
                    data.lines.len(),
                    now.display_usd(),
                    after.display_usd()
                )
            };
            Ok(ToolOutput {
                data: what_if_json(&data),
                summary,
                value: data,
            })
        },
    }
}
