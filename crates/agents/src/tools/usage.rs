//! The tools that read usage: `measure_usage` and `measure_latency` (the query engine's
//! `aggregate` and `latency` over a plan's scope, period and grouping), `usage_totals` and
//! the `spend_by_*` breakdowns of the full report, and `check_data_coverage` (does the org
//! have usage at all, and when).

use std::future::Future;

use apogee_analytics::{
    CostRow, Dimension, Grouping, LatencySlice, OrgUsageQueries, Period, UsageQuery, UsageSlice,
    UsageTotals,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use super::{ToolCall, ToolError, ToolOutput, period_args};
use crate::findings::{Coverage, coverage_json, rows_json, totals_json};
use crate::format::{count, share};

/// How far back `check_data_coverage` looks.
pub(crate) const COVERAGE_DAYS: u32 = 365;

pub(crate) fn usage_totals<'a>(
    usage: &'a dyn OrgUsageQueries,
    period: &'a Period,
) -> ToolCall<impl Future<Output = Result<ToolOutput<UsageTotals>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "usage_totals",
        args: period_args(period),
        run: async move {
            let t = usage.totals(period).await?;
            let mut summary = format!(
                "{} calls, {} input + {} output tokens, {}",
                count(t.calls),
                count(t.input_tokens),
                count(t.output_tokens),
                t.cost.display_usd()
            );
            if t.unpriced_calls > 0 {
                summary.push_str(&format!(" ({} calls unpriced)", count(t.unpriced_calls)));
            }
            Ok(ToolOutput {
                data: totals_json(&t),
                summary,
                value: t,
            })
        },
    }
}

/// `spend_by_model`, `spend_by_feature`, `spend_by_day`, … by `by`.
pub(crate) fn spend_by<'a>(
    usage: &'a dyn OrgUsageQueries,
    period: &'a Period,
    by: Grouping,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<CostRow>>, ToolError>> + Send + 'a> {
    let name = match &by {
        Grouping::By(Dimension::Model) => "spend_by_model",
        Grouping::By(Dimension::Provider) => "spend_by_provider",
        Grouping::By(Dimension::User) => "spend_by_user",
        Grouping::By(Dimension::Feature) => "spend_by_feature",
        Grouping::By(Dimension::Tag(_)) => "spend_by_tag",
        Grouping::Day => "spend_by_day",
        Grouping::Week => "spend_by_week",
        Grouping::HourOfDay => "spend_by_hour_of_day",
        Grouping::DayOfWeek => "spend_by_day_of_week",
    };
    let mut args = period_args(period);
    args["group_by"] = json!(by);
    ToolCall {
        name,
        args,
        run: async move {
            let rows = usage.breakdown(period, by.clone()).await?;
            Ok(ToolOutput {
                data: json!({ "group_by": by, "rows": rows_json(&rows) }),
                summary: breakdown_summary(&rows, &by),
                value: rows,
            })
        },
    }
}

fn breakdown_summary(rows: &[CostRow], by: &Grouping) -> String {
    let total = rows.iter().map(|r| r.cost).sum();
    let top = rows
        .iter()
        .max_by(|a, b| a.cost.cmp(&b.cost).then(b.key.cmp(&a.key)));
    let noun = match by {
        Grouping::By(Dimension::Model) => "models",
        Grouping::By(Dimension::Provider) => "providers",
        Grouping::By(Dimension::User) => "users",
        Grouping::By(Dimension::Feature) => "features",
        Grouping::By(Dimension::Tag(_)) => "tag values",
        Grouping::Day => "days",
        Grouping::Week => "weeks",
        Grouping::HourOfDay => "hours of the day",
        Grouping::DayOfWeek => "days of the week",
    };
    match top {
        None => format!("no usage, 0 {noun}"),
        Some(top) if by.is_time() => format!(
            "{} {noun} with usage; highest {} at {}",
            rows.len(),
            top.key,
            top.cost.display_usd()
        ),
        Some(top) => format!(
            "{} {noun}; top {} at {} ({} of spend)",
            rows.len(),
            top.key,
            top.cost.display_usd(),
            share(top.cost, total)
        ),
    }
}

/// Usage over the last [`COVERAGE_DAYS`] days, and the first and last day that had any.
pub(crate) fn check_data_coverage<'a>(
    usage: &'a dyn OrgUsageQueries,
    now: DateTime<Utc>,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Coverage>, ToolError>> + Send + 'a> {
    let window = Period::last_days(now, COVERAGE_DAYS);
    ToolCall {
        name: "check_data_coverage",
        args: period_args(&window),
        run: async move {
            let totals = usage.totals(&window).await?;
            let (first_day, last_day) = if totals.calls > 0 {
                let days = usage.breakdown(&window, Grouping::Day).await?;
                let parsed: Vec<NaiveDate> =
                    days.iter().filter_map(|r| r.key.parse().ok()).collect();
                (parsed.iter().min().copied(), parsed.iter().max().copied())
            } else {
                (None, None)
            };
            let coverage = Coverage {
                window,
                calls: totals.calls,
                first_day,
                last_day,
            };
            let summary = match (first_day, last_day) {
                (Some(a), Some(b)) => format!(
                    "{} calls in the last {COVERAGE_DAYS} days, from {a} to {b}",
                    count(totals.calls)
                ),
                _ => format!("no usage at all in the last {COVERAGE_DAYS} days"),
            };
            Ok(ToolOutput {
                data: coverage_json(&coverage),
                summary,
                value: coverage,
            })
        },
    }
}

/// The arguments of a query tool: the query itself, in its text forms.
fn query_args(q: &UsageQuery, role: &str) -> serde_json::Value {
    let mut args = period_args(&q.period);
    args["scope"] = json!(q.scope);
    args["group_by"] = json!(q.group_by);
    args["for"] = json!(role);
    args
}

/// `measure_usage`: the engine's totals of a scope over a period, and of each group. `role`
/// says in the step list what the figure is for ("the question", "the comparison period").
pub(crate) fn measure_usage<'a>(
    usage: &'a dyn OrgUsageQueries,
    q: UsageQuery,
    role: &'static str,
) -> ToolCall<impl Future<Output = Result<ToolOutput<UsageSlice>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "measure_usage",
        args: query_args(&q, role),
        run: async move {
            let slice = usage.aggregate(&q).await?;
            let t = &slice.totals;
            let mut summary = format!(
                "{}: {} across {} calls",
                role,
                t.cost.display_usd(),
                count(t.calls)
            );
            if !slice.rows.is_empty() {
                summary.push_str(&format!(", {} groups", count(slice.rows.len() as i64)));
            }
            if t.unpriced_calls > 0 {
                summary.push_str(&format!(" ({} calls unpriced)", count(t.unpriced_calls)));
            }
            Ok(ToolOutput {
                data: json!({
                    "totals": totals_json(t),
                    "rows": slice.rows.len(),
                    "truncated": slice.truncated,
                }),
                summary,
                value: slice,
            })
        },
    }
}

/// `measure_latency`: mean and nearest-rank p50/p95/p99 latency, calls and errors of a scope over a
/// period, and of each group.
pub(crate) fn measure_latency<'a>(
    usage: &'a dyn OrgUsageQueries,
    q: UsageQuery,
    role: &'static str,
) -> ToolCall<impl Future<Output = Result<ToolOutput<LatencySlice>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "measure_latency",
        args: query_args(&q, role),
        run: async move {
            let slice = usage.latency(&q).await?;
            let t = &slice.totals;
            let ms = |v: Option<i64>| v.map_or("–".to_string(), |v| format!("{} ms", count(v)));
            let summary = format!(
                "{}: mean {}, p50 {}, p95 {}, p99 {} over {} calls with a latency; {} of {} calls failed",
                role,
                ms(t.mean_ms.map(|m| m.round() as i64)),
                ms(t.p50_ms),
                ms(t.p95_ms),
                ms(t.p99_ms),
                count(t.latency_samples),
                count(t.error_calls),
                count(t.calls)
            );
            Ok(ToolOutput {
                data: json!({ "totals": t, "rows": slice.rows.len(), "truncated": slice.truncated }),
                summary,
                value: slice,
            })
        },
    }
}
