//! What-ifs: a slice of traffic re-priced with the catalog on the same tokens, moved to
//! another model or sent through the Batch API. Both sides are priced the same way (the
//! catalog's base rates), so the difference is the move alone, not a tier or a dated price.

use crate::catalog::Pricing;
use crate::money::Nanos;
use crate::queries::TokenMix;

/// One model's share of a what-if: its calls priced as they ran and as they would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repriced {
    pub model: String,
    pub calls: i64,
    /// At the model's own catalog prices, interactive and batch calls as they ran.
    pub now: Nanos,
    /// After the change; `None` when the model (or the target) has no catalog price.
    pub after: Option<Nanos>,
}

fn price(mix: &TokenMix, p: &Pricing<'_>, batch: bool) -> Nanos {
    super::reprice(mix, p, batch)
}

/// `model`'s traffic (`interactive` and `batch` calls) on `from` (its own entry) and on `to`:
/// batch calls stay batch calls on the new model.
pub fn move_to(
    model: &str,
    interactive: &TokenMix,
    batch: &TokenMix,
    from: Option<&Pricing<'_>>,
    to: Option<&Pricing<'_>>,
) -> Repriced {
    let now = from.map_or(interactive.cost + batch.cost, |p| {
        price(interactive, p, false) + price(batch, p, true)
    });
    Repriced {
        model: model.to_string(),
        calls: interactive.calls + batch.calls,
        now,
        after: to.map(|t| price(interactive, t, false) + price(batch, t, true)),
    }
}

/// `model`'s interactive calls sent through its Batch API at the catalog's discount; calls
/// already batched stay as they are. `after` is `None` when the model has no batch discount.
pub fn through_batch(
    model: &str,
    interactive: &TokenMix,
    batch: &TokenMix,
    p: Option<&Pricing<'_>>,
) -> Repriced {
    let now = p.map_or(interactive.cost + batch.cost, |p| {
        price(interactive, p, false) + price(batch, p, true)
    });
    let after = p
        .filter(|p| p.entry.batch_discount > 0.0)
        .map(|p| price(interactive, p, true) + price(batch, p, true));
    Repriced {
        model: model.to_string(),
        calls: interactive.calls + batch.calls,
        now,
        after,
    }
}

/// An amount over `period_days` days scaled to 30 days.
pub fn monthly(amount: Nanos, period_days: f64) -> Nanos {
    super::per_month(amount, period_days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PriceCatalog;

    fn mix(calls: i64, fresh: i64, cached: i64, out: i64) -> TokenMix {
        TokenMix {
            calls,
            fresh_input_tokens: fresh,
            cached_input_tokens: cached,
            output_tokens: out,
            cost: Nanos::ZERO,
        }
    }

    #[test]
    fn a_move_prices_both_sides_on_the_same_tokens() {
        let catalog = PriceCatalog::builtin().unwrap();
        let sonnet = catalog.lookup("claude-sonnet-4").unwrap();
        let haiku = catalog.lookup("claude-3-5-haiku").unwrap();
        // 1M fresh input and 100k output, interactive: at the entries' base rates.
        let i = mix(1000, 1_000_000, 0, 100_000);
        let none = TokenMix::default();
        let r = move_to("claude-sonnet-4", &i, &none, Some(&sonnet), Some(&haiku));
        let by_hand = |p: &Pricing<'_>| Nanos::from_usd(p.entry.input * 1.0 + p.entry.output * 0.1);
        assert_eq!(r.now, by_hand(&sonnet));
        assert_eq!(r.after, Some(by_hand(&haiku)));
        assert!(r.after.unwrap() < r.now);
        assert_eq!(r.calls, 1000);
        // No price for the target: nothing to say about it.
        assert_eq!(move_to("x", &i, &none, Some(&sonnet), None).after, None);
    }

    #[test]
    fn batch_applies_the_discount_to_interactive_calls_only() {
        let catalog = PriceCatalog::builtin().unwrap();
        let p = catalog.lookup("gpt-4o").unwrap();
        let i = mix(10, 1_000_000, 0, 0);
        let b = mix(10, 1_000_000, 0, 0);
        let r = through_batch("gpt-4o", &i, &b, Some(&p));
        let full = Nanos::from_usd(p.entry.input);
        let discounted = Nanos::from_usd(p.entry.input * (1.0 - p.entry.batch_discount));
        assert_eq!(r.now, full + discounted);
        assert_eq!(r.after, Some(discounted + discounted));
        assert_eq!(monthly(Nanos(10), 15.0), Nanos(20));
    }
}
