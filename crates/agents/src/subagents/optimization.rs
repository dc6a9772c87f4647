//! The `optimization` agent. For a full report ([`work`]): savings backed by the period's
//! usage (`right_size_models`, `find_duplicate_prompts`, `find_batchable_traffic`,
//! `find_prompt_cache_savings`, `find_output_caps`, `find_context_tier_savings`), ranked by
//! monthly saving: the same recommendations as `savings::recommend`. For a what-if
//! ([`what_if`]): the plan's scope re-priced on another model or through the Batch API.

use apogee_analytics::savings::{CACHE_HIT_RATE, ShortLimits, sort_by_saving};
use apogee_analytics::{Nanos, OrgUsageQueries, PriceCatalog, UsageQuery};

use crate::answer::figure::subject;
use crate::answer::projection::WhatIfData;
use crate::findings::{Savings, UsageData, recommendations_json};
use crate::plan::{QuestionPlan, WhatIf};
use crate::scope::{Agent, Done, StepError};
use crate::tools::savings::{
    Recommender, find_batchable_traffic, find_duplicate_prompts, find_savings, price_what_if,
    right_size_models,
};

pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    plan: &QuestionPlan,
    data: &UsageData,
) -> Result<Done<Savings>, StepError> {
    let limits = ShortLimits::default();
    agent
        .think(format!(
            "Checking six kinds of saving side by side: short calls (at most {} input and {} \
             output tokens) a cheaper catalog model could take; exact-duplicate prompts, \
             assuming a response cache would serve {:.0}% of the repeats; interactive features \
             that run as night-time jobs, which the Batch API would serve at its discount; long \
             prompts with a stable prefix to cache; outputs far beyond their usual length; and \
             prompts just above a long-context price tier.",
            limits.max_input_tokens,
            limits.max_output_tokens,
            CACHE_HIT_RATE * 100.0
        ))
        .await?;
    // Independent reads of the same period: run together, they take as long as the slowest
    // rather than the sum (each call still pairs its own start and end by call id).
    let period = plan.period.period();
    // Drill-downs by model match the names as stored.
    let more = |which| find_savings(usage, catalog, &period, &data.by_model_as_stored, which);
    let (right_size, duplicates, batchable, prompt_cache, output_cap, context_tier) = tokio::join!(
        agent.call(right_size_models(
            usage,
            catalog,
            &period,
            &data.by_model_as_stored,
            limits,
        )),
        agent.call(find_duplicate_prompts(usage, &period, CACHE_HIT_RATE)),
        agent.call(find_batchable_traffic(usage, catalog, &period)),
        agent.call(more(Recommender::PromptCache)),
        agent.call(more(Recommender::OutputCap)),
        agent.call(more(Recommender::ContextTier)),
    );
    let (response_cache, repeats) = duplicates?;
    let mut recommendations = right_size?;
    recommendations.extend(response_cache);
    recommendations.extend(batchable?);
    recommendations.extend(prompt_cache?);
    recommendations.extend(output_cap?);
    recommendations.extend(context_tier?);
    sort_by_saving(&mut recommendations);
    let savings = Savings {
        recommendations,
        limits,
        cache_hit_rate: CACHE_HIT_RATE,
        repeats,
    };
    let summary = match savings.recommendations.first() {
        Some(top) => format!(
            "{} recommendations worth {} per month; the largest: {} ({} per month)",
            savings.recommendations.len(),
            savings.total_monthly().display_usd(),
            top.title,
            top.monthly_saving.display_usd()
        ),
        None => "no saving backed by this period's usage".to_string(),
    };
    let data = recommendations_json(&savings.recommendations);
    Ok(Done::new(savings, summary).with_data(data))
}

/// The plan's what-if: its scope over its period, model by model, as it ran and after.
pub(crate) async fn what_if(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    plan: &QuestionPlan,
    what: &WhatIf,
) -> Result<Done<WhatIfData>, StepError> {
    let who = subject(&plan.scope).unwrap_or_else(|| "all traffic".into());
    let how = match what {
        WhatIf::MoveToModel { to } => format!("on {to}, at its catalog prices"),
        WhatIf::BatchApi => "through the Batch API, at the catalog's batch discount".to_string(),
    };
    agent
        .think(format!(
            "Re-pricing the tokens of {who} over {} {how}, against the same tokens at their own models' catalog prices.",
            plan.period.period().label()
        ))
        .await?;
    let q = UsageQuery {
        period: plan.period.period(),
        scope: plan.scope.clone(),
        group_by: None,
    };
    let w = agent.call(price_what_if(usage, catalog, q, what)).await?;
    let now: Nanos = w
        .lines
        .iter()
        .filter(|l| l.after.is_some())
        .map(|l| l.now)
        .sum();
    let after: Nanos = w.lines.iter().filter_map(|l| l.after).sum();
    let summary = format!(
        "{} as it ran, {} after the change",
        now.display_usd(),
        after.display_usd()
    );
    Ok(Done::new(w, summary))
}
