//! Money as integer nano-dollars, so sums over millions of records are exact and a direct SQL
//! `SUM` over stored costs gives the same figure to the cent as the reports.
//!
//! 128 bits wide: one record's cost is stored in 64 (at most [`crate::usage::MAX_RECORD_COST`]),
//! but sums of them — an org's spend over years — need not fit in 64 bits ($9.2 billion), and
//! in 128 no sum of 64-bit costs can overflow.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of US dollars in units of 10⁻⁹ USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub i128);

/// JSON numbers: exact integers while they fit in 64 bits (every real amount), a float beyond
/// (JSON readers hold no wider integer exactly anyway).
impl Serialize for Nanos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(self.0) {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.serialize_f64(self.0 as f64),
        }
    }
}

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Nanos, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Number {
            Int(i64),
            Big(i128),
            Float(f64),
        }
        Ok(match Number::deserialize(d)? {
            Number::Int(n) => Nanos(i128::from(n)),
            Number::Big(n) => Nanos(n),
            Number::Float(f) => Nanos(f.round() as i128),
        })
    }
}

impl From<i64> for Nanos {
    fn from(n: i64) -> Nanos {
        Nanos(i128::from(n))
    }
}

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);

    /// Rounds a dollar amount to the nearest nano-dollar.
    pub fn from_usd(usd: f64) -> Nanos {
        Nanos((usd * 1e9).round() as i128)
    }

    /// The amount as a 64-bit integer, as stored per record; `None` when it does not fit.
    pub fn to_i64(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }

    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `$1,234.57`: rounded to the cent, with thousands separators.
    pub fn display_usd(self) -> String {
        // Rounded half away from zero, without overflowing near the type's ends.
        let half = if self.0 >= 0 { 5_000_000 } else { -5_000_000 };
        let cents = self.0 / 10_000_000 + (self.0 % 10_000_000 + half) / 10_000_000;
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
        assert_eq!(Nanos(-5_000_000).display_usd(), "-$0.01");
        // Far beyond 64 bits: an org's lifetime of spend never wraps.
        let big = Nanos(i128::from(i64::MAX) * 4);
        assert_eq!(big.display_usd(), "$36,893,488,147.42");
    }

    #[test]
    fn json_is_an_exact_integer_while_it_fits_64_bits() {
        assert_eq!(serde_json::to_string(&Nanos(42)).unwrap(), "42");
        let v = serde_json::to_value(Nanos(i128::from(i64::MAX) * 2)).unwrap();
        assert!(v.as_f64().unwrap() > 1.8e19, "{v}");
        assert_eq!(serde_json::from_str::<Nanos>("42").unwrap(), Nanos(42));
        assert_eq!(serde_json::from_str::<Nanos>("1.6").unwrap(), Nanos(2));
    }
}
