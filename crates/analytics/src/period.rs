//! A half-open time window `[from, to)` over which usage is analysed.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};

/// `[from, to)`: RFC 3339 instants, `from` included and `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Period {
    /// The first instant, included (RFC 3339, e.g. `2026-11-01T00:00:00Z`).
    pub from: DateTime<Utc>,
    /// The end, excluded (RFC 3339).
    pub to: DateTime<Utc>,
}

impl Period {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self { from, to }
    }

    /// The `days` whole days ending at the end of `now`'s day (UTC), so today is included.
    pub fn last_days(now: DateTime<Utc>, days: u32) -> Self {
        let end = now
            .date_naive()
            .succ_opt()
            .unwrap_or(now.date_naive())
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(now);
        Self {
            from: end - Duration::days(i64::from(days)),
            to: end,
        }
    }

    /// A named period relative to `now` (UTC): `24h` (the last 24 hours), `7d`, `30d`, `90d`
    /// (whole days ending with today, as [`Period::last_days`]), `mtd` (this month up to the
    /// end of today), `last_month` (the previous calendar month). `None` for other names.
    pub fn named(name: &str, now: DateTime<Utc>) -> Option<Period> {
        let month_start = |y: i32, m: u32| {
            chrono::NaiveDate::from_ymd_opt(y, m, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        };
        let (y, m) = (now.year(), now.month());
        match name {
            "24h" => Some(Period::new(now - Duration::hours(24), now)),
            "7d" => Some(Period::last_days(now, 7)),
            "30d" => Some(Period::last_days(now, 30)),
            "90d" => Some(Period::last_days(now, 90)),
            "mtd" => Some(Period::new(
                month_start(y, m)?,
                Period::last_days(now, 1).to,
            )),
            "last_month" => {
                let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
                Some(Period::new(month_start(py, pm)?, month_start(y, m)?))
            }
            _ => None,
        }
    }

    /// The names [`Period::named`] accepts.
    pub const NAMES: &'static [&'static str] = &["24h", "7d", "30d", "90d", "mtd", "last_month"];

    /// The period of the same length right before this one (for period-over-period change).
    pub fn previous(&self) -> Period {
        Period::new(self.from - (self.to - self.from), self.from)
    }

    pub fn from_ms(&self) -> i64 {
        self.from.timestamp_millis()
    }

    pub fn to_ms(&self) -> i64 {
        self.to.timestamp_millis()
    }

    pub fn days(&self) -> f64 {
        (self.to - self.from).num_seconds() as f64 / 86_400.0
    }

    /// `2026-10-27 – 2026-11-25` (the end shown inclusive).
    pub fn label(&self) -> String {
        let last = self.to - Duration::milliseconds(1);
        format!(
            "{} – {}",
            self.from.format("%Y-%m-%d"),
            last.format("%Y-%m-%d")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn named_periods() {
        let now = at(2026, 11, 25, 3);
        assert_eq!(
            Period::named("7d", now),
            Some(Period::new(at(2026, 11, 19, 0), at(2026, 11, 26, 0)))
        );
        assert_eq!(
            Period::named("mtd", now),
            Some(Period::new(at(2026, 11, 1, 0), at(2026, 11, 26, 0)))
        );
        assert_eq!(
            Period::named("last_month", now),
            Some(Period::new(at(2026, 10, 1, 0), at(2026, 11, 1, 0)))
        );
        assert_eq!(
            Period::named("last_month", at(2027, 1, 5, 0)),
            Some(Period::new(at(2026, 12, 1, 0), at(2027, 1, 1, 0)))
        );
        assert_eq!(
            Period::named("24h", now),
            Some(Period::new(at(2026, 11, 24, 3), now))
        );
        assert_eq!(Period::named("fortnight", now), None);
        for n in Period::NAMES {
            assert!(Period::named(n, now).is_some(), "{n}");
        }
    }

    #[test]
    fn previous_is_the_same_length_before() {
        let p = Period::new(at(2026, 11, 18, 0), at(2026, 11, 25, 0));
        assert_eq!(
            p.previous(),
            Period::new(at(2026, 11, 11, 0), at(2026, 11, 18, 0))
        );
    }
}
