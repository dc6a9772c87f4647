//! The words a budget is described in, shared by the server that stores and evaluates budgets
//! and the agents that manage them from the chat: the calendar a budget's amount applies to
//! ([`BudgetPeriod`]) and how a budget stands in it ([`BudgetState`]). What a budget is and how
//! its figures are computed live with the server's budgets, in one place.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::Period;

/// The calendar a budget's amount applies to (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Month,
    /// Monday 00:00 UTC to the next Monday.
    Week,
    Day,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Month => "month",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Day => "day",
        }
    }

    /// "monthly", "weekly", "daily".
    pub fn adjective(self) -> &'static str {
        match self {
            BudgetPeriod::Month => "monthly",
            BudgetPeriod::Week => "weekly",
            BudgetPeriod::Day => "daily",
        }
    }

    pub fn parse(text: &str) -> Result<BudgetPeriod, String> {
        match text {
            "month" => Ok(BudgetPeriod::Month),
            "week" => Ok(BudgetPeriod::Week),
            "day" => Ok(BudgetPeriod::Day),
            other => Err(format!("unknown period `{other}`: use month, week or day")),
        }
    }

    /// The whole calendar period `now` falls in, `[start, end)`.
    pub fn around(self, now: DateTime<Utc>) -> Period {
        let today = now.date_naive();
        let start = match self {
            BudgetPeriod::Month => today.with_day(1).unwrap_or(today),
            BudgetPeriod::Week => {
                today - Duration::days(i64::from(today.weekday().num_days_from_monday()))
            }
            BudgetPeriod::Day => today,
        };
        let end = match self {
            BudgetPeriod::Month => start
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(start),
            BudgetPeriod::Week => start + Duration::days(7),
            BudgetPeriod::Day => start + Duration::days(1),
        };
        Period::new(midnight(start), midnight(end))
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// How a budget stands in its current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetState {
    /// Below every threshold and not forecast over.
    Ok,
    /// A threshold below 100% is reached.
    Warning,
    /// Not over yet, but the forecast for the period's end is.
    AtRisk,
    /// Spend reached the amount.
    Over,
}

impl BudgetState {
    /// As the API writes it: `ok`, `warning`, `at_risk`, `over`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Ok => "ok",
            BudgetState::Warning => "warning",
            BudgetState::AtRisk => "at_risk",
            BudgetState::Over => "over",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn calendar_periods() {
        // 2026-11-25 is a Wednesday.
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 15, 30, 0).unwrap();
        let p = BudgetPeriod::Month.around(now);
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            (
                "2026-11-01 00:00:00 UTC".into(),
                "2026-12-01 00:00:00 UTC".into()
            )
        );
        let p = BudgetPeriod::Week.around(now);
        assert_eq!(p.from.date_naive().to_string(), "2026-11-23");
        assert_eq!(p.to.date_naive().to_string(), "2026-11-30");
        let p = BudgetPeriod::Day.around(now);
        assert_eq!(p.from.date_naive().to_string(), "2026-11-25");
        assert_eq!(p.to.date_naive().to_string(), "2026-11-26");
        assert_eq!(
            serde_json::to_value(BudgetState::AtRisk).unwrap(),
            serde_json::json!(BudgetState::AtRisk.as_str())
        );
    }
}
