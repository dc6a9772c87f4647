//! The anomaly check behind `anomaly_alert`: was the org's spend on the latest complete UTC
//! day far above its typical day? The same robust z-score the chat's anomaly agent uses
//! ([`anomaly_days`] at [`ANOMALY_Z`]) over that day and the [`BASELINE_DAYS`] before it, read
//! through the engine's by-day `aggregate`.

use apogee_analytics::trends::{ANOMALY_Z, anomaly_days};
use apogee_analytics::{
    CostRow, Grouping, Nanos, OrgUsageQueries, Period, QueryError, Scope, UsageQuery,
};
use apogee_protocol::AnomalyAlert;
use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::evaluate::top_contributors;

/// Complete days before the checked day that make its baseline.
pub const BASELINE_DAYS: i64 = 14;
/// Baseline days that must have spend: an org that just started is not anomalous.
pub const MIN_ACTIVE_DAYS: usize = 3;

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The latest complete day as of `now` (yesterday, UTC).
pub fn latest_complete_day(now: DateTime<Utc>) -> NaiveDate {
    now.date_naive() - Duration::days(1)
}

/// The alert for the latest complete day, if its spend was anomalously high.
pub async fn check(
    usage: &dyn OrgUsageQueries,
    now: DateTime<Utc>,
) -> Result<Option<AnomalyAlert>, QueryError> {
    let day = latest_complete_day(now);
    let first = day - Duration::days(BASELINE_DAYS);
    let by_day = usage
        .aggregate(&UsageQuery {
            period: Period::new(midnight(first), midnight(day + Duration::days(1))),
            scope: Scope::all(),
            group_by: Some(Grouping::Day),
        })
        .await?
        .rows;
    let rows: Vec<CostRow> = (0..=BASELINE_DAYS)
        .map(|i| {
            let key = (first + Duration::days(i)).to_string();
            let cost = by_day
                .iter()
                .find(|r| r.key == key)
                .map_or(Nanos::ZERO, |r| r.totals.cost);
            CostRow {
                key,
                calls: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost,
                unpriced_calls: 0,
            }
        })
        .collect();
    let active = rows[..rows.len() - 1]
        .iter()
        .filter(|r| r.cost > Nanos::ZERO)
        .count();
    if active < MIN_ACTIVE_DAYS {
        return Ok(None);
    }
    let key = day.to_string();
    let Some(found) = anomaly_days(&rows, ANOMALY_Z)
        .into_iter()
        .find(|a| a.key == key && a.z > 0.0)
    else {
        return Ok(None);
    };
    let contributors = top_contributors(
        usage,
        &Scope::all(),
        Period::new(midnight(day), midnight(day + Duration::days(1))),
    )
    .await?;
    let causes: Vec<String> = ["feature", "model"]
        .iter()
        .filter_map(|d| contributors.iter().find(|c| c.dimension == *d))
        .map(|c| {
            format!(
                "{} {} ({})",
                c.dimension,
                c.key,
                Nanos(i128::from(c.cost_nanos)).display_usd()
            )
        })
        .collect();
    let mut message = format!(
        "Spend on {key} was {}, against a typical day of {} over the {} days before.",
        found.cost.display_usd(),
        found.median.display_usd(),
        BASELINE_DAYS
    );
    if !causes.is_empty() {
        message.push_str(&format!(" Most from {}.", causes.join(" and ")));
    }
    Ok(Some(AnomalyAlert {
        id: format!("anomaly:{key}"),
        day: key,
        cost_nanos: found.cost.to_i64().unwrap_or(i64::MAX),
        cost_usd: found.cost.usd(),
        median_nanos: found.median.to_i64().unwrap_or(i64::MAX),
        median_usd: found.median.usd(),
        z: found
            .z
            .is_finite()
            .then_some((found.z * 10.0).round() / 10.0),
        baseline_days: (BASELINE_DAYS + 1) as u32,
        top_contributors: contributors,
        message,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_analytics::{MemoryUsage, PriceCatalog, UsageRecord};
    use chrono::TimeZone;

    fn usage(daily: &[(u32, i64)]) -> MemoryUsage {
        let records = daily
            .iter()
            .map(|(d, tokens)| {
                let mut r = UsageRecord::new(
                    Utc.with_ymd_and_hms(2026, 11, *d, 9, 0, 0).unwrap(),
                    "gpt-4o-mini".into(),
                    *tokens,
                    0,
                );
                r.feature = Some(format!("f{d}"));
                r
            })
            .collect::<Vec<_>>();
        MemoryUsage::from_usage(
            records,
            std::sync::Arc::new(PriceCatalog::builtin().unwrap()),
        )
    }

    #[tokio::test]
    async fn a_spike_on_the_latest_complete_day_alerts() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap();
        // 6–19 November: 1M tokens a day, with small wobbles; 20 November: 20M.
        let mut days: Vec<(u32, i64)> = (6..=19)
            .map(|d| (d, 1_000_000 + i64::from(d) * 1_000))
            .collect();
        days.push((20, 20_000_000));
        let alert = check(&usage(&days), now).await.unwrap().expect("a spike");
        assert_eq!(alert.day, "2026-11-20");
        assert_eq!(alert.cost_nanos, 3_000_000_000);
        assert_eq!(alert.top_contributors[0].key, "f20");
        assert!(alert.message.contains("2026-11-20"), "{}", alert.message);
        // A typical day, a quiet day or a new org: nothing.
        days.pop();
        days.push((20, 1_010_000));
        assert!(check(&usage(&days), now).await.unwrap().is_none());
        assert!(
            check(&usage(&[(19, 1_000_000), (20, 50_000_000)]), now)
                .await
                .unwrap()
                .is_none()
        );
    }
}
