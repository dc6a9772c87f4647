//! Savings recommendations computed from query results and catalog prices. Every figure names
//! the prices and assumptions behind it; nothing is estimated without data. This module owns
//! the [`Recommendation`] shape, right-sizing, the response cache and the Batch API, and
//! [`recommend`], which runs every recommender; the prompt cache, output cap and context-tier
//! recommenders live in their own submodules.

mod context_tier;
mod output_cap;
mod prompt_cache;
pub mod what_if;

pub use context_tier::{TIER_MARGIN, context_tier, tier_band};
pub use output_cap::{FAR_ABOVE_FACTOR, MIN_TRUNCATION_CALLS, OUTPUT_CAP_PERCENTILE, output_cap};
pub use prompt_cache::{
    ANTHROPIC_CACHE_READ, ANTHROPIC_CACHE_WRITE, CACHE_WRITE_SHARE, GOOGLE_CACHE_READ,
    GOOGLE_CACHE_WRITE, MIN_CACHEABLE_PREFIX_TOKENS, MIN_PROMPT_CACHE_CALLS, OPENAI_CACHE_READ,
    OPENAI_CACHE_WRITE, STABLE_PREFIX_SHARE, cache_multipliers, prompt_cache,
};

use futures_util::future::{try_join, try_join5};
use serde::{Deserialize, Serialize};

use crate::catalog::{PriceCatalog, Pricing};
use crate::money::Nanos;
use crate::period::Period;
use crate::queries::{
    BatchCandidate, CostRow, NIGHT_END_HOUR, OrgUsageQueries, QueryError, RepeatProfile, TokenMix,
    TrafficProfile,
};
use crate::query::{Dimension, Grouping, Scope, UsageQuery};

/// Share of a feature's interactive calls on a model that must run at night for it to count
/// as a scheduled job nobody waits on.
pub const BATCHABLE_NIGHT_SHARE: f64 = 0.9;

/// The smallest monthly saving a written answer lists: anything less rounds to $0.00. The
/// figures themselves (API, `data`) keep every recommendation, exact to the nano-dollar.
pub const MIN_LISTED_MONTHLY_SAVING: Nanos = Nanos(5_000_000);

/// Share of exact-duplicate prompts a response cache is assumed to serve.
pub const CACHE_HIT_RATE: f64 = 0.8;

/// Calls at or under both limits count as "short" traffic that a smaller model handles well.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShortLimits {
    pub max_input_tokens: i64,
    pub max_output_tokens: i64,
}

impl Default for ShortLimits {
    fn default() -> Self {
        Self {
            max_input_tokens: 1_000,
            max_output_tokens: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

/// One concrete way to cut the bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// `right_size_model`, `response_cache`, `batch_api`, `prompt_cache`, `output_cap`,
    /// `context_tier`.
    pub kind: String,
    pub title: String,
    /// Saving over the analysed period.
    pub period_saving: Nanos,
    /// The period saving scaled to 30 days.
    pub monthly_saving: Nanos,
    pub affected_calls: i64,
    pub assumptions: Vec<String>,
    pub confidence: Confidence,
}

impl Recommendation {
    /// Whether the monthly saving shows as at least $0.01 ([`MIN_LISTED_MONTHLY_SAVING`]).
    pub fn worth_listing(&self) -> bool {
        self.monthly_saving >= MIN_LISTED_MONTHLY_SAVING
    }

    /// The cheaper model this recommendation moves `model`'s short calls to, if it is the
    /// right-sizing of `model`.
    pub fn right_sizes(&self, model: &str) -> Option<&str> {
        if self.kind != "right_size_model" {
            return None;
        }
        self.title.strip_prefix(&right_size_prefix(model))
    }

    /// The JSON shape of a recommendation wherever one is shown (`GET /api/recommendations`,
    /// the agents' tool and report `data`): money both as exact nanos and as dollars.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind,
            "title": self.title,
            "monthly_saving_nanos": self.monthly_saving,
            "monthly_saving_usd": self.monthly_saving.usd(),
            "period_saving_nanos": self.period_saving,
            "period_saving_usd": self.period_saving.usd(),
            "affected_calls": self.affected_calls,
            "assumptions": self.assumptions,
            "confidence": self.confidence,
        })
    }
}

/// The start of a right-sizing recommendation's title, which names the model it moves.
fn right_size_prefix(model: &str) -> String {
    format!("Route short {model} calls to ")
}

pub(crate) fn per_month(amount: Nanos, period_days: f64) -> Nanos {
    if period_days <= 0.0 {
        return Nanos::ZERO;
    }
    Nanos((amount.0 as f64 * 30.0 / period_days).round() as i128)
}

fn reprice(mix: &TokenMix, to: &Pricing<'_>, batch: bool) -> Nanos {
    to.cost(
        mix.fresh_input_tokens,
        mix.cached_input_tokens,
        mix.output_tokens,
        batch,
    )
}

/// Moving `profile`'s short calls from their model to `to` (a cheaper model of the catalog).
/// `None` when there is no such traffic or no saving.
pub fn right_size(
    profile: &TrafficProfile,
    to: &Pricing<'_>,
    limits: ShortLimits,
    period_days: f64,
) -> Option<Recommendation> {
    let calls = profile.short_interactive.calls + profile.short_batch.calls;
    if calls == 0 {
        return None;
    }
    let current = profile.short_interactive.cost + profile.short_batch.cost;
    let new =
        reprice(&profile.short_interactive, to, false) + reprice(&profile.short_batch, to, true);
    let saving = current - new;
    if saving <= Nanos::ZERO {
        return None;
    }
    let share = if profile.all_calls > 0 {
        calls as f64 / profile.all_calls as f64
    } else {
        0.0
    };
    let e = to.entry;
    Some(Recommendation {
        kind: "right_size_model".into(),
        title: format!("{}{}", right_size_prefix(&profile.model), e.model),
        period_saving: saving,
        monthly_saving: per_month(saving, period_days),
        affected_calls: calls,
        assumptions: vec![
            format!(
                "short = at most {} input and {} output tokens; {calls} of {} {} calls ({:.0}%) qualify",
                limits.max_input_tokens,
                limits.max_output_tokens,
                profile.all_calls,
                profile.model,
                share * 100.0
            ),
            format!(
                "{} prices: ${} input, ${} cached input, ${} output per 1M tokens ({}, {})",
                e.model,
                e.input,
                e.cached_input.unwrap_or(e.input),
                e.output,
                to.version,
                e.source
            ),
            "same token counts on the smaller model; quality on these calls should be checked with an evaluation before switching".into(),
        ],
        confidence: if share >= 0.2 { Confidence::Medium } else { Confidence::Low },
    })
}

/// Serving exact-duplicate prompts from a response cache. `hit_rate` is the assumed share of
/// repeats a cache with a sensible TTL would serve.
pub fn response_cache(
    repeats: &RepeatProfile,
    hit_rate: f64,
    period_days: f64,
) -> Option<Recommendation> {
    if repeats.repeat_calls == 0 {
        return None;
    }
    let saving = Nanos((repeats.repeat_cost.0 as f64 * hit_rate).round() as i128);
    if saving <= Nanos::ZERO {
        return None;
    }
    Some(Recommendation {
        kind: "response_cache".into(),
        title: "Cache responses to exact-duplicate prompts".into(),
        period_saving: saving,
        monthly_saving: per_month(saving, period_days),
        affected_calls: repeats.repeat_calls,
        assumptions: vec![
            format!(
                "{} distinct prompts were sent more than once (same prompt_hash and model); {} calls repeated an earlier one, costing {}",
                repeats.repeated_prompts,
                repeats.repeat_calls,
                repeats.repeat_cost.display_usd()
            ),
            format!(
                "a response cache serves {:.0}% of those repeats (the rest expire or need fresh answers)",
                hit_rate * 100.0
            ),
        ],
        confidence: Confidence::High,
    })
}

/// Sending a feature's night-time interactive calls through the provider's Batch API (results
/// within 24 h at the batch discount). `None` unless at least [`BATCHABLE_NIGHT_SHARE`] of its
/// interactive calls on the model ran at night, or when the model has no batch discount.
pub fn batch_api(
    c: &BatchCandidate,
    pricing: &Pricing<'_>,
    period_days: f64,
) -> Option<Recommendation> {
    if c.night.calls == 0
        || (c.night.calls as f64) < BATCHABLE_NIGHT_SHARE * c.interactive_calls as f64
    {
        return None;
    }
    // The discount alone, on catalog prices: both sides priced the same way.
    let saving = reprice(&c.night, pricing, false) - reprice(&c.night, pricing, true);
    if saving <= Nanos::ZERO {
        return None;
    }
    Some(Recommendation {
        kind: "batch_api".into(),
        title: format!(
            "Send {}'s nightly {} calls through the Batch API",
            c.feature, c.model
        ),
        period_saving: saving,
        monthly_saving: per_month(saving, period_days),
        affected_calls: c.night.calls,
        assumptions: vec![
            format!(
                "{} of {} interactive {} calls on {} ran between 00:00 and {NIGHT_END_HOUR:02}:00 UTC: a scheduled job nobody waits on",
                c.night.calls, c.interactive_calls, c.feature, c.model
            ),
            format!(
                "the Batch API discount of the catalog entry {} ({}) applies to these calls; results arrive within 24 hours",
                pricing.version, pricing.entry.source
            ),
        ],
        confidence: Confidence::High,
    })
}

/// A model whose short calls could move to a cheaper one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightSizeCandidate {
    /// The catalog's name of the model.
    pub model: String,
    /// The names its calls are stored under (`gpt-4o`, `gpt-4o-2024-08-06`), by cost.
    pub names: Vec<String>,
    /// The cheaper model suggested.
    pub alternative: String,
}

/// Models of `by_model` (a breakdown by model as stored) whose catalog entry names a cheaper
/// alternative the catalog prices and that has no announced retirement — never a move to a
/// model being retired. Names of one model are one candidate, in `by_model`'s order.
pub fn right_size_candidates(
    catalog: &PriceCatalog,
    by_model: &[CostRow],
) -> Vec<RightSizeCandidate> {
    let mut out: Vec<RightSizeCandidate> = Vec::new();
    for m in crate::model_rows::merge_model_rows(by_model, catalog) {
        let Some(alt) = catalog
            .lookup(&m.row.key)
            .and_then(|p| p.entry.cheaper_alternative.clone())
        else {
            continue;
        };
        let Some(to) = catalog.lookup(&alt) else {
            continue;
        };
        if to.entry.retires_on.is_some() {
            continue;
        }
        out.push(RightSizeCandidate {
            model: m.row.key,
            names: m.names,
            alternative: alt,
        });
    }
    out
}

/// The traffic profile of a candidate: its stored names' profiles added up, under its
/// catalog name.
pub async fn candidate_profile(
    usage: &dyn OrgUsageQueries,
    period: &Period,
    candidate: &RightSizeCandidate,
    limits: ShortLimits,
) -> Result<TrafficProfile, QueryError> {
    let mut total = TrafficProfile {
        model: candidate.model.clone(),
        ..TrafficProfile::default()
    };
    for name in &candidate.names {
        let p = usage
            .traffic_profile(
                period,
                name,
                limits.max_input_tokens,
                limits.max_output_tokens,
            )
            .await?;
        for (sum, part) in [
            (&mut total.short_interactive, p.short_interactive),
            (&mut total.short_batch, p.short_batch),
        ] {
            sum.calls += part.calls;
            sum.fresh_input_tokens += part.fresh_input_tokens;
            sum.cached_input_tokens += part.cached_input_tokens;
            sum.output_tokens += part.output_tokens;
            sum.cost = sum.cost + part.cost;
        }
        total.all_calls += p.all_calls;
        total.all_cost = total.all_cost + p.all_cost;
    }
    Ok(total)
}

/// Every recommendation the period's usage backs (right-sizing each candidate model, the
/// response cache at [`CACHE_HIT_RATE`], the Batch API for night-time jobs, prompt caching,
/// output caps and context-tier trimming), largest monthly saving first, then by title: what
/// `GET /api/recommendations` answers and the optimization agent finds step by step.
pub async fn recommend(
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    period: &Period,
    limits: ShortLimits,
) -> Result<Vec<Recommendation>, QueryError> {
    // Independent reads: side by side they take as long as the slowest, not the sum. Only
    // right-sizing and context tiers need the spend by model first.
    let by_model_then = async {
        let by_model = usage
            .breakdown(period, Grouping::By(Dimension::Model))
            .await?;
        let right_sized = async {
            let mut recs = Vec::new();
            for candidate in right_size_candidates(catalog, &by_model) {
                let profile = candidate_profile(usage, period, &candidate, limits).await?;
                recs.extend(
                    catalog
                        .lookup(&candidate.alternative)
                        .and_then(|to| right_size(&profile, &to, limits, period.days())),
                );
            }
            Ok::<_, QueryError>(recs)
        };
        try_join(
            right_sized,
            context_tiers(usage, catalog, period, &by_model),
        )
        .await
    };
    let ((right_sized, tiers), repeats, batchable, caches, caps) = try_join5(
        by_model_then,
        usage.repeated_prompts(period),
        usage.batch_candidates(period),
        prompt_caches(usage, catalog, period),
        output_caps(usage, catalog, period),
    )
    .await?;
    let mut recs = right_sized;
    recs.extend(response_cache(&repeats, CACHE_HIT_RATE, period.days()));
    for c in batchable {
        recs.extend(
            catalog
                .lookup(&c.model)
                .and_then(|p| batch_api(&c, &p, period.days())),
        );
    }
    recs.extend(caches);
    recs.extend(caps);
    recs.extend(tiers);
    sort_by_saving(&mut recs);
    Ok(recs)
}

/// Prompt caching for each feature × model whose traffic backs it.
pub async fn prompt_caches(
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    period: &Period,
) -> Result<Vec<Recommendation>, QueryError> {
    let by_feature = UsageQuery {
        period: *period,
        scope: Scope::all(),
        group_by: Some(Grouping::By(Dimension::Feature)),
    };
    Ok(usage
        .model_mix(&by_feature)
        .await?
        .iter()
        .filter_map(|m| {
            catalog
                .lookup(&m.model)
                .and_then(|p| prompt_cache(m, &p, period.days()))
        })
        .collect())
}

/// A `max_tokens` cap for each feature × model with a long tail of outputs.
pub async fn output_caps(
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    period: &Period,
) -> Result<Vec<Recommendation>, QueryError> {
    Ok(usage
        .output_tails(period, OUTPUT_CAP_PERCENTILE)
        .await?
        .iter()
        .filter_map(|t| {
            catalog
                .lookup(&t.model)
                .and_then(|p| output_cap(t, &p, period.days()))
        })
        .collect())
}

/// Context-tier trimming for each model of `by_model` with tiers in the catalog, one per tier.
pub async fn context_tiers(
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    period: &Period,
    by_model: &[CostRow],
) -> Result<Vec<Recommendation>, QueryError> {
    let mut recs = Vec::new();
    for row in by_model {
        let Some(pricing) = catalog.lookup(&row.key) else {
            continue;
        };
        for tier in &pricing.entry.tiers {
            let (above, up_to) = tier_band(tier.above_input_tokens);
            let band = usage.input_band(period, &row.key, above, up_to).await?;
            recs.extend(context_tier(&band, &pricing, period.days()));
        }
    }
    Ok(recs)
}

/// Largest monthly saving first, ties by title: the order every list of recommendations has.
pub fn sort_by_saving(recs: &mut [Recommendation]) {
    recs.sort_by(|a, b| {
        b.monthly_saving
            .cmp(&a.monthly_saving)
            .then_with(|| a.title.cmp(&b.title))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PriceCatalog;
    use crate::queries::BatchCandidate;

    #[test]
    fn right_size_by_hand() {
        let catalog = PriceCatalog::builtin().unwrap();
        let mini = catalog.lookup("gpt-4o-mini").unwrap();
        // 100 short interactive gpt-4o calls, 500 fresh in / 0 cached / 100 out each:
        // on gpt-4o: 50_000 × 2.50 + 10_000 × 10 = $0.125 + $0.10 = $0.225
        // on mini:   50_000 × 0.15 + 10_000 × 0.60 = $0.0075 + $0.006 = $0.0135
        let profile = TrafficProfile {
            model: "gpt-4o".into(),
            short_interactive: TokenMix {
                calls: 100,
                fresh_input_tokens: 50_000,
                cached_input_tokens: 0,
                output_tokens: 10_000,
                cost: Nanos(225_000_000),
            },
            short_batch: TokenMix::default(),
            all_calls: 400,
            all_cost: Nanos(1_000_000_000),
        };
        let r = right_size(&profile, &mini, ShortLimits::default(), 15.0).unwrap();
        assert_eq!(r.period_saving, Nanos(211_500_000));
        assert_eq!(r.monthly_saving, Nanos(423_000_000));
        assert_eq!(r.affected_calls, 100);
        // It names the model it moves, and no other of a similar name.
        assert_eq!(r.right_sizes("gpt-4o"), Some("gpt-4o-mini"));
        assert_eq!(r.right_sizes("gpt-4o-mini"), None);
        assert_eq!(r.right_sizes("gpt-4"), None);
    }

    #[test]
    fn no_traffic_no_recommendation() {
        let catalog = PriceCatalog::builtin().unwrap();
        let mini = catalog.lookup("gpt-4o-mini").unwrap();
        assert!(
            right_size(
                &TrafficProfile::default(),
                &mini,
                ShortLimits::default(),
                30.0
            )
            .is_none()
        );
        assert!(response_cache(&RepeatProfile::default(), 0.8, 30.0).is_none());
    }

    #[test]
    fn batch_api_by_hand() {
        let catalog = PriceCatalog::builtin().unwrap();
        let sonnet = catalog.lookup("claude-sonnet-4").unwrap();
        // 10 night calls, 100,000 fresh in and 10,000 out: $3 and $15 per 1M →
        // $0.30 + $0.15 = $0.45; at the 50% batch discount $0.225: saving $0.225 over 15
        // days, $0.45 a month.
        let mut c = BatchCandidate {
            feature: "nightly".into(),
            model: "claude-sonnet-4".into(),
            interactive_calls: 10,
            night: TokenMix {
                calls: 10,
                fresh_input_tokens: 100_000,
                cached_input_tokens: 0,
                output_tokens: 10_000,
                cost: Nanos(450_000_000),
            },
        };
        let r = batch_api(&c, &sonnet, 15.0).unwrap();
        assert_eq!(r.period_saving, Nanos(225_000_000));
        assert_eq!(r.monthly_saving, Nanos(450_000_000));
        assert_eq!((r.kind.as_str(), r.affected_calls), ("batch_api", 10));
        // 10 of 12 calls at night (83%) is not a night-time job.
        c.interactive_calls = 12;
        assert!(batch_api(&c, &sonnet, 15.0).is_none());
    }

    #[test]
    fn right_sizing_never_suggests_a_model_being_retired() {
        let entry = |model: &str, price: f64, alt: &str, retires: &str| {
            format!(
                "[[model]]\nprovider = \"openai\"\nmodel = \"{model}\"\ninput = {price}\noutput = {price}\neffective_from = \"2025-01-01\"\nsource = \"s\"\n{alt}{retires}\n"
            )
        };
        let row = |key: &str| CostRow {
            key: key.into(),
            calls: 1,
            input_tokens: 1,
            output_tokens: 1,
            cost: Nanos(1),
            unpriced_calls: 0,
        };
        let catalog = PriceCatalog::from_toml(&format!(
            "{}{}{}{}",
            entry("big", 10.0, "cheaper_alternative = \"small\"\n", ""),
            entry("small", 1.0, "", "retires_on = \"2027-01-14\"\n"),
            entry("other", 10.0, "cheaper_alternative = \"tiny\"\n", ""),
            entry("tiny", 0.5, "", ""),
        ))
        .unwrap();
        let got = right_size_candidates(&catalog, &[row("big"), row("other")]);
        assert_eq!(
            got,
            vec![RightSizeCandidate {
                model: "other".into(),
                names: vec!["other".into()],
                alternative: "tiny".into(),
            }]
        );
        // The built-in catalog's gpt-4o calls, under both their names, are one candidate.
        let builtin = PriceCatalog::builtin().unwrap();
        let got = right_size_candidates(&builtin, &[row("gpt-4o-2024-08-06"), row("gpt-4o")]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].names, ["gpt-4o-2024-08-06", "gpt-4o"]);
        assert_eq!(got[0].alternative, "gpt-5.4-mini");
    }
}
