//! The `data` agent. For a figure ([`figure`]): exactly what the plan measures, for its scope,
//! period and grouping (`measure_usage`), plus only what the answer needs around it (the
//! whole org's totals for a share, the comparison period, the daily series of the chart). For
//! a forecast ([`forecast`]): the scope's month-end forecast. For a full report ([`work`]):
//! the period's totals and spend by model, feature and day, and for analysis and spike
//! questions the month-end forecast; with no usage it stops after the totals and the
//! supervisor asks the data helper.

use apogee_analytics::model_rows::{merge_model_groups, merge_model_rows};
use apogee_analytics::trends::DaySpend;
use apogee_analytics::{
    Dimension, Grouping, OrgUsageQueries, Period, PriceCatalog, Scope, UsageQuery, UsageSlice,
    UsageTotals,
};
use chrono::{DateTime, Utc};

use crate::answer::figure::{FigureData, Group, Measured, subject};
use crate::answer::projection::ForecastData;
use crate::findings::UsageData;
use crate::format::count;
use crate::plan::{Intent, Measure, PlanPeriod, QuestionPlan};
use crate::scope::{Agent, Done, StepError};
use crate::tools::trends::forecast_month_end;
use crate::tools::usage::{measure_usage, spend_by, usage_totals};

/// The full report's data.
pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    plan: &QuestionPlan,
    now: DateTime<Utc>,
) -> Result<Done<UsageData>, StepError> {
    let period = &plan.period.period();
    agent
        .think(format!(
            "Looking at {} days of usage: {}",
            period.days().round(),
            period.label()
        ))
        .await?;
    let totals = agent.call(usage_totals(usage, period)).await?;
    if totals.calls == 0 {
        agent
            .think("No usage is recorded in this period, so there is nothing to break down.")
            .await?;
        let summary = format!("no usage in {}", period.label());
        return Ok(Done::new(
            UsageData {
                totals,
                ..UsageData::default()
            },
            summary,
        ));
    }
    agent
        .think(format!(
            "{} calls cost {}; breaking that down by model, feature and day.",
            count(totals.calls),
            totals.cost.display_usd()
        ))
        .await?;
    // Where the month is heading answers "what are we spending" and puts a spike in context.
    let forecast_wanted = matches!(plan.intent, Intent::Analysis | Intent::SpikeExplanation);
    if forecast_wanted {
        agent
            .think("Projecting this month's spend from the last 7 complete days.")
            .await?;
    }
    // The report is org-wide; a named user's own row comes from the by-user breakdown, and
    // the report says the rest is not filtered.
    let user_wanted = plan.scope.values_of(&Dimension::User).is_some();
    if user_wanted {
        agent
            .think("The question names a user: reading spend by user for their row; the other figures stay org-wide.")
            .await?;
    }
    // Independent reads of the same period: run together, they take as long as the slowest
    // rather than the sum (each call still pairs its own start and end by call id).
    let (by_model_as_stored, by_feature, by_day, by_user, forecast) = tokio::join!(
        agent.call(spend_by(usage, period, Grouping::By(Dimension::Model))),
        agent.call(spend_by(usage, period, Grouping::By(Dimension::Feature))),
        agent.call(spend_by(usage, period, Grouping::Day)),
        async {
            if user_wanted {
                agent
                    .call(spend_by(usage, period, Grouping::By(Dimension::User)))
                    .await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            if forecast_wanted {
                let m = agent
                    .call(forecast_month_end(usage, now, Scope::all()))
                    .await?;
                Ok::<_, StepError>(Some(m))
            } else {
                Ok(None)
            }
        },
    );
    let (by_model_as_stored, by_feature, by_day, by_user, forecast) = (
        by_model_as_stored?,
        by_feature?,
        by_day?,
        by_user?,
        forecast?,
    );
    // One model reported under several names (`gpt-4o`, `gpt-4o-2024-08-06`) is one row.
    let by_model: Vec<_> = merge_model_rows(&by_model_as_stored, catalog)
        .into_iter()
        .map(|m| m.row)
        .collect();
    let summary = format!(
        "{} across {} calls, {} models, {} features, {} days with usage",
        totals.cost.display_usd(),
        count(totals.calls),
        by_model.len(),
        by_feature.len(),
        by_day.len()
    );
    Ok(Done::new(
        UsageData {
            totals,
            by_model,
            by_model_as_stored,
            by_feature,
            by_day,
            forecast,
            by_user,
        },
        summary,
    ))
}

/// A measured slice from the engine's answer, over `period`.
pub(crate) fn measured(slice: UsageSlice, period: &Period) -> Measured {
    Measured {
        seconds: (period.to - period.from).num_seconds(),
        totals: slice.totals,
        latency: None,
        groups: slice
            .rows
            .into_iter()
            .map(|r| Group {
                key: r.key,
                totals: r.totals,
                latency: None,
            })
            .collect(),
    }
}

fn measures_text(plan: &QuestionPlan) -> String {
    let names: Vec<&str> = plan
        .measures
        .iter()
        .map(|&m| crate::answer::figure::noun(m))
        .collect();
    names.join(", ")
}

/// What a figure plan needs: see the module doc.
pub(crate) async fn figure(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    plan: &QuestionPlan,
) -> Result<Done<FigureData>, StepError> {
    let period = plan.period.period();
    let query = |period, group_by: Option<Grouping>| UsageQuery {
        period,
        scope: plan.scope.clone(),
        group_by,
    };
    let who = subject(&plan.scope).unwrap_or_else(|| "the whole org".into());
    let mut plan_text = format!(
        "Measuring {} of {who} over {}",
        measures_text(plan),
        period.label()
    );
    if let Some(g) = &plan.group_by {
        plan_text.push_str(&format!(", by {g}"));
    }
    if let Some(c) = &plan.compare {
        plan_text.push_str(&format!(", against {}", c.period().label()));
    }
    plan_text.push('.');
    agent.think(plan_text).await?;

    let headline = plan.measure();
    let share_wanted = !plan.scope.is_all()
        && plan.group_by.is_none()
        && plan.compare.is_none()
        && matches!(
            headline,
            Measure::Spend
                | Measure::Calls
                | Measure::InputTokens
                | Measure::OutputTokens
                | Measure::TotalTokens
                | Measure::Errors
        );
    let series_wanted = plan.group_by.is_none()
        && plan.compare.is_none()
        && headline == Measure::Spend
        && period.days() >= 2.0;
    // Independent reads of the engine: side by side, each its own step.
    let (current, org, previous, series) = tokio::join!(
        agent.call(measure_usage(
            usage,
            query(period, plan.group_by.clone()),
            "the question"
        )),
        async {
            if share_wanted {
                agent
                    .call(measure_usage(
                        usage,
                        UsageQuery::totals(period),
                        "the whole org, for the share",
                    ))
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            match &plan.compare {
                Some(c) => agent
                    .call(measure_usage(
                        usage,
                        query(c.period(), plan.group_by.clone()),
                        "the comparison period",
                    ))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        },
        async {
            if series_wanted {
                agent
                    .call(measure_usage(
                        usage,
                        query(period, Some(Grouping::Day)),
                        "the daily series",
                    ))
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
    );
    // By model, one model's several names are one group, as in `GET /api/costs`.
    let shown = |slice: UsageSlice| {
        if plan.group_by == Some(Grouping::By(Dimension::Model)) {
            merge_model_groups(slice, catalog).0
        } else {
            slice
        }
    };
    let current = measured(shown(current?), &period);
    let previous_period = plan.compare.as_ref().map(PlanPeriod::period);
    let data = FigureData {
        org: org?.map(|s| s.totals),
        previous: match (previous?, previous_period) {
            (Some(s), Some(p)) => Some(measured(shown(s), &p)),
            _ => None,
        },
        series: series?
            .map(|s| {
                s.rows
                    .iter()
                    .filter_map(|r| {
                        Some(DaySpend {
                            day: r.key.parse().ok()?,
                            cost: r.totals.cost,
                            calls: r.totals.calls,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        current,
    };
    let t: &UsageTotals = &data.current.totals;
    let summary = format!(
        "{} across {} calls{}",
        t.cost.display_usd(),
        count(t.calls),
        if data.current.groups.is_empty() {
            String::new()
        } else {
            format!(" in {} groups", data.current.groups.len())
        }
    );
    Ok(Done::new(data, summary))
}

/// The plan scope's month-end forecast.
pub(crate) async fn forecast(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    plan: &QuestionPlan,
    now: DateTime<Utc>,
) -> Result<Done<ForecastData>, StepError> {
    let who = subject(&plan.scope).unwrap_or_else(|| "the whole org".into());
    agent
        .think(format!(
            "Projecting {who}'s spend to the end of the month: spent so far, then the average of the last 7 complete days."
        ))
        .await?;
    let m = agent
        .call(forecast_month_end(usage, now, plan.scope.clone()))
        .await?;
    let summary = format!(
        "{} projected by the end of the month",
        m.forecast.projected.display_usd()
    );
    Ok(Done::new(
        ForecastData {
            forecast: m.forecast,
            month_end: m.month_end,
            recent_days: apogee_analytics::forecast::RECENT_DAYS,
        },
        summary,
    ))
}
