//! The output-cap recommender: a feature whose longest outputs on a model run far
//! beyond its typical length pays for tokens a `max_tokens` cap at its usual length would not
//! generate. The cap proposed is the feature's [`OUTPUT_CAP_PERCENTILE`]th output length.

use crate::catalog::Pricing;
use crate::money::Nanos;
use crate::queries::OutputTail;

use super::{Confidence, Recommendation, per_month};

/// The proposed `max_tokens` is this percentile of the feature's output lengths on the model.
pub const OUTPUT_CAP_PERCENTILE: i64 = 95;
/// Fewer single calls than this give no meaningful percentile.
pub const MIN_TRUNCATION_CALLS: i64 = 20;
/// The calls above the cap must average at least this multiple of it: a long tail, not
/// answers that merely vary around their usual length.
pub const FAR_ABOVE_FACTOR: f64 = 1.5;

/// Capping `t`'s outputs at its percentile length on its model (`pricing`). `None` when the
/// sample is small, nothing runs far beyond the cap, or the cap saves nothing.
pub fn output_cap(
    t: &OutputTail,
    pricing: &Pricing<'_>,
    period_days: f64,
) -> Option<Recommendation> {
    if t.calls < MIN_TRUNCATION_CALLS || t.over_calls == 0 || t.cap <= 0 {
        return None;
    }
    let excess = t.excess_interactive_tokens + t.excess_batch_tokens;
    // Average output of the calls above the cap, against the cap.
    let avg_over = t.cap as f64 + excess as f64 / t.over_calls as f64;
    if avg_over < FAR_ABOVE_FACTOR * t.cap as f64 {
        return None;
    }
    let saving = pricing.cost(0, 0, t.excess_interactive_tokens, false)
        + pricing.cost(0, 0, t.excess_batch_tokens, true);
    if saving <= Nanos::ZERO {
        return None;
    }
    let e = pricing.entry;
    Some(Recommendation {
        kind: "output_cap".into(),
        title: format!(
            "Cap {}'s {} outputs at max_tokens = {}",
            t.feature, t.model, t.cap
        ),
        period_saving: saving,
        monthly_saving: per_month(saving, period_days),
        affected_calls: t.over_calls,
        assumptions: vec![
            format!(
                "the cap is the {OUTPUT_CAP_PERCENTILE}th percentile of {} calls' output lengths; {} calls ran above it, averaging {avg_over:.0} output tokens",
                t.calls, t.over_calls
            ),
            format!(
                "the {excess} output tokens beyond the cap are not generated, at ${} per 1M ({} {}, {})",
                e.output, e.provider, pricing.version, e.source
            ),
            "answers cut at the cap lose their end: check which long answers are needed (or ask for shorter ones in the prompt) before capping".into(),
        ],
        confidence: Confidence::Low,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PriceCatalog;

    #[test]
    fn cap_by_hand() {
        let c = PriceCatalog::builtin().unwrap();
        let p = c.lookup("gpt-4o").unwrap();
        // 2 of 40 calls above a 500-token cap by 3,000 tokens in all (avg 2,000 ≥ 750):
        // 3,000 × $10 per 1M = $0.03.
        let mut t = OutputTail {
            feature: "drafts".into(),
            model: "gpt-4o".into(),
            calls: 40,
            cap: 500,
            over_calls: 2,
            excess_interactive_tokens: 3_000,
            excess_batch_tokens: 0,
        };
        let r = output_cap(&t, &p, 15.0).unwrap();
        assert_eq!(r.period_saving, Nanos(30_000_000));
        assert_eq!(r.monthly_saving, Nanos(60_000_000));
        // Just above the cap (avg 600 < 750): not a long tail.
        t.excess_interactive_tokens = 200;
        assert!(output_cap(&t, &p, 15.0).is_none());
    }
}
