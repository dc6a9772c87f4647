//! The trend tools: `compare_periods` (spend of a window against the same-length window before
//! it, attributed to the features that moved, and naming the top feature's move to a more
//! expensive model when there is one) and `detect_anomalies`
//! (days far from the median day by a median/MAD robust z-score) and `forecast_month_end`
//! (this month's spend so far plus the rest at the recent daily run rate). The arithmetic is
//! [`apogee_analytics::trends`]'s.

use std::future::Future;

use apogee_analytics::forecast::{MonthEnd, RECENT_DAYS, month_end};
use apogee_analytics::trends::{
    ANOMALY_Z, Anomaly, Change, ModelMove, anomaly_days, change, model_move,
};
use apogee_analytics::{CostRow, GroupBy, Nanos, OrgUsageQueries, Period};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};

use super::{ToolCall, ToolError, ToolOutput, period_args};

fn change_json(c: &Change, mv: Option<&ModelMove>) -> Value {
    json!({
        "model_move": mv.map(|m| json!({
            "feature": m.feature,
            "from_model": m.from_model,
            "to_model": m.to_model,
            "previous_share": m.previous_share,
            "current_share": m.current_share,
            "to_model_change_nanos": m.to_model_change,
            "from_cost_per_call_nanos": m.from_cost_per_call,
            "to_cost_per_call_nanos": m.to_cost_per_call,
        })),
        "previous_nanos": c.previous,
        "current_nanos": c.current,
        "change_nanos": c.change,
        "change_ratio": c.change_ratio,
        "contributions": c.contributions.iter().take(5).map(|x| json!({
            "key": x.key,
            "previous_nanos": x.previous,
            "current_nanos": x.current,
            "change_nanos": x.change,
            "share_of_change": x.share_of_change,
        })).collect::<Vec<_>>(),
    })
}

/// "spend +38% ($1,234.00 → $1,702.92) against the previous 7 days; 81% of the change from
/// feature `support-bot` (+$30.78), which moved from gpt-4o-mini to gpt-4o (10% → 80% of its
/// calls)".
pub(crate) fn change_sentence(c: &Change, days: i64, mv: Option<&ModelMove>) -> String {
    let head = match c.change_ratio {
        Some(r) => format!(
            "spend {:+.0}% ({} → {}) against the previous {days} days",
            r * 100.0,
            c.previous.display_usd(),
            c.current.display_usd()
        ),
        None => format!(
            "spend {} against nothing in the previous {days} days",
            c.current.display_usd()
        ),
    };
    match c.contributions.first() {
        Some(top) if c.change != Nanos::ZERO => {
            let moved = match mv.filter(|m| m.feature == top.key) {
                Some(m) => format!(
                    ", which moved from {} to {} ({:.0}% → {:.0}% of its calls)",
                    m.from_model,
                    m.to_model,
                    m.previous_share * 100.0,
                    m.current_share * 100.0
                ),
                None => String::new(),
            };
            format!(
                "{head}; {:.0}% of the change from feature `{}` ({}){moved}",
                top.share_of_change * 100.0,
                top.key,
                signed_usd(top.change)
            )
        }
        _ => head,
    }
}

fn signed_usd(n: Nanos) -> String {
    if n < Nanos::ZERO {
        format!("−{}", Nanos(-n.0).display_usd())
    } else {
        format!("+{}", n.display_usd())
    }
}

/// A period-over-period change and the top feature's move to a pricier model, if any.
pub(crate) type Comparison = (Change, Option<ModelMove>);

/// Compares `current` with the same-length window right before it, by feature, and checks
/// whether the feature that grew most moved to a more expensive model.
pub(crate) fn compare_periods<'a>(
    usage: &'a dyn OrgUsageQueries,
    current: Period,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Comparison>, ToolError>> + Send + 'a> {
    let mut args = period_args(&current);
    args["group_by"] = json!("feature");
    ToolCall {
        name: "compare_periods",
        args,
        run: async move {
            let previous = current.previous();
            let now = usage.breakdown(&current, GroupBy::Feature).await?;
            let before = usage.breakdown(&previous, GroupBy::Feature).await?;
            let c = change(&now, &before);
            let mv = match c.contributions.first() {
                Some(top) if top.change > Nanos::ZERO => {
                    let now = usage.breakdown_feature_model(&current).await?;
                    let before = usage.breakdown_feature_model(&previous).await?;
                    model_move(&top.key, &now, &before)
                }
                _ => None,
            };
            let days = (current.to - current.from).num_days();
            Ok(ToolOutput {
                summary: change_sentence(&c, days, mv.as_ref()),
                data: change_json(&c, mv.as_ref()),
                value: (c, mv),
            })
        },
    }
}

/// "$450.00 by 2026-11-30: $300.00 so far, then 10.0 days at $15.00 a day (the average of the
/// last 7 complete days)".
pub(crate) fn forecast_sentence(m: &MonthEnd) -> String {
    let f = &m.forecast;
    let last_day = (m.month_end - Duration::days(1)).date_naive();
    format!(
        "{} by {last_day}: {} so far, then {:.1} days at {} a day (the average of the last {RECENT_DAYS} complete days)",
        f.projected.display_usd(),
        f.spent.display_usd(),
        f.remaining_days,
        f.daily_run_rate.display_usd()
    )
}

/// The month-end forecast as of `now`.
pub(crate) fn forecast_month_end<'a>(
    usage: &'a dyn OrgUsageQueries,
    now: DateTime<Utc>,
) -> ToolCall<impl Future<Output = Result<ToolOutput<MonthEnd>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "forecast_month_end",
        args: json!({
            "now": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "recent_days": RECENT_DAYS,
        }),
        run: async move {
            let m = month_end(usage, now).await?;
            Ok(ToolOutput {
                summary: forecast_sentence(&m),
                data: m.to_json(),
                value: m,
            })
        },
    }
}

/// Days from the first to the last of `by_day` (rows keyed `YYYY-MM-DD`), missing days as
/// zero spend: a day without usage is a day of no spend, not a gap.
pub(crate) fn fill_days(by_day: &[CostRow]) -> Vec<CostRow> {
    let dates: Vec<(NaiveDate, &CostRow)> = by_day
        .iter()
        .filter_map(|r| Some((NaiveDate::parse_from_str(&r.key, "%Y-%m-%d").ok()?, r)))
        .collect();
    let (Some(first), Some(last)) = (dates.first(), dates.last()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut day = first.0;
    let mut it = dates.iter().peekable();
    while day <= last.0 {
        match it.peek() {
            Some((d, r)) if *d == day => {
                out.push((*r).clone());
                it.next();
            }
            _ => out.push(CostRow {
                key: day.to_string(),
                calls: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost: Nanos::ZERO,
                unpriced_calls: 0,
            }),
        }
        day += Duration::days(1);
    }
    out
}

pub(crate) fn detect_anomalies<'a>(
    period: &'a Period,
    by_day: &'a [CostRow],
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<Anomaly>>, ToolError>> + Send + 'a> {
    let mut args = period_args(period);
    args["z_threshold"] = json!(ANOMALY_Z);
    ToolCall {
        name: "detect_anomalies",
        args,
        run: async move {
            let days = fill_days(by_day);
            let found = anomaly_days(&days, ANOMALY_Z);
            let summary = match found.first() {
                None => format!(
                    "no day of {} is an outlier (robust z above {ANOMALY_Z}) against the median day",
                    days.len()
                ),
                Some(top) => format!(
                    "{} outlier day(s) of {}; the largest: {} at {} against a median day of {} (robust z {:.1})",
                    found.len(),
                    days.len(),
                    top.key,
                    top.cost.display_usd(),
                    top.median.display_usd(),
                    top.z
                ),
            };
            Ok(ToolOutput {
                data: json!({
                    "z_threshold": ANOMALY_Z,
                    "days": days.len(),
                    "anomalies": found.iter().map(|a| json!({
                        "day": a.key,
                        "cost_nanos": a.cost,
                        "cost_usd": a.cost.usd(),
                        "median_nanos": a.median,
                        // Infinite (MAD 0) is not JSON: reported as null.
                        "z": a.z.is_finite().then_some(a.z),
                    })).collect::<Vec<_>>(),
                }),
                summary,
                value: found,
            })
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_analytics::trends::Contribution;

    fn row(key: &str, nanos: i64) -> CostRow {
        CostRow {
            key: key.into(),
            calls: 1,
            input_tokens: 0,
            output_tokens: 0,
            cost: Nanos::from(nanos),
            unpriced_calls: 0,
        }
    }

    #[test]
    fn missing_days_are_zero_spend() {
        let filled = fill_days(&[row("2026-11-01", 5), row("2026-11-04", 7)]);
        let keys: Vec<&str> = filled.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
        );
        assert_eq!(filled[1].cost, Nanos::ZERO);
        assert_eq!(filled[3].cost, Nanos(7));
    }

    #[test]
    fn the_change_sentence_names_the_top_mover() {
        let c = Change {
            previous: Nanos(100_000_000_000),
            current: Nanos(138_000_000_000),
            change: Nanos(38_000_000_000),
            change_ratio: Some(0.38),
            contributions: vec![Contribution {
                key: "support-bot".into(),
                previous: Nanos(10_000_000_000),
                current: Nanos(40_780_000_000),
                change: Nanos(30_780_000_000),
                share_of_change: 0.81,
            }],
        };
        assert_eq!(
            change_sentence(&c, 7, None),
            "spend +38% ($100.00 → $138.00) against the previous 7 days; 81% of the change from feature `support-bot` (+$30.78)"
        );
        let mv = ModelMove {
            feature: "support-bot".into(),
            from_model: "gpt-4o-mini".into(),
            to_model: "gpt-4o".into(),
            previous_share: 0.1,
            current_share: 0.8,
            to_model_change: Nanos(30_000_000_000),
            from_cost_per_call: Nanos(10_000_000),
            to_cost_per_call: Nanos(100_000_000),
        };
        assert_eq!(
            change_sentence(&c, 7, Some(&mv)),
            "spend +38% ($100.00 → $138.00) against the previous 7 days; 81% of the change from feature `support-bot` (+$30.78), which moved from gpt-4o-mini to gpt-4o (10% → 80% of its calls)"
        );
    }
}
