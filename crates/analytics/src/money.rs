//! Money as integer nano-dollars, so sums over millions of records are exact and a direct SQL
//! `SUM` over stored costs gives the same figure to the cent as the reports.

use serde::{Deserialize, Serialize};

/// An amount of US dollars in units of 10⁻⁹ USD.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Nanos(pub i64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);

    /// Rounds a dollar amount to the nearest nano-dollar.
    pub fn from_usd(usd: f64) -> Nanos {
        Nanos((usd * 1e9).round() as i64)
    }

    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `$1,234.57`: rounded to the cent, with thousands separators.
    pub fn display_usd(self) -> String {
        let cents = (self.0 as i128 * 100
            + if self.0 >= 0 {
                500_000_000
            } else {
                -500_000_000
            })
            / 1_000_000_000;
        let negative = cents < 0;
        let cents = cents.unsigned_abs();
        let dollars = (cents / 100).to_string();
        let mut grouped = String::with_capacity(dollars.len() + dollars.len() / 3);
        for (i, ch) in dollars.chars().enumerate() {
            if i > 0 && (dollars.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        format!(
            "{}${grouped}.{:02}",
            if negative { "-" } else { "" },
            cents % 100
        )
    }
}

impl std::ops::Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0 - rhs.0)
    }
}

impl std::iter::Sum for Nanos {
    fn sum<I: Iterator<Item = Nanos>>(iter: I) -> Nanos {
        iter.fold(Nanos::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rounded_cents_with_separators() {
        assert_eq!(Nanos(1_234_565_000_000).display_usd(), "$1,234.57");
        assert_eq!(Nanos(4_999_999).display_usd(), "$0.00");
        assert_eq!(Nanos(5_000_000).display_usd(), "$0.01");
        assert_eq!(Nanos(-150_000_000).display_usd(), "-$0.15");
        assert_eq!(Nanos(999_000_000_000).display_usd(), "$999.00");
        assert_eq!(Nanos::from_usd(0.000015).0, 15_000);
    }
}
