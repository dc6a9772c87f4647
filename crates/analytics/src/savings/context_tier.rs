//! The context-tier recommender: models whose whole call is billed at higher prices once its
//! prompt passes a length threshold (the catalog's `[[model.tier]]`). Calls just above a
//! threshold could be trimmed below it (fewer retrieved chunks, shorter history), saving the
//! tier's premium on the whole call.

use crate::catalog::Pricing;
use crate::money::Nanos;
use crate::queries::InputBand;

use super::{Confidence, Recommendation, per_month};

/// A prompt at most this much above a threshold (20%) counts as "just above": trimming it
/// below the threshold is plausible without losing what the call needs.
pub const TIER_MARGIN: f64 = 0.2;

/// The band of prompt lengths `(threshold, threshold × (1 + TIER_MARGIN)]` looked at.
pub fn tier_band(threshold: i64) -> (i64, i64) {
    let up_to = (threshold as f64 * (1.0 + TIER_MARGIN)).floor() as i64;
    (threshold, up_to)
}

/// Trimming `band`'s prompts below its threshold on its model (`pricing`). The saving is the
/// premium alone: the same tokens at the rates below the threshold (the trimmed tokens' own
/// price is not counted, which keeps the figure conservative).
pub fn context_tier(
    band: &InputBand,
    pricing: &Pricing<'_>,
    period_days: f64,
) -> Option<Recommendation> {
    let calls = band.interactive.calls + band.batch.calls;
    if calls == 0 {
        return None;
    }
    let threshold = band.above_input_tokens;
    let premium = |above: bool| {
        let prompt = if above { threshold + 1 } else { threshold };
        let i = &band.interactive;
        let b = &band.batch;
        pricing.cost_for_prompt(
            prompt,
            i.fresh_input_tokens,
            i.cached_input_tokens,
            i.output_tokens,
            false,
        ) + pricing.cost_for_prompt(
            prompt,
            b.fresh_input_tokens,
            b.cached_input_tokens,
            b.output_tokens,
            true,
        )
    };
    let saving = premium(true) - premium(false);
    if saving <= Nanos::ZERO {
        return None;
    }
    let e = pricing.entry;
    Some(Recommendation {
        kind: "context_tier".into(),
        title: format!(
            "Trim {} prompts just above {threshold} tokens below the long-context tier",
            band.model
        ),
        period_saving: saving,
        monthly_saving: per_month(saving, period_days),
        affected_calls: calls,
        assumptions: vec![
            format!(
                "{calls} calls had prompts of {}–{} tokens, at most {:.0}% above the {threshold}-token threshold, above which {} bills the whole call at its long-context prices",
                threshold + 1,
                band.up_to_input_tokens,
                TIER_MARGIN * 100.0,
                band.model
            ),
            "trimmed below the threshold (fewer retrieved chunks or history turns), the same calls are billed at the prices below it; the trimmed tokens' own price is not counted".into(),
            format!(
                "prices from {} ({}); cache writes counted as fresh input",
                pricing.version, e.source
            ),
        ],
        confidence: Confidence::Low,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PriceCatalog;
    use crate::queries::TokenMix;

    #[test]
    fn premium_by_hand() {
        let c = PriceCatalog::builtin().unwrap();
        let p = c.lookup("gemini-1.5-pro").unwrap();
        assert_eq!(tier_band(128_000), (128_000, 153_600));
        // One call of 140,000 fresh prompt tokens and 1,000 output tokens: above 128k at
        // $2.50 / $10 → 0.35 + 0.01 = $0.36; below at $1.25 / $5 → 0.175 + 0.005 = $0.18.
        let band = InputBand {
            model: "gemini-1.5-pro".into(),
            above_input_tokens: 128_000,
            up_to_input_tokens: 153_600,
            interactive: TokenMix {
                calls: 1,
                fresh_input_tokens: 140_000,
                cached_input_tokens: 0,
                output_tokens: 1_000,
                cost: Nanos(360_000_000),
            },
            batch: TokenMix::default(),
        };
        let r = context_tier(&band, &p, 30.0).unwrap();
        assert_eq!(r.period_saving, Nanos(180_000_000));
        assert!(context_tier(&InputBand::default(), &p, 30.0).is_none());
    }
}
