//! How numbers read in summaries and reports: grouped integers, shares, ratios. Dollar amounts
//! are [`apogee_analytics::Nanos::display_usd`], so every figure matches the API to the cent.

use apogee_analytics::Nanos;

/// `1234567` → `1,234,567`.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `part` as a percentage of `whole` with one decimal; `–` when there is no whole.
pub(crate) fn share(part: Nanos, whole: Nanos) -> String {
    if whole.0 <= 0 {
        return "–".into();
    }
    format!("{:.1}%", part.0 as f64 * 100.0 / whole.0 as f64)
}

/// `3.1×`.
pub(crate) fn times(ratio: f64) -> String {
    format!("{ratio:.1}×")
}

/// A ratio as a percentage with one decimal: `0.235` → `23.5%`.
pub(crate) fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// Dollars to the cent from $1 up, and with the digits that matter below (a call's cost):
/// `$0.0133`, `$0.000412`.
pub(crate) fn usd_precise(n: Nanos) -> String {
    let usd = n.usd().abs();
    let sign = if n.0 < 0 { "-" } else { "" };
    if usd >= 1.0 || n.0 == 0 {
        return n.display_usd();
    }
    // Three significant digits, trailing zeros dropped (at least two decimals).
    let decimals = ((-usd.log10()).ceil() as usize + 2).clamp(2, 9);
    let text = format!("{usd:.decimals$}");
    let trimmed = text.trim_end_matches('0');
    let trimmed = if trimmed.len() < text.len() - decimals + 3 {
        &text[..text.len() - decimals + 2]
    } else {
        trimmed
    };
    format!("{sign}${trimmed}")
}

/// `+$1.00` or `−$1.00`.
pub(crate) fn signed_usd(n: Nanos) -> String {
    if n < Nanos::ZERO {
        format!("−{}", Nanos(-n.0).display_usd())
    } else {
        format!("+{}", n.display_usd())
    }
}

/// `1,840 ms`.
pub(crate) fn ms(v: i64) -> String {
    format!("{} ms", count(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_shares() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(-1_234_567), "-1,234,567");
        assert_eq!(share(Nanos(1), Nanos(3)), "33.3%");
        assert_eq!(share(Nanos(1), Nanos(0)), "–");
        assert_eq!(times(3.06), "3.1×");
        assert_eq!(percent(0.2354), "23.5%");
        assert_eq!(usd_precise(Nanos(13_256_000)), "$0.0133");
        assert_eq!(usd_precise(Nanos(412_300)), "$0.000412");
        assert_eq!(usd_precise(Nanos(2_500_000)), "$0.0025");
        assert_eq!(usd_precise(Nanos(500_000_000)), "$0.50");
        assert_eq!(usd_precise(Nanos::from_usd(12.345)), "$12.35");
        assert_eq!(signed_usd(Nanos::from_usd(-2.5)), "−$2.50");
        assert_eq!(ms(1840), "1,840 ms");
    }
}
