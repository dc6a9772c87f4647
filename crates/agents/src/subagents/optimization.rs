//! The `optimization` agent: savings backed by the period's usage (`right_size_models`,
//! `find_duplicate_prompts`, `find_batchable_traffic`, `find_prompt_cache_savings`,
//! `find_output_caps`, `find_context_tier_savings`), ranked by monthly saving: the same
//! recommendations as `savings::recommend`.

use apogee_analytics::savings::{CACHE_HIT_RATE, ShortLimits, sort_by_saving};
use apogee_analytics::{OrgUsageQueries, PriceCatalog};

use crate::findings::{Savings, UsageData, recommendations_json};
use crate::scope::{Agent, Done, StepError};
use crate::tools::savings::{
    More, find_batchable_traffic, find_duplicate_prompts, more_savings, right_size_models,
};
use crate::triage::Triage;

pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    t: &Triage,
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
    // Drill-downs by model match the names as stored.
    let more = |which| more_savings(usage, catalog, &t.period, &data.by_model_as_stored, which);
    let (right_size, duplicates, batchable, prompt_cache, output_cap, context_tier) = tokio::join!(
        agent.call(right_size_models(
            usage,
            catalog,
            &t.period,
            &data.by_model_as_stored,
            limits,
        )),
        agent.call(find_duplicate_prompts(usage, &t.period, CACHE_HIT_RATE)),
        agent.call(find_batchable_traffic(usage, catalog, &t.period)),
        agent.call(more(More::PromptCache)),
        agent.call(more(More::OutputCap)),
        agent.call(more(More::ContextTier)),
    );
    let mut recommendations = right_size?;
    recommendations.extend(duplicates?);
    recommendations.extend(batchable?);
    recommendations.extend(prompt_cache?);
    recommendations.extend(output_cap?);
    recommendations.extend(context_tier?);
    sort_by_saving(&mut recommendations);
    let savings = Savings {
        recommendations,
        limits,
        cache_hit_rate: CACHE_HIT_RATE,
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
