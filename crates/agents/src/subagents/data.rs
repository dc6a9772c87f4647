//! The `data` agent: the period's totals and its spend by model, feature and day, and for cost
//! and spike questions the month-end forecast. With no usage in the period it stops after the
//! totals; the supervisor then asks the data helper.

use apogee_analytics::{Dimension, Grouping, OrgUsageQueries};
use chrono::{DateTime, Utc};

use crate::findings::UsageData;
use crate::format::count;
use crate::scope::{Agent, Done, StepError};
use crate::tools::trends::forecast_month_end;
use crate::tools::usage::{spend_by, usage_totals};
use crate::triage::{Intent, Triage};

pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    t: &Triage,
    now: DateTime<Utc>,
) -> Result<Done<UsageData>, StepError> {
    let period = &t.period;
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
    let by_model = agent
        .call(spend_by(usage, period, Grouping::By(Dimension::Model)))
        .await?;
    let by_feature = agent
        .call(spend_by(usage, period, Grouping::By(Dimension::Feature)))
        .await?;
    let by_day = agent.call(spend_by(usage, period, Grouping::Day)).await?;
    // The tools cannot filter by user; a named user's own spend comes from the by-user
    // breakdown, and the report says the rest is org-wide.
    let by_user = match &t.user {
        Some(user) => {
            agent
                .think(format!(
                    "The question names user `{user}`: reading spend by user for their row; the \
                     other figures stay org-wide."
                ))
                .await?;
            agent
                .call(spend_by(usage, period, Grouping::By(Dimension::User)))
                .await?
        }
        None => Vec::new(),
    };
    // Where the month is heading answers "what are we spending" and puts a spike in context.
    let forecast = if matches!(t.intent, Intent::CostBreakdown | Intent::SpikeExplanation) {
        agent
            .think("Projecting this month's spend from the last 7 complete days.")
            .await?;
        Some(agent.call(forecast_month_end(usage, now)).await?)
    } else {
        None
    };
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
            by_feature,
            by_day,
            forecast,
            by_user,
        },
        summary,
    ))
}
