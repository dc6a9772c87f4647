//! What a budget command types besides its scope: the amount ("$2,000", "$1.5k", "500
//! dollars", "-$50"), the calendar ("monthly", "a week", "per day", "$1500/month") and the
//! alert thresholds ("alert at 50% and 90%"). Read as typed and left unchecked: a negative or
//! absurd amount reaches the budgets code, which refuses it with its own words.

use apogee_analytics::BudgetPeriod;

use super::words::Token;

/// What a budget command typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BudgetReading {
    pub amount_cents: Option<i64>,
    pub period: Option<BudgetPeriod>,
    pub thresholds: Vec<i64>,
    /// Tokens of the amount and thresholds: not names.
    pub used: Vec<usize>,
}

/// Most thresholds read (the budgets code refuses more than it allows anyway).
const MAX_THRESHOLDS_READ: usize = 20;

pub(crate) fn read(question: &str, tokens: &[Token]) -> BudgetReading {
    let mut out = BudgetReading {
        amount_cents: amount(question),
        ..BudgetReading::default()
    };
    for (i, t) in tokens.iter().enumerate() {
        if t.quoted {
            continue;
        }
        let w = t.lower.as_str();
        if w.contains('$')
            || matches!(
                w,
                "dollars" | "dollar" | "usd" | "bucks" | "k" | "thousand" | "million" | "billion"
            )
            || (!w.is_empty() && w.chars().all(|c| c.is_ascii_digit() || c == ','))
        {
            out.used.push(i);
        }
        if let Some(p) = w.strip_suffix('%')
            && let Ok(n) = p.parse::<i64>()
        {
            out.used.push(i);
            if out.thresholds.len() < MAX_THRESHOLDS_READ {
                out.thresholds.push(n);
            }
        }
        if out.period.is_none() {
            out.period = cadence(w);
        }
    }
    out
}

/// The calendar a word names.
fn cadence(w: &str) -> Option<BudgetPeriod> {
    let last = w.rsplit('/').next().unwrap_or(w);
    match last {
        "month" | "months" | "monthly" | "mo" | "mth" => Some(BudgetPeriod::Month),
        "week" | "weeks" | "weekly" | "wk" => Some(BudgetPeriod::Week),
        "day" | "days" | "daily" | "today" => Some(BudgetPeriod::Day),
        _ => None,
    }
}

/// The first amount of money typed, in cents: `$2,000`, `$1.5k`, `2000 dollars`, `USD 300`,
/// `-$50`, `$5 million`. Saturates rather than overflows (then refused as too large).
pub(crate) fn amount(question: &str) -> Option<i64> {
    let text = question.to_lowercase();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let dollar = chars[i] == '$';
        let digit_start = chars[i].is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '.'));
        if !dollar && !digit_start {
            i += 1;
            continue;
        }
        // A sign before or right after the `$`.
        let mut negative = i > 0 && chars[i - 1] == '-';
        let mut k = if dollar { i + 1 } else { i };
        if dollar && chars.get(k) == Some(&'-') {
            negative = true;
            k += 1;
        }
        let start = k;
        while k < chars.len() && (chars[k].is_ascii_digit() || chars[k] == ',' || chars[k] == '.') {
            k += 1;
        }
        let number: String = chars[start..k]
            .iter()
            .filter(|c| **c != ',')
            .collect::<String>()
            .trim_end_matches('.')
            .to_string();
        let Ok(value) = number.parse::<f64>() else {
            i = k.max(i + 1);
            continue;
        };
        let rest: String = chars[k..].iter().collect();
        let rest = rest.trim_start();
        let next_word: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        let multiplier = match next_word.as_str() {
            "k" | "thousand" | "grand" => 1e3,
            "m" | "mm" | "million" | "mn" => 1e6,
            "b" | "bn" | "billion" => 1e9,
            "t" | "tn" | "trillion" => 1e12,
            _ => 1.0,
        };
        let unit_after = matches!(next_word.as_str(), "dollars" | "dollar" | "usd" | "bucks") || {
            // "5 million dollars"
            let after: String = rest[next_word.len()..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            multiplier > 1.0 && matches!(after.as_str(), "dollars" | "dollar" | "usd")
        };
        let unit_before = text[..text.char_indices().nth(i).map_or(text.len(), |(b, _)| b)]
            .trim_end()
            .trim_end_matches('-')
            .ends_with("usd");
        if dollar || unit_after || unit_before {
            let cents = (value * multiplier * 100.0).round();
            // `as` saturates: an absurd amount stays absurd, and is refused as such.
            let cents = cents as i64;
            return Some(if negative { -cents } else { cents });
        }
        i = k.max(i + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::question::words::tokens;

    fn r(q: &str) -> BudgetReading {
        read(q, &tokens(q))
    }

    #[test]
    fn amounts_as_people_type_them() {
        for (q, cents) in [
            (
                "set a monthly budget of $2,000 for support-bot",
                Some(200_000),
            ),
            ("budget $1500/month", Some(150_000)),
            ("a budget of $1.5k a week", Some(150_000)),
            ("$2.50 a day budget", Some(250)),
            ("a budget of 300 dollars", Some(30_000)),
            ("USD 40 budget", Some(4_000)),
            ("budget of -$50 a month", Some(-5_000)),
            ("budget of $-50 a month", Some(-5_000)),
            ("budget of $5 trillion", Some(500_000_000_000_000)),
            ("budget of $9999999999999999999999", Some(i64::MAX)),
            ("set a budget for gpt-4o", None),
            ("alert at 50% and 90%", None),
        ] {
            assert_eq!(r(q).amount_cents, cents, "{q}");
        }
    }

    #[test]
    fn calendars_and_thresholds() {
        let b = r("set a monthly budget of $2,000 for support-bot, alert at 50% and 90%");
        assert_eq!(b.period, Some(BudgetPeriod::Month));
        assert_eq!(b.thresholds, [50, 90]);
        assert_eq!(r("$100/week").period, Some(BudgetPeriod::Week));
        assert_eq!(r("$10 per day").period, Some(BudgetPeriod::Day));
        assert_eq!(r("weekly budget").period, Some(BudgetPeriod::Week));
        assert_eq!(r("set a budget"), BudgetReading::default());
    }
}
