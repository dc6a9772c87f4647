//! Where a budget stands and which of its crossings are due, computed through the same engine
//! `GET /api/costs` uses ([`OrgUsageQueries::aggregate`] over the budget's scope) and the same
//! run rate as its month-end forecast ([`month_end_of`]): the spend a budget shows is the
//! figure `/api/costs` gives for the same scope and window.

use apogee_analytics::forecast::month_end_of;
use apogee_analytics::{
    BudgetState, Dimension, Grouping, Nanos, OrgUsageQueries, Period, QueryError, UsageQuery,
};
use apogee_protocol::time::instant;
use apogee_protocol::{AlertKind, BudgetAlert, BudgetRef, Contributor};
use chrono::{DateTime, Utc};

use super::spec::{BudgetSpec, scope_to_json};

#[cfg(test)]
use apogee_analytics::forecast::month_end;

/// Contributors an alert names per dimension (feature, model).
const TOP_CONTRIBUTORS: usize = 3;

/// A budget's current period, its spend so far and where it is heading.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub period: Period,
    pub spent: Nanos,
    pub forecast: Nanos,
}

impl Standing {
    pub fn percent(&self, spec: &BudgetSpec) -> f64 {
        percent(self.spent, spec.amount)
    }

    /// The highest threshold spend has reached.
    pub fn reached(&self, spec: &BudgetSpec) -> Option<u32> {
        spec.thresholds
            .iter()
            .copied()
            .filter(|t| crossed(self.spent, spec.amount, *t))
            .max()
    }

    pub fn state(&self, spec: &BudgetSpec) -> BudgetState {
        if self.spent >= spec.amount {
            BudgetState::Over
        } else if self.forecast > spec.amount {
            BudgetState::AtRisk
        } else if self.reached(spec).is_some() {
            BudgetState::Warning
        } else {
            BudgetState::Ok
        }
    }

    /// The figures as the API shows them.
    pub fn to_json(&self, spec: &BudgetSpec) -> serde_json::Value {
        serde_json::json!({
            "from": instant(self.period.from),
            "to": instant(self.period.to),
            "spent_nanos": self.spent,
            "spent_usd": self.spent.usd(),
            "percent": round1(self.percent(spec)),
            "forecast_nanos": self.forecast,
            "forecast_usd": self.forecast.usd(),
            "state": self.state(spec),
            "reached_threshold": self.reached(spec),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn percent(part: Nanos, whole: Nanos) -> f64 {
    if whole.0 <= 0 {
        return 0.0;
    }
    part.0 as f64 * 100.0 / whole.0 as f64
}

/// Whether `spent` reached `threshold` percent of `amount`, exactly (no float).
pub fn crossed(spent: Nanos, amount: Nanos, threshold: u32) -> bool {
    spent.0.saturating_mul(100) >= amount.0.saturating_mul(i128::from(threshold))
}

/// The period `now` falls in and what the budget's scope spent in it up to `now`.
pub async fn spent(
    usage: &dyn OrgUsageQueries,
    spec: &BudgetSpec,
    now: DateTime<Utc>,
) -> Result<(Period, Nanos), QueryError> {
    let period = spec.period.around(now);
    let so_far = Period::new(period.from, now.min(period.to));
    let slice = usage
        .aggregate(&UsageQuery {
            period: so_far,
            scope: spec.scope.clone(),
            group_by: None,
        })
        .await?;
    Ok((period, slice.totals.cost))
}

/// The scope's average daily spend over the last complete days: the month-end forecast's
/// run rate ([`month_end_of`]).
pub async fn run_rate(
    usage: &dyn OrgUsageQueries,
    spec: &BudgetSpec,
    now: DateTime<Utc>,
) -> Result<Nanos, QueryError> {
    Ok(month_end_of(usage, now, &spec.scope)
        .await?
        .forecast
        .daily_run_rate)
}

/// Spend by the end of `period`: `spent` plus the rest of it at `rate` a day — the month-end
/// forecast's arithmetic, so for a monthly budget its very projection.
pub fn project(spent: Nanos, rate: Nanos, period: &Period, now: DateTime<Utc>) -> Nanos {
    let remaining_days = (period.to - now).num_seconds().max(0) as f64 / 86_400.0;
    let rest = (rate.0 as f64 * remaining_days).round() as i128;
    Nanos(spent.0.saturating_add(rest))
}

/// The budget's standing now: spend and forecast.
pub async fn standing(
    usage: &dyn OrgUsageQueries,
    spec: &BudgetSpec,
    now: DateTime<Utc>,
) -> Result<Standing, QueryError> {
    let (period, spent) = spent(usage, spec, now).await?;
    let forecast = project(spent, run_rate(usage, spec, now).await?, &period, now);
    Ok(Standing {
        period,
        spent,
        forecast,
    })
}

/// The features and models that spent most within the budget's scope in the period so far.
pub async fn contributors(
    usage: &dyn OrgUsageQueries,
    spec: &BudgetSpec,
    standing: &Standing,
    now: DateTime<Utc>,
) -> Result<Vec<Contributor>, QueryError> {
    let so_far = Period::new(standing.period.from, now.min(standing.period.to));
    top_contributors(usage, &spec.scope, so_far).await
}

/// The features, then the models, that spent most within `scope` over `period`.
pub async fn top_contributors(
    usage: &dyn OrgUsageQueries,
    scope: &apogee_analytics::Scope,
    period: Period,
) -> Result<Vec<Contributor>, QueryError> {
    let mut out = Vec::new();
    for dimension in [Dimension::Feature, Dimension::Model] {
        let slice = usage
            .aggregate(&UsageQuery {
                period,
                scope: scope.clone(),
                group_by: Some(Grouping::By(dimension.clone())),
            })
            .await?;
        let total = slice.totals.cost;
        for row in slice
            .rows
            .into_iter()
            .filter(|r| r.totals.cost > Nanos::ZERO)
            .take(TOP_CONTRIBUTORS)
        {
            out.push(Contributor {
                dimension: dimension.kind().to_string(),
                key: row.key,
                cost_nanos: row.totals.cost.to_i64().unwrap_or(i64::MAX),
                cost_usd: row.totals.cost.usd(),
                share_percent: round1(percent(row.totals.cost, total)),
            });
        }
    }
    Ok(out)
}

/// What fires: a threshold reached, or the forecast over the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    Threshold(u32),
    Forecast,
}

impl Crossing {
    /// The key part stored with the claim: `80` or `forecast`.
    pub fn key(self) -> String {
        match self {
            Crossing::Threshold(t) => t.to_string(),
            Crossing::Forecast => "forecast".into(),
        }
    }
}

/// Everything an alert carries, built once a crossing is due.
pub struct AlertInput<'a> {
    pub budget_id: &'a str,
    pub revision: i64,
    pub spec: &'a BudgetSpec,
    pub standing: &'a Standing,
    pub crossing: Crossing,
    pub contributors: Vec<Contributor>,
}

impl AlertInput<'_> {
    pub fn alert(self) -> BudgetAlert {
        let s = self.standing;
        let spec = self.spec;
        let period_start = s.period.from.date_naive().to_string();
        let (kind, threshold_percent) = match self.crossing {
            Crossing::Threshold(t) => (AlertKind::Threshold, Some(t)),
            Crossing::Forecast => (AlertKind::Forecast, None),
        };
        let period_word = spec.period.adjective();
        let head = match self.crossing {
            Crossing::Threshold(t) => format!(
                "Budget \u{201c}{}\u{201d} passed {t}% of its {period_word} {}: {} spent ({:.0}%).",
                spec.name,
                spec.amount.display_usd(),
                s.spent.display_usd(),
                s.percent(spec)
            ),
            Crossing::Forecast => format!(
                "Budget \u{201c}{}\u{201d} is heading over its {period_word} {}: {} forecast by {} ({} spent so far).",
                spec.name,
                spec.amount.display_usd(),
                s.forecast.display_usd(),
                s.period.to.format("%Y-%m-%d"),
                s.spent.display_usd()
            ),
        };
        let causes: Vec<String> = ["feature", "model"]
            .iter()
            .filter_map(|d| self.contributors.iter().find(|c| c.dimension == *d))
            .map(|c| {
                format!(
                    "{} {} ({}, {:.0}%)",
                    c.dimension,
                    c.key,
                    Nanos(i128::from(c.cost_nanos)).display_usd(),
                    c.share_percent
                )
            })
            .collect();
        let message = if causes.is_empty() {
            head
        } else {
            format!("{head} Most from {}.", causes.join(" and "))
        };
        BudgetAlert {
            id: format!(
                "{}:{}:{period_start}:{}",
                self.budget_id,
                self.revision,
                self.crossing.key()
            ),
            budget: BudgetRef {
                id: self.budget_id.to_string(),
                name: spec.name.clone(),
                period: spec.period.as_str().to_string(),
                scope: scope_to_json(&spec.scope),
                amount_nanos: spec.amount_nanos(),
                amount_usd: spec.amount.usd(),
            },
            kind,
            threshold_percent,
            period_from: instant(s.period.from),
            period_to: instant(s.period.to),
            spent_nanos: s.spent.to_i64().unwrap_or(i64::MAX),
            spent_usd: s.spent.usd(),
            percent: round1(s.percent(spec)),
            forecast_nanos: s.forecast.to_i64().unwrap_or(i64::MAX),
            forecast_usd: s.forecast.usd(),
            top_contributors: self.contributors,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_monthly_projection_is_the_month_end_forecast() {
        use apogee_analytics::{MemoryUsage, PriceCatalog, UsageRecord};
        use chrono::TimeZone;
        let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
        let records: Vec<UsageRecord> = [(14, 9), (16, 9), (20, 10), (21, 8)]
            .iter()
            .map(|(d, h)| UsageRecord::new(at(*d, *h), "gpt-4o-mini".into(), 1_000_000, 0))
            .collect();
        let catalog = std::sync::Arc::new(PriceCatalog::builtin().unwrap());
        let usage = MemoryUsage::from_usage(records, catalog);
        let now = at(21, 12);
        let spec = BudgetSpec::from_new(br#"{"amount_usd": 1}"#).unwrap();
        let s = standing(&usage, &spec, now).await.unwrap();
        let m = month_end(&usage, now).await.unwrap();
        assert_eq!(s.spent, m.forecast.spent);
        assert_eq!(s.forecast, m.forecast.projected);
    }

    #[test]
    fn thresholds_are_crossed_exactly() {
        let amount = Nanos(1_000);
        assert!(!crossed(Nanos(799), amount, 80));
        assert!(crossed(Nanos(800), amount, 80));
        assert!(crossed(Nanos(1_000), amount, 100));
        assert!(!crossed(Nanos(1_000), amount, 101));
        // No overflow at the ends.
        assert!(crossed(Nanos(i128::MAX), Nanos(i128::MAX), 100));
    }

    #[test]
    fn state_follows_spend_and_forecast() {
        let spec = BudgetSpec::from_new(br#"{"amount_usd": 100}"#).unwrap();
        let at = |spent: f64, forecast: f64| Standing {
            period: spec.period.around(Utc::now()),
            spent: Nanos::from_usd(spent),
            forecast: Nanos::from_usd(forecast),
        };
        assert_eq!(at(10.0, 20.0).state(&spec), BudgetState::Ok);
        assert_eq!(at(60.0, 90.0).state(&spec), BudgetState::Warning);
        assert_eq!(at(60.0, 120.0).state(&spec), BudgetState::AtRisk);
        assert_eq!(at(100.0, 100.0).state(&spec), BudgetState::Over);
        assert_eq!(at(85.0, 90.0).reached(&spec), Some(80));
        assert_eq!(at(10.0, 20.0).reached(&spec), None);
    }
}
