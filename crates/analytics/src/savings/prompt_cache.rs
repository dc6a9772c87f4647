//! The prompt-caching recommender: a feature that sends many long prompts on one model with
//! little of them read from the provider's cache most likely repeats a stable prefix (system
//! prompt, tool definitions, examples) that the provider's prompt cache would bill at its
//! cache-read price. Usage records carry no prefix hashes (`prompt_hash` is of the whole
//! prompt), so the prefix is inferred and its share stated as an assumption.

use crate::catalog::Pricing;
use crate::money::Nanos;
use crate::queries::FeatureModelMix;

use super::{Confidence, Recommendation, per_month};

/// Assumed share of each prompt that is a stable prefix: the records cannot show it.
pub const STABLE_PREFIX_SHARE: f64 = 0.5;
/// Assumed share of prefix tokens written to the cache rather than read from it: a prefix
/// written once is read by about 9 more calls within the cache's lifetime (5 minutes at
/// Anthropic, up to an hour at OpenAI and Google), a conservative rate for a busy feature.
pub const CACHE_WRITE_SHARE: f64 = 0.1;
/// Fewer interactive calls than this in the period are too sparse to keep a cache warm.
pub const MIN_PROMPT_CACHE_CALLS: i64 = 20;
/// The shortest prompt prefix providers cache (Anthropic and OpenAI: 1,024 tokens).
pub const MIN_CACHEABLE_PREFIX_TOKENS: i64 = 1_024;

// Cache prices as multiples of the input price, used only when the catalog entry has no
// cache price of its own.
/// Anthropic: 5-minute cache writes 1.25 × input, reads 0.1 × input
/// (<https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing>).
pub const ANTHROPIC_CACHE_WRITE: f64 = 1.25;
pub const ANTHROPIC_CACHE_READ: f64 = 0.1;
/// OpenAI: automatic caching, no write premium, reads at half the input price
/// (<https://platform.openai.com/docs/guides/prompt-caching>).
pub const OPENAI_CACHE_WRITE: f64 = 1.0;
pub const OPENAI_CACHE_READ: f64 = 0.5;
/// Google: implicit caching, no write premium, reads at a quarter of the input price
/// (<https://ai.google.dev/gemini-api/docs/caching>); explicit caches' storage is not modelled.
pub const GOOGLE_CACHE_WRITE: f64 = 1.0;
pub const GOOGLE_CACHE_READ: f64 = 0.25;

/// `(write, read)` multipliers of the input price for a provider with prompt caching.
pub fn cache_multipliers(provider: &str) -> Option<(f64, f64)> {
    match provider.to_ascii_lowercase().as_str() {
        "anthropic" => Some((ANTHROPIC_CACHE_WRITE, ANTHROPIC_CACHE_READ)),
        "openai" => Some((OPENAI_CACHE_WRITE, OPENAI_CACHE_READ)),
        "google" => Some((GOOGLE_CACHE_WRITE, GOOGLE_CACHE_READ)),
        _ => None,
    }
}

/// Caching the inferred stable prefix of `m`'s interactive prompts on its model (`pricing`).
/// `None` for too few calls, prompts too short to cache, a prefix already read from cache, or
/// a provider without prompt caching.
pub fn prompt_cache(
    m: &FeatureModelMix,
    pricing: &Pricing<'_>,
    period_days: f64,
) -> Option<Recommendation> {
    let mix = &m.interactive;
    if mix.calls < MIN_PROMPT_CACHE_CALLS {
        return None;
    }
    let prompt_tokens = mix.fresh_input_tokens + mix.cached_input_tokens;
    let avg_prompt = prompt_tokens / mix.calls;
    if (avg_prompt as f64 * STABLE_PREFIX_SHARE) < MIN_CACHEABLE_PREFIX_TOKENS as f64 {
        return None;
    }
    let target = (prompt_tokens as f64 * STABLE_PREFIX_SHARE).round() as i64;
    let newly_cached = (target - mix.cached_input_tokens).min(mix.fresh_input_tokens);
    if newly_cached <= 0 {
        return None;
    }
    let e = pricing.entry;
    let (write_x, read_x) = cache_multipliers(&e.provider)?;
    let write = e.cache_write.unwrap_or(e.input * write_x);
    let read = e.cached_input.unwrap_or(e.input * read_x);
    let cached_rate = CACHE_WRITE_SHARE * write + (1.0 - CACHE_WRITE_SHARE) * read;
    // $ per 1M tokens × tokens × 1000 = nanos.
    let saving = Nanos((newly_cached as f64 * (e.input - cached_rate) * 1000.0).round() as i64);
    if saving <= Nanos::ZERO {
        return None;
    }
    let inferred = mix.cached_input_tokens == 0;
    Some(Recommendation {
        kind: "prompt_cache".into(),
        title: format!(
            "Cache the stable prompt prefix of `{}` on {}",
            m.feature, m.model
        ),
        period_saving: saving,
        monthly_saving: per_month(saving, period_days),
        affected_calls: mix.calls,
        assumptions: vec![
            format!(
                "{} interactive calls averaged {avg_prompt} prompt tokens, {:.0}% of them read from cache",
                mix.calls,
                share(mix.cached_input_tokens, prompt_tokens) * 100.0
            ),
            format!(
                "{}: {:.0}% of each prompt is a stable prefix (system prompt, tools, examples), so {newly_cached} more prompt tokens would be cached",
                if inferred {
                    "inferred, nothing is cached yet"
                } else {
                    "some prompt tokens are already cached, so a shared prefix exists"
                },
                STABLE_PREFIX_SHARE * 100.0
            ),
            format!(
                "{:.0}% of cached tokens are writes at ${write} and the rest reads at ${read} per 1M, against ${} input ({} {}, {})",
                CACHE_WRITE_SHARE * 100.0,
                e.input,
                e.provider,
                pricing.version,
                e.source
            ),
            "interactive calls only; where the Batch API is also recommended for the same calls, the two savings overlap and do not add up in full".into(),
        ],
        confidence: if inferred {
            Confidence::Low
        } else {
            Confidence::Medium
        },
    })
}

fn share(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PriceCatalog;
    use crate::queries::TokenMix;

    fn traffic(model: &str, calls: i64, fresh: i64, cached: i64) -> FeatureModelMix {
        FeatureModelMix {
            feature: "support-bot".into(),
            model: model.into(),
            interactive: TokenMix {
                calls,
                fresh_input_tokens: fresh,
                cached_input_tokens: cached,
                output_tokens: 0,
                cost: Nanos::ZERO,
            },
            batch: TokenMix::default(),
        }
    }

    #[test]
    fn anthropic_prefix_by_hand() {
        let c = PriceCatalog::builtin().unwrap();
        let sonnet = c.lookup("claude-sonnet-4").unwrap();
        // 40 calls × 4,000 fresh prompt tokens = 160,000; half is the prefix: 80,000 tokens.
        // Cached rate 0.1 × $3.75 + 0.9 × $0.30 = $0.645; saving (3 − 0.645) × 0.08 = $0.1884.
        let r = prompt_cache(&traffic("claude-sonnet-4", 40, 160_000, 0), &sonnet, 30.0).unwrap();
        assert_eq!(r.period_saving, Nanos(188_400_000));
        assert_eq!(r.confidence, Confidence::Low);
        // Already half cached: nothing to add.
        assert!(
            prompt_cache(
                &traffic("claude-sonnet-4", 40, 80_000, 80_000),
                &sonnet,
                30.0
            )
            .is_none()
        );
        // 19 calls: too few; 40 calls of 2,000 tokens: a 1,000-token prefix is too short.
        assert!(prompt_cache(&traffic("claude-sonnet-4", 19, 76_000, 0), &sonnet, 30.0).is_none());
        assert!(prompt_cache(&traffic("claude-sonnet-4", 40, 80_000, 0), &sonnet, 30.0).is_none());
    }

    #[test]
    fn multipliers_fill_in_missing_catalog_cache_prices() {
        let c = PriceCatalog::builtin().unwrap();
        // The 2024-05-13 gpt-4o entry has no cached price: $5 × 0.5 read, $5 write.
        let old = c
            .lookup_at("gpt-4o", "2024-06-01T00:00:00Z".parse().unwrap())
            .unwrap();
        // Prefix 80,000 tokens; cached rate 0.1 × 5 + 0.9 × 2.5 = $2.75; (5 − 2.75) × 0.08
        // = $0.18.
        let r = prompt_cache(&traffic("gpt-4o", 40, 160_000, 0), &old, 30.0).unwrap();
        assert_eq!(r.period_saving, Nanos(180_000_000));
        assert_eq!(cache_multipliers("self-hosted"), None);
    }
}
