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
    }
}
