//! The month-end forecast as of a moment: which periods it reads (the month so far, the last
//! [`RECENT_DAYS`] complete days) and how it feeds them to [`trends::month_end_forecast`], so
//! the agents' tool and `GET /api/costs` project the same figure.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Nanos;
use crate::period::Period;
use crate::queries::{OrgUsageQueries, QueryError};
use crate::query::{Grouping, Scope, UsageQuery};
use crate::trends::{self, Forecast};

/// Complete days whose average spend is projected over the rest of the month.
pub const RECENT_DAYS: i64 = 7;

/// A forecast with the periods it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthEnd {
    pub forecast: Forecast,
    /// From the first of `now`'s month (UTC) to `now`: what is spent so far.
    pub month_to_date: Period,
    /// The [`RECENT_DAYS`] whole days before today: the run rate.
    pub recent: Period,
    /// The first instant of the next month.
    pub month_end: DateTime<Utc>,
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The month-end forecast as of `now`: month-to-date spend plus the rest of the month at the
/// average of the last [`RECENT_DAYS`] complete days (a day without usage counts as $0).
pub async fn month_end(
    usage: &dyn OrgUsageQueries,
    now: DateTime<Utc>,
) -> Result<MonthEnd, QueryError> {
    month_end_of(usage, now, &Scope::all()).await
}

/// [`month_end`] of one slice of usage (a feature, a model, a team): the same periods and
/// arithmetic over the scope's spend.
pub async fn month_end_of(
    usage: &dyn OrgUsageQueries,
    now: DateTime<Utc>,
    scope: &Scope,
) -> Result<MonthEnd, QueryError> {
    let today = now.date_naive();
    let first = today.with_day(1).unwrap_or(today);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    let month_to_date = Period::new(midnight(first), now);
    let recent = Period::new(
        midnight(today) - Duration::days(RECENT_DAYS),
        midnight(today),
    );
    let query = |period: Period, group_by: Option<Grouping>| UsageQuery {
        period,
        scope: scope.clone(),
        group_by,
    };
    // Read as the whole days before today plus today so far: a total is the sum of its
    // parts, and the first part is the same question all day long, so it is answered once
    // per data version (the usage cache) instead of on every run. The store's cache answers
    // today so far too, for every `now` up to the next record stored after it in that hour.
    let spent = if first < today {
        let before_today = Period::new(midnight(first), midnight(today));
        let today_so_far = Period::new(midnight(today), now);
        let before = usage.aggregate(&query(before_today, None)).await?;
        let so_far = usage.aggregate(&query(today_so_far, None)).await?;
        before.totals.cost + so_far.totals.cost
    } else {
        usage
            .aggregate(&query(month_to_date, None))
            .await?
            .totals
            .cost
    };
    let by_day = usage
        .aggregate(&query(recent, Some(Grouping::Day)))
        .await?
        .rows;
    let days: Vec<Nanos> = (0..RECENT_DAYS)
        .map(|i| {
            let key = (today - Duration::days(RECENT_DAYS - i)).to_string();
            by_day
                .iter()
                .find(|r| r.key == key)
                .map_or(Nanos::ZERO, |r| r.totals.cost)
        })
        .collect();
    let month_end = midnight(next);
    let remaining = (month_end - now).num_seconds() as f64 / 86_400.0;
    Ok(MonthEnd {
        forecast: trends::month_end_forecast(spent, &days, remaining),
        month_to_date,
        recent,
        month_end,
    })
}

impl MonthEnd {
    /// The JSON shape wherever the forecast is shown (`GET /api/costs`, the agents' tool).
    pub fn to_json(&self) -> serde_json::Value {
        let f = &self.forecast;
        let ts = apogee_protocol::time::instant;
        serde_json::json!({
            "month_to_date": {"from": ts(self.month_to_date.from), "to": ts(self.month_to_date.to)},
            "recent_days": {"from": ts(self.recent.from), "to": ts(self.recent.to)},
            "month_end": ts(self.month_end),
            "spent_nanos": f.spent,
            "spent_usd": f.spent.usd(),
            "daily_run_rate_nanos": f.daily_run_rate,
            "daily_run_rate_usd": f.daily_run_rate.usd(),
            "remaining_days": f.remaining_days,
            "projected_nanos": f.projected,
            "projected_usd": f.projected.usd(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::catalog::PriceCatalog;
    use crate::memory::MemoryUsage;
    use crate::usage::UsageRecord;

    #[tokio::test]
    async fn month_end_by_hand() {
        // gpt-4o-mini, 1,000,000 input tokens: $0.15 a call. Now is 2026-11-21 12:00, so the
        // recent days are 14–20 November and 9.5 days remain to 2026-12-01.
        // Calls: one on 10 Nov (month to date, not recent), one each on 14–19 Nov and two on
        // 20 Nov (recent: 8 calls = $1.20 over 7 days → 171,428,571.4 → 171,428,571 nanos a
        // day), one today at 08:00. Spent: 10 calls = $1.50.
        // Projected: 1,500,000,000 + 9.5 × 171,428,571 = 1,500,000,000 + 1,628,571,424.5
        // → 3,128,571,425 nanos (rounded half away from zero).
        let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
        let mut records = vec![UsageRecord::new(
            at(10, 9),
            "gpt-4o-mini".into(),
            1_000_000,
            0,
        )];
        for d in 14..=20 {
            records.push(UsageRecord::new(
                at(d, 9),
                "gpt-4o-mini".into(),
                1_000_000,
                0,
            ));
        }
        records.push(UsageRecord::new(
            at(20, 10),
            "gpt-4o-mini".into(),
            1_000_000,
            0,
        ));
        records.push(UsageRecord::new(
            at(21, 8),
            "gpt-4o-mini".into(),
            1_000_000,
            0,
        ));
        // Last month: not in the month to date.
        records.push(UsageRecord::new(
            Utc.with_ymd_and_hms(2026, 10, 31, 9, 0, 0).unwrap(),
            "gpt-4o-mini".into(),
            1_000_000,
            0,
        ));
        let usage = MemoryUsage::from_usage(records, Arc::new(PriceCatalog::builtin().unwrap()));
        let m = month_end(&usage, at(21, 12)).await.unwrap();
        assert_eq!(m.forecast.spent, Nanos(1_500_000_000));
        assert_eq!(m.forecast.daily_run_rate, Nanos(171_428_571));
        assert_eq!(m.forecast.remaining_days, 9.5);
        assert_eq!(m.forecast.projected, Nanos(3_128_571_425));
        assert_eq!(m.recent.from, at(14, 0));
        assert_eq!(
            m.month_end,
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
    }

    /// The windows on a fixed clock at month, year and leap-day boundaries: usage of $0.15
    /// at noon every day, so the run rate is $0.15 whatever the window and only the windows
    /// and the time left decide the figures.
    #[tokio::test]
    async fn windows_at_month_year_and_leap_day_boundaries() {
        let utc = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        // (now, first of the month, recent from, month end, noons in [the 1st, now), seconds
        // left).
        let cases = [
            (
                utc(2026, 12, 31, 18),
                utc(2026, 12, 1, 0),
                utc(2026, 12, 24, 0),
                utc(2027, 1, 1, 0),
                31,
                21_600,
            ),
            (
                utc(2027, 3, 1, 6),
                utc(2027, 3, 1, 0),
                utc(2027, 2, 22, 0),
                utc(2027, 4, 1, 0),
                0,
                2_656_800,
            ),
            // A call at exactly `now` is not yet spent: the windows are half-open.
            (
                utc(2027, 3, 1, 12),
                utc(2027, 3, 1, 0),
                utc(2027, 2, 22, 0),
                utc(2027, 4, 1, 0),
                0,
                2_635_200,
            ),
            (
                utc(2027, 3, 1, 13),
                utc(2027, 3, 1, 0),
                utc(2027, 2, 22, 0),
                utc(2027, 4, 1, 0),
                1,
                2_631_600,
            ),
            (
                utc(2028, 2, 29, 0),
                utc(2028, 2, 1, 0),
                utc(2028, 2, 22, 0),
                utc(2028, 3, 1, 0),
                28,
                86_400,
            ),
            (
                utc(2027, 2, 28, 23),
                utc(2027, 2, 1, 0),
                utc(2027, 2, 21, 0),
                utc(2027, 3, 1, 0),
                28,
                3_600,
            ),
        ];
        for (now, first, recent_from, end, noons, left_secs) in cases {
            let left = f64::from(left_secs) / 86_400.0;
            let records: Vec<UsageRecord> = (1..=60)
                .map(|k| {
                    let day = now.date_naive() - Duration::days(k - 1);
                    UsageRecord::new(
                        midnight(day) + Duration::hours(12),
                        "gpt-4o-mini".into(),
                        1_000_000,
                        0,
                    )
                })
                .filter(|r| r.ts <= now)
                .collect();
            let usage =
                MemoryUsage::from_usage(records, Arc::new(PriceCatalog::builtin().unwrap()));
            let m = month_end(&usage, now).await.unwrap();
            let why = format!("now {now}");
            assert_eq!(m.month_to_date, Period::new(first, now), "{why}");
            assert_eq!(
                m.recent,
                Period::new(recent_from, midnight(now.date_naive())),
                "{why}"
            );
            assert_eq!(m.month_end, end, "{why}");
            assert_eq!(m.forecast.remaining_days, left, "{why}");
            assert_eq!(m.forecast.spent, Nanos(noons * 150_000_000), "{why}");
            assert_eq!(m.forecast.daily_run_rate, Nanos(150_000_000), "{why}");
            assert_eq!(
                m.forecast.projected,
                Nanos(noons * 150_000_000 + (150_000_000.0 * left).round() as i128),
                "{why}"
            );
        }
    }
}
