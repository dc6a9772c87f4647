//! The trend tools: `explain_spike` (the day to explain, the named one or the highest, and the
//! feature and model that grew most on it), `compare_periods` (spend of a window against the
//! same-length window before it, attributed to the features that moved, naming the top
//! feature's move to a more expensive model when there is one), `detect_anomalies` (days far
//! from the median day by a median/MAD robust z-score) and `forecast_month_end` (this month's
//! spend of a scope so far plus the rest at the recent daily run rate). The arithmetic is
//! [`apogee_analytics::trends`]'s and [`apogee_analytics::forecast`]'s.

use std::future::Future;

use apogee_analytics::forecast::{MonthEnd, RECENT_DAYS, month_end_of};
use apogee_analytics::trends::{
    ANOMALY_Z, Anomaly, Change, DaySpend, ModelMove, Spike, anomaly_days, change, fill_days,
    model_move, pick_day, top_driver,
};
use apogee_analytics::{CostRow, Dimension, Grouping, Nanos, OrgUsageQueries, Period, Scope};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use super::{ToolCall, ToolError, ToolOutput, period_args};
use crate::answer::analysis::day_spend;
use crate::answer::explain::{change_sentence, forecast_sentence, spike_sentence};
use crate::findings::{UsageData, spike_json};
use crate::question::period::days;

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

/// Key and cost of each row, as the spike arithmetic takes them.
fn costs(rows: &[CostRow]) -> Vec<(&str, Nanos)> {
    rows.iter().map(|r| (r.key.as_str(), r.cost)).collect()
}

/// Picks the day to explain (`focus`, else the highest-spend day), reads that day's spend by
/// feature and by model, and attributes its increase.
pub(crate) fn explain_spike<'a>(
    usage: &'a dyn OrgUsageQueries,
    period: &'a Period,
    data: &'a UsageData,
    focus: Option<NaiveDate>,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Option<Spike>>, ToolError>> + Send + 'a> {
    let mut args = period_args(period);
    args["day"] = json!(focus.map(|d| d.to_string()));
    ToolCall {
        name: "explain_spike",
        args,
        run: async move {
            let Some(day) = pick_day(&day_spend(&data.by_day), focus) else {
                return Ok(ToolOutput {
                    value: None,
                    summary: "fewer than two days of usage: nothing to compare".into(),
                    data: json!(null),
                });
            };
            let one_day = days(day.day, day.day.succ_opt().unwrap_or(day.day));
            let by_feature = usage
                .breakdown(&one_day, Grouping::By(Dimension::Feature))
                .await?;
            let by_model = usage
                .breakdown(&one_day, Grouping::By(Dimension::Model))
                .await?;
            let other_days = day.days.saturating_sub(1);
            let spike = Spike {
                feature: top_driver(&costs(&by_feature), &costs(&data.by_feature), other_days),
                // The day's rows are as stored: compare them with the period's as stored.
                model: top_driver(
                    &costs(&by_model),
                    &costs(&data.by_model_as_stored),
                    other_days,
                ),
                requested: focus.is_some(),
                day,
            };
            Ok(ToolOutput {
                summary: spike_sentence(&spike),
                data: spike_json(&spike),
                value: Some(spike),
            })
        },
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
            let now = usage
                .breakdown(&current, Grouping::By(Dimension::Feature))
                .await?;
            let before = usage
                .breakdown(&previous, Grouping::By(Dimension::Feature))
                .await?;
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

/// The month-end forecast of `scope` as of `now` (the whole org when it is empty).
pub(crate) fn forecast_month_end<'a>(
    usage: &'a dyn OrgUsageQueries,
    now: DateTime<Utc>,
    scope: Scope,
) -> ToolCall<impl Future<Output = Result<ToolOutput<MonthEnd>, ToolError>> + Send + 'a> {
    let mut args = json!({
        "now": apogee_protocol::time::instant(now),
        "recent_days": RECENT_DAYS,
    });
    if !scope.is_all() {
        args["scope"] = json!(scope);
    }
    ToolCall {
        name: "forecast_month_end",
        args,
        run: async move {
            let m = month_end_of(usage, now, &scope).await?;
            Ok(ToolOutput {
                summary: forecast_sentence(&m),
                data: m.to_json(),
                value: m,
            })
        },
    }
}

/// The days of a by-day breakdown, missing days as zero, as rows `anomaly_days` reads.
fn filled_rows(by_day: &[CostRow]) -> Vec<CostRow> {
    fill_days(&day_spend(by_day))
        .iter()
        .map(|d: &DaySpend| CostRow {
            key: d.day.to_string(),
            calls: d.calls,
            input_tokens: 0,
            output_tokens: 0,
            cost: d.cost,
            unpriced_calls: 0,
        })
        .collect()
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
            let days = filled_rows(by_day);
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
