//! The `data_helper` agent: when there is no usage to analyse, or the user asks how to send
//! it, checks what usage the org has at all (`check_data_coverage`) and answers with how to
//! send usage and load the demo dataset. It never states a cost.

use apogee_analytics::OrgUsageQueries;
use chrono::{DateTime, Utc};

use crate::answer::help::{HelpInput, render};
use crate::findings::{Coverage, coverage_json};
use crate::plan::QuestionPlan;
use crate::scope::{Agent, Done, StepError};
use crate::tools::ToolError;
use crate::tools::usage::{COVERAGE_DAYS, check_data_coverage};

pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    plan: &QuestionPlan,
    asked_calls: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Done<(Coverage, String)>, StepError> {
    let why = match asked_calls {
        Some(0) => format!(
            "There is no usage in {}; checking whether the org has any in the last {COVERAGE_DAYS} days.",
            plan.period.period().label()
        ),
        _ => format!("Checking what usage the org already has in the last {COVERAGE_DAYS} days."),
    };
    agent.think(why).await?;
    let coverage = agent.call(check_data_coverage(usage, now)).await?;
    agent
        .think("Explaining how to send usage records and how to load the demo dataset.")
        .await?;
    let answer = render(&HelpInput {
        plan,
        asked_calls,
        coverage: &coverage,
    });
    agent
        .post_answer(&answer)
        .await
        .map_err(|e| StepError::Tool(ToolError::Answer(e)))?;
    let summary = if coverage.calls > 0 {
        "explained how to send usage, and which period has data"
    } else {
        "explained how to send usage and load the demo data"
    };
    let data = coverage_json(&coverage);
    let lead = answer.lines().next().unwrap_or_default().to_string();
    Ok(Done::new((coverage, lead), summary).with_data(data))
}
