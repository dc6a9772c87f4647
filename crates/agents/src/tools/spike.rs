//! `explain_spike`: picks the day to explain (the named one, else the highest-spend day),
//! queries that day's spend by feature and by model, and attributes its increase with
//! [`crate::spike`].

use std::future::Future;

use apogee_analytics::{Dimension, Grouping, OrgUsageQueries, Period};
use chrono::NaiveDate;
use serde_json::json;

use super::{ToolCall, ToolError, ToolOutput, period_args};
use crate::findings::{UsageData, spike_json};
use crate::spike::{Spike, pick_day, top_driver};
use crate::triage::day_period;

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
            let Some(day) = pick_day(&data.by_day, focus) else {
                return Ok(ToolOutput {
                    value: None,
                    summary: "fewer than two days of usage: nothing to compare".into(),
                    data: json!(null),
                });
            };
            let one_day = day_period(day.day, day.day.succ_opt().unwrap_or(day.day));
            let by_feature = usage
                .breakdown(&one_day, Grouping::By(Dimension::Feature))
                .await?;
            let by_model = usage
                .breakdown(&one_day, Grouping::By(Dimension::Model))
                .await?;
            let other_days = day.days.saturating_sub(1);
            let spike = Spike {
                feature: top_driver(&by_feature, &data.by_feature, other_days),
                model: top_driver(&by_model, &data.by_model, other_days),
                requested: focus.is_some(),
                day,
            };
            Ok(ToolOutput {
                summary: spike.sentence(),
                data: spike_json(&spike),
                value: Some(spike),
            })
        },
    }
}
