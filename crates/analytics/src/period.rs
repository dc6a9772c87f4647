//! A half-open time window `[from, to)` over which usage is analysed.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: DateTime<Utc>,
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
